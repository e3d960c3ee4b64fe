"""Property-based fuzzing of the WebSocket protocol and the HTTP API, against a real node and Redis.

What a client must see, whatever it sends (docs/protocol.md, sections 3, 4 and 9):

- WebSocket, joined: every message gets its normal reply (``pong``, ``ack``,
  ``grab_result``, ``claim_result``; nothing for ``like`` and the funnel events)
  or one ``error`` frame with a sane ``code`` (never ``internal``) that echoes a
  valid ``req_id``; the session stays open, so a ``ping`` right behind still
  gets its ``pong``.  Lone surrogates (``"\\ud800"``) exist only as JSON escapes,
  so every JSON frame here is built by hand with ``ensure_ascii=True``.
- WebSocket, ``hello``: a bad one ends with an ``error`` frame and close 4001
  (4004 for a well-formed unknown room) within a few seconds.
- HTTP: never 500, only the documented statuses, ``{"error": {"code", "message"}}``
  for every 4xx, within a few seconds; the same for hostile path segments.
- A grab with a poisoned ``req_id`` inside a concurrent batch fails alone.

``LIVESERVER_FUZZ_EXAMPLES=N`` raises every example count to at least N for a long run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yarl import URL

from liveserver.auth import mint_token
from liveserver.sdk import HostClient

from .conftest import RunningNode, StartNode, token

# ------------------------------------------------------------------------------------- settings

JSON_PROTO = "liveserver.v1.json"
MSGPACK_PROTO = "liveserver.v1.msgpack"
MAX_FRAME = 4096  # max_frame_bytes: larger frames get ``frame_too_large``
HARD_FRAME = 65536  # hard_frame_bytes: larger frames close 4008 at once
ANSWER_TIMEOUT_S = 5.0  # "a few seconds": longer is a hang

#: the node's limits, raised so that strikes and rates never hide what a message gets
LOOSE: dict[str, Any] = {
    "bad_frame_limit": 10_000, "client_msg_rate": 10_000.0, "client_msg_burst": 10_000,
    "http_write_rate": 100_000.0, "http_write_burst": 100_000,
    "grab_user_rate": 100_000.0, "grab_user_burst": 100_000, "grab_ip_rate": 1e6, "grab_ip_burst": 1_000_000,
    "danmaku_user_rate": 10_000.0, "danmaku_user_burst": 10_000, "dev": True,
}

#: error codes a client may get for its own frames after the join
SANE_CODES = frozenset({"invalid", "bad_frame", "unknown_type", "rate_limited", "not_found", "unsupported",
                        "frame_too_large", "already_joined"})
#: codes of frames rejected before they are decoded: they carry no req_id
UNECHOED_CODES = frozenset({"frame_too_large", "rate_limited", "bad_frame"})
#: what the server pushes on its own; any other frame answers the client
PUSH_TYPES = frozenset({"danmaku", "danmaku_deleted", "likes", "presence", "room", "product_pinned",
                        "flash_sale", "coupon", "red_packet", "metrics", "alert"})
CLIENT_TYPES = frozenset({"hello", "ping", "danmaku", "like", "exposure", "click", "cart", "grab", "claim"})
REPLY_TYPE = {"ping": "pong", "danmaku": "ack", "grab": "grab_result", "claim": "claim_result"}
NO_REPLY = frozenset({"like", "exposure", "click", "cart"})
HTTP_OK_STATUSES = frozenset({400, 401, 403, 404, 409, 413, 415, 422, 429})
ID_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")  # the id rule of docs/protocol.md


def examples(default: int) -> int:
    raw = os.environ.get("LIVESERVER_FUZZ_EXAMPLES", "").strip()
    return max(default, int(raw)) if raw else default


def fuzz(default: int) -> settings:
    return settings(max_examples=examples(default), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------ hand-made encoding


class Raw(str):
    """A JSON fragment written into the frame as it is (deep nesting, huge literals)."""


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # a field left out of the message


def to_json(value: Any, *, ascii_only: bool = True) -> str:
    """JSON text of ``value``, escapes kept: a lone surrogate becomes ``\\ud800``, NaN stays NaN."""
    if isinstance(value, Raw):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only)
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v, ascii_only=ascii_only) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=ascii_only)}:{to_json(v, ascii_only=ascii_only)}"
                              for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, list | tuple):
        return any(has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    return False


def utf8_ok(text: str) -> bool:
    return not has_surrogate(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


class _Undecodable:
    def __repr__(self) -> str:
        return "UNDECODABLE"


UNDECODABLE: Any = _Undecodable()


def server_view(protocol: str, payload: str | bytes) -> Any:
    """What the server decodes ``payload`` to (docs section 1): a map with string keys, or UNDECODABLE."""
    try:
        if protocol == JSON_PROTO:
            if not isinstance(payload, str):
                return UNDECODABLE
            obj = json.loads(payload, parse_constant=_reject_constant)
        else:
            if not isinstance(payload, bytes):
                return UNDECODABLE
            obj = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception:
        return UNDECODABLE
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        return UNDECODABLE
    return obj


def payload_size(payload: str | bytes) -> int:
    return len(payload.encode()) if isinstance(payload, str) else len(payload)


def valid_req_id(value: Any) -> bool:
    """A req_id the server must echo: a string of 1-64 characters (lone surrogates aside)."""
    return isinstance(value, str) and 1 <= len(value) <= 64 and utf8_ok(value)


def show(payload: str | bytes | None, limit: int = 400) -> str:
    text = repr(payload)
    return text if len(text) <= limit else f"{text[:limit]}... ({payload_size(payload or b'')} bytes)"


# ------------------------------------------------------------------------------------ strategies

SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff")
ODD = ("\x00", "\u202e", "\u200f", "\u200b", "\u2028", "\ufeff", "\ufffd", "\uffff", "\x7f", "\r\n", "\\", '"',
       "😀", "👩\u200d👩\u200d👧", "\U0010ffff", "𝕏", "中文", "ｓｃａｍ", "%00", "%ED%A0%80", "null", "__proto__", " ")
EDGE_INTS = (-1, 0, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 10**11 + 1, 10**18)
BIG_INTS = (2**64, 10**30, -(2**63) - 1)  # not representable in msgpack
ODD_FLOATS = (0.5, -0.0, 1.0, 1e308, 5e-324, -1e-7)
NON_FINITE = (float("nan"), float("inf"), -float("inf"))  # JSON writes them as NaN/Infinity: a bad frame
RAW_JSON_VALUES = (Raw("[" * 2000 + "]" * 2000), Raw("{\"a\":" * 50 + "1" + "}" * 50), Raw("1e400"), Raw("-0"),
                   Raw("1" + "0" * 1000), Raw("NaN"), Raw("-Infinity"), Raw("1.0E+2"))


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """``one_of`` with weights (``one_of`` folds repeated branches into one); shrinks to the first."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(lambda s: s)


