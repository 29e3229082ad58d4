"""The typed client (issue 14, item 1): `MetadataClient` and `AsyncMetadataClient`.

Every method runs in process against the real app (an injected `httpx` client on
`ASGITransport`, or on `BlockingASGITransport` below for the blocking client) and over real
HTTP against `python -m example_host serve`.  `watch` needs a connection that streams (httpx's
ASGI transport buffers whole answers): in process, the app is served by uvicorn in the test's
loop.  `httpx.MockTransport` answers pin down the exact requests, paging, the event parser and
the reconnect policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
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
    Change,
    ListedRecord,
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
    asynchronous,
    blocking,
    calls,
    streams,
    updating,
    watching,
)
from starlette_platform_metadata.client.errors import parse_retry_after

from .conftest import URL, FakeAuth
from . import hosts
from .sse import serving
from .test_example_host import free_port, wait_for

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
    (P, "henry", False),
    # Platforms of their own for what lists or streams a whole platform.
    ("lists", "lister", True),
    *[("lists", f"l{n:02}", False) for n in range(1, 8)],
    ("imports", "importer", True),
    ("imports", "i1", False),
    ("imports", "i2", False),
    ("watching", "wanda", False),
    ("watching", "walter", False),
    ("watching", "warden", True),
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


@contextlib.contextmanager
def host(database: str, folder: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m example_host serve` on `database` and `port`, until the block ends (SIGINT,
    as an operator stops it; tests/hosts.py)."""
    with hosts.served(database, folder, port=port) as (_, proc, _):
        yield proc


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """`python -m example_host serve` on a SQLite file holding PEOPLE, on a free port."""
    folder = tmp_path_factory.mktemp("served")
    database = f"sqlite:///{folder / 'host.db'}"
    tokens = asyncio.run(add_people(database))
    port = free_port()
    with host(database, folder, port):
        yield Target(f"http://127.0.0.1:{port}", tokens, None)


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
    monkeypatch.setattr(blocking, "sleep", waits.append)
    with mocked(always_stale) as (client, sent):
        with pytest.raises(PreconditionFailed) as failed:
            client.update(P, lambda m: {"n": m["n"] + 1}, retries=6)
    assert failed.value.current_etag == '"2"'
    assert [r.method for r in sent] == ["GET", "PUT"] * 7
    assert all(r.headers["if-match"] == '"1"' for r in sent if r.method == "PUT")
    assert len(waits) == 6
    bounds = [min(updating.BACKOFF_CAP, updating.BACKOFF_BASE * 2**i) for i in range(6)]
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

    monkeypatch.setattr(asynchronous, "sleep", wait)
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
    assert waits == [2.0, updating.RETRY_AFTER_CAP, updating.BACKOFF_BASE * 4]


def test_update_does_not_retry_other_refusals_or_what_fn_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 403 or fn's own exception ends update at once."""
    monkeypatch.setattr(blocking, "sleep", lambda seconds: pytest.fail("no retry expected"))
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


# --- listing, export and import (EXTENSIONS.md section 4) -----------------------------------

#: The documents the listing tests store on "lists": l01..l07, two plans, and one whose text
#: holds characters `str.splitlines` would split at (U+0085 NEL; U+2028, which the server
#: escapes; a CR escaped by JSON).
LISTED = {
    f"l{n:02}": {"plan": "pro" if n % 2 else "free", "n": n, "tags": ["x"] * (n % 3)}
    for n in range(1, 8)
}
LISTED["l04"]["note"] = "a\x85b\u2028c\rd"


def store_listed(admin: MetadataClient) -> None:
    for username, metadata in LISTED.items():
        admin.replace("lists", metadata, username=username)


