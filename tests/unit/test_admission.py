"""The welcome and the rejections of a join, built without a socket or Redis."""

from __future__ import annotations

from typing import Any

from liveserver.admission import JoinResult, Rejection, welcome_message
from liveserver.auth import Principal, Role
from liveserver.danmaku.service import JoinState
from liveserver.rooms.service import Room
from liveserver.wire import CloseCode, ErrorCode

ROOM = Room(room_id="r1", title="今晚秒杀", host="h", status="live", created_ms=1, pinned="p1")
VIEWER = Principal("lena", Role.VIEWER, "Lena", 0)
NO_CONN: Any = None  # the welcome never reads the connection


def _result(**state: Any) -> JoinResult:
    join_state = JoinState(room=ROOM, ban_ms=None, seq=state.pop("seq", 7), likes=state.pop("likes", 3), **state)
    return JoinResult(VIEWER, NO_CONN, join_state, ROOM, online=42, drops=[{"type": "flash_sale", "sale_id": "s1"}],
                      pinned={"product_id": "p1"})


def test_the_welcome_says_who_where_and_from_which_seq() -> None:
    welcome = welcome_message(_result(), 1_700_000_000_000, "hello-1")
    assert welcome == {
        "type": "welcome",
        "user": "lena",
        "role": "viewer",
        "name": "Lena",
        "room": {"room_id": "r1", "title": "今晚秒杀", "host": "h", "status": "live", "online": 42, "likes": 3},
        "server_time_ms": 1_700_000_000_000,
        "seq": 7,
        "drops": [{"type": "flash_sale", "sale_id": "s1"}],
        "pinned": {"product_id": "p1"},
        "req_id": "hello-1",
    }
    assert list(welcome)[:3] == ["type", "user", "role"]  # the type first, as every frame


def test_recovered_is_said_only_after_a_resume() -> None:
    assert "recovered" not in welcome_message(_result(), 0, None)
    assert welcome_message(_result(recovered=False), 0, None)["recovered"] is False
    assert "req_id" not in welcome_message(_result(), 0, None)


def test_a_rejection_names_its_close_and_its_error_frame() -> None:
    banned = Rejection.banned()
    assert banned.close_code == CloseCode.FORBIDDEN
    banned.req_id = "r9"  # the hello's, filled in by the gateway
    assert banned.frame() == {"type": "error", "code": "forbidden", "message": "you are banned from this room",
                                  "req_id": "r9"}
    assert Rejection.not_found("x").frame() == {"type": "error", "code": ErrorCode.NOT_FOUND,
                                                    "message": "room x not found"}
    assert Rejection.unavailable().close_code == CloseCode.TRY_AGAIN_LATER
    assert Rejection(CloseCode.SERVICE_RESTART, None, "server restart", req_id="r1").frame() is None  # a close alone
