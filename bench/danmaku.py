"""Danmaku fan-out benchmark: liveserver against python-socketio, in one run.

    .venv/bin/python bench/danmaku.py --viewers 10000 --rate 500 --duration 20

One server process on core 0; the load client (bench/wsload.py) and Redis on
core 1.  N viewers join one room; S senders send M danmaku a second in total
for a fixed time; then the client waits until every viewer has every
accepted item (or gives up after a grace period).

Reported per server: the server process's CPU-seconds (user + system, from
/proc via psutil) per million delivered items, deliveries per CPU-second,
frames a second, items lost, and send-to-receive latency (from the moment the
server accepted an item, its ``ts_ms``, to the moment the client read the
frame that carried it: the oldest item of each frame, so the worst case of
the frame).  The summary row compares deliveries per CPU-second.

Only loopback is used.  ``--quick`` runs a small version (CI smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Bench, RedisServer, Row, bench_parser, done, fresh_prefix, liveserver, make_room, pin, ready
from harness import run_role, socketio_peer
from wsload import WsConn, close_all, join, join_many, join_socketio, sio_keepalive

# Senders send far above a viewer's limits: the benchmark measures fan-out, not rate limits.
UNLIMITED = {"danmaku_user_rate": 1000, "danmaku_user_burst": 1000, "danmaku_room_rate": 100_000,
             "danmaku_room_burst": 100_000, "client_msg_rate": 1000, "client_msg_burst": 1000}


# ----------------------------------------------------------------------------- the client role


def _first_ts(buf: bytearray, start: int, end: int) -> int | None:
    i = buf.find(b'"ts_ms":', start, end)
    if i < 0:
        return None
    j = i + 8
    k = j
    while k < end and 48 <= buf[k] <= 57:
        k += 1
    return int(buf[j:k]) if k > j else None


class Counts:
    """What the client role counts, in frame callbacks kept to ``bytes`` searches (see wsload)."""

    def __init__(self) -> None:
        self.latencies: list[int] = []
        self.acks: Counter[str] = Counter()

    def _latency(self, buf: bytearray, start: int, end: int) -> None:
        ts = _first_ts(buf, start, end)
        if ts is not None:
            self.latencies.append(int(time.time() * 1000) - ts)

    def viewer(self, conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
        """liveserver: one ``danmaku`` frame carries every item of a tick."""
        if buf.startswith(b'{"type":"danmaku"', start):
            conn.user += buf.count(b'{"id":', start, end)
            self._latency(buf, start, end)

    def sio_viewer(self, conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
        """Socket.IO: one event (``42["danmaku",{...}]``) a message."""
        if buf.startswith(b"42", start):
            conn.user += 1
            self._latency(buf, start, end)
        else:
            sio_keepalive(conn, opcode, buf, start, end)

    def sender(self, conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
        if buf.startswith(b'{"type":"ack"', start):
            self.acks["ok" if buf.find(b'"ok":true', start, end) >= 0 else "bad"] += 1

    def sio_sender(self, conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
        if buf.startswith(b"43", start):  # the ack of an emit with an id
            self.acks["ok" if buf.find(b'"ok":true', start, end) >= 0 else "bad"] += 1
        else:
            sio_keepalive(conn, opcode, buf, start, end)


def _openers(args: argparse.Namespace, counts: Counts) -> tuple[Callable[[int], Awaitable[WsConn]], ...]:
    """How a viewer and a sender join the target."""
    if args.target == "socketio":
        return (lambda i: join_socketio(args.port, counts.sio_viewer),
                lambda i: join_socketio(args.port, counts.sio_sender))
    return (lambda i: join(args.port, f"v{i}", counts.viewer, timeout=30),
            lambda i: join(args.port, f"s{i}", counts.sender, timeout=30))


def _danmaku_frame(target: str, n: int) -> bytes:
    text = f"bench message {n:07d}"
    if target == "socketio":
        return ("421" + json.dumps(["danmaku", {"text": text}])).encode()
    return json.dumps({"type": "danmaku", "text": text, "req_id": f"d{n}"}).encode()


async def _send(senders: list[WsConn], target: str, rate: float, duration: float) -> int:
    """``rate`` danmaku a second in total, round robin over the senders; returns how many were sent."""
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < duration:
        for _ in range(max(0, int(elapsed * rate) - sent)):
            senders[sent % len(senders)].send(_danmaku_frame(target, sent))
            sent += 1
        await asyncio.sleep(0.005)
    return sent


async def client_role(args: argparse.Namespace) -> None:
    counts = Counts()
    open_viewer, open_sender = _openers(args, counts)
    t0 = time.monotonic()
    viewers = (await join_many(args.viewers, open_viewer)).all()
    senders = (await join_many(args.senders, open_sender)).all()
    print(f"# {len(viewers)} viewers and {len(senders)} senders joined in {time.monotonic() - t0:.1f} s",
          file=sys.stderr, flush=True)
    await asyncio.sleep(1.0)  # let presence and join traffic settle
    for v in viewers:
        v.user = 0  # items received: none yet, nothing was sent
    counts.latencies.clear()

    ready()
    start = time.monotonic()
    sent = await _send(senders, args.target, args.rate, args.duration)
    send_time = time.monotonic() - start
    deadline = time.monotonic() + args.grace  # until every viewer has every accepted item, or the grace ends
    while time.monotonic() < deadline:
        if counts.acks.total() >= sent and all(v.user >= counts.acks["ok"] for v in viewers):
            break
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - start
    delivered = sum(v.user for v in viewers)
    # Every accepted item goes to every viewer, so the most any viewer holds is a floor on what was
    # accepted: a peer that falls behind fans out items whose acks are still queued behind them.
    accepted = max(counts.acks["ok"], max((v.user for v in viewers), default=0))
    lat = sorted(counts.latencies)
    done({
        "target": args.target, "viewers": args.viewers, "rate": args.rate, "sent": sent, "accepted": accepted,
        "rejected": counts.acks["bad"], "delivered": delivered, "expected": accepted * len(viewers),
        "lost": accepted * len(viewers) - delivered,
        "viewers_complete": sum(1 for v in viewers if v.user >= accepted),
        "frames": sum(v.frames for v in viewers), "send_time_s": round(send_time, 2), "elapsed_s": round(elapsed, 2),
        "p50_ms": lat[len(lat) // 2] if lat else None, "p99_ms": lat[int(len(lat) * 0.99)] if lat else None,
        "max_ms": lat[-1] if lat else None})
    await close_all([*viewers, *senders])


# ----------------------------------------------------------------------------- the driver


def _drive(target: str, port: int, pid: int, viewers: int, rate: float, args: argparse.Namespace) -> dict:
    result = run_role(__file__, ["--role", "client", "--target", target, "--port", str(port),
                                 "--viewers", str(viewers), "--senders", str(args.senders), "--rate", str(rate),
                                 "--duration", str(args.duration), "--grace", str(args.grace)],
                      pid, args.profile if target == "liveserver" else None, args.duration)
    cpu = result.pop("cpu_s")
    delivered = result["delivered"]
    return {**result, "server_cpu_s": round(cpu, 2),
            "cpu_s_per_million": round(cpu / (delivered / 1e6), 2) if delivered else None,
            "deliveries_per_cpu_s": round(delivered / cpu) if cpu else None,
            "frames_per_s": round(result["frames"] / result["wall_s"]) if result["wall_s"] else None}


@contextlib.contextmanager
def _publishing(port: int) -> Iterator[None]:
    """A camera publishing into the bench room (bench/video.py's publisher, on the client's core)."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("video.py")), "--role", "publisher",
                             "--port", str(port)], stdout=subprocess.PIPE, text=True, preexec_fn=lambda: pin(1))
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "PUBLISHING":
            raise RuntimeError("the publisher did not start")
        time.sleep(2)  # the program is composed and encoded from here on
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def run(args: argparse.Namespace, redis: RedisServer) -> list[dict]:
    """liveserver, then (``--peer socketio``) the peer at its own viewers and rate."""
    prefix = fresh_prefix("danmaku")
    make_room(redis.url, prefix)
    tick = {"danmaku_tick_s": args.tick} if args.tick else {}
    with liveserver(redis.url, prefix, **UNLIMITED, **tick) as (port, server):
        results = [_drive("liveserver", port, server.pid, args.viewers, args.rate, args)]
    if args.video:  # the same room again, while the node also composes and encodes a 720p program
        prefix = fresh_prefix("danmaku-video")
        make_room(redis.url, prefix)
        with liveserver(redis.url, prefix, **UNLIMITED, **tick) as (port, server), _publishing(port):
            results.append(_drive("liveserver + 720p program", port, server.pid, args.viewers, args.rate, args))
    if args.peer == "socketio":
        with socketio_peer() as (port, server):
            results.append(_drive("socketio", port, server.pid, args.peer_viewers or args.viewers,
                                  args.peer_rate or args.rate, args))
    return results


