"""A lean WebSocket load client for benchmarks: thousands of sockets on one core.

A general client library (websockets, aiohttp) parses and queues every frame
in Python objects; at 100,000 frames a second the load client, not the
server, would be what is measured.  This one is an ``asyncio.Protocol`` that
does the HTTP upgrade, then splits the byte stream into frames and hands
each payload's position to a callback that counts what it needs with
``bytes.count``/``find`` (C speed) instead of decoding it.

Client frames are masked with the all-zero key (RFC 6455 allows any key), so
sending costs no XOR.  Only loopback addresses are used.

:func:`join` (liveserver: ``hello`` until ``welcome``) and :func:`join_socketio` (the
peer: Engine.IO open, then the Socket.IO connect) return a socket once it is in the room;
until then its frames go to a handshake handler, afterwards straight to the caller's, so
the join costs nothing per frame later.  :func:`join_many` opens many and times each.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from harness import ROOM, SECRET

__all__ = ["Joins", "WsConn", "close_all", "connect", "ignore", "join", "join_many", "join_socketio",
           "sio_keepalive", "text_frame", "token"]

HOST = "127.0.0.1"
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"

OnFrame = Callable[["WsConn", int, bytearray, int, int], None]


def text_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (mask key 0: the payload goes out as it is)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + payload


class WsConn(asyncio.Protocol):
    """One client socket.  ``on_frame(conn, opcode, buf, start, end)`` sees each payload in place."""

    def __init__(self, host: str, port: int, path: str, subprotocol: str | None, on_frame: OnFrame) -> None:
        self._request = self._upgrade_request(host, port, path, subprotocol)
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self._buf = bytearray()
        self._open = False
        self.frames = 0
        self.bytes = 0
        self.user: Any = None  # the caller's per-connection state

    @staticmethod
    def _upgrade_request(host: str, port: int, path: str, subprotocol: str | None) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed before the upgrade"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    def send(self, payload: bytes, opcode: int = 1) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(text_frame(payload, opcode))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        self.bytes += len(data)
        pos = 0
        if not self._open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(bytes(buf[: buf.find(b"\r\n")]).decode()))
                self.transport.close()  # type: ignore[union-attr]
                return
            self._open = True
            pos = end + 4
            self.upgraded.set_result(None)
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            start = pos + head
            end = start + length
            if end > n:
                break
            opcode = b0 & 0x0F
            if opcode == 9:  # ping
                self.send(bytes(buf[start:end]), 10)
            elif opcode == 8:
                self.close_code = (buf[start] << 8 | buf[start + 1]) if length >= 2 else 1005
                self.send(bytes(buf[start : start + 2]), 8)
                self.transport.close()  # type: ignore[union-attr]
            else:
                self.frames += 1
                self.on_frame(self, opcode, buf, start, end)
            pos = end
        if pos:
            del buf[:pos]


async def connect(
    host: str, port: int, path: str, on_frame: OnFrame, subprotocol: str | None = None, timeout: float = 30.0
) -> WsConn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: WsConn(host, port, path, subprotocol, on_frame), host, port)
    await asyncio.wait_for(conn.upgraded, timeout)
    return conn


# ----------------------------------------------------------------------------- joining a room


class JoinRefused(RuntimeError):
    """The server answered the join with an error (not a network failure)."""


def ignore(conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
    """For idle liveserver viewers: whatever arrives (presence counts) is only counted in ``frames``."""


def sio_keepalive(conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
    """For idle Socket.IO viewers: answer Engine.IO's ping (``2``) so that the peer keeps them."""
    if end - start == 1 and buf[start] == 50:
        conn.send(b"3")


Handshake = Callable[[OnFrame, "asyncio.Future[None]"], OnFrame]


def _until_welcome(then: OnFrame, joined: asyncio.Future[None]) -> OnFrame:
    def on_frame(conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
        if buf.startswith(b'{"type":"welcome"', start):
            conn.on_frame = then
            joined.set_result(None)
        elif buf.startswith(b'{"type":"error"', start) and not joined.done():
            joined.set_exception(JoinRefused(bytes(buf[start:end]).decode()))
    return on_frame


def _until_sio_connected(then: OnFrame, joined: asyncio.Future[None]) -> OnFrame:
    def on_frame(conn: WsConn, opcode: int, buf: bytearray, start: int, end: int) -> None:
        if buf.startswith(b"0{", start):  # Engine.IO open: connect to the default namespace
            conn.send(b"40")
        elif buf.startswith(b"40", start):  # connected (and, in the peer, in the room)
            conn.on_frame = then
            joined.set_result(None)
        elif buf.startswith(b"44", start) and not joined.done():
            joined.set_exception(JoinRefused(bytes(buf[start:end]).decode()))
    return on_frame


async def _join(port: int, path: str, subprotocol: str | None, greeting: bytes | None, handshake: Handshake,
                on_frame: OnFrame, timeout: float) -> WsConn:
    joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    conn = await connect(HOST, port, path, handshake(on_frame, joined), subprotocol, timeout)
    conn.closed.add_done_callback(lambda closed: joined.done() or joined.set_exception(
        ConnectionError(f"closed {closed.result()} before joining")))
    if greeting is not None:
        conn.send(greeting)
    try:
        await asyncio.wait_for(joined, timeout)
    except BaseException:
        conn.close()
        raise
    return conn


@functools.cache
def token(user: str) -> str:
    """A viewer's JWT; cached, so that a join storm can mint them all before it starts."""
    from liveserver.auth import mint_token

    return mint_token(SECRET, user, "viewer", ttl_s=3600)


async def join(port: int, user: str, on_frame: OnFrame = ignore, *, timeout: float = 60) -> WsConn:
    """A liveserver viewer ``user`` in ``ROOM`` (JSON protocol), once welcomed."""
    hello = json.dumps({"type": "hello", "token": token(user), "room": ROOM})
    return await _join(port, "/ws", "liveserver.v1.json", hello.encode(), _until_welcome, on_frame, timeout)


async def join_socketio(port: int, on_frame: OnFrame = sio_keepalive, *, timeout: float = 60) -> WsConn:
    """A Socket.IO viewer of the peer, once connected (the peer's connect handler enters the room)."""
    return await _join(port, SIO_PATH, None, None, _until_sio_connected, on_frame, timeout)


@dataclass
class Joins:
    """What :func:`join_many` saw: the sockets in the room, each one's join time, the failures."""

    conns: list[WsConn] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def all(self) -> list[WsConn]:
        """The sockets, for a benchmark that needs every one of them in the room."""
        if self.errors:
            raise RuntimeError(f"{sum(self.errors.values())} joins failed: {dict(self.errors)}")
        return self.conns


async def join_many(n: int, join_one: Callable[[int], Awaitable[WsConn]], concurrency: int | None = 100) -> Joins:
    """Join ``n`` sockets (``join_one(i)``), ``concurrency`` at a time (``None``: all at once, a
    join storm); a failed join is counted by its exception's type, not retried."""
    out = Joins()
    gate = asyncio.Semaphore(concurrency or n or 1)

    async def one(i: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            try:
                conn = await join_one(i)
            except (OSError, JoinRefused) as exc:  # TimeoutError and ConnectionError are OSErrors
                out.errors[type(exc).__name__] += 1
                return
            out.latencies_ms.append((time.perf_counter() - t0) * 1000)
            out.conns.append(conn)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    out.seconds = time.monotonic() - t0
    return out


async def close_all(conns: list[WsConn], linger: float = 0.2) -> None:
    """Close every socket, then give the kernel a moment to send the FINs before the role exits."""
    for c in conns:
        c.close()
    await asyncio.sleep(linger)
