"""What importing the package and its client costs, against the imports they stand beside.

    .venv/bin/python benchmarks/imports.py [--repeat 40] [--json FILE]

Each import runs in a fresh interpreter (`python -c`), which times the import statement alone
(`time.perf_counter` around it, so the interpreter's own start-up, the same for every case, does
not dilute the ratio) and reports how many modules it loaded and whether SQLAlchemy was among
them.  Every round runs every case once, in alternating order (forwards, then backwards), so a
slow spell of the shared machine falls on subject and reference alike.  Medians, p90 and the
ratio of each subject's median to its reference's.  Not part of the package or the test suite;
see benchmarks/README.md, "Import time (issue 23)".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: (name, import statement, reference name or None, target ratio)
CASES: tuple[tuple[str, str, str | None, float | None], ...] = (
    (
        "starlette",
        "import starlette.applications, starlette.routing, starlette.responses",
        None,
        None,
    ),
    ("httpx", "import httpx", None, None),
    ("package", "import starlette_platform_metadata", "starlette", 1.5),
    # What a host pays in practice: every public name resolved (the app, the middleware, the
    # stores...), still without a database driver.
    ("package, every public name", "from starlette_platform_metadata import *", "starlette", 1.5),
    ("client", "import starlette_platform_metadata.client", "httpx", 1.3),
)

CHILD = """\
import sys, time
t = time.perf_counter()
{statement}
t = time.perf_counter() - t
print(t, len(sys.modules), any(m.split('.')[0] in ('sqlalchemy', 'databases', 'asyncpg')
      for m in sys.modules))
"""


@dataclass
class Sample:
    seconds: float
    modules: int
    drivers: bool


# Bytecode caches on, whatever the caller's environment says: an installed package has them
# (pip compiles on install), and without them each run compiles our sources again, where
# Starlette and httpx, from site-packages, are read compiled: the warm-up writes them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(statement: str) -> Sample:
    """One import in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(statement=statement)],
        check=True,
        capture_output=True,
        text=True,
        env=ENV,
    ).stdout.split()
    return Sample(float(out[0]), int(out[1]), out[2] == "True")


def run(repeat: int) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name, *_ in CASES}
    for name, statement, *_ in CASES:  # warm-up: bytecode caches, the page cache
        measure(statement)
    for round_ in range(repeat):
        order = CASES if round_ % 2 == 0 else tuple(reversed(CASES))
        for name, statement, *_ in order:
            samples[name].append(measure(statement))
    return samples


def p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def report(samples: dict[str, list[Sample]]) -> dict[str, Any]:
    medians = {name: statistics.median(s.seconds for s in runs) for name, runs in samples.items()}
    rows: dict[str, Any] = {}
    for name, statement, reference, target in CASES:
        runs = samples[name]
        ratio = medians[name] / medians[reference] if reference else None
        rows[name] = {
            "statement": statement,
            "median_ms": round(medians[name] * 1000, 1),
            "p90_ms": round(p90([s.seconds for s in runs]) * 1000, 1),
            "modules": statistics.median(s.modules for s in runs),
            "drivers_loaded": any(s.drivers for s in runs),
            "reference": reference,
            "ratio": None if ratio is None else round(ratio, 2),
            "target": target,
            "met": None if ratio is None or target is None else ratio <= target,
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40, help="rounds (every case once each)")
    parser.add_argument("--json", help="write the report, with every sample, to this file")
    args = parser.parse_args()
    load = os.getloadavg()
    samples = run(args.repeat)
    rows = report(samples)
    print(f"{args.repeat} rounds, Python {platform.python_version()}, load before {load[0]:.2f}")
    print(f"{'case':30} {'median':>8} {'p90':>8} {'modules':>8}  drivers  ratio (target)")
    for name, row in rows.items():
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f} vs {row['reference']}"
        if row["target"] is not None:
            ratio += f" (<= {row['target']}: {'met' if row['met'] else 'NOT met'})"
        print(
            f"{name:30} {row['median_ms']:6.1f}ms {row['p90_ms']:6.1f}ms {row['modules']:8.0f}"
            f"  {'yes' if row['drivers_loaded'] else 'no':7}  {ratio}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "repeat": args.repeat,
                    "python": platform.python_version(),
                    "loadavg_before": load,
                    "loadavg_after": os.getloadavg(),
                    "cases": rows,
                    "samples": {n: [vars(s) for s in runs] for n, runs in samples.items()},
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
