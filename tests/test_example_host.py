"""The example host: its command line (in subprocesses, as outside tools use it), its token
backend over its own tables (in process, on every database), and `serve` as a real server."""

from __future__ import annotations

import asyncio

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from databases import DatabaseURL
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from example_host import HostDB, TokenAuthBackend, UnknownPlatform, create_app
from starlette_platform_metadata import DatabaseStore, Identity, PlatformAccess, changes

from .conftest import DATABASE_KINDS, POSTGRES_URL, URL

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r"^[0-9a-f]{40}$")
P = "acme-corp"


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "example_host", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


@contextlib.asynccontextmanager
async def started(url: str) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = create_app(url)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            yield app, client


# --- the command line ------------------------------------------------------------------------


@dataclass
class CliRun:
    url: str
    path: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    admin: subprocess.CompletedProcess[str]
    platform_again: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """One SQLite file set up through the CLI: platform acme-corp (added twice), alice added
    twice, boss added with --admin."""
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "host.db"
    url = f"sqlite:///{path}"
    assert run_cli("add-platform", P, "--database", url, cwd=folder).returncode == 0
    platform_again = run_cli("add-platform", P, "--database", url, cwd=folder)
    first = run_cli("add-user", "alice", "--platform", P, "--database", url, cwd=folder)
    second = run_cli("add-user", "alice", "--platform", P, "--database", url, cwd=folder)
    admin = run_cli("add-user", "boss", "--platform", P, "--admin", "--database", url, cwd=folder)
    return CliRun(url, path, first, second, admin, platform_again)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_add_platform_twice_succeeds_and_keeps_one_platform(cli: CliRun) -> None:
    """`add-platform` of an existing key exits 0 and changes nothing."""
    assert cli.platform_again.returncode == 0, cli.platform_again.stderr
    with sqlite3.connect(cli.path) as connection:
        assert connection.execute("SELECT key FROM platforms").fetchall() == [(P,)]


def test_add_user_prints_a_40_hex_token_on_the_last_line(cli: CliRun) -> None:
    """`add-user` exits 0 with a DRF-like 40-hex token alone on stdout's last line."""
    for result in (cli.first, cli.second, cli.admin):
        assert result.returncode == 0, result.stderr
        assert TOKEN.match(last_line(result))
    assert last_line(cli.first) != last_line(cli.second)


def test_tokens_table_holds_no_plaintext_token(cli: CliRun) -> None:
    """Only SHA-256 digests are stored: no printed token appears anywhere in the database."""
    tokens = [last_line(r) for r in (cli.first, cli.second, cli.admin)]
    with sqlite3.connect(cli.path) as connection:
        hashes = [row[0] for row in connection.execute("SELECT key_hash FROM tokens")]
        dump = "\n".join(connection.iterdump())
    assert len(hashes) == 3 and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
    assert not any(token in dump for token in tokens)
    assert not any(token.encode() in cli.path.read_bytes() for token in tokens)


async def test_every_token_printed_stays_valid_and_admin_flag_grants_admin(cli: CliRun) -> None:
    """Both of alice's tokens work; `--admin` makes boss a tenant admin, alice stays a member."""
    async with started(cli.url) as (_, client):
        for result in (cli.first, cli.second):
            r = await client.get(URL, params={"platform_key": P}, headers=auth(last_line(result)))
            assert r.status_code == 200 and r.json()["username"] == "alice"
        boss = auth(last_line(cli.admin))
        r = await client.get(URL, params={"platform_key": P, "username": "alice"}, headers=boss)
        assert r.status_code == 200 and r.json()["username"] == "alice"
        alice = auth(last_line(cli.first))
        r = await client.get(URL, params={"platform_key": P, "username": "boss"}, headers=alice)
        assert r.status_code == 403


