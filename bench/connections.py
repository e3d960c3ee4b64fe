"""Connections: how many idle viewers one server process holds and what each costs it in
memory, and a join storm; liveserver beside the python-socketio peer in the same run.

    .venv/bin/python bench/connections.py --hold 19000 --storm 5000

- **hold**: ``--hold`` viewers join one room, ``--concurrency`` at a time, then sit
  idle for ``--settle`` seconds.  The server process's RSS (psutil) before the first
  join and after the pause, divided by the viewers held (still open after the pause),
  is its memory per idle connection.  The server's CPU over the ramp gives CPU-µs per
  join.
- **storm**: ``--storm`` viewers connect and join at the same moment (no limit on
  joins in flight); reported: the time until the last is in the room, p50/p99 join
  latency (TCP connect to ``welcome``), failed joins, and for liveserver the room's
  online count from ``GET /api/v1/rooms/{room}``, which must reach the storm's size.

A liveserver join is the WebSocket upgrade, ``hello`` with a JWT, and the welcome
after several Redis calls (room, presence, danmaku state, drops).  A peer join is the
upgrade, Engine.IO's open and Socket.IO's connect, whose handler enters the room in
process memory: the same steps a Socket.IO chat room takes, with no store behind it.

Every socket is one open file on each side, so the server's and the client's
``ulimit -n`` bound ``--hold`` (the harness raises both soft limits to the hard
limit; what is left, minus a margin, caps the figure and is reported).  Server on
core 0; Redis and the client on core 1.  Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOM, Bench, RedisServer, Row, bench_parser, done, fresh_prefix, liveserver
from harness import make_room, pct, raise_nofile, ready, run_role, socketio_peer
from wsload import WsConn, close_all, join, join_many, join_socketio, token

# Files a server needs beside its viewers' sockets (Redis pool, pub/sub, listener, epoll, ...).
FD_MARGIN = 500
ONLINE_TIMEOUT_S = 10.0

Server = Callable[[], contextlib.AbstractContextManager[tuple[int, subprocess.Popen]]]


# ----------------------------------------------------------------------------- the client roles


def _opener(args: argparse.Namespace, user_prefix: str) -> Callable[[int], Awaitable[WsConn]]:
    if args.target == "socketio":
        return lambda i: join_socketio(args.port)
    return lambda i: join(args.port, f"{user_prefix}{i}")


async def _online(port: int) -> int:
    """The room's online count as the server reports it to any viewer."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token('bench-observer')}"}
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/api/v1/rooms/{ROOM}", headers=headers) as resp:
        resp.raise_for_status()
        return int((await resp.json())["online"])


async def _await_online(port: int, expected: int) -> tuple[int, float]:
    """Poll the online count until it is ``expected`` (presence is eventually exact, not at
    once) or ``ONLINE_TIMEOUT_S`` passes; returns the last count and the seconds it took."""
    t0 = time.monotonic()
    while (online := await _online(port)) != expected and time.monotonic() - t0 < ONLINE_TIMEOUT_S:
        await asyncio.sleep(0.1)
    return online, round(time.monotonic() - t0, 2)


async def hold_role(args: argparse.Namespace) -> None:
    ready()  # the driver reads the idle server's RSS now
    await asyncio.sleep(0.2)
    joins = await join_many(args.hold, _opener(args, "h"), args.concurrency)
    await asyncio.sleep(args.settle)
    held = sum(1 for c in joins.conns if not c.closed.done())
    online = await _online(args.port) if args.target == "liveserver" else None
    done({"target": args.target, "test": "hold", "asked": args.hold, "held": held, "errors": dict(joins.errors),
          "join_s": round(joins.seconds, 2), "joins_per_s": round(len(joins.conns) / joins.seconds),
          "concurrency": args.concurrency, "online": online})  # ... and the RSS with every viewer held
    await close_all(joins.conns, 0.5)


