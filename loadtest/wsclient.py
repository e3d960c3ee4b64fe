"""A liveserver ``/ws`` client for Locust: websocket-client on gevent, one receive greenlet per socket.

Locust runs its users as gevent greenlets, so the client must block the
greenlet, not the process: websocket-client over gevent's patched sockets
does, where the asyncio SDK (``liveserver.sdk``) cannot run at all.  A
receive greenlet reads every frame as it comes; a reply is handed to the
command waiting for its ``req_id``, anything else to the user's push handler.

What Locust's statistics get (``events.request``):

- request type ``WS``: each command, named ``<command> → <reply>``, timed from
  the send to the reply's arrival; sends without a reply (``like``,
  ``exposure``, ``click``) timed as the send; a lost connection.
- request type ``PUSH``: the frames the server pushes (the caller reports them
  through :meth:`LiveSocket.report_push`), so that broadcasts show in their
  own rows instead of swelling the command rows.

A failure is: no reply within the timeout, an ``error`` frame, a reply of
the wrong type, ``ok: false`` with a reason a correct client never gets, or
the connection closing under us.  Each is reported once, then raised as a
:class:`WsError` for the caller to stop what it was doing.  Once the user
closed the socket itself (Locust stopping it), a command that still fails
(``not connected``, its reply cut off) is raised unreported: the stop, not
the server, ended it.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import gevent
import websocket
from gevent.event import AsyncResult
from locust.env import Environment

__all__ = ["PUSH", "WS", "Closed", "LiveSocket", "NoReply", "Refused", "ServerClock", "ServerError", "WsError"]

WS = "WS"
PUSH = "PUSH"
_SUBPROTOCOL = "liveserver.v1.json"

Message = dict[str, Any]
PushHandler = Callable[[Message, int], None]


class WsError(Exception):
    """A WebSocket exchange that failed; it was reported to Locust before this was raised."""


class ServerError(WsError):
    """The server answered with an ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Refused(WsError):
    """``ok: false`` with a reason that a correct client does not get."""


class Closed(WsError):
    """The connection closed (or never opened)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}" if code else f"closed: {reason}")
        self.code = code


class NoReply(WsError):
    """No reply within the timeout."""


class ServerClock:
    """The server's clock (Redis's: the one that opens sales) as seen from this process.

    Each ping gives an estimate ``server_time_ms - (sent + received) / 2`` whose
    error is at most half the round trip, so the estimate from the shortest
    round trip is kept.  Countdowns fire on this clock, not the local one.
    """

    def __init__(self) -> None:
        self.offset_ms = 0.0
        self.rtt_ms: int | None = None  # the shortest round trip so far: what the next ping reports

    def now_ms(self) -> float:
        return time.time() * 1000 + self.offset_ms

    def seconds_until(self, server_ms: float) -> float:
        return max(0.0, (server_ms - self.now_ms()) / 1000)

    def observe(self, sent_ms: float, received_ms: float, server_ms: float) -> None:
        """One ping's answer.  Only the shortest round trip counts, for the offset and for the
        ``rtt_ms`` a ping reports: a busy load generator holds a pong in its own queue, and a round
        trip swollen by that would make the server's too-soon rule refuse grabs sent on time."""
        rtt = max(0, min(60_000, round(received_ms - sent_ms)))
        if self.rtt_ms is None or rtt <= self.rtt_ms:
            self.rtt_ms = rtt
            self.offset_ms = server_ms - (sent_ms + received_ms) / 2


