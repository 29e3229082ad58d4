"""Throughput of the example host against a bare Starlette baseline, measured in the same run.

    /tmp/venv/bin/python benchmarks/run.py [--duration 10] [--rounds 3] [--json FILE]
                                           [--database postgresql://...]

Both apps are served by uvicorn (one worker, httptools, uvloop, access log off) on 127.0.0.1
and loaded by wrk (2 threads, 64 connections).  Each round runs every scenario against both
apps, alternating which goes first; the report gives, per scenario, the median req/s of each,
the ratio of the medians, and the error counts (which must be zero).  See benchmarks/README.md.

Not part of the package or the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
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

HERE = Path(__file__).resolve().parent
PATH = "/api/core/users/platform-metadata/"
PLATFORM = "acme-corp"
MEMBER = "john_doe"
# Keys a PATCH sets, one per request, in rotation: the document stays small and of constant size.
PATCH_KEYS = 8
# The document both apps hold for every user before the load: realistic, small, and containing
# the rotating keys so that GET answers the same bytes before and after PATCH runs.
SEED: dict[str, Any] = {
    "theme": "dark",
    "language": "en",
    "onboarding": {"completed": True, "step": 5},
    **{f"k{i}": 0 for i in range(PATCH_KEYS)},
}
TARGETS = {"get": 0.60, "patch_one_user": 0.40, "patch_many_users": 0.40}
TITLES = {
    "get": "GET (john_doe)",
    "patch_one_user": "PATCH 1 user",
    "patch_many_users": "PATCH {users} users",
}
SCENARIOS = tuple(TITLES)
STARTUP_TIMEOUT = 30.0
CLI_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class Abort(Exception):
    """The benchmark cannot go on; the message says why."""


# --------------------------------------------------------------------------- wrk scripts

_LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
    math.floor(latency:percentile(99)), math.floor(latency.max)))
end
"""


def lua_get(token: str) -> str:
    # No request() function: wrk sends one prepared request, its fastest path.
    return f'wrk.method = "GET"\nwrk.headers["Authorization"] = "Token {token}"\n' + _LUA_DONE


def lua_patch(tokens: Sequence[str], threads: int) -> str:
    """PATCHes setting one key each; the keys rotate over PATCH_KEYS names.

    The tokens are split between wrk's threads (token i goes to thread i % threads).  Within a
    thread the user rotates with every request, so with as many tokens as connections the
    requests in flight at any moment (the last `connections / threads` issued) are all for
    different users: no two concurrent writes to the same row.
    """
    table = ", ".join(f'"Token {token}"' for token in tokens)
    return (
        f"local tokens = {{{table}}}\n"
        f"local threads = {threads}\n"
        f"local nkeys = {PATCH_KEYS}\n"
        r"""
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

local mine = {}
local counter = 0
function init(args)
  for i, token in ipairs(tokens) do
    if (i - 1) % threads == tid then
      table.insert(mine, token)
    end
  end
  if #mine == 0 then
    mine = tokens
  end
  wrk.method = "PATCH"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local n = #mine
  local user = counter % n
  local key = math.floor(counter / n) % nkeys
  wrk.headers["Authorization"] = mine[user + 1]
  local body = '{"metadata":{"k' .. key .. '":' .. (counter % 100) .. '}}'
  return wrk.format(nil, nil, nil, body)
end
""" + _LUA_DONE
    )


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


@dataclass
class Run:
    scenario: str
    app: str  # "baseline" or "subject"
    round: int
    result: WrkResult
    warmup: WrkResult | None
    # PATCH runs: the growth of the written records' versions (ETags) during the measured run.
    writes_applied: int | None = None
    # Requests in flight when wrk stops may land without wrk counting them: one per connection.
    in_flight: int = 0

    @property
    def write_check_failed(self) -> bool:
        """Fewer writes landed than wrk counted successful PATCHes, or implausibly many more."""
        if self.writes_applied is None:
            return False
        ok = self.result.requests - self.result.status
        return not ok <= self.writes_applied <= self.result.requests + self.in_flight

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "app": self.app,
            "round": self.round,
            "rps": round(self.result.rps, 1),
            "non_2xx": self.result.status,
            "socket_errors": self.result.socket_errors,
            "writes_applied": self.writes_applied,
            "write_check_failed": self.write_check_failed,
            **asdict(self.result),
            "warmup": None if self.warmup is None else asdict(self.warmup),
        }


