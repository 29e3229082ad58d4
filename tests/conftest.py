"""Shared fixtures: every endpoint test runs against every store.

Stores: `MemoryStore`, `DatabaseStore` on a SQLite file, and `DatabaseStore` on PostgreSQL when
`TEST_POSTGRES_URL` is set (CI sets it; see README).  Each PostgreSQL test gets its own table,
so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from starlette_platform_metadata import (
    AuthenticationFailed,
    DatabaseStore,
    Identity,
    Limits,
    MemoryStore,
    PlatformAccess,
    PlatformMetadataApp,
    Store,
    token_from_header,
)

from .topology import Topology, bring_up

URL = "/api/core/users/platform-metadata/"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")

STORE_KINDS = ["memory", "sqlite"] + (["postgresql"] if POSTGRES_URL else [])
DATABASE_KINDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeAuth:
    """An `AuthBackend` written the way a host would: plain dicts, no inheritance."""

    tokens: dict[str, str] = field(default_factory=dict)
    platforms: set[str] = field(default_factory=set)
    # (platform_key, username) -> is_admin
    members: dict[tuple[str, str], bool] = field(default_factory=dict)
    member_questions: int = 0

    def add(self, platform: str, username: str, *, admin: bool = False) -> dict[str, str]:
        """Make `username` a member of `platform`; return its Authorization header."""
        self.platforms.add(platform)
        self.members[(platform, username)] = admin
        token = f"tok-{username}"
        self.tokens[token] = username
        return {"Authorization": f"Token {token}"}

    async def authenticate(self, conn: HTTPConnection) -> Identity | None:
        key = token_from_header(conn)
        if key is None:
            return None
        if key not in self.tokens:
            raise AuthenticationFailed("Invalid token.")
        return Identity(self.tokens[key])

    async def access(
        self, identity: Identity, platform_key: str, target: str | None
    ) -> PlatformAccess:
        if platform_key not in self.platforms:
            return PlatformAccess(platform_exists=False)
        role = self.members.get((platform_key, identity.username))
        return PlatformAccess(
            platform_exists=True,
            is_member=role is not None,
            is_admin=bool(role),
            target_is_member=target is not None and (platform_key, target) in self.members,
        )

    async def members_among(
        self, identity: Identity, platform_key: str, usernames: Sequence[str]
    ) -> set[str]:
        """The optional batch question (`MemberLister`): one lookup per page of users."""
        self.member_questions += 1
        return {name for name in usernames if (platform_key, name) in self.members}


def make_store(kind: str, tmp_path: Path) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return DatabaseStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    assert POSTGRES_URL is not None
    return DatabaseStore(POSTGRES_URL, table=f"t_{uuid.uuid4().hex[:12]}")


async def close_store(store: Store) -> None:
    if isinstance(store, DatabaseStore):
        await store.disconnect()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def store(store_kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    made = make_store(store_kind, tmp_path)
    yield made
    await close_store(made)


@pytest.fixture
def auth() -> FakeAuth:
    return FakeAuth()


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
def app(auth: FakeAuth, store: Store, limits: Limits) -> Starlette:
    return Starlette(
        routes=[
            Mount(
                URL.rstrip("/"),
                app=PlatformMetadataApp(auth=auth, store=store, limits=limits),
            )
        ]
    )


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as c:
        yield c


@pytest.fixture
def acme(auth: FakeAuth) -> Iterator[dict[str, dict[str, str]]]:
    """Platform acme-corp with john_doe, jane and an admin; platform other with eve and its admin."""
    yield {
        "john": auth.add("acme-corp", "john_doe"),
        "jane": auth.add("acme-corp", "jane"),
        "admin": auth.add("acme-corp", "acme_admin", admin=True),
        "eve": auth.add("other", "eve"),
        "other_admin": auth.add("other", "other_admin", admin=True),
    }


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    """PostgreSQL, PgBouncer, two example hosts and nginx (`scripts/topology`), once per run."""
    yield from bring_up()
