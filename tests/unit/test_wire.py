"""The wire codec: encode/decode for both subprotocols and client message parsing."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveserver.wire import (
    DROPPABLE_TYPES,
    MAX_DANMAKU_INPUT,
    MAX_REQ_ID,
    Claim,
    CloseCode,
    Danmaku,
    Funnel,
    Grab,
    Hello,
    Like,
    Ping,
    Protocol,
    WireError,
    decode,
    encode,
    encode_json,
    encode_msgpack,
    error_message,
    parse_client_message,
)

BOTH = [Protocol.JSON, Protocol.MSGPACK]

REPRESENTATIVE: list[dict[str, Any]] = [
    {"type": "hello", "token": "abc.def.ghi", "room": "room-1", "last_seq": 42, "req_id": "r1"},
    {"type": "danmaku", "text": "你好，直播间！🎉🔥 買って"},
    {
        "type": "danmaku",
        "seq": 7,
        "items": [
            {"id": "d1", "user": "u1", "name": "小王", "text": "第一 👍", "ts_ms": 1_700_000_000_000},
            {"id": "d2", "user": "u2", "name": "Zoë", "text": "", "ts_ms": 1_700_000_000_001},
        ],
    },
    {"type": "pong", "t": 1.5, "server_time_ms": 2**53 + 1},
    {"type": "likes", "total": 2**63 - 1, "neg": -(2**63)},
    {"type": "metrics", "series": {"online": [[1, 2], [3, [4, [5]]]], "ctr": 0.25}, "ok": True, "x": None},
    {"type": "error", "code": "invalid", "message": "bad", "field": "count", "req_id": "z" * 64},
]


# --------------------------------------------------------------------------- protocol and close codes


def test_protocol_values_and_binary_flag() -> None:
    assert Protocol.JSON == "liveserver.v1.json"
    assert Protocol.MSGPACK == "liveserver.v1.msgpack"
    assert Protocol("liveserver.v1.msgpack") is Protocol.MSGPACK
    assert Protocol.MSGPACK.binary is True
    assert Protocol.JSON.binary is False


def test_close_codes_match_contract() -> None:
    assert CloseCode.UNAUTHORIZED == 4001
    assert CloseCode.FORBIDDEN == 4003
    assert CloseCode.ROOM_NOT_FOUND == 4004
    assert CloseCode.POLICY == 4008
    assert CloseCode.TOO_MANY_CONNECTIONS == 4029
    assert CloseCode.SERVICE_RESTART == 1012
    assert CloseCode.NORMAL == 1000
    # application codes live in the 4000-4999 range
    for code in (CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.ROOM_NOT_FOUND,
                 CloseCode.POLICY, CloseCode.TOO_MANY_CONNECTIONS):
        assert 4000 <= int(code) <= 4999


def test_droppable_types_are_the_thinnable_ones_only() -> None:
    assert {"danmaku", "likes", "presence"} == DROPPABLE_TYPES
    for control in ("room", "flash_sale", "coupon", "red_packet", "grab_result", "claim_result", "error"):
        assert control not in DROPPABLE_TYPES


# --------------------------------------------------------------------------- encode / decode


@pytest.mark.parametrize("msg", REPRESENTATIVE)
@pytest.mark.parametrize("protocol", BOTH)
def test_round_trip(msg: dict[str, Any], protocol: Protocol) -> None:
    payload = encode(msg, protocol)
    if protocol is Protocol.JSON:
        assert isinstance(payload, str)
    else:
        assert isinstance(payload, bytes)
    assert decode(payload, protocol) == msg


def test_encode_json_is_compact_and_keeps_non_ascii() -> None:
    text = encode_json({"type": "danmaku", "text": "你好🎉"})
    assert text == '{"type":"danmaku","text":"你好🎉"}'
    assert "\\u" not in text
    assert json.loads(text) == {"type": "danmaku", "text": "你好🎉"}


def test_encode_msgpack_uses_str_and_bin_types() -> None:
    data = encode_msgpack({"type": "x", "text": "弹幕", "blob": b"\x00\x01"})
    back = msgpack.unpackb(data, raw=False)
    assert back == {"type": "x", "text": "弹幕", "blob": b"\x00\x01"}
    assert isinstance(back["text"], str)
    assert isinstance(back["blob"], bytes)


def test_encode_dispatches_on_protocol() -> None:
    msg = {"type": "ping", "t": 1}
    assert encode(msg, Protocol.JSON) == encode_json(msg)
    assert encode(msg, Protocol.MSGPACK) == encode_msgpack(msg)


def test_json_big_int_beyond_64_bits_round_trips() -> None:
    msg = {"type": "x", "n": 10**30, "m": -(10**30)}
    assert decode(encode(msg, Protocol.JSON), Protocol.JSON) == msg


def _bad_frame(payload: Any, protocol: Protocol) -> WireError:
    with pytest.raises(WireError) as info:
        decode(payload, protocol)
    err = info.value
    assert err.code == "bad_frame"
    assert err.message
    return err


def test_text_frame_on_msgpack_protocol_is_bad_frame() -> None:
    err = _bad_frame('{"type":"ping"}', Protocol.MSGPACK)
    assert "binary" in err.message


def test_binary_frame_on_json_protocol_is_bad_frame() -> None:
    err = _bad_frame(b'{"type":"ping"}', Protocol.JSON)
    assert "text" in err.message


@pytest.mark.parametrize(
    "payload",
    ['{"type": "ping"', "", "not json", "{'type': 'ping'}", '{"type": "ping",}', "[" * 100_000],
)
def test_invalid_json_is_bad_frame(payload: str) -> None:
    _bad_frame(payload, Protocol.JSON)


@pytest.mark.parametrize(
    "payload",
    [
        '{"type": "ping", "t": NaN}',
        '{"type": "ping", "t": Infinity}',
        '{"type": "ping", "t": -Infinity}',
        "NaN",
    ],
)
def test_json_nan_and_infinity_rejected(payload: str) -> None:
    _bad_frame(payload, Protocol.JSON)


@pytest.mark.parametrize("payload", ['[{"type": "ping"}]', '"ping"', "1", "null", "true"])
def test_json_non_map_is_bad_frame(payload: str) -> None:
    err = _bad_frame(payload, Protocol.JSON)
    assert "map" in err.message


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # a never-used type byte
        b"\x81",  # a map header with no body (truncated)
        b"\x80\x80",  # extra data after the first object
        b"\x81\xa4type",  # a map missing its value
        b"",
    ],
)
def test_invalid_msgpack_is_bad_frame(payload: bytes) -> None:
    _bad_frame(payload, Protocol.MSGPACK)


@pytest.mark.parametrize(
    "obj",
    [[{"type": "ping"}], "ping", 1, None, [1, 2, 3]],
)
def test_msgpack_non_map_is_bad_frame(obj: Any) -> None:
    err = _bad_frame(msgpack.packb(obj, use_bin_type=True), Protocol.MSGPACK)
    assert "map" in err.message


@pytest.mark.parametrize(
    "obj",
    [{1: "a"}, {None: "a"}, {"type": "ping", 2: "x"}, {"type": "x", "nested": {3: "y"}}],
)
def test_msgpack_int_or_nil_map_keys_are_bad_frame(obj: dict[Any, Any]) -> None:
    _bad_frame(msgpack.packb(obj, use_bin_type=True), Protocol.MSGPACK)


def test_decoded_msgpack_strings_are_str_not_bytes() -> None:
    obj = decode(msgpack.packb({"type": "danmaku", "text": "主播好"}, use_bin_type=True), Protocol.MSGPACK)
    assert obj == {"type": "danmaku", "text": "主播好"}
    assert all(isinstance(k, str) for k in obj)


# --------------------------------------------------------------------------- property test

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20)
)
_keys = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=10)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=20,
)


@settings(database=None, deadline=None, max_examples=200)
@given(msg=st.dictionaries(_keys, _json_values, max_size=8))
def test_property_any_json_safe_map_round_trips(msg: dict[str, Any]) -> None:
    for protocol in BOTH:
        assert decode(encode(msg, protocol), protocol) == msg


# --------------------------------------------------------------------------- parse_client_message: valid


def test_hello_without_last_seq() -> None:
    m = parse_client_message({"type": "hello", "token": "tok", "room": "r1"})
    assert m == Hello(token="tok", room="r1", last_seq=None, req_id=None)


def test_hello_with_last_seq_and_req_id() -> None:
    m = parse_client_message({"type": "hello", "token": "tok", "room": "Room_1.a-b", "last_seq": 0, "req_id": "h1"})
    assert m == Hello(token="tok", room="Room_1.a-b", last_seq=0, req_id="h1")
    big = parse_client_message({"type": "hello", "token": "tok", "room": "r", "last_seq": 2**63 - 1})
    assert isinstance(big, Hello) and big.last_seq == 2**63 - 1


def test_hello_explicit_null_last_seq_is_absent() -> None:
    m = parse_client_message({"type": "hello", "token": "tok", "room": "r1", "last_seq": None})
    assert isinstance(m, Hello) and m.last_seq is None


@pytest.mark.parametrize("t", [123, 1.25, -7, 0, "client-clock", "", "x" * 64, None])
def test_ping_accepts_numbers_short_strings_and_none(t: Any) -> None:
    obj: dict[str, Any] = {"type": "ping"}
    if t is not None:
        obj["t"] = t
    m = parse_client_message(obj)
    assert m == Ping(t=t, req_id=None)


def test_ping_with_req_id() -> None:
    assert parse_client_message({"type": "ping", "t": 5, "req_id": "p"}) == Ping(t=5, req_id="p")


@pytest.mark.parametrize("text", ["hi", "你好🎉", "x" * 200, "x" * 201, "x" * MAX_DANMAKU_INPUT])
def test_danmaku_accepts_up_to_the_input_cap(text: str) -> None:
    # 201..2000 characters pass the wire check; the room answers them ``too_long``.
    m = parse_client_message({"type": "danmaku", "text": text, "req_id": "d1"})
    assert m == Danmaku(text=text, req_id="d1")


@pytest.mark.parametrize("count", [1, 2, 50, 100])
def test_like_counts_one_to_hundred(count: int) -> None:
    assert parse_client_message({"type": "like", "count": count}) == Like(count=count)


@pytest.mark.parametrize("kind", ["exposure", "click", "cart"])
def test_funnel_events(kind: str) -> None:
    m = parse_client_message({"type": kind, "product_id": "sku-1", "req_id": "f"})
    assert m == Funnel(kind=kind, product_id="sku-1", req_id="f")


def test_grab_sale() -> None:
    m = parse_client_message({"type": "grab", "sale_id": "s1", "req_id": "g1"})
    assert m == Grab(req_id="g1", sale_id="s1", coupon_id=None)


def test_grab_coupon() -> None:
    m = parse_client_message({"type": "grab", "coupon_id": "c1", "req_id": "g2"})
    assert m == Grab(req_id="g2", sale_id=None, coupon_id="c1")


def test_grab_null_sale_with_coupon_is_coupon() -> None:
    m = parse_client_message({"type": "grab", "sale_id": None, "coupon_id": "c1", "req_id": "g"})
    assert isinstance(m, Grab) and m.coupon_id == "c1" and m.sale_id is None


def test_claim() -> None:
    m = parse_client_message({"type": "claim", "packet_id": "p1", "req_id": "c"})
    assert m == Claim(packet_id="p1", req_id="c")


def test_req_id_of_max_length_accepted() -> None:
    rid = "r" * MAX_REQ_ID
    m = parse_client_message({"type": "like", "count": 1, "req_id": rid})
    assert isinstance(m, Like) and m.req_id == rid


def test_unknown_extra_fields_are_ignored() -> None:
    m = parse_client_message({"type": "like", "count": 3, "extra": {"a": 1}})
    assert m == Like(count=3)


# --------------------------------------------------------------------------- parse_client_message: invalid


def _invalid(obj: dict[str, Any], *, code: str = "invalid") -> WireError:
    with pytest.raises(WireError) as info:
        parse_client_message(obj)
    assert info.value.code == code
    return info.value


def test_missing_type() -> None:
    err = _invalid({"token": "t", "room": "r"})
    assert err.field == "type"
    assert err.req_id is None


@pytest.mark.parametrize("kind", [1, None, ["hello"], {"a": 1}, True])
def test_non_string_type(kind: Any) -> None:
    err = _invalid({"type": kind, "req_id": "q1"})
    assert err.field == "type"
    assert err.req_id == "q1"


@pytest.mark.parametrize("kind", ["bogus", "", "HELLO", "welcome", "pong", "x" * 1000])
def test_unknown_type(kind: str) -> None:
    err = _invalid({"type": kind, "req_id": "u1"}, code="unknown_type")
    assert err.field == "type"
    assert err.req_id == "u1"
    assert len(err.message) < 100  # the echoed type is truncated


@pytest.mark.parametrize("rid", ["r" * (MAX_REQ_ID + 1), "", 12, 1.5, ["a"], True])
def test_bad_req_id(rid: Any) -> None:
    err = _invalid({"type": "like", "count": 1, "req_id": rid})
    assert err.field == "req_id"
    assert err.req_id is None  # an invalid req_id is never echoed


def test_bad_req_id_checked_before_type() -> None:
    err = _invalid({"type": "nope", "req_id": 5})
    assert err.field == "req_id"


@pytest.mark.parametrize("token", ["", None, 5, "t" * 4097])
def test_hello_bad_token(token: Any) -> None:
    obj: dict[str, Any] = {"type": "hello", "room": "r1", "req_id": "h"}
    if token is not None:
        obj["token"] = token
    err = _invalid(obj)
    assert err.field == "token"
    assert err.req_id == "h"


@pytest.mark.parametrize("room", [None, "", "a b", "房间", "r" * 65, 7, "a/b", "a{b}"])
def test_hello_bad_room(room: Any) -> None:
    obj: dict[str, Any] = {"type": "hello", "token": "tok"}
    if room is not None:
        obj["room"] = room
    err = _invalid(obj)
    assert err.field == "room"


@pytest.mark.parametrize("last_seq", [-1, 2**63, 1.0, "3", True])
def test_hello_bad_last_seq(last_seq: Any) -> None:
    err = _invalid({"type": "hello", "token": "tok", "room": "r1", "last_seq": last_seq, "req_id": "h2"})
    assert err.field == "last_seq"
    assert err.req_id == "h2"


@pytest.mark.parametrize("t", [True, "x" * 65, [1], {"a": 1}, math.nan, math.inf, -math.inf])
def test_ping_bad_t(t: Any) -> None:
    err = _invalid({"type": "ping", "t": t, "req_id": "p1"})
    assert err.field == "t"
    assert err.req_id == "p1"


def test_ping_nan_through_msgpack_is_rejected_by_parse() -> None:
    obj = decode(msgpack.packb({"type": "ping", "t": math.nan}), Protocol.MSGPACK)
    err = _invalid(obj)
    assert err.field == "t"


@pytest.mark.parametrize("text", [None, "", 5, ["hi"], "x" * (MAX_DANMAKU_INPUT + 1)])
def test_danmaku_bad_text(text: Any) -> None:
    obj: dict[str, Any] = {"type": "danmaku", "req_id": "d"}
    if text is not None:
        obj["text"] = text
    err = _invalid(obj)
    assert err.field == "text"
    assert err.req_id == "d"


@pytest.mark.parametrize("count", [0, 101, -1, True, False, 1.0, "5", None])
def test_like_bad_count(count: Any) -> None:
    obj: dict[str, Any] = {"type": "like", "req_id": "l"}
    if count is not None:
        obj["count"] = count
    err = _invalid(obj)
    assert err.field == "count"
    assert err.req_id == "l"


@pytest.mark.parametrize("kind", ["exposure", "click", "cart"])
@pytest.mark.parametrize("product_id", [None, "", "has space", "x" * 65, 123, "商品"])
def test_funnel_bad_product_id(kind: str, product_id: Any) -> None:
    obj: dict[str, Any] = {"type": kind}
    if product_id is not None:
        obj["product_id"] = product_id
    err = _invalid(obj)
    assert err.field == "product_id"


def test_grab_without_req_id() -> None:
    err = _invalid({"type": "grab", "sale_id": "s1"})
    assert err.field == "req_id"
    assert err.req_id is None


def test_grab_with_both_ids() -> None:
    err = _invalid({"type": "grab", "sale_id": "s1", "coupon_id": "c1", "req_id": "g"})
    assert err.field == "sale_id"
    assert err.req_id == "g"


def test_grab_with_neither_id() -> None:
    err = _invalid({"type": "grab", "req_id": "g"})
    assert err.field == "sale_id"
    assert err.req_id == "g"


@pytest.mark.parametrize("field", ["sale_id", "coupon_id"])
@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, 5])
def test_grab_bad_id(field: str, bad: Any) -> None:
    err = _invalid({"type": "grab", field: bad, "req_id": "g"})
    assert err.field == field
    assert err.req_id == "g"


def test_claim_without_req_id() -> None:
    err = _invalid({"type": "claim", "packet_id": "p1"})
    assert err.field == "req_id"


@pytest.mark.parametrize("packet_id", [None, "", "a b", "x" * 65, 1])
def test_claim_bad_packet_id(packet_id: Any) -> None:
    obj: dict[str, Any] = {"type": "claim", "req_id": "c"}
    if packet_id is not None:
        obj["packet_id"] = packet_id
    err = _invalid(obj)
    assert err.field == "packet_id"
    assert err.req_id == "c"


# --------------------------------------------------------------------------- error frames


def test_wire_error_to_message_carries_req_id_and_field() -> None:
    with pytest.raises(WireError) as info:
        parse_client_message({"type": "like", "count": 0, "req_id": "abc"})
    msg = info.value.to_message()
    assert msg["type"] == "error"
    assert msg["code"] == "invalid"
    assert msg["req_id"] == "abc"
    assert msg["field"] == "count"
    assert isinstance(msg["message"], str) and msg["message"]
    # the error frame itself encodes in both protocols
    for protocol in BOTH:
        assert decode(encode(msg, protocol), protocol) == msg


def test_error_message_omits_absent_optional_fields() -> None:
    assert error_message("bad_frame", "nope") == {"type": "error", "code": "bad_frame", "message": "nope"}
    err = WireError("bad_frame", "nope")
    assert err.to_message() == {"type": "error", "code": "bad_frame", "message": "nope"}
    assert str(err) == "nope"


def test_decode_then_parse_pipeline_for_both_protocols() -> None:
    msg = {"type": "danmaku", "text": "主播好👋", "req_id": "d7"}
    for protocol in BOTH:
        parsed = parse_client_message(decode(encode(msg, protocol), protocol))
        assert parsed == Danmaku(text="主播好👋", req_id="d7")


@pytest.mark.parametrize("bad", ["r1\n", "r1\r\n", "\nr1", "r 1"])
def test_ids_with_newlines_are_rejected(bad: str) -> None:
    with pytest.raises(WireError) as e:
        parse_client_message({"type": "hello", "token": "t", "room": bad})
    assert e.value.field == "room"
    with pytest.raises(WireError):
        parse_client_message({"type": "grab", "sale_id": bad, "req_id": "r"})


def test_msgpack_bytes_keys_are_bad_frames() -> None:
    with pytest.raises(WireError) as e:
        decode(msgpack.packb({b"type": b"ping"}, use_bin_type=True), Protocol.MSGPACK)
    assert e.value.code == "bad_frame"


# --------------------------------------------------------------------------- lone surrogates


@pytest.mark.parametrize(
    ("text", "field", "req_id"),
    [
        ('{"type":"ping","t":"\\ud800","req_id":"r1"}', "t", "r1"),
        ('{"type":"danmaku","text":"a\\udfffb","req_id":"r2"}', "text", "r2"),
        ('{"type":"ping","req_id":"\\ud800"}', "req_id", None),  # a poisoned req_id is not echoed
        ('{"type":"hello","token":"x\\udbff","room":"r"}', "token", None),
        ('{"type":"grab","sale_id":"s","req_id":"ok","extra":{"deep":["\\udc00"]}}', "extra", "ok"),
        ('{"\\ud800":1,"type":"ping","req_id":"k"}', None, "k"),  # in a key
    ],
)
def test_lone_surrogates_are_invalid_where_they_enter(text: str, field: str | None, req_id: str | None) -> None:
    with pytest.raises(WireError) as e:
        decode(text, Protocol.JSON)
    assert e.value.code == "invalid" and e.value.field == field and e.value.req_id == req_id
    encode_json(e.value.to_message()).encode()  # the error frame itself is encodable


@pytest.mark.parametrize(
    "text",
    ['{"type":"danmaku","text":"\\ud83d\\ude00 \\u202e RTL \\u200f \\u0000 NUL"}', '{"type":"danmaku","text":"😀 漂亮"}'],
)
def test_pairs_rtl_marks_nul_and_4_byte_characters_pass(text: str) -> None:
    msg = parse_client_message(decode(text, Protocol.JSON))
    assert isinstance(msg, Danmaku)
    encode_json({"text": msg.text}).encode()


@given(st.text())
def test_whatever_decodes_can_be_encoded(s: str) -> None:
    """Every string that gets past decode survives the encoders it meets later."""
    payload = json.dumps({"type": "danmaku", "text": s})  # ensure_ascii: surrogates become escapes
    try:
        obj = decode(payload, Protocol.JSON)
    except WireError as exc:
        assert exc.code == "invalid" and exc.field == "text"
        return
    encode_json(obj).encode("utf-8")
    encode_msgpack(obj)


@pytest.mark.parametrize("text", ["é" * 80, "\x1f" * 14 + "¡" * 60, "中" * 50, "😀" * 40, "ok"])
def test_close_reasons_are_cut_on_a_character_boundary(text: str) -> None:
    from liveserver.wire import close_reason

    cut = close_reason(text)
    assert len(cut) <= 120 and text.startswith(cut.decode("utf-8"))  # valid UTF-8, a prefix of the text


def test_a_deeply_nested_surrogate_is_invalid_not_a_recursion_error() -> None:
    deep = '{"type":"danmaku","text":"x","a":' + "[" * 900 + '"\\ud800"' + "]" * 900 + "}"
    with pytest.raises(WireError) as e:
        decode(deep, Protocol.JSON)
    assert e.value.code == "invalid" and e.value.field == "a"