class LiveSocket:
    """One viewer's or host's connection to one room."""

    def __init__(
        self,
        environment: Environment,
        url: str,
        on_push: PushHandler,
        *,
        reply_timeout_s: float,
        source_ip: str | None = None,
    ) -> None:
        self._events = environment.events
        self._url = url
        self._on_push = on_push
        self._timeout = reply_timeout_s
        self._source_ip = source_ip
        self._ws: websocket.WebSocket | None = None
        self._reader: gevent.Greenlet | None = None
        self._waiters: dict[str, AsyncResult] = {}
        self._prefix = uuid.uuid4().hex[:8]
        self._seq = 0
        self._closing = False
        self.clock = ServerClock()

    @property
    def open(self) -> bool:
        return self._ws is not None and self._reader is not None and not self._reader.dead

    def new_req_id(self) -> str:
        """Unique per connection and user: the server remembers grabs by (drop, user, req_id)."""
        self._seq += 1
        return f"{self._prefix}{self._seq}"

    # -- joining and leaving ----------------------------------------------------------

    def join(self, token: str, room: str, *, last_seq: int | None = None,
             quiet: frozenset[str] = frozenset()) -> Message:
        """Upgrade, ``hello``, ``welcome``: reported as ``hello → welcome``.

        A refusal whose error code is in ``quiet`` is raised without being
        reported: a viewer that comes before its host created the room waits
        and tries again, which is not the server's failure.
        """
        hello: Message = {"type": "hello", "token": token, "room": room, "req_id": "hello"}
        if last_seq:
            hello["last_seq"] = last_seq
        self._discard(self._ws)  # a connection that dropped
        start = time.perf_counter()
        ws: websocket.WebSocket | None = None
        try:
            ws = self._connect()
            sent_ms = time.time() * 1000
            ws.send(json.dumps(hello))
            welcome, size = self._first_reply(ws)
        except ServerError as exc:
            self._discard(ws)
            if exc.code not in quiet:
                self._report(WS, "hello → welcome", start, 0, exc)
            raise
        except Exception as exc:
            self._discard(ws)
            error = exc if isinstance(exc, WsError) else Closed(None, repr(exc))
            self._report(WS, "hello → welcome", start, 0, error)
            raise error from exc
        ws.settimeout(None)  # the receive greenlet waits as long as the room is quiet
        self.clock.observe(sent_ms, time.time() * 1000, welcome["server_time_ms"])
        self._report(WS, "hello → welcome", start, size)
        self._ws, self._closing = ws, False
        self._reader = gevent.spawn(self._read_loop, ws)
        return welcome

    def close(self) -> None:
        """Leave with 1000 and hang up, as an app does when its page closes.

        Waiting for the server's close frame would mean reading the room's
        backlog first: seconds for every leaving viewer of a busy room, while
        Locust waits for its users to stop.
        """
        ws, reader = self._ws, self._reader
        self._closing = True
        self._ws = None
        self._fail_waiters(Closed(None, "closed by the client"))  # the reader may be killed before it sees EOF
        if ws is None:
            return
        with suppress(websocket.WebSocketException, OSError):
            ws.send_close()
        self._discard(ws)
        if reader is not None:
            reader.kill(block=False)

    def _connect(self) -> websocket.WebSocket:
        """The upgrade, from ``source_ip`` when one is given.

        Viewers of a real show come from many addresses, and the server's
        per-address grab budget (100 a second per drop) is meant for one
        address, not a whole audience: on loopback each viewer takes its own
        127.x.y.z.
        """
        sock = None
        if self._source_ip is not None:
            parts = urlsplit(self._url)
            sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=self._timeout,
                                            source_address=(self._source_ip, 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return websocket.create_connection(
            self._url, timeout=self._timeout, subprotocols=[_SUBPROTOCOL], socket=sock,
            skip_utf8_validation=True,  # the pure-Python check would cost more than the rest of a frame
            enable_multithread=True,  # a send lock: greenlets of one user send on the same socket
        )

    def _first_reply(self, ws: websocket.WebSocket) -> tuple[Message, int]:
        """The handshake's answer: ``welcome``, or an ``error`` frame before the close."""
        opcode, frame = ws.recv_data_frame()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise Closed(*_close_status(frame.data))
        msg = json.loads(frame.data)
        if msg.get("type") == "error":
            raise ServerError(str(msg.get("code")), str(msg.get("message")))
        if msg.get("type") != "welcome":
            raise Closed(None, f"expected welcome, got {msg.get('type')!r}")
        return msg, len(frame.data)

    @staticmethod
    def _discard(ws: websocket.WebSocket | None) -> None:
        if ws is not None:
            with suppress(Exception):
                ws.shutdown()

    # -- commands ---------------------------------------------------------------------

    def request(self, msg: Message, name: str, *, expect: str, reasons: frozenset[str] = frozenset(),
                req_id: str | None = None) -> Message:
        """Send a command, wait for the reply with its ``req_id``, report it under ``name``.

        ``reasons``: the ``ok: false`` reasons that are a correct answer to a
        correct client (``sold_out`` to a grab); any other one is a failure.
        """
        req_id = req_id or self.new_req_id()
        waiter = AsyncResult()
        self._waiters[req_id] = waiter
        start = time.perf_counter()
        try:
            self._send({**msg, "req_id": req_id})
            reply, size, received = waiter.get(timeout=self._timeout)
            _check_reply(reply, expect, reasons)
        except gevent.Timeout:
            error = NoReply(f"no {expect} within {self._timeout:g} s")
            self._report_failure(name, start, error)
            raise error from None
        except WsError as exc:
            self._report_failure(name, start, exc)
            raise
        finally:
            self._waiters.pop(req_id, None)
        self._report(WS, name, start, size, end=received)
        return reply

    def send(self, msg: Message, name: str) -> None:
        """A command without a reply (``like``, ``exposure``, ``click``, ``cart``), timed as the send."""
        start = time.perf_counter()
        try:
            self._send(msg)
        except WsError as exc:
            self._report_failure(name, start, exc)
            raise
        self._report(WS, name, start, 0)

    def ping(self) -> Message:
        """``ping → pong``: refreshes the clock offset and tells the server the round trip (``rtt_ms``)."""
        sent_ms = time.time() * 1000
        msg: Message = {"type": "ping", "t": round(sent_ms)}
        if self.clock.rtt_ms is not None:
            msg["rtt_ms"] = self.clock.rtt_ms
        pong = self.request(msg, "ping → pong", expect="pong")
        self.clock.observe(sent_ms, time.time() * 1000, pong["server_time_ms"])
        return pong

    def report_push(self, name: str, size: int, latency_ms: float = 0.0) -> None:
        """A pushed frame, in the ``PUSH`` rows; ``latency_ms``: how late it came, where that is known."""
        self._events.request.fire(request_type=PUSH, name=name, response_time=max(0.0, latency_ms),
                                  response_length=size, exception=None, context={})

    def _send(self, msg: Message) -> None:
        ws = self._ws
        if ws is None or not self.open:
            raise Closed(None, "not connected")
        try:
            ws.send(json.dumps(msg, separators=(",", ":")))
        except (websocket.WebSocketException, OSError) as exc:
            raise Closed(None, f"send failed: {exc!r}") from exc

    # -- the receive greenlet -------------------------------------------------------------

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        while True:
            try:
                opcode, frame = ws.recv_data_frame()
            except Exception as exc:  # reset, EOF, anything: the connection is gone, and the waiters must hear it
                self._lost(None, repr(exc))
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self._lost(*_close_status(frame.data))
                return
            self._dispatch(frame.data)

    def _dispatch(self, data: bytes) -> None:
        received = time.perf_counter()
        try:
            msg = json.loads(data)
        except ValueError as exc:
            self._events.request.fire(request_type=PUSH, name="undecodable frame", response_time=0,
                                      response_length=len(data), exception=exc, context={})
            return
        waiter = self._waiters.get(msg.get("req_id"))  # type: ignore[arg-type]
        if waiter is not None:
            waiter.set((msg, len(data), received))
        elif msg.get("type") == "error":
            error = ServerError(str(msg.get("code")), str(msg.get("message")))
            self._report(WS, f"error {msg.get('code')}", received, len(data), error)
        else:
            try:
                self._on_push(msg, len(data))
            except Exception as exc:  # a bug in a handler must not stop the reading
                self._report(WS, f"push handler ({msg.get('type')})", received, len(data), exc)

    def _lost(self, code: int | None, reason: str) -> None:
        error = Closed(code, reason)
        if not self._closing:
            self._report(WS, "connection lost", time.perf_counter(), 0, error)
        self._fail_waiters(error)

    def _fail_waiters(self, error: WsError) -> None:
        """Every command still waiting for its reply hears that there will be none."""
        for waiter in list(self._waiters.values()):
            if not waiter.ready():
                waiter.set_exception(error)

    def _report_failure(self, name: str, start: float, error: WsError) -> None:
        """A command that failed, unless this user closed the socket itself: a stop race (a reaction
        that sends after Locust stopped its user, a reply cut off by the close) is no failure."""
        if not self._closing:
            self._report(WS, name, start, 0, error)

    def _report(self, kind: str, name: str, start: float, size: int, exc: Exception | None = None,
                *, end: float | None = None) -> None:
        elapsed_ms = ((end or time.perf_counter()) - start) * 1000
        self._events.request.fire(request_type=kind, name=name, response_time=elapsed_ms, response_length=size,
                                  exception=exc, context={})


def _check_reply(reply: Message, expect: str, reasons: frozenset[str]) -> None:
    kind = reply.get("type")
    if kind == "error":
        raise ServerError(str(reply.get("code")), str(reply.get("message")))
    if kind != expect:
        raise Refused(f"expected {expect}, got {kind!r}")
    if reply.get("ok") is False and reply.get("reason") not in reasons:
        raise Refused(f"{expect} refused: {reply.get('reason')!r}")


def _close_status(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return None, ""
    return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8", "replace")
