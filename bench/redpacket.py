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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from harness import SECRET, liveserver, pct, print_table, run_role, start_redis  # noqa: E402
from seckill import _per_op  # noqa: E402

ROOM = "bench"


def _make_packet(redis_url: str, prefix: str, packet_id: str, count: int) -> int:
    import redis

    from liveserver.redisio.keyspace import Keyspace
    from liveserver.redisio.scripts import load_source
    from liveserver.seckill.redpacket import split_red_packet

    total = count * 100
    shares = split_red_packet(total, count, random.Random(1))
    ks = Keyspace(prefix)
    pk = ks.packet(packet_id)
    r = redis.Redis.from_url(redis_url)
    r.hset(ks.room(ROOM).meta, mapping={"room_id": ROOM, "title": "bench", "host": "bench-host", "status": "live",
                                        "created_ms": int(time.time() * 1000)})
    create = r.register_script(load_source("redpacket_create"))
    create(keys=[pk.meta, pk.shares], args=[packet_id, ROOM, total, count, 0, 0, 3_600_000, ks.room(ROOM).channel, 0, *shares])
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

    print("READY", flush=True)
    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.raw_concurrency)))
    elapsed = time.monotonic() - start
    print("DONE", flush=True)
    print("RESULT " + json.dumps({"target": "raw redis-py EVALSHA", "claims": len(latencies), "cents": cents,
                                  "seconds": round(elapsed, 3), "p50_ms": pct(latencies, 0.5),
                                  "p99_ms": pct(latencies, 0.99), "concurrency": args.raw_concurrency}), flush=True)
    await r.aclose()


async def ws_main(args: argparse.Namespace) -> None:
    from wsload import connect

    from liveserver.auth import mint_token

    latencies: list[float] = []
    totals = {"ok": 0, "other": 0, "cents": 0}
    ready: dict[int, asyncio.Future[None]] = {}
    answered = asyncio.Event()

    def on_frame(conn, opcode, buf, start, end):  # noqa: ANN001
        if buf.startswith(b'{"type":"claim_result"', start):
            latencies.append((time.perf_counter() - conn.user) * 1000)
            frame = json.loads(bytes(buf[start:end]))
            if frame["ok"]:
                totals["ok"] += 1
                totals["cents"] += frame["amount_cents"]
            else:
                totals["other"] += 1
            if totals["ok"] + totals["other"] >= args.claimers:
                answered.set()
        elif buf.startswith(b'{"type":"welcome"', start):
            fut = ready.pop(id(conn), None)
            if fut is not None:
                fut.set_result(None)

    sem = asyncio.Semaphore(100)
    loop = asyncio.get_running_loop()

    async def open_one(i: int) -> object:
        async with sem:
            conn = await connect("127.0.0.1", args.port, "/ws", on_frame, "liveserver.v1.json")
            fut = loop.create_future()
            ready[id(conn)] = fut
            conn.send(json.dumps({"type": "hello", "token": mint_token(SECRET, f"c{i}", "viewer"), "room": ROOM}).encode())
            await asyncio.wait_for(fut, 60)
            return conn

    conns = await asyncio.gather(*(open_one(i) for i in range(args.claimers)))
    await asyncio.sleep(1)
    print("READY", flush=True)
    start = time.monotonic()
    frame = b'{"type":"claim","packet_id":"wspacket","req_id":"c1"}'
    for c in conns:  # the spike
        c.user = time.perf_counter()
        c.send(frame)
    await asyncio.wait_for(answered.wait(), 120)
    elapsed = time.monotonic() - start
    print("DONE", flush=True)
    print("RESULT " + json.dumps({"target": "liveserver over WebSocket", "claims": totals["ok"] + totals["other"],
                                  "not_ok": totals["other"], "cents": totals["cents"], "seconds": round(elapsed, 3),
                                  "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99),
                                  "concurrency": args.claimers}), flush=True)
    for c in conns:
        c.close()
    await asyncio.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--claimers", type=int, default=5000)
    p.add_argument("--raw-concurrency", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="300 claimers (CI smoke test)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--role", choices=["raw", "ws"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--redis-url", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role:
        import uvloop

        uvloop.run(raw_main(args) if args.role == "raw" else ws_main(args))
        return
    if args.quick:
        args.claimers = 300
    redis_proc, redis_url = start_redis()
    prefix = f"bench{int(time.time())}:"
    results = []
    try:
        total = _make_packet(redis_url, prefix, "rawpacket", args.claimers)
        _make_packet(redis_url, prefix, "wspacket", args.claimers)
        results.append(_per_op(run_role(__file__, ["--role", "raw", "--redis-url", redis_url, "--prefix", prefix,
                                                   "--claimers", str(args.claimers), "--raw-concurrency",
                                                   str(args.raw_concurrency)], redis_proc.pid),
                               "redis_cpu_us_per_claim", "claims"))
        with liveserver(redis_url, prefix) as (port, server):
            results.append(_per_op(run_role(__file__, ["--role", "ws", "--port", str(port), "--claimers",
                                                       str(args.claimers)], server.pid),
                                   "server_cpu_us_per_claim", "claims"))
    finally:
        redis_proc.terminate()
        redis_proc.wait()
    cols = ["target", "concurrency", "claims", "claims_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_claim",
            "redis_cpu_us_per_claim"]
    print_table(cols, results)
    print(f"ratio: liveserver end to end = {results[1]['claims_per_s'] / results[0]['claims_per_s']:.2f}x "
          "the raw unpipelined script rate")
    exact = all(r["cents"] == total for r in results)
    print(f"sums exact: {exact} (each packet {total} cents)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not exact or results[1].get("not_ok"):
        sys.exit(1)


if __name__ == "__main__":
    main()