def test_add_user_on_an_unknown_platform_fails_with_a_message(tmp_path: Path) -> None:
    """An unknown platform: non-zero exit, a message naming it on stderr, no token, no user."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    result = run_cli("add-user", "bob", "--platform", "nope", "--database", url, cwd=tmp_path)
    assert result.returncode != 0
    assert "'nope' does not exist" in result.stderr and result.stdout == ""
    with sqlite3.connect(tmp_path / "host.db") as connection:
        assert connection.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_database_defaults_to_env_then_a_file_in_the_current_folder(tmp_path: Path) -> None:
    """Without --database: $DATABASE_URL, else example_host.db in the working directory."""
    env_db = tmp_path / "from_env.db"
    result = run_cli("add-platform", P, cwd=tmp_path, env={"DATABASE_URL": f"sqlite:///{env_db}"})
    assert result.returncode == 0 and env_db.exists()
    assert not (tmp_path / "example_host.db").exists()
    assert run_cli("add-platform", P, cwd=tmp_path).returncode == 0
    assert (tmp_path / "example_host.db").exists()


# --- `serve`, a real server ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(check: Any, seconds: float, what: str, proc: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {seconds} s waiting for {what}")


def stop(proc: subprocess.Popen[bytes], seconds: float = 20) -> None:
    """Stop a served process as an operator does (SIGINT); killed if still there `seconds` later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_an_empty_database_creates_demo_users_and_serves(
    tmp_path: Path, workers: int
) -> None:
    """`serve` prints demo tokens and a curl command, answers that curl when run at once (the
    socket listens before the line is printed, even while workers start), and stops cleanly
    on SIGINT."""
    port = free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    database = f"sqlite:///{tmp_path / 'h.db'}"
    args = ["serve", "--port", str(port), "--workers", str(workers), "--database", database]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "example_host", *args],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        printed = wait_for(
            lambda: "curl" in out.read_text() and out.read_text(), 30, "tokens", proc
        )
        tokens = dict(re.findall(r"^\s+(\w+)\s.*token ([0-9a-f]{40})$", printed, re.M))
        assert set(tokens) == {"john_doe", "acme_admin"}
        curl = next(line for line in printed.splitlines() if "curl" in line)
        assert f"Token {tokens['john_doe']}" in curl
        assert f"http://127.0.0.1:{port}{URL}?platform_key={P}" in curl

        base = f"http://127.0.0.1:{port}"
        # No waiting for the server and no retry: the printed command must work at once.
        with httpx.Client(base_url=base, timeout=30) as client:
            john, admin = auth(tokens["john_doe"]), auth(tokens["acme_admin"])
            r = client.get(URL, params={"platform_key": P}, headers=john)
            assert r.status_code == 200
            assert r.json()["metadata"] == {} and r.json()["created_at"] is None
            body = {"metadata": {"theme": "dark"}}
            r = client.patch(URL, params={"platform_key": P}, headers=john, json=body)
            assert r.status_code == 200 and r.json()["metadata"] == {"theme": "dark"}
            r = client.get(URL, params={"platform_key": P, "username": "john_doe"}, headers=admin)
            assert r.status_code == 200 and r.json()["metadata"] == {"theme": "dark"}
            r = client.get(URL, params={"platform_key": P, "username": "acme_admin"}, headers=john)
            assert r.status_code == 403
    finally:
        stop(proc)
    assert proc.returncode == 0, err.read_text()
    assert err.read_text().count("Application shutdown complete") == workers


def run_serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "example_host", "serve", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_on_a_port_in_use_fails_before_creating_demo_users(tmp_path: Path) -> None:
    """A port already taken stops `serve` with uvicorn's status 3, before it creates demo
    tokens that would never be printed."""
    database = tmp_path / "h.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve(tmp_path, "--port", str(port), "--database", f"sqlite:///{database}")
    assert result.returncode == 3, result.stderr
    assert "Address already in use" in result.stderr and "token" not in result.stdout
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT count(*) FROM platforms").fetchone() == (0,)


