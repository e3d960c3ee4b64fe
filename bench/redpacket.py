"""Red-packet claim benchmark: a claim spike end to end over WebSocket into one server
process, beside the raw claim script driven by redis-py in the same run.

    .venv/bin/python bench/redpacket.py --claimers 5000

- **raw**: redis-py calls ``redpacket_claim.lua`` with one claim per call
  (EVALSHA, no pipelining) from ``--raw-concurrency`` coroutines, each claim a
  different user, until a packet of ``--claimers`` shares is empty.
- **liveserver**: ``--claimers`` WebSocket viewers claim one packet of as many
  shares at the same moment (the rain's spike): every one wins a share.

Reported: claims/s, p50/p99 latency, server CPU-µs per claim; the sum of the
shares is checked against the total.  Server on core 0; Redis and the client
on core 1.  Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOM, Bench, RedisServer, Row, bench_parser, done, fresh_prefix, make_room, pct
from harness import raw_and_liveserver, raw_script_row, ready
from wsload import WsConn, close_all, join, join_many


def _make_packet(redis_url: str, prefix: str, packet_id: str, count: int) -> int:
    """A packet of ``count`` shares of 1.00 on average, created by the server's own script; returns its total."""
    import redis

    from liveserver.redisio.keyspace import Keyspace
    from liveserver.redisio.scripts import load_source
    from liveserver.seckill.redpacket import split_red_packet

    total = count * 100
    shares = split_red_packet(total, count, random.Random(1))
    ks = Keyspace(prefix)
    pk = ks.packet(packet_id)
    r = redis.Redis.from_url(redis_url)
    create = r.register_script(load_source("redpacket_create"))
    create(keys=[pk.meta, pk.shares],
           args=[packet_id, ROOM, total, count, 0, 0, 3_600_000, ks.room(ROOM).channel, 0, *shares])
    r.close()
    return total


async def raw_main(args: argparse.Namespace) -> None:
    from redis.asyncio import Redis

    from liveserver.redisio.keyspace import Keyspace
    from liveserver.redisio.scripts import load_source

    r = Redis.from_url(args.redis_url)
    script = r.register_script(load_source("redpacket_claim"))
    ks = Keyspace(args.prefix)
    pk = ks.packet("rawpacket")
    keys = [pk.meta, pk.shares, pk.claims, pk.claim_times, pk.rain_claims, ks.wallet_stream]
    latencies: list[float] = []
    counter = iter(range(args.claimers))
    cents = 0

    async def worker() -> None:
        nonlocal cents
        for i in counter:
            t0 = time.perf_counter()
            res = await script(keys=keys, args=[f"u{i}", ""])
            latencies.append((time.perf_counter() - t0) * 1000)
            assert res[0][0] == b"ok", res
            cents += int(res[0][1])

    ready()
    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.raw_concurrency)))
    elapsed = time.monotonic() - start
    done({"target": "raw redis-py EVALSHA", "claims": len(latencies), "cents": cents, "seconds": round(elapsed, 3),
          "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99), "concurrency": args.raw_concurrency})
    await r.aclose()


class Claims:
    """Claim answers: their latencies, how many won and the cents won; set once all are in."""

    def __init__(self, expected: int) -> None:
        self.latencies: list[float] = []
        self.ok = self.other = self.cents = 0
        self.expected = expected
        self.answered = asyncio.Event()

    def on_frame(self, conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
        if not buf.startswith(b'{"type":"claim_result"', start):
            return
        self.latencies.append((time.perf_counter() - conn.user) * 1000)
        frame = json.loads(bytes(buf[start:end]))
        if frame["ok"]:
            self.ok += 1
            self.cents += frame["amount_cents"]
        else:
            self.other += 1
        if self.ok + self.other >= self.expected:
            self.answered.set()


async def ws_main(args: argparse.Namespace) -> None:
    claims = Claims(args.claimers)
    conns = (await join_many(args.claimers, lambda i: join(args.port, f"c{i}", claims.on_frame))).all()
    await asyncio.sleep(1)
    ready()
    start = time.monotonic()
    frame = b'{"type":"claim","packet_id":"wspacket","req_id":"c1"}'
    for c in conns:  # the spike
        c.user = time.perf_counter()
        c.send(frame)
    await asyncio.wait_for(claims.answered.wait(), 120)
    elapsed = time.monotonic() - start
    done({"target": "liveserver over WebSocket", "claims": claims.ok + claims.other, "not_ok": claims.other,
          "cents": claims.cents, "seconds": round(elapsed, 3), "p50_ms": pct(claims.latencies, 0.5),
          "p99_ms": pct(claims.latencies, 0.99), "concurrency": args.claimers})
    await close_all(conns)


def run(args: argparse.Namespace, redis: RedisServer) -> list[dict]:
    """The raw script empties one packet (Redis's CPU watched), then liveserver's viewers another."""
    prefix = fresh_prefix("redpacket")
    make_room(redis.url, prefix)
    total = _make_packet(redis.url, prefix, "rawpacket", args.claimers)
    _make_packet(redis.url, prefix, "wspacket", args.claimers)
    results = raw_and_liveserver(__file__, "claim", redis, prefix,
                                 ["--claimers", str(args.claimers), "--raw-concurrency", str(args.raw_concurrency)],
                                 ["--claimers", str(args.claimers)])
    return [{**r, "total_cents": total} for r in results]


def rows(results: list[dict]) -> list[Row]:
    raw, ws = results
    problems = [f"{r['target']}: {r['cents']} of {r['total_cents']} cents claimed" for r in results
                if r["cents"] != r["total_cents"]]
    exact = not problems
    if ws["not_ok"]:
        problems.append(f"{ws['not_ok']} claims refused")
    return [raw_script_row("red-packet claims", "claim", f"one spike of {ws['concurrency']:,}", raw, ws, problems,
                           f"; sums exact: {exact}")]


def _parser() -> argparse.ArgumentParser:
    p = bench_parser(__doc__, ["raw", "ws"], "300 claimers (CI smoke test)")
    p.add_argument("--claimers", type=int, default=5000)
    p.add_argument("--raw-concurrency", type=int, default=50)
    return p


BENCH = Bench(
    parser=_parser(), quick={"claimers": 300}, roles={"raw": raw_main, "ws": ws_main}, run=run,
    cols=["target", "concurrency", "claims", "claims_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_claim",
          "redis_cpu_us_per_claim", "cents", "total_cents"],
    rows=rows,
)

if __name__ == "__main__":
    BENCH.main()
