"""The benchmark's baseline: a bare Starlette endpoint answering from a module-level dict.

It serves `/api/core/users/platform-metadata/` with the same JSON shape as the real endpoint
(`username`, `platform_key`, `metadata`, `created_at`, `updated_at`) and the same kind of
headers (`ETag`, `Vary`), but without authentication, tenancy, validation or a database:

- GET answers the caller's record from `RECORDS`.
- PATCH reads the JSON body, applies `delete_keys` then `metadata` to the dict, and answers
  the record.

`$BARE_APP_SPIN_US` (default 0) makes each request spend that many microseconds of CPU
first: the bare route at another app's cost per request (benchmarks/loop_tail.sh).

Records are keyed by the raw `Authorization` header, so that a load spread over many tokens
writes many small documents, as it does on the real endpoint. Run with
`uvicorn bare_app:app --app-dir benchmarks`; `benchmarks/run.py` does so.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

USERNAME = "john_doe"

# Authorization header -> {"metadata": dict, "created_at": str | None, ...}
RECORDS: dict[str, dict[str, Any]] = {}
SPIN = float(os.environ.get("BARE_APP_SPIN_US") or 0) / 1e6


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _answer(request: Request, record: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {
            "username": USERNAME,
            "platform_key": request.query_params.get("platform_key"),
            "metadata": record["metadata"],
            "created_at": record["created_at"],
            "updated_at": record["updated_at"],
        },
        headers={"ETag": f'"{record["version"]}"', "Vary": "Authorization"},
    )


def _record(request: Request) -> dict[str, Any]:
    if SPIN:
        until = time.perf_counter() + SPIN
        while time.perf_counter() < until:
            pass
    key = request.headers.get("authorization", "")
    record = RECORDS.get(key)
    if record is None:
        record = RECORDS[key] = {
            "metadata": {},
            "created_at": None,
            "updated_at": None,
            "version": 0,
        }
    return record


async def platform_metadata(request: Request) -> JSONResponse:
    record = _record(request)
    if request.method == "PATCH":
        body = await request.json()
        metadata = record["metadata"]
        for key in body.get("delete_keys", ()):
            metadata.pop(key, None)
        metadata.update(body.get("metadata", {}))
        now = _now()
        if record["created_at"] is None:
            record["created_at"] = now
        record["updated_at"] = now
        record["version"] += 1
    return _answer(request, record)


app = Starlette(
    routes=[
        Route(
            "/api/core/users/platform-metadata/",
            platform_metadata,
            methods=["GET", "PATCH"],
        )
    ]
)
