"""The demo web app against what an outside probe tried (issue 22): a hash route that is not
valid percent-encoding, and framing by another site."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from .browser import DemoHost
from .conftest import URL
from .test_demo_browser import browser, context, host, page, playwright

__all__ = ["browser", "context", "host", "page", "playwright"]  # fixtures, imported to be used

# `%A` ends the escape too soon, and `%E0%A4` alone is no UTF-8 character: decodeURIComponent
# throws "URI malformed" on either.
UNDECODABLE = "#/%E0%A4%A/metadata"


@pytest.mark.slow
def test_an_undecodable_hash_route_shows_the_default_view_without_a_page_error(
    host: DemoHost, page: Page
) -> None:
    """Signing in at `#/%E0%A4%A/metadata`, reloading there, or going there from another view:
    each time the router treats it as a route it does not know (the signed-in user's first
    platform and its metadata), and no script error escapes."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    default_view = page.locator("#panel-metadata h2")
    page.goto(host.base + "/" + UNDECODABLE)
    page.fill("#token", host.tokens["john_doe"])
    page.click("form.signin button[type=submit]")
    expect(default_view).to_have_text("Metadata of john_doe on acme-corp")
    page.reload()  # signed in already: the page routes as it starts
    expect(default_view).to_have_text("Metadata of john_doe on acme-corp")
    page.click("#tab-history")
    expect(page.locator("#panel-history")).to_be_visible()
    page.evaluate(f"() => {{ location.hash = {UNDECODABLE!r}; }}")  # a hashchange to it
    expect(default_view).to_have_text("Metadata of john_doe on acme-corp")
    assert page.url.endswith(UNDECODABLE)
    assert errors == []


@pytest.mark.slow
def test_every_demo_answer_forbids_framing_and_the_api_stays_as_it_was(host: DemoHost) -> None:
    """`X-Frame-Options: DENY`, what the CSP's `frame-ancestors 'none'` says to browsers that
    predate it, on the page, its static files and `/demo/me`, and with the rest of the demo's
    headers on the 404 and 405 of its routes too; the metadata endpoint's answers carry none
    of them (docs/example_host.md: unchanged, byte for byte).

    Over HTTP to the served host, as the browser test beside it: an in-process async test
    here would meet the event loop that sync Playwright keeps running in this thread."""
    with httpx.Client(base_url=host.base, timeout=30) as client:
        for method, path, status in [
            ("GET", "/", 200),
            ("HEAD", "/", 200),
            ("GET", "/demo/static/app.js", 200),
            ("GET", "/demo/static/app.css", 200),
            ("GET", "/demo/me", 401),
            ("GET", "/demo/static/missing.js", 404),
            ("POST", "/", 405),
        ]:
            response = client.request(method, path)
            assert response.status_code == status, path
            assert response.headers.get("x-frame-options") == "DENY", (method, path)
            csp = response.headers.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in csp, (method, path)
            assert response.headers.get("x-content-type-options") == "nosniff", (method, path)
        token = {"Authorization": f"Token {host.tokens['john_doe']}"}
        for answer in (
            client.get(URL, params={"platform_key": "acme-corp"}, headers=token),
            client.get(URL + "openapi.json"),
        ):
            assert answer.status_code == 200
            assert not {"x-frame-options", "content-security-policy"} & set(answer.headers)