def test_serve_on_an_unreachable_database_fails_before_claiming_to_run(tmp_path: Path) -> None:
    """A database that does not answer is reported (exit 1) before uvicorn's "running on"
    line could suggest the server is up."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]  # bound, never listening: connections are refused
        result = run_serve(
            tmp_path,
            "--port",
            str(free_port()),
            "--database",
            f"postgresql://u:p@127.0.0.1:{dead}/x",
        )
    assert result.returncode == 1, result.stderr
    assert "PostgreSQL unavailable" in result.stderr and "running on" not in result.stderr


# --- the token backend, in process, on every database ------------------------------------------


@pytest.fixture(params=DATABASE_KINDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'host.db'}"
        return
    import asyncpg

    assert POSTGRES_URL is not None
    name = f"host_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield str(DatabaseURL(POSTGRES_URL).replace(database=name))
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


@dataclass
class Host:
    app: Starlette
    db: HostDB
    client: httpx.AsyncClient
    tokens: dict[str, str]

    def headers(self, username: str) -> dict[str, str]:
        return auth(self.tokens[username])


@pytest.fixture
async def host(database_url: str) -> AsyncIterator[Host]:
    """The host app, started: acme-corp {john_doe, jane, acme_admin*}, other {eve,
    other_admin*}, empty {nobody} (* = tenant admin)."""
    async with started(database_url) as (app, client):
        db: HostDB = app.state.db
        tokens: dict[str, str] = {}
        for platform, username, admin in [
            (P, "john_doe", False),
            (P, "jane", False),
            (P, "acme_admin", True),
            ("other", "eve", False),
            ("other", "other_admin", True),
        ]:
            await db.add_platform(platform)
            tokens[username] = await db.add_user(username, platform, admin=admin)
        await db.add_platform("empty")
        tokens["nobody"] = await db.add_user("nobody", "empty")
        yield Host(app, db, client, tokens)


async def test_missing_or_foreign_scheme_is_401_not_provided(host: Host) -> None:
    """No Authorization header, or a Bearer one: 401 'not provided' with WWW-Authenticate: Token."""
    for headers in ({}, {"Authorization": f"Bearer {host.tokens['john_doe']}"}):
        r = await host.client.get(URL, params={"platform_key": P}, headers=headers)
        assert r.status_code == 401
        assert r.json() == {"detail": "Authentication credentials were not provided."}
        assert r.headers["WWW-Authenticate"] == "Token"


async def test_malformed_and_unknown_tokens_get_drf_401_bodies(host: Host) -> None:
    """'Token', 'Token a b' and an unknown key get DRF's exact 401 bodies."""
    cases = {
        "Token": "Invalid token header. No credentials provided.",
        "Token a b": "Invalid token header. Token string should not contain spaces.",
        f"Token {'0' * 40}": "Invalid token.",
        "Token x": "Invalid token.",
    }
    for header, detail in cases.items():
        headers = {"Authorization": header}
        r = await host.client.get(URL, params={"platform_key": P}, headers=headers)
        assert (r.status_code, r.json()) == (401, {"detail": detail}), header
        assert r.headers["WWW-Authenticate"] == "Token"


async def test_token_keyword_is_case_insensitive(host: Host) -> None:
    """`token <key>` and `TOKEN <key>` authenticate as `Token <key>` does."""
    for keyword in ("token", "TOKEN"):
        r = await host.client.get(
            URL,
            params={"platform_key": P},
            headers={"Authorization": f"{keyword} {host.tokens['john_doe']}"},
        )
        assert r.status_code == 200 and r.json()["username"] == "john_doe"


async def test_member_reads_and_writes_its_own_metadata(host: Host) -> None:
    """A member's PATCH is visible to its GET, and to nobody else's pair."""
    john = host.headers("john_doe")
    body = {"metadata": {"a": 1}}
    r = await host.client.patch(URL, params={"platform_key": P}, headers=john, json=body)
    assert r.status_code == 200 and r.json()["metadata"] == {"a": 1}
    r = await host.client.get(URL, params={"platform_key": P, "username": "john_doe"}, headers=john)
    assert r.json()["metadata"] == {"a": 1}
    r = await host.client.get(URL, params={"platform_key": P}, headers=host.headers("jane"))
    assert r.json()["metadata"] == {}


async def test_endpoint_is_served_with_and_without_slash_and_other_paths_are_json(
    host: Host,
) -> None:
    """No redirect for the slashless path; the OpenAPI document is there; the host's own
    404 and 405 are JSON in DRF's shape."""
    john = host.headers("john_doe")
    r = await host.client.get(URL.rstrip("/"), params={"platform_key": P}, headers=john)
    assert r.status_code == 200 and r.json()["username"] == "john_doe"
    r = await host.client.get(URL + "openapi.json")
    assert r.status_code == 200 and r.json()["openapi"] == "3.1.0"
    r = await host.client.get("/elsewhere", headers=john)
    assert (r.status_code, r.json()) == (404, {"detail": "Not found."})
    r = await host.client.get(URL + "elsewhere", headers=john)
    assert (r.status_code, r.json()) == (404, {"detail": "Not found."})


