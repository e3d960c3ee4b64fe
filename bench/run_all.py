"""Every benchmark behind one command, each beside its baseline in the same run, and one
summary table of figures and ratios at the end.

    .venv/bin/pip install -e '.[bench]'          # once: python-socketio (the peer), py-spy
    .venv/bin/python bench/run_all.py            # the full run: about 4 minutes on 2 cores
    .venv/bin/python bench/run_all.py --quick    # the CI smoke sizes: about 25 seconds

- danmaku fan-out (bench/danmaku.py) against python-socketio;
- flash-sale grabs (bench/seckill.py) and red-packet claims (bench/redpacket.py)
  against their raw Lua scripts driven one EVALSHA at a time;
- idle connections held by one process, memory per idle connection and a join storm
  (bench/connections.py) against python-socketio;
- live video: WHEP viewers a core holds (bench/video.py) against aiortc's MediaRelay.

Each benchmark prints its detailed table as it finishes; the summary follows, with
the machine it ran on.  One Redis serves the whole run (every server gets its own key
prefix).  The exit status is 1 if any row's check failed.  Loopback only.

Without the ``bench`` extra it says what to install in one line
and exits 2, before it starts anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

if TYPE_CHECKING:
    from harness import Bench, RedisServer, Row

ROOT = HERE.parent

#: The full sizes: each is the benchmark's own command line, as docs/performance.md gives it.
#: python-socketio gets 25 danmaku/s because it cannot sustain more at 2,000 viewers.
FULL_SIZES: dict[str, list[str]] = {
    "danmaku": ["--viewers", "2000", "--rate", "200", "--peer-rate", "25", "--duration", "10"],
    "seckill": ["--grabbers", "5000", "--duration", "10"],
    "redpacket": ["--claimers", "5000"],
    "connections": ["--hold", "19000", "--storm", "5000"],
    "video": ["--viewers-list", "1", "8", "32", "64", "--peer-viewers", "1", "4", "8", "--duration", "10"],
}

#: What the benchmarks import beyond liveserver's own dependencies: module -> (distribution, the
#: extra of pyproject.toml that brings it, or None when no extra does).
NEEDS: dict[str, tuple[str, str | None]] = {
    "socketio": ("python-socketio", "bench"),  # the peer server and its clients
    "psutil": ("psutil", "bench"),  # the servers' CPU and memory
}


def missing_requirements() -> str | None:
    """The one line to print when something the benchmarks import is not installed, else None."""
    missing = [need for module, need in NEEDS.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    extras = sorted({extra for _, extra in missing if extra})
    packages = [dist for dist, extra in missing if extra is None]
    in_extra = [f"the {extra} extra ({', '.join(d for d, e in missing if e == extra)} missing)" for extra in extras]
    return f"bench: needs {' and '.join(in_extra + packages)}: {pip_install(extras, packages)}"


def pip_install(extras: list[str], packages: list[str]) -> str:
    """The command that installs ``extras`` of this checkout and ``packages`` into this environment."""
    pip = Path(sys.executable).with_name("pip")
    command = [_shown(pip)] if pip.exists() else [sys.executable, "-m", "pip"]
    command.append("install")
    if extras:
        command += ["-e", f"{_shown(ROOT)}[{','.join(extras)}]"]
    return shlex.join(command + packages)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (``.venv/bin/pip``, ``.``)."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def benches() -> dict[str, tuple[Bench, list[str]]]:
    """Every benchmark with its full sizes (imported here: they need the bench extra)."""
    import connections
    import danmaku
    import redpacket
    import seckill
    import video

    modules = {"danmaku": danmaku, "seckill": seckill, "redpacket": redpacket, "connections": connections,
               "video": video}
    return {name: (modules[name].BENCH, sizes) for name, sizes in FULL_SIZES.items()}


def machine() -> list[str]:
    """What the figures were measured on, and how busy the machine was (other work is noise)."""
    import psutil

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
    from harness import Row, print_table

    args = bench.parse(argv)
    print(f"\n## {name}: bench/{name}.py {' '.join(argv)}", flush=True)
    try:
        results = bench.run(args, redis)
    except Exception as exc:
        traceback.print_exc()
        return [], [Row(name, "–", None, "–", None, True, problems=[f"{type(exc).__name__}: {exc}"])]
    print_table(bench.cols, results)
    return results, bench.rows(results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="every benchmark at its --quick size (CI smoke test)")
    p.add_argument("--only", nargs="+", choices=list(FULL_SIZES), help="run these benchmarks only")
    p.add_argument("--json", help="write the machine, the detailed results and the summary rows here")
    args = p.parse_args()
    if problem := missing_requirements():
        print(problem, file=sys.stderr)
        sys.exit(2)
    from harness import print_rows, redis_server

    report: dict = {"machine": machine(), "results": {}, "rows": []}
    rows: list[Row] = []
    with redis_server() as redis:
        for name, (bench, full) in benches().items():
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
