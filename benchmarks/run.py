"""The example host's metadata endpoint against a baseline measured in the same run.

    .venv/bin/python benchmarks/run.py [--rounds 3] [--duration 5] [--json FILE]
        [--database postgresql://...] [--synchronous FULL] [--records N]
    .venv/bin/python benchmarks/run.py --durable-compare   # SQLite synchronous NORMAL vs FULL
    .venv/bin/python benchmarks/run.py --scale-compare     # 1,000 vs --records (1,000,000) rows
    .venv/bin/python benchmarks/run.py --policy-compare    # a platform policy in force vs none
    .venv/bin/python benchmarks/run.py --history-compare   # history kept (100/user) vs off
    .venv/bin/python benchmarks/run.py --streams-compare   # 1,000 idle live-change streams vs none
    .venv/bin/python benchmarks/run.py --metrics-compare   # Prometheus metrics on vs off
    .venv/bin/python benchmarks/run.py --tree-compare OTHER/.venv/bin/python  # this code vs other
        [--tree-serve]  # both hosts as `serve` runs them (bounded httptools), not plain uvicorn
    .venv/bin/python benchmarks/run.py --jwt-compare       # GET with a Bearer JWT vs a Token key
    .venv/bin/python benchmarks/run.py --serve-compare     # `serve` as shipped vs bare, h11, raw
    .venv/bin/python benchmarks/run.py --pg-compare --database postgresql://...  # vs bare asyncpg

Every app is served by uvicorn (one worker, httptools, uvloop, access log off) on 127.0.0.1 and
loaded by wrk (`--latency`; the Lua scripts are benchmarks/*.lua).  Each round runs every
scenario against every app, alternating which app goes first; the report gives medians over the
rounds (req/s, p50, p90, p99, max), the ratios the targets are stated in, and the error counts,
which must be zero.  See benchmarks/README.md.

Not part of the package or the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

# The example host's own helper, so the report hides exactly what the CLI hides (a
# `?password=` parameter too).
from example_host.redact import redact_url

HERE = Path(__file__).resolve().parent
PATH = "/api/core/users/platform-metadata/"
PLATFORM = "acme-corp"
MEMBER = "john_doe"
MANY_PREFIX = "bench_user_"
# Keys a PATCH sets, one per request, in rotation: the document stays small and of constant size.
PATCH_KEYS = 8
# The document every app holds for every measured user before the load (and every filler record
# holds): realistic, small, and containing the rotating keys so that GET answers the same bytes
# before and after PATCH runs.
SEED: dict[str, Any] = {
    "theme": "dark",
    "language": "en",
    "onboarding": {"completed": True, "step": 5},
    **{f"k{i}": 0 for i in range(PATCH_KEYS)},
}
# --records: rows written straight into the store's table for users that make no requests.
METADATA_TABLE = "platform_metadata"
METADATA_COLUMNS = ("platform_key", "username", "metadata", "version", "created_at", "updated_at")
FILLER_PREFIX = "filler_"
FILLER_TIMESTAMP = "2026-01-01T00:00:00+00:00"
# --policy-compare: issue 10's policy: 5 protected keys, 5 private prefixes, a 20-property
# schema.  The members' PATCHes (k0..k7, small integers) satisfy it, and the seed document
# holds no protected or private key, so both apps answer the same bytes.
POLICY: dict[str, Any] = {
    "protected_keys": ["plan", "role", "quota", "beta", "tier"],
    "private_keys": ["internal_*", "billing_*", "audit_*", "risk_*", "ops_*"],
    "schema": {
        "type": "object",
        "properties": {
            **{f"k{i}": {"type": "integer", "minimum": 0} for i in range(PATCH_KEYS)},
            "theme": {"enum": ["dark", "light"]},
            "language": {"type": "string", "maxLength": 16},
            "onboarding": {"type": "object"},
            "plan": {"type": "string"},
            "role": {"type": "string"},
            "quota": {"type": "integer"},
            "beta": {"type": "boolean"},
            "tier": {"type": "integer"},
            "timezone": {"type": "string"},
            "notifications": {"type": "object"},
            "dashboard": {"type": "array"},
            "avatar": {"type": "string", "maxLength": 512},
        },
    },
}
ADMIN = "bench_admin"
SCALE_SMALL = 1_000
SCALE_LARGE = 1_000_000
FSYNC_SECONDS = 2.0
STARTUP_TIMEOUT = 30.0
CLI_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
SETTLE_TIMEOUT = 30.0


class Abort(Exception):
    """The benchmark cannot go on; the message says why."""


# --------------------------------------------------------------------------- what a mode runs


@dataclass(frozen=True)
class Load:
    """One wrk process: a Lua script (benchmarks/<script>.lua), whose tokens, how wide."""

    script: str  # "get" or "patch"
    users: str  # "member" (john_doe) or "many" (bench_user_00...)
    connections: int
    threads: int

    @property
    def writes(self) -> bool:
        return self.script == "patch"


@dataclass(frozen=True)
class Scenario:
    """Loads run at once against one app; `loads` maps a role ("get", "patch") to its load."""

    key: str
    title: str
    loads: dict[str, Load]


@dataclass(frozen=True)
class AppSpec:
    """A server to start: the bare baseline, or the example host on a database."""

    name: str
    label: str
    host: bool
    database: str = ""
    synchronous: str = "NORMAL"
    records: int = 0  # filler records written into its metadata table before the load
    policy: bool = False  # POLICY put in force by the tenant admin before the load
    history: int | None = None  # revisions kept per user (None: the host's default, 100)
    streams: int = 0  # idle live-change streams held open (on the GET user) during the load
    python: str = ""  # the interpreter that serves it, and so the code it runs ("": --python)
    jwt: bool = False  # JWT auth on (serve --jwks-url ...), loaded with Bearer JWTs
    jwt_verified_cache: int | None = None  # tokens kept once verified (None: the default)
    # The host started as users start it, `python -m example_host serve --no-access-log` plus
    # these arguments (None: uvicorn on the app factory, httptools, see uvicorn_command).
    serve: tuple[str, ...] | None = None
    bare: str = "bare_app"  # the baseline's module: bare_app (a dict) or bare_pg_app
    # Prometheus metrics: "" off; "on" (one process); "shared" (a shared directory, as
    # `serve --workers N` runs them: the worker also writes its figures there every second).
    metrics: str = ""


@dataclass(frozen=True)
class Ref:
    """A figure: the median over rounds of `metric` for `role` of `scenario` on `app`.

    Metrics: "rps"; "p50", "p90", "p99", "max" in ms; "cpu_us", the server's CPU microseconds per
    request; and Ref("disk", "fsync", "", "per_s").
    """

    app: str
    scenario: str
    role: str
    metric: str


FSYNC = Ref("disk", "fsync", "", "per_s")


@dataclass(frozen=True)
class Target:
    """num / den against a bound; `value` None is a figure shown without a target.

    `alternative` names another target's title: meeting either one meets the goal.
    """

    def apps(self) -> str:
        """What the ratio divides: "subject / baseline", or one app's name."""
        if self.num.app == self.den.app:
            return self.num.app
        return f"{self.num.app} / {self.den.app}"

    title: str
    num: Ref
    den: Ref
    bound: str  # ">=" or "<="
    value: float | None = None
    alternative: str = ""


@dataclass(frozen=True)
class Plan:
    mode: str
    apps: list[AppSpec]
    scenarios: list[Scenario]
    targets: list[Target]
    measure_fsync: bool = False


def scenarios(args: argparse.Namespace) -> dict[str, Scenario]:
    """Every scenario; a mode picks some.  The mixed one runs two wrk processes at once."""
    wide, threads, readers, writers = args.connections, args.threads, args.readers, args.writers
    return {
        s.key: s
        for s in [
            Scenario("get", f"GET, {wide} conn", {"get": Load("get", "member", wide, threads)}),
            Scenario(
                "patch_one_user",
                f"PATCH 1 user, {wide} conn",
                {"patch": Load("patch", "member", wide, threads)},
            ),
            Scenario(
                "patch_many_users",
                f"PATCH {args.users} users, {wide} conn",
                {"patch": Load("patch", "many", wide, threads)},
            ),
            Scenario(
                "get_alone",
                f"GET alone, {readers} conn",
                {"get": Load("get", "member", readers, 1)},
            ),
            Scenario(
                "get_during_patch",
                f"GET {readers} conn + PATCH {args.users} users {writers} conn",
                {
                    "get": Load("get", "member", readers, 1),
                    "patch": Load("patch", "many", writers, 1),
                },
            ),
        ]
    }