@dataclass
class Summary:
    scenario: str
    title: str
    baseline_rps: list[float] = field(default_factory=list)
    subject_rps: list[float] = field(default_factory=list)
    baseline_p50_ms: list[float] = field(default_factory=list)
    subject_p50_ms: list[float] = field(default_factory=list)
    baseline_errors: int = 0
    subject_errors: int = 0
    write_check_failures: int = 0
    warmup_errors: int = 0

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline_rps)

    @property
    def subject_median(self) -> float:
        return statistics.median(self.subject_rps)

    @property
    def ratio(self) -> float:
        return self.subject_median / self.baseline_median if self.baseline_median else 0.0

    @property
    def target(self) -> float:
        return TARGETS[self.scenario]

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "baseline_median_rps": round(self.baseline_median, 1),
            "subject_median_rps": round(self.subject_median, 1),
            "ratio_of_medians": round(self.ratio, 4),
            "target_ratio": self.target,
            "meets_target": self.ratio >= self.target,
            "baseline_rps": [round(x, 1) for x in self.baseline_rps],
            "subject_rps": [round(x, 1) for x in self.subject_rps],
            "baseline_median_p50_ms": round(statistics.median(self.baseline_p50_ms), 2),
            "subject_median_p50_ms": round(statistics.median(self.subject_p50_ms), 2),
            "baseline_errors": self.baseline_errors,
            "subject_errors": self.subject_errors,
            "warmup_errors": self.warmup_errors,
            "write_check_failures": self.write_check_failures,
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
        self.port = int(command[command.index("--port") + 1])
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

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (uvicorn has no children with one worker, but be sure).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT)
        self._log.close()


