"""The typed client (issue 14, item 1): `MetadataClient` and `AsyncMetadataClient`.

Every method runs in process against the real app (an injected `httpx` client on
`ASGITransport`, or on `BlockingASGITransport` below for the blocking client) and over real
HTTP against `python -m example_host serve`.
History and restore, whose server side is not there yet, run against `httpx.MockTransport`
answers shaped as EXTENSIONS.md section 2 says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from example_host import HostDB
from starlette_platform_metadata import MemoryStore, PlatformMetadataApp
from starlette_platform_metadata.client import (
    AsyncMetadataClient,
    MetadataClient,
    MetadataClientError,
    MetadataRecord,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    Revision,
    UnexpectedResponse,
    Unavailable,
    ValidationError,
    _async,
    _sync,
    calls,
)
from starlette_platform_metadata.client.errors import parse_retry_after

from .conftest import URL, FakeAuth
from .test_example_host import ROOT, free_port, wait_for

P = "acme-corp"
#: Who exists on both targets: (platform, username, tenant admin).  Each test acts on users
#: of its own, so the tests sharing one served host never see each other's records.
PEOPLE = [
    (P, "alice", False),
    (P, "bob", False),
    (P, "carol", False),
    (P, "dave", False),
    (P, "erin", False),
    (P, "frank", False),
    (P, "boss", True),
    ("other", "eve", False),
    ("rules", "rita", False),
    ("rules", "ruler", True),
    ("lab", "lab_admin", True),
]
DOCS = Path(__file__).resolve().parent.parent / "docs" / "client.md"
API = "http://api.test"
MOUNT = API + URL


# --- the two targets: the app in process, the example host over HTTP ----------------------


@dataclass
class Target:
    base_url: str
    tokens: dict[str, str]
    app: Starlette | None  # None: a real server at base_url

    @contextlib.contextmanager
    def client(self, username: str = "", token: str | None = None) -> Iterator[MetadataClient]:
        token = self.tokens[username] if token is None else token
        if self.app is None:
            with MetadataClient(self.base_url, token=token) as client:
                yield client
            return
        with httpx.Client(transport=BlockingASGITransport(self.app)) as http:
            with MetadataClient(self.base_url, token=token, http_client=http) as client:
                yield client

    @contextlib.asynccontextmanager
    async def async_client(
        self, username: str = "", token: str | None = None
    ) -> AsyncIterator[AsyncMetadataClient]:
        token = self.tokens[username] if token is None else token
        if self.app is None:
            async with AsyncMetadataClient(self.base_url, token=token) as client:
                yield client
            return
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport) as http:
            async with AsyncMetadataClient(self.base_url, token, http) as client:
                yield client


class BlockingASGITransport(httpx.BaseTransport):
    """An ASGI app behind a blocking `httpx.Client`: `ASGITransport` run on one event loop
    kept in a thread.  (Starlette's `TestClient` does this too, but it now warns when built
    on `httpx` and becomes an `httpx2.Client` once that is installed.)"""

    def __init__(self, app: Starlette) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._stack = contextlib.ExitStack()
        self._portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._portal.call(self._handle, request)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        return httpx.Response(
            response.status_code, headers=response.headers, stream=httpx.ByteStream(raw)
        )

    def close(self) -> None:
        self._stack.close()


def in_process(**more_tokens: str) -> Target:
    """The app on a MemoryStore; `more_tokens` maps further tokens to usernames."""
    auth = FakeAuth()
    auth.tokens.update(more_tokens)
    tokens = {}
    for platform, username, admin in PEOPLE:
        tokens[username] = auth.add(platform, username, admin=admin)["Authorization"].split()[1]
    app = Starlette(
        routes=[Mount(URL.rstrip("/"), app=PlatformMetadataApp(auth=auth, store=MemoryStore()))]
    )
    return Target("http://testserver", tokens, app)


async def add_people(database: str) -> dict[str, str]:
    async with HostDB(database) as db:
        for platform in dict.fromkeys(platform for platform, _, _ in PEOPLE):
            await db.add_platform(platform)
        return {
            username: await db.add_user(username, platform, admin=admin)
            for platform, username, admin in PEOPLE
        }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """`python -m example_host serve` on a SQLite file holding PEOPLE, on a free port."""
    folder = tmp_path_factory.mktemp("served")
    database = f"sqlite:///{folder / 'host.db'}"
    tokens = asyncio.run(add_people(database))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    log = folder / "serve.log"
    command = [sys.executable, "-m", "example_host", "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--database", database, "--no-access-log"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "Application startup complete" in log.read_text(), 30, "startup", proc)
        yield Target(f"http://127.0.0.1:{port}", tokens, None)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(params=["in-process", "http"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "in-process":
        return in_process()
    served: Target = request.getfixturevalue("served")
    return served


def utc(value: datetime | None) -> bool:
    return value is not None and value.utcoffset() == timedelta(0)


# --- every method against the real app ----------------------------------------------------


def test_sync_client_reads_and_writes_as_the_contract_says(target: Target) -> None:
    """get, patch, replace, update and delete round-trip, ETags and versions included, for
    the caller's own metadata and, as tenant admin, another user's."""
    with target.client("alice") as alice, target.client("boss") as boss:
        empty = alice.get(P)
        assert (empty.username, empty.platform_key, empty.metadata) == ("alice", P, {})
        assert empty.created_at is None and empty.updated_at is None
        assert empty.version == 0 and empty.etag == '"0"'

        first = alice.patch(P, {"theme": "dark", "tags": ["a"]})
        assert first.metadata == {"theme": "dark", "tags": ["a"]}
        assert (first.version, first.etag) == (1, '"1"')
        assert utc(first.created_at) and utc(first.updated_at)

        second = alice.patch(P, {"lang": "fr"}, delete_keys=["tags"], if_match=first.etag)
        assert second.metadata == {"theme": "dark", "lang": "fr"} and second.version == 2

        replaced = boss.replace(P, {"plan": "pro"}, username="alice", if_match=second.version)
        assert replaced.username == "alice" and replaced.metadata == {"plan": "pro"}
        assert replaced.created_at == first.created_at

        counted = alice.update(P, lambda m: {**m, "count": m.get("count", 0) + 1})
        assert counted.metadata == {"plan": "pro", "count": 1} and counted.version == 4

        def in_place(metadata: dict[str, Any]) -> None:
            metadata["plan"] += "+"

        latest = boss.update(P, in_place, username="alice")
        assert latest.metadata == {"plan": "pro+", "count": 1}
        assert alice.get(P) == latest

        alice.delete(P, if_match=latest.etag)
        gone = boss.get(P, username="alice")
        assert gone.metadata == {} and gone.created_at is None and gone.updated_at is None
        assert gone.version == latest.version + 1  # a delete is a change; versions never reset
        alice.delete(P, purge_history=True)  # idempotent: nothing stored, still a 204


@pytest.mark.anyio
async def test_async_client_reads_and_writes_as_the_contract_says(target: Target) -> None:
    """The async client answers as the sync one, `update` with a coroutine function too."""
    async with target.async_client("bob") as bob, target.async_client("boss") as boss:
        assert (await bob.get(P)).metadata == {}
        first = await bob.patch(P, {"theme": "dark", "tags": ["a"]})
        assert (first.metadata, first.version, first.etag) == (
            {"theme": "dark", "tags": ["a"]},
            1,
            '"1"',
        )
        second = await bob.patch(P, delete_keys=["tags"], if_match=first.etag)
        assert second.metadata == {"theme": "dark"}
        replaced = await boss.replace(P, {"n": 1}, username="bob", if_match=second.etag)
        assert replaced.username == "bob" and replaced.metadata == {"n": 1}

        async def bump(metadata: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"n": metadata["n"] + 1}

        bumped = await bob.update(P, bump)
        assert bumped.metadata == {"n": 2} and bumped.version == replaced.version + 1
        assert await boss.get(P, username="bob") == bumped
        await boss.delete(P, username="bob", if_match=bumped.etag)
        assert (await bob.get(P)).created_at is None


@pytest.mark.anyio
async def test_async_client_manages_the_policy(target: Target) -> None:
    """get_policy, put_policy (dry run and real, with If-Match) and delete_policy."""
    async with target.async_client("lab_admin") as admin:
        start = await admin.get_policy("lab")
        assert (start.version, start.etag, start.schema, start.updated_at) == (0, '"0"', None, None)
        assert start.protected_keys == () and start.private_keys == ()
        document = {"protected_keys": ["plan"], "schema": {"type": "object"}}
        dry = await admin.put_policy("lab", document, dry_run=True)
        assert dry.policy.protected_keys == ("plan",) and dry.policy.version == 0
        assert dry.violating_documents == 0 and dry.examples == ()
        assert (await admin.get_policy("lab")).protected_keys == ()
        saved = await admin.put_policy("lab", document, if_match=start.etag)
        assert saved.policy.version == 1 and saved.policy.etag == '"1"'
        assert utc(saved.policy.updated_at) and saved.raw["violating_documents"] == 0
        with pytest.raises(PreconditionFailed) as refused:
            await admin.delete_policy("lab", if_match=start.etag)
        assert refused.value.current_etag == '"1"'
        await admin.delete_policy("lab", if_match=saved.policy.etag)
        after = await admin.get_policy("lab")
        assert after.version == 2 and after.protected_keys == () and after.schema is None


def test_policy_shapes_what_members_may_do(target: Target) -> None:
    """A dry run counts what a schema refuses and saves nothing; members see no private keys
    and get PermissionDenied with the keys, or ValidationError with the schema's message."""
    with target.client("ruler") as admin, target.client("rita") as rita:
        start = rita.get_policy("rules")
        assert start.private_keys is None and "private_keys" not in start.raw
        rita.patch("rules", {"age": "old"})  # stored before any schema
        schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
        document = {"protected_keys": ["plan"], "private_keys": ["notes_*"], "schema": schema}
        dry = admin.put_policy("rules", document, dry_run=True)
        assert dry.violating_documents == 1 and [e.username for e in dry.examples] == ["rita"]
        assert dry.examples[0].errors and dry.examples[0].errors[0].startswith("/age")
        assert admin.get_policy("rules").version == 0

        with pytest.raises(PermissionDenied) as member_put:
            rita.put_policy("rules", document)
        assert member_put.value.message == "Only tenant admins can change the platform policy"

        saved = admin.put_policy("rules", document, if_match=start.etag)
        assert saved.policy.private_keys == ("notes_*",) and saved.policy.schema == schema
        shown = rita.get_policy("rules")
        assert shown.protected_keys == ("plan",) and shown.private_keys is None
        assert shown.etag == saved.policy.etag

        admin.patch("rules", {"age": 30, "plan": "pro", "notes_x": "n"}, username="rita")
        assert rita.get("rules").metadata == {"age": 30, "plan": "pro"}
        with pytest.raises(PermissionDenied) as keys:
            rita.patch("rules", {"plan": "free"}, delete_keys=["notes_x"])
        assert keys.value.keys == ["notes_x", "plan"]
        with pytest.raises(ValidationError) as invalid:
            rita.patch("rules", {"age": "thirty"})
        assert list(invalid.value.errors) == ["metadata"]
        assert invalid.value.errors["metadata"][0].startswith("/age: ")
        # update(fn) as a member: the protected key passes through, the private one stays.
        updated = rita.update("rules", lambda m: {**m, "age": 31})
        assert updated.metadata == {"age": 31, "plan": "pro"}
        assert admin.get("rules", username="rita").metadata["notes_x"] == "n"
        admin.delete_policy("rules")