def rows(results: list[dict]) -> list[Row]:
    ls = results[0]
    peer = next((r for r in results if r["target"] == "socketio"), {})
    video = next((r for r in results if r["target"] == "liveserver + 720p program"), None)

    def run_note(r: dict, name: str) -> str:
        return f"{name} {r['rate']:g}/s: lost {r['lost']:,}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms"

    notes = "; ".join([run_note(ls, "liveserver"), *([run_note(peer, "python-socketio")] if peer else [])])
    problems = [f"liveserver lost {ls['lost']:,} items"] if ls["lost"] else []
    if not ls["accepted"]:
        problems.append("nothing accepted")
    out = [Row("danmaku fan-out", f"items delivered per server CPU-s, {ls['viewers']:,} viewers",
               ls["deliveries_per_cpu_s"], "python-socketio" if peer else "–", peer.get("deliveries_per_cpu_s"),
               higher_is_better=True, notes=notes, problems=problems)]
    if video is not None:
        out.append(Row("danmaku with a 720p program", f"danmaku p99 ms, {ls['viewers']:,} viewers",
                       video["p99_ms"], "the same without video", ls["p99_ms"], higher_is_better=False,
                       notes=f"p50 {video['p50_ms']} ms (without {ls['p50_ms']} ms); lost {video['lost']:,}",
                       problems=[f"lost {video['lost']:,} items"] if video["lost"] else []))
    return out


