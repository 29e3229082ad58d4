"""The store contract, as a test suite anyone can run against their own `Store`.

Subclass `StoreContract` in a pytest module and give it a `store` fixture::

    import pytest
    from starlette_platform_metadata.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self):
            store = MyStore()
            yield store
            await store.close()

Every test of the class then runs against your store (needs pytest and the anyio plugin, which
comes with Starlette).  The tests use only the seam, `get` and `update`, with the changes the
package itself makes (`changes.patch`, `changes.replace`, `changes.delete`), so a store that
passes them serves the whole HTTP contract.  A store with the optional `records` method
(listing a platform's documents, for the policy's `violating_documents`) also subclasses
`RecordsContract`; one that keeps history (`HistoryReader`), `HistoryContract`.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from . import changes
from .conditional import Conditions, parse
from .jsontext import dump
from .stores.base import (
    EMPTY,
    POLICY_USERNAME,
    Change,
    ChangeReader,
    HistoryReader,
    ManyReader,
    ManyWriter,
    Record,
    RecordLister,
    Store,
    Write,
)

__all__ = ["AWKWARD", "FILTER_CASES", "FILTER_DOCUMENTS", "ManyWriterContract", "ChangeReaderContract", "HistoryContract", "ManyReaderContract", "RecordsContract", "StoreContract", "same"]

P, U = "acme-corp", "john_doe"

#: Keys and values that break naive stores: quoting, Unicode, numbers at the edges.
AWKWARD: dict[str, Any] = {
    "k" * 2000: "a very long key",
    "ключ 鍵 🔑": "a Unicode key",
    "a.b": "dot",
    "$set": "dollar",
    'say "hi"': "quote",
    "[0]": "brackets",
    "back\\slash": "backslash",
    "tab\tand\nnewline": "control characters in a key",
    "one_float": 1.0,
    "one_int": 1,
    "negative_zero": -0.0,
    "huge": 1e300,
    "e16": 1e16,
    "tiny": 1.5e-10,
    "subnormal": 5e-324,
    "max_float": 1.7976931348623157e308,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "zero": 0,
    "empty_string": "",
    "empty_list": [],
    "empty_object": {},
    "bools_and_null": [True, False, None],
    "nested": {"a": [1, [2.5, [3, {"b": None, "": ""}]]], "z": {"y": {"x": "deep"}}},
    "emoji": "😀👍🏽🇺🇦",
    "separators": "line\u2028paragraph\u2029end",
    "controls": "\x01\x1f\x7f\u0085",
    "escapes": '"\\/\b\f\n\r\t',
    "mixed_list": [1, 1.0, -0.0, "1", None, {"k": [1e300]}],
}


def same(a: Any, b: Any) -> bool:
    """Equal as parsed JSON, types included: 1 is not 1.0, and -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _if_match(record: Record) -> Conditions:
    return Conditions(if_match=parse("If-Match", f'"{record.version}"', 64))


def _fixed(record: Record, operation: str = "replace") -> Change:
    """A change that stores exactly `record`, whatever is stored now."""
    return lambda current: Write(record, operation)