def _listen_overflows() -> int | None:
    """Connections the kernel dropped because a listen queue was full (``TcpExt ListenOverflows``
    in /proc/net/netstat, machine-wide).  A storm larger than the server's backlog (4,096) that
    the server does not accept fast enough overflows it; TCP retries those, a second or more
    later, and they become the storm's stragglers."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            if names.startswith("TcpExt:"):
                return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return None


async def storm_role(args: argparse.Namespace) -> None:
    opener = _opener(args, "j")
    for i in range(args.storm):  # the client's own work before the storm, not in its latencies
        token(f"j{i}")
    overflows_before = _listen_overflows()
    ready()
    await asyncio.sleep(0.2)
    joins = await join_many(args.storm, opener, None)
    overflows_after = _listen_overflows()
    online, online_after_s = (await _await_online(args.port, len(joins.conns)) if args.target == "liveserver"
                              else (None, None))
    done({"target": args.target, "test": "storm", "asked": args.storm, "welcomed": len(joins.conns),
          "errors": dict(joins.errors), "seconds": round(joins.seconds, 2),
          "p50_ms": pct(joins.latencies_ms, 0.5), "p99_ms": pct(joins.latencies_ms, 0.99),
          "max_ms": pct(joins.latencies_ms, 1.0), "online": online, "online_after_s": online_after_s,
          "listen_overflows": None if overflows_before is None or overflows_after is None
          else overflows_after - overflows_before})
    await close_all(joins.conns, 0.5)


# ----------------------------------------------------------------------------- the driver


def _fd_limit(pid: int) -> int:
    """The open-files limit both ends live under: the server's (as it runs) and this process's
    (which the client role inherits)."""
    return min(psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)[0], raise_nofile())


def _hold(target: str, server: Server, args: argparse.Namespace) -> dict:
    with server() as (port, proc):
        limit = _fd_limit(proc.pid)
        n = min(args.hold, limit - FD_MARGIN)
        r = run_role(__file__, ["--role", "hold", "--target", target, "--port", str(port), "--hold", str(n),
                                "--concurrency", str(args.concurrency), "--settle", str(args.settle)], proc.pid)
    cpu = r.pop("cpu_s")
    grown_kib = (r["rss_done_mb"] - r["rss_ready_mb"]) * 1024
    return {**r, "requested": args.hold, "fd_limit": limit,
            "kib_per_conn": round(grown_kib / r["held"], 1) if r["held"] else None,
            "cpu_us_per_join": round(cpu / r["held"] * 1e6) if r["held"] else None}


def _storm(target: str, server: Server, args: argparse.Namespace) -> dict:
    with server() as (port, proc):
        r = run_role(__file__, ["--role", "storm", "--target", target, "--port", str(port), "--storm",
                                str(args.storm)], proc.pid, args.profile if target == "liveserver" else None, 10)
    cpu = r.pop("cpu_s")
    return {**r, "cpu_us_per_join": round(cpu / r["welcomed"] * 1e6) if r["welcomed"] else None}


def run(args: argparse.Namespace, redis: RedisServer) -> list[dict]:
    """Hold, then storm, each on a fresh server: liveserver's first, then the peer's."""

    @contextlib.contextmanager
    def fresh_liveserver() -> Iterator[tuple[int, subprocess.Popen]]:
        prefix = fresh_prefix("connections")
        make_room(redis.url, prefix)
        with liveserver(redis.url, prefix) as served:
            yield served

    targets: list[tuple[str, Server]] = [("liveserver", fresh_liveserver)]
    if args.peer == "socketio":
        targets.append(("socketio", socketio_peer))
    return [measure(target, server, args) for measure in (_hold, _storm) for target, server in targets]


# ----------------------------------------------------------------------------- the summary


def _problems(r: dict, want: int) -> list[str]:
    """What a hold or storm result got wrong, by the target's name."""
    out = [f"{r['target']}: {n} joins failed with {kind}" for kind, n in r["errors"].items()]
    got = r["held"] if r["test"] == "hold" else r["welcomed"]
    if got != want:
        out.append(f"{r['target']}: {got:,} of {want:,} in the room")
    if r["online"] is not None and r["online"] != got:
        out.append(f"{r['target']}: the server reports {r['online']:,} online, not {got:,}")
    return out


