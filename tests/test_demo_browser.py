"""The demo web app in a real headless Chromium against `python -m example_host serve`: what a
person does, click by click (see tests/browser.py for the set-up)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from .browser import (
    DemoHost,
    chromium_installed,
    demo_host,
    launch_chromium,
    serving,
    sign_in,
    tokens,
    value_box,
)
from .conftest import URL
from .test_example_host import free_port, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoHost]:
    with demo_host(tmp_path_factory.mktemp("demo")) as served:
        yield served


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not chromium_installed() and not os.environ.get("CI"):
        # As PostgreSQL's tests without TEST_POSTGRES_URL: the README's test command works on
        # a machine without a browser; CI installs Chromium (.ci/run) and runs every one.
        pytest.skip("Chromium not found: apt-get install chromium (CI does), or set $CHROMIUM")
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (its own sessionStorage) that fails the test on any dialog
    or uncaught script error."""
    new = browser.new_context(viewport={"width": 1100, "height": 800})
    errors: list[str] = []
    new.on("page", lambda page: watch_page(page, errors))
    yield new
    new.close()
    assert errors == []


def watch_page(page: Page, errors: list[str]) -> None:
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def test_signing_in_with_a_printed_token_shows_the_members_metadata(
    host: DemoHost, page: Page
) -> None:
    """The token `serve` printed signs in; a wrong one is refused with the API's words; the
    token is kept in sessionStorage only (no cookie, nothing in localStorage or the URL)."""
    page.goto(host.base + "/")
    page.fill("#token", "0" * 40)
    page.click("form.signin button[type=submit]")
    expect(page.locator("#signin-error")).to_have_text("Invalid token.")
    page.fill("#token", host.tokens["john_doe"])
    page.click("form.signin button[type=submit]")
    expect(page.locator("#panel-metadata h2")).to_have_text("Metadata of john_doe on acme-corp")
    expect(page.locator("#role")).to_have_text("member")
    expect(page.locator("#tab-users")).to_have_count(0)
    expect(page.locator("#tab-policy")).to_have_count(0)
    stored = page.evaluate("() => [JSON.stringify(sessionStorage), localStorage.length]")
    assert host.tokens["john_doe"] in stored[0] and stored[1] == 0
    assert page.context.cookies() == [] and host.tokens["john_doe"] not in page.url
    page.click("#sign-out")
    expect(page.locator("#token")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_a_member_edits_metadata_and_it_is_there_after_a_reload(
    host: DemoHost, page: Page
) -> None:
    """Add a key and a JSON value, save, reload the page: still signed in (same tab), the
    saved document shown; then change and remove values, as the API confirms."""
    users = host.platform("edit", "ann\n")
    sign_in(page, host, users["ann"], "#/edit")
    page.click("#add-key")
    page.fill("tr.row:last-child input.key", "theme")
    page.fill("tr.row:last-child textarea.value", '"dark"')
    page.click("#add-key")
    page.fill("tr.row:last-child input.key", "limits")
    page.fill("tr.row:last-child textarea.value", '{"items": 5, "tags": ["a", "b"]}')
    page.click("#save")
    expect(page.locator("#messages")).to_have_text("Saved: version 1.")
    page.reload()
    expect(value_box(page, "theme")).to_have_value('"dark"')
    expect(value_box(page, "limits")).to_have_value('{"items":5,"tags":["a","b"]}')
    value_box(page, "theme").fill('"light"')
    page.click('button[aria-label="Remove limits"]')
    page.click("#save")
    expect(page.locator("#messages")).to_have_text("Saved: version 2.")
    body = host.call(users["ann"], "GET", params={"platform_key": "edit"}).json()
    assert body["metadata"] == {"theme": "light"}


def test_a_value_that_is_not_json_is_marked_and_nothing_is_sent(
    host: DemoHost, page: Page
) -> None:
    users = host.platform("typo", "ann\n")
    sign_in(page, host, users["ann"], "#/typo")
    page.click("#add-key")
    page.fill("tr.row:last-child input.key", "theme")
    page.fill("tr.row:last-child textarea.value", "dark")
    page.click("#save")
    expect(page.locator('[data-error-for="theme"]')).to_contain_text("Not a JSON value")
    response = host.call(users["ann"], "GET", params={"platform_key": "typo"})
    assert response.json()["created_at"] is None


def test_schema_errors_are_shown_next_to_the_field_they_name(host: DemoHost, page: Page) -> None:
    """The schema's 400 `{"metadata": ["/age: ..."]}` lands beside `age`; a message about
    the root that names a key lands beside that key."""
    users = host.platform("schema", "ann\nboss --admin\n")
    policy = {
        "schema": {
            "type": "object",
            "properties": {"age": {"type": "integer", "minimum": 0}},
            "required": ["nickname"],
        }
    }
    put = host.call(users["boss"], "PUT", "policy/", params={"platform_key": "schema"}, json=policy)
    assert put.status_code == 200, put.text
    sign_in(page, host, users["ann"], "#/schema")
    for key, value in (("nickname", '"annie"'), ("age", "-3")):
        page.click("#add-key")
        page.fill("tr.row:last-child input.key", key)
        page.fill("tr.row:last-child textarea.value", value)
    page.click('button[aria-label="Remove nickname"]')
    page.click("#save")
    expect(page.locator('[data-error-for="age"]')).to_contain_text("/age: ")
    expect(page.locator("#messages")).to_contain_text("The platform's schema refuses this document")
    expect(page.locator("#messages")).to_contain_text("nickname")
    expect(page.locator('[data-error-for="nickname"]')).to_have_count(0)  # removed, not shown
    value_box(page, "age").fill("30")
    page.click("#add-key")
    page.fill("tr.row:last-child input.key", "nickname")
    page.fill("tr.row:last-child textarea.value", '"annie"')
    page.click("#save")
    expect(page.locator("#messages")).to_have_text("Saved: version 1.")


def test_protected_keys_are_read_only_and_a_403_names_the_keys(
    host: DemoHost, page: Page
) -> None:
    """A protected key a member has is shown read-only; a new key under a protected prefix
    gets the API's 403, explained beside it, and nothing is saved."""
    users = host.platform("prot", "ann\nboss --admin\n")
    as_boss = {"platform_key": "prot", "username": "ann"}
    patch = host.call(users["boss"], "PATCH", params=as_boss, json={"metadata": {"plan": "pro"}})
    assert patch.status_code == 200
    policy = {"protected_keys": ["plan", "billing_*"]}
    assert host.call(
        users["boss"], "PUT", "policy/", params={"platform_key": "prot"}, json=policy
    ).status_code == 200
    sign_in(page, host, users["ann"], "#/prot")
    plan = value_box(page, "plan")
    expect(plan).to_have_text('"pro"')
    expect(plan).to_have_js_property("tagName", "PRE")  # text, not a field
    expect(page.locator('tr.row[data-key="plan"] .badge.protected')).to_have_text("protected")
    expect(page.locator('button[aria-label="Remove plan"]')).to_have_count(0)
    expect(page.locator("#policy-note")).to_contain_text("plan, billing_*")
    page.click("#add-key")
    page.fill("tr.row:last-child input.key", "billing_email")
    page.fill("tr.row:last-child textarea.value", '"ann@example.com"')
    page.click("#save")
    expect(page.locator("#messages")).to_contain_text(
        "Only tenant admins can change these keys: billing_email."
    )
    expect(page.locator('[data-error-for="billing_email"]')).to_contain_text(
        "Only a tenant admin can change this key"
    )
    body = host.call(users["ann"], "GET", params={"platform_key": "prot"}).json()
    assert body["metadata"] == {"plan": "pro"}


def test_an_admin_edits_a_members_protected_key(host: DemoHost, page: Page) -> None:
    """A tenant admin opening a member's document can change its protected keys."""
    users = host.platform("adm", "ann\nboss --admin\n")
    params = {"platform_key": "adm", "username": "ann"}
    host.call(users["boss"], "PATCH", params=params, json={"metadata": {"plan": "free"}})
    host.call(users["boss"], "PUT", "policy/", params={"platform_key": "adm"},
              json={"protected_keys": ["plan"]})
    sign_in(page, host, users["boss"], "#/adm/metadata/ann")
    expect(page.locator("#target")).to_have_text("ann")
    expect(page.locator('tr.row[data-key="plan"] .badge.protected')).to_be_visible()
    value_box(page, "plan").fill('"pro"')
    page.click("#save")
    expect(page.locator("#messages")).to_have_text("Saved: version 2.")
    assert host.call(users["ann"], "GET", params={"platform_key": "adm"}).json()["metadata"] == {
        "plan": "pro"
    }


def test_an_admin_dry_runs_a_policy_before_saving_it(host: DemoHost, page: Page) -> None:
    """The dry run counts the stored documents the schema would refuse, names them, and saves
    nothing; saving then stores the policy."""
    users = host.platform("pol", "ann\nbob\nboss --admin\n")
    for user, metadata in (("ann", {"age": "old"}), ("bob", {"age": 3})):
        host.call(users[user], "PATCH", params={"platform_key": "pol"}, json={"metadata": metadata})
    sign_in(page, host, users["boss"], "#/pol/policy")
    expect(page.locator("#policy-meta")).to_contain_text("The default policy")
    page.fill("#protected-keys", "plan\nbilling_*")
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    page.fill("#schema", json.dumps(schema))
    page.click("#dry-run")
    result = page.locator("#policy-result")
    expect(result).to_contain_text("Dry run, nothing saved: 1 stored document would not satisfy")
    expect(page.locator("#examples li")).to_have_count(1)
    expect(page.locator("#examples li")).to_contain_text(re.compile(r"^ann: /age: "))
    stored = host.call(users["boss"], "GET", "policy/", params={"platform_key": "pol"}).json()
    assert stored["version"] == 0 and stored["schema"] is None
    page.click("#save-policy")
    expect(result).to_contain_text("Saved as version 1.")
    expect(page.locator("#policy-meta")).to_contain_text("Version 1")
    stored = host.call(users["boss"], "GET", "policy/", params={"platform_key": "pol"}).json()
    assert stored["schema"] == schema and stored["protected_keys"] == ["plan", "billing_*"]
    page.fill("#private-keys", "plan")
    page.click("#dry-run")
    expect(page.locator("#messages")).to_contain_text('protected "plan" and private "plan"')
    page.fill("#private-keys", "")
    page.fill("#schema", '{"type": "nope"}')
    page.click("#dry-run")
    expect(page.locator("#schema-error")).not_to_be_empty()


def test_history_lists_every_change_and_restore_brings_a_version_back(
    host: DemoHost, page: Page
) -> None:
    """A tenant admin browses a member's history, newest first, and restores version 1: a new
    version with that document."""
    users = host.platform("hist", "ann\nboss --admin\n")
    for theme in ("dark", "light", "blue"):
        host.call(users["ann"], "PATCH", params={"platform_key": "hist"},
                  json={"metadata": {"theme": theme}})
    sign_in(page, host, users["boss"], "#/hist/history/ann")
    revisions = page.locator("#revisions li.revision")
    expect(revisions).to_have_count(3)
    expect(revisions.first).to_contain_text("Version 3")
    expect(revisions.first).to_contain_text("current")
    expect(revisions.nth(2).locator("dl.changes")).to_have_text(re.compile(r"^theme\s*\"dark\"$"))
    expect(revisions.nth(2)).to_contain_text('"theme": "dark"')
    page.click('li[data-version="1"] button')
    expect(page.locator("#messages")).to_have_text("Restored version 1: it is now version 4.")
    expect(revisions).to_have_count(4)
    expect(revisions.first).to_contain_text("restore")
    expect(revisions.first).to_contain_text("boss")
    body = host.call(users["ann"], "GET", params={"platform_key": "hist"}).json()
    assert body["metadata"] == {"theme": "dark"}


def test_a_member_restores_its_own_history(host: DemoHost, page: Page) -> None:
    users = host.platform("mine", "ann\n")
    for n in (1, 2):
        body = {"metadata": {"n": n}}
        host.call(users["ann"], "PATCH", params={"platform_key": "mine"}, json=body)
    sign_in(page, host, users["ann"], "#/mine")
    page.click("#tab-history")
    page.click('li[data-version="1"] button')
    expect(page.locator("#messages")).to_have_text("Restored version 1: it is now version 3.")
    page.click("#tab-metadata")
    expect(value_box(page, "n")).to_have_value("1")


XSS = '<img src=x onerror="window.__xss = 1; alert(1)">'


def test_html_in_keys_and_values_is_shown_as_text_and_runs_nothing(
    host: DemoHost, page: Page
) -> None:
    """A value (and a key) holding HTML is shown as the text it is, in the editor and in the
    history: no dialog, no element made from it, no script run."""
    users = host.platform("xss", "ann\nboss --admin\n")
    metadata = {"bio": XSS, XSS: {"nested": XSS}}
    host.call(users["ann"], "PATCH", params={"platform_key": "xss"}, json={"metadata": metadata})
    sign_in(page, host, users["ann"], "#/xss")
    expect(value_box(page, "bio")).to_have_value(json.dumps(XSS))
    expect(page.locator("tr.row code.key").nth(1)).to_have_text(XSS)
    assert page.locator("img").count() == 0
    page.click("#tab-history")
    expect(page.locator("#revisions dl.changes")).to_contain_text("<img src=x")
    expect(page.locator("#revisions pre")).to_contain_text("<img src=x")
    expect(page.locator("#revisions li.revision")).to_have_count(1)
    assert page.locator("img").count() == 0
    assert page.evaluate("() => window.__xss") is None


def test_demo_pages_have_a_csp_without_inline_script_and_the_api_stays_as_it_was(
    host: DemoHost,
) -> None:
    """The page, its modules and `/demo/me` carry the demo's Content-Security-Policy; the page
    has no inline script or handler; the metadata API's answers get no header of the demo's."""
    index = httpx.get(host.base + "/")
    assert index.status_code == 200
    module, me = httpx.get(host.base + "/demo/static/app.js"), httpx.get(host.base + "/demo/me")
    for response in (index, module, me):
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    assert module.headers["content-type"].startswith("text/javascript")
    assert not re.search(r"<script(?![^>]*\bsrc=)", index.text)
    assert not re.search(r"\son[a-z]+\s*=", index.text)
    token = host.tokens["john_doe"]
    api = httpx.get(host.base + URL, params={"platform_key": "acme-corp"},
                    headers={"Authorization": f"Token {token}"})
    assert api.status_code == 200
    assert not {"content-security-policy", "x-content-type-options", "referrer-policy"} & set(
        api.headers
    )
    unknown = httpx.get(host.base + "/nowhere")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Not found."})


def test_demo_me_names_the_user_and_its_platforms(host: DemoHost) -> None:
    users = host.platform("me-a", "meg\n")
    host.platform("me-b", "meg --admin\n")
    me = httpx.get(host.base + "/demo/me", headers={"Authorization": f"Token {users['meg']}"})
    assert me.status_code == 200 and me.headers["cache-control"] == "no-store"
    assert me.json() == {
        "username": "meg",
        "platforms": [
            {"platform_key": "me-a", "is_admin": False},
            {"platform_key": "me-b", "is_admin": True},
        ],
        "api": URL,
    }
    for headers, detail in (
        ({}, "Authentication credentials were not provided."),
        ({"Authorization": "Token nope"}, "Invalid token."),
    ):
        refused = httpx.get(host.base + "/demo/me", headers=headers)
        assert (refused.status_code, refused.json()) == (401, {"detail": detail})
        assert refused.headers["www-authenticate"] == "Token"


def test_a_user_of_several_platforms_switches_between_them(host: DemoHost, page: Page) -> None:
    """The platform picker lists the user's platforms; on one where it is a tenant admin, the
    admin's tabs appear."""
    users = host.platform("pick-a", "pia\n")
    host.platform("pick-b", "pia --admin\n")
    sign_in(page, host, users["pia"], "#/pick-a")
    picker = page.locator("select#platform")
    expect(picker.locator("option")).to_have_text(["pick-a", "pick-b"])
    expect(page.locator("#role")).to_have_text("member")
    expect(page.locator("#tab-users")).to_have_count(0)
    picker.select_option("pick-b")
    expect(page.locator("#role")).to_have_text("tenant admin")
    expect(page.locator("#panel-metadata h2")).to_have_text("Metadata of pia on pick-b")
    page.click("#tab-policy")
    expect(page.locator("#panel-policy h2")).to_have_text("Policy of pick-b")


def test_a_revoked_token_signs_the_page_out(host: DemoHost, page: Page) -> None:
    """After `revoke-token`, the next request the page makes gets 401 and the page asks to
    sign in again, saying why."""
    users = host.platform("revoke", "ann\n")
    sign_in(page, host, users["ann"], "#/revoke")
    result = run_cli("revoke-token", users["ann"], "--database", host.database, cwd=host.folder)
    assert result.returncode == 0, result.stderr
    page.click("#tab-history")
    expect(page.locator("#signin-error")).to_contain_text("Invalid token.")
    assert page.evaluate("() => sessionStorage.length") == 0


# --- tenant admins: the users list (EXTENSIONS.md section 4) -----------------------------------


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


# --- live changes (EXTENSIONS.md section 3) ---------------------------------------------------


def test_a_change_made_elsewhere_shows_up_live_within_two_seconds(
    host: DemoHost, browser: Browser, page: Page
) -> None:
    """An admin in another browser changes a member's document: the member's open page shows
    the new value within 2 s, and says who changed it."""
    users = host.platform("live", "ann\nboss --admin\n")
    sign_in(page, host, users["ann"], "#/live")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    other = browser.new_context()
    try:
        admin = other.new_page()
        sign_in(admin, host, users["boss"], "#/live/metadata/ann")
        admin.click("#add-key")
        admin.fill("tr.row:last-child input.key", "theme")
        admin.fill("tr.row:last-child textarea.value", '"dark"')
        admin.click("#save")
        expect(admin.locator("#messages")).to_have_text("Saved: version 1.")
        started = time.monotonic()
        expect(value_box(page, "theme")).to_have_value('"dark"', timeout=2000)
        assert time.monotonic() - started < 2
        expect(page.locator("#last-change")).to_have_text(
            "Changed live by boss (patch): version 1."
        )
    finally:
        other.close()


def test_a_live_change_keeps_the_edits_in_progress(
    host: DemoHost, browser: Browser, page: Page
) -> None:
    """A change from another tab updates the keys the member is not editing and keeps the
    edit in progress; saving then stores both."""
    users = host.platform("merge", "ann\n")
    params = {"platform_key": "merge"}
    host.call(users["ann"], "PATCH", params=params, json={"metadata": {"a": 1, "b": 1}})
    sign_in(page, host, users["ann"], "#/merge")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    value_box(page, "a").fill("2")
    other = browser.new_context()
    try:
        tab = other.new_page()
        sign_in(tab, host, users["ann"], "#/merge")
        value_box(tab, "b").fill("5")
        tab.click("#save")
        expect(tab.locator("#messages")).to_have_text("Saved: version 2.")
    finally:
        other.close()
    expect(value_box(page, "b")).to_have_value("5", timeout=2000)
    expect(value_box(page, "a")).to_have_value("2")
    page.click("#save")
    expect(page.locator("#messages")).to_have_text("Saved: version 3.")
    assert host.call(users["ann"], "GET", params=params).json()["metadata"] == {"a": 2, "b": 5}


def test_the_event_stream_parser_reads_split_lines_comments_and_ids(
    host: DemoHost, page: Page
) -> None:
    """The client's parser (client/sse.js, which the page's live view reads with) parses the
    event-stream format however the network splits it: CRLF across chunks, comments,
    multi-line data, and the last id to resume from."""
    page.goto(host.base + "/")
    seen = page.evaluate(
        """async () => {
        const { EventStreamParser } = await import("/demo/static/client/sse.js");
        const seen = [];
        const parser = new EventStreamParser((event) => seen.push(event));
        for (const chunk of [": keep-alive\\r", "\\nid: 7\\r\\nevent: change\\r\\nda",
                             'ta: {"a"', ":1}\\r\\n\\r", "\\ndata: x\\ndata: y\\n\\nid: 9\\n\\n"]) {
          parser.push(chunk);
        }
        return { seen, last: parser.lastEventId };
      }"""
    )
    assert seen == {
        "seen": [
            {"type": "change", "data": '{"a":1}', "id": "7"},
            {"type": "message", "data": "x\ny", "id": "7"},
        ],
        "last": "9",
    }


def test_after_a_server_restart_the_page_resumes_with_last_event_id(
    tmp_path: Path, browser: Browser
) -> None:
    """The page's stream ends when its server stops; a change made meanwhile (through another
    server on the same database) arrives once the server is back, the page asking from its
    last event id on."""
    database = f"sqlite:///{tmp_path / 'restart.db'}"
    port = free_port()
    context = browser.new_context()
    page = context.new_page()
    asked: list[dict[str, str]] = []
    page.on("request", lambda r: "/events/" in r.url and asked.append(r.headers))
    try:
        with serving(database, tmp_path, port) as (base, proc, printed):
            john = tokens(printed)["john_doe"]
            restarted = DemoHost(base, database, tmp_path, {})
            restarted.call(john, "PATCH", params={"platform_key": "acme-corp"},
                           json={"metadata": {"theme": "dark"}})
            sign_in(page, restarted, john, "#/acme-corp")
            expect(page.locator("#live")).to_have_attribute("data-state", "live")
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
            expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
        with serving(database, tmp_path) as (other, _, _):
            DemoHost(other, database, tmp_path, {}).call(
                john, "PATCH", params={"platform_key": "acme-corp"},
                json={"metadata": {"theme": "light"}},
            )
        with serving(database, tmp_path, port):
            expect(value_box(page, "theme")).to_have_value('"light"', timeout=20_000)
            expect(page.locator("#live")).to_have_attribute("data-state", "live")
    finally:
        context.close()
    assert "last-event-id" not in asked[0]
    assert asked[-1].get("last-event-id")