@pytest.mark.anyio
class StoreContract:
    """The rules every `Store` keeps; subclass it and provide a `store` fixture."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    # --- reading and writing exactly -------------------------------------------------------

    async def test_get_of_nothing_is_empty_version_zero(self, store: Store) -> None:
        """A pair never written reads as `EMPTY`: `{}`, version 0, no timestamps."""
        assert await store.get(P, U) == EMPTY

    async def test_update_stores_exactly_the_record_the_change_returns(self, store: Store) -> None:
        """The text byte for byte, the version, both timestamps to the microsecond, in UTC."""
        created = datetime(2024, 1, 15, 10, 30, 0, 123456, tzinfo=timezone.utc)
        updated = created + timedelta(days=5, microseconds=1)
        record = Record('{"b":1,"a":[1.0,-0.0]}', 7, created, updated)
        assert await store.update(P, U, _fixed(record)) == record
        stored = await store.get(P, U)
        assert stored == record
        assert stored.metadata_json == '{"b":1,"a":[1.0,-0.0]}'
        assert stored.created_at is not None and stored.created_at.utcoffset() == timedelta(0)

    async def test_change_sees_the_record_as_last_stored(self, store: Store) -> None:
        seen: list[Record] = []

        def spy(value: str) -> Change:
            def change(current: Record) -> Write | None:
                seen.append(current)
                return changes.patch({"n": value})(current)

            return change

        first = await store.update(P, U, spy("first"))
        assert seen[0] == EMPTY
        seen.clear()
        second = await store.update(P, U, spy("second"))
        assert seen[-1] == first
        assert (second.metadata, second.version) == ({"n": "second"}, 2)

    async def test_a_change_returning_none_stores_nothing(self, store: Store) -> None:
        stored = await store.update(P, U, changes.replace({"a": 1}))
        assert await store.update(P, U, lambda current: None) == stored
        assert await store.get(P, U) == stored

    async def test_a_refusing_change_stores_nothing_and_its_error_comes_back(
        self, store: Store
    ) -> None:
        class Refused(Exception):
            pass

        def refuse(current: Record) -> Write:
            raise Refused(current)

        with pytest.raises(Refused):
            await store.update(P, U, refuse)
        assert await store.get(P, U) == EMPTY
        stored = await store.update(P, U, changes.replace({"a": 1}))
        with pytest.raises(Refused):
            await store.update(P, U, refuse)
        assert await store.get(P, U) == stored

    async def test_a_deleted_record_is_a_tombstone_that_keeps_its_version(
        self, store: Store
    ) -> None:
        await store.update(P, U, changes.replace({"a": 1}))
        await store.update(P, U, changes.patch({"b": 2}))
        deleted = await store.update(P, U, changes.delete())
        assert deleted == Record("{}", 3, None, None)
        assert await store.get(P, U) == deleted
        again = await store.update(P, U, changes.delete())
        assert again == deleted, "deleting nothing changes nothing"
        recreated = await store.update(P, U, changes.patch({"c": 3}))
        assert (recreated.metadata, recreated.version, recreated.exists) == ({"c": 3}, 4, True)

    # --- what the package's changes make of it ---------------------------------------------

    async def test_patch_deletes_first_then_sets_and_keeps_other_keys(self, store: Store) -> None:
        first = await store.update(P, U, changes.patch({"a": 1, "b": 2, "c": 3}))
        record = await store.update(P, U, changes.patch({"b": "new", "d": 4}, ["b", "a", "x"]))
        assert record.metadata == {"c": 3, "b": "new", "d": 4}
        assert record.version == first.version + 1
        assert record.created_at == first.created_at
        assert record.updated_at is not None and first.updated_at is not None
        assert record.updated_at >= first.updated_at

    async def test_if_match_refusal_carries_the_record_it_saw(self, store: Store) -> None:
        stored = await store.update(P, U, changes.replace({"a": 1}))
        later = await store.update(P, U, changes.patch({"b": 2}))
        with pytest.raises(changes.PreconditionFailed) as refused:
            await store.update(P, U, changes.patch({"c": 3}, conditions=_if_match(stored)))
        assert refused.value.record == later
        assert await store.get(P, U) == later

    async def test_document_too_large_stores_nothing(self, store: Store) -> None:
        stored = await store.update(P, U, changes.replace({"a": "x" * 100}))
        with pytest.raises(changes.DocumentTooLarge):
            await store.update(P, U, changes.patch({"b": "y" * 100}, max_bytes=150))
        assert await store.get(P, U) == stored

    async def test_awkward_values_round_trip_identically(self, store: Store) -> None:
        """Keys and values that trip up SQL, JSON columns and float handling read back as the
        exact text that was written."""
        record = await store.update(P, U, changes.replace(AWKWARD))
        stored = await store.get(P, U)
        assert stored.metadata_json == record.metadata_json == dump(AWKWARD)
        assert same(stored.metadata, AWKWARD)

    async def test_a_64_kib_document_round_trips(self, store: Store) -> None:
        document = {f"key{i}": "v" * 60 for i in range(1000)}
        record = await store.update(P, U, changes.replace(document))
        assert (await store.get(P, U)).metadata_json == record.metadata_json

    async def test_pairs_are_isolated(self, store: Store) -> None:
        """Each (platform, user) is its own record, however alike the names."""
        pairs = [("p", "u"), ("p", "v"), ("q", "u"), ("a:b", "c"), ("a", "b:c"), ("P", "u"),
                 ("p", "u "), ("p", "ü"), ("p", "u\u0308")]  # fmt: skip
        for index, (platform, user) in enumerate(pairs):
            await store.update(platform, user, changes.replace({"i": index}))
        await store.update("p", "v", changes.delete())
        for index, pair in enumerate(pairs):
            record = await store.get(*pair)
            if pair == ("p", "v"):
                assert not record.exists
            else:
                assert (record.metadata, record.version) == ({"i": index}, 1), pair

    # --- atomicity -------------------------------------------------------------------------

    async def test_concurrent_updates_of_one_record_lose_nothing(self, store: Store) -> None:
        """Every update reads what the one before it wrote: no lost update, gapless versions."""
        writers = 40
        records = await asyncio.gather(
            *(store.update(P, U, changes.patch({f"k{i}": i})) for i in range(writers))
        )
        assert sorted(r.version for r in records) == list(range(1, writers + 1))
        record = await store.get(P, U)
        assert record.metadata == {f"k{i}": i for i in range(writers)}
        assert record.version == writers

    async def test_concurrent_conditional_updates_let_exactly_one_win(self, store: Store) -> None:
        stored = await store.update(P, U, changes.replace({"n": 0}))

        async def attempt(i: int) -> bool:
            try:
                await store.update(P, U, changes.patch({"n": i}, conditions=_if_match(stored)))
            except changes.PreconditionFailed:
                return False
            return True

        outcomes = await asyncio.gather(*(attempt(i) for i in range(1, 9)))
        assert outcomes.count(True) == 1
        assert (await store.get(P, U)).version == stored.version + 1

    async def test_updates_of_different_records_do_not_interfere(self, store: Store) -> None:
        users = [f"user{i}" for i in range(20)]
        await asyncio.gather(
            *(store.update(P, user, changes.patch({"k": n})) for user in users for n in range(3))
        )
        for user in users:
            record = await store.get(P, user)
            assert (record.version, set(record.metadata)) == (3, {"k"})


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


@pytest.mark.anyio
class ManyWriterContract:
    """The rules of the optional `update_many` method; subclass it beside `StoreContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_update_many_stores_each_change_and_answers_in_order(
        self, store: Store
    ) -> None:
        assert isinstance(store, ManyWriter)
        await store.update(P, "bob", changes.replace({"old": True}))
        records = await store.update_many(
            P,
            [
                ("carol", changes.replace({"c": 1})),
                ("bob", changes.replace(AWKWARD)),
                ("alice", changes.patch({"a": [1.0]})),
            ],
        )
        assert records == [await store.get(P, name) for name in ("carol", "bob", "alice")]
        assert [r.version for r in records] == [1, 2, 1]
        assert same(records[1].metadata, AWKWARD) and records[2].metadata_json == '{"a":[1.0]}'
        assert await store.get("other", "carol") == EMPTY
        assert await store.update_many(P, []) == []

    async def test_one_refusal_stores_nothing_at_all(self, store: Store) -> None:
        """All or nothing: a change that raises (a schema refusal, a 412) leaves every
        record, and its history, as it was."""
        assert isinstance(store, ManyWriter)
        before = await store.update(P, "bob", changes.with_history(changes.replace({"b": 1}), 10))
        stale = Conditions(if_match=parse("If-Match", '"9"', 64))
        with pytest.raises(changes.PreconditionFailed):
            await store.update_many(
                P,
                [
                    ("alice", changes.with_history(changes.replace({"a": 1}), 10)),
                    ("bob", changes.with_history(changes.replace({"b": 2}), 10)),
                    ("carol", changes.with_history(changes.replace({}, conditions=stale), 10)),
                ],
            )
        assert await store.get(P, "alice") == EMPTY
        assert await store.get(P, "bob") == before
        if isinstance(store, HistoryReader):
            assert await store.revisions(P, "alice") == []
            assert [r.version for r in await store.revisions(P, "bob")] == [1]

    async def test_history_of_each_change_is_kept_with_it(self, store: Store) -> None:
        assert isinstance(store, ManyWriter)
        await store.update_many(
            P,
            [
                (name, changes.with_history(changes.replace({"n": name}, actor="admin"), 10))
                for name in ("x", "y")
            ],
        )
        if isinstance(store, HistoryReader):
            for name in ("x", "y"):
                (revision,) = await store.revisions(P, name)
                assert (revision.version, revision.operation, revision.actor) == (1, "put", "admin")

    async def test_concurrent_single_writes_are_neither_lost_nor_interleaved(
        self, store: Store
    ) -> None:
        """Batches and single updates of the same records (with history, so with the
        platform's change clock), at once: every change counts, and none waits forever."""
        assert isinstance(store, ManyWriter)
        names = [f"u{i}" for i in range(20)]

        async def batch(n: int) -> None:
            await store.update_many(
                P, [(name, changes.with_history(changes.patch({f"b{n}": n}), 10)) for name in names]
            )

        async def single(name: str, n: int) -> None:
            await store.update(P, name, changes.with_history(changes.patch({f"s{n}": n}), 10))

        await asyncio.gather(
            *(batch(n) for n in range(3)),
            *(single(name, n) for name in names for n in range(2)),
        )
        for name in names:
            record = await store.get(P, name)
            assert record.version == 5
            assert set(record.metadata) == {"b0", "b1", "b2", "s0", "s1"}


@pytest.mark.anyio
class ManyReaderContract:
    """The rules of the optional `get_many` method; subclass it beside `StoreContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_get_many_reads_each_as_get_would_in_the_order_asked(
        self, store: Store
    ) -> None:
        """Stored, never written, deleted and the policy record, in any order; other
        platforms' records of the same names never come back."""
        assert isinstance(store, ManyReader)
        await store.update(P, "alice", changes.replace({"a": 1}))
        await store.update(P, "bob", changes.replace({"b": 1}))
        await store.update(P, "bob", changes.delete())
        await store.update("other", "carol", changes.replace({"c": 1}))
        await store.update(P, POLICY_USERNAME, changes.replace({"schema": None}))
        names = ["carol", POLICY_USERNAME, "bob", "alice", "alice"]
        many = await store.get_many(P, names)
        assert many == [await store.get(P, name) for name in names]
        assert many[0] == EMPTY and many[2] == Record("{}", 2, None, None)
        assert many[3].metadata == {"a": 1}
        assert await store.get_many(P, []) == []
        # A long list (a store may read a few names and many differently).
        names = [f"nobody{i}" for i in range(12)] + ["alice", "carol", "alice", POLICY_USERNAME]
        many = await store.get_many(P, names)
        assert many == [await store.get(P, name) for name in names]
        assert many[12].metadata == many[14].metadata == {"a": 1} and many[13] == EMPTY