async def test_tenant_questions_are_answered_from_memberships(host: Host) -> None:
    """Unknown platform 404, non-member 403, member on others 403, admin 200 / 404 off-platform."""
    c = host.client
    admin_only = {"error": "Only tenant admins can access other users' metadata"}
    cases = [
        ("john_doe", "nope", None, 404, {"error": "Platform not found"}),
        ("eve", P, None, 403, {"error": "You are not a member of this platform"}),
        ("john_doe", P, "jane", 403, admin_only),
        ("acme_admin", P, "eve", 404, {"error": "User not found"}),
        ("acme_admin", P, "ghost", 404, {"error": "User not found"}),
        ("other_admin", P, "john_doe", 403, admin_only),
    ]
    for caller, platform, target, status, body in cases:
        params = {"platform_key": platform} | ({"username": target} if target else {})
        r = await c.get(URL, params=params, headers=host.headers(caller))
        assert (r.status_code, r.json()) == (status, body), (caller, platform, target)
    params = {"platform_key": P, "username": "jane"}
    r = await c.get(URL, params=params, headers=host.headers("acme_admin"))
    assert r.status_code == 200 and r.json()["username"] == "jane"


async def test_access_returns_the_callers_standing(host: Host) -> None:
    """`access` reports existence, membership, admin flag and target membership."""
    backend = TokenAuthBackend(host.db)

    async def identity(username: str) -> Identity:
        conn = HTTPConnection(
            {
                "type": "http",
                "headers": [(b"authorization", f"Token {host.tokens[username]}".encode())],
            }
        )
        found = await backend.authenticate(conn)
        assert found is not None and found.username == username
        return found

    john, admin = await identity("john_doe"), await identity("acme_admin")
    assert await backend.access(john, "nope", None) == PlatformAccess(platform_exists=False)
    assert await backend.access(john, P, None) == PlatformAccess(True, True, False, False)
    assert await backend.access(admin, P, "john_doe") == PlatformAccess(True, True, True, True)
    assert await backend.access(admin, P, "eve") == PlatformAccess(True, True, True, False)
    assert await backend.access(john, "other", None) == PlatformAccess(True, False, False, False)


