"""A real browser on the demo web app: Debian's Chromium driven by Playwright, and the example
host served as `python -m example_host serve` on a fresh SQLite file.  Shared by the browser
tests and `scripts/screenshots.py`.

Chromium comes from the system (`apt-get install chromium`, which `.ci/run` does), never from
`playwright install`: the wheel's driver talks to any recent Chromium over CDP.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, Playwright

from .conftest import URL
from .hosts import served, tokens
from .test_example_host import run_cli

__all__ = ["DemoHost", "chromium_installed", "demo_host", "launch_chromium", "serving", "sign_in", "tokens"]

#: `$CHROMIUM`, else `chromium` on the PATH (Debian's package installs /usr/bin/chromium).
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless, as root in CI, on a machine whose network reaches nothing: no sandbox (root), no
# GPU, and none of the background requests Chromium makes to Google on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_installed() -> bool:
    return Path(CHROMIUM).exists()


def launch_chromium(playwright: Playwright) -> Browser:
    if not chromium_installed():
        raise RuntimeError(
            f"no Chromium at {CHROMIUM}: `apt-get install chromium` (as .ci/run does), "
            "or set $CHROMIUM"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@dataclass
class DemoHost:
    """A served example host: its base URL, database and the demo users' printed tokens."""

    base: str
    database: str
    folder: Path
    tokens: dict[str, str]
    platforms: list[str] = field(default_factory=list)

    def platform(self, key: str, users: str) -> dict[str, str]:
        """Create platform `key` with `users` (`add-users` lines) through the CLI while the
        server runs; returns each user's token."""
        created = run_cli("add-platform", key, "--database", self.database, cwd=self.folder)
        assert created.returncode == 0, created.stderr
        lines = self.folder / f"{key}.users"
        lines.write_text(users)
        result = run_cli(
            "add-users", "--platform", key, str(lines), "--database", self.database, cwd=self.folder
        )
        assert result.returncode == 0, result.stderr
        self.platforms.append(key)
        return dict(line.split(" ") for line in result.stdout.splitlines())

    def api(self, token: str) -> httpx.Client:
        """An HTTP client of the metadata endpoint acting with `token`."""
        return httpx.Client(
            base_url=self.base + URL, headers={"Authorization": f"Token {token}"}, timeout=30
        )

    def call(self, token: str, method: str, resource: str = "", **kwargs: Any) -> httpx.Response:
        with self.api(token) as client:
            return client.request(method, resource, **kwargs)


@contextmanager
def serving(
    database: str, folder: Path, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes], str]]:
    """`python -m example_host serve` on `database` (and `port`, else a free one); yields its
    base URL, the process and what it printed (tests/hosts.py)."""
    with served(database, folder, port=port) as running:
        yield running


@contextmanager
def demo_host(folder: Path) -> Iterator[DemoHost]:
    """`python -m example_host serve` on a new SQLite file in `folder`."""
    database = f"sqlite:///{folder / 'demo.db'}"
    with serving(database, folder) as (base, _proc, printed):
        yield DemoHost(base, database, folder, tokens(printed))


def sign_in(page: Page, host: DemoHost, token: str, where: str = "") -> None:
    """Open the demo (at `where`, a `#/...` place), sign in with `token` through the form,
    and wait for the first view."""
    page.goto(host.base + "/" + where)
    page.fill("#token", token)
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("section.panel")


def value_box(page: Page, key: str) -> Any:
    """The editor's value field (or read-only value) of top-level key `key`."""
    return page.locator(f'tr.row[data-key="{css_string(key)}"] .value')


def css_string(text: str) -> str:
    return re.sub(r'(["\\])', r"\\\1", text)