def test_list_users_pages_and_filters(target: Target) -> None:
    """Every stored record of the platform, by username, page after page; a filter keeps the
    equal values (7 equals 7.0, JSON arrays compare as JSON); refusals are their exceptions."""
    with target.client("lister") as admin, target.client("l01") as member:
        store_listed(admin)
        listed = list(admin.list_users("lists", limit=3))
        assert [r.username for r in listed] == sorted(LISTED)
        assert {r.username: r.metadata for r in listed} == LISTED
        first = listed[0]
        assert isinstance(first, ListedRecord) and first.platform_key == "lists"
        assert utc(first.created_at) and utc(first.updated_at)
        assert listed == list(admin.list_users("lists"))  # one page of the default 100

        pro = [r.username for r in admin.list_users("lists", filter={"plan": "pro"}, limit=2)]
        assert pro == ["l01", "l03", "l05", "l07"]
        both = admin.list_users("lists", filter={"plan": "free", "tags": ["x"]})
        assert [r.username for r in both] == ["l04"]
        assert [r.username for r in admin.list_users("lists", filter={"n": 7.0})] == ["l07"]
        assert list(admin.list_users("lists", filter={"plan": "none"})) == []

        with pytest.raises(PermissionDenied) as member_lists:
            list(member.list_users("lists"))
        assert member_lists.value.body == {
            "error": "Only tenant admins can access other users' metadata"
        }
        with pytest.raises(ValidationError) as too_many:
            list(admin.list_users("lists", limit=1001))
        assert list(too_many.value.errors) == ["limit"]
        with pytest.raises(NotFound):
            list(admin.list_users("no-such-platform"))
        with pytest.raises(TypeError):
            admin.list_users("lists", filter='{"plan": "pro"}')  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_async_list_users_and_export_stream_the_same_records(target: Target) -> None:
    """The async iterators: the listing's pages and the NDJSON export give the same records,
    filtered alike; the export line that holds U+0085 comes back whole."""
    with target.client("lister") as admin:
        store_listed(admin)
    async with target.async_client("lister") as admin:
        listed = [r async for r in admin.list_users("lists", limit=2)]
        exported = [r async for r in admin.export("lists")]
        assert exported == listed and len(exported) == len(LISTED)
        assert {r.username: r.metadata for r in exported}["l04"]["note"] == "a\x85b\u2028c\rd"
        pro = [r.username async for r in admin.export("lists", filter={"plan": "pro"})]
        assert pro == ["l01", "l03", "l05", "l07"]
    async with target.async_client("l02") as member:
        with pytest.raises(PermissionDenied):
            [r async for r in member.export("lists")]


def test_export_then_import_round_trip(target: Target) -> None:
    """An export, every record deleted, the export imported: the same documents again, each
    a new version; pairs import as records do."""
    with target.client("lister") as admin:
        store_listed(admin)
        exported = list(admin.export("lists"))
        assert {r.username: r.metadata for r in exported} == LISTED
        before = {r.username: admin.get("lists", username=r.username).version for r in exported}
        for record in exported:
            admin.delete("lists", username=record.username)
        assert list(admin.export("lists")) == []

        assert admin.import_("lists", exported) == len(LISTED)
        again = list(admin.export("lists"))
        assert {r.username: r.metadata for r in again} == LISTED
        for record in again:
            current = admin.get("lists", username=record.username)
            assert current.version == (before[record.username] or 0) + 2  # delete, import
            assert current.metadata == record.metadata

        pairs = [("l01", {"plan": "gone"}), ("l02", {})]
        assert admin.import_("lists", iter(pairs)) == 2
        assert admin.get("lists", username="l01").metadata == {"plan": "gone"}
        assert admin.import_("lists", []) == 0
        current = admin.get("lists", username="l03")  # a MetadataRecord imports as it is
        assert admin.import_("lists", [current]) == 1
        assert admin.get("lists", username="l03").metadata == current.metadata


def test_import_refusals_name_the_lines_and_write_nothing(target: Target) -> None:
    """A user not on the platform and a key the server refuses: 400 `{"lines": ...}` as
    ValidationError, each bad line by number, nothing written; a member: PermissionDenied;
    records that are neither records nor pairs: TypeError before anything is sent."""
    with target.client("importer") as admin, target.client("i1") as member:
        admin.replace("imports", {"kept": True}, username="i1")
        with pytest.raises(ValidationError) as refused:
            admin.import_(
                "imports",
                [("i1", {"new": 1}), ("nobody", {"a": 1}), ("i2", {"": 1})],
            )
        assert refused.value.status_code == 400 and list(refused.value.errors) == ["lines"]
        assert sorted(refused.value.lines) == [2, 3]
        assert all(refused.value.lines[n] for n in (2, 3))
        assert refused.value.errors["lines"]["2"] == refused.value.lines[2]
        assert admin.get("imports", username="i1").metadata == {"kept": True}
        assert admin.get("imports", username="i2").version == 0

        with pytest.raises(PermissionDenied):
            member.import_("imports", [("i1", {"mine": True})])
        with pytest.raises(TypeError):
            bad: Any = [{"username": "i1", "metadata": {}}]
            admin.import_("imports", bad)
        with pytest.raises(TypeError):
            admin.import_("imports", [("i1", ["not", "a", "mapping"])])  # type: ignore[list-item]
        assert admin.get("imports", username="i1").metadata == {"kept": True}


