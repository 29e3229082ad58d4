"""The member view: what a caller may see of a record, a revision or an event.

A tenant admin sees everything; a member acting on its own metadata never sees the
platform's private keys (EXTENSIONS.md section 1).  Every output that carries a document
goes through this module (`visible_record`, `revision_body`, `event_data`), so a new surface
cannot forget the rule; what a member may
learn of private keys beyond their absence (that a record exists, its version) is written in
docs/policy.md.  A member's schema errors and size limits are decided inside the atomic
write, where the stored document is known (`member_errors.py`, `sizes.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import conditional
from .jsontext import dump
from .policy import Policy, member_view
from .responses import RecordResponse, iso, render_record
from .stores.base import Record, Revision

__all__ = ["hidden", "record_response", "revision_body", "visible_record", "event_data"]


def hidden(policy: Policy | None, is_admin: bool) -> Policy | None:
    """The policy whose private keys an answer to this caller must leave out, if any."""
    if is_admin or policy is None or policy.is_default or not policy.private_keys:
        return None
    return policy


def visible_record(record: Record, hide: Policy | None) -> Record:
    """`record` as the caller may see it: without `hide`'s private keys."""
    if hide is None or not hide.may_hold_private(record.metadata_json):
        return record
    return dataclasses.replace(record, metadata_json=dump(member_view(hide, record.metadata)))


def record_response(
    username: str, platform_key: str, record: Record, hide: Policy | None, allow: bytes
) -> RecordResponse:
    """The success body of a GET or a write, with the stored record's ETag."""
    etag = conditional.etag(record)
    shown = visible_record(record, hide)
    return RecordResponse(render_record(username, platform_key, shown), etag, allow)


def revision_body(revision: Revision, hide: Policy | None) -> dict[str, Any]:
    """A revision as the contract renders it; `hide`: leave its private keys out."""
    metadata = revision.metadata
    changed = list(revision.changed_keys)
    if hide is not None:
        metadata = member_view(hide, metadata)
        changed = [key for key in changed if not hide.is_private(key)]
    return {
        "version": revision.version,
        "operation": revision.operation,
        "actor": revision.actor,
        "at": iso(revision.at)[1:-1],
        "metadata": metadata,
        "changed_keys": changed,
    }


def event_data(
    username: str,
    platform_key: str,
    record: Record,
    hide: Policy | None,
    actor: str | None,
    operation: str | None,
) -> bytes:
    """An event's `data:`: a GET's success body as this caller may see it, plus version,
    actor and operation."""
    body = render_record(username, platform_key, visible_record(record, hide))
    extra = f',"version":{record.version},"actor":{dump(actor)},"operation":{dump(operation)}}}'
    return body[:-1] + extra.encode()
