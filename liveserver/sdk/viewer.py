"""``ViewerClient``: one WebSocket to ``/ws``, JSON or msgpack.

Commands sent with :meth:`ViewerClient.request` get a ``req_id`` and return
an awaitable of the reply that echoes it; every other frame the server
pushes lands in an event queue read with :meth:`recv` or :meth:`wait_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as _WsClosed

from .errors import ConnectionClosed, ReplyError

__all__ = ["JSON", "MSGPACK", "ViewerClient"]

JSON = "liveserver.v1.json"
MSGPACK = "liveserver.v1.msgpack"

_CLOSED = object()


class ViewerClient:
    """Use :meth:`connect`; ``welcome`` holds the server's welcome."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.welcome: dict[str, Any] = {}
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reading = asyncio.Event()
        self._reading.set()
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.rtt_ms: int | None = None
        self.clock_offset_ms = 0.0  # server clock minus ours

    # -- connect -----------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        room: str,
        *,
        protocol: str = JSON,
        last_seq: int | None = None,
        timeout_s: float = 10.0,
        **ws_options: Any,
    ) -> ViewerClient:
        """Open ``url`` (``ws://host:port/ws``), send ``hello`` and wait for ``welcome``.

        Raises :class:`ConnectionClosed` with the server's close code when it
        refuses (4001 token, 4003 banned, 4004 no such room, 4029 too many).
        """
        ws = await connect(
            url, subprotocols=[protocol], open_timeout=timeout_s, compression=None, **ws_options  # type: ignore[list-item]
        )
        client = cls(ws, protocol)
        hello: dict[str, Any] = {"type": "hello", "token": token, "room": room}
        if last_seq is not None:
            hello["last_seq"] = last_seq
        try:
            await client.send(hello)
            first = await asyncio.wait_for(client._recv_frame(), timeout_s)
            while first.get("type") == "error":  # the reason, sent before the close
                client.close_reason = first.get("message", "")
                first = await asyncio.wait_for(client._recv_frame(), timeout_s)
        except _WsClosed as exc:
            rcvd = exc.rcvd
            raise ConnectionClosed(rcvd.code if rcvd else None, rcvd.reason if rcvd else client.close_reason) from None
        except BaseException:
            await ws.close()
            raise
        if first.get("type") != "welcome":
            await ws.close()
            raise ConnectionClosed(None, f"expected welcome, got {first.get('type')!r}")
        client.welcome = first
        client._reader = asyncio.create_task(client._read_loop())
        return client

    async def __aenter__(self) -> ViewerClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- frames ------------------------------------------------------------------

    def encode(self, msg: dict[str, Any]) -> str | bytes:
        if self.protocol == MSGPACK:
            return msgpack.packb(msg, use_bin_type=True)
        return json.dumps(msg, separators=(",", ":"), ensure_ascii=False)

    def decode(self, frame: str | bytes) -> dict[str, Any]:
        if isinstance(frame, bytes):
            return msgpack.unpackb(frame, raw=False)
        return json.loads(frame)

    async def _recv_frame(self) -> dict[str, Any]:
        return self.decode(await self.ws.recv())

    async def _read_loop(self) -> None:
        try:
            while True:
                await self._reading.wait()
                msg = await self._recv_frame()
                req_id = msg.get("req_id")
                fut = self._pending.pop(req_id, None) if req_id is not None else None
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                else:
                    self.events.put_nowait(msg)
        except _WsClosed as exc:
            if exc.rcvd is not None:
                self.close_code, self.close_reason = exc.rcvd.code, exc.rcvd.reason
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionClosed(self.close_code, self.close_reason))
            self._pending.clear()
            self.events.put_nowait(_CLOSED)

    def pause_reading(self) -> None:
        """Stop reading from the socket (a deliberately slow consumer, for tests)."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    # -- sending -----------------------------------------------------------------

    async def send(self, msg: dict[str, Any]) -> None:
        """Send one message without waiting for a reply."""
        await self.ws.send(self.encode(msg))

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a frame as it is (tests of malformed input)."""
        await self.ws.send(frame)

    async def request(self, msg: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        """Send a command with a fresh ``req_id`` and return its reply.

        An ``error`` reply raises :class:`ReplyError`.
        """
        req_id = msg.get("req_id") or f"r{next(self._ids)}"
        msg = {**msg, "req_id": req_id}
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            await self.send(msg)
            reply = await asyncio.wait_for(fut, timeout_s)
        finally:
            self._pending.pop(req_id, None)
        if reply.get("type") == "error":
            raise ReplyError(reply)
        return reply

    async def ping(self) -> dict[str, Any]:
        """Ping; the reply's ``server_time_ms`` syncs the countdown clock.  Each ping also
        reports the round trip measured by the previous one (``rtt_ms``)."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        msg: dict[str, Any] = {"type": "ping", "t": sent}
        if self.rtt_ms is not None:
            msg["rtt_ms"] = self.rtt_ms
        pong = await self.request(msg)
        self.rtt_ms = int((loop.time() - sent) * 1000)
        self.clock_offset_ms = pong["server_time_ms"] - (time.time() * 1000 - self.rtt_ms / 2)
        return pong

    async def grab(self, *, sale_id: str | None = None, coupon_id: str | None = None,
                   req_id: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
        """Grab a flash sale or a coupon; returns the ``grab_result``.  Retry a timed-out grab
        with the same ``req_id``: the server answers it once."""
        msg: dict[str, Any] = {"type": "grab", "req_id": req_id or f"g{next(self._ids)}-{id(self)}"}
        if sale_id is not None:
            msg["sale_id"] = sale_id
        if coupon_id is not None:
            msg["coupon_id"] = coupon_id
        return await self.request(msg, timeout_s)

    async def claim(self, packet_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Claim a red packet; returns the ``claim_result`` (a repeat: the same amount, ``duplicate``)."""
        return await self.request({"type": "claim", "packet_id": packet_id}, timeout_s)

    # -- receiving ---------------------------------------------------------------

    async def recv(self, timeout_s: float | None = 10.0) -> dict[str, Any]:
        """The next pushed message.  Raises :class:`ConnectionClosed` once the socket closed."""
        item = await asyncio.wait_for(self.events.get(), timeout_s)
        if item is _CLOSED:
            self.events.put_nowait(_CLOSED)
            raise ConnectionClosed(self.close_code, self.close_reason)
        return item

    async def wait_for(
        self, type_: str, timeout_s: float = 10.0, predicate: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """Skip pushed messages until one of ``type_`` (and matching ``predicate``) arrives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            msg = await self.recv(max(0.0, deadline - loop.time()))
            if msg.get("type") == type_ and (predicate is None or predicate(msg)):
                return msg

    async def wait_closed(self, timeout_s: float = 10.0) -> int | None:
        """Wait until the server closes the socket; return its close code."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.recv(timeout_s)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