@pytest.mark.anyio
async def test_async_import_refusal(target: Target) -> None:
    """The async import answers as the sync one."""
    async with target.async_client("importer") as admin:
        assert await admin.import_("imports", [("i2", {"b": 2})]) == 1
        with pytest.raises(ValidationError) as refused:
            await admin.import_("imports", [("i2", {"b": 3}), ("eve", {})])
        assert list(refused.value.lines) == [2]
        assert (await admin.get("imports", username="i2")).metadata == {"b": 2}


# --- history and restore against the real server -------------------------------------------


def test_history_and_restore_round_trip(target: Target) -> None:
    """Writes leave revisions, newest first over pages; restoring one writes its document as
    a new change, which history then shows."""
    with target.client("henry") as henry, target.client("boss") as boss:
        henry.replace(P, {"theme": "dark"})
        henry.patch(P, {"lang": "fr"})
        latest = boss.patch(P, {"theme": "light"}, delete_keys=["lang"], username="henry")
        revisions = list(henry.history(P, limit=2))
        assert [(r.version, r.operation, r.actor) for r in revisions] == [
            (3, "patch", "boss"),
            (2, "patch", "henry"),
            (1, "put", "henry"),
        ]
        assert revisions[0].metadata == latest.metadata == {"theme": "light"}
        assert revisions[0].changed_keys == ("lang", "theme") and utc(revisions[0].at)

        with pytest.raises(PreconditionFailed) as stale:
            henry.restore(P, 2, if_match='"1"')
        assert stale.value.current_etag == latest.etag
        restored = henry.restore(P, 2, if_match=latest.etag)
        assert restored.metadata == {"theme": "dark", "lang": "fr"} and restored.version == 4
        assert henry.get(P) == restored
        newest = next(iter(henry.history(P)))
        assert (newest.version, newest.operation, newest.metadata) == (
            4,
            "restore",
            restored.metadata,
        )
        with pytest.raises(NotFound):
            henry.restore(P, 99)


@pytest.mark.anyio
async def test_async_history_and_restore_round_trip(target: Target) -> None:
    """The same through the async client, as a tenant admin acting on a member."""
    async with target.async_client("boss") as boss:
        first = await boss.replace(P, {"v": 1}, username="carol")
        await boss.replace(P, {"v": 2}, username="carol")
        versions = [r.version async for r in boss.history(P, username="carol", limit=1)]
        assert versions[:2] == [first.version + 1, first.version]
        restored = await boss.restore(P, first.version, username="carol")
        assert restored.metadata == {"v": 1} and restored.version == first.version + 2
        newest = [r async for r in boss.history(P, username="carol", limit=1)][0]
        assert (newest.operation, newest.actor) == ("restore", "boss")


# --- the new requests, exactly, against MockTransport ---------------------------------------


