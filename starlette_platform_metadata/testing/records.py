"""`RecordsContract`: the optional `records` listing, and its filter cases."""

from __future__ import annotations

from typing import Any

import pytest

from .. import changes
from ..stores.base import (
    POLICY_USERNAME,
    RecordLister,
    Store,
)
from .values import P

__all__ = ["FILTER_CASES", "FILTER_DOCUMENTS", "RecordsContract"]

@pytest.mark.anyio
class RecordsContract:
    """The rules of the optional `records` method; subclass it beside `StoreContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_records_lists_stored_documents_by_username(self, store: Store) -> None:
        """Ordered by username; other platforms, tombstones and the policy record left out."""
        assert isinstance(store, RecordLister)
        assert await store.records(P) == []
        for user in ("carol", "alice", "bob", "dave"):
            await store.update(P, user, changes.replace({"name": user}))
        await store.update("other", "zed", changes.replace({"a": 1}))
        await store.update(P, "dave", changes.delete())
        await store.update(P, POLICY_USERNAME, changes.replace({"schema": None}))
        listed = await store.records(P)
        assert [username for username, _ in listed] == ["alice", "bob", "carol"]
        assert listed[0][1] == await store.get(P, "alice")
        assert listed[0][1].metadata == {"name": "alice"}

    async def test_records_pages_by_keyset(self, store: Store) -> None:
        """`after` starts strictly past a username; `limit` bounds a page; the walk ends."""
        assert isinstance(store, RecordLister)
        users = [f"user{i:02d}" for i in range(7)]
        for user in users:
            await store.update(P, user, changes.patch({"u": user}))
        seen: list[str] = []
        after: str | None = None
        while True:
            page = await store.records(P, after=after, limit=3)
            assert len(page) <= 3
            seen.extend(username for username, _ in page)
            if len(page) < 3:
                break
            after = page[-1][0]
        assert seen == users
        assert [u for u, _ in await store.records(P, after="user04", limit=100)] == users[5:]
        assert await store.records(P, after="user06") == []

    async def test_records_filter_compares_top_level_values_as_json(self, store: Store) -> None:
        """`filter`: numbers by value, booleans never numbers, objects and arrays as JSON,
        awkward keys; every case of `FILTER_CASES` gives exactly its expected users."""
        assert isinstance(store, RecordLister)
        for username, document in FILTER_DOCUMENTS.items():
            await store.update(P, username, changes.replace(document))
        await store.update("other", "a", changes.replace(FILTER_DOCUMENTS["b"]))
        await store.update(P, "gone", changes.replace({"plan": "pro"}))
        await store.update(P, "gone", changes.delete())
        for filter, expected in FILTER_CASES:
            found = await store.records(P, filter=filter)
            assert [username for username, _ in found] == expected, filter
            for username, record in found:
                assert record == await store.get(P, username)

    async def test_filtered_records_page_by_keyset(self, store: Store) -> None:
        """A filter and `after`/`limit` together: full pages of matches, in order, to the end."""
        assert isinstance(store, RecordLister)
        for i in range(30):
            await store.update(P, f"u{i:02d}", changes.replace({"even": i % 2 == 0, "i": i}))
        seen: list[str] = []
        after: str | None = None
        while True:
            page = await store.records(P, after=after, limit=4, filter={"even": True})
            seen.extend(username for username, _ in page)
            if len(page) < 4:
                break
            after = page[-1][0]
        assert seen == [f"u{i:02d}" for i in range(0, 30, 2)]
        assert await store.records(P, filter={"i": 29.0}) == [("u29", await store.get(P, "u29"))]


#: Documents of `FILTER_CASES`, by username.
FILTER_DOCUMENTS: dict[str, dict[str, Any]] = {
    "a": {"plan": "pro", "beta": True, "n": 7, "tags": ["x", 1], "o": {"k": 1, "j": [1.0, "s"]},
          "z": None},
    "b": {"plan": "pro", "beta": 1, "n": 7.0, "tags": ["x", 1.0], "o": {"j": [1, "s"], "k": 1.0}},
    "c": {"plan": "free", "beta": False, "n": -0.0, "tags": ["x"], "z": 0,
          "o": {"k": 1, "j": [1, "s"], "extra": 1}},
    "d": {"plan": "Pro", "n": 0, "big": 2**60, "tags": [1, "x"], "o": {}},
    "e": {"plan": ["pro"], "big": float(2**60), "n": 7.5, "beta": "true", "z": "null",
          "i": 2**63 - 1},
    "f": {'a"b': 1, "ключ": "v", "tab\tk": True, "a.b": 2, "u\u2028": "sep", "": "empty"},
    "g": {"plan": "pro", "nested": {"a": {"b": [True, False, None]}}, "i": 2**63 - 2},
}  # fmt: skip

#: `(filter, usernames it matches)` over `FILTER_DOCUMENTS`: the same on every store.
FILTER_CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, ["a", "b", "c", "d", "e", "f", "g"]),
    ({"plan": "pro"}, ["a", "b", "g"]),
    ({"plan": "pro", "beta": True}, ["a"]),
    ({"beta": 1}, ["b"]),
    ({"beta": True}, ["a"]),
    ({"beta": "true"}, ["e"]),
    ({"n": 7}, ["a", "b"]),
    ({"n": 7.0}, ["a", "b"]),
    ({"n": 0}, ["c", "d"]),
    ({"n": -0.0}, ["c", "d"]),
    ({"n": 7.5}, ["e"]),
    ({"tags": ["x", 1]}, ["a", "b"]),
    ({"tags": ["x"]}, ["c"]),
    ({"tags": []}, []),
    ({"o": {"k": 1, "j": [1, "s"]}}, ["a", "b"]),
    ({"o": {}}, ["d"]),
    ({"z": None}, ["a"]),
    ({"z": 0}, ["c"]),
    ({"z": False}, []),
    ({"big": 2**60}, ["d", "e"]),
    ({"big": float(2**60)}, ["d", "e"]),
    ({"i": 2**63 - 1}, ["e"]),
    ({"i": float(2**63)}, []),
    ({"plan": ["pro"]}, ["e"]),
    ({"plan": "PRO"}, []),
    ({'a"b': 1, "ключ": "v", "tab\tk": True, "a.b": 2.0}, ["f"]),
    ({"u\u2028": "sep"}, ["f"]),
    ({"": "empty"}, ["f"]),
    ({"nested": {"a": {"b": [True, False, None]}}}, ["g"]),
    ({"nested": {"a": {"b": [1, 0, None]}}}, []),
    ({"missing": None}, []),
    ({"n": 7, "plan": "pro", "tags": ["x", 1.0]}, ["a", "b"]),
]
