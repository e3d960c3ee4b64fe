"""A lean WebSocket load client for benchmarks: thousands of sockets on one core.

A general client library (websockets, aiohttp) parses and queues every frame
in Python objects; at 100,000 frames a second the load client, not the
server, would be what is measured.  This one is an ``asyncio.Protocol`` that
does the HTTP upgrade, then splits the byte stream into frames and hands
each payload's position to a callback that counts what it needs with
``bytes.count``/``find`` (C speed) instead of decoding it.

Client frames are masked with the all-zero key (RFC 6455 allows any key), so
sending costs no XOR.  Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable

__all__ = ["WsConn", "connect", "text_frame"]

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
        self.user: object = None  # the caller's per-connection state

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