def test_listing_export_and_import_send_what_the_contract_says() -> None:
    """list_users: `filter` as compact JSON and `limit`, carried to the next page by `next`'s
    query on this client's own URL; export: `Accept: application/x-ndjson`; import: NDJSON,
    one `{"username", "metadata"}` per line."""
    body = record_body({"n": 1}, 1).json()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"imported": 2})
        if request.headers["accept"] == calls.NDJSON:
            line = json.dumps(body).encode()
            # Split mid-line and at a CRLF, with a blank line and no newline at the end.
            chunks = [line[:10], line[10:] + b"\r", b"\n\n" + line]
            return httpx.Response(
                200, headers={"Content-Type": calls.NDJSON}, stream=Chunks(chunks)
            )
        if request.url.params.get("cursor") is None:
            following = f"http://internal:9000{URL}users/?platform_key={P}&limit=1&cursor=dTJ"
            return httpx.Response(200, json={"next": following, "results": [body]})
        return httpx.Response(200, json={"next": None, "results": [body]})

    with mocked(answer) as (client, sent):
        listed = list(client.list_users(P, filter={"plan": "pro", "n": 1.5}, limit=1))
        exported = list(client.export(P, filter={"a": "é"}))
        count = client.import_(P, [listed[0], ("bob", {"x": [1]})])
    assert len(listed) == 2 and listed[0] == ListedRecord(
        "jane",
        P,
        {"n": 1},
        datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc),
        datetime(2024, 1, 20, 14, 45, 0, 123456, tzinfo=timezone.utc),
    )
    assert exported == [listed[0], listed[0]]
    assert count == 2
    filtered = ("filter", '{"plan":"pro","n":1.5}')
    assert [query(r) for r in sent[:2]] == [
        [("platform_key", P), filtered, ("limit", "1")],
        [("platform_key", P), filtered, ("limit", "1"), ("cursor", "dTJ")],
    ]
    assert {r.url.host for r in sent} == {"api.test"}
    assert sent[0].url.path == URL + "users/" and sent[0].headers["accept"] == "application/json"
    assert query(sent[2]) == [("platform_key", P), ("filter", '{"a":"é"}')]
    assert sent[2].headers["accept"] == calls.NDJSON
    posted = sent[3]
    assert posted.method == "POST" and posted.headers["content-type"] == calls.NDJSON
    assert posted.content == (
        b'{"username":"jane","metadata":{"n":1}}\n{"username":"bob","metadata":{"x":[1]}}\n'
    )


def test_export_reads_as_the_answer_arrives() -> None:
    """The first record comes out once its line has arrived, not after the whole body: the
    export holds one line, whatever the platform's size."""
    line = json.dumps(record_body({"n": 1}, 1).json()).encode() + b"\n"
    sent_chunks = 0

    class Counting(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            nonlocal sent_chunks
            for _ in range(1000):
                sent_chunks += 1
                yield line

    headers = {"Content-Type": calls.NDJSON}
    with mocked(lambda r: httpx.Response(200, headers=headers, stream=Counting())) as (client, _):
        exported = client.export(P)
        assert next(exported).metadata == {"n": 1} and sent_chunks == 1
        assert sum(1 for _ in exported) == 999 and sent_chunks == 1000


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>a proxy page</html>"),
        httpx.Response(200, headers={"Content-Type": calls.NDJSON}, content=b'{"username": 1}\n'),
        httpx.Response(200, headers={"Content-Type": calls.NDJSON}, content=b"\xff\n"),
        httpx.Response(502, text="Bad Gateway"),
    ],
    ids=["200-html", "line-off-contract", "not-utf8", "502"],
)
def test_an_export_off_the_contract_is_unexpected(response: httpx.Response) -> None:
    """A 200 that is not NDJSON, or a line that is not a record, raises instead of guessing."""
    with mocked(lambda r: response) as (client, _):
        with pytest.raises(UnexpectedResponse) as raised:
            list(client.export(P))
    assert raised.value.status_code == response.status_code


def test_lines_split_at_cr_lf_and_crlf_only() -> None:
    """Whatever the chunking: CR, LF and CRLF end lines, U+0085 and U+2028 do not."""
    text = "a\r\nb\rc\nd\x85e\u2028f\r\r\ng\n".encode()
    expected = [b"a", b"b", b"c", "d\x85e\u2028f".encode(), b"", b"g"]
    for cut in range(len(text) + 1):
        for size in (1, 2, 3, len(text) or 1):
            lines = streams.Lines()
            got: list[bytes] = []
            pieces = [text[:cut]] + [text[i : i + size] for i in range(cut, len(text), size)]
            for piece in pieces:
                if piece:
                    got += lines.feed(piece)
            assert got == expected and lines.rest() == b"", (cut, size)
    unfinished = streams.Lines()
    assert unfinished.feed(b"x\ny") == [b"x"] and unfinished.rest() == b"y"


# --- watch: the event parser and the reconnect policy, against MockTransport -----------------


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A streamed body in these chunks, then, with `error`, a dropped connection."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.error is not None:
            raise self.error