def count_statements(host: Host, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The host-table statements run from now on; opening a SQLite connection fails."""
    import sqlite3

    driver: Any = host.db._db
    statements: list[str] = []
    original = driver.fetchrow

    async def counting(sql: str, *args: Any) -> Any:
        statements.append(sql)
        return await original(sql, *args)

    def no_new_connection(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a request opened a new SQLite connection")

    monkeypatch.setattr(driver, "fetchrow", counting)
    monkeypatch.setattr(sqlite3, "connect", no_new_connection)
    return statements


def listening(host: Host) -> bool:
    """Whether the host learns of changes to its tables by NOTIFY (PostgreSQL)."""
    return host.db.watch is not None


async def test_a_request_costs_one_statement_while_the_host_tables_are_unchanged(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request reads the generation, the token and the access (3 statements); each
    repeat reads only the generation (SQLite), or nothing while PostgreSQL's NOTIFY says
    nothing changed, on a connection that is already open."""
    statements = count_statements(host, monkeypatch)
    john = host.headers("john_doe")
    for _ in range(3):
        r = await host.client.get(URL, params={"platform_key": P}, headers=john)
        assert r.status_code == 200
    # PostgreSQL: the listener's one test notification, when it starts (generation.py).
    pings = [s for s in statements if "pg_notify" in s]
    assert len(pings) == (1 if listening(host) else 0)
    statements = [s for s in statements if "pg_notify" not in s]
    repeats = 0 if listening(host) else 2
    assert len(statements) == 3 + repeats
    assert statements[3:] == [statements[0]] * repeats
    assert "example_host_generation" in statements[0]


async def test_a_change_by_another_connection_is_read_once_then_known(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change to the host tables by another connection: the requests after it read the
    changed answers once (SQLite: and the counter every time).  On PostgreSQL the change's
    NOTIFY makes the next request read the counter, then nothing again, and a lost listener
    means reading the counter on every request, never a stale answer."""
    jane = host.headers("jane")
    as_jane = {"platform_key": P, "username": "john_doe"}
    assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 403
    async with HostDB(host.db.url) as other:
        await other.add_user("jane", P, admin=True)
    watch = host.db.watch
    if watch is None:
        statements = count_statements(host, monkeypatch)
        for _ in range(2):
            assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 200
        assert len(statements) == 3 + 1  # the counter each time; the token and access once
        return
    for _ in range(100):  # the notification's trip
        if watch.known is None:
            break
        await asyncio.sleep(0.01)
    statements = count_statements(host, monkeypatch)
    for _ in range(2):
        assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 200
    assert len(statements) == 3  # the counter, the token, the access; then nothing
    await watch.listener.close()  # the listener is lost: read on every request again
    for _ in range(2):
        assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 200
    assert [s for s in statements[3:] if "example_host_generation" in s]


async def test_metadata_writes_leave_cached_answers_valid(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PATCHes, by this app or another process's store, change the metadata table, not the
    host tables: the next request still answers its auth questions from memory."""
    john, admin = host.headers("john_doe"), host.headers("acme_admin")
    as_admin = {"platform_key": P, "username": "john_doe"}
    for headers, params in [(john, {"platform_key": P}), (admin, as_admin)]:
        assert (await host.client.get(URL, params=params, headers=headers)).status_code == 200
    async with DatabaseStore(host.db.url) as other_process:
        statements = count_statements(host, monkeypatch)
        r = await host.client.patch(
            URL, params={"platform_key": P}, headers=john, json={"metadata": {"a": 1}}
        )
        assert r.status_code == 200
        await other_process.update(P, "john_doe", changes.patch({"b": 2}))
        r = await host.client.get(URL, params=as_admin, headers=admin)
    assert r.status_code == 200 and r.json()["metadata"] == {"a": 1, "b": 2}
    # The generation, once per request (PostgreSQL: known from NOTIFY, not read).
    assert len(statements) == (0 if listening(host) else 2)


async def test_cached_answers_follow_changes_made_by_other_processes(host: Host) -> None:
    """A membership, admin flag or platform changed from another connection (the CLI, another
    worker) takes effect on the very next request, cache or not."""
    john, jane = host.headers("john_doe"), host.headers("jane")
    other_url = {"platform_key": "other"}
    assert (await host.client.get(URL, params=other_url, headers=john)).status_code == 403
    as_jane = {"platform_key": P, "username": "john_doe"}
    assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 403
    async with HostDB(host.db.url) as other:  # another connection, as a CLI process has
        await other.add_user("john_doe", "other")
        await other.add_user("jane", P, admin=True)
    assert (await host.client.get(URL, params=other_url, headers=john)).status_code == 200
    assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 200
    async with HostDB(host.db.url) as other:
        await other.add_user("jane", P, admin=False)  # and back: demoted
    assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 403


@pytest.mark.parametrize(
    "statement, request_as, status",
    [
        # Hand-typed SQL, not through HostDB: the triggers still see it.
        ("DELETE FROM tokens", "john_doe", 401),
        ("DELETE FROM memberships WHERE is_admin", "acme_admin", 403),
        ("UPDATE memberships SET is_admin = TRUE", "jane", 200),
        ("UPDATE platforms SET key = 'renamed' WHERE key = 'acme-corp'", "john_doe", 404),
        ("DELETE FROM users WHERE username = 'john_doe'", "john_doe", 401),
    ],
)
async def test_any_change_to_the_host_tables_takes_effect_on_the_next_request(
    host: Host, statement: str, request_as: str, status: int
) -> None:
    """Revoking a token, a membership or an admin flag with plain SQL from another connection
    is seen by the very next request, although the answers were cached a moment before."""
    params = {"platform_key": P, "username": "john_doe"}
    headers = host.headers(request_as)
    before = await host.client.get(URL, params=params, headers=headers)
    assert before.status_code == (200 if request_as != "jane" else 403)
    async with HostDB(host.db.url) as other:
        await (await other.connection()).fetchrow(statement)
    r = await host.client.get(URL, params=params, headers=headers)
    assert r.status_code == status, r.text


async def test_add_user_on_an_unknown_platform_changes_nothing(host: Host) -> None:
    """`HostDB.add_user` raises `UnknownPlatform` and creates no user, membership or token."""
    with pytest.raises(UnknownPlatform):
        await host.db.add_user("newcomer", "nope")
    with pytest.raises(UnknownPlatform):
        await host.db.add_user("newcomer", "nope", admin=True)
    r = await host.client.get(
        URL, params={"platform_key": P, "username": "newcomer"}, headers=host.headers("acme_admin")
    )
    assert r.status_code == 404


async def test_re_adding_a_member_updates_its_admin_flag(host: Host) -> None:
    """`add_user` again for the same pair updates `is_admin`; the old token keeps working."""
    old = host.headers("jane")
    await host.db.add_user("jane", P, admin=True)
    r = await host.client.get(URL, params={"platform_key": P, "username": "john_doe"}, headers=old)
    assert r.status_code == 200
    await host.db.add_user("jane", P, admin=False)
    r = await host.client.get(URL, params={"platform_key": P, "username": "john_doe"}, headers=old)
    assert r.status_code == 403


async def test_host_tables_record_their_schema_version(host: Host) -> None:
    """The host's tables carry a schema version (once), so a later release can migrate them."""
    from example_host.db import SCHEMA_VERSION

    driver = await host.db.connection()
    row = await driver.fetchrow("SELECT count(*), max(version) FROM example_host_schema")
    assert row is not None and tuple(row) == (1, SCHEMA_VERSION)
    await host.db.disconnect()
    await host.db.connect()  # opening again creates nothing twice
    row = await (await host.db.connection()).fetchrow("SELECT count(*) FROM example_host_schema")
    assert row is not None and row[0] == 1


async def test_the_served_app_freezes_what_startup_left_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`create_app_from_env` (what `serve` runs) hands the objects alive after startup to
    `gc.freeze()`, so full collections stop walking them, and raises the young generation's
    threshold while it serves (put back at shutdown); `create_app` leaves GC alone."""
    import gc

    from example_host.app import YOUNG_GC_THRESHOLD, create_app, create_app_from_env

    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'gc.db'}")
    before = gc.get_threshold()
    assert before[0] != YOUNG_GC_THRESHOLD
    plain = create_app(f"sqlite:///{tmp_path / 'plain.db'}")
    for app, expected in ((plain, []), (create_app_from_env(), [True])):
        frozen.clear()
        async with app.router.lifespan_context(app):
            assert frozen == expected
            serving = gc.get_threshold()
            assert serving == ((YOUNG_GC_THRESHOLD, *before[1:]) if expected else before)
        assert gc.get_threshold() == before


async def test_host_tables_of_schema_1_get_the_notifying_trigger(host: Host) -> None:
    """A database whose host tables a release before NOTIFY created (schema 1, a trigger that
    only raises the counter) is upgraded on open: on PostgreSQL the trigger then notifies, so
    no process trusts a counter that nobody announces changes of."""
    db = await host.db.connection()
    await db.fetchrow("UPDATE example_host_schema SET version = 1")
    if listening(host):
        await db.fetchrow(
            "CREATE OR REPLACE FUNCTION example_host_bump() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN UPDATE example_host_generation SET n = n + 1; RETURN NULL; END $$"
        )
    await host.db.disconnect()
    await host.db.connect()
    db = await host.db.connection()
    row = await db.fetchrow("SELECT max(version) FROM example_host_schema")
    assert row[0] == 2
    if listening(host):
        source = await db.fetchrow("SELECT prosrc FROM pg_proc WHERE proname = 'example_host_bump'")
        assert "pg_notify" in source[0]


async def test_a_listener_that_hears_nothing_is_not_trusted(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LISTEN connection that does not hear a test notification sent through the requests'
    connections (as through a transaction pooler) is dropped: every request then reads the
    counter, so a change by another process is never missed."""
    watch = host.db.watch
    jane = host.headers("jane")
    as_jane = {"platform_key": P, "username": "john_doe"}
    if watch is None:  # SQLite: no listener, the counter on every request
        statements = count_statements(host, monkeypatch)
        for _ in range(2):
            assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 403
        assert len([s for s in statements if "example_host_generation" in s]) == 2
        return
    import example_host.generation as generation

    monkeypatch.setattr(generation, "PING_SECONDS", 0.3)
    if watch.listener is not None:
        await watch.listener.close()
    watch.forget()
    db = await host.db.connection()

    async def lost_ping(payload: str) -> None:  # sent where the listener cannot hear it
        await db.fetchrow("SELECT pg_notify('elsewhere', $1)", payload)

    monkeypatch.setattr(watch, "notify", lost_ping)
    statements = count_statements(host, monkeypatch)
    for _ in range(2):
        assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 403
    assert watch.listener is None and watch.known is None
    assert len([s for s in statements if "example_host_generation" in s]) == 2
    async with HostDB(host.db.url) as other:
        await other.add_user("jane", P, admin=True)
    assert (await host.client.get(URL, params=as_jane, headers=jane)).status_code == 200