@pytest.mark.anyio
class HistoryContract:
    """The rules of history (`HistoryReader.revisions` and the `Write` fields it keeps);
    subclass it beside `StoreContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_each_revision_is_kept_with_its_record_newest_first(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        await store.update(P, U, changes.with_history(changes.replace(AWKWARD, actor="ann"), 10))
        await store.update(P, U, changes.with_history(changes.patch({"x": 1}, actor="bob"), 10))
        await store.update(P, U, changes.with_history(changes.delete(actor="cid"), 10))
        await store.update(P, "other", changes.with_history(changes.replace({"o": 1}), 10))
        revisions = await store.revisions(P, U)
        assert [(r.version, r.operation, r.actor) for r in revisions] == [
            (3, "delete", "cid"),
            (2, "patch", "bob"),
            (1, "put", "ann"),
        ]
        assert revisions[0].metadata == {} and revisions[1].changed_keys == ("x",)
        assert same(revisions[2].metadata, AWKWARD)
        assert revisions[2].changed_keys == tuple(sorted(AWKWARD))
        assert all(r.at.tzinfo is not None for r in revisions)
        assert [r.version for r in await store.revisions(P, U, before=3, limit=1)] == [2]
        assert await store.revisions(P, U, before=1) == []
        assert await store.revisions("other", U) == []

    async def test_a_refused_change_keeps_no_revision(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        await store.update(P, U, changes.with_history(changes.replace({"a": 1}), 10))
        stale = Conditions(if_match=parse("If-Match", '"9"', 64))
        with pytest.raises(changes.PreconditionFailed):
            await store.update(
                P, U, changes.with_history(changes.replace({"a": 2}, conditions=stale), 10)
            )
        assert [r.version for r in await store.revisions(P, U)] == [1]

    async def test_only_the_newest_keep_revisions_stay(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        for n in range(7):
            await store.update(P, U, changes.with_history(changes.replace({"n": n}), 3))
        assert [r.version for r in await store.revisions(P, U, limit=100)] == [7, 6, 5]
        # Keeping fewer from now on drops the older ones at the next write.
        await store.update(P, U, changes.with_history(changes.replace({"n": 8}), 1))
        assert [r.version for r in await store.revisions(P, U, limit=100)] == [8]

    async def test_purge_drops_earlier_revisions_in_the_same_write(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        for n in range(3):
            await store.update(P, U, changes.with_history(changes.replace({"n": n}), 10))
        await store.update(P, "bob", changes.with_history(changes.replace({"b": 1}), 10))
        record = await store.update(
            P, U, changes.with_history(changes.delete(), 10, purge=True)
        )
        assert (record.version, record.exists) == (4, False)
        assert [r.version for r in await store.revisions(P, U)] == [4]
        # Nothing stored: the record stays as it is, its history still goes.
        again = await store.update(P, U, changes.with_history(changes.delete(), 10, purge=True))
        assert again == record == await store.get(P, U)
        assert await store.revisions(P, U) == []
        assert [r.version for r in await store.revisions(P, "bob")] == [1]

    async def test_concurrent_updates_leave_gapless_revisions(self, store: Store) -> None:
        assert isinstance(store, HistoryReader)
        await asyncio.gather(
            *(
                store.update(P, U, changes.with_history(changes.patch({f"k{n}": n}), 100))
                for n in range(40)
            )
        )
        revisions = await store.revisions(P, U, limit=100)
        assert [r.version for r in revisions] == list(range(40, 0, -1))
        assert [len(r.metadata) for r in revisions] == list(range(40, 0, -1))


@pytest.mark.anyio
class ChangeReaderContract:
    """The rules of live changes' store methods (`ChangeReader`); beside `HistoryContract`."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_changes_are_numbered_per_platform_in_commit_order(self, store: Store) -> None:
        assert isinstance(store, ChangeReader)
        assert await store.position(P) == (0, 0)
        await asyncio.gather(
            *(
                store.update(P, f"user{n % 4}", changes.with_history(changes.patch({"n": n}), 10))
                for n in range(20)
            )
        )
        await store.update("other", U, changes.with_history(changes.patch({"o": 1}), 10))
        found = await store.changes(P, after=0, limit=100)
        assert [revision.seq for _, revision in found] == list(range(1, 21))
        per_user: dict[str, list[int]] = {}
        for username, revision in found:
            per_user.setdefault(username, []).append(revision.version)
        assert all(versions == sorted(versions) for versions in per_user.values())
        assert [r.seq for _, r in await store.changes(P, after=17)] == [18, 19, 20]
        assert [r.seq for _, r in await store.changes(P, after=5, limit=2)] == [6, 7]
        assert await store.position(P) == (20, 0)
        assert await store.position("other") == (1, 0)
        newest = found[-1][1]
        assert newest.created_at is not None and newest.at >= newest.created_at

    async def test_retention_moves_the_horizon_and_a_purge_does_not(self, store: Store) -> None:
        assert isinstance(store, ChangeReader)
        for n in range(5):
            await store.update(P, U, changes.with_history(changes.replace({"n": n}), 3))
        # Versions 1 and 2 (seq 1 and 2) were dropped by retention.
        assert await store.position(P) == (5, 2)
        await store.update(P, U, changes.with_history(changes.delete(), 3, purge=True))
        assert await store.position(P) == (6, 2)
        assert [r.seq for _, r in await store.changes(P, after=0)] == [6]

    async def test_retention_of_concurrent_changes_keeps_each_users_newest(
        self, store: Store
    ) -> None:
        """Many changes of the same users at once (a store may write them together): each
        user keeps exactly its newest, and the horizon is the newest change dropped."""
        assert isinstance(store, ChangeReader) and isinstance(store, HistoryReader)
        await asyncio.gather(
            *(
                store.update(P, f"user{n % 2}", changes.with_history(changes.patch({"n": n}), 3))
                for n in range(20)
            )
        )
        for name in ("user0", "user1"):
            kept = await store.revisions(P, name, limit=100)
            assert [r.version for r in kept] == [10, 9, 8]
            assert all(r.metadata["n"] % 2 == int(name[-1]) for r in kept)
        stored = {r.seq for _, r in await store.changes(P, after=0, limit=100)}
        assert len(stored) == 6
        dropped = set(range(1, 21)) - stored
        assert await store.position(P) == (20, max(dropped))
