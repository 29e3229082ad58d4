"""Screenshots of the demo web app's main screens, for the README and docs/example_host.md.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Serves the example host on a fresh SQLite file in a temporary folder, fills it with a few users,
a policy and some history through the CLI and the API, and photographs each screen in Debian's
Chromium, with the same set-up as the browser tests (tests/browser.py; needs the `test` extra
and `apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from tests.browser import DemoHost, demo_host, launch_chromium, sign_in  # noqa: E402

P = "acme-corp"
VIEWPORT = {"width": 1100, "height": 720}
POLICY = {
    "protected_keys": ["plan", "billing_*"],
    "private_keys": ["internal_notes"],
    "schema": {
        "type": "object",
        "properties": {
            "theme": {"enum": ["light", "dark", "system"]},
            "seats": {"type": "integer", "minimum": 1},
        },
    },
}
DOCUMENTS = {
    "ana": {"plan": "pro", "beta": True, "theme": "dark", "seats": 12},
    "bruno": {"plan": "free", "theme": "light"},
    "chen": {"plan": "pro", "beta": False, "theme": "system", "seats": 3},
    "dara": {"plan": "enterprise", "beta": True, "seats": "lots"},
}


def prepare(host: DemoHost) -> dict[str, str]:
    """Users, documents, history and the policy; returns the tokens."""
    tokens = dict(host.tokens)
    tokens.update(host.platform(P, "".join(f"{name}\n" for name in DOCUMENTS)))
    admin, john = tokens["acme_admin"], tokens["john_doe"]
    for name, metadata in DOCUMENTS.items():
        host.call(tokens[name], "PATCH", params={"platform_key": P}, json={"metadata": metadata})
    for change in (
        {"plan": "pro", "theme": "light", "onboarding": {"step": 1, "done": False}},
        {"theme": "dark", "language": "en-GB"},
        {"onboarding": {"step": 4, "done": True}},
    ):
        params = {"platform_key": P, "username": "john_doe"}
        response = host.call(admin, "PATCH", params=params, json={"metadata": change})
        assert response.status_code == 200, response.text
    host.call(john, "PATCH", params={"platform_key": P}, json={"metadata": {"beta": True}})
    schema_free = {**POLICY, "schema": None}
    put = host.call(admin, "PUT", "policy/", params={"platform_key": P}, json=schema_free)
    assert put.status_code == 200, put.text
    return tokens


def shoot(page: Page, out: Path, name: str) -> None:
    page.wait_for_timeout(300)  # let the flash of a live change fade a little
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(out / f"{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, demo_host(Path(folder)) as host:
        tokens = prepare(host)
        with sync_playwright() as driver:
            browser = launch_chromium(driver)
            page = browser.new_page(viewport=VIEWPORT)

            page.goto(host.base + "/")
            page.fill("#token", tokens["john_doe"])
            shoot(page, out, "sign-in")

            page.click("form.signin button[type=submit]")
            expect(page.locator("#live")).to_have_attribute("data-state", "live")
            params = {"platform_key": P, "username": "john_doe"}
            host.call(tokens["acme_admin"], "PATCH", params=params,
                      json={"metadata": {"language": "fr-FR"}})
            expect(page.locator("#last-change")).to_contain_text("acme_admin")
            page.click("#add-key")
            page.fill("tr.row:last-child input.key", "billing_email")
            page.fill("tr.row:last-child textarea.value", '"john@example.com"')
            page.click("#save")
            expect(page.locator('[data-error-for="billing_email"]')).not_to_be_empty()
            page.wait_for_timeout(1800)
            shoot(page, out, "member")

            page = browser.new_context(viewport=VIEWPORT).new_page()  # a new tab, signed out
            sign_in(page, host, tokens["acme_admin"], f"#/{P}/users")
            page.fill("#filter", '{"plan": "pro"}')
            page.click("#apply-filter")
            expect(page.locator("table.users tbody tr")).to_have_count(3)
            shoot(page, out, "users")

            page.click("#tab-policy")
            page.fill("#schema", json.dumps(POLICY["schema"], indent=2))
            page.click("#dry-run")
            expect(page.locator("#policy-result")).to_contain_text("Dry run")
            shoot(page, out, "policy")

            page.goto(f"{host.base}/#/{P}/history/john_doe")
            expect(page.locator("#revisions li.revision").first).to_be_visible()
            shoot(page, out, "history")
            browser.close()


if __name__ == "__main__":
    main()
