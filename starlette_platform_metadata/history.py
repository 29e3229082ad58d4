"""History: every change kept as a revision, paged by cursor, restorable.

`Writer` is the one place a user's record is written: it adds the revision to the change
(`changes.with_history`, stored by the store in the same atomic step) and tells the `Feed`
once the change is committed.  The HTTP resources are in `resources/history.py`; hosts call
`PlatformMetadataApp.history` / `.restore` from their own code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from . import changes
from .conditional import Conditions
from .feed import Committed, Feed
from .metrics import NO_METRICS, Metrics
from .policy import Policy
from .stores.base import (
    Change,
    GuardedWriter,
    HistoryReader,
    ManyWriter,
    Record,
    Revision,
    Store,
    Write,
    utcnow,
)

__all__ = ["DEFAULT_HISTORY_PER_USER", "Writer", "find_revision"]

#: Revisions kept per (platform, user) unless the host says otherwise.
DEFAULT_HISTORY_PER_USER = 100

# Versions are int64 in PostgreSQL; nothing ever gets near this.
_LARGEST = 2**62


async def find_revision(store: Store, platform_key: str, username: str, version: int) -> Revision | None:
    """Revision `version` of the user, if history still keeps it."""
    if not isinstance(store, HistoryReader) or version >= _LARGEST:
        return None
    found = await store.revisions(platform_key, username, before=version + 1, limit=1)
    return found[0] if found and found[0].version == version else None


def restore_change(
    revision: Revision,
    *,
    policy: Policy | None,
    member: bool,
    actor: str | None,
    conditions: Conditions | None = None,
    max_bytes: int | None = None,
    max_private_bytes: int | None = None,
) -> Change:
    """Revision's document as a new change, under the rules of a PUT by the same caller.

    A member's restore leaves the platform's protected and private keys as they are now:
    they are taken out of the old document, and the PUT rules keep their stored values.
    """
    document: Mapping[str, Any] = revision.metadata
    if member and policy is not None and (policy.protected_keys or policy.private_keys):
        document = {
            key: value
            for key, value in document.items()
            if not policy.is_protected(key) and not policy.is_private(key)
        }
    return changes.replace(
        document,
        conditions=conditions,
        max_bytes=max_bytes,
        actor=actor,
        policy=policy,
        member=member,
        operation="restore",
        max_private_bytes=max_private_bytes,
    )


class Writer:
    """Writes a user's record with its revision, then publishes the committed change.

    Args:
        store: where records live.
        keep: revisions kept per user (0: history off).
        feed: told of every committed change.
        metrics: told of every committed write whose retention dropped old revisions.
    """

    def __init__(
        self, store: Store, keep: int, feed: Feed, metrics: Metrics = NO_METRICS
    ) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"history_per_user must be an integer >= 0, not {keep!r}")
        self.store = store
        self.keep = keep if isinstance(store, HistoryReader) else 0
        self.feed = feed
        # Only when it reports anything (and history is on): a write then decides once more
        # whether it trims.
        self.metrics = metrics if metrics.enabled and self.keep else None

    async def write(
        self,
        platform_key: str,
        username: str,
        change: Change,
        *,
        purge: bool = False,
        guard: tuple[str, Record] | None = None,
    ) -> Record:
        """Run `change` in the store with history; refusals propagate (nothing stored).
        With `guard`, only while that record holds that state (`GuardedWriter`: the store
        must have `update_guarded`; `GuardMoved` propagates)."""
        recorded = changes.with_history(change, self.keep, purge=purge)
        trims: list[bool] | None = None
        if self.metrics is not None:
            trims = []
            recorded = _counting_trims(recorded, trims)
        if not self.feed.active:
            record = await self._update(platform_key, username, recorded, guard)
            if self.feed.watched:
                self.feed.committed(platform_key)
        else:
            record = await self._write_published(platform_key, username, recorded, guard)
        if trims and trims[-1] and self.metrics is not None:
            self.metrics.history_trimmed()
        return record

    async def _update(
        self, platform_key: str, username: str, change: Change, guard: tuple[str, Record] | None
    ) -> Record:
        if guard is None:
            return await self.store.update(platform_key, username, change)
        return await cast(GuardedWriter, self.store).update_guarded(
            platform_key, username, change, guard
        )

    async def _write_published(
        self, platform_key: str, username: str, recorded: Change, guard: tuple[str, Record] | None
    ) -> Record:
        """`store.update`, then the change published to the feed's subscribers."""
        # The store keeps the result of the last call of the change (it may call it again
        # after losing a race): that is the write to publish.
        last: list[tuple[Record, Write | None]] = []

        def kept(current: Record) -> Write | None:
            write = recorded(current)
            last[:] = [(current, write)]
            return write

        record = await self._update(platform_key, username, kept, guard)
        if self.feed.watched:
            self.feed.committed(platform_key)
        if last:
            await self._publish(platform_key, username, *last[0])
        return record

    async def write_many(
        self, platform_key: str, updates: Sequence[tuple[str, Change]]
    ) -> list[Record]:
        """Run several changes (distinct users) in one atomic step of the store
        (`ManyWriter.update_many`), each with its revision, then publish each committed change
        as `write` does.  A refusal of any: nothing is stored, and it propagates."""
        store = self.store
        if not isinstance(store, ManyWriter):
            raise TypeError(f"{type(store).__name__} cannot write a batch (no update_many)")
        # The result of each change's last call is what the store kept (see `write`).
        last: dict[str, tuple[Record, Write | None]] = {}

        trims: dict[str, list[bool]] = {}

        def kept(username: str, change: Change) -> Change:
            recorded = changes.with_history(change, self.keep)
            if self.metrics is not None:
                recorded = _counting_trims(recorded, trims.setdefault(username, []))

            def run(current: Record) -> Write | None:
                write = recorded(current)
                last[username] = (current, write)
                return write

            return run

        records = await store.update_many(
            platform_key, [(username, kept(username, change)) for username, change in updates]
        )
        if self.metrics is not None:
            for decided in trims.values():
                if decided and decided[-1]:
                    self.metrics.history_trimmed()
        if self.feed.watched:
            self.feed.committed(platform_key)
        if self.feed.active:
            for username, _ in updates:
                await self._publish(platform_key, username, *last[username])
        return records

    async def _publish(
        self, platform_key: str, username: str, current: Record, write: Write | None
    ) -> None:
        """Tell the feed of a write the store kept, if it changed the record."""
        if write is None or write.record.version == current.version:
            return  # nothing stored, or a purge with nothing stored: not a change
        record = write.record
        await self.feed.publish(
            Committed(
                platform_key,
                username,
                record.version,
                write.operation,
                write.actor,
                write.revision.at if write.revision else record.updated_at or utcnow(),
                record.metadata_json if record.exists else "{}",
            )
        )


def _counting_trims(change: Change, trims: list[bool]) -> Change:
    """`change`, noting in `trims` whether each write it decides drops old revisions (the
    store keeps the last call's: the last entry counts)."""

    def counted(current: Record) -> Write | None:
        write = change(current)
        revision = None if write is None else write.revision
        trims.append(
            revision is not None
            and write is not None
            and write.record.version != current.version
            and revision.version > write.keep_revisions
        )
        return write

    return counted