def test_each_refusal_raises_its_own_exception(target: Target) -> None:
    """401, 403, 404, 400 (with the field errors), 412 (with the current ETag) and 413 from
    the server, each as its class, all `MetadataClientError`s with status and body."""
    with target.client("carol") as carol, target.client(token="0" * 40) as stranger:
        with pytest.raises(NotAuthenticated) as unauthenticated:
            stranger.get(P)
        assert unauthenticated.value.status_code == 401
        assert unauthenticated.value.body == {"detail": "Invalid token."}
        assert unauthenticated.value.headers["www-authenticate"] == "Token"

        with pytest.raises(PermissionDenied) as other_user:
            carol.get(P, username="boss")
        assert other_user.value.body == {
            "error": "Only tenant admins can access other users' metadata"
        }
        with pytest.raises(PermissionDenied) as not_member:
            carol.replace("other", {"a": 1})
        assert not_member.value.message == "You are not a member of this platform"

        with pytest.raises(NotFound) as unknown:
            carol.get("no-such-platform")
        assert (unknown.value.status_code, unknown.value.body) == (
            404,
            {"error": "Platform not found"},
        )

        with pytest.raises(ValidationError) as invalid:
            carol.patch(P, {"": 1}, delete_keys=["", "ok"])
        assert invalid.value.errors == {
            "metadata": ["Keys must be non-empty strings of at most 256 characters."],
            "delete_keys": {"0": ["This field may not be blank."]},
        }
        with pytest.raises(ValidationError) as empty:
            carol.patch(P)
        assert empty.value.errors == {
            "non_field_errors": ["Provide 'metadata' to update or 'delete_keys' to remove keys."]
        }

        stored = carol.patch(P, {"a": 1})
        with pytest.raises(PreconditionFailed) as stale:
            carol.replace(P, {"a": 2}, if_match='"999"')
        assert stale.value.status_code == 412 and stale.value.current_etag == stored.etag

        with pytest.raises(PayloadTooLarge) as large:
            carol.replace(P, {"big": "x" * 70_000})
        assert large.value.status_code == 413 and large.value.limit == "max_document_bytes"
        assert carol.get(P) == stored  # no refusal changed anything

        for error in (unauthenticated, other_user, unknown, invalid, stale, large):
            assert isinstance(error.value, MetadataClientError)


