"""Every benchmark behind one command, each beside its baseline in the same run, and one
summary table of figures and ratios at the end.

    .venv/bin/python bench/run_all.py            # the full run: about 4 minutes on 2 cores
    .venv/bin/python bench/run_all.py --quick    # the CI smoke sizes: about 25 seconds

- danmaku fan-out (bench/danmaku.py) against python-socketio;
- flash-sale grabs (bench/seckill.py) and red-packet claims (bench/redpacket.py)
  against their raw Lua scripts driven one EVALSHA at a time;
- idle connections held by one process, memory per idle connection and a join storm
  (bench/connections.py) against python-socketio.

Each benchmark prints its detailed table as it finishes; the summary follows, with
the machine it ran on.  One Redis serves the whole run (every server gets its own key
prefix).  The exit status is 1 if any row's check failed.  Loopback only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import connections  # noqa: E402
import danmaku  # noqa: E402
import psutil  # noqa: E402
import redpacket  # noqa: E402
import seckill  # noqa: E402
from harness import ROOT, Bench, RedisServer, Row, print_rows, print_table, redis_server  # noqa: E402

# The full sizes: each is the benchmark's own command line, as docs/performance.md gives it.
# python-socketio gets 25 danmaku/s because it cannot sustain more at 2,000 viewers.
BENCHES: dict[str, tuple[Bench, list[str]]] = {
    "danmaku": (danmaku.BENCH, ["--viewers", "2000", "--rate", "200", "--peer-rate", "25", "--duration", "10"]),
    "seckill": (seckill.BENCH, ["--grabbers", "5000", "--duration", "10"]),
    "redpacket": (redpacket.BENCH, ["--claimers", "5000"]),
    "connections": (connections.BENCH, ["--hold", "19000", "--storm", "5000"]),
}


def machine() -> list[str]:
    """What the figures were measured on, and how busy the machine was (other work is noise)."""
    from liveserver.embedded import find_redis_server

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    redis_version = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True).stdout.split()
    return [
        f"cpus: {os.cpu_count()} × {cpu}; memory {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"Linux {platform.release()}",
        f"python {platform.python_version()}; redis-server {redis_version[2].removeprefix('v=')}",
        f"liveserver: {_source()}",
        f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


def _source() -> str:
    """Which liveserver tree ran: the package's path, and its commit when it is this checkout."""
    import liveserver

    tree = Path(liveserver.__file__).resolve().parent
    if tree.parent != ROOT:
        return str(tree)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "liveserver"], cwd=ROOT, capture_output=True,
                           text=True).stdout
    return f"{tree} at {head.strip()}" + (" with uncommitted changes" if dirty.strip() else "")


def _measure(name: str, bench: Bench, argv: list[str], redis: RedisServer) -> tuple[list[dict], list[Row]]:
    """One benchmark's results and summary rows; a benchmark that fails becomes a failed row,
    so that the others still report."""
    args = bench.parse(argv)
    print(f"\n## {name}: bench/{name}.py {' '.join(argv)}", flush=True)
    try:
        results = bench.run(args, redis)
    except Exception as exc:  # noqa: BLE001 - reported in the table, with the traceback on stderr
        traceback.print_exc()
        return [], [Row(name, "–", None, "–", None, True, problems=[f"{type(exc).__name__}: {exc}"])]
    print_table(bench.cols, results)
    return results, bench.rows(results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="every benchmark at its --quick size (CI smoke test)")
    p.add_argument("--only", nargs="+", choices=list(BENCHES), help="run these benchmarks only")
    p.add_argument("--json", help="write the machine, the detailed results and the summary rows here")
    args = p.parse_args()
    report: dict = {"machine": machine(), "results": {}, "rows": []}
    rows: list[Row] = []
    with redis_server() as redis:
        for name, (bench, full) in BENCHES.items():
            if args.only and name not in args.only:
                continue
            results, bench_rows = _measure(name, bench, ["--quick"] if args.quick else full, redis)
            report["results"][name] = results
            rows += bench_rows
    print(f"\n## Summary{' (--quick)' if args.quick else ''}\n")
    for line in [*report["machine"], f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"]:
        print(f"- {line}")
    print()
    print_rows(rows)
    if args.json:
        report["rows"] = [{**dataclasses.asdict(r), "ratio": r.ratio} for r in rows]
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if any(r.problems for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