def _chars(*, surrogates: bool) -> st.SearchStrategy[str]:
    chars = st.characters(codec="utf-8")  # plain characters() yields a lone surrogate now and then
    return chars | st.characters(categories=["Cs"]) if surrogates else chars


def odd_text(max_len: int) -> st.SearchStrategy[str]:
    """A valid but unkind string: NUL, bidi marks, zero-width and astral characters, 1..max_len long."""
    piece = st.sampled_from(ODD) | st.text(_chars(surrogates=False), min_size=1, max_size=8)
    return st.lists(piece, min_size=1, max_size=4).map(lambda parts: "".join(parts)[:max_len]).filter(str.strip)


def laced(strings: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``strings`` with a lone surrogate put in somewhere."""
    return st.builds(lambda s, sur, i: s[:i] + sur + s[i:], strings, st.sampled_from(SURROGATES), st.integers(0, 64))


def hostile_text(*, surrogates: bool) -> st.SearchStrategy[str]:
    """Strings with NUL, bidi marks, astral characters, lone surrogates (if asked), empty or too long."""
    atoms = ODD + SURROGATES if surrogates else ODD
    piece = st.sampled_from(atoms) | st.text(_chars(surrogates=surrogates), min_size=1, max_size=6)
    branches = [
        st.lists(piece, min_size=1, max_size=5).map("".join),
        st.text(_chars(surrogates=surrogates), max_size=64),
        st.sampled_from(("", " ", "\t\n", "x" * 65, "a" * 4097)),
        st.builds(lambda atom, n: atom * n, st.sampled_from((*atoms, "a", "é")), st.integers(33, 120)),
    ]
    if surrogates:
        branches.append(laced(odd_text(40)))
    return st.one_of(branches)


def hostile_values(*, surrogates: bool, binary: bool) -> st.SearchStrategy[Any]:
    """Wrong types and odd values: hostile strings, numbers at the edges, null, bools, lists, maps."""
    ints = st.sampled_from(EDGE_INTS) | st.integers(-5, 5)
    if not binary:
        ints = ints | st.sampled_from(BIG_INTS)
    floats = st.sampled_from(ODD_FLOATS) | st.floats(allow_nan=False, allow_infinity=False)
    leaves = [hostile_text(surrogates=surrogates), ints, floats, st.booleans(), st.none()]
    if binary:  # msgpack's own types: bin, ext, timestamp; and NaN, which it carries
        leaves += [st.binary(max_size=12), st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=6)),
                   st.builds(msgpack.Timestamp, st.integers(0, 2**32 - 1)), st.sampled_from(NON_FINITE)]
    else:
        leaves.append(st.sampled_from(RAW_JSON_VALUES + NON_FINITE))
    keys = hostile_text(surrogates=surrogates) | st.sampled_from(("type", "req_id", "t", "text"))
    if binary:
        keys = keys | st.integers(-3, 3)  # a map key that is not a string: bad_frame
    return st.recursive(st.one_of(leaves),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                        max_leaves=4)


def hostile(*, surrogates: bool, binary: bool) -> st.SearchStrategy[Any]:
    return hostile_text(surrogates=surrogates) | hostile_values(surrogates=surrogates, binary=binary)


def ids() -> st.SearchStrategy[str]:
    return st.from_regex(r"\A[A-Za-z0-9_-]{1,20}\Z")


def good_req_ids() -> st.SearchStrategy[str]:
    return st.uuids().map(lambda u: u.hex[:16]) | odd_text(64)


#: one field of a map: its name, a good value, whether it is required
Field = tuple[str, st.SearchStrategy[Any], bool]


@st.composite
def shaped(draw: st.DrawFn, fields: list[Field], bad: st.SearchStrategy[Any],
           junk_keys: st.SearchStrategy[Any], keep: tuple[str, ...] = ()) -> dict[Any, Any]:
    """A map of ``fields``: all good (mode 0-3), one of them bad or missing (4-6), or anything (7-9).

    Good values still carry unkind strings, so that the deep paths see them too.  The one bad
    field is never one of ``keep``."""
    mode = draw(st.integers(0, 9), label="mode")
    out: dict[Any, Any] = {}
    if mode < 7:
        for name, good, required in fields:
            if required or draw(st.booleans()):
                out[name] = draw(good)
        if mode >= 4 and len(fields) > len(keep):
            victim = draw(st.sampled_from([name for name, _, _ in fields if name not in keep]))
            value = draw(weighted((1, st.just(ABSENT)), (3, bad)))
            if value is ABSENT:
                out.pop(victim, None)
            else:
                out[victim] = value
    else:
        for name, good, _ in fields:
            value = draw(st.one_of(st.just(ABSENT), good, bad))
            if value is not ABSENT:
                out[name] = value
        for k, v in draw(st.dictionaries(junk_keys, bad, max_size=2)).items():
            out.setdefault(k, v)
    order = draw(st.permutations(list(out)))
    return {k: out[k] for k in order}


class Stage:
    """A live room with a product, a flash sale, a coupon and a red packet, all with stock to spare."""

    def __init__(self, node: RunningNode, room: str, sale_id: str, coupon_id: str, packet_id: str) -> None:
        self.node = node
        self.room = room
        self.sale_id = sale_id
        self.coupon_id = coupon_id
        self.packet_id = packet_id

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return f"Stage(room={self.room!r}, sale_id={self.sale_id!r}, coupon_id={self.coupon_id!r})"


ODD_KINDS = ("Ping", "PING", "ping ", "_internal", "welcome", "error", "pong", "grab_result", "")


def client_messages(stage: Stage, *, surrogates: bool, binary: bool) -> st.SearchStrategy[dict[Any, Any]]:
    """A client message of every type (and unknown ones): all good, one field bad, or anything."""
    bad = hostile(surrogates=surrogates, binary=binary)
    t_values = (st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | odd_text(64))
    specs: dict[str, list[Field]] = {  # the order is the shrinking order
        "ping": [("t", t_values, False), ("rtt_ms", st.integers(0, 60_000), False)],
        "grab-sale": [("sale_id", st.just(stage.sale_id), True)],
        "danmaku": [("text", odd_text(200) | st.text(min_size=1, max_size=40) | st.just("x" * 201), True)],
        "grab-coupon": [("coupon_id", st.just(stage.coupon_id), True)],
        "claim": [("packet_id", st.just(stage.packet_id) | ids(), True)],
        "hello": [("token", st.just(token("fz-second")) | odd_text(100), True), ("room", st.just(stage.room), True),
                  ("last_seq", st.integers(0, 2**63 - 1), False)],
        "like": [("count", st.integers(1, 100), True)],
        "exposure": [("product_id", st.just("p1") | ids(), True)],
        "click": [("product_id", st.just("p1") | ids(), True)],
        "cart": [("product_id", st.just("p1") | ids(), True)],
    }

    @st.composite
    def build(draw: st.DrawFn) -> dict[Any, Any]:
        name = draw(weighted((4, st.sampled_from(list(specs))), (1, st.sampled_from(ODD_KINDS))))
        kind = name.split("-")[0]
        fields = [("type", st.just(kind), True), *specs.get(name, []),
                  ("req_id", good_req_ids(), kind in ("grab", "claim"))]
        return draw(shaped(fields, bad, hostile_text(surrogates=surrogates), keep=("type",)))

    return build()


RAW_JSON_FRAMES: tuple[str | bytes, ...] = (
    "", "{", "}", "[]", "null", "1", '"ping"', '{"type":"ping"', '{"type":"ping"}}', "{'type':'ping'}",
    '{"type":"ping","type":"grab"}', '{"type":NaN}', '{"type":"ping","t":Infinity}', "\ufeff{\"type\":\"ping\"}",
    '{"type":"ping","t":' + "[" * 2000 + "]" * 2000 + "}", "[" * 3000 + "]" * 1000, "x" * 70_000,
    b"\x00", b'{"type":"ping"}', b"\xff\xfe",
)
RAW_MSGPACK_FRAMES: tuple[str | bytes, ...] = (
    b"", b"\xc1", b"\x90", b"\xc0", b"\x01", b"\x91" * 2000 + b"\xc0", b"\x82\xa4type", b"\xdf\xff\xff\xff\xff",
    b"\xdb\xff\xff\xff\xff", b"\x81\xa4type\xa2\xff\xfe", b"\x81\x01\x02", b"\x81\xa4type\xc4\x04ping",
    b"\x81\xa4type\xa4ping\x00", b"\x81\xa4type\xd6\xff\x00\x00\x00\x01", b"\xff" * 70_000,
    "text on a binary protocol", '{"type":"ping"}',
)


def frames(stage: Stage, protocol: str, *, surrogates: bool) -> st.SearchStrategy[str | bytes]:
    """One frame's payload: a hostile message of some type, or raw junk."""
    binary = protocol == MSGPACK_PROTO
    messages = client_messages(stage, surrogates=surrogates, binary=binary)
    if binary:
        encoded = messages.map(lambda m: msgpack.packb(m, use_bin_type=True))
        junk = st.sampled_from(RAW_MSGPACK_FRAMES) | st.binary(max_size=24)
    else:
        encoded = st.builds(lambda m, ascii_only: to_json(m, ascii_only=ascii_only or has_surrogate(m)),
                            messages, st.booleans())
        junk = st.sampled_from(RAW_JSON_FRAMES) | st.text(max_size=24)
    return weighted((5, encoded), (1, junk))


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture
async def stage(start_node: StartNode) -> Stage:
    node = await start_node(**LOOSE)
    async with HostClient(node.base_url, token("host1", "host")) as h:
        room = (await h.create_room("Fuzz night", room_id=f"fz-{uuid.uuid4().hex[:8]}"))["room_id"]
        await h.put_product(room, "p1", "Longjing 250 g", 12900)
        await h.start_room(room)
        sale = await h.create_flash_sale(room, "p1", 9900, 1_000_000, per_user_limit=1_000_000, duration_s=3600,
                                         pay_timeout_s=3600)
        coupon = await h.create_coupon(room, "p1", 100, 1_000_000, per_user_limit=1_000_000, duration_s=3600)
        packet = await h.request("POST", f"/api/v1/rooms/{room}/red-packets",
                                 {"total_cents": 100_000, "count": 1000, "expires_s": 3600})
    return Stage(node, room, sale["sale_id"], coupon["coupon_id"], packet["packet_id"])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# ---------------------------------------------------------------------------------- a raw session


def decode_frame(protocol: str, msg: aiohttp.WSMessage) -> dict[str, Any] | str:
    """A server frame as a map, or a description of what is wrong with it."""
    try:
        if msg.type is aiohttp.WSMsgType.TEXT and protocol == JSON_PROTO:
            obj = json.loads(msg.data)
        elif msg.type is aiohttp.WSMsgType.BINARY and protocol == MSGPACK_PROTO:
            obj = msgpack.unpackb(msg.data, raw=False)
        else:
            return f"a {msg.type.name} frame on {protocol}: {show(msg.data)}"
    except Exception as exc:
        return f"an undecodable frame ({exc}): {show(msg.data)}"
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return f"a frame that is not a message: {show(msg.data)}"
    return obj


@dataclass
class Outcome:
    """What came back for one frame: the frames before the ping's pong, then the pong or the close."""

    frames: list[dict[str, Any]]
    pong: dict[str, Any] | None = None
    close_code: int | None = None
    close_reason: str = ""
    oddity: str | None = None

    def describe(self) -> str:
        end = (f"then pong {self.pong}" if self.pong is not None
               else f"then close {self.close_code} {self.close_reason!r}" if self.oddity is None
               else f"then {self.oddity} (close code {self.close_code})")
        return f"frames {self.frames}, {end}"


class WireSession:
    """One joined viewer on a raw aiohttp WebSocket; reopened when the server closed it."""

    def __init__(self, http: aiohttp.ClientSession, stage: Stage, protocol: str) -> None:
        self.http = http
        self.stage = stage
        self.protocol = protocol
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._seq = 0

    def encode(self, msg: dict[str, Any]) -> str | bytes:
        return msgpack.packb(msg, use_bin_type=True) if self.protocol == MSGPACK_PROTO else to_json(msg)

    async def ensure_open(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is not None and not self.ws.closed:
            return self.ws
        if self.ws is not None:
            await self.ws.close()
        ws = await self.http.ws_connect(self.stage.node.ws_url, protocols=(self.protocol,), max_msg_size=0)
        self.ws = ws
        await self._send(self.encode({"type": "hello", "token": token(f"fz-{uuid.uuid4().hex[:10]}"),
                                      "room": self.stage.room}))
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            first = decode_frame(self.protocol, await ws.receive())
        assert isinstance(first, dict) and first["type"] == "welcome", f"no welcome: {first}"
        return ws

    async def _send(self, payload: str | bytes) -> None:
        assert self.ws is not None
        try:
            await (self.ws.send_str(payload) if isinstance(payload, str) else self.ws.send_bytes(payload))
        except ConnectionError:  # the server closed already; the receive below reports how
            pass

    async def exchange(self, payload: str | bytes) -> Outcome:
        """Send ``payload`` and a ``ping`` behind it; collect everything up to that ping's pong."""
        ws = await self.ensure_open()
        self._seq += 1
        sentinel = f"~sentinel-{self._seq}"
        await self._send(payload)
        await self._send(self.encode({"type": "ping", "req_id": sentinel}))
        out = Outcome(frames=[])
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                while True:
                    msg = await ws.receive()
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                        out.close_code, out.close_reason = ws.close_code, str(msg.extra or "")
                        return out
                    frame = decode_frame(self.protocol, msg)
                    if isinstance(frame, str):
                        out.oddity, out.close_code = frame, ws.close_code
                        await ws.close()
                        return out
                    if frame["type"] == "pong" and frame.get("req_id") == sentinel:
                        out.pong = frame
                        return out
                    out.frames.append(frame)
        except TimeoutError:
            raise AssertionError(f"sent {show(payload)}: neither the ping's pong nor a close within "
                                 f"{ANSWER_TIMEOUT_S:g} s; got {out.frames}") from None

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


def check_reply(kind: str, view: dict[str, Any], frame: dict[str, Any]) -> str | None:
    """What is wrong with a normal reply, or None."""
    if frame["type"] == "pong":
        if not isinstance(frame.get("server_time_ms"), int):
            return "a pong without an integer server_time_ms"
        t = view.get("t")
        echoed = frame.get("t")
        return None if echoed == t and type(echoed) is type(t) else f"a pong with t {echoed!r}, not {t!r}"
    if not isinstance(frame.get("ok"), bool):
        return f"a {frame['type']} without a boolean 'ok'"
    if kind == "grab":
        name = "sale_id" if "sale_id" in view else "coupon_id"
        if frame.get(name) != view[name]:
            return f"a grab_result for {name} {frame.get(name)!r}, not {view[name]!r}"
        if frame.get("reason") == "internal":
            return "a grab_result with reason internal"
    if kind == "claim" and frame.get("packet_id") != view.get("packet_id"):
        return f"a claim_result for {frame.get('packet_id')!r}, not {view.get('packet_id')!r}"
    return None


def check_outcome(protocol: str, payload: str | bytes, out: Outcome) -> None:
    """The client's view of one hostile frame (docs/protocol.md sections 3 and 4)."""
    sent = f"sent {show(payload)} on {protocol}; got {out.describe()}"
    size = payload_size(payload)
    view = server_view(protocol, payload) if size <= MAX_FRAME else UNDECODABLE
    answers = [f for f in out.frames if f["type"] not in PUSH_TYPES]
    for f in answers:
        if f["type"] == "error":
            assert f.get("code") in SANE_CODES, f"an error code outside {sorted(SANE_CODES)}: {sent}"
            assert isinstance(f.get("message"), str), f"an error without a message: {sent}"
            event(f"{protocol}: error {f['code']}")
        else:
            event(f"{protocol}: {f['type']}")
    assert out.oddity is None, f"a frame the client cannot read: {sent}"
    if size > HARD_FRAME:
        assert out.close_code == 4008 and not answers, f"a frame over the hard limit must close 4008 at once: {sent}"
        return
    if out.pong is None:  # closed: only the policy close is acceptable, and only after an error frame
        assert out.close_code == 4008 and out.close_reason == "too many malformed frames" and answers, (
            f"the session ended without the ping's pong: {sent}")
        return
    assert len(answers) <= 1, f"more than one answer to one frame: {sent}"
    if size > MAX_FRAME:
        assert [f.get("code") for f in answers] == ["frame_too_large"], f"expected frame_too_large: {sent}"
        return
    if view is UNDECODABLE:
        assert [f.get("code") for f in answers] == ["bad_frame"], f"expected one bad_frame error: {sent}"
        return
    raw_rid = view.get("req_id")
    rid_ok = raw_rid is None or (isinstance(raw_rid, str) and 1 <= len(raw_rid) <= 64)
    kind = view.get("type")
    known = rid_ok and isinstance(kind, str) and kind in CLIENT_TYPES
    if known and kind in NO_REPLY:
        assert all(f["type"] == "error" for f in answers), f"{kind} has no reply, only an error may come: {sent}"
    else:
        assert len(answers) == 1, f"expected exactly one answer (a reply or an error): {sent}"
    for f in answers:
        if f["type"] != "error":
            assert known and f["type"] == REPLY_TYPE.get(kind), f"an answer of the wrong type: {sent}"
            problem = check_reply(kind, view, f)
            assert problem is None, f"{problem}: {sent}"
        if f["type"] == "error" and f["code"] in UNECHOED_CODES:
            continue
        if valid_req_id(raw_rid):
            assert f.get("req_id") == raw_rid, f"the answer does not echo req_id {raw_rid!r}: {sent}"
        elif not has_surrogate(raw_rid):
            assert "req_id" not in f, f"an answer with a req_id the message did not carry: {sent}"


# -------------------------------------------------------------------------------- 1. joined sessions


class Sessions:
    """One joined viewer per protocol, kept across a test's examples (reopened only when closed)."""

    def __init__(self, http: aiohttp.ClientSession, stage: Stage) -> None:
        self.by_protocol = {p: WireSession(http, stage, p) for p in (JSON_PROTO, MSGPACK_PROTO)}

    async def close(self) -> None:
        for s in self.by_protocol.values():
            await s.close()


@pytest.fixture
async def sessions(stage: Stage, http: aiohttp.ClientSession) -> AsyncIterator[Sessions]:
    kept = Sessions(http, stage)
    yield kept
    await kept.close()


@fuzz(300)
@given(data=st.data())
async def test_every_message_type_json(stage: Stage, sessions: Sessions, data: st.DataObject) -> None:
    """Hostile messages of every type over one joined JSON session, lone surrogates included."""
    payload = data.draw(frames(stage, JSON_PROTO, surrogates=True), label="frame")
    check_outcome(JSON_PROTO, payload, await sessions.by_protocol[JSON_PROTO].exchange(payload))


@fuzz(200)
@given(data=st.data())
async def test_every_message_type_msgpack(stage: Stage, sessions: Sessions, data: st.DataObject) -> None:
    """The same over msgpack, which cannot carry a lone surrogate: bin, ext and non-string keys instead."""
    payload = data.draw(frames(stage, MSGPACK_PROTO, surrogates=False), label="frame")
    check_outcome(MSGPACK_PROTO, payload, await sessions.by_protocol[MSGPACK_PROTO].exchange(payload))


# ------------------------------------------------------------------------------------------ hello


@dataclass(frozen=True)
class TokenRef:
    """A token made when the example runs, so that every example joins as a new user."""

    form: str  # valid, surrogate_suffix, surrogate_inside, surrogate_prefix, expired, foreign

    def make(self, user: str) -> tuple[str, bool]:
        """The token text and whether it is a valid viewer token."""
        good = token(user)
        match self.form:
            case "valid":
                return good, True
            case "surrogate_suffix":
                return good + "\ud800", False
            case "surrogate_inside":
                return good[:20] + "\udfff" + good[20:], False
            case "surrogate_prefix":
                return "\udbff" + good, False
            case "expired":
                return token(user, ttl_s=-10), False
            case "foreign":
                return mint_token("another-secret-0123456789-abcdefghijkl", user, "viewer"), False
            case _:
                raise ValueError(self.form)


def hello_messages(stage: Stage, *, surrogates: bool, binary: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A first message: a hello, well formed (with a good, expired, foreign or surrogate-laced token), one
    field bad, or anything; sometimes of another type."""
    forms = ("valid", "valid", "valid", "expired", "foreign") + (
        ("surrogate_suffix", "surrogate_inside", "surrogate_prefix") if surrogates else ())
    first_types = weighted(  # now and then a first message that is not a hello, its type named in the error
        (7, st.just("hello")), (1, st.sampled_from(sorted(CLIENT_TYPES - {"hello"}) + list(ODD_KINDS))),
        (2, st.builds(lambda atom, n: atom * n, st.sampled_from(("é", "😀", "中", "¡", "\x1f", "ab")),
                      st.integers(20, 60))))
    fields: list[Field] = [
        ("type", first_types, True),
        ("token", st.sampled_from(forms).map(TokenRef), True),
        ("room", st.just(stage.room) | st.from_regex(r"\Ano-such-[a-z0-9]{1,12}\Z"), True),
        ("last_seq", st.integers(0, 2**63 - 1), False),
        ("req_id", good_req_ids(), False),
    ]
    return shaped(fields, hostile(surrogates=surrogates, binary=binary), hostile_text(surrogates=surrogates),
                  keep=("type",))


def resolve_tokens(msg: dict[str, Any], user: str) -> tuple[dict[str, Any], str | None]:
    """``msg`` with its TokenRef made into a token; the token if it is a valid one."""
    ref = msg.get("token")
    if not isinstance(ref, TokenRef):
        return msg, None
    text, valid = ref.make(user)
    return {**msg, "token": text}, (text if valid else None)


def hello_verdict(view: Any, size: int, valid_token: str | None, room: str) -> set[tuple[str, int | None]]:
    """The acceptable (first frame, close code) pairs for one first message (docs sections 2-4): the
    first frame is ``"welcome"``, ``"error:<code>"``, or ``"close"`` when none comes."""
    if size > HARD_FRAME:
        return {("close", 4008)}
    if view is UNDECODABLE:
        return {("error:bad_frame", 4001)}
    verdict: set[tuple[str, int | None]] = set()
    if has_surrogate(view):  # a server may refuse lone surrogates anywhere in a frame
        verdict |= {("error:invalid", 4001), ("error:bad_frame", 4001), ("error:unauthorized", 4001)}
    kind, rid, tok, rm, seq = (view.get(k) for k in ("type", "req_id", "token", "room", "last_seq"))
    if kind != "hello":  # not a hello at all: the first message must be one
        verdict.add(("error:unauthorized", 4001))
    parses = (kind == "hello" and (rid is None or (isinstance(rid, str) and 1 <= len(rid) <= 64))
              and isinstance(tok, str) and 1 <= len(tok) <= 4096
              and isinstance(rm, str) and ID_RE.match(rm) is not None
              and (seq is None or (isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**63)))
    if not parses:
        verdict |= {("error:invalid", 4001), ("error:bad_frame", 4001), ("error:unknown_type", 4001)}
    elif tok != valid_token:
        verdict.add(("error:unauthorized", 4001))
    elif rm != room:
        verdict.add(("error:not_found", 4004))
    else:
        verdict.add(("welcome", None))
    return verdict


def is_close_reason(reason: str, message: str) -> bool:
    """``reason`` is ``message`` cut to at most 120 bytes, at a character boundary (docs section 4)."""
    cut, whole = reason.encode(), message.encode()
    return whole.startswith(cut) and len(cut) <= 120 and (cut == whole or len(cut) > 116)


async def run_hello(http: aiohttp.ClientSession, url: str, protocol: str | None,
                    payload: str | bytes) -> tuple[list[dict[str, Any]], int | None, str, str | None]:
    """A fresh socket, one ``hello``: the frames, the close code and reason, and anything unreadable."""
    got: list[dict[str, Any]] = []
    wire = protocol or JSON_PROTO
    async with http.ws_connect(url, protocols=(protocol,) if protocol else (), max_msg_size=0) as ws:
        try:
            await (ws.send_str(payload) if isinstance(payload, str) else ws.send_bytes(payload))
        except ConnectionError:
            pass
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            while True:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    return got, ws.close_code, str(msg.extra or ""), None
                frame = decode_frame(wire, msg)
                if isinstance(frame, str):
                    return got, ws.close_code, "", frame
                got.append(frame)
                if frame["type"] == "welcome":
                    return got, None, "", None


@fuzz(250)
@given(data=st.data())
async def test_hostile_hello_is_refused_cleanly(stage: Stage, http: aiohttp.ClientSession,
                                                data: st.DataObject) -> None:
    """A fresh socket per example; a bad hello gets an error frame and 4001 (4004: unknown room), never a hang."""
    protocol = data.draw(st.sampled_from((JSON_PROTO, JSON_PROTO, MSGPACK_PROTO, None)), label="protocol")
    binary = protocol == MSGPACK_PROTO
    template = data.draw(hello_messages(stage, surrogates=not binary, binary=binary), label="hello")
    msg, valid_token = resolve_tokens(template, f"hf-{uuid.uuid4().hex[:12]}")
    if binary:
        payload: str | bytes = msgpack.packb(msg, use_bin_type=True)
    else:
        payload = to_json(msg, ascii_only=has_surrogate(msg) or data.draw(st.booleans(), label="ascii"))
    wire = protocol or JSON_PROTO
    verdict = hello_verdict(server_view(wire, payload), payload_size(payload), valid_token, stage.room)
    try:
        got, code, reason, oddity = await run_hello(http, stage.node.ws_url, protocol, payload)
    except TimeoutError:
        raise AssertionError(f"hello {show(payload)}: no close within {ANSWER_TIMEOUT_S:g} s (a hang)") from None
    seen = f"hello {show(payload)} on {wire}: got {got}, close {code} {reason!r}"
    seen += f", then {oddity}" if oddity else ""
    assert oddity is None, f"the client cannot read the answer (an HTTP error, a close reason not UTF-8): {seen}"
    first = ("welcome" if got and got[0]["type"] == "welcome"
             else f"error:{got[0].get('code')}" if got and got[0]["type"] == "error" else "close")
    assert (first, code) in verdict, f"expected one of {sorted(verdict, key=str)}: {seen}"
    event(f"hello: {first} {code}")
    if first.startswith("error"):
        err = got[0]
        assert len(got) == 1 and isinstance(err.get("message"), str) and "field" not in err, seen
        assert is_close_reason(reason, err["message"]), f"the close reason is not the message, cut: {seen}"
        rid = msg.get("req_id")
        if valid_req_id(rid) and err["code"] not in UNECHOED_CODES:
            assert err.get("req_id") == rid, f"the error does not echo req_id {rid!r}: {seen}"


@pytest.mark.parametrize("kind", ["é" * 40, "中" * 40, "x" * 20 + "中" * 30, "\x1f" * 14 + "¡"])
@pytest.mark.parametrize("protocol", [JSON_PROTO, MSGPACK_PROTO])
async def test_refused_hello_close_reason_is_utf8(stage: Stage, http: aiohttp.ClientSession, protocol: str,
                                                  kind: str) -> None:
    """A first message of an unknown non-ASCII type: its error message names the type, and the close
    reason repeats that message cut to 120 bytes, which must still be UTF-8 (RFC 6455 section 5.5.1)."""
    msg = {"type": kind, "req_id": "h1"}
    payload = msgpack.packb(msg, use_bin_type=True) if protocol == MSGPACK_PROTO else to_json(msg)
    got, code, reason, oddity = await run_hello(http, stage.node.ws_url, protocol, payload)
    seen = f"first message {show(payload)} on {protocol}: got {got}, close {code} {reason!r}, then {oddity}"
    assert oddity is None, f"a close frame whose reason is not UTF-8: {seen}"
    assert [f.get("code") for f in got] == ["unknown_type"] and code == 4001, seen
    assert is_close_reason(reason, got[0]["message"]), seen


# ------------------------------------------------------------------------------------ 2. HTTP bodies


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {room}, {sale}, {coupon}, {packet} are the stage's
    role: str | None  # whose token: host (the room's), viewer, admin, or none
    fields: tuple[Field, ...] = ()


def _titles() -> st.SearchStrategy[str]:
    return odd_text(100)


def _words() -> st.SearchStrategy[list[str]]:
    return st.lists(odd_text(50), max_size=4)


def _n(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/api/v1/rooms", "host", (("title", _titles(), True), ("room_id", ids(), False))),
    Endpoint("PUT", "/api/v1/rooms/{room}/products/p2", "host",
             (("title", _titles(), True), ("price_cents", _n(0, 10**11), True))),
    Endpoint("POST", "/api/v1/rooms/{room}/start", "host"),
    Endpoint("POST", "/api/v1/rooms/{room}/products/p1/pin", "host"),
    Endpoint("POST", "/api/v1/rooms/{room}/bans", "host", (("user", ids(), True), ("seconds", _n(1, 2_592_000), True))),
    Endpoint("POST", "/api/v1/rooms/{room}/mutes", "host",
             (("user", ids(), True), ("seconds", _n(1, 2_592_000), True))),
    Endpoint("PUT", "/api/v1/rooms/{room}/slow-mode", "host", (("seconds", _n(0, 3600), True),)),
    Endpoint("PUT", "/api/v1/rooms/{room}/banned-words", "host", (("words", _words(), True),)),
    Endpoint("PATCH", "/api/v1/rooms/{room}/banned-words", "host",
             (("add", _words(), False), ("remove", _words(), False))),
    Endpoint("PUT", "/api/v1/banned-words", "admin", (("words", _words(), True),)),
    Endpoint("PATCH", "/api/v1/banned-words", "admin", (("add", _words(), False), ("remove", _words(), False))),
    Endpoint("POST", "/api/v1/rooms/{room}/flash-sales", "host", (
        ("product_id", st.just("p1"), True), ("price_cents", _n(0, 10**11), True), ("stock", _n(1, 1000), True),
        ("per_user_limit", _n(1, 3), False), ("countdown_s", _n(0, 600), False),
        ("duration_s", _n(1, 604_800), False), ("pay_timeout_s", _n(1, 86_400), False), ("sale_id", ids(), False))),
    Endpoint("POST", "/api/v1/rooms/{room}/coupons", "host", (
        ("product_id", st.just("p1"), True), ("discount_cents", _n(1, 10**11), True), ("stock", _n(1, 1000), True),
        ("per_user_limit", _n(1, 3), False), ("countdown_s", _n(0, 600), False),
        ("duration_s", _n(1, 604_800), False), ("coupon_id", ids(), False))),
    Endpoint("POST", "/api/v1/rooms/{room}/red-packets", "host", (
        ("total_cents", _n(50, 10**6), True), ("count", _n(1, 50), True), ("countdown_s", _n(0, 600), False),
        ("expires_s", _n(1, 86_400), False), ("packet_id", st.from_regex(r"\A[A-Za-z0-9_.]{1,40}\Z"), False))),
    Endpoint("POST", "/api/v1/rooms/{room}/red-packet-rains", "host", (
        ("total_cents", _n(15, 10**6), True), ("drops", _n(1, 3), True), ("packets_per_drop", _n(1, 5), True),
        ("interval_s", _n(1, 3600), False), ("per_user_cap", _n(0, 1), False), ("countdown_s", _n(0, 600), False),
        ("expires_s", _n(1, 86_400), False), ("rain_id", st.from_regex(r"\A[A-Za-z0-9_]{1,20}\Z"), False))),
    Endpoint("POST", "/api/v1/flash-sales/{sale}/grab", "viewer", (("req_id", good_req_ids(), True),)),
    Endpoint("POST", "/api/v1/coupons/{coupon}/grab", "viewer", (("req_id", good_req_ids(), True),)),
    Endpoint("POST", "/api/v1/red-packets/{packet}/claim", "viewer"),
    Endpoint("PATCH", "/api/v1/blocklist", "admin",
             (("add", st.lists(ids(), max_size=3), False), ("remove", st.lists(ids(), max_size=3), False))),
    Endpoint("POST", "/api/v1/dev/tokens", None, (
        ("sub", ids(), True), ("role", st.sampled_from(("viewer", "host", "admin")), False),
        ("name", odd_text(32), False), ("ttl_s", _n(1, 2_592_000), False))),
)

RAW_BODIES: tuple[bytes, ...] = (
    b"", b" ", b"{", b"[]", b"null", b"1", b'"x"', b"NaN", b"\x00", b"\xff\xfe", b"\xed\xa0\x80",
    b'{"title":"\xed\xa0\x80"}', b'{"title":"\xff"}', b'{"title":"\xc0\xaf"}', b"\xef\xbb\xbf{}",
    '{"title":"x"}'.encode("utf-16"), b'{"title":"a","title":"\\ud800"}', b'{"title":"x"} trailing',
    b"{'title':'x'}", b'{"title":' + b"1" * 5000 + b"}", b'{"seconds":1e400}', b'{"seconds":-0}',
    b"[" * 30_000 + b"]" * 30_000, b'{"words":' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    b"{" + b" " * 70_000 + b"}", b'{"req_id":"\\ud800"}', b'{"req_id":"\\udfff\\ud800"}',
    b'{"req_id":"\\u0000"}', b'{"title":"\\ud83d"}', b'{"sub":"\\ud800","role":"viewer"}',
)
CONTENT_TYPES = (None, "application/json", "application/json; charset=utf-8", "text/plain",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz", "application/msgpack")


def bodies(endpoint: Endpoint) -> st.SearchStrategy[bytes]:
    """A JSON object for ``endpoint`` (all good, one field bad, or anything), a non-object, or raw bytes."""
    bad = hostile(surrogates=True, binary=False)
    objects = st.builds(lambda body, ascii_only: to_json(body, ascii_only=ascii_only or has_surrogate(body)).encode(),
                        shaped(list(endpoint.fields), bad, hostile_text(surrogates=True)), st.booleans())
    non_objects = hostile_values(surrogates=True, binary=False).map(lambda v: to_json(v).encode())
    return weighted((6, objects), (1, non_objects), (1, st.sampled_from(RAW_BODIES)), (1, st.binary(max_size=32)))


def caller_token(role: str | None) -> str | None:
    """The room's host, a viewer, an admin, or no token at all."""
    return {"host": token("host1", "host"), "viewer": token("fz-viewer"), "admin": token("fz-admin", "admin"),
            None: None}[role]


async def call(http: aiohttp.ClientSession, method: str, url: URL, *, tok: str | None, body: bytes | None,
               content_type: str | None = None) -> tuple[int, bytes, float]:
    """One request: the status, the raw body and how long the answer took."""
    headers = {}
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    started = time.monotonic()
    try:
        async with asyncio.timeout(3 * ANSWER_TIMEOUT_S), http.request(
            method, url, data=body, headers=headers, allow_redirects=False
        ) as resp:
            raw = await resp.read()
    except TimeoutError:
        raise AssertionError(f"{method} {url} body {show(body)}: no answer within {3 * ANSWER_TIMEOUT_S:g} s") from None
    return resp.status, raw, time.monotonic() - started


def check_http(what: str, status: int, raw: bytes, elapsed: float) -> None:
    """Never 500, only documented statuses, the error shape on every 4xx, a JSON body otherwise."""
    seen = f"{what} -> {status} {show(raw, 300)}"
    event(f"http {status}")
    assert elapsed < ANSWER_TIMEOUT_S, f"took {elapsed:.1f} s: {seen}"
    assert status != 500, f"500: {seen}"
    assert 200 <= status < 300 or status in HTTP_OK_STATUSES, f"a status outside 2xx/{sorted(HTTP_OK_STATUSES)}: {seen}"
    if status == 204:
        return
    try:
        body = json.loads(raw)
    except ValueError:
        raise AssertionError(f"the body is not JSON: {seen}") from None
    if status >= 400:
        err = body.get("error") if isinstance(body, dict) else None
        assert isinstance(err, dict) and isinstance(err.get("code"), str) and isinstance(err.get("message"), str), (
            f"a 4xx without {{'error': {{'code', 'message'}}}}: {seen}")


def fill(path: str, stage: Stage) -> str:
    return path.format(room=stage.room, sale=stage.sale_id, coupon=stage.coupon_id, packet=stage.packet_id)


@fuzz(300)
@given(data=st.data())
async def test_http_bodies(stage: Stage, http: aiohttp.ClientSession, data: st.DataObject) -> None:
    """Hostile bodies on every JSON route that takes one: never 500, always the error shape."""
    endpoint = data.draw(st.sampled_from(ENDPOINTS), label="endpoint")
    body = data.draw(bodies(endpoint), label="body")
    content_type = data.draw(st.sampled_from(CONTENT_TYPES), label="content_type")
    path = fill(endpoint.path, stage)
    status, raw, elapsed = await call(http, endpoint.method, URL(stage.node.base_url + path), body=body,
                                      tok=caller_token(endpoint.role), content_type=content_type)
    check_http(f"{endpoint.method} {path} ({endpoint.role or 'no token'}, {content_type}) body {show(body, 300)}",
               status, raw, elapsed)


# ------------------------------------------------------------------------------------- path segments

PATH_ROUTES: tuple[tuple[str, str, str | None, bytes | None], ...] = (
    ("GET", "/api/v1/rooms/{x}", "viewer", None),
    ("POST", "/api/v1/rooms/{x}/start", "host", None),
    ("GET", "/api/v1/rooms/{x}/metrics", "host", None),
    ("PUT", "/api/v1/rooms/{room}/products/{x}", "host", b'{"title":"Tea","price_cents":100}'),
    ("PUT", "/api/v1/rooms/{x}/products/p1", "host", b'{"title":"Tea","price_cents":100}'),
    ("POST", "/api/v1/rooms/{room}/products/{x}/pin", "host", None),
    ("POST", "/api/v1/rooms/{x}/bans", "host", b'{"user":"mallory","seconds":5}'),
    ("DELETE", "/api/v1/rooms/{room}/danmaku/{x}", "host", None),
    ("DELETE", "/api/v1/rooms/{room}/mutes/{x}", "host", None),
    ("PUT", "/api/v1/rooms/{x}/slow-mode", "host", b'{"seconds":0}'),
    ("GET", "/api/v1/rooms/{x}/banned-words", "host", None),
    ("POST", "/api/v1/rooms/{x}/flash-sales", "host", b'{"product_id":"p1","price_cents":1,"stock":1}'),
    ("GET", "/api/v1/rooms/{room}/flash-sales/{x}", "viewer", None),
    ("GET", "/api/v1/rooms/{x}/flash-sales/{sale}", "viewer", None),
    ("GET", "/api/v1/rooms/{room}/coupons/{x}", "viewer", None),
    ("GET", "/api/v1/rooms/{room}/red-packets/{x}", "viewer", None),
    ("POST", "/api/v1/flash-sales/{x}/grab", "viewer", b'{"req_id":"pg-1"}'),
    ("POST", "/api/v1/coupons/{x}/grab", "viewer", b'{"req_id":"pg-2"}'),
    ("POST", "/api/v1/red-packets/{x}/claim", "viewer", None),
    ("GET", "/api/v1/orders/{x}", "viewer", None),
    ("POST", "/api/v1/orders/{x}/pay", "admin", None),
    ("POST", "/api/v1/orders/{x}/cancel", "viewer", None),
)
PCT_ATOMS = ("%00", "%ED%A0%80", "%ED%BF%BF", "%ED%A0%80%ED%B0%80", "%FF", "%FE%FF", "%C0%AF", "%C0%80", "%E2%80%AE",
             "%E2%80%8F", "%F0%9F%98%80", "%F4%90%80%80", "%0D%0A", "%20", "%25", "%2E", "%2E%2E", "%7F", "%E0%80",
             "%", "%G1", "%%", "~", "-", ".", "_")


def segments() -> st.SearchStrategy[str]:
    pct = st.binary(min_size=1, max_size=24).map(lambda b: "".join(f"%{c:02X}" for c in b))
    piece = st.sampled_from(PCT_ATOMS) | pct | st.text(alphabet="abcXYZ019-_.~", min_size=1, max_size=6)
    long = st.builds(lambda atom, n: atom * (n // len(atom)), st.sampled_from((*PCT_ATOMS[:12], "a", "9")),
                     st.integers(65, 3000))
    return st.one_of(st.lists(piece, min_size=1, max_size=5).map("".join), long)


@fuzz(200)
@given(data=st.data())
async def test_http_path_segments(stage: Stage, http: aiohttp.ClientSession, data: st.DataObject) -> None:
    """Room, product, drop, packet, danmaku, user and order ids made of percent-encoded hostile bytes."""
    method, template, role, body = data.draw(st.sampled_from(PATH_ROUTES), label="route")
    segment = data.draw(segments(), label="segment")
    path = fill(template.replace("{x}", "\0"), stage).replace("\0", segment)
    url = URL(stage.node.base_url + path, encoded=True)
    status, raw, elapsed = await call(http, method, url, tok=caller_token(role), body=body)
    check_http(f"{method} {path}", status, raw, elapsed)


# ---------------------------------------------------------------------------- 3. a poisoned batch

BATCH_VIEWERS = 60
BATCH_STOCK = 50
POISONED = frozenset({0, 7, 23, 41, 59})


async def first_answer(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | str:
    """The first frame that is not a push (or what ended the session)."""
    async with asyncio.timeout(2 * ANSWER_TIMEOUT_S):
        while True:
            msg = await ws.receive()
            frame = decode_frame(JSON_PROTO, msg)
            if isinstance(frame, str):
                return f"{frame} (close {ws.close_code} {msg.extra!r})"
            if frame["type"] not in PUSH_TYPES:
                return frame


async def test_poisoned_grab_in_a_concurrent_batch(start_node: StartNode, http: aiohttp.ClientSession) -> None:
    """60 viewers grab a sale of 50 at once; five of them with a lone surrogate in their req_id. The
    poisoned grabs get ``invalid`` and the others are decided as if the poisoned ones were not there."""
    node = await start_node(**LOOSE)
    async with HostClient(node.base_url, token("host1", "host")) as h:
        room = (await h.create_room("Poison", room_id=f"pz-{uuid.uuid4().hex[:8]}"))["room_id"]
        await h.put_product(room, "tea", "Longjing", 12900)
        await h.start_room(room)
        sale_id = (await h.create_flash_sale(room, "tea", 9900, BATCH_STOCK, per_user_limit=1))["sale_id"]
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        try:
            for i in range(BATCH_VIEWERS):
                ws = await http.ws_connect(node.ws_url, protocols=(JSON_PROTO,))
                sockets.append(ws)
                await ws.send_str(to_json({"type": "hello", "token": token(f"buyer-{i}"), "room": room}))
                welcome = await first_answer(ws)
                assert isinstance(welcome, dict) and welcome["type"] == "welcome", welcome
            req_ids = [f"g-{i}-\ud800" if i in POISONED else f"g-{i}" for i in range(BATCH_VIEWERS)]
            grabs = [to_json({"type": "grab", "sale_id": sale_id, "req_id": r}) for r in req_ids]
            batcher = node.services.grabs.batcher  # its counters show that the grabs went in batches
            calls, batched = batcher.calls, batcher.grabs
            await asyncio.gather(*(ws.send_str(g) for ws, g in zip(sockets, grabs, strict=True)))
            answers = await asyncio.gather(*(first_answer(ws) for ws in sockets))
            assert batcher.calls - calls < batcher.grabs - batched, "no grabs were batched: the test proves nothing"
            problems, orders = [], []
            for i, (grab, answer) in enumerate(zip(grabs, answers, strict=True)):
                if i in POISONED:
                    if not (isinstance(answer, dict) and answer["type"] == "error" and answer.get("code") == "invalid"):
                        problems.append(f"poisoned {grab} -> {answer}")
                    continue
                if not (isinstance(answer, dict) and answer["type"] == "grab_result"
                        and answer.get("req_id") == req_ids[i] and answer.get("sale_id") == sale_id
                        and (answer.get("ok") is True or answer.get("reason") in ("sold_out", "limit"))):
                    problems.append(f"well-formed {grab} -> {answer}")
                elif answer["ok"]:
                    orders.append(answer.get("order_id"))
            assert not problems, f"{len(problems)} grabs answered wrongly:\n" + "\n".join(problems)
            good = BATCH_VIEWERS - len(POISONED)
            assert len(orders) == min(BATCH_STOCK, good) and len(set(orders)) == len(orders), orders
            sale = await h.get_flash_sale(room, sale_id)
            assert sale["stock_left"] == BATCH_STOCK - len(orders) == BATCH_STOCK - sale["pending"], sale
            for i, ws in enumerate(sockets):  # every session, the poisoned ones too, still answers
                await ws.send_str(to_json({"type": "ping", "req_id": f"after-{i}"}))
            pongs = await asyncio.gather(*(first_answer(ws) for ws in sockets))
            dead = [f"buyer-{i}: {p}" for i, p in enumerate(pongs)
                    if not (isinstance(p, dict) and p["type"] == "pong" and p.get("req_id") == f"after-{i}")]
            assert not dead, "sessions that no longer answer a ping:\n" + "\n".join(dead)
        finally:
            for ws in sockets:
                await ws.close()