@pytest.mark.anyio
async def test_async_refusals_raise_the_same_exceptions(target: Target) -> None:
    """The async client maps refusals through the same parser."""
    async with target.async_client("erin") as erin:
        async with target.async_client(token="nope") as stranger:
            with pytest.raises(NotAuthenticated):
                await stranger.get(P)
        with pytest.raises(PermissionDenied):
            await erin.patch(P, {"a": 1}, username="alice")
        with pytest.raises(NotFound):
            await erin.delete("no-such-platform")
        stored = await erin.patch(P, {"a": 1})
        with pytest.raises(PreconditionFailed) as stale:
            await erin.delete(P, if_match=stored.version + 5)
        assert stale.value.current_etag == stored.etag
        with pytest.raises(ValidationError) as invalid:
            await erin.patch(P, delete_keys=[""])
        assert invalid.value.errors == {"delete_keys": {"0": ["This field may not be blank."]}}


# --- update(fn) under contention, over real HTTP on SQLite --------------------------------


@pytest.mark.anyio
async def test_update_loses_nothing_under_20_concurrent_async_clients(served: Target) -> None:
    """20 clients, each on its own connections, append one item each through update(fn);
    all of them read before any writes (a barrier in fn), so 19 first writes fail with 412
    and are retried.  Every item ends up stored."""
    barrier = asyncio.Barrier(20)
    tries = 0

    async def append_one(item: int) -> None:
        waited = False

        async def append(metadata: dict[str, Any]) -> None:
            nonlocal waited, tries
            tries += 1
            if not waited:
                waited = True
                await barrier.wait()
            metadata.setdefault("items", []).append(item)

        async with AsyncMetadataClient(served.base_url, served.tokens["dave"]) as client:
            await client.update(P, append, retries=100)

    await asyncio.gather(*(append_one(i) for i in range(20)))
    async with AsyncMetadataClient(served.base_url, served.tokens["dave"]) as client:
        final = await client.get(P)
    assert sorted(final.metadata["items"]) == list(range(20))
    assert tries >= 20 + 19
    assert final.version == 20  # one write per item, none lost, none doubled


