"""Flash-sale grab benchmark: grabs per second end to end over WebSocket into one server
process, beside the raw grab script driven by redis-py in the same run.

    .venv/bin/python bench/seckill.py --grabbers 5000 --duration 10

- **raw**: redis-py (hiredis) calls ``seckill_grab.lua`` with one grab per call
  (EVALSHA, no pipelining), from ``--raw-concurrency`` coroutines: the rate a
  naive server doing one round trip per grab could reach at best.
- **liveserver**: ``--grabbers`` WebSocket viewers each keep one grab in flight
  (send, wait for ``grab_result``, send the next); the server group-commits
  them into batched script calls.

Both create real pending orders (a sale with stock for every grab). Reported:
grabs/s, p50/p99 latency (send to result), and the server process's CPU-µs per
grab, so that the load client is seen not to be the limit.  Server on core 0;
Redis and the load client on core 1.  Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOM, Bench, RedisServer, Row, bench_parser, done, fresh_prefix, make_room, pct
from harness import raw_and_liveserver, raw_script_row, ready
from wsload import WsConn, close_all, join, join_many

STOCK = 10_000_000  # enough for every grab of a run: each one creates a real pending order
# Every grab is one user's first few: the benchmark measures grabs, not the anti-fraud limits.
UNLIMITED = {"grab_user_rate": 1_000_000, "grab_user_burst": 1_000_000, "grab_ip_rate": 1_000_000,
             "grab_ip_burst": 1_000_000, "client_msg_rate": 100_000, "client_msg_burst": 100_000}


def _make_sale(redis_url: str, prefix: str, sale_id: str) -> None:
    """A sale that started a second ago, written in the layout the grab script reads."""
    import redis

    from liveserver.redisio.keyspace import Keyspace

    ks = Keyspace(prefix)
    r = redis.Redis.from_url(redis_url)
    now = int(time.time() * 1000)
    r.hset(ks.drop(sale_id).meta, mapping={
        "kind": "sale", "id": sale_id, "room": ROOM, "product": "p1", "price": 100, "discount": 0,
        "stock": STOCK, "left": STOCK, "pending": 0, "paid": 0, "per_user": STOCK, "starts": now - 1000,
        "ends": now + 3_600_000, "pay_ms": 3_600_000, "channel": ks.room(ROOM).channel,
        "ended": 0, "seq": 0, "created": now,
    })
    r.close()


def _durable(redis_url: str, appendfsync: str) -> None:
    """Turn the benchmark's Redis into one that logs every write (AOF, in a temporary folder)."""
    import tempfile

    import redis

    r = redis.Redis.from_url(redis_url)
    r.config_set("dir", tempfile.mkdtemp(prefix="ls-bench-aof-"))
    r.config_set("appendonly", "yes")
    r.config_set("appendfsync", appendfsync)
    deadline = time.monotonic() + 30
    while r.info("persistence").get("aof_rewrite_in_progress") and time.monotonic() < deadline:
        time.sleep(0.05)  # turning AOF on writes the first AOF in the background
    r.close()


# ----------------------------------------------------------------------------- raw baseline