def _parser() -> argparse.ArgumentParser:
    p = bench_parser(__doc__, ["client"], "a small run for CI: 100 viewers, 50/s (the peer 10/s), 2 s")
    p.add_argument("--viewers", type=int, default=2000)
    p.add_argument("--senders", type=int, default=20)
    p.add_argument("--rate", type=float, default=200, help="danmaku per second, all senders together")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--grace", type=float, default=10, help="seconds to wait for stragglers after sending stops")
    p.add_argument("--peer", choices=["socketio", "none"], default="socketio")
    p.add_argument("--peer-viewers", type=int, help="viewers for the peer (default: the same)")
    p.add_argument("--peer-rate", type=float, help="danmaku/s for the peer (default: the same); python-socketio "
                   "queues without bound, so give it a load it can sustain")
    p.add_argument("--tick", type=float, help="the server's danmaku_tick_s (default: the server's default)")
    p.add_argument("--profile", help="record the liveserver process with py-spy (speedscope JSON) to this file")
    p.add_argument("--video", action="store_true", help="run liveserver again while it also serves a 720p program")
    return p


BENCH = Bench(
    parser=_parser(),
    quick={"viewers": 100, "rate": 50, "peer_rate": 10, "duration": 2, "senders": 5, "grace": 5},
    roles={"client": client_role}, run=run,
    cols=["target", "viewers", "rate", "accepted", "delivered", "lost", "server_cpu_s", "cpu_s_per_million",
          "deliveries_per_cpu_s", "frames_per_s", "p50_ms", "p99_ms", "rss_done_mb"],
    rows=rows,
)

if __name__ == "__main__":
    BENCH.main()
