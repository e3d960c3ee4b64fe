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
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from danmaku import SECRET, _free_port, _pin, _start_redis, _wait_port  # noqa: E402
from seckill import _pct  # noqa: E402

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
                                  "seconds": round(elapsed, 3), "p50_ms": _pct(latencies, 0.5),
                                  "p99_ms": _pct(latencies, 0.99), "concurrency": args.raw_concurrency}), flush=True)
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
                                  "p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99),
                                  "concurrency": args.claimers}), flush=True)
    for c in conns:
        c.close()
    await asyncio.sleep(0.2)


def _run_client(role_args: list[str], watch_pid: int | None) -> dict:
    client = subprocess.Popen([sys.executable, __file__, *role_args], stdout=subprocess.PIPE, text=True,
                              preexec_fn=lambda: _pin(1))
    proc = psutil.Process(watch_pid) if watch_pid else None
    result: dict = {}
    cpu0 = 0.0
    assert client.stdout is not None
    for line in client.stdout:
        if line.startswith("READY") and proc:
            t = proc.cpu_times()
            cpu0 = t.user + t.system
        elif line.startswith("DONE") and proc:
            t = proc.cpu_times()
            result["cpu_s"] = t.user + t.system - cpu0
        elif line.startswith("RESULT "):
            result.update(json.loads(line[7:]))
    client.wait(120)
    result["claims_per_s"] = round(result["claims"] / result["seconds"]) if result.get("seconds") else None
    if result.get("cpu_s") and result.get("claims"):
        result["cpu_us_per_claim"] = round(result.pop("cpu_s") / result["claims"] * 1e6, 1)
    return result


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
    redis_proc, redis_url = _start_redis()
    prefix = f"bench{int(time.time())}:"
    results = []
    try:
        total = _make_packet(redis_url, prefix, "rawpacket", args.claimers)
        _make_packet(redis_url, prefix, "wspacket", args.claimers)
        raw = _run_client(["--role", "raw", "--redis-url", redis_url, "--prefix", prefix, "--claimers",
                           str(args.claimers), "--raw-concurrency", str(args.raw_concurrency)], redis_proc.pid)
        raw["redis_cpu_us_per_claim"] = raw.pop("cpu_us_per_claim", None)
        results.append(raw)
        port = _free_port()
        env = {**os.environ, "LIVESERVER_SECRET": SECRET, "LIVESERVER_KEY_PREFIX": prefix,
               "LIVESERVER_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen([sys.executable, "-m", "liveserver", "serve", "--port", str(port), "--redis-url", redis_url],
                                  env=env, cwd=ROOT, stdout=subprocess.DEVNULL, preexec_fn=lambda: _pin(0))
        try:
            _wait_port(port, server)
            ws = _run_client(["--role", "ws", "--port", str(port), "--claimers", str(args.claimers)], server.pid)
            ws["server_cpu_us_per_claim"] = ws.pop("cpu_us_per_claim", None)
            results.append(ws)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    finally:
        redis_proc.terminate()
        redis_proc.wait()
    cols = ["target", "concurrency", "claims", "claims_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_claim",
            "redis_cpu_us_per_claim"]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r.get(c)) for c in cols))
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