async def raw_main(args: argparse.Namespace) -> None:
    from redis.asyncio import Redis

    from liveserver.redisio.keyspace import Keyspace
    from liveserver.redisio.scripts import load_source

    r = Redis.from_url(args.redis_url)
    script = r.register_script(load_source("seckill_grab"))
    ks = Keyspace(args.prefix)
    dk = ks.drop("rawsale")
    keys_head = [dk.meta, dk.buyers, dk.answers, dk.orders, dk.deadlines, ks.orders_stream, dk.winners, dk.order_uv,
                 dk.stats]
    latencies: list[float] = []
    grabs = 0
    stop_at = time.monotonic() + args.duration

    async def worker(w: int) -> None:
        nonlocal grabs
        n = 0
        while time.monotonic() < stop_at:
            user = f"u{w}"
            t0 = time.perf_counter()
            res = await script(keys=[*keys_head, dk.user_rate(user), dk.ip_rate("127.0.0.1")],
                               args=[1e9, 1e9, 1e9, 1e9, "sale", user, f"{w}-{n}", ""])
            latencies.append((time.perf_counter() - t0) * 1000)
            assert res[0][0] == b"ok", res
            grabs += 1
            n += 1

    ready()
    start = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(args.raw_concurrency)))
    elapsed = time.monotonic() - start
    done({"target": "raw redis-py EVALSHA", "grabs": grabs, "seconds": round(elapsed, 2),
          "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99), "concurrency": args.raw_concurrency})
    await r.aclose()


# ----------------------------------------------------------------------------- WebSocket client


GRAB = b'{"type":"grab","sale_id":"bench-sale","req_id":"g'


class Grabs:
    """Grab answers and their latencies; in the closed loop each answer sends the grabber's next grab."""

    def __init__(self, closed_loop: bool) -> None:
        self.latencies: list[float] = []
        self.ok = self.other = 0
        self.closed_loop = closed_loop
        self.stop_at = 0.0

    @staticmethod
    def send(conn: WsConn) -> None:
        st = conn.user
        st["n"] += 1
        st["sent"] = time.perf_counter()
        st["idle"] = False
        conn.send(GRAB + str(st["n"]).encode() + b'"}')

    def on_frame(self, conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
        if not buf.startswith(b'{"type":"grab_result"', start):
            return
        st = conn.user
        self.latencies.append((time.perf_counter() - st["sent"]) * 1000)
        if buf.find(b'"ok":true', start, end) >= 0:
            self.ok += 1
        else:
            self.other += 1
        if self.closed_loop and time.monotonic() < self.stop_at:
            self.send(conn)
        else:
            st["idle"] = True


async def _open_loop(conns: list[WsConn], grabs: Grabs, rate: float) -> None:
    """Each grabber grabs ``rate`` times a second at its own phase until ``stop_at``, then answers drain."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate

    def tick(c: WsConn) -> None:
        if time.monotonic() < grabs.stop_at:
            grabs.send(c)
            loop.call_later(interval, tick, c)

    for c in conns:
        loop.call_later(random.random() * interval, tick, c)
    await asyncio.sleep(grabs.stop_at - time.monotonic() + 2)


async def _closed_loop(conns: list[WsConn], grabs: Grabs) -> None:
    """Every grabber fires at once, then again on each answer, until ``stop_at``; then the last answers."""
    for c in conns:
        grabs.send(c)
    while not all(c.user["idle"] for c in conns) and time.monotonic() < grabs.stop_at + 30:
        await asyncio.sleep(0.05)


async def ws_main(args: argparse.Namespace) -> None:
    grabs = Grabs(closed_loop=not args.per_grabber_rate)
    t0 = time.monotonic()
    conns = (await join_many(args.grabbers, lambda i: join(args.port, f"g{i}", grabs.on_frame))).all()
    print(f"# {len(conns)} grabbers joined in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    for c in conns:
        c.user = {"n": 0, "sent": 0.0, "idle": True}
    await asyncio.sleep(1)
    ready()
    start = time.monotonic()
    grabs.stop_at = start + args.duration
    if args.per_grabber_rate:
        await _open_loop(conns, grabs, args.per_grabber_rate)
    else:
        await _closed_loop(conns, grabs)
    elapsed = args.duration if args.per_grabber_rate else time.monotonic() - start
    done({"target": "liveserver over WebSocket" + (" (open loop)" if args.per_grabber_rate else ""),
          "grabs": grabs.ok + grabs.other, "not_ok": grabs.other, "seconds": round(elapsed, 2),
          "p50_ms": pct(grabs.latencies, 0.5), "p99_ms": pct(grabs.latencies, 0.99),
          "concurrency": args.grabbers, "per_grabber_rate": args.per_grabber_rate})
    await close_all(conns)


# ----------------------------------------------------------------------------- driver


def run(args: argparse.Namespace, redis: RedisServer) -> list[dict]:
    """The raw script (Redis's CPU watched), then liveserver (the server's CPU watched)."""
    prefix = fresh_prefix("seckill")
    if args.appendfsync:
        _durable(redis.url, args.appendfsync)
    make_room(redis.url, prefix)
    _make_sale(redis.url, prefix, "rawsale")
    _make_sale(redis.url, prefix, "bench-sale")
    return raw_and_liveserver(
        __file__, "grab", redis, prefix,
        ["--duration", str(args.duration), "--raw-concurrency", str(args.raw_concurrency)],
        ["--grabbers", str(args.grabbers), "--duration", str(args.duration),
         "--per-grabber-rate", str(args.per_grabber_rate)],
        args.profile, **UNLIMITED)


def rows(results: list[dict]) -> list[Row]:
    raw, ws = results
    problems = [f"{ws['not_ok']} grabs refused"] if ws["not_ok"] else []
    if not ws.get("per_grabber_rate"):
        return [raw_script_row("flash-sale grabs", "grab", f"closed loop, {ws['concurrency']:,} grabbers", raw, ws,
                               problems)]
    # An open loop's rate is the load it offers, not a capacity: no ratio against the raw script's.
    load = f"open loop at {ws['concurrency']:,} × {ws['per_grabber_rate']:g}/s"
    row = raw_script_row("flash-sale grabs", "grab", load, raw, ws, problems)
    return [dataclasses.replace(row, baseline_name="– (open loop: the offered rate)", baseline=None)]


def _parser() -> argparse.ArgumentParser:
    p = bench_parser(__doc__, ["raw", "ws"], "200 grabbers, 1 s (CI smoke test)")
    p.add_argument("--grabbers", type=int, default=5000)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--raw-concurrency", type=int, default=50)
    p.add_argument("--per-grabber-rate", type=float, default=0.0,
                   help="open loop: each grabber grabs this often a second (default: closed loop, one in flight each)")
    p.add_argument("--profile", help="record the server with py-spy (speedscope JSON) to this file")
    p.add_argument("--appendfsync", choices=["everysec", "always"],
                   help="run on a Redis with AOF on and this fsync policy (default: no AOF, as the other benchmarks)")
    return p


BENCH = Bench(
    parser=_parser(), quick={"grabbers": 200, "duration": 1}, roles={"raw": raw_main, "ws": ws_main}, run=run,
    cols=["target", "concurrency", "grabs", "grabs_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_grab",
          "redis_cpu_us_per_grab"],
    rows=rows,
)

if __name__ == "__main__":
    BENCH.main()