def same(
    title: str,
    scenario: str,
    role: str,
    metric: str,
    apps: tuple[str, str],
    bound: str,
    value: float | None = None,
    alternative: str = "",
) -> Target:
    """A target on the same figure of two apps: apps[0]'s over apps[1]'s."""
    num, den = (Ref(app, scenario, role, metric) for app in apps)
    return Target(title, num, den, bound, value, alternative)


def during_vs_alone(app: str, value: float | None = None) -> Target:
    """GET p99 with writers running over GET p99 alone, both with --readers connections."""
    return Target(
        "GET p99 during PATCH / alone",
        Ref(app, "get_during_patch", "get", "p99"),
        Ref(app, "get_alone", "get", "p99"),
        "<=",
        value,
    )


def host_label(database: str, synchronous: str, records: int) -> str:
    kind = "PostgreSQL" if database.startswith("postgresql://") else f"SQLite {synchronous}"
    return f"example host, {kind}" + (f", {records:,} filler records" if records else "")


def default_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """Subject (the example host) against the bare baseline: the issue's ratio targets."""
    database = args.database or sqlite_url(tmp / "subject.db")
    subject = AppSpec(
        "subject",
        host_label(database, args.synchronous, args.records),
        host=True,
        database=database,
        synchronous=args.synchronous,
        records=args.records,
    )
    baseline = AppSpec("baseline", "bare Starlette, benchmarks/bare_app.py", host=False)
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    apps = ("subject", "baseline")
    targets = [
        same("GET req/s", "get", "get", "rps", apps, ">=", 0.75),
        same(f"{many} req/s", "patch_many_users", "patch", "rps", apps, ">=", 0.55),
        same("PATCH 1 user req/s", "patch_one_user", "patch", "rps", apps, ">=", 0.50),
        same("GET p99", "get", "get", "p99", apps, "<="),
        same(f"{many} p99", "patch_many_users", "patch", "p99", apps, "<=", 2.0),
        same("PATCH 1 user p99", "patch_one_user", "patch", "p99", apps, "<=", 2.0),
        same("GET p99 during PATCH", "get_during_patch", "get", "p99", apps, "<=", 2.0),
        same("PATCH req/s during GET", "get_during_patch", "patch", "rps", apps, ">="),
        during_vs_alone("subject"),
        during_vs_alone("baseline"),
    ]
    if database.startswith("postgresql://"):
        measured = [("get", "get"), ("patch_many_users", "patch"), ("patch_one_user", "patch")]
        for key, role in measured:
            p99, p50 = (Ref("subject", key, role, metric) for metric in ("p99", "p50"))
            targets.append(Target(f"{chosen[key].title}: p99 / p50", p99, p50, "<=", 5.0))
    return Plan("default", [baseline, subject], list(chosen.values()), targets)


def durable_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """The host on SQLite synchronous=NORMAL against FULL, plus the disk's fsync/s."""
    apps = [
        AppSpec(
            name,
            host_label("", name.upper(), args.records),
            host=True,
            database=sqlite_url(tmp / f"{name}.db"),
            synchronous=name.upper(),
            records=args.records,
        )
        for name in ("normal", "full")
    ]
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    pair = ("full", "normal")
    full_vs_normal = f"{many} req/s"
    full_vs_fsync = f"{many} req/s per disk fsync/s"
    full_rps = Ref("full", "patch_many_users", "patch", "rps")
    targets = [
        same(full_vs_normal, "patch_many_users", "patch", "rps", pair, ">=", 0.80, full_vs_fsync),
        Target(full_vs_fsync, full_rps, FSYNC, ">=", 5.0, alternative=full_vs_normal),
        during_vs_alone("full", 2.0),
        during_vs_alone("normal"),
        same(f"{many} p99", "patch_many_users", "patch", "p99", pair, "<="),
        same("GET p99 during PATCH", "get_during_patch", "get", "p99", pair, "<="),
        same("PATCH req/s during GET", "get_during_patch", "patch", "rps", pair, ">="),
    ]
    keys = ("patch_many_users", "get_alone", "get_during_patch")
    return Plan("durable-compare", apps, [chosen[k] for k in keys], targets, measure_fsync=True)


def scale_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """The host with 1,000 filler records against the host with --records of them."""
    sizes = {"small": SCALE_SMALL, "large": args.records}
    apps = [
        AppSpec(
            name,
            host_label("", "NORMAL", n),
            host=True,
            database=sqlite_url(tmp / f"{name}.db"),
            records=n,
        )
        for name, n in sizes.items()
    ]
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    pair = ("large", "small")
    targets = [
        same("GET req/s", "get", "get", "rps", pair, ">=", 0.90),
        same(f"{many} req/s", "patch_many_users", "patch", "rps", pair, ">=", 0.90),
        same("GET p99", "get", "get", "p99", pair, "<="),
        same(f"{many} p99", "patch_many_users", "patch", "p99", pair, "<="),
    ]
    return Plan("scale-compare", apps, [chosen["get"], chosen["patch_many_users"]], targets)


def policy_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """The host with issue 10's policy in force against the same host with none."""
    apps = [
        AppSpec(
            name,
            "example host, SQLite NORMAL" + (", policy in force" if name == "policy" else ""),
            host=True,
            database=sqlite_url(tmp / f"{name}.db"),
            policy=name == "policy",
        )
        for name in ("policy", "none")
    ]
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    pair = ("policy", "none")
    targets = [
        same("GET req/s", "get", "get", "rps", pair, ">=", 0.90),
        same(f"{many} req/s", "patch_many_users", "patch", "rps", pair, ">=", 0.90),
        same("GET p99", "get", "get", "p99", pair, "<="),
        same(f"{many} p99", "patch_many_users", "patch", "p99", pair, "<="),
    ]
    return Plan("policy-compare", apps, [chosen["get"], chosen["patch_many_users"]], targets)


def host_variant(
    args: argparse.Namespace, tmp: Path, name: str, what: str, **options: Any
) -> AppSpec:
    """The example host on a fresh SQLite file of its own (or on `--database`), with `options`
    (AppSpec fields) set: one side of a comparison."""
    database = args.database or sqlite_url(tmp / f"{name}.db")
    label = f"{host_label(database, args.synchronous, 0)}, {what}"
    return AppSpec(
        name, label, host=True, database=database, synchronous=args.synchronous, **options
    )


def history_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """The host keeping 100 revisions per user against the same host with history off, on
    fresh SQLite files, or both on `--database` (PostgreSQL: one table, run one at a time)."""
    apps = [
        host_variant(args, tmp, name, f"history {shown}", history=keep)
        for name, keep, shown in (("history", 100, "100/user"), ("off", 0, "off"))
    ]
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    pair = ("history", "off")
    targets = [
        same(f"{many} req/s", "patch_many_users", "patch", "rps", pair, ">=", 0.85),
        same("PATCH 1 user req/s", "patch_one_user", "patch", "rps", pair, ">=", 0.85),
        same("GET req/s", "get", "get", "rps", pair, ">="),
        same(f"{many} p99", "patch_many_users", "patch", "p99", pair, "<="),
    ]
    scenario_list = [chosen["patch_many_users"], chosen["patch_one_user"], chosen["get"]]
    return Plan("history-compare", apps, scenario_list, targets)


