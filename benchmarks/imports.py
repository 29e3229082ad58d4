"""What importing the package and its client costs, against the imports they stand beside.

    .venv/bin/python benchmarks/imports.py [--repeat 40] [--before DIR] [--json FILE]

Each import runs in a fresh interpreter (`python -c`), which times the import statement alone
(`time.perf_counter` around it, so the interpreter's own start-up, the same for every case, does
not dilute the ratio) and reports how many modules it loaded and whether SQLAlchemy,
`databases` or asyncpg was among them.  Every round runs every case once, in alternating order
(forwards, then backwards), so a slow spell of the shared machine falls on subjects and
references alike.  Medians, p90, and the ratio of each subject's median to its reference's.

`--before DIR` adds the package's three cases once more, imported from another source tree of
it (`DIR/starlette_platform_metadata`, e.g. `git archive main starlette_platform_metadata |
tar -x -C DIR`), in the same rounds: before and after, measured side by side.

Not part of the package or the test suite; see benchmarks/README.md, "Import time (issue 23)".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

CHILD = """\
import sys, time
t = time.perf_counter()
{statement}
t = time.perf_counter() - t
print(t, len(sys.modules), any(m.split('.')[0] in ('sqlalchemy', 'databases', 'asyncpg')
      for m in sys.modules))
"""

# Bytecode caches on, whatever the caller's environment says: an installed package has them
# (pip compiles on install), and without them each run compiles our sources again, where
# Starlette and httpx, from site-packages, are read compiled: the warm-up writes them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class Sample:
    seconds: float
    modules: int
    drivers: bool


@dataclass
class Case:
    name: str
    statement: str
    reference: str | None = None
    target: float | None = None
    #: The directory the child starts in: `python -c` imports from it first.
    cwd: str | None = None
    samples: list[Sample] = field(default_factory=list)


def cases(before: str | None) -> list[Case]:
    starlette = "import starlette.applications, starlette.routing, starlette.responses"
    subjects = [
        ("package", "import starlette_platform_metadata", "starlette", 1.5),
        # What a host pays in practice: every public name resolved (the app, the middleware,
        # both stores...), still without a database driver.
        ("every public name", "from starlette_platform_metadata import *", "starlette", 1.5),
        ("client", "import starlette_platform_metadata.client", "httpx", 1.3),
    ]
    found = [Case("starlette", starlette), Case("httpx", "import httpx")]
    found += [Case(*subject) for subject in subjects]
    if before is not None:
        found += [Case(f"{name} (before)", s, r, t, before) for name, s, r, t in subjects]
    return found


def measure(case: Case) -> Sample:
    """One import in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(statement=case.statement)],
        check=True,
        capture_output=True,
        text=True,
        env=ENV,
        cwd=case.cwd,
    ).stdout.split()
    return Sample(float(out[0]), int(out[1]), out[2] == "True")


def run(all_cases: list[Case], repeat: int) -> None:
    for case in all_cases:  # warm-up: bytecode caches, the page cache
        measure(case)
    for round_ in range(repeat):
        for case in all_cases if round_ % 2 == 0 else reversed(all_cases):
            case.samples.append(measure(case))


def median(case: Case) -> float:
    return statistics.median(s.seconds for s in case.samples)


def report(all_cases: list[Case]) -> dict[str, dict[str, Any]]:
    by_name = {case.name: case for case in all_cases}
    rows = {}
    for case in all_cases:
        seconds = [s.seconds for s in case.samples]
        ratio = median(case) / median(by_name[case.reference]) if case.reference else None
        rows[case.name] = {
            "statement": case.statement,
            "from": case.cwd or os.getcwd(),
            "median_ms": round(median(case) * 1000, 1),
            "p90_ms": round(statistics.quantiles(seconds, n=10)[-1] * 1000, 1),
            "modules": statistics.median(s.modules for s in case.samples),
            "drivers_loaded": any(s.drivers for s in case.samples),
            "reference": case.reference,
            "ratio": None if ratio is None else round(ratio, 2),
            "target": case.target,
            "met": None if ratio is None or case.target is None else ratio <= case.target,
        }
    return rows


def show(rows: dict[str, dict[str, Any]]) -> None:
    print(f"{'case':28} {'median':>8} {'p90':>8} {'modules':>8}  drivers  ratio (target)")
    for name, row in rows.items():
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f} vs {row['reference']}"
        if row["target"] is not None:
            ratio += f" (<= {row['target']}: {'met' if row['met'] else 'NOT met'})"
        print(
            f"{name:28} {row['median_ms']:6.1f}ms {row['p90_ms']:6.1f}ms {row['modules']:8.0f}"
            f"  {'yes' if row['drivers_loaded'] else 'no':7}  {ratio}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40, help="rounds (every case once each)")
    parser.add_argument("--before", help="also import the package from this source tree")
    parser.add_argument("--json", help="write the report, with every sample, to this file")
    args = parser.parse_args()
    before = None if args.before is None else os.path.abspath(args.before)
    all_cases = cases(before)
    load = os.getloadavg()
    run(all_cases, args.repeat)
    rows = report(all_cases)
    print(f"{args.repeat} rounds, Python {platform.python_version()}, load before {load[0]:.2f}")
    show(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "repeat": args.repeat,
                    "python": platform.python_version(),
                    "loadavg_before": load,
                    "loadavg_after": os.getloadavg(),
                    "cases": rows,
                    "samples": {c.name: [vars(s) for s in c.samples] for c in all_cases},
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
