"""The peer: python-socketio's AsyncServer (aiohttp mode) broadcasting danmaku to one room,
as a user of Socket.IO would write it: every viewer joins the room, every message is
emitted to the room as it arrives (Socket.IO has no per-tick coalescing)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import time

import socketio
import uvloop
from aiohttp import web

ROOM = "bench"


async def main(host: str, port: int) -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=60, ping_timeout=60, cors_allowed_origins=[])
    app = web.Application()
    sio.attach(app)
    ids = itertools.count(1)

    @sio.event
    async def connect(sid: str, environ: dict, auth: object = None) -> None:
        await sio.enter_room(sid, ROOM)

    @sio.on("danmaku")
    async def danmaku(sid: str, data: dict) -> dict:
        item = {"id": next(ids), "user": sid, "name": sid, "text": data["text"], "ts_ms": int(time.time() * 1000)}
        await sio.emit("danmaku", item, room=ROOM)
        return {"ok": True, "id": item["id"]}

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("LISTENING", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    uvloop.run(main(a.host, a.port))
