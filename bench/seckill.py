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
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from harness import SECRET, liveserver, pct, print_table, run_role, start_redis  # noqa: E402

ROOM = "bench"


def _make_sale(redis_url: str, prefix: str, sale_id: str, stock: int) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    now = int(time.time() * 1000)
    r.hset(f"{prefix}{{d:{sale_id}}}:meta", mapping={
        "kind": "sale", "id": sale_id, "room": ROOM, "product": "p1", "price": 100, "discount": 0,
        "stock": stock, "left": stock, "pending": 0, "paid": 0, "per_user": stock, "starts": now - 1000,
        "ends": now + 3_600_000, "pay_ms": 3_600_000, "channel": f"{prefix}{{r:{ROOM}}}:events",
        "ended": 0, "seq": 0, "created": now,
    })
    r.hset(f"{prefix}{{r:{ROOM}}}:meta", mapping={
        "room_id": ROOM, "title": "bench", "host": "bench-host", "status": "live", "created_ms": now,
    })
    r.close()


# ----------------------------------------------------------------------------- raw baseline


async def raw_main(args: argparse.Namespace) -> None:
    from redis.asyncio import Redis

    from liveserver.redisio.scripts import load_source

    r = Redis.from_url(args.redis_url)
    script = r.register_script(load_source("seckill_grab"))
    p = args.prefix
    sale = "rawsale"
    from liveserver.redisio.keyspace import Keyspace

    dk = Keyspace(p).drop(sale)
    keys_head = [dk.meta, dk.buyers, dk.answers, dk.orders, dk.deadlines, Keyspace(p).orders_stream, dk.winners]
    latencies: list[float] = []
    done = 0
    stop_at = time.monotonic() + args.duration

    async def worker(w: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < stop_at:
            user = f"u{w}"
            t0 = time.perf_counter()
            res = await script(keys=[*keys_head, dk.user_rate(user), dk.ip_rate("127.0.0.1")],
                               args=[1e9, 1e9, 1e9, 1e9, "sale", user, f"{w}-{n}", ""])
            latencies.append((time.perf_counter() - t0) * 1000)
            assert res[0][0] == b"ok", res
            done += 1
            n += 1

    print("READY", flush=True)
    start = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(args.raw_concurrency)))
    elapsed = time.monotonic() - start
    print("DONE", flush=True)
    print("RESULT " + json.dumps({"target": "raw redis-py EVALSHA", "grabs": done, "seconds": round(elapsed, 2),
                                  "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99),
                                  "concurrency": args.raw_concurrency}), flush=True)
    await r.aclose()


# ----------------------------------------------------------------------------- WebSocket client


