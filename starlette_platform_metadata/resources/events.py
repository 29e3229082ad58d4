"""`<mount>/events/`: a user's (or, for tenant admins, a platform's) changes as Server-Sent
Events (EXTENSIONS.md section 3).  The stream itself is `stream.EventStream`."""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response

from .. import capabilities, errors
from .. import request as request_path
from ..arrivals import unstamped
from ..cursors import EventKind, read_event_id
from ..events import TooManyStreams
from ..openapi import events as events_openapi
from ..resource import Request
from ..responses import Answer
from .stream import HEADERS, EventStream, Reauthorize

__all__ = ["EventsResource"]

ALLOW = "GET, HEAD, OPTIONS"


class EventsResource:
    """GET a stream of changes: one user's, or with `all_users=true` a platform's (admins)."""

    #: Its part of the OpenAPI document (`openapi.events`), beside its handlers.
    openapi = staticmethod(events_openapi.fragment)
    allow = ALLOW
    options: dict[str, object] = {
        "name": "Metadata Events",
        "description": "Changes of users' metadata on a platform, as Server-Sent Events.",
        "renders": ["text/event-stream"],
        "parses": ["application/json"],
    }
    query_names = frozenset((b"platform_key", b"username", b"all_users", b"last_event_id"))

    async def get(self, request: Request) -> Answer:
        platform_key, target = request.query.target()
        all_users = request.query.boolean("all_users")
        if all_users and target is not None:
            raise errors.validation_error({"all_users": [errors.ALL_USERS_WITH_USERNAME]})
        reach: request_path.Reach = "platform" if all_users else "user"
        grant = await request.authorize(reach, platform_key, target)
        services = request.services
        hub = services.hub
        # Live changes are read from history.
        if not hub.available:
            raise capabilities.missing(services.store, "changes", "ChangeReader", "events/")
        if services.writer.keep == 0:
            raise capabilities.history_off("events/")
        if request.method == "HEAD":
            return Response(headers={k.decode(): v.decode() for k, v in HEADERS})
        header = request.conn.headers.get("last-event-id")
        if header is None:
            given = request.query.last("last_event_id")
            header = None if given is None else given.decode("utf-8", "replace")
        kind: EventKind = "user" if grant.username is not None else "platform"
        cursor = read_event_id(kind, header)
        try:
            subscription = await hub.subscribe(
                platform_key, grant.username, request.identity.username
            )
        except TooManyStreams as refused:
            if refused.bound == "process":
                raise errors.too_many_streams(hub.shutting_down) from None
            raise errors.stream_quota(refused.bound) from None
        stream = EventStream(
            hub,
            services.store,
            services.policies,
            subscription,
            grant.is_admin,
            cursor,
            _reauthorize(request, reach, platform_key, target),
        )
        if grant.username is None and cursor is None:
            # Before the headers go: the stream carries every change committed after them.
            try:
                stream.position = (await hub.position(platform_key))[0]
            except BaseException:
                hub.unsubscribe(subscription)
                raise
        return stream


def _reauthorize(
    request: Request, reach: request_path.Reach, platform_key: str, target: str | None
) -> Reauthorize:
    """The stream's request authorized again, as the request path authorizes any request:
    the token, the same caller, the platform, the membership or admin role.  Whether the
    caller is a tenant admin now (which view its events take), or `None`: end the stream.
    Asked without the request's arrival stamp: the answer must be as of now, not as of any
    read since the stream arrived (arrivals.py)."""
    services = request.services
    conn = HTTPConnection(unstamped(request.conn.scope))

    async def again() -> bool | None:
        try:
            identity = await request_path.authenticate(services.auth, services.auth_scheme, conn)
            if identity.username != request.identity.username:
                return None
            grant = await request_path.authorize(
                services.auth, identity, platform_key, target, reach
            )
        except errors.ApiError:
            return None
        return grant.is_admin

    return again
