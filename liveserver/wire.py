"""The WebSocket wire format, pure: subprotocols, close codes, encode and decode.

Nothing here touches a socket, Redis or the event loop.  The gateway feeds it
the payload of each frame and gets back a typed client message or a
:class:`WireError`, which it answers with an ``error`` frame.

Protocol (docs/protocol.md, sections 1 and 3): subprotocols ``liveserver.v1.json``
(text frames, one JSON object each) and ``liveserver.v1.msgpack`` (binary
frames, one msgpack map each, same keys); no subprotocol asked means JSON.
Every message is a map with a ``type``.  A client command may carry
``req_id`` (string of at most 64 characters); its reply echoes it.
"""

from __future__ import annotations

import builtins
import enum
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

import msgpack

__all__ = [
    "DROPPABLE_TYPES",
    "ID_RE",
    "MAX_REQ_ID",
    "Claim",
    "ClientMessage",
    "CloseCode",
    "Danmaku",
    "ErrorCode",
    "Funnel",
    "Grab",
    "Hello",
    "Like",
    "Ping",
    "Protocol",
    "WireError",
    "close_reason",
    "decode",
    "encode",
    "encode_frame",
    "encode_json",
    "encode_msgpack",
    "error_message",
    "find_surrogate",
    "frame",
    "has_surrogate",
    "parse_client_message",
    "surrogate_error",
]

#: Room, product, sale and user ids: 1-64 of ``[A-Za-z0-9_.-]`` (the token ``sub`` rule).
ID_RE: Final = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")

MAX_REQ_ID = 64
MAX_TOKEN = 4096
MAX_DANMAKU_INPUT = 65536  # the frame limits bound it first; over 200 is answered ``too_long``

#: Server messages that may be thinned for a viewer that cannot keep up.  Every
#: other message (room status, drops, results, errors) is control and never dropped.
DROPPABLE_TYPES: Final = frozenset({"danmaku", "likes", "presence"})


class Protocol(enum.StrEnum):
    """The two subprotocols.  Their values are the ``Sec-WebSocket-Protocol`` tokens."""

    JSON = "liveserver.v1.json"
    MSGPACK = "liveserver.v1.msgpack"

    @property
    def binary(self) -> bool:
        return self is Protocol.MSGPACK


