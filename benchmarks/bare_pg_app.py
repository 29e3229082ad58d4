"""The PostgreSQL baseline: a bare Starlette + asyncpg route, one statement per request.

It serves `/api/core/users/platform-metadata/` with the endpoint's JSON shape, its records in
PostgreSQL (`DATABASE_URL`, a table of its own, `bare_metadata`), tokens in memory (each
`Authorization` header is its own user), one asyncpg pool as wide as the store's default (10):

- GET: one primary-key SELECT;
- PATCH: one `INSERT ... ON CONFLICT DO UPDATE SET metadata = (metadata - $keys) || $set`;
- PUT: one upsert;  DELETE: one DELETE.

No authentication, tenancy, validation, versions, history or live changes: the floor a route
on this database can reach.  `benchmarks/run.py --pg-compare` serves it with uvicorn.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TABLE = "bare_metadata"
COLUMNS = "metadata::text, version, created_at, updated_at"
GET = f"SELECT {COLUMNS} FROM {TABLE} WHERE platform_key = $1 AND username = $2"
PATCH = (
    f"INSERT INTO {TABLE} AS t VALUES ($1, $2, $3::jsonb, 1, now(), now()) "
    "ON CONFLICT (platform_key, username) DO UPDATE SET "
    "metadata = (t.metadata - $4::text[]) || $3::jsonb, version = t.version + 1, "
    f"updated_at = now() RETURNING {COLUMNS}"
)
PUT = (
    f"INSERT INTO {TABLE} AS t VALUES ($1, $2, $3::jsonb, 1, now(), now()) "
    "ON CONFLICT (platform_key, username) DO UPDATE SET metadata = $3::jsonb, "
    f"version = t.version + 1, updated_at = now() RETURNING {COLUMNS}"
)
DELETE = f"DELETE FROM {TABLE} WHERE platform_key = $1 AND username = $2"
SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (platform_key text NOT NULL, username text NOT NULL, "
    "metadata jsonb NOT NULL, version integer NOT NULL, created_at timestamptz NOT NULL, "
    "updated_at timestamptz NOT NULL, PRIMARY KEY (platform_key, username))"
)

pool: Any = None


def answer(request: Request, username: str, row: Any) -> JSONResponse:
    metadata, version, created, updated = row if row else ("{}", 0, None, None)
    return JSONResponse(
        {
            "username": username,
            "platform_key": request.query_params.get("platform_key"),
            "metadata": json.loads(metadata),
            "created_at": created and created.isoformat(),
            "updated_at": updated and updated.isoformat(),
        },
        headers={"ETag": f'"{version}"', "Vary": "Authorization"},
    )


async def platform_metadata(request: Request) -> Response:
    username = request.headers.get("authorization", "")[-16:]
    platform = request.query_params.get("platform_key", "")
    if request.method == "GET":
        return answer(request, username, await pool.fetchrow(GET, platform, username))
    if request.method == "DELETE":
        await pool.execute(DELETE, platform, username)
        return Response(status_code=204)
    body = await request.json()
    document = json.dumps(body.get("metadata", {}))
    if request.method == "PUT":
        return answer(request, username, await pool.fetchrow(PUT, platform, username, document))
    keys = list(body.get("delete_keys", ()))
    row = await pool.fetchrow(PATCH, platform, username, document, keys)
    return answer(request, username, row)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=0, max_size=10)
    await pool.execute(SCHEMA)
    yield
    await pool.close()


app = Starlette(
    routes=[
        Route(
            "/api/core/users/platform-metadata/",
            platform_metadata,
            methods=["GET", "PATCH", "PUT", "DELETE"],
        )
    ],
    lifespan=lifespan,
)
