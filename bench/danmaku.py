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
the frame).  The ratio line compares deliveries per CPU-second.

Only loopback is used.  ``--quick`` runs a small version (CI smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from harness import SECRET, free_port as _free_port, pin as _pin, start_redis as _start_redis  # noqa: E402
from harness import wait_port as _wait_port  # noqa: E402

ROOM = "bench"


# ----------------------------------------------------------------------------- the client role


@dataclass
class ViewerStats:
    items: int = 0
    latencies: list[int] | None = None


def _first_ts(buf: bytearray, start: int, end: int) -> int | None:
    i = buf.find(b'"ts_ms":', start, end)
    if i < 0:
        return None
    j = i + 8
    k = j
    while k < end and 48 <= buf[k] <= 57:
        k += 1
    return int(buf[j:k]) if k > j else None


async def client_main(args: argparse.Namespace) -> None:
    import uvloop  # noqa: F401 - the loop is installed by the caller

    from wsload import connect

    from liveserver.auth import mint_token

    host, port = "127.0.0.1", args.port
    latencies: list[int] = []
    totals = {"items": 0, "frames": 0, "acks_ok": 0, "acks_bad": 0}
    per_viewer: list[list[int]] = []
    is_sio = args.target == "socketio"

    def on_viewer_frame(conn, opcode, buf, start, end):  # noqa: ANN001
        st = conn.user
        if is_sio:
            if buf.startswith(b"42", start):
                st[0] += 1
                ts = _first_ts(buf, start, end)
                if ts is not None:
                    latencies.append(int(time.time() * 1000) - ts)
            elif buf.startswith(b"0", start) and end - start > 1 and buf[start + 1] == 123:  # '0{' open
                conn.send(b"40")
            elif buf.startswith(b"40", start):
                st[2] = 1
                ready_waiters.pop(id(conn)).set_result(None) if id(conn) in ready_waiters else None
            elif end - start == 1 and buf[start] == 50:  # '2' ping
                conn.send(b"3")
            return
        if buf.startswith(b'{"type":"danmaku"', start):
            n = buf.count(b'{"id":', start, end)
            st[0] += n
            ts = _first_ts(buf, start, end)
            if ts is not None:
                latencies.append(int(time.time() * 1000) - ts)
        elif buf.startswith(b'{"type":"welcome"', start):
            st[2] = 1
            fut = ready_waiters.pop(id(conn), None)
            if fut is not None:
                fut.set_result(None)

    def on_sender_frame(conn, opcode, buf, start, end):  # noqa: ANN001
        if is_sio:
            if buf.startswith(b"43", start):
                totals["acks_ok" if b'"ok":true' in buf[start:end] else "acks_bad"] += 1
            elif buf.startswith(b"0", start) and end - start > 1 and buf[start + 1] == 123:
                conn.send(b"40")
            elif buf.startswith(b"40", start):
                fut = ready_waiters.pop(id(conn), None)
                if fut is not None:
                    fut.set_result(None)
            elif end - start == 1 and buf[start] == 50:
                conn.send(b"3")
            return
        if buf.startswith(b'{"type":"ack"', start):
            totals["acks_ok" if buf.find(b'"ok":true', start, end) >= 0 else "acks_bad"] += 1
        elif buf.startswith(b'{"type":"welcome"', start):
            fut = ready_waiters.pop(id(conn), None)
            if fut is not None:
                fut.set_result(None)

    ready_waiters: dict[int, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()
    path = "/socket.io/?EIO=4&transport=websocket" if is_sio else "/ws"
    sem = asyncio.Semaphore(100)

    async def open_one(i: int, sender: bool) -> object:
        async with sem:
            handler = on_sender_frame if sender else on_viewer_frame
            for attempt in range(5):
                try:
                    conn = await connect(host, port, path, handler, None if is_sio else "liveserver.v1.json")
                    break
                except OSError:
                    await asyncio.sleep(0.2 * (attempt + 1))
            else:
                raise RuntimeError("could not connect")
            conn.user = [0, 0, 0]
            fut = loop.create_future()
            ready_waiters[id(conn)] = fut
            if not is_sio:
                user = f"{'s' if sender else 'v'}{i}"
                tok = mint_token(SECRET, user, "viewer", ttl_s=3600)
                conn.send(json.dumps({"type": "hello", "token": tok, "room": ROOM}).encode())
            await asyncio.wait_for(fut, 30)
            return conn

    t0 = time.monotonic()
    viewers = await asyncio.gather(*(open_one(i, False) for i in range(args.viewers)))
    senders = await asyncio.gather(*(open_one(i, True) for i in range(args.senders)))
    per_viewer = [v.user for v in viewers]
    print(f"# {len(viewers)} viewers and {len(senders)} senders joined in {time.monotonic() - t0:.1f} s",
          file=sys.stderr, flush=True)
    await asyncio.sleep(1.0)  # let presence and join traffic settle
    for st in per_viewer:
        st[0] = 0
    latencies.clear()

    print("READY", flush=True)
    start = time.monotonic()
    sent = 0
    n = 0
    while True:
        now = time.monotonic()
        if now - start >= args.duration:
            break
        due = int((now - start) * args.rate) - sent
        for _ in range(max(0, due)):
            s = senders[n % len(senders)]
            text = f"bench message {n:07d}"
            if is_sio:
                s.send(("421" + json.dumps(["danmaku", {"text": text}])).encode())
            else:
                s.send(json.dumps({"type": "danmaku", "text": text, "req_id": f"d{n}"}).encode())
            n += 1
            sent += 1
        await asyncio.sleep(0.005)
    send_time = time.monotonic() - start
    # wait until every viewer has every accepted item, or the grace period ends
    deadline = time.monotonic() + args.grace
    while time.monotonic() < deadline:
        accepted = totals["acks_ok"]
        if totals["acks_ok"] + totals["acks_bad"] >= sent and all(st[0] >= accepted for st in per_viewer):
            break
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - start
    print("DONE", flush=True)
    accepted = totals["acks_ok"]
    received = sum(st[0] for st in per_viewer)
    frames = sum(v.frames for v in viewers)
    lat = sorted(latencies)
    result = {
        "target": args.target,
        "viewers": args.viewers,
        "rate": args.rate,
        "sent": sent,
        "accepted": accepted,
        "rejected": totals["acks_bad"],
        "delivered": received,
        "expected": accepted * len(per_viewer),
        "lost": accepted * len(per_viewer) - received,
        "viewers_complete": sum(1 for st in per_viewer if st[0] >= accepted),
        "frames": frames,
        "send_time_s": round(send_time, 2),
        "elapsed_s": round(elapsed, 2),
        "p50_ms": lat[len(lat) // 2] if lat else None,
        "p99_ms": lat[int(len(lat) * 0.99)] if lat else None,
        "max_ms": lat[-1] if lat else None,
    }
    print("RESULT " + json.dumps(result), flush=True)
    for c in [*viewers, *senders]:
        c.close()
    await asyncio.sleep(0.2)


# ----------------------------------------------------------------------------- the driver


def _setup_room(redis_url: str, prefix: str) -> None:
    import redis

    from liveserver.auth import mint_token  # noqa: F401 - same package the server uses

    r = redis.Redis.from_url(redis_url)
    r.hset(f"{prefix}{{r:{ROOM}}}:meta", mapping={
        "room_id": ROOM, "title": "bench", "host": "bench-host", "status": "live", "created_ms": int(time.time() * 1000),
    })
    r.close()


def run_target(target: str, args: argparse.Namespace, redis_url: str) -> dict:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if target == "liveserver":
        prefix = f"bench{int(time.time())}:"
        _setup_room(redis_url, prefix)
        env.update({
            "LIVESERVER_SECRET": SECRET,
            "LIVESERVER_KEY_PREFIX": prefix,
            "LIVESERVER_DANMAKU_USER_RATE": "1000",
            "LIVESERVER_DANMAKU_USER_BURST": "1000",
            "LIVESERVER_DANMAKU_ROOM_RATE": "100000",
            "LIVESERVER_DANMAKU_ROOM_BURST": "100000",
            "LIVESERVER_CLIENT_MSG_RATE": "1000",
            "LIVESERVER_CLIENT_MSG_BURST": "1000",
            "LIVESERVER_LOG_LEVEL": "WARNING",
        })
        if args.tick:
            env["LIVESERVER_DANMAKU_TICK_S"] = str(args.tick)
        cmd = [sys.executable, "-m", "liveserver", "serve", "--port", str(port), "--redis-url", redis_url]
    else:
        cmd = [sys.executable, str(HERE / "peers" / "socketio_server.py"), "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, preexec_fn=lambda: _pin(0))
    try:
        _wait_port(port, server)
        client = subprocess.Popen(
            [sys.executable, __file__, "--client", "--target", target, "--port", str(port),
             "--viewers", str(args.viewers), "--senders", str(args.senders), "--rate", str(args.rate),
             "--duration", str(args.duration), "--grace", str(args.grace)],
            stdout=subprocess.PIPE, text=True, preexec_fn=lambda: _pin(1),
        )
        proc = psutil.Process(server.pid)
        cpu0 = wall0 = None
        result: dict = {}
        assert client.stdout is not None
        for line in client.stdout:
            if line.startswith("READY"):
                t = proc.cpu_times()
                cpu0, wall0 = t.user + t.system, time.monotonic()
                user0 = t.user
                if args.profile and target == "liveserver":
                    subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-d", str(int(args.duration)), "-p", str(server.pid),
                                            "-f", "speedscope", "-o", args.profile, "--nonblocking"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elif line.startswith("DONE"):
                t = proc.cpu_times()
                result["server_cpu_s"] = round(t.user + t.system - cpu0, 2)  # type: ignore[operator]
                result["server_user_s"] = round(t.user - user0, 2)
                result["wall_s"] = round(time.monotonic() - wall0, 2)  # type: ignore[operator]
                result["server_rss_mb"] = round(proc.memory_info().rss / 2**20, 1)
            elif line.startswith("RESULT "):
                result.update(json.loads(line[7:]))
        client.wait(60)
        return result
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def summarize(r: dict) -> dict:
    cpu = r.get("server_cpu_s") or float("nan")
    delivered = r.get("delivered", 0)
    return {
        **r,
        "cpu_s_per_million": round(cpu / (delivered / 1e6), 2) if delivered else None,
        "deliveries_per_cpu_s": round(delivered / cpu) if cpu else None,
        "frames_per_s": round(r.get("frames", 0) / r["wall_s"]) if r.get("wall_s") else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--quick", action="store_true", help="a small run for CI: 100 viewers, 50/s, 3 s")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--profile", help="record the liveserver process with py-spy (speedscope JSON) to this file")
    # the client role (internal)
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--target", default="liveserver", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        import uvloop

        uvloop.run(client_main(args))
        return
    if args.quick:
        args.viewers, args.rate, args.duration, args.senders, args.grace = 100, 50, 3, 5, 5
    redis_proc, redis_url = _start_redis()
    results = []
    try:
        results.append(summarize(run_target("liveserver", args, redis_url)))
        if args.peer == "socketio":
            peer_args = argparse.Namespace(**{**vars(args), "viewers": args.peer_viewers or args.viewers,
                                              "rate": args.peer_rate or args.rate})
            results.append(summarize(run_target("socketio", peer_args, redis_url)))
    finally:
        redis_proc.terminate()
        redis_proc.wait()
    cols = ["target", "viewers", "rate", "accepted", "delivered", "lost", "server_cpu_s", "cpu_s_per_million",
            "deliveries_per_cpu_s", "frames_per_s", "p50_ms", "p99_ms", "server_rss_mb"]
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r.get(c)) for c in cols))
    if len(results) == 2 and results[0].get("deliveries_per_cpu_s") and results[1].get("deliveries_per_cpu_s"):
        ratio = results[0]["deliveries_per_cpu_s"] / results[1]["deliveries_per_cpu_s"]
        print(f"ratio: liveserver delivers {ratio:.1f}x python-socketio's items per server CPU-second")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if any(r.get("lost") for r in results[:1]):
        sys.exit(1)


if __name__ == "__main__":
    main()
