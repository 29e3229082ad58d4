"""Where a platform's policy comes from: the store, or the host application.

A stored policy is an ordinary record of its platform under the reserved `POLICY_USERNAME`,
whose document is the policy's JSON (`{"protected_keys", "private_keys", "schema"}`): every
store keeps it atomically, with a version and `updated_at`, and with no method of its own.
The record is read on every request, or, before a write, checked by the store as it writes
(`guessed`, `GuardedWriter`), so a policy is never stale, even across processes;
compiling its schema is what costs, so each compiled `Policy` is kept per (platform, version,
updated_at) in a bounded LRU and compiled again only when the record changed.

A host may fix the policy of some platforms instead (`policies=` on the app): a mapping
`{platform_key: Policy | dict}`, or a callable `(platform_key) -> Policy | dict | None`, sync
or async, where `None` means "the stored one".  A fixed policy cannot be changed over HTTP.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, cast

from .jsontext import dump
from .metrics import NO_METRICS, Metrics
from .policy import DEFAULT_POLICY, Policy, PolicyInvalid, PolicyLimits, parse_policy
from .stores.base import (
    EMPTY,
    POLICY_USERNAME,
    GuardedWriter,
    ManyReader,
    Record,
    RecordLister,
    Store,
)

__all__ = [
    "POLICY_USERNAME",
    "CurrentPolicy",
    "Policies",
    "PolicySource",
    "Violations",
    "policy_document",
]

logger = logging.getLogger("starlette_platform_metadata")

PolicyValue: TypeAlias = Policy | Mapping[str, Any]
#: What a host passes as `policies=`: fixed policies by platform, or a function deciding them.
PolicySource: TypeAlias = (
    Mapping[str, PolicyValue]
    | Callable[[str], PolicyValue | None | Awaitable[PolicyValue | None]]
)

# Examples listed in a PUT answer (the contract's "at most 20").
MAX_EXAMPLES = 20
# Documents read per page while counting; one page is held at a time.
_PAGE = 200
# Longest the violations check runs on the event loop before letting other requests in.
_SLICE = 0.0005


@dataclass(frozen=True, slots=True)
class CurrentPolicy:
    """A platform's policy in force now.

    Attributes:
        policy: the rules.
        record: the stored policy record (`EMPTY` before any PUT): its version is the
            policy's version.
        fixed: the host application fixes this policy; PUT and DELETE are refused.
    """

    policy: Policy
    record: Record
    fixed: bool = False


@dataclass(frozen=True, slots=True)
class Violations:
    """How many stored documents a policy refuses (`None`: the store cannot list them)."""

    count: int | None
    examples: list[dict[str, Any]]


def policy_document(policy: Policy) -> dict[str, Any]:
    """The stored form of a policy: its admin view without the platform and version."""
    return policy.to_json("admin")


class Policies:
    """The policies of a store's platforms, compiled once per stored version."""

    def __init__(
        self,
        store: Store,
        limits: PolicyLimits | None = None,
        fixed: PolicySource | None = None,
        cache_size: int = 256,
        *,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.store = store
        self.metrics = metrics  # told of each compilation
        self._many = isinstance(store, ManyReader)  # once: a Protocol check is slow per request
        # The policy record last read per platform, for writes to decide on without reading
        # it again: only with a store that checks it as it writes (`guessed`).
        self._guards = isinstance(store, GuardedWriter)
        self._last: dict[str, Record] = {}
        self.limits = limits or PolicyLimits()
        self._cache: OrderedDict[tuple[str, int, datetime | None], Policy] = OrderedDict()
        self._cache_size = cache_size
        self._fixed_mapping: dict[str, Policy] | None = None
        self._fixed_function: Callable[[str], Any] | None = None
        self._fixed_texts: OrderedDict[str, Policy] = OrderedDict()
        if fixed is None:
            pass
        elif isinstance(fixed, Mapping):
            # Compiled now: a bad fixed policy fails at startup, not on a request.
            self._fixed_mapping = {key: self._coerce(value) for key, value in fixed.items()}
        elif callable(fixed):
            self._fixed_function = fixed
        else:
            raise TypeError(f"policies must be a mapping or a callable, not {fixed!r}")

    def _coerce(self, value: object) -> Policy:
        if isinstance(value, Policy):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"A platform policy must be a Policy or a dict, not {value!r}")
        text = dump(dict(value))
        known = self._fixed_texts.get(text)
        if known is not None:
            self._fixed_texts.move_to_end(text)
            return known
        policy = parse_policy(dict(value), self.limits)
        self.metrics.policy_compiled()
        self._fixed_texts[text] = policy
        if len(self._fixed_texts) > self._cache_size:
            self._fixed_texts.popitem(last=False)
        return policy

    async def fixed(self, platform_key: str) -> Policy | None:
        """The policy the host fixes for `platform_key`, or `None`."""
        if self._fixed_mapping is not None:
            return self._fixed_mapping.get(platform_key)
        if self._fixed_function is None:
            return None
        value = self._fixed_function(platform_key)
        if inspect.isawaitable(value):
            value = await value
        return None if value is None else self._coerce(value)

    async def current(self, platform_key: str) -> CurrentPolicy:
        """The policy in force for `platform_key`: the host's, else the stored one."""
        if self._fixed_mapping is not None or self._fixed_function is not None:
            fixed = await self.fixed(platform_key)
            if fixed is not None:
                return CurrentPolicy(fixed, EMPTY, fixed=True)
        record = await self.store.get(platform_key, POLICY_USERNAME)
        self._seen(platform_key, record)
        return CurrentPolicy(self.compiled(platform_key, record), record)

    def guessed(self, platform_key: str) -> CurrentPolicy | None:
        """The stored policy as this process last read it, for a write to decide on and have
        the store check as it writes (`GuardedWriter.update_guarded`, guarded by this
        record): a policy read saved per write, one round trip on PostgreSQL.  `None` when
        the policy must be read (`current`): never read yet, the store cannot check it, or
        the host fixes policies."""
        if not self._guards or self._fixed_mapping is not None or self._fixed_function is not None:
            return None
        record = self._last.get(platform_key)
        if record is None:
            return None
        return CurrentPolicy(self.compiled(platform_key, record), record)

    def _seen(self, platform_key: str, record: Record) -> None:
        if self._guards:
            last = self._last
            if len(last) >= self._cache_size and platform_key not in last:
                del last[next(iter(last))]  # the platform remembered first
            last[platform_key] = record

    async def current_and(
        self, platform_key: str, username: str
    ) -> tuple[CurrentPolicy, Record]:
        """The policy in force and `username`'s record: in one read when the store can
        (`ManyReader`), as a GET needs both."""
        if self._fixed_mapping is not None or self._fixed_function is not None or not self._many:
            return await self.current(platform_key), await self.store.get(platform_key, username)
        reader = cast(ManyReader, self.store)  # checked once, in __init__
        policy_record, record = await reader.get_many(platform_key, (POLICY_USERNAME, username))
        self._seen(platform_key, policy_record)
        return CurrentPolicy(self.compiled(platform_key, policy_record), policy_record), record

    def compiled(self, platform_key: str, record: Record) -> Policy:
        """The `Policy` a stored policy record holds, from the cache when unchanged."""
        if record.version == 0 or not record.exists:
            return DEFAULT_POLICY
        key = (platform_key, record.version, record.updated_at)
        policy = self._cache.get(key)
        if policy is not None:
            self._cache.move_to_end(key)
            return policy
        try:
            policy = parse_policy(record.metadata, self.limits)
        except PolicyInvalid as exc:
            # Stored under looser PolicyLimits than the app has now: refuse to guess.
            logger.error("stored policy of %r is invalid under the current limits", platform_key)
            raise RuntimeError(
                f"The stored policy of platform {platform_key!r} is invalid under the current "
                f"PolicyLimits: {exc.errors}"
            ) from None
        self.metrics.policy_compiled()
        self._cache[key] = policy
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return policy

    async def violations(self, platform_key: str, policy: Policy) -> Violations:
        """The stored documents of the platform that `policy`'s schema refuses."""
        if policy.schema is None:
            return Violations(0, [])
        store = self.store
        if not isinstance(store, RecordLister):
            return Violations(None, [])
        count = 0
        examples: list[dict[str, Any]] = []
        after: str | None = None
        # Decoding and checking documents is CPU work on the event loop (5,000 documents took
        # 170-205 ms, every other request waiting): it gives the loop back every `_SLICE`.
        # Measured against a worker thread per page (asyncio.to_thread) with 5,000 documents
        # and a GET every 10 ms: the thread holds the GIL, so the loop waited a switch
        # interval (5 ms) each time it woke, stalling 16 ms at the 95th percentile and a GET
        # up to 24 ms; yielding every 0.5 ms of work stalled it 4 ms and a GET 5 ms, with no
        # slower a check.  A time slice, not a count of documents: one document may cost a
        # microsecond or, at 64 KiB under a heavy schema, milliseconds.
        slice_started = time.perf_counter()
        while True:
            page = await store.records(platform_key, after=after, limit=_PAGE)
            for username, record in page:
                document = record.metadata
                if not policy.valid(document):
                    count += 1
                    if len(examples) < MAX_EXAMPLES:
                        errors = policy.schema_errors(document)
                        examples.append({"username": username, "errors": errors})
                if time.perf_counter() - slice_started > _SLICE:
                    await asyncio.sleep(0)
                    slice_started = time.perf_counter()
            if len(page) < _PAGE:
                return Violations(count, examples)
            after = page[-1][0]
