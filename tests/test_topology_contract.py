"""The contract suite (test_contract.py) and the live-changes suite (test_events.py) again,
through nginx in front of two example hosts on PgBouncer and PostgreSQL (`scripts/topology`).

Every test of those modules that speaks only HTTP runs here unchanged: its `client` is an
httpx client of nginx's address, its `acme` users are the host's own (made with `add-users`),
and each test starts from empty metadata (the tables are emptied in between, as each test
there has a store of its own).  Left out, each for the reason given in `LEFT_OUT`: tests that
reach into the in-process app or the fake auth backend rather than HTTP."""

from __future__ import annotations

import inspect
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from . import test_contract, test_events
from .test_example_host import auth
from .topology import Topology

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: Tests that need more than HTTP, or check how a Starlette *mount* answers (the example
#: host serves the endpoint through the middleware instead).
LEFT_OUT = {
    "test_path_without_trailing_slash_is_served": "a Mount's 307; the host's middleware serves both",
    "test_whitespace_around_the_key_is_ignored": "httpx refuses to send a header value that "
    "starts or ends with whitespace over a real connection (HTTP strips it anyway)",
}
#: Cases of a parametrized test that cannot cross a real connection or that nginx answers
#: itself: (test, parameter, value).
CASES_LEFT_OUT = {
    # A header value ending in a space, as above.
    ("test_unauthenticated_requests_get_drf_401_bodies", "authorization", "Token "),
    # nginx answers TRACE (405) and CONNECT (400) itself and never passes them on.
    ("test_other_methods_are_405_with_allow", "method", "TRACE"),
    ("test_other_methods_are_405_with_allow", "method", "CONNECT"),
    # The hosts' HTTP parser (httptools, serve's default) refuses a method it does not know
    # with its own 400 before any app sees it; the ASGI suite never parses one.
    ("test_other_methods_are_405_with_allow", "method", "FOO"),
}
#: Fixtures a test may take here: the rest (`auth`, `store`, `served.app`) are in-process.
HTTP_FIXTURES = {"client", "acme", "served"}
USERS = {
    "acme-corp": (["john_doe", "jane"], ["acme_admin"]),
    "other": (["eve"], ["other_admin"]),
}
NAMES = {"john_doe": "john", "jane": "jane", "acme_admin": "admin", "eve": "eve", "other_admin": "other_admin"}


def _parametrized(function: Callable[..., Any]) -> set[str]:
    names: set[str] = set()
    for mark in getattr(function, "pytestmark", []):
        if mark.name == "parametrize":
            given = mark.args[0]
            names |= set(given) if isinstance(given, (list, tuple)) else {
                name.strip() for name in given.split(",")
            }
    return names


def _without_cases(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, or a copy whose parametrize marks leave out its `CASES_LEFT_OUT` (the
    original, still collected in its own module, keeps every case)."""
    dropped = {(arg, value) for test, arg, value in CASES_LEFT_OUT if test == name}
    if not dropped:
        return function
    marks = []
    for mark in function.pytestmark:  # type: ignore[attr-defined]
        if mark.name == "parametrize":
            names = mark.args[0]
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
            kept = [
                values
                for values in mark.args[1]
                if not any(
                    (arg, value) in dropped
                    for arg, value in zip(names, values if len(names) > 1 else (values,))
                )
            ]
            mark = pytest.mark.parametrize(mark.args[0], kept, **mark.kwargs).mark
        marks.append(mark)
    copy = types.FunctionType(
        function.__code__, function.__globals__, name, function.__defaults__, function.__closure__
    )
    copy.__doc__ = function.__doc__
    copy.pytestmark = marks  # type: ignore[attr-defined]
    return copy


def _over_http(module: Any) -> Iterator[tuple[str, Callable[..., Any]]]:
    for name, function in vars(module).items():
        if not name.startswith("test_") or not inspect.isfunction(function):
            continue
        fixtures = set(inspect.signature(function).parameters) - _parametrized(function)
        if not fixtures or not fixtures <= HTTP_FIXTURES or name in LEFT_OUT:
            continue
        if "served.app" in inspect.getsource(function):
            continue
        yield name, _without_cases(name, function)


for _name, _function in [*_over_http(test_contract), *_over_http(test_events)]:
    globals()[_name] = _function


@pytest.fixture(scope="module")
def acme_tokens(topology: Topology) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for platform, (members, admins) in USERS.items():
        for names, admin in ((members, False), (admins, True)):
            for username, token in topology.add_users(platform, names, admin=admin).items():
                found[NAMES[username]] = auth(token)
    return found


@pytest.fixture
async def acme(
    topology: Topology, acme_tokens: dict[str, dict[str, str]]
) -> AsyncIterator[dict[str, dict[str, str]]]:
    """The contract suite's users, with nothing stored: each test starts as on a new store.
    The platforms' change clocks stay (a host still following a platform keeps its place)."""
    connection = await asyncpg.connect(topology.database_url)
    try:
        await connection.execute("TRUNCATE platform_metadata, platform_metadata_history")
    finally:
        await connection.close()
    yield acme_tokens


@pytest.fixture
async def client(topology: Topology) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=topology.base, timeout=10) as c:
        yield c


@pytest.fixture
async def served(client: httpx.AsyncClient) -> test_events.Served:
    return test_events.Served(None, client)  # type: ignore[arg-type]


def test_the_suites_run_here_nearly_whole() -> None:
    """Guards the selection above: most of both suites runs through nginx, and what is left
    out is left out for a reason written down."""
    here = {name for name in globals() if name.startswith("test_")}
    contract = {n for n in vars(test_contract) if n.startswith("test_")}
    events = {n for n in vars(test_events) if n.startswith("test_")}
    assert len(contract & here) >= len(contract) - 5
    assert len(events & here) >= 6