def streams_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """The host with --streams idle live-change streams open against the same host with none
    (the streams follow the GET user, whom no load writes: idle, but the hub still wakes for
    every PATCH of the platform)."""
    apps = [
        host_variant(args, tmp, name, f"{streams:,} idle streams open", streams=streams)
        for name, streams in (("streams", args.streams), ("none", 0))
    ]
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    pair = ("streams", "none")
    targets = [
        same("GET req/s", "get", "get", "rps", pair, ">=", 0.90),
        same(f"{many} req/s", "patch_many_users", "patch", "rps", pair, ">=", 0.90),
        same("GET p99", "get", "get", "p99", pair, "<="),
        same(f"{many} p99", "patch_many_users", "patch", "p99", pair, "<="),
    ]
    return Plan("streams-compare", apps, [chosen["get"], chosen["patch_many_users"]], targets)


def metrics_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """The host serving Prometheus metrics (in one process, and with the shared directory
    `serve --workers N` gives its workers) against the same host with metrics off (issue 25:
    at most 5 % of GET and PATCH throughput)."""
    apps = [
        host_variant(args, tmp, name, what, metrics=mode)
        for name, what, mode in (
            ("metrics", "metrics on", "on"),
            ("shared", "metrics on, shared directory", "shared"),
            ("off", "metrics off", ""),
        )
    ]
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    targets: list[Target] = []
    for subject in ("metrics", "shared"):
        pair = (subject, "off")
        targets += [
            same(f"GET req/s ({subject})", "get", "get", "rps", pair, ">=", 0.95),
            same(f"{many} req/s ({subject})", "patch_many_users", "patch", "rps", pair, ">=", 0.95),
            # 5 % more CPU per request is 5 % fewer requests from a saturated worker.
            same(f"GET server CPU/request ({subject})", "get", "get", "cpu_us", pair, "<=", 1.05),
            same(
                f"{many} server CPU/request ({subject})",
                "patch_many_users", "patch", "cpu_us", pair, "<=", 1.05,
            ),  # fmt: skip
            same(f"GET p99 ({subject})", "get", "get", "p99", pair, "<="),
            same(f"{many} p99 ({subject})", "patch_many_users", "patch", "p99", pair, "<="),
        ]
    return Plan("metrics-compare", apps, [chosen["get"], chosen["patch_many_users"]], targets)