def test_update_loses_nothing_under_concurrent_threads(served: Target) -> None:
    """The same with the blocking client, one thread per client."""
    count = 8
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def append_one(item: int) -> None:
        waited = False

        def append(metadata: dict[str, Any]) -> dict[str, Any]:
            nonlocal waited
            if not waited:
                waited = True
                barrier.wait(timeout=30)
            return {"items": [*metadata.get("items", []), item]}

        try:
            with MetadataClient(served.base_url, served.tokens["frank"]) as client:
                client.update(P, append, retries=100)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=append_one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with MetadataClient(served.base_url, served.tokens["frank"]) as client:
        assert sorted(client.get(P).metadata["items"]) == list(range(count))


# --- the request builder, against MockTransport ---------------------------------------------


Handler = Callable[[httpx.Request], httpx.Response]


def record_body(metadata: dict[str, Any], version: int, username: str = "jane") -> httpx.Response:
    body = {
        "username": username,
        "platform_key": P,
        "metadata": metadata,
        "created_at": "2024-01-15T10:30:00Z",
        "updated_at": "2024-01-20T14:45:00.123456Z",
    }
    return httpx.Response(200, json=body, headers={"ETag": f'"{version}"'})


@contextlib.contextmanager
def mocked(handler: Handler, **kwargs: Any) -> Iterator[tuple[MetadataClient, list[httpx.Request]]]:
    """A sync client on a MockTransport, and every request it sent."""
    sent: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return handler(request)

    with httpx.Client(transport=httpx.MockTransport(recording)) as http:
        yield MetadataClient(API, token="tok", http_client=http, **kwargs), sent