def event_data(version: int, username: str = "jane", **more: Any) -> str:
    body = record_body({"v": version}, version, username).json()
    body.update(version=version, actor=username, operation="patch", **more)
    return json.dumps(body)


def events_answer(chunks: list[bytes], error: Exception | None = None) -> httpx.Response:
    headers = {"Content-Type": "text/event-stream; charset=utf-8"}
    return httpx.Response(200, headers=headers, stream=Chunks(chunks, error))


def sse(event: str, event_id: str, data: str) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


def stream_answers() -> list[httpx.Response]:
    """What the reconnect tests' server answers, connection after connection."""
    snapshot = record_body({"v": 1}, 1).json() | {"version": 1, "actor": None, "operation": None}
    multiline = event_data(2).replace(",", ",\n" + "data:", 1)  # data over two lines
    return [
        httpx.Response(503, json={"detail": "Too many open event streams."},
                       headers={"Retry-After": "2"}),  # fmt: skip
        events_answer(
            [
                b": keep-alive\r\n\r\n",
                sse("snapshot", "v.1", json.dumps(snapshot)).replace(b"\n", b"\r\n")[:30],
                sse("snapshot", "v.1", json.dumps(snapshot)).replace(b"\n", b"\r\n")[30:],
                b"retry: 100\nid: v.2\nevent: change\ndata:" + multiline.encode() + b"\n\n",
                b"id: v.x\nevent: future-kind\ndata: {}\n\n",  # unknown: skipped, id kept
                b"id: v.3\nevent: change\ndata: " + event_data(3).encode()[:20],  # cut short
            ],
            httpx.RemoteProtocolError("peer closed connection"),
        ),
        httpx.Response(502, text="Bad Gateway"),  # a proxy while the server restarts
        events_answer([sse("change", "v.3", event_data(3)).replace(b"\n", b"\r")]),  # then ends
        events_answer([sse("change", "v.4", event_data(4, note="\x85"))]),
        httpx.Response(401, json={"detail": "Invalid token."}),
    ]


def check_watched(
    changes: list[Any], sent: list[httpx.Request], waits: list[float], error: BaseException
) -> None:
    assert [(c.event, c.id, c.version) for c in changes] == [
        ("snapshot", "v.1", 1),
        ("change", "v.2", 2),
        ("change", "v.3", 3),
        ("change", "v.4", 4),
    ]
    snapshot, second = changes[0], changes[1]
    assert (snapshot.actor, snapshot.operation, snapshot.metadata) == (None, None, {"v": 1})
    assert (second.actor, second.operation, second.username) == ("jane", "patch", "jane")
    assert second.etag == '"2"' and second.platform_key == P
    assert second.record == MetadataRecord(
        "jane", P, {"v": 2}, '"2"', 2, second.created_at, second.updated_at
    )
    assert changes[3].metadata == {"v": 4}
    # Each connection resumes after the last event received; the 401 ends the watch.
    resumed = [r.headers.get("last-event-id") for r in sent]
    assert resumed == [None, None, "v.x", "v.x", "v.3", "v.4"]
    for request in sent:
        assert query(request) == [("platform_key", P), ("username", "jane")]
        assert request.url.path == URL + "events/"
        assert request.headers["accept"] == "text/event-stream"
        assert request.headers["authorization"] == "Token tok"
    assert isinstance(error, NotAuthenticated)
    # 503: its Retry-After; then backoffs of at least the server's `retry:` of 100 ms, none
    # longer than the bound.
    assert waits[0] == 2.0 and len(waits) == 5  # one wait before each reconnection
    assert all(0.1 <= wait <= watching.WATCH_BACKOFF_CAP for wait in waits[1:])