class CloseCode(enum.IntEnum):
    """Close codes.  4000-4999 are the application's range (RFC 6455 section 7.4.2).

    The 40xx codes mirror HTTP statuses so that they read at a glance.
    """

    NORMAL = 1000
    INVALID_PAYLOAD = 1007  # a text frame that is not UTF-8 (RFC 6455 section 8.1; aiohttp closes it)
    INTERNAL_ERROR = 1011  # a bug ended the session (logged); reconnect
    SERVICE_RESTART = 1012  # the server drains; reconnect (to another node)
    TRY_AGAIN_LATER = 1013  # Redis did not answer during the join; retry with backoff
    UNAUTHORIZED = 4001  # no hello in time, a bad or expired token, or a first message that is not hello
    FORBIDDEN = 4003  # the token may not join this room (banned)
    ROOM_NOT_FOUND = 4004
    POLICY = 4008  # slow consumer, oversized frame, or too many malformed frames
    TOO_MANY_CONNECTIONS = 4029


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` frame (docs/protocol.md, section 3, "error codes").  The HTTP
    API's codes (``errors.py``) share the names where they mean the same thing."""

    BAD_FRAME = "bad_frame"  # not JSON / msgpack, the wrong kind of frame, a non-string key
    FRAME_TOO_LARGE = "frame_too_large"
    RATE_LIMITED = "rate_limited"
    INVALID = "invalid"  # a field is missing or wrong (``field`` names it)
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED = "unsupported"  # a known type this server does not handle
    ALREADY_JOINED = "already_joined"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    UNAVAILABLE = "unavailable"  # Redis did not answer: retry with the same req_id
    INTERNAL = "internal"  # a bug (logged)


class WireError(Exception):
    """A client frame that cannot be accepted.  Becomes an ``error`` frame."""

    def __init__(
        self, code: str, message: str, *, req_id: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.req_id = req_id
        self.field = field

    def to_message(self) -> dict[str, Any]:
        return error_message(self.code, self.message, req_id=self.req_id, field=self.field)


def error_message(
    code: str, message: str, *, req_id: str | None = None, field: str | None = None
) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if req_id is not None:
        msg["req_id"] = req_id
    if field is not None:
        msg["field"] = field
    return msg


# --------------------------------------------------------------------------- encode


def encode_json(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False)


def encode_msgpack(msg: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(msg, use_bin_type=True)
    return packed


def encode(msg: dict[str, Any], protocol: Protocol) -> str | bytes:
    """One frame's payload: ``str`` for a text frame (JSON), ``bytes`` for binary (msgpack)."""
    return encode_msgpack(msg) if protocol is Protocol.MSGPACK else encode_json(msg)


def close_reason(text: str, limit: int = 120) -> bytes:
    """A close frame's reason: ``text`` as UTF-8, cut to at most ``limit`` bytes on a character
    boundary (a control frame holds 125 bytes with the code; RFC 6455 section 5.5 and 7.1.6:
    the reason must be valid UTF-8, or the client fails the connection with 1007)."""
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore").encode("utf-8")


def frame(payload: bytes, *, text: bool) -> bytes:
    """A complete server-to-client WebSocket frame: FIN, opcode, length, payload (RFC 6455
    section 5.2; server frames are not masked).  Built once, written to many sockets."""
    n = len(payload)
    first = 0x81 if text else 0x82
    if n < 126:
        head = bytes((first, n))
    elif n < 65536:
        head = struct.pack("!BBH", first, 126, n)
    else:
        head = struct.pack("!BBQ", first, 127, n)
    return head + payload


def encode_frame(msg: dict[str, Any], protocol: Protocol) -> bytes:
    """``msg`` as a complete frame for ``protocol``: a text frame of JSON or a binary frame of msgpack."""
    if protocol is Protocol.MSGPACK:
        return frame(encode_msgpack(msg), text=False)
    return frame(encode_json(msg).encode(), text=True)


# --------------------------------------------------------------------------- decode


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: A ``\\uD800``-``\\uDFFF`` escape in JSON text: the only way a lone surrogate gets in
#: (text frames and msgpack strings are strict UTF-8, which cannot carry one).
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def has_surrogate(obj: Any) -> bool:
    """Whether a string anywhere in ``obj`` (keys included) holds a lone surrogate.

    JSON allows ``"\\ud800"``; such a string decodes to ``str`` and fails at its first
    ``.encode()`` (in Redis, in a reply, in PyJWT), so it is refused where it enters.
    ``obj`` comes from ``json.loads``."""
    stack = [obj]  # iterative: json.loads nests deeper than a recursive walk may
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def find_surrogate(obj: dict[str, Any]) -> str | None:
    """The top-level field whose value holds a lone surrogate (``""`` for a key), else None."""
    for key, value in obj.items():
        if _SURROGATE.search(key):
            return ""
        if has_surrogate(value):
            return key
    return None


def surrogate_error(obj: dict[str, Any], where: str) -> WireError:
    """The ``invalid`` error for a map with a lone surrogate under ``where``; it echoes the
    ``req_id`` when that is a clean string."""
    try:
        req_id = _req_id(obj)
    except WireError:
        req_id = None
    if req_id is not None and _SURROGATE.search(req_id):
        req_id = None
    field = where or None
    named = f"'{where}'" if where else "a string"
    return WireError(ErrorCode.INVALID, f"{named} is not valid Unicode (a lone surrogate)", req_id=req_id, field=field)


def decode(payload: str | bytes, protocol: Protocol) -> dict[str, Any]:
    """Decode one frame into a map.  Raises :class:`WireError` (``bad_frame``)."""
    if protocol is Protocol.JSON:
        if not isinstance(payload, str):
            raise WireError(ErrorCode.BAD_FRAME, "this connection speaks liveserver.v1.json: send text frames")
        try:
            obj = json.loads(payload, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise WireError(ErrorCode.BAD_FRAME, f"not valid JSON: {exc}") from None
        if _SURROGATE_ESCAPE.search(payload) and isinstance(obj, dict):
            where = find_surrogate(obj)
            if where is not None:
                raise surrogate_error(obj, where)
    else:
        if not isinstance(payload, bytes):
            raise WireError(
                "bad_frame", "this connection speaks liveserver.v1.msgpack: send binary frames"
            )
        try:
            obj = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except (ValueError, msgpack.UnpackException, TypeError, RecursionError) as exc:
            raise WireError(ErrorCode.BAD_FRAME, f"not valid msgpack: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError(ErrorCode.BAD_FRAME, "a message must be a map with a 'type'")
    if not all(isinstance(k, str) for k in obj):
        raise WireError(ErrorCode.BAD_FRAME, "map keys must be strings")
    return obj


# --------------------------------------------------------------------------- client messages


@dataclass(frozen=True, slots=True)
class Hello:
    token: str
    room: str
    last_seq: int | None = None
    req_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    t: Any = None
    req_id: str | None = None
    #: the client's own last measured round trip (ms), optional: the anti-fraud rules use it
    rtt_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Danmaku:
    text: str
    req_id: str | None = None


@dataclass(frozen=True, slots=True)
class Like:
    count: int
    req_id: str | None = None


@dataclass(frozen=True, slots=True)
class Funnel:
    """``exposure``, ``click`` or ``cart`` of a product: counted for the metrics."""

    kind: str
    product_id: str
    req_id: str | None = None


@dataclass(frozen=True, slots=True)
class Grab:
    """A grab of a flash sale (``sale_id``) or a coupon (``coupon_id``): exactly one is set."""

    req_id: str
    sale_id: str | None = None
    coupon_id: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    packet_id: str
    req_id: str


ClientMessage = Hello | Ping | Danmaku | Like | Funnel | Grab | Claim


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class _Fields:
    """Typed field access on one client message, raising ``invalid`` with the field named."""

    __slots__ = ("obj", "req_id")

    def __init__(self, obj: dict[str, Any], req_id: str | None) -> None:
        self.obj = obj
        self.req_id = req_id

    def fail(self, name: str, message: str) -> WireError:
        return WireError(ErrorCode.INVALID, message, req_id=self.req_id, field=name)

    def id(self, name: str, *, required: bool = True) -> str | None:
        value = self.obj.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not ID_RE.match(value):
            raise self.fail(name, f"'{name}' must be 1-64 of [A-Za-z0-9_.-]")
        return value

    # ``int`` and ``str`` are methods below: inside the class, the annotations name the builtins
    def int(self, name: builtins.str, lo: builtins.int, hi: builtins.int, *, required: bool = True) -> builtins.int | None:
        value = self.obj.get(name)
        if value is None and not required:
            return None
        if not _is_int(value) or not lo <= value <= hi:
            raise self.fail(name, f"'{name}' must be an integer from {lo} to {hi}")
        return value

    def str(self, name: builtins.str, max_len: builtins.int) -> builtins.str:
        value = self.obj.get(name)
        if not isinstance(value, str) or not value:
            raise self.fail(name, f"'{name}' must be a non-empty string")
        if len(value) > max_len:
            raise self.fail(name, f"'{name}' is longer than {max_len} characters")
        return value


def _req_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("req_id")
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REQ_ID:
        raise WireError(ErrorCode.INVALID, f"'req_id' must be a string of 1-{MAX_REQ_ID} characters", field="req_id")
    return value


def _parse_hello(f: _Fields) -> Hello:
    return Hello(
        token=f.str("token", MAX_TOKEN),
        room=f.id("room"),  # type: ignore[arg-type]
        last_seq=f.int("last_seq", 0, 2**63 - 1, required=False),
        req_id=f.req_id,
    )


def _parse_ping(f: _Fields) -> Ping:
    t = f.obj.get("t")
    ok = t is None or _is_int(t) or (isinstance(t, str) and len(t) <= 64)
    ok = ok or (isinstance(t, float) and math.isfinite(t))
    if not ok:
        raise f.fail("t", "'t' must be a number or a string of at most 64 characters")
    return Ping(t=t, req_id=f.req_id, rtt_ms=f.int("rtt_ms", 0, 60_000, required=False))


def _parse_danmaku(f: _Fields) -> Danmaku:
    return Danmaku(text=f.str("text", MAX_DANMAKU_INPUT), req_id=f.req_id)


def _parse_like(f: _Fields) -> Like:
    return Like(count=f.int("count", 1, 100), req_id=f.req_id)  # type: ignore[arg-type]


def _parse_funnel(kind: str) -> Any:
    def parse(f: _Fields) -> Funnel:
        return Funnel(kind=kind, product_id=f.id("product_id"), req_id=f.req_id)  # type: ignore[arg-type]

    return parse


def _parse_grab(f: _Fields) -> Grab:
    if f.req_id is None:
        raise f.fail("req_id", "'grab' needs a 'req_id' (it makes retries safe)")
    sale_id = f.id("sale_id", required=False)
    coupon_id = f.id("coupon_id", required=False)
    if (sale_id is None) == (coupon_id is None):
        raise f.fail("sale_id", "'grab' needs exactly one of 'sale_id' and 'coupon_id'")
    return Grab(req_id=f.req_id, sale_id=sale_id, coupon_id=coupon_id)


def _parse_claim(f: _Fields) -> Claim:
    if f.req_id is None:
        raise f.fail("req_id", "'claim' needs a 'req_id'")
    return Claim(packet_id=f.id("packet_id"), req_id=f.req_id)  # type: ignore[arg-type]


_PARSERS: Final[dict[str, Callable[[_Fields], ClientMessage]]] = {
    "hello": _parse_hello,
    "ping": _parse_ping,
    "danmaku": _parse_danmaku,
    "like": _parse_like,
    "exposure": _parse_funnel("exposure"),
    "click": _parse_funnel("click"),
    "cart": _parse_funnel("cart"),
    "grab": _parse_grab,
    "claim": _parse_claim,
}


def parse_client_message(obj: dict[str, Any]) -> ClientMessage:
    """Check one decoded client map and return its typed message.

    Raises :class:`WireError`: ``invalid`` (a field is wrong; ``field`` names
    it) or ``unknown_type``.  The ``req_id`` is carried whenever it was valid,
    so that the error frame can echo it.
    """
    req_id = _req_id(obj)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise WireError(ErrorCode.INVALID, "a message needs a string 'type'", req_id=req_id, field="type")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise WireError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:32]!r}", req_id=req_id, field="type")
    return parser(_Fields(obj, req_id))