@contextlib.asynccontextmanager
async def amocked(
    handler: Handler,
) -> AsyncIterator[tuple[AsyncMetadataClient, list[httpx.Request]]]:
    sent: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(recording)) as http:
        yield AsyncMetadataClient(API, token="tok", http_client=http), sent


def query(request: httpx.Request) -> list[tuple[str, str]]:
    return list(request.url.params.multi_items())


def test_requests_carry_the_contract_method_url_query_headers_and_body() -> None:
    """Each method's request as the contract spells it: path, query, `Token` auth, If-Match
    (an int becomes its ETag), compact JSON, `history=purge` and `dry_run=true`."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.endswith("/policy/"):
            body: dict[str, Any] = {
                "platform_key": P, "protected_keys": [], "private_keys": [], "schema": None,
                "version": 0, "updated_at": None, "violating_documents": 0, "examples": [],
            }  # fmt: skip
            return httpx.Response(200, json=body, headers={"ETag": '"0"'})
        return record_body({}, 1)

    with mocked(answer) as (client, sent):
        client.get(P, username="jane")
        client.patch(P, {"é": [1]}, delete_keys=iter(["x"]), if_match=3)
        client.replace(P, {}, username="jane", if_match='"4"')
        client.delete(P, purge_history=True)
        client.put_policy(P, {"protected_keys": ["plan"]}, dry_run=True, if_match="*")
        client.delete_policy(P)
    shapes = [(r.method, r.url.path, query(r), r.headers.get("if-match"), r.content) for r in sent]
    assert shapes == [
        ("GET", URL, [("platform_key", P), ("username", "jane")], None, b""),
        ("PATCH", URL, [("platform_key", P)], '"3"',
         '{"metadata":{"é":[1]},"delete_keys":["x"]}'.encode()),
        ("PUT", URL, [("platform_key", P), ("username", "jane")], '"4"', b'{"metadata":{}}'),
        ("DELETE", URL, [("platform_key", P), ("history", "purge")], None, b""),
        ("PUT", URL + "policy/", [("platform_key", P), ("dry_run", "true")], "*",
         b'{"protected_keys":["plan"]}'),
        ("DELETE", URL + "policy/", [("platform_key", P)], None, b""),
    ]  # fmt: skip
    for request in sent:
        assert request.url.host == "api.test"
        assert request.headers["authorization"] == "Token tok"
        assert request.headers["accept"] == "application/json"
    assert sent[1].headers["content-type"] == "application/json"


def test_a_custom_mount_path_and_bad_arguments() -> None:
    """`path` places every resource; one string as delete_keys and NaN fail before sending."""
    with mocked(lambda r: record_body({}, 0), path="custom/mount") as (client, sent):
        client.get(P)
        with pytest.raises(TypeError):
            client.patch(P, delete_keys="theme")
        with pytest.raises(ValueError):
            client.replace(P, {"x": float("nan")})
    assert [r.url.path for r in sent] == ["/custom/mount/"]


def revision(version: int, operation: str, keys: list[str]) -> dict[str, Any]:
    return {"version": version, "operation": operation, "actor": "acme_admin",
            "at": f"2024-02-0{version}T10:00:00.5Z", "metadata": {"v": version},
            "changed_keys": keys}  # fmt: skip


def history_pages(request: httpx.Request) -> httpx.Response:
    """Three revisions over two pages; `next` names another host, as a server behind a proxy
    might."""
    if request.url.path != URL + "history/":
        return httpx.Response(404, json={"detail": "Not found."})
    cursor = request.url.params.get("cursor")
    body: dict[str, Any]
    if cursor is None:
        following = f"http://internal:9000{URL}history/?platform_key={P}&cursor=c2&limit=2"
        results = [revision(3, "restore", ["v"]), revision(2, "put", [])]
        body = {"next": following, "results": results}
    elif cursor == "c2":
        body = {"next": None, "previous": "ignored", "results": [revision(1, "patch", ["v"])]}
    else:
        return httpx.Response(404, json={"detail": "Invalid cursor"})
    return httpx.Response(200, json=body)


def check_history(revisions: list[Revision], sent: list[httpx.Request]) -> None:
    assert [(r.version, r.operation, r.changed_keys) for r in revisions] == [
        (3, "restore", ("v",)),
        (2, "put", ()),
        (1, "patch", ("v",)),
    ]
    first = revisions[0]
    assert first.actor == "acme_admin" and first.metadata == {"v": 3}
    assert first.at == datetime(2024, 2, 3, 10, 0, 0, 500000, tzinfo=timezone.utc)
    assert [query(r) for r in sent] == [
        [("platform_key", P), ("username", "jane"), ("limit", "2")],
        [("platform_key", P), ("username", "jane"), ("limit", "2"), ("cursor", "c2")],
    ]
    # The token goes to this client's server only, never to the host `next` names.
    assert {(r.url.host, r.headers["authorization"]) for r in sent} == {("api.test", "Token tok")}


def test_history_follows_next_lazily_and_yields_typed_revisions() -> None:
    """Nothing is requested before iteration; pages are followed until `next` is null."""
    with mocked(history_pages) as (client, sent):
        revisions = client.history(P, username="jane", limit=2)
        assert sent == []
        check_history(list(revisions), sent)


@pytest.mark.anyio
async def test_async_history_follows_next_and_yields_typed_revisions() -> None:
    """The async iterator pages the same way."""
    async with amocked(history_pages) as (client, sent):
        check_history([r async for r in client.history(P, username="jane", limit=2)], sent)


def test_history_refusals_and_a_next_that_repeats_itself() -> None:
    """A bad limit is ValidationError, a bad cursor NotFound; a page whose `next` asks for
    the same page again ends the walk with UnexpectedResponse instead of looping."""

    def answer(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if params.get("limit") == "0":
            return httpx.Response(400, json={"limit": ["Ensure this value is at least 1."]})
        if params.get("cursor") == "bad":
            return httpx.Response(404, json={"detail": "Invalid cursor"})
        cursor = "bad" if params["platform_key"] == "stale" else "loop"
        following = f"{MOUNT}history/?platform_key={params['platform_key']}&cursor={cursor}"
        return httpx.Response(200, json={"next": following, "results": [revision(1, "put", [])]})

    with mocked(answer) as (client, sent):
        with pytest.raises(ValidationError) as invalid:
            list(client.history(P, limit=0))
        assert invalid.value.errors == {"limit": ["Ensure this value is at least 1."]}
        walked: list[Revision] = []
        with pytest.raises(NotFound) as bad_cursor:
            walked.extend(client.history("stale"))
        assert bad_cursor.value.message == "Invalid cursor" and len(walked) == 1
        before = len(sent)
        with pytest.raises(UnexpectedResponse):
            list(client.history(P))
        assert len(sent) - before == 2  # the first page, then the page that repeated itself


def restore_answer(request: httpx.Request) -> httpx.Response:
    if request.url.path != URL + "restore/" or request.method != "POST":
        return httpx.Response(405, json={"detail": f'Method "{request.method}" not allowed.'})
    if request.content == b'{"version":99}':
        return httpx.Response(404, json={"error": "Revision not found"})
    return record_body({"v": 2}, 6, username="jane")


def test_restore_posts_the_version_and_returns_the_record() -> None:
    """POST restore/ with `{"version": N}` and If-Match; 200 is a MetadataRecord, an unkept
    version NotFound."""
    with mocked(restore_answer) as (client, sent):
        restored = client.restore(P, 2, username="jane", if_match='"5"')
        with pytest.raises(NotFound) as missing:
            client.restore(P, 99)
    assert restored == MetadataRecord(
        username="jane",
        platform_key=P,
        metadata={"v": 2},
        etag='"6"',
        version=6,
        created_at=datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc),
        updated_at=datetime(2024, 1, 20, 14, 45, 0, 123456, tzinfo=timezone.utc),
    )
    assert query(sent[0]) == [("platform_key", P), ("username", "jane")]
    assert sent[0].headers["if-match"] == '"5"' and sent[0].content == b'{"version":2}'
    assert missing.value.body == {"error": "Revision not found"}


@pytest.mark.anyio
async def test_async_restore_posts_the_version_and_returns_the_record() -> None:
    """The async restore sends the same request and reads the same answers."""
    async with amocked(restore_answer) as (client, sent):
        restored = await client.restore(P, 2, if_match=5)
        with pytest.raises(NotFound):
            await client.restore(P, 99, username="jane")
    assert (restored.version, restored.metadata) == (6, {"v": 2})
    assert sent[0].headers["if-match"] == '"5"' and sent[0].content == b'{"version":2}'


# --- update(fn): retries, backoff, Retry-After --------------------------------------------


def always_stale(request: httpx.Request) -> httpx.Response:
    if request.method == "GET":
        return record_body({"n": 1}, 1)
    return httpx.Response(412, json={"detail": "Precondition failed"}, headers={"ETag": '"2"'})


def test_update_gives_up_after_retries_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Always 412: `retries` + 1 reads and writes, jittered waits within the exponential
    bound, then the PreconditionFailed itself."""
    waits: list[float] = []
    monkeypatch.setattr(_sync, "sleep", waits.append)
    with mocked(always_stale) as (client, sent):
        with pytest.raises(PreconditionFailed) as failed:
            client.update(P, lambda m: {"n": m["n"] + 1}, retries=6)
    assert failed.value.current_etag == '"2"'
    assert [r.method for r in sent] == ["GET", "PUT"] * 7
    assert all(r.headers["if-match"] == '"1"' for r in sent if r.method == "PUT")
    assert len(waits) == 6
    bounds = [min(calls.BACKOFF_CAP, calls.BACKOFF_BASE * 2**i) for i in range(6)]
    assert all(0 <= wait <= bound for wait, bound in zip(waits, bounds))
    assert len(set(waits)) > 1  # jittered