def test_watch_parses_events_and_reconnects_with_the_last_event_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Snapshot and changes as typed `Change`s (CRLF and CR line ends, comments, data over
    two lines, an event split between chunks); a 503 waits its Retry-After; a dropped
    connection, a gateway's 502 and a stream the server ended reconnect with Last-Event-ID;
    an event cut short is dropped and replayed; a 401 is raised, not retried."""
    waits: list[float] = []
    monkeypatch.setattr(blocking, "sleep", waits.append)
    answers = iter(stream_answers())
    changes: list[Any] = []
    with mocked(lambda request: next(answers)) as (client, sent):
        with pytest.raises(NotAuthenticated) as refused:
            for change in client.watch(P, username="jane"):
                changes.append(change)
    check_watched(changes, sent, waits, refused.value)


@pytest.mark.anyio
async def test_async_watch_parses_events_and_reconnects_with_the_last_event_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The async client reads the same answers the same way."""
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asynchronous, "sleep", wait)
    answers = iter(stream_answers())
    changes: list[Any] = []
    async with amocked(lambda request: next(answers)) as (client, sent):
        with pytest.raises(NotAuthenticated) as refused:
            async for change in client.watch(P, username="jane"):
                changes.append(change)
    check_watched(changes, sent, waits, refused.value)


def test_watch_without_reconnect_and_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """reconnect=False: the first stream's end ends the iteration, a dropped connection or a
    503 is raised; `last_event_id` goes out as Last-Event-ID; a reset comes with no record;
    username with all_users fails before anything is sent."""
    monkeypatch.setattr(blocking, "sleep", lambda seconds: pytest.fail("no retry expected"))
    reset = events_answer([b"id: s.9\nevent: reset\ndata: {}\n\n"])
    with mocked(lambda request: reset) as (client, sent):
        (only,) = client.watch(P, all_users=True, last_event_id="s.1", reconnect=False)
        with pytest.raises(ValueError):
            client.watch(P, username="jane", all_users=True)
    assert (only.event, only.id, only.username, only.version) == ("reset", "s.9", None, None)
    assert only.record is None and only.etag is None and only.platform_key == P
    assert query(sent[0]) == [("platform_key", P), ("all_users", "true")]
    assert sent[0].headers["last-event-id"] == "s.1" and len(sent) == 1

    dropped = events_answer([b": hi\n\n"], httpx.ReadError("reset by peer"))
    with mocked(lambda request: dropped) as (client, sent):
        with pytest.raises(httpx.ReadError):
            list(client.watch(P, reconnect=False))
    busy = httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "1"})
    with mocked(lambda request: busy) as (client, sent):
        with pytest.raises(Unavailable) as unavailable:
            list(client.watch(P, reconnect=False))
    assert unavailable.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("response", "cls"),
    [
        (httpx.Response(403, json={"error": "no"}), PermissionDenied),
        (httpx.Response(404, json={"error": "Platform not found"}), NotFound),
        (httpx.Response(400, json={"all_users": ["no"]}), ValidationError),
        (httpx.Response(200, text="<html>a proxy page</html>"), UnexpectedResponse),
        (events_answer([b"event: change\ndata: {not json\n\n"]), UnexpectedResponse),
    ],
    ids=["403", "404", "400", "200-html", "data-off-contract"],
)
def test_watch_raises_refusals_and_never_retries_them(
    monkeypatch: pytest.MonkeyPatch, response: httpx.Response, cls: type[MetadataClientError]
) -> None:
    monkeypatch.setattr(blocking, "sleep", lambda seconds: pytest.fail("no retry expected"))
    with mocked(lambda request: response) as (client, sent):
        with pytest.raises(cls):
            next(client.watch(P))
    assert len(sent) == 1


def test_watch_backoff_is_bounded_and_starts_again_after_a_delivery() -> None:
    """Connection refused again and again: jittered waits doubling up to the cap; a
    connection that delivers anything brings the next wait back to the first."""
    watch = watching.Watch(
        calls.Calls(API, "t"), P, username=None, all_users=False, last_event_id=None,
        reconnect=True,
    )  # fmt: skip
    refused = httpx.ConnectError("refused")
    waits = [watch.delay(refused) for _ in range(12)]
    for attempt, wait in enumerate(waits):
        bound = min(watching.WATCH_BACKOFF_CAP, watching.WATCH_BACKOFF_BASE * 2**attempt)
        assert wait is not None and bound / 2 <= wait <= bound
    watch.connected()
    watch.feed(b": keep-alive\n\n")
    first = watch.delay(None)
    assert first is not None and first <= watching.WATCH_BACKOFF_BASE
    for fatal in (httpx.UnsupportedProtocol("ftp"), httpx.LocalProtocolError("bad header")):
        assert watch.delay(fatal) is None
    for dropped in (httpx.ReadTimeout("slow"), httpx.ProxyError("gone"), httpx.WriteError("w")):
        assert watch.delay(dropped) is not None
    timeout = watch.timeout(httpx.Timeout(10.0))
    assert timeout.read == watching.WATCH_READ_TIMEOUT and timeout.connect == 10.0
    assert watch.timeout(httpx.Timeout(None)).read is None