async def ws_main(args: argparse.Namespace) -> None:
    from wsload import connect

    from liveserver.auth import mint_token

    latencies: list[float] = []
    counts = {"ok": 0, "other": 0}
    ready: dict[int, asyncio.Future[None]] = {}
    running = False
    stop_at = 0.0

    def on_frame(conn, opcode, buf, start, end):  # noqa: ANN001
        st = conn.user
        if buf.startswith(b'{"type":"grab_result"', start):
            now = time.perf_counter()
            latencies.append((now - st["sent"]) * 1000)
            counts["ok" if buf.find(b'"ok":true', start, end) >= 0 else "other"] += 1
            if running and time.monotonic() < stop_at and not args.per_grabber_rate:
                send_grab(conn)
            elif not args.per_grabber_rate:
                st["idle"] = True
        elif buf.startswith(b'{"type":"welcome"', start):
            fut = ready.pop(id(conn), None)
            if fut is not None:
                fut.set_result(None)

    def send_grab(conn) -> None:  # noqa: ANN001
        st = conn.user
        st["n"] += 1
        st["sent"] = time.perf_counter()
        conn.send(st["prefix"] + str(st["n"]).encode() + b'"}')

    sem = asyncio.Semaphore(100)
    loop = asyncio.get_running_loop()

    async def open_one(i: int) -> object:
        async with sem:
            conn = await connect("127.0.0.1", args.port, "/ws", on_frame, "liveserver.v1.json")
            conn.user = {"n": 0, "sent": 0.0, "idle": True,
                         "prefix": b'{"type":"grab","sale_id":"bench-sale","req_id":"g'}
            fut = loop.create_future()
            ready[id(conn)] = fut
            conn.send(json.dumps({"type": "hello", "token": mint_token(SECRET, f"g{i}", "viewer"), "room": ROOM}).encode())
            await asyncio.wait_for(fut, 60)
            return conn

    t0 = time.monotonic()
    conns = await asyncio.gather(*(open_one(i) for i in range(args.grabbers)))
    print(f"# {len(conns)} grabbers joined in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    await asyncio.sleep(1)
    print("READY", flush=True)
    running = True
    stop_at = time.monotonic() + args.duration
    start = time.monotonic()
    if args.per_grabber_rate:  # open loop: each grabber grabs at its own steady rate, phases spread
        import random

        interval = 1.0 / args.per_grabber_rate

        def tick(c) -> None:  # noqa: ANN001
            if time.monotonic() < stop_at:
                send_grab(c)
                loop.call_later(interval, tick, c)

        for c in conns:
            loop.call_later(random.random() * interval, tick, c)
        await asyncio.sleep(args.duration + 2)
    else:
        for c in conns:  # closed loop: every grabber fires at once, then again on each answer
            c.user["idle"] = False
            send_grab(c)
        while not all(c.user["idle"] for c in conns) and time.monotonic() < stop_at + 30:
            await asyncio.sleep(0.05)
    elapsed = args.duration if args.per_grabber_rate else time.monotonic() - start
    print("DONE", flush=True)
    print("RESULT " + json.dumps({"target": "liveserver over WebSocket" + (" (open loop)" if args.per_grabber_rate else ""), "grabs": counts["ok"] + counts["other"],
                                  "not_ok": counts["other"], "seconds": round(elapsed, 2),
                                  "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99),
                                  "concurrency": args.grabbers}), flush=True)
    for c in conns:
        c.close()
    await asyncio.sleep(0.2)


# ----------------------------------------------------------------------------- driver


def _per_op(result: dict, key: str, ops: str) -> dict:
    """Rate and CPU-µs per operation from a role's result."""
    result[f"{ops}_per_s"] = round(result[ops] / result["seconds"]) if result.get("seconds") else None
    cpu = result.pop("cpu_s", None)
    result[key] = round(cpu / result[ops] * 1e6, 1) if cpu and result.get(ops) else None
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grabbers", type=int, default=5000)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--raw-concurrency", type=int, default=50)
    p.add_argument("--per-grabber-rate", type=float, default=0.0,
                   help="open loop: each grabber grabs this often a second (default: closed loop, one in flight each)")
    p.add_argument("--quick", action="store_true", help="200 grabbers, 2 s (CI smoke test)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--profile", help="record the server with py-spy (speedscope JSON) to this file")
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
        args.grabbers, args.duration = 200, 2
    redis_proc, redis_url = start_redis()
    prefix = f"bench{int(time.time())}:"
    stock = 10_000_000
    results = []
    try:
        _make_sale(redis_url, prefix, "rawsale", stock)
        _make_sale(redis_url, prefix, "bench-sale", stock)
        results.append(_per_op(run_role(__file__, ["--role", "raw", "--redis-url", redis_url, "--prefix", prefix,
                                                   "--duration", str(args.duration), "--raw-concurrency",
                                                   str(args.raw_concurrency)], redis_proc.pid),
                               "redis_cpu_us_per_grab", "grabs"))
        unlimited = {"grab_user_rate": 1e6, "grab_user_burst": 1e6, "grab_ip_rate": 1e6, "grab_ip_burst": 1e6,
                     "client_msg_rate": 1e5, "client_msg_burst": 1e5}
        with liveserver(redis_url, prefix, **{k: str(int(v)) for k, v in unlimited.items()}) as (port, server):
            results.append(_per_op(run_role(__file__, ["--role", "ws", "--port", str(port), "--grabbers",
                                                       str(args.grabbers), "--duration", str(args.duration),
                                                       "--per-grabber-rate", str(args.per_grabber_rate)],
                                            server.pid, args.profile), "server_cpu_us_per_grab", "grabs"))
    finally:
        redis_proc.terminate()
        redis_proc.wait()
    cols = ["target", "concurrency", "grabs", "grabs_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_grab",
            "redis_cpu_us_per_grab"]
    print_table(cols, results)
    if results[0].get("grabs_per_s") and results[1].get("grabs_per_s"):
        print(f"ratio: liveserver end to end = {results[1]['grabs_per_s'] / results[0]['grabs_per_s']:.2f}x "
              "the raw unpipelined script rate")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if results[1].get("not_ok"):
        sys.exit(1)


if __name__ == "__main__":
    main()