def uvicorn_command(python: str, target: list[str], port: int) -> list[str]:
    return [
        python, "-m", "uvicorn", *target,
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def request(
    port: int, method: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Token {token}"}
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


def run_wrk(args: argparse.Namespace, port: int, script: Path, seconds: int) -> WrkResult:
    command = [
        args.wrk,
        "-t", str(args.threads),
        "-c", str(args.connections),
        "-d", f"{seconds}s",
        "--timeout", f"{args.wrk_timeout}s",
        "-s", str(script),
        f"http://127.0.0.1:{port}{PATH}?platform_key={PLATFORM}",
    ]  # fmt: skip
    limit = seconds + 60
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        raise Abort(f"wrk did not finish within {limit:.0f} s") from None
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return WrkResult(**json.loads(line.removeprefix("BENCH_JSON ")))
    raise Abort(f"wrk exited {done.returncode} without a result:\n{done.stdout}\n{done.stderr}")


# --------------------------------------------------------------------------- the benchmark


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def versions(python: str) -> dict[str, str]:
    code = (
        "import json, sys, starlette, uvicorn, httptools, uvloop\n"
        "print(json.dumps({'python': sys.version.split()[0], 'starlette': starlette.__version__,"
        " 'uvicorn': uvicorn.__version__, 'httptools': httptools.__version__,"
        " 'uvloop': uvloop.__version__}))"
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


@contextlib.contextmanager
def servers_stopped(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def benchmark(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    python = args.python
    info = versions(python)
    database = args.database or f"sqlite:///{tmp / 'bench.db'}"
    shown_database = "fresh SQLite file in a temp dir" if not args.database else "--database"

    print(f"Preparing the subject's database ({shown_database}) ...", flush=True)
    started = time.monotonic()
    run_cli(python, ["add-platform", PLATFORM], database, tmp)
    member = add_user(python, MEMBER, database, tmp)
    many = [add_user(python, f"bench_user_{i:02d}", database, tmp) for i in range(args.users)]
    print(f"  {args.users + 1} users created in {time.monotonic() - started:.1f} s", flush=True)

    scripts = {
        "get": tmp / "get.lua",
        "patch_one_user": tmp / "patch_one_user.lua",
        "patch_many_users": tmp / "patch_many_users.lua",
    }
    scripts["get"].write_text(lua_get(member))
    scripts["patch_one_user"].write_text(lua_patch([member], args.threads))
    scripts["patch_many_users"].write_text(lua_patch(many, args.threads))

    servers: list[Server] = []
    with servers_stopped(servers):
        baseline = Server(
            "baseline",
            uvicorn_command(python, ["bare_app:app", "--app-dir", str(HERE)], free_port()),
            child_env(),
            tmp,
        )
        servers.append(baseline)
        subject = Server(
            "subject",
            uvicorn_command(
                python, ["example_host.app:create_app_from_env", "--factory"], free_port()
            ),
            child_env({"DATABASE_URL": database}),
            tmp,
        )
        servers.append(subject)
        apps = {"baseline": baseline, "subject": subject}
        for server in apps.values():
            server.wait_ready(member)

        # The same document for every user on both apps; then one checked answer per method.
        body_bytes: dict[str, dict[str, int]] = {}
        for token in [member, *many]:
            status, raw, _ = request(subject.port, "PUT", token, {"metadata": SEED})
            if status != 200:
                raise Abort(f"subject: seeding PUT answered {status}: {raw[:300]!r}")
            status, raw, _ = request(baseline.port, "PATCH", token, {"metadata": SEED})
            if status != 200:
                raise Abort(f"baseline: seeding PATCH answered {status}: {raw[:300]!r}")
        for name, server in apps.items():
            body_bytes[name] = {
                "get": check_answer(name, server.port, member, "GET", None),
                "patch": check_answer(name, server.port, member, "PATCH", {"metadata": {"k0": 0}}),
            }
        print(
            "  GET body bytes: baseline {} / subject {}".format(
                body_bytes["baseline"]["get"], body_bytes["subject"]["get"]
            ),
            flush=True,
        )

        total = args.rounds * len(SCENARIOS) * 2 * (args.duration + args.warmup)
        print(
            f"Load: wrk -t{args.threads} -c{args.connections}, {args.warmup:g} s warm-up + "
            f"{args.duration:g} s per run, {args.rounds} rounds x {len(SCENARIOS)} scenarios "
            f"x 2 apps (~{total / 60:.1f} min)",
            flush=True,
        )
        runs: list[Run] = []
        load_before = os.getloadavg()
        for round_no in range(1, args.rounds + 1):
            # Alternate which app goes first, so that drift on a shared machine cancels out.
            order = ["baseline", "subject"] if round_no % 2 else ["subject", "baseline"]
            for scenario in SCENARIOS:
                for name in order:
                    server = apps[name]
                    warmup = None
                    if args.warmup > 0:
                        warmup = run_wrk(args, server.port, scripts[scenario], args.warmup)
                    writers: list[str] = []
                    if scenario == "patch_one_user":
                        writers = [member]
                    elif scenario == "patch_many_users":
                        writers = many
                    before = version_sum(server.port, writers)
                    result = run_wrk(args, server.port, scripts[scenario], args.duration)
                    if server.process.poll() is not None:
                        raise Abort(f"{name} died under load:\n{server.log_tail()}")
                    run = Run(scenario, name, round_no, result, warmup, in_flight=args.connections)
                    if writers:
                        run.writes_applied = version_sum(server.port, writers) - before
                    runs.append(run)
                    flag = "" if result.errors == 0 else f"  !! {result.errors} ERRORS"
                    if run.write_check_failed:
                        flag += f"  !! {run.writes_applied} WRITES LANDED"
                    print(
                        f"  round {round_no}  {scenario:<17} {name:<8} "
                        f"{result.rps:>9.1f} req/s  p50 {result.p50_us / 1000:6.2f} ms{flag}",
                        flush=True,
                    )
        load_after = os.getloadavg()
        # A final check that the subject still answers correctly after the load.
        check_answer("subject", subject.port, member, "GET", None)
        subject_log = subject.log_tail(50)
        baseline_log = baseline.log_tail(50)

    summaries: dict[str, Summary] = {}
    for scenario in SCENARIOS:
        summaries[scenario] = Summary(scenario, TITLES[scenario].format(users=args.users))
    for run in runs:
        summary = summaries[run.scenario]
        if run.app == "baseline":
            summary.baseline_rps.append(run.result.rps)
            summary.baseline_p50_ms.append(run.result.p50_us / 1000)
            summary.baseline_errors += run.result.errors
        else:
            summary.subject_rps.append(run.result.rps)
            summary.subject_p50_ms.append(run.result.p50_us / 1000)
            summary.subject_errors += run.result.errors
        if run.warmup is not None:
            summary.warmup_errors += run.warmup.errors
        summary.write_check_failures += run.write_check_failed

    return {
        "command": [sys.executable, *sys.argv],
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "versions": info,
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "threads": args.threads,
            "connections": args.connections,
            "users_many": args.users,
            "wrk_timeout_s": args.wrk_timeout,
            "database": "sqlite (temp file)" if not args.database else _redact(args.database),
            "patch_keys": PATCH_KEYS,
        },
        "body_bytes": body_bytes,
        "summary": [summaries[s].as_json() for s in SCENARIOS],
        "runs": [run.as_json() for run in runs],
        "server_log_tail": {"baseline": baseline_log, "subject": subject_log},
    }


def _redact(url: str) -> str:
    """The database URL without its password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def table(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        (
            f"wrk -t{s['threads']} -c{s['connections']} -d{s['duration_s']:g}s, "
            f"{s['rounds']} rounds, uvicorn 1 worker; subject database: {s['database']}"
        ),
        "",
        (
            f"{'scenario':<16} {'baseline req/s':>14} {'subject req/s':>13} {'ratio':>6} "
            f"{'target':>7} {'':<6} {'p50 ms b/s':>12} {'errors b/s':>10}"
        ),
    ]
    for row in report["summary"]:
        verdict = "ok" if row["meets_target"] else "BELOW"
        p50 = f"{row['baseline_median_p50_ms']:.1f}/{row['subject_median_p50_ms']:.1f}"
        errors = f"{row['baseline_errors']}/{row['subject_errors']}"
        lines.append(
            f"{row['title']:<16} {row['baseline_median_rps']:>14.1f} "
            f"{row['subject_median_rps']:>13.1f} {row['ratio_of_medians']:>6.3f} "
            f"{'>= ' + format(row['target_ratio'], '.2f'):>7} {verdict:<6} {p50:>12} {errors:>10}"
        )
    lines.append("")
    lines.append("req/s per round (baseline | subject):")
    for row in report["summary"]:
        b = " ".join(f"{x:.0f}" for x in row["baseline_rps"])
        j = " ".join(f"{x:.0f}" for x in row["subject_rps"])
        lines.append(f"  {row['title']:<16} {b} | {j}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Example host vs. a bare Starlette endpoint, in the same run."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default: 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default: 64)")
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help="users of the many-users PATCH scenario (default: as many as connections)",
    )
    parser.add_argument(
        "--wrk-timeout", type=int, default=5, help="wrk's socket timeout, seconds (default: 5)"
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="the subject's database instead of a fresh SQLite file, e.g. postgresql://...; "
        "the benchmark adds platform acme-corp and its users and overwrites their metadata",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the report here")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter for the servers and the CLI"
    )
    args = parser.parse_args(argv)
    if args.users is None:
        args.users = args.connections
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0 or args.users < 1:
        parser.error("--rounds and --users must be >= 1, --duration >= 1, --warmup >= 0")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    if args.database and not args.database.startswith(("postgresql://", "sqlite:///")):
        parser.error("--database must be a postgresql:// or sqlite:/// URL")
    args.wrk = shutil.which("wrk")
    if args.wrk is None:
        parser.error("wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="spm-bench-") as tmp:
            report = benchmark(args, Path(tmp))
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
    failed = [
        row
        for row in report["summary"]
        if row["baseline_errors"] or row["subject_errors"] or row["write_check_failures"]
    ]
    warm = [row for row in report["summary"] if row["warmup_errors"]]
    if failed:
        print(
            "\n"
            + "!" * 78
            + "\n!! ERRORS UNDER LOAD (non-2xx or socket errors): "
            + ", ".join(
                f"{row['title']}: baseline {row['baseline_errors']}, "
                f"subject {row['subject_errors']}, "
                f"runs whose writes did not all land {row['write_check_failures']}"
                for row in failed
            )
            + "\n!! These numbers are not valid; see the runs in the JSON report.\n"
            + "!" * 78,
            file=sys.stderr,
        )
        return 1
    if warm:
        print(
            "\n!! warning: errors during warm-up: "
            + ", ".join(f"{row['title']}: {row['warmup_errors']}" for row in warm),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