@pytest.mark.anyio
async def test_async_update_retries_503_as_retry_after_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 503 on the read or the write is retried after its Retry-After (capped), or a small
    backoff without one; then the write goes through."""
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(_async, "sleep", wait)
    answers = iter(
        [
            httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "2"}),
            record_body({"n": 1}, 1),
            httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "3600"}),
            record_body({"n": 1}, 1),
            httpx.Response(503, json={"detail": "busy"}),
            record_body({"n": 1}, 1),
            record_body({"n": 2}, 2),
        ]
    )
    async with amocked(lambda request: next(answers)) as (client, sent):
        done = await client.update(P, lambda m: {"n": m["n"] + 1})
    assert done.metadata == {"n": 2}
    assert [r.method for r in sent] == ["GET", "GET", "PUT", "GET", "PUT", "GET", "PUT"]
    assert waits == [2.0, calls.RETRY_AFTER_CAP, calls.BACKOFF_BASE * 4]


def test_update_does_not_retry_other_refusals_or_what_fn_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 403 or fn's own exception ends update at once."""
    monkeypatch.setattr(_sync, "sleep", lambda seconds: pytest.fail("no retry expected"))
    with mocked(lambda r: httpx.Response(403, json={"error": "no"})) as (client, sent):
        with pytest.raises(PermissionDenied):
            client.update(P, lambda m: m)
    assert len(sent) == 1

    def boom(metadata: dict[str, Any]) -> None:
        raise RuntimeError("fn failed")

    with mocked(lambda r: record_body({"n": 1}, 1)) as (client, sent):
        with pytest.raises(RuntimeError, match="fn failed"):
            client.update(P, boom)
    assert [r.method for r in sent] == ["GET"]


