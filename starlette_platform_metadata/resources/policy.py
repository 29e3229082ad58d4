"""`<mount>/policy/`: a platform's policy (EXTENSIONS.md section 1).

Same authentication, query parsing, error bodies and check order as the metadata resource.
`username` is not a parameter here and is ignored, as DRF ignores unknown query parameters.
"""

from __future__ import annotations

import json
from typing import Literal

from starlette.responses import Response

from .. import changes, conditional, errors
from ..conditional import Conditions
from ..openapi import policy as policy_openapi
from ..policies import CurrentPolicy
from ..policy import DEFAULT_POLICY, Policy, PolicyInvalid, parse_policy
from ..request import Grant
from ..resource import Request
from ..responses import Answer, iso, json_response, not_modified
from ..stores.base import POLICY_USERNAME, Record
from .metadata import run_change

__all__ = ["PolicyResource"]

ALLOW = "GET, PUT, DELETE, HEAD, OPTIONS"
_DEFAULT_DOCUMENT = DEFAULT_POLICY.to_json("admin")


class PolicyResource:
    """GET a platform's policy (members and admins); PUT or DELETE it (tenant admins)."""

    #: Its part of the OpenAPI document (`openapi.policy`), beside its handlers.
    openapi = staticmethod(policy_openapi.fragment)
    allow = ALLOW
    options: dict[str, object] = {
        "name": "Platform Policy",
        "description": "Protected keys, private keys and a JSON Schema for a platform's metadata.",
        "renders": ["application/json"],
        "parses": ["application/json"],
    }
    query_names = frozenset((b"platform_key", b"dry_run"))

    async def get(self, request: Request) -> Answer:
        grant, conditions, current = await self._start(request)
        view: Literal["admin", "member"] = "admin" if grant.is_admin else "member"
        if current.fixed:
            # The host may change a fixed policy at any time: no version to validate.
            return _policy_response(grant.platform_key, current.policy, None, view)
        if conditions.not_modified(current.record):
            return not_modified(current.record)
        return _policy_response(grant.platform_key, current.policy, current.record, view)

    async def delete(self, request: Request) -> Answer:
        grant, conditions, current = await self._start(request)
        if current.fixed:
            raise errors.policy_managed()
        change = changes.replace(
            _DEFAULT_DOCUMENT, conditions=conditions, actor=request.identity.username
        )
        await run_change(request, grant.platform_key, POLICY_USERNAME, change)
        return Response(status_code=204)

    async def put(self, request: Request) -> Answer:
        grant, conditions, current = await self._start(request)
        if current.fixed:
            raise errors.policy_managed()
        policies = request.services.policies
        dry_run = request.query.boolean("dry_run")
        data = await request.json(policies.limits.max_schema_depth)
        try:
            policy = parse_policy(data, policies.limits)
        except PolicyInvalid as exc:
            raise errors.validation_error(exc.errors) from None
        if dry_run:
            record = current.record
            if not conditions.admits(record):
                reason = conditions.refusal(record)
                raise errors.precondition_failed(reason, conditional.etag(record))
        else:
            change = changes.replace(
                policy.to_json("admin"), conditions=conditions, actor=request.identity.username
            )
            record = await run_change(request, grant.platform_key, POLICY_USERNAME, change)
        found = await policies.violations(grant.platform_key, policy)
        extra: dict[str, object] = {
            "violating_documents": found.count,
            "examples": found.examples,
        }
        return _policy_response(grant.platform_key, policy, record, "admin", extra)

    @staticmethod
    async def _start(request: Request) -> tuple[Grant, Conditions, CurrentPolicy]:
        """Members and admins may read it; only tenant admins change it."""
        grant = await request.authorize("member", request.query.platform_key())
        if request.method not in ("GET", "HEAD") and not grant.is_admin:
            raise errors.policy_admin_only()
        conditions = request.conditions()
        return grant, conditions, await request.services.policies.current(grant.platform_key)


def _policy_response(
    platform_key: str,
    policy: Policy,
    record: Record | None,
    view: Literal["admin", "member"],
    extra: dict[str, object] | None = None,
) -> Response:
    body: dict[str, object] = {"platform_key": platform_key, **policy.to_json(view)}
    body["version"] = 0 if record is None else record.version
    updated = None if record is None else record.updated_at
    body["updated_at"] = None if updated is None else json.loads(iso(updated))
    body.update(extra or {})
    headers = {"Vary": "Authorization", "Allow": ALLOW}
    if record is not None:
        headers["ETag"] = conditional.etag(record)
    return json_response(body, headers)