# --- watch against the real app and the real server -------------------------------------------


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def watching_app() -> tuple[PlatformMetadataApp, Starlette, dict[str, str]]:
    """The app in process (MemoryStore), with PEOPLE, to serve with uvicorn: a stream needs
    a transport that streams."""
    auth = FakeAuth()
    tokens = {
        username: auth.add(platform, username, admin=admin)["Authorization"].split()[1]
        for platform, username, admin in PEOPLE
    }
    metadata_app = PlatformMetadataApp(auth=auth, store=MemoryStore())
    return metadata_app, Starlette(routes=[Mount(URL.rstrip("/"), app=metadata_app)]), tokens


@pytest.mark.anyio
async def test_async_watch_in_process_gets_a_snapshot_then_every_change() -> None:
    """One user's stream: the snapshot, then each write (patch, put, delete, restore) as a
    typed change, in order; an admin's all_users stream sees every user's changes; a cursor
    the server never issued gives an all_users stream a reset."""
    metadata_app, app, tokens = watching_app()
    async with serving(app) as base:
        async with AsyncMetadataClient(base, tokens["wanda"]) as wanda, AsyncMetadataClient(
            base, tokens["warden"]
        ) as warden:
            await wanda.patch("watching", {"before": True})
            async with contextlib.aclosing(wanda.watch("watching")) as mine:
                everyone: list[Change] = []

                async def follow() -> None:
                    async for change in warden.watch("watching", all_users=True):
                        everyone.append(change)

                follower = asyncio.create_task(follow())
                snapshot = await asyncio.wait_for(anext(mine), 5)
                await until(lambda: metadata_app.hub.open_streams == 2)
                assert (snapshot.event, snapshot.version, snapshot.metadata) == (
                    "snapshot",
                    1,
                    {"before": True},
                )
                assert (snapshot.actor, snapshot.operation, snapshot.id) == (None, None, "v.1")
                patched = await wanda.patch("watching", {"n": 1}, if_match=snapshot.etag)
                await wanda.replace("watching", {"n": 2})
                await warden.patch("watching", {"other": 1}, username="walter")
                await wanda.delete("watching")
                await wanda.restore("watching", patched.version)
                seen = [await asyncio.wait_for(anext(mine), 5) for _ in range(4)]
                assert [(c.event, c.version, c.operation, c.actor) for c in seen] == [
                    ("change", 2, "patch", "wanda"),
                    ("change", 3, "put", "wanda"),
                    ("change", 4, "delete", "wanda"),
                    ("change", 5, "restore", "wanda"),
                ]
                assert seen[0].record == patched
                assert seen[2].metadata == {} and seen[2].created_at is None
                assert seen[3].metadata == {"before": True, "n": 1}
                await until(lambda: len(everyone) == 5)
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
                assert [(c.username, c.version) for c in everyone] == [
                    ("wanda", 2), ("wanda", 3), ("walter", 1), ("wanda", 4), ("wanda", 5),
                ]  # fmt: skip
                assert [c.id for c in everyone] == [f"s.{n}" for n in range(2, 7)]

            async with contextlib.aclosing(
                warden.watch("watching", all_users=True, last_event_id="bogus")
            ) as resumed:
                reset = await asyncio.wait_for(anext(resumed), 5)
                assert (reset.event, reset.username, reset.id) == ("reset", None, "s.6")
            # A member may not watch the platform, nor another user.
            with pytest.raises(PermissionDenied):
                await anext(wanda.watch("watching", all_users=True))
            with pytest.raises(PermissionDenied):
                await anext(wanda.watch("watching", username="walter"))
            await until(lambda: metadata_app.hub.open_streams == 0)


