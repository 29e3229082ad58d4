"""`<mount>/`: the contract's four methods on one user's metadata (API.md), with the
policy's member rules (EXTENSIONS.md section 1) and history (section 2) on the way."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from .. import changes, conditional, errors
from ..openapi import metadata as metadata_openapi
from ..payload import validate_patch, validate_put
from ..policy import Policy
from ..resource import Request
from ..responses import Answer, not_modified
from ..stores.base import POLICY_USERNAME, Change, GuardMoved, Record
from ..views import hidden, record_response

__all__ = ["MetadataResource", "current_policy", "decide_and_write", "run_change"]

# DRF's order: Django's http_method_names filtered to what the view has (HEAD follows GET).
ALLOW = "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"
_ALLOW = ALLOW.encode()


async def current_policy(request: Request, platform_key: str) -> Policy | None:
    """The platform's policy, or `None` when it has none: then every request takes the
    path it took before policies existed.  Read on every request, as late as possible (a
    write reads it once its body is valid); compiled only when it changed."""
    policy = (await request.services.policies.current(platform_key)).policy
    return None if policy.is_default else policy


async def decide_and_write(
    request: Request,
    platform_key: str,
    username: str,
    decide: Callable[[Policy | None], Change],
    *,
    purge: bool = False,
) -> tuple[Record, Policy | None]:
    """A user's write: the change `decide` builds on the platform's policy, run in the store;
    the record stored and the policy it was decided on.

    The policy is the one this process read last when the store can check, as it writes,
    that it is still the stored one (`Policies.guessed`): no read before the write.  If it
    is not, the store stores nothing (`GuardMoved`), and the write is decided again on the
    policy read now, as it always is without a guess."""
    guess = request.services.policies.guessed(platform_key)
    if guess is not None:
        policy = None if guess.policy.is_default else guess.policy
        guard = (POLICY_USERNAME, guess.record)
        try:
            record = await run_change(
                request, platform_key, username, decide(policy), purge=purge, guard=guard
            )
            return record, policy
        except GuardMoved:
            pass
    policy = await current_policy(request, platform_key)
    return await run_change(request, platform_key, username, decide(policy), purge=purge), policy


async def run_change(
    request: Request,
    platform_key: str,
    username: str,
    change: Change,
    *,
    purge: bool = False,
    guard: tuple[str, Record] | None = None,
) -> Record:
    """Run `change` in the store (a user's with history; with `guard`, only while that
    record holds that state); refusals become the contract's answers."""
    services = request.services
    try:
        if username == POLICY_USERNAME:
            return await services.store.update(platform_key, username, change)
        return await services.writer.write(
            platform_key, username, change, purge=purge, guard=guard
        )
    except changes.PreconditionFailed as exc:
        # Worded from, and carrying the ETag of, the record the change saw.
        raise errors.precondition_failed(exc.reason, conditional.etag(exc.record)) from None
    except changes.DocumentTooLarge as exc:
        raise errors.document_too_large(exc.limit, exc.name) from None
    except changes.KeysForbidden as exc:
        raise errors.keys_forbidden(exc.keys) from None
    except changes.SchemaViolation as exc:
        raise errors.schema_violation(exc.errors) from None


class MetadataResource:
    """GET, PUT, PATCH and DELETE of one user's metadata on a platform."""

    #: Its part of the OpenAPI document (`openapi.metadata`), beside its handlers.
    openapi = staticmethod(metadata_openapi.fragment)
    allow = ALLOW
    options: dict[str, object] = {
        "name": "User Platform Metadata",
        "description": "Per-user, per-platform metadata.",
        "renders": ["application/json"],
        "parses": ["application/json"],
    }
    query_names = frozenset((b"platform_key", b"username", b"history"))

    async def get(self, request: Request) -> Answer:
        grant = await request.authorize("user", *request.query.target())
        assert grant.username is not None
        conditions = request.conditions()
        current, record = await request.services.policies.current_and(
            grant.platform_key, grant.username
        )
        if conditions.not_modified(record):
            return not_modified(record)
        policy = None if current.policy.is_default else current.policy
        return record_response(
            grant.username, grant.platform_key, record, hidden(policy, grant.is_admin), _ALLOW
        )

    async def put(self, request: Request) -> Answer:
        return await self._write(request)

    async def patch(self, request: Request) -> Answer:
        return await self._write(request)

    async def delete(self, request: Request) -> Answer:
        grant = await request.authorize("user", *request.query.target())
        assert grant.username is not None
        conditions = request.conditions()
        purge = request.query.choice("history", "purge")

        def decide(policy: Policy | None) -> Change:
            return changes.delete(
                conditions=conditions,
                actor=request.identity.username,
                policy=policy,
                member=not grant.is_admin,
            )

        await decide_and_write(request, grant.platform_key, grant.username, decide, purge=purge)
        return Response(status_code=204)

    async def _write(self, request: Request) -> Answer:
        grant = await request.authorize("user", *request.query.target())
        assert grant.username is not None
        conditions = request.conditions()
        limits = request.services.limits
        data = await request.json()
        # What PATCH and PUT decide with, besides the policy and the body.
        options: dict[str, Any] = {
            "conditions": conditions,
            "actor": request.identity.username,
            "member": not grant.is_admin,
            "max_bytes": limits.max_document_bytes,
            "max_private_bytes": limits.max_private_bytes,
        }
        build: Callable[..., Change]
        if request.method == "PATCH":
            patch = validate_patch(data, limits)
            build = functools.partial(changes.patch, patch.set, patch.delete, **options)
        else:
            build = functools.partial(changes.replace, validate_put(data, limits), **options)

        def decide(policy: Policy | None) -> Change:
            return build(policy=policy)

        record, policy = await decide_and_write(
            request, grant.platform_key, grant.username, decide
        )
        return record_response(
            grant.username, grant.platform_key, record, hidden(policy, grant.is_admin), _ALLOW
        )
