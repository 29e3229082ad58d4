"""The example host's user commands, run as operators run them (subprocesses on one SQLite
file), against an app that answers from its auth cache: `add-users`, `list-users`,
`remove-user`, `revoke-token`, and the hint `serve` prints on a database with data."""

from __future__ import annotations

import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from example_host import HostDB, UnknownPlatform
from example_host.db import UnknownUser, hash_token

from .conftest import URL
from .test_example_host import ROOT, TOKEN, auth, database_url, run_cli, started
from .hosts import served

__all__ = ["database_url"]  # the fixture, imported to be used here

pytestmark = pytest.mark.anyio

P = "acme-corp"


def setup_platform(tmp_path: Path, lines: str, *options: str) -> tuple[str, dict[str, str]]:
    """A SQLite file with platform acme-corp and the users of `lines` added by `add-users`;
    returns its URL and each user's token."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    assert run_cli("add-platform", P, "--database", url, cwd=tmp_path).returncode == 0
    (tmp_path / "users.txt").write_text(lines)
    result = run_cli("add-users", "--platform", P, "users.txt", *options, "--database", url,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tokens = dict(line.split(" ") for line in result.stdout.splitlines())
    return url, tokens


def list_users(url: str, tmp_path: Path) -> list[str]:
    result = run_cli("list-users", "--platform", P, "--database", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_add_users_prints_a_username_and_token_line_per_user_in_file_order(
    tmp_path: Path,
) -> None:
    """One `username token` line per user, in the file's order; comments and blank lines are
    skipped; `--admin` on a line makes that user a tenant admin."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    run_cli("add-platform", P, "--database", url, cwd=tmp_path)
    (tmp_path / "users.txt").write_text("# the team\nzoe\n\n  amir --admin\nbo\n")
    result = run_cli("add-users", "--platform", P, "users.txt", "--database", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line.split(" ") for line in result.stdout.splitlines()]
    assert [username for username, _ in lines] == ["zoe", "amir", "bo"]
    assert all(TOKEN.match(token) for _, token in lines)
    assert list_users(url, tmp_path) == ["amir admin", "bo member", "zoe member"]


def test_add_users_admin_option_makes_every_user_an_admin_and_reads_stdin(
    tmp_path: Path,
) -> None:
    """`--admin` as an option applies to every line; `-` reads the list from stdin."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    run_cli("add-platform", P, "--database", url, cwd=tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "example_host", "add-users", "--platform", P, "-", "--admin",
         "--database", url],
        input="ann\nben\n",
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert list_users(url, tmp_path) == ["ann admin", "ben admin"]


async def test_tokens_printed_by_add_users_work_with_their_roles(tmp_path: Path) -> None:
    """Each printed token authenticates its own user, and an admin line's token acts as a
    tenant admin on the others."""
    url, tokens = setup_platform(tmp_path, "alice\nboss --admin\n")
    async with started(url) as (_, client):
        r = await client.get(URL, params={"platform_key": P}, headers=auth(tokens["alice"]))
        assert r.status_code == 200 and r.json()["username"] == "alice"
        as_boss = {"platform_key": P, "username": "alice"}
        r = await client.get(URL, params=as_boss, headers=auth(tokens["boss"]))
        assert r.status_code == 200 and r.json()["username"] == "alice"


@pytest.mark.parametrize(
    "lines, message",
    [
        ("ok\nbad line here\n", "line 2: expected `USERNAME` or `USERNAME --admin`"),
        ("ok\nok --admin\n", "line 2: ok is already on line 1"),
        ("ok\nx --root\n", "line 2: expected"),
    ],
)
def test_add_users_with_a_bad_line_names_it_and_writes_nothing(
    tmp_path: Path, lines: str, message: str
) -> None:
    """A bad line exits 1 naming it, before anything is written: no user, no token."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    run_cli("add-platform", P, "--database", url, cwd=tmp_path)
    (tmp_path / "users.txt").write_text(lines)
    result = run_cli("add-users", "--platform", P, "users.txt", "--database", url, cwd=tmp_path)
    assert result.returncode == 1 and message in result.stderr and result.stdout == ""
    with sqlite3.connect(tmp_path / "host.db") as connection:
        assert connection.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_add_users_on_an_unknown_platform_fails_and_writes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'host.db'}"
    (tmp_path / "users.txt").write_text("ann\n")
    result = run_cli("add-users", "--platform", "nope", "users.txt", "--database", url,
                     cwd=tmp_path)
    assert result.returncode == 1 and "'nope' does not exist" in result.stderr
    with sqlite3.connect(tmp_path / "host.db") as connection:
        assert connection.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_add_users_creates_a_thousand_users_in_one_quick_transaction(tmp_path: Path) -> None:
    """1,000 users, one process, one transaction: seconds, not the minutes that 1,000
    `add-user` processes take (measured: 0.6 s for the whole command)."""
    lines = "".join(f"user{n:04d}{' --admin' if n % 100 == 0 else ''}\n" for n in range(1000))
    started_at = time.monotonic()
    url, tokens = setup_platform(tmp_path, lines)
    assert time.monotonic() - started_at < 15
    assert len(tokens) == 1000 and len(set(tokens.values())) == 1000
    users = list_users(url, tmp_path)
    assert len(users) == 1000 and users[:2] == ["user0000 admin", "user0001 member"]