def test_sync_watch_over_http(served: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocking client against the example host: snapshot, then changes as they are
    written; a resumed watch replays exactly what came after its cursor; refusals raise at
    once, never retried."""
    monkeypatch.setattr(blocking, "sleep", lambda seconds: pytest.fail("no retry expected"))
    base, tokens = served.base_url, served.tokens
    with MetadataClient(base, tokens["walter"]) as walter:
        changes = walter.watch("watching")
        snapshot = next(changes)
        assert (snapshot.event, snapshot.username, snapshot.platform_key) == (
            "snapshot",
            "walter",
            "watching",
        )
        first = walter.patch("watching", {"n": 1})
        second = walter.update("watching", lambda m: {"n": m["n"] + 1})
        got = [next(changes), next(changes)]
        assert [(c.version, c.metadata) for c in got] == [
            (first.version, {"n": 1}),
            (second.version, {"n": 2}),
        ]
        changes.close()  # the connection closes with the generator

        walter.patch("watching", {"n": 3})
        resumed = walter.watch("watching", last_event_id=got[0].id)
        assert [(c.event, c.version) for c in (next(resumed), next(resumed))] == [
            ("change", second.version),
            ("change", second.version + 1),
        ]
        resumed.close()

        with pytest.raises(PermissionDenied):
            next(walter.watch("watching", username="wanda"))
        with pytest.raises(NotFound):
            next(walter.watch("no-such-platform"))
    with MetadataClient(base, "0" * 40) as stranger:
        with pytest.raises(NotAuthenticated):
            next(stranger.watch("watching"))


@pytest.mark.slow
@pytest.mark.anyio
async def test_watch_resumes_across_a_server_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example host stopped (SIGINT) and started again on the same SQLite file and port
    while a watch is open: the watch retries while nothing listens, reconnects with
    Last-Event-ID, gets the changes written before it was back (replayed from history) and
    the live ones after: every version once, in order, none missing."""
    database = f"sqlite:///{tmp_path / 'host.db'}"
    tokens = await add_people(database)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    waits: list[float] = []
    parked, release = asyncio.Event(), asyncio.Event()
    release.set()

    async def wait(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(min(seconds, 0.05))
        if not release.is_set():
            parked.set()
            await release.wait()

    monkeypatch.setattr(asynchronous, "sleep", wait)
    got: list[Change] = []

    async def follow() -> None:
        async with AsyncMetadataClient(base, tokens["wanda"]) as client:
            async for change in client.watch("watching"):
                got.append(change)

    async def write(numbers: range) -> None:
        async with AsyncMetadataClient(base, tokens["wanda"]) as writer:
            for n in numbers:
                await writer.patch("watching", {"n": n})

    server = contextlib.ExitStack()
    await asyncio.to_thread(server.enter_context, host(database, tmp_path, port))
    follower = asyncio.create_task(follow())
    try:
        await until(lambda: len(got) == 1)
        await write(range(1, 4))
        await until(lambda: len(got) == 4)

        # Held back from reconnecting until the server has exited, so that the changes
        # written below are missed while it is down and must be replayed on resume (a stream
        # asked for during the shutdown would get 503 and wait its Retry-After).
        release.clear()
        await asyncio.to_thread(server.close)
        await asyncio.wait_for(parked.wait(), 10)
        parked.clear()
        release.set()
        await until(lambda: len(waits) >= 3)  # the stream's end, then refused connections
        release.clear()
        await asyncio.wait_for(parked.wait(), 10)  # held back until changes were missed

        server = contextlib.ExitStack()
        await asyncio.to_thread(server.enter_context, host(database, tmp_path, port))
        await write(range(4, 7))
        release.set()
        await until(lambda: len(got) == 7)
        await write(range(7, 9))
        await until(lambda: len(got) == 9)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await asyncio.to_thread(server.close)
    assert [c.event for c in got] == ["snapshot"] + ["change"] * 8
    assert [c.version for c in got] == list(range(9))  # strictly consecutive: no gap, no twice
    assert [c.metadata for c in got[1:]] == [{"n": n} for n in range(1, 9)]
    assert [c.id for c in got] == [f"v.{n}" for n in range(9)]
    assert all(0 < wait <= watching.WATCH_BACKOFF_CAP for wait in waits)
