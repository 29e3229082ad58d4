"""The demo's admin user list in a real browser: it needs `<mount>/users/` (EXTENSIONS.md
section 4, issue 13).  Kept apart from tests/test_demo_browser.py until that resource is in
the tree; the set-up is the same."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .browser import DemoHost, sign_in, value_box
from .test_demo_browser import browser, context, host, page, playwright

__all__ = ["browser", "context", "host", "page", "playwright"]  # fixtures, used here

pytestmark = pytest.mark.slow


def test_an_admin_filters_the_users_pages_on_and_opens_one(host: DemoHost, page: Page) -> None:
    """The Users tab lists the members' stored documents; a JSON filter narrows them to equal
    top-level values, a bad filter is explained beside the field, `next` pages on, and a
    click opens that user's document, protected keys editable."""
    users = host.platform("list", "ann\nbob\ncy\ndee\nboss --admin\n")
    for name, metadata in (
        ("ann", {"plan": "pro", "beta": True}),
        ("bob", {"plan": "free"}),
        ("cy", {"plan": "pro", "beta": False}),
        ("dee", {"plan": "pro", "beta": True, "seats": 3}),
    ):
        response = host.call(users[name], "PATCH", params={"platform_key": "list"},
                             json={"metadata": metadata})
        assert response.status_code == 200
    host.call(users["boss"], "PUT", "policy/", params={"platform_key": "list"},
              json={"protected_keys": ["plan"]})
    sign_in(page, host, users["boss"], "#/list/users")
    rows = page.locator("table.users tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("ann")
    expect(rows.first).to_contain_text('{"plan":"pro","beta":true}')
    page.fill("#filter", "[1]")
    page.click("#apply-filter")
    expect(page.locator("#filter-error")).to_contain_text("JSON object")
    page.fill("#filter", '{"plan": "pro", "beta": true}')
    page.click("#apply-filter")
    expect(rows).to_have_count(2)
    expect(page.locator("table.users tbody tr[data-username]")).to_have_count(2)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.username)") == ["ann", "dee"]
    page.click('table.users tr[data-username="dee"] th button')
    expect(page.locator("#target")).to_have_text("dee")
    value_box(page, "plan").fill('"enterprise"')
    page.click("#save")
    expect(page.locator("#messages")).to_have_text("Saved: version 2.")
    stored = host.call(users["dee"], "GET", params={"platform_key": "list"}).json()
    assert stored["metadata"]["plan"] == "enterprise"


def test_the_users_list_pages_by_next(host: DemoHost, page: Page) -> None:
    """More matching records than a page holds: "Next page" follows the API's `next` link
    until every record is listed once."""
    lines = "".join(f"u{n:02d}\n" for n in range(30)) + "boss --admin\n"
    users = host.platform("many", lines)
    for n in range(30):
        host.call(users[f"u{n:02d}"], "PATCH", params={"platform_key": "many"},
                  json={"metadata": {"n": n}})
    sign_in(page, host, users["boss"], "#/many/users")
    rows = page.locator("table.users tbody tr")
    expect(rows).to_have_count(25)
    page.click("#next-page")
    expect(rows).to_have_count(30)
    expect(page.locator("#next-page")).to_be_hidden()
    names = rows.evaluate_all("rows => rows.map(r => r.dataset.username)")
    assert names == [f"u{n:02d}" for n in range(30)]