# --- reading answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (401, NotAuthenticated),
        (403, PermissionDenied),
        (404, NotFound),
        (405, UnexpectedResponse),
        (412, PreconditionFailed),
        (413, PayloadTooLarge),
        (415, UnexpectedResponse),
        (500, UnexpectedResponse),
        (503, Unavailable),
    ],
)
def test_each_status_maps_to_one_exception(status: int, cls: type[MetadataClientError]) -> None:
    """The class follows the status alone; status and parsed body are always there."""
    body = {"detail": f"status {status}"}
    headers = {"Retry-After": "7", "ETag": '"3"'}
    with mocked(lambda r: httpx.Response(status, json=body, headers=headers)) as (client, _):
        with pytest.raises(MetadataClientError) as raised:
            client.get(P)
    assert type(raised.value) is cls
    assert (raised.value.status_code, raised.value.body) == (status, body)
    assert str(raised.value) == f"{status}: status {status}"
    if cls is Unavailable:
        assert isinstance(raised.value, Unavailable) and raised.value.retry_after == 7.0
    if cls is PreconditionFailed:
        assert isinstance(raised.value, PreconditionFailed) and raised.value.current_etag == '"3"'


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(502, text="<html>Bad Gateway</html>"),
        httpx.Response(200, text="<html>a proxy page</html>"),
        httpx.Response(200, json={"username": "x"}, headers={"ETag": '"1"'}),
        httpx.Response(200, json={"username": "x", "platform_key": P, "metadata": {},
                                  "created_at": None, "updated_at": None}),  # fmt: skip
    ],
    ids=["502-html", "200-html", "200-missing-fields", "200-without-etag"],
)
def test_answers_off_the_contract_are_unexpected(response: httpx.Response) -> None:
    """A body that is not JSON is `body=None`; a success off the contract's shape (no ETag
    included) is UnexpectedResponse rather than a half-read record."""
    with mocked(lambda r: response) as (client, _):
        with pytest.raises(UnexpectedResponse) as raised:
            client.get(P)
    assert raised.value.status_code == response.status_code
    if b"html" in response.content:
        assert raised.value.body is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """delay-seconds, an HTTP-date (a past one is 0), anything else None."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None and parse_retry_after("-1") is None
    assert parse_retry_after("²") is None
    future = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(future) or 0) <= 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_an_injected_http_client_is_left_open_and_an_owned_one_closed() -> None:
    """Ours is closed by `close()` / the context manager; one passed in stays the caller's."""
    with MetadataClient(API, token="t") as owned:
        pass
    assert owned.http_client.is_closed
    injected = httpx.Client()
    with MetadataClient(API, token="t", http_client=injected) as client:
        assert client.http_client is injected
    assert not injected.is_closed
    injected.close()