def test_list_users_of_an_unknown_platform_fails_with_a_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'host.db'}"
    result = run_cli("list-users", "--platform", "nope", "--database", url, cwd=tmp_path)
    assert result.returncode == 1 and "'nope' does not exist" in result.stderr


async def test_a_revoked_token_is_refused_on_the_next_request_despite_the_cache(
    tmp_path: Path,
) -> None:
    """`revoke-token TOKEN` from another process: the app, which answered that token from
    memory a moment before, answers the next request 401 `Invalid token.`; the user's other
    tokens keep working."""
    url, tokens = setup_platform(tmp_path, "alice\n")
    second = run_cli("add-user", "alice", "--platform", P, "--database", url, cwd=tmp_path)
    other = second.stdout.split()[-1]
    params = {"platform_key": P}
    async with started(url) as (_, client):
        for _ in range(2):  # the second answer comes from the cache
            r = await client.get(URL, params=params, headers=auth(tokens["alice"]))
            assert r.status_code == 200
        result = run_cli("revoke-token", tokens["alice"], "--database", url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        r = await client.get(URL, params=params, headers=auth(tokens["alice"]))
        assert (r.status_code, r.json()) == (401, {"detail": "Invalid token."})
        r = await client.get(URL, params=params, headers=auth(other))
        assert r.status_code == 200
    again = run_cli("revoke-token", tokens["alice"], "--database", url, cwd=tmp_path)
    assert again.returncode == 1 and "no such token" in again.stderr


def test_a_revoked_token_is_refused_through_serve_on_the_same_connection(
    tmp_path: Path,
) -> None:
    """The same through `serve`, whose protocol stamps arrivals and whose auth shares one
    read of the counter among requests that arrived before it: a request sent after the
    revocation, on a kept-alive connection, still gets 401."""
    url, tokens = setup_platform(tmp_path, "alice\nbob\n")
    with served(url, tmp_path) as (base, _, _), httpx.Client(base_url=base) as client:
        params = {"platform_key": P}
        for _ in range(3):
            r = client.get(URL, params=params, headers=auth(tokens["alice"]))
            assert r.status_code == 200
        result = run_cli("revoke-token", tokens["alice"], "--database", url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        r = client.get(URL, params=params, headers=auth(tokens["alice"]))
        assert (r.status_code, r.json()) == (401, {"detail": "Invalid token."})
        assert client.get(URL, params=params, headers=auth(tokens["bob"])).status_code == 200


async def test_revoke_token_user_revokes_every_token_of_that_user(tmp_path: Path) -> None:
    """`revoke-token --user U` revokes all of U's tokens at once, and no one else's."""
    url, tokens = setup_platform(tmp_path, "alice\nbob\n")
    second = run_cli("add-user", "alice", "--platform", P, "--database", url, cwd=tmp_path)
    alice_tokens = [tokens["alice"], second.stdout.split()[-1]]
    params = {"platform_key": P}
    async with started(url) as (_, client):
        for token in [*alice_tokens, tokens["bob"]]:
            assert (await client.get(URL, params=params, headers=auth(token))).status_code == 200
        result = run_cli("revoke-token", "--user", "alice", "--database", url, cwd=tmp_path)
        assert result.returncode == 0 and "Revoked 2 tokens of alice" in result.stderr
        for token in alice_tokens:
            r = await client.get(URL, params=params, headers=auth(token))
            assert (r.status_code, r.json()) == (401, {"detail": "Invalid token."})
        r = await client.get(URL, params=params, headers=auth(tokens["bob"]))
        assert r.status_code == 200
    unknown = run_cli("revoke-token", "--user", "ghost", "--database", url, cwd=tmp_path)
    assert unknown.returncode == 1 and "no user ghost" in unknown.stderr


async def test_a_removed_member_loses_access_at_once_and_its_metadata_stays(
    tmp_path: Path,
) -> None:
    """`remove-user`: the user's own requests get 403 `not a member`, an admin's get 404 `User
    not found`, at once; adding the user back shows the metadata it had."""
    url, tokens = setup_platform(tmp_path, "alice\nboss --admin\n")
    alice, boss = auth(tokens["alice"]), auth(tokens["boss"])
    own, as_admin = {"platform_key": P}, {"platform_key": P, "username": "alice"}
    async with started(url) as (_, client):
        r = await client.patch(URL, params=own, headers=alice, json={"metadata": {"a": 1}})
        assert r.status_code == 200
        assert (await client.get(URL, params=as_admin, headers=boss)).status_code == 200
        result = run_cli("remove-user", "alice", "--platform", P, "--database", url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        r = await client.get(URL, params=own, headers=alice)
        not_member = {"error": "You are not a member of this platform"}
        assert (r.status_code, r.json()) == (403, not_member)
        r = await client.get(URL, params=as_admin, headers=boss)
        assert (r.status_code, r.json()) == (404, {"error": "User not found"})
        assert list_users(url, tmp_path) == ["boss admin"]
        run_cli("add-user", "alice", "--platform", P, "--database", url, cwd=tmp_path)
        r = await client.get(URL, params=own, headers=alice)
        assert r.status_code == 200 and r.json()["metadata"] == {"a": 1}
    again = run_cli("remove-user", "ghost", "--platform", P, "--database", url, cwd=tmp_path)
    assert again.returncode == 1 and "ghost is not a member of acme-corp" in again.stderr


@pytest.mark.slow
def test_serve_on_a_database_with_data_prints_add_user_commands_that_work(
    tmp_path: Path,
) -> None:
    """On a database that has data, `serve` creates nothing and prints the exact `add-user`
    commands (a member's and an admin's, each keeping its role) and the demo's URL; each
    command, run as printed, prints a working token."""
    url, _ = setup_platform(tmp_path, "zed\nboss --admin\nann\n")
    with served(url, tmp_path) as (base, _proc, printed):
        commands = [line.strip() for line in printed.splitlines() if "add-user" in line]
        assert commands == [
            f"python -m example_host add-user ann --platform {P} --database {url}",
            f"python -m example_host add-user boss --platform {P} --admin --database {url}",
        ]
        assert f"open {base}/ and sign in" in printed

        for command in commands:
            argv = shlex.split(command)
            assert argv[:3] == ["python", "-m", "example_host"]
            result = run_cli(*argv[3:], cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            token = result.stdout.split()[-1]
            r = httpx.get(f"{base}{URL}", params={"platform_key": P}, headers=auth(token))
            assert r.status_code == 200
    assert list_users(url, tmp_path) == ["ann member", "boss admin", "zed member"]


async def test_host_db_user_commands_on_every_database(database_url: str) -> None:
    """`HostDB`'s operator methods, on SQLite and PostgreSQL: `add_users` in one transaction
    (all or nothing), `members`, `memberships`, `remove_user`, `revoke_token(s_of)`."""
    async with started(database_url) as (app, client):
        db: HostDB = app.state.db
        await db.add_platform(P)
        await db.add_platform("other")
        with pytest.raises(UnknownPlatform):
            await db.add_users("nope", [("x", False)])
        tokens = await db.add_users(P, [("zoe", False), ("amir", True)])
        other = await db.add_users("other", [("zoe", True)])
        assert [(m.key, m.is_admin) for m in await db.members(P)] == [
            ("amir", True),
            ("zoe", False),
        ]
        me = await client.get(URL, params={"platform_key": P}, headers=auth(tokens[0]))
        assert me.status_code == 200
        zoe = await db.user_for_token(tokens[0])
        assert zoe is not None
        assert [(m.key, m.is_admin) for m in await db.memberships(zoe.id)] == [
            (P, False),
            ("other", True),
        ]
        platform, suggested = await db.suggested_users("missing")  # the oldest; members first
        assert (platform, [m.key for m in suggested]) == (P, ["zoe", "amir"])
        await db.remove_user("zoe", P)
        with pytest.raises(UnknownUser):
            await db.remove_user("zoe", P)
        r = await client.get(URL, params={"platform_key": P}, headers=auth(tokens[0]))
        assert r.status_code == 403
        assert await db.revoke_token(other[0]) and not await db.revoke_token(other[0])
        r = await client.get(URL, params={"platform_key": "other"}, headers=auth(other[0]))
        assert r.status_code == 401
        assert await db.revoke_tokens_of("amir") == 1
        with pytest.raises(UnknownUser):
            await db.revoke_tokens_of("ghost")
        r = await client.get(URL, params={"platform_key": P}, headers=auth(tokens[1]))
        assert r.status_code == 401


async def test_add_users_adds_five_thousand_users_in_one_call(database_url: str) -> None:
    """5,000 users in one `add_users` call (one transaction), on SQLite and PostgreSQL, where
    it used to fail with `did not answer within 5.0 s`: every one a member with its role,
    every token stored for its own user."""
    users = [(f"user{n:05d}", n % 1000 == 0) for n in range(5000)]
    async with HostDB(database_url) as db:
        await db.add_platform(P)
        tokens = await db.add_users(P, users)
        assert [(m.key, m.is_admin) for m in await db.members(P)] == sorted(users)
        rows = await (await db.connection()).fetch(
            "SELECT u.username, t.key_hash FROM tokens t JOIN users u ON u.id = t.user_id"
        )
    assert len(set(tokens)) == len(users)
    assert sorted((row[0], row[1]) for row in rows) == sorted(
        (username, hash_token(token)) for (username, _), token in zip(users, tokens, strict=True)
    )


async def test_add_users_naming_a_user_twice_acts_as_two_add_user_calls(
    database_url: str,
) -> None:
    """`HostDB.add_users` (the CLI refuses a name twice): the later line's role wins, and each
    line's token is valid; users already there keep their earlier tokens."""
    async with HostDB(database_url) as db:
        await db.add_platform(P)
        earlier = await db.add_user("ann", P, admin=True)
        tokens = await db.add_users(P, [("ann", False), ("bo", True), ("ann", True), ("bo", False)])
        assert [(m.key, m.is_admin) for m in await db.members(P)] == [("ann", True), ("bo", False)]
        for token, username in zip([earlier, *tokens], ["ann", "ann", "bo", "ann", "bo"]):
            user = await db.user_for_token(token)
            assert user is not None and user.username == username