def _hold_rows(ls: dict, peer: dict) -> list[Row]:
    cap = (f"{ls['requested']:,} asked for, {ls['asked']:,} under ulimit -n {ls['fd_limit']:,}"
           if ls["asked"] < ls["requested"] else f"{ls['asked']:,} asked for (ulimit -n {ls['fd_limit']:,})")
    rss = "; ".join(f"{r['target']} RSS {r['rss_ready_mb']:,.0f} → {r['rss_done_mb']:,.0f} MB"
                    for r in (ls, peer) if r)
    rates = "; ".join(f"{r['target']} {r['joins_per_s']:,} joins/s, {r['cpu_us_per_join']:,} CPU-µs per join"
                      for r in (ls, peer) if r)
    return [
        Row("idle connections", "viewers held by one process", ls["held"], "python-socketio" if peer else "–",
            peer.get("held"), higher_is_better=True,
            notes=f"{cap}; joined {ls['concurrency']} at a time: {rates}; liveserver reports {ls['online']:,} online",
            problems=_problems(ls, ls["asked"]) + (_problems(peer, peer["asked"]) if peer else [])),
        Row("idle connections", "server memory per idle viewer, KiB", ls["kib_per_conn"],
            "python-socketio" if peer else "–", peer.get("kib_per_conn"), higher_is_better=False, notes=rss),
    ]


def _storm_rows(ls: dict, peer: dict) -> list[Row]:
    def latencies(r: dict) -> str:
        return (f"{r['target']} p50 {r['p50_ms']:,.0f} ms, max {r['max_ms']:,.0f} ms, "
                f"{r['cpu_us_per_join']:,} CPU-µs per join, listen queue overflowed {r['listen_overflows']} times")

    both = "; ".join(latencies(r) for r in (ls, peer) if r)
    online = f"liveserver's online count reached {ls['online']:,} within {ls['online_after_s']} s of the last welcome"
    name = f"join storm, {ls['asked']:,} at once"
    return [
        Row(name, "seconds until the last viewer is in the room", ls["seconds"], "python-socketio" if peer else "–",
            peer.get("seconds"), higher_is_better=False, notes=online,
            problems=_problems(ls, ls["asked"]) + (_problems(peer, peer["asked"]) if peer else [])),
        Row(name, "p99 join latency, ms", ls["p99_ms"], "python-socketio" if peer else "–", peer.get("p99_ms"),
            higher_is_better=False, notes=both),
    ]


def rows(results: list[dict]) -> list[Row]:
    def of(test: str, target: str) -> dict:
        return next((r for r in results if r["test"] == test and r["target"] == target), {})

    return [*_hold_rows(of("hold", "liveserver"), of("hold", "socketio")),
            *_storm_rows(of("storm", "liveserver"), of("storm", "socketio"))]


def _parser() -> argparse.ArgumentParser:
    p = bench_parser(__doc__, ["hold", "storm"], "300 held, a storm of 300 (CI smoke test)")
    p.add_argument("--hold", type=int, default=19_000, help="idle viewers to hold (capped by ulimit -n)")
    p.add_argument("--concurrency", type=int, default=200, help="joins in flight while the held viewers join")
    p.add_argument("--settle", type=float, default=3, help="seconds idle before the held viewers are counted")
    p.add_argument("--storm", type=int, default=5000, help="viewers joining at the same moment")
    p.add_argument("--peer", choices=["socketio", "none"], default="socketio")
    p.add_argument("--profile", help="record the liveserver process through the storm with py-spy (speedscope JSON)")
    return p


BENCH = Bench(
    parser=_parser(), quick={"hold": 300, "storm": 300, "settle": 0.5},
    roles={"hold": hold_role, "storm": storm_role}, run=run,
    cols=["target", "test", "asked", "held", "welcomed", "errors", "seconds", "joins_per_s", "p50_ms", "p99_ms",
          "max_ms", "online", "listen_overflows", "rss_ready_mb", "rss_done_mb", "kib_per_conn", "cpu_us_per_join"],
    rows=rows,
)

if __name__ == "__main__":
    BENCH.main()