@pytest.mark.anyio
async def test_an_injected_async_client_is_left_open_and_an_owned_one_closed() -> None:
    """The same for the async client and `aclose()`."""
    async with AsyncMetadataClient(API, token="t") as owned:
        pass
    assert owned.http_client.is_closed
    async with httpx.AsyncClient() as injected:
        async with AsyncMetadataClient(API, token="t", http_client=injected):
            pass
        assert not injected.is_closed


def test_without_a_token_no_authorization_is_sent() -> None:
    """`token=None` leaves authentication to the injected client's own headers."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return record_body({}, 0)

    transport = httpx.MockTransport(answer)
    with httpx.Client(transport=transport, headers={"Authorization": "Bearer b"}) as http:
        MetadataClient(API, http_client=http).get(P)
    assert sent[0].headers["authorization"] == "Bearer b"


@pytest.mark.anyio
async def test_the_docs_in_process_example_runs_as_printed() -> None:
    """docs/client.md's ASGITransport example works against the app, as printed."""
    text = DOCS.read_text()
    marker = text.index("<!-- tested: tests/test_client.py runs this block -->")
    match = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOCS), "exec"), namespace)
    target = in_process(**{"test-token": "alice"})
    await namespace["check_preferences"](target.app)
    async with target.async_client("alice") as alice:
        assert (await alice.get(P)).metadata == {"theme": "dark"}