def check_metrics(spec: AppSpec, port: int) -> None:
    """A host with metrics on counted the load: its `/metrics` shows the GETs it answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    wanted = 'platform_metadata_requests_total{method="GET",resource="metadata",status_class="2xx"}'
    if response.status != 200 or wanted not in text:
        raise Abort(f"{spec.name}: /metrics answered {response.status} without {wanted}")


def tree_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """The host as this tree's code (`--python`) against the same host as another tree's (the
    interpreter of that tree's venv, `--tree-compare`), on fresh SQLite files or on
    `--database`: a change measured against the code before it, in the same run.  With
    `--tree-serve` both run as `serve` as shipped, the protocol included."""
    serve = () if args.tree_serve else None
    apps = [
        host_variant(args, tmp, name, what, python=python, serve=serve)
        for name, what, python in (
            ("new", "this tree", args.python),
            ("old", f"the tree of {args.tree_compare}", args.tree_compare),
        )
    ]
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    pair = ("new", "old")
    targets = [
        same("GET req/s", "get", "get", "rps", pair, ">="),
        same(f"{many} req/s", "patch_many_users", "patch", "rps", pair, ">="),
        same("PATCH 1 user req/s", "patch_one_user", "patch", "rps", pair, ">="),
        same("GET p99", "get", "get", "p99", pair, "<="),
        same(f"{many} p99", "patch_many_users", "patch", "p99", pair, "<="),
        same("PATCH 1 user p99", "patch_one_user", "patch", "p99", pair, "<="),
    ]
    keys = ("get", "patch_many_users", "patch_one_user")
    return Plan("tree-compare", apps, [chosen[k] for k in keys], targets)


def jwt_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """GET with a Bearer JWT (RS256, its key cached) on the host with JWT auth on, against
    GET with a Token key on the host without it; and the same JWT with the verified-token
    cache off, which checks the signature on every request: verification's own cost."""
    what = "JWT auth on, Bearer RS256 (key cached)"
    apps = [
        host_variant(args, tmp, "jwt", what, jwt=True),
        host_variant(args, tmp, "verify", what + ", every signature checked", jwt=True,
                     jwt_verified_cache=0),  # fmt: skip
        host_variant(args, tmp, "token", "Token key"),
    ]
    targets = [
        same("GET req/s", "get", "get", "rps", ("jwt", "token"), ">=", 0.90),
        same("GET p99", "get", "get", "p99", ("jwt", "token"), "<="),
        same("GET req/s", "get", "get", "rps", ("verify", "token"), ">="),
        same("GET p99", "get", "get", "p99", ("verify", "token"), "<="),
    ]
    return Plan("jwt-compare", apps, [scenarios(args)["get"]], targets)


def serve_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """`python -m example_host serve --no-access-log` as shipped (bounded httptools) against
    the bare baseline, beside the same host with `--http h11` and on uvicorn's own httptools
    (no head bounds): what the default costs."""
    apps = [
        AppSpec("baseline", "bare Starlette, benchmarks/bare_app.py", host=False),
        host_variant(args, tmp, "shipped", "serve as shipped", serve=()),
        host_variant(args, tmp, "h11", "serve --http h11", serve=("--http", "h11")),
        host_variant(args, tmp, "raw", "uvicorn --http httptools (no head bounds)"),
    ]
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    targets = []
    for name, bounds in (("shipped", (0.70, 0.55, 0.55, 2.0)), ("h11", None), ("raw", None)):
        pair = (name, "baseline")
        get, spread, one, tail = bounds or (None, None, None, None)
        targets += [
            same(f"{name}: GET req/s", "get", "get", "rps", pair, ">=", get),
            same(f"{name}: {many} req/s", "patch_many_users", "patch", "rps", pair, ">=", spread),
            same(f"{name}: PATCH 1 user req/s", "patch_one_user", "patch", "rps", pair, ">=", one),
            same(f"{name}: GET p99", "get", "get", "p99", pair, "<=", tail),
            same(f"{name}: {many} p99", "patch_many_users", "patch", "p99", pair, "<=", tail),
            same(f"{name}: PATCH 1 user p99", "patch_one_user", "patch", "p99", pair, "<=", tail),
        ]
    keys = ("get", "patch_many_users", "patch_one_user")
    return Plan("serve-compare", apps, [chosen[k] for k in keys], targets)


def pg_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    """`serve` as shipped on PostgreSQL (`--database`) against a bare Starlette + asyncpg
    route on the same cluster, one statement per request (bare_pg_app.py)."""
    baseline = AppSpec(
        "pg_baseline",
        "bare Starlette + asyncpg, benchmarks/bare_pg_app.py",
        host=False,
        database=args.database,
        bare="bare_pg_app",
    )
    apps = [baseline, host_variant(args, tmp, "subject", "serve as shipped", serve=())]
    chosen = scenarios(args)
    many = f"PATCH {args.users} users"
    pair = ("subject", "pg_baseline")
    targets = [
        same("GET req/s", "get", "get", "rps", pair, ">=", 0.80),
        same(f"{many} req/s", "patch_many_users", "patch", "rps", pair, ">=", 0.50),
        same("PATCH 1 user req/s", "patch_one_user", "patch", "rps", pair, ">=", 0.50),
        same("GET p99", "get", "get", "p99", pair, "<=", 2.0),
        same(f"{many} p99", "patch_many_users", "patch", "p99", pair, "<=", 2.0),
        same("PATCH 1 user p99", "patch_one_user", "patch", "p99", pair, "<=", 2.0),
    ]
    keys = ("get", "patch_many_users", "patch_one_user")
    return Plan("pg-compare", apps, [chosen[k] for k in keys], targets)


def hold_streams(args: argparse.Namespace, port: int, token: str, count: int, tmp: Path) -> Server:
    """A client process holding `count` live-change streams open on the server (sse_client.py)."""
    command = [args.python, str(HERE / "sse_client.py"), str(port), token, str(count)]
    holder = Server("streams-holder", command, child_env(), tmp)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while "ready" not in holder.log_tail(5):
        holder.check_alive()
        if time.monotonic() > deadline:
            raise Abort(f"the streams did not open:\n{holder.log_tail()}")
        time.sleep(0.1)
    return holder


def put_policy(port: int, admin: str) -> None:
    """The tenant admin puts POLICY in force, over HTTP as any client would."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Token {admin}", "Content-Type": "application/json"}
        conn.request(
            "PUT", f"{PATH}policy/?platform_key={PLATFORM}", json.dumps(POLICY), headers
        )
        response = conn.getresponse()
        raw = response.read()
        if response.status != 200:
            raise Abort(f"PUT policy answered {response.status}: {raw[:300]!r}")
    finally:
        conn.close()


def build_plan(args: argparse.Namespace, tmp: Path) -> Plan:
    if args.jwt_compare:
        return jwt_plan(args, tmp)
    if args.serve_compare:
        return serve_plan(args, tmp)
    if args.pg_compare:
        return pg_plan(args, tmp)
    if args.tree_compare:
        return tree_plan(args, tmp)
    if args.streams_compare:
        return streams_plan(args, tmp)
    if args.metrics_compare:
        return metrics_plan(args, tmp)
    if args.history_compare:
        return history_plan(args, tmp)
    if args.policy_compare:
        return policy_plan(args, tmp)
    if args.durable_compare:
        return durable_plan(args, tmp)
    if args.scale_compare:
        return scale_plan(args, tmp)
    return default_plan(args, tmp)


# --------------------------------------------------------------------------- results


@dataclass
class WrkResult:
    requests: int
    duration_us: int
    bytes: int
    connect: int
    read: int
    write: int
    status: int  # responses with a status >= 400 (wrk's "Non-2xx or 3xx responses")
    timeout: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout

    @property
    def errors(self) -> int:
        return self.status + self.socket_errors

    def metric(self, name: str) -> float:
        """"rps", or a latency ("p50", "p90", "p99", "max") in milliseconds."""
        if name == "rps":
            return self.rps
        micros: int = getattr(self, f"{name}_us")
        return micros / 1000


@dataclass
class LoadRun:
    """One load's measured run (and warm-up) within a scenario's run."""

    role: str
    result: WrkResult
    warmup: WrkResult | None
    # PATCH loads: the growth of the written records' versions (ETags) during the measured run.
    writes_applied: int | None = None
    # Requests in flight when wrk stops may land without wrk counting them: one per connection.
    in_flight: int = 0
    # The server process's CPU (all its threads) per request answered in the measured run, in
    # microseconds, over every load of the scenario: what an app costs per request, which a
    # shared machine disturbs far less than req/s (it takes cores from both sides unevenly).
    cpu_us: float | None = None

    @property
    def write_check_failed(self) -> bool:
        """Fewer writes landed than wrk counted successful PATCHes, or implausibly many more."""
        if self.writes_applied is None:
            return False
        ok = self.result.requests - self.result.status
        return not ok <= self.writes_applied <= self.result.requests + self.in_flight

    def as_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "rps": round(self.result.rps, 1),
            "non_2xx": self.result.status,
            "socket_errors": self.result.socket_errors,
            "writes_applied": self.writes_applied,
            "write_check_failed": self.write_check_failed,
            "server_cpu_us_per_request": None if self.cpu_us is None else round(self.cpu_us, 1),
            **asdict(self.result),
            "warmup": None if self.warmup is None else asdict(self.warmup),
        }


@dataclass
class Run:
    scenario: str
    app: str
    round: int
    loads: list[LoadRun] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "app": self.app,
            "round": self.round,
            "loads": [load.as_json() for load in self.loads],
        }


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ next to bare_app.py
    env.pop("DATABASE_URL", None)
    env.pop("EXAMPLE_HOST_SQLITE_SYNCHRONOUS", None)
    env.pop("EXAMPLE_HOST_METRICS", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra or {})
    return env


def run_cli(python: str, args: Sequence[str], database: str, cwd: Path) -> str:
    """`python -m example_host ARGS --database URL`; its stdout."""
    command = [python, "-m", "example_host", *args, "--database", database]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise Abort(f"{' '.join(args)} did not finish in {CLI_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise Abort(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def add_user(python: str, username: str, database: str, cwd: Path) -> str:
    out = run_cli(python, ["add-user", username, "--platform", PLATFORM], database, cwd)
    token = out.strip().splitlines()[-1].strip()
    if len(token) != 40 or any(c not in "0123456789abcdef" for c in token):
        raise Abort(f"add-user {username} printed no token: {out!r}")
    return token


class Server:
    """A uvicorn process in its own process group, stopped (group-wide) by `stop()`."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.port = int(command[command.index("--port") + 1]) if "--port" in command else 0
        self.log_path = cwd / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def wait_ready(self, token: str, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Abort(
                    f"{self.name} exited {self.process.returncode} at startup:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _, _ = request(self.port, "GET", token)
                if status == 200:
                    return
            time.sleep(0.1)
        raise Abort(f"{self.name} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise Abort(f"{self.name} died under load:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT)
        # Whatever is left of the group (uvicorn has no children with one worker, but be sure).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT)
        self._log.close()


#: `--pin`: the servers on one CPU, wrk (and this script's other children) on the other, so
#: that the scheduler cannot trade them between rounds (`taskset` execs: the pid is the server's).
SERVER_PIN: list[str] = []
LOAD_PIN: list[str] = []


def uvicorn_command(python: str, target: list[str], port: int, loop: str = "uvloop") -> list[str]:
    return [
        *SERVER_PIN, python, "-m", "uvicorn", *target,
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", loop, "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def start_server(
    python: str,
    spec: AppSpec,
    cwd: Path,
    host_loop: str = "uvloop",
    jwt: dict[str, str] | None = None,
) -> Server:
    """The bare baseline on uvloop, its fastest; the example host on `host_loop` (with `jwt`,
    the issuer's settings, when the spec turns JWT auth on)."""
    if not spec.host:
        target = [f"{spec.bare}:app", "--app-dir", str(HERE)]
        env = child_env({"DATABASE_URL": spec.database} if spec.database else None)
        return Server(spec.name, uvicorn_command(python, target, free_port()), env, cwd)
    target = ["example_host.app:create_app_from_env", "--factory"]
    extra = {"DATABASE_URL": spec.database, "EXAMPLE_HOST_SQLITE_SYNCHRONOUS": spec.synchronous}
    if spec.history is not None:
        extra["EXAMPLE_HOST_HISTORY_PER_USER"] = str(spec.history)
    if spec.metrics:
        extra["EXAMPLE_HOST_METRICS"] = "1"
    if spec.metrics == "shared":
        directory = cwd / f"{spec.name}-metrics"
        directory.mkdir(exist_ok=True)
        extra["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    if spec.jwt:
        extra.update(jwt or {})
        if spec.jwt_verified_cache is not None:
            extra["EXAMPLE_HOST_JWT_VERIFIED_CACHE"] = str(spec.jwt_verified_cache)
    if spec.streams:
        # The idle streams are a few users' own: lift the per-caller and per-platform shares.
        for name in ("MAX_STREAMS", "MAX_STREAMS_PER_IDENTITY", "MAX_STREAMS_PER_PLATFORM"):
            extra[f"EXAMPLE_HOST_EVENTS_{name}"] = str(spec.streams + 10)
    env = child_env(extra)
    if spec.serve is not None:
        command = [
            *SERVER_PIN, python, "-m", "example_host", "serve", "--host", "127.0.0.1",
            "--port", str(free_port()), "--database", spec.database, "--no-access-log",
            "--loop", host_loop, *spec.serve,
        ]  # fmt: skip
        return Server(spec.name, command, env, cwd)
    return Server(spec.name, uvicorn_command(python, target, free_port(), host_loop), env, cwd)


@contextlib.contextmanager
def servers_stopped(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


# --------------------------------------------------------------------------- HTTP checks


def request(
    port: int, method: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        # A credential with its scheme ("Bearer <JWT>") is sent as it is; a bare key is a Token.
        headers = {"Authorization": token if " " in token else f"Token {token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, f"{PATH}?platform_key={PLATFORM}", body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def check_answer(name: str, port: int, token: str, method: str, body: dict[str, Any] | None) -> int:
    """One request that must answer 200 with the endpoint's JSON shape; the body's length."""
    status, raw, _ = request(port, method, token, body)
    if status != 200:
        raise Abort(f"{name}: {method} answered {status}: {raw[:300]!r}")
    data = json.loads(raw)
    expected = {"username", "platform_key", "metadata", "created_at", "updated_at"}
    if set(data) != expected or data["platform_key"] != PLATFORM:
        raise Abort(f"{name}: {method} answered an unexpected shape: {raw[:300]!r}")
    if body is not None and any(data["metadata"].get(k) != v for k, v in body["metadata"].items()):
        raise Abort(f"{name}: {method} did not apply the write: {raw[:300]!r}")
    return len(raw)


def version_sum(port: int, tokens: Sequence[str]) -> int:
    """The sum of the records' versions (their ETags) of these users."""
    total = 0
    for token in tokens:
        status, raw, headers = request(port, "GET", token)
        if status != 200:
            raise Abort(f"GET answered {status}: {raw[:300]!r}")
        total += int(headers["etag"].strip('"'))
    return total


def settled_version_sum(port: int, tokens: Sequence[str]) -> int:
    """`version_sum` once it stops moving.

    When wrk stops, the requests it had in flight are still being served (queued PATCHes on one
    row can be many): let them land before counting, or the next run gets the credit.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = version_sum(port, tokens)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = version_sum(port, tokens)
        if now == last:
            return now
        last = now
    raise Abort(f"writes kept landing {SETTLE_TIMEOUT:.0f} s after wrk stopped")


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class Users:
    member: str
    many: list[str]
    admin: str = ""
    # The same users' credentials on apps that take another kind (Bearer JWTs), by app name.
    per_app: dict[str, Users] = field(default_factory=dict)

    def tokens(self, which: str) -> list[str]:
        return [self.member] if which == "member" else self.many

    def of(self, app: str) -> Users:
        return self.per_app.get(app, self)


def wrk_command(
    args: argparse.Namespace, port: int, load: Load, tokens: Sequence[str], seconds: int
) -> list[str]:
    if load.script == "get":
        script_args = [tokens[0]]
    else:
        script_args = [str(load.threads), str(PATCH_KEYS), *tokens]
    return [
        *LOAD_PIN, args.wrk, "--latency",
        "-t", str(load.threads),
        "-c", str(load.connections),
        "-d", f"{seconds}s",
        "--timeout", f"{args.wrk_timeout}s",
        "-s", str(HERE / f"{load.script}.lua"),
        f"http://127.0.0.1:{port}{PATH}?platform_key={PLATFORM}",
        "--", *script_args,
    ]  # fmt: skip


def wrk_result(process: subprocess.Popen[str], seconds: int) -> WrkResult:
    limit = seconds + 60
    try:
        stdout, stderr = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        raise Abort(f"wrk did not finish within {limit:.0f} s") from None
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return WrkResult(**json.loads(line.removeprefix("BENCH_JSON ")))
    raise Abort(f"wrk exited {process.returncode} without a result:\n{stdout}\n{stderr}")


def run_loads(
    args: argparse.Namespace, port: int, scenario: Scenario, users: Users, seconds: int
) -> dict[str, WrkResult]:
    """The scenario's loads, one wrk process each, all at once; their results by role."""
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        for role, load in scenario.loads.items():
            command = wrk_command(args, port, load, users.tokens(load.users), seconds)
            processes[role] = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        return {role: wrk_result(process, seconds) for role, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def run_scenario(
    args: argparse.Namespace, scenario: Scenario, server: Server, users: Users, round_no: int
) -> Run:
    """Warm-up, then the measured run, checking that the PATCHes wrk counted landed."""
    warmups = run_loads(args, server.port, scenario, users, args.warmup) if args.warmup else {}
    writers = {role: load for role, load in scenario.loads.items() if load.writes}
    before = {
        role: settled_version_sum(server.port, users.tokens(load.users))
        for role, load in writers.items()
    }
    cpu_before = process_cpu_seconds(server.process.pid)
    results = run_loads(args, server.port, scenario, users, args.duration)
    cpu = process_cpu_seconds(server.process.pid) - cpu_before
    server.check_alive()
    answered = sum(result.requests for result in results.values())
    cpu_us = cpu / answered * 1e6 if answered else None
    run = Run(scenario.key, server.name, round_no)
    for role, load in scenario.loads.items():
        applied = None
        if role in writers:
            applied = settled_version_sum(server.port, users.tokens(load.users)) - before[role]
        run.loads.append(
            LoadRun(role, results[role], warmups.get(role), applied, load.connections, cpu_us)
        )
    return run


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux `/proc/PID/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_run(run: Run) -> None:
    parts = []
    for load in run.loads:
        r = load.result
        flag = "" if r.errors == 0 else f" !! {r.errors} ERRORS"
        if load.write_check_failed:
            flag += f" !! {load.writes_applied} WRITES LANDED"
        parts.append(
            f"{load.role} {r.rps:>8.1f} req/s p50 {r.p50_us / 1000:6.2f} "
            f"p99 {r.p99_us / 1000:7.2f} ms{flag}"
        )
    print(f"  round {run.round}  {run.scenario:<17} {run.app:<8} " + " | ".join(parts), flush=True)


# --------------------------------------------------------------------------- the disk


def fsync_rate(directory: Path, seconds: float = FSYNC_SECONDS) -> float:
    """fsync/s on this directory's disk: a 4 KiB write then os.fsync, in a loop.

    The writes rotate over 64 blocks of a small file, as SQLite's commits do over a reused WAL.
    """
    path = directory / "fsync-probe"
    block = b"\0" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, block * 64)
        os.fsync(fd)
        count = 0
        started = now = time.monotonic()
        while now - started < seconds:
            os.pwrite(fd, block, (count % 64) * len(block))
            os.fsync(fd)
            count += 1
            now = time.monotonic()
        return count / (now - started)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def filesystem(directory: Path) -> str:
    """The type of the filesystem holding `directory` (tmpfs makes fsync free)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(directory).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


# --------------------------------------------------------------------------- databases


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy (users, tokens) for another app, through SQLite's backup API."""
    with contextlib.closing(sqlite3.connect(source)) as src:
        with contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)


def filler_rows(count: int) -> Iterator[tuple[str, str, str, int, str, str]]:
    """Records for `count` users that make no requests, in primary-key order."""
    document = json.dumps(SEED, separators=(",", ":"))
    width = max(7, len(str(count - 1)))
    for i in range(count):
        name = f"{FILLER_PREFIX}{i:0{width}d}"
        yield PLATFORM, name, document, 1, FILLER_TIMESTAMP, FILLER_TIMESTAMP


def check_columns(found: Sequence[str], where: str) -> None:
    missing = [c for c in METADATA_COLUMNS if c not in found]
    if missing:
        raise Abort(
            f"{where}: table {METADATA_TABLE} lacks {missing} (has {list(found)}); "
            "benchmarks/run.py --records writes those columns directly"
        )


def fill_sqlite(path: Path, count: int) -> dict[str, Any]:
    """Bulk insert, one transaction; the table's row count and DDL as SQLite recorded it."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        (ddl,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (METADATA_TABLE,)
        ).fetchone() or (None,)
        if ddl is None:
            raise Abort(f"{path}: no table {METADATA_TABLE} after the host started")
        columns = conn.execute(f"PRAGMA table_info({METADATA_TABLE})").fetchall()
        check_columns([row[1] for row in columns], str(path))
        conn.execute("PRAGMA synchronous = OFF")  # the benchmark's own connection only
        placeholders = ", ".join("?" * len(METADATA_COLUMNS))
        with conn:
            conn.executemany(
                f"INSERT INTO {METADATA_TABLE} ({', '.join(METADATA_COLUMNS)}) "
                f"VALUES ({placeholders}) ON CONFLICT DO NOTHING",
                filler_rows(count),
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (rows,) = conn.execute(f"SELECT count(*) FROM {METADATA_TABLE}").fetchone()
        return {"rows_in_table": int(rows), "schema": str(ddl)}


def fill_postgresql(url: str, count: int) -> dict[str, Any]:
    """Bulk insert with asyncpg (the `postgresql` extra), one transaction; row count, columns."""
    import asyncpg

    async def fill() -> dict[str, Any]:
        conn = await asyncpg.connect(url.split("?", 1)[0])
        try:
            rows = await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = $1 "
                "ORDER BY ordinal_position",
                METADATA_TABLE,
            )
            check_columns([r["column_name"] for r in rows], redact_url(url))
            stamp = datetime.datetime.fromisoformat(FILLER_TIMESTAMP)
            placeholders = ", ".join(f"${i + 1}" for i in range(len(METADATA_COLUMNS)))
            async with conn.transaction():
                await conn.executemany(
                    f"INSERT INTO {METADATA_TABLE} ({', '.join(METADATA_COLUMNS)}) "
                    f"VALUES ({placeholders}) ON CONFLICT DO NOTHING",
                    ((*row[:4], stamp, stamp) for row in filler_rows(count)),
                )
            total = await conn.fetchval(f"SELECT count(*) FROM {METADATA_TABLE}")
            columns = ", ".join(f"{r['column_name']} {r['data_type']}" for r in rows)
            return {"rows_in_table": int(total), "schema": columns}
        finally:
            await conn.close()

    return asyncio.run(fill())


def fill_records(spec: AppSpec) -> dict[str, Any]:
    """--records for one app, once the host has created its tables; what it took."""
    print(f"  {spec.name}: writing {spec.records:,} filler records ...", flush=True)
    started = time.monotonic()
    if spec.database.startswith("postgresql://"):
        done = fill_postgresql(spec.database, spec.records)
    else:
        done = fill_sqlite(sqlite_path(spec.database), spec.records)
    seconds = time.monotonic() - started
    print(
        f"  {spec.name}: {spec.records:,} records in {seconds:.1f} s "
        f"({done['rows_in_table']:,} rows in the table)",
        flush=True,
    )
    return {"records": spec.records, "seconds": round(seconds, 1), **done}


# --------------------------------------------------------------------------- preparation


def create_users(args: argparse.Namespace, database: str, tmp: Path) -> Users:
    """The platform and its users through the CLI, as a deployment would."""
    started = time.monotonic()
    run_cli(args.python, ["add-platform", PLATFORM], database, tmp)
    member = add_user(args.python, MEMBER, database, tmp)
    many = [
        add_user(args.python, f"{MANY_PREFIX}{i:02d}", database, tmp) for i in range(args.users)
    ]
    admin = ""
    if args.policy_compare:
        command = ["add-user", ADMIN, "--platform", PLATFORM, "--admin"]
        admin = run_cli(args.python, command, database, tmp).strip().splitlines()[-1].strip()
    print(f"  {args.users + 1} users created in {time.monotonic() - started:.1f} s", flush=True)
    return Users(member, many, admin)


def prepare_databases(args: argparse.Namespace, plan: Plan, tmp: Path) -> Users:
    """Users in the first host app's database; SQLite copies of it for the other host apps."""
    hosts = [spec for spec in plan.apps if spec.host]
    first = hosts[0].database
    shown = redact_url(first) if args.database else "fresh SQLite files in a temp dir"
    print(f"Preparing the database ({shown}) ...", flush=True)
    users = create_users(args, first, tmp)
    for spec in hosts[1:]:
        if spec.database != first:
            copy_sqlite(sqlite_path(first), sqlite_path(spec.database))
    return users


def seed(servers: dict[str, Server], plan: Plan, users: Users) -> dict[str, dict[str, int]]:
    """The same document for every measured user on every app; one checked answer per method."""
    hosts = {spec.name for spec in plan.apps if spec.host}
    for name, server in servers.items():
        method = "PUT" if name in hosts else "PATCH"
        for token in [users.of(name).member, *users.of(name).many]:
            status, raw, _ = request(server.port, method, token, {"metadata": SEED})
            if status != 200:
                raise Abort(f"{name}: seeding {method} answered {status}: {raw[:300]!r}")
    body_bytes = {
        name: {
            "get": check_answer(name, server.port, users.of(name).member, "GET", None),
            "patch": check_answer(
                name, server.port, users.of(name).member, "PATCH", {"metadata": {"k0": 0}}
            ),
        }
        for name, server in servers.items()
    }
    shown = " / ".join(f"{name} {sizes['get']}" for name, sizes in body_bytes.items())
    print(f"  GET body bytes: {shown}", flush=True)
    return body_bytes


def start_apps(
    args: argparse.Namespace, plan: Plan, users: Users, tmp: Path, servers: list[Server]
) -> dict[str, Server]:
    """Every app's server, answering (the host has created its tables by then)."""
    jwt = args.issuer.env() if args.issuer else None
    for spec in plan.apps:
        servers.append(start_server(spec.python or args.python, spec, tmp, args.host_loop, jwt))
    for server in servers:
        server.wait_ready(users.of(server.name).member)
    return {server.name: server for server in servers}


# --------------------------------------------------------------------------- the benchmark


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def versions(python: str) -> dict[str, str]:
    code = (
        "import json, sys, sqlite3, starlette, uvicorn, httptools, uvloop\n"
        "print(json.dumps({'python': sys.version.split()[0], 'starlette': starlette.__version__,"
        " 'uvicorn': uvicorn.__version__, 'httptools': httptools.__version__,"
        " 'uvloop': uvloop.__version__, 'sqlite': sqlite3.sqlite_version}))"
    )
    done = subprocess.run(
        [python, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    if done.returncode != 0:
        raise Abort(
            f"{python} lacks uvicorn with httptools and uvloop; install them with "
            f"`{python} -m pip install 'uvicorn[standard]'`:\n{done.stderr.strip()}"
        )
    result: dict[str, str] = json.loads(done.stdout)
    wrk = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True, timeout=10)
    result["wrk"] = (wrk.stdout + wrk.stderr).splitlines()[0].strip()
    return result


def announce(args: argparse.Namespace, plan: Plan) -> None:
    per_round = len(plan.scenarios) * len(plan.apps) * (args.duration + args.warmup)
    per_round += FSYNC_SECONDS if plan.measure_fsync else 0
    print(
        f"Load ({plan.mode}): {args.warmup:g} s warm-up + {args.duration:g} s per run, "
        f"{args.rounds} rounds x {len(plan.scenarios)} scenarios x {len(plan.apps)} apps "
        f"(~{args.rounds * per_round / 60:.1f} min); the example host on {args.host_loop}, "
        "the bare baseline on uvloop",
        flush=True,
    )


def run_rounds(
    args: argparse.Namespace, plan: Plan, servers: dict[str, Server], users: Users, tmp: Path
) -> tuple[list[Run], list[float]]:
    """Every scenario on every app, per round; the disk's fsync/s per round if the plan asks."""
    runs: list[Run] = []
    fsyncs: list[float] = []
    names = [spec.name for spec in plan.apps]
    for round_no in range(1, args.rounds + 1):
        if plan.measure_fsync:
            fsyncs.append(fsync_rate(tmp))
            print(f"  round {round_no}  disk: {fsyncs[-1]:.0f} fsync/s", flush=True)
        # Alternate which app goes first, so that drift on a shared machine cancels out.
        order = names if round_no % 2 else names[::-1]
        for scenario in plan.scenarios:
            for name in order:
                run = run_scenario(args, scenario, servers[name], users.of(name), round_no)
                runs.append(run)
                print_run(run)
    return runs, fsyncs


def benchmark(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    info = versions(args.python)
    if args.tree_compare:
        versions(args.tree_compare)  # the other tree serves with the same stack, or we stop
    plan = build_plan(args, tmp)
    users = prepare_databases(args, plan, tmp)
    args.issuer = None
    if any(spec.jwt for spec in plan.apps):
        users = bearer_users(args, plan, users)
    started: list[Server] = []
    with servers_stopped(started), issuer_stopped(args.issuer):
        servers = start_apps(args, plan, users, tmp, started)
        fills = {spec.name: fill_records(spec) for spec in plan.apps if spec.records}
        for spec in plan.apps:
            if spec.policy:
                put_policy(servers[spec.name].port, users.admin)
            if spec.streams:
                port = servers[spec.name].port
                started.append(hold_streams(args, port, users.member, spec.streams, tmp))
        body_bytes = seed(servers, plan, users)
        announce(args, plan)
        load_before = os.getloadavg()
        runs, fsyncs = run_rounds(args, plan, servers, users, tmp)
        load_after = os.getloadavg()
        for spec in plan.apps:  # a final check that every app still answers correctly
            member = users.of(spec.name).member
            check_answer(spec.name, servers[spec.name].port, member, "GET", None)
            if spec.metrics:
                check_metrics(spec, servers[spec.name].port)
        logs = {name: server.log_tail(50) for name, server in servers.items()}
    return {
        "command": [sys.executable, *sys.argv],
        "mode": plan.mode,
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "temp_dir_filesystem": filesystem(tmp),
        },
        "versions": info,
        "settings": settings(args),
        "apps": {spec.name: spec.label for spec in plan.apps},
        "records": fills,
        "body_bytes": body_bytes,
        "fsync_per_s": [round(x, 1) for x in fsyncs],
        **summarize(plan, runs, fsyncs),
        "runs": [run.as_json() for run in runs],
        "server_log_tail": logs,
    }


def bearer_users(args: argparse.Namespace, plan: Plan, users: Users) -> Users:
    """Start the issuer (benchmarks/jwks_issuer.py) and give the JWT apps its tokens for the
    same users."""
    from jwks_issuer import Issuer

    args.issuer = Issuer()
    args.issuer.start()
    names = [MEMBER, *(f"{MANY_PREFIX}{i:02d}" for i in range(args.users))]
    bearers = [args.issuer.bearer(name) for name in names]
    jwt_users = Users(bearers[0], bearers[1:], users.admin)
    return Users(users.member, users.many, users.admin,
                 {spec.name: jwt_users for spec in plan.apps if spec.jwt})  # fmt: skip


@contextlib.contextmanager
def issuer_stopped(issuer: Any) -> Iterator[None]:
    try:
        yield
    finally:
        if issuer is not None:
            issuer.stop()


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "threads": args.threads,
        "connections": args.connections,
        "readers": args.readers,
        "writers": args.writers,
        "users_many": args.users,
        "records": args.records,
        "synchronous": args.synchronous,
        "wrk_timeout_s": args.wrk_timeout,
        "database": "sqlite (temp files)" if not args.database else redact_url(args.database),
        "patch_keys": PATCH_KEYS,
        "host_loop": args.host_loop,
        "baseline_loop": "uvloop",
        "tree_compare": args.tree_compare,
    }


# --------------------------------------------------------------------------- the report

METRICS = ("rps", "p50", "p90", "p99", "max")


def samples(runs: Sequence[Run], fsyncs: Sequence[float]) -> dict[Ref, list[float]]:
    """Every figure's value per round."""
    values: dict[Ref, list[float]] = {FSYNC: list(fsyncs)}
    for run in runs:
        for load in run.loads:
            for metric in METRICS:
                ref = Ref(run.app, run.scenario, load.role, metric)
                values.setdefault(ref, []).append(load.result.metric(metric))
            if load.cpu_us is not None:
                ref = Ref(run.app, run.scenario, load.role, "cpu_us")
                values.setdefault(ref, []).append(load.cpu_us)
    return values


def detail_row(
    scenario: Scenario, role: str, app: str, runs: Sequence[Run], values: dict[Ref, list[float]]
) -> dict[str, Any]:
    """One load of a scenario on one app: medians over the rounds, errors summed."""
    mine = [
        load
        for run in runs
        if run.scenario == scenario.key and run.app == app
        for load in run.loads
        if load.role == role
    ]
    medians = {
        f"median_{m}": round(statistics.median(values[Ref(app, scenario.key, role, m)]), 2)
        for m in METRICS
    }
    return {
        "scenario": scenario.key,
        "title": scenario.title,
        "role": role,
        "app": app,
        **medians,
        "rps_per_round": [round(x, 1) for x in values[Ref(app, scenario.key, role, "rps")]],
        "p99_per_round": [round(x, 2) for x in values[Ref(app, scenario.key, role, "p99")]],
        "errors": sum(load.result.errors for load in mine),
        "warmup_errors": sum(load.warmup.errors for load in mine if load.warmup),
        "write_check_failures": sum(load.write_check_failed for load in mine),
    }


def detail_rows(
    plan: Plan, runs: Sequence[Run], values: dict[Ref, list[float]]
) -> list[dict[str, Any]]:
    return [
        detail_row(scenario, role, spec.name, runs, values)
        for scenario in plan.scenarios
        for role in scenario.loads
        for spec in plan.apps
    ]


def target_rows(plan: Plan, values: dict[Ref, list[float]]) -> list[dict[str, Any]]:
    """Each target's ratio of medians and verdict; alternatives met count for each other."""
    rows: list[dict[str, Any]] = []
    for target in plan.targets:
        num = statistics.median(values[target.num])
        den = statistics.median(values[target.den])
        value = num / den if den else float("inf")
        met = None
        if target.value is not None:
            met = value >= target.value if target.bound == ">=" else value <= target.value
        row = {
            "title": target.title,
            "ratio_of": target.apps(),
            "numerator": round(num, 2),
            "denominator": round(den, 2),
            "ratio_of_medians": round(value, 3),
            "target": None if target.value is None else f"{target.bound} {target.value:g}",
            "meets_target": met,
            "alternative": target.alternative or None,
        }
        rows.append(row)
    by_title = {row["title"]: row for row in rows if row["meets_target"] is not None}
    for row in rows:
        alternative = by_title.get(row["alternative"] or "")
        row["goal_met"] = row["meets_target"]
        if alternative is not None and row["meets_target"] is False:
            row["goal_met"] = bool(alternative["meets_target"])
    return rows


def summarize(plan: Plan, runs: Sequence[Run], fsyncs: Sequence[float]) -> dict[str, Any]:
    values = samples(runs, fsyncs)
    return {"summary": detail_rows(plan, runs, values), "targets": target_rows(plan, values)}


def verdict(row: dict[str, Any]) -> str:
    if row["meets_target"] is None:
        return ""
    if row["meets_target"]:
        return "ok"
    return "BELOW, goal met by the alternative" if row["goal_met"] else "BELOW"


def table(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        f"mode {report['mode']}: {s['rounds']} rounds x {s['duration_s']:g} s, "
        "uvicorn 1 worker, medians over rounds (latencies in ms)"
    ]
    lines += [f"  {name}: {label}" for name, label in report["apps"].items()]
    if report["fsync_per_s"]:
        lines.append(
            f"  disk ({report['machine']['temp_dir_filesystem']}): fsync/s per round "
            + " ".join(f"{x:.0f}" for x in report["fsync_per_s"])
        )
    lines += [
        "",
        f"{'scenario':<44} {'load':<5} {'app':<8} {'req/s':>8} {'p50':>7} {'p90':>7} "
        f"{'p99':>7} {'max':>7} {'errors':>6}",
    ]
    for row in report["summary"]:
        bad = row["errors"] + row["write_check_failures"]
        lines.append(
            f"{row['title']:<44} {row['role']:<5} {row['app']:<8} {row['median_rps']:>8.0f} "
            f"{row['median_p50']:>7.2f} {row['median_p90']:>7.2f} {row['median_p99']:>7.2f} "
            f"{row['median_max']:>7.1f} {bad:>6}"
        )
    lines += [
        "",
        f"{'ratio of medians':<38} {'of':<17} {'value':>9} {'over':>9} {'ratio':>7} "
        f"{'target':>7}",
    ]
    for row in report["targets"]:
        lines.append(
            f"{row['title']:<38} {row['ratio_of']:<17} {row['numerator']:>9.2f} "
            f"{row['denominator']:>9.2f} {row['ratio_of_medians']:>7.3f} "
            f"{row['target'] or '':>7}  {verdict(row)}"
        )
    lines += ["", "req/s per round:"]
    for row in report["summary"]:
        per_round = " ".join(f"{x:.0f}" for x in row["rps_per_round"])
        lines.append(f"  {row['title']:<44} {row['role']:<5} {row['app']:<8} {per_round}")
    return "\n".join(lines)


def report_errors(report: dict[str, Any]) -> bool:
    """Prints loud warnings; whether the run's numbers are invalid."""
    failed = [row for row in report["summary"] if row["errors"] or row["write_check_failures"]]
    warm = [row for row in report["summary"] if row["warmup_errors"]]
    if warm:
        print(
            "\n!! warning: errors during warm-up: "
            + ", ".join(f"{r['title']} {r['role']} {r['app']}: {r['warmup_errors']}" for r in warm),
            file=sys.stderr,
        )
    if not failed:
        return False
    print(
        "\n" + "!" * 78 + "\n!! ERRORS UNDER LOAD (non-2xx or socket errors, or writes that did "
        "not all land): "
        + ", ".join(
            f"{r['title']} {r['role']} {r['app']}: {r['errors']} errors, "
            f"{r['write_check_failures']} runs whose writes did not all land"
            for r in failed
        )
        + "\n!! These numbers are not valid; see the runs in the JSON report.\n" + "!" * 78,
        file=sys.stderr,
    )
    return True


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The example host's endpoint against a baseline, in the same run."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--durable-compare",
        action="store_true",
        help="SQLite synchronous=NORMAL vs FULL (PATCH throughput, GET p99 during writes) "
        "and the disk's fsync/s",
    )
    mode.add_argument(
        "--policy-compare",
        action="store_true",
        help="the host with a platform policy in force (5 protected keys, 5 private prefixes, "
        "a 20-property schema) vs none",
    )
    mode.add_argument(
        "--history-compare",
        action="store_true",
        help="the host keeping history (100 revisions per user) vs history off",
    )
    mode.add_argument(
        "--streams-compare",
        action="store_true",
        help="the host with --streams (1,000) idle live-change streams open vs none",
    )
    parser.add_argument(
        "--streams", type=int, default=1000, help="streams held open by --streams-compare"
    )
    mode.add_argument(
        "--metrics-compare",
        action="store_true",
        help="the host serving Prometheus metrics (one process, and with a shared directory "
        "as with --workers) vs metrics off (GET, PATCH 64 users)",
    )
    mode.add_argument(
        "--jwt-compare",
        action="store_true",
        help="GET with a Bearer JWT (RS256, key cached) on the host with JWT auth on vs GET "
        "with a Token key on the host without it",
    )
    mode.add_argument(
        "--tree-compare",
        metavar="PYTHON",
        help="the host on this tree's code vs on another tree's: that tree's venv interpreter "
        "(GET, PATCH 64 users, PATCH 1 user)",
    )
    parser.add_argument(
        "--tree-serve",
        action="store_true",
        help="with --tree-compare: both hosts as `serve` starts them (its bounded httptools "
        "protocol) instead of uvicorn's httptools on the app factory",
    )
    mode.add_argument(
        "--scale-compare",
        action="store_true",
        help=f"{SCALE_SMALL:,} vs --records (default {SCALE_LARGE:,}) stored records",
    )
    mode.add_argument(
        "--serve-compare",
        action="store_true",
        help="`python -m example_host serve` as shipped vs the bare baseline, beside --http h11 "
        "and uvicorn's unbounded httptools",
    )
    mode.add_argument(
        "--pg-compare",
        action="store_true",
        help="`serve` as shipped on --database (PostgreSQL) vs a bare Starlette + asyncpg route "
        "on the same cluster (bare_pg_app.py)",
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run (5)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each run (2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="wrk threads (2; with --pin, one per CPU wrk gets: more threads than CPUs wait "
        "for each other, and wrk counts that wait as latency)",
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument(
        "--users", type=int, default=None, help="users of the many-users PATCH (--connections)"
    )
    parser.add_argument(
        "--readers", type=int, default=32, help="GET connections of the mixed scenario (32)"
    )
    parser.add_argument(
        "--writers", type=int, default=16, help="PATCH connections of the mixed scenario (16)"
    )
    parser.add_argument(
        "--records",
        type=int,
        default=None,
        help="filler records written into the metadata table before the load (default 0; "
        f"{SCALE_LARGE:,} with --scale-compare)",
    )
    parser.add_argument(
        "--synchronous",
        type=str.upper,
        default="NORMAL",
        choices=["NORMAL", "FULL"],
        help="the subject's SQLite PRAGMA synchronous (NORMAL)",
    )
    parser.add_argument("--wrk-timeout", type=int, default=5, help="wrk's socket timeout, s (5)")
    parser.add_argument(
        "--database",
        metavar="URL",
        help="the subject's database instead of a fresh SQLite file, e.g. postgresql://...; "
        "the benchmark adds platform acme-corp and its users and overwrites their metadata",
    )
    parser.add_argument(
        "--tmpdir", type=Path, default=None, help="where the temp dir goes (its disk is measured)"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the report here")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter for the servers and the CLI"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="servers on the last CPU, wrk on the others (taskset): steadier same-run ratios",
    )
    parser.add_argument(
        "--host-loop",
        choices=("asyncio", "uvloop"),
        default="uvloop",
        help="the example host's event loop (default uvloop, as the baseline's; asyncio: see "
        "benchmarks/README.md, 'Which event loop')"
    )
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.users is None:
        args.users = args.connections
    if args.records is None:
        args.records = SCALE_LARGE if args.scale_compare else 0
    if min(args.rounds, args.duration, args.users, args.readers, args.writers) < 1:
        parser.error("--rounds, --duration, --users, --readers and --writers must be >= 1")
    if args.warmup < 0 or args.records < 0:
        parser.error("--warmup and --records must be >= 0")
    if args.scale_compare and args.records <= SCALE_SMALL:
        parser.error(f"--scale-compare needs --records above {SCALE_SMALL:,}")
    if args.pg_compare and not (args.database or "").startswith("postgresql://"):
        parser.error("--pg-compare needs --database postgresql://...")
    if args.database:
        if args.durable_compare or args.scale_compare or args.policy_compare:
            parser.error("the compare modes use their own SQLite files")
        if args.database.startswith("sqlite:///"):
            # The CLI and the servers run in the temp dir: make a relative path absolute.
            args.database = sqlite_url(Path(args.database.removeprefix("sqlite:///")).resolve())
        elif not args.database.startswith("postgresql://"):
            parser.error("--database must be a postgresql:// or sqlite:/// URL")
        elif args.synchronous != "NORMAL":
            parser.error("--synchronous is SQLite's")
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            parser.error("--pin needs two CPUs and taskset")
        SERVER_PIN[:] = ["taskset", "-c", str(cpus[-1])]
        LOAD_PIN[:] = ["taskset", "-c", ",".join(map(str, cpus[:-1]))]
        if args.threads is None:
            # Two wrk threads on one CPU take turns, and a response that arrives while the
            # other thread runs waits for it: at the server's full load that wait is the
            # p99 (benchmarks/README.md, "Which event loop").
            args.threads = len(cpus) - 1
    if args.threads is None:
        args.threads = 2
    if not 1 <= args.threads <= args.connections:
        parser.error("--threads must be between 1 and --connections")
    args.wrk = shutil.which("wrk")
    if args.wrk is None:
        parser.error("wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="spm-bench-", dir=args.tmpdir) as tmp:
            report = benchmark(args, Path(tmp).resolve())
    except Abort as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmark interrupted; servers stopped", file=sys.stderr)
        return 130
    print()
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nJSON report: {args.json}")
    return 1 if report_errors(report) else 0


if __name__ == "__main__":
    sys.exit(main())
