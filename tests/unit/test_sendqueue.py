"""The send queue's policy, fed raw frames and a clock: no socket, no event loop."""

from __future__ import annotations

from liveserver.sendqueue import Closing, Push, SendQueue


def _queue(queue_frames: int = 4, droppable_frames: int = 2, slow_timeout_s: float = 10.0) -> SendQueue:
    return SendQueue(queue_frames, droppable_frames, slow_timeout_s)


def test_the_first_frame_wakes_the_writer_and_the_next_wait_behind_it() -> None:
    q = _queue()
    assert q.push(b"\x81\x01a", False, 0.0) is Push.WAKE
    assert q.push(b"\x81\x01b", True, 0.0) is Push.QUEUED
    assert len(q) == 2
    assert q.pop() == b"\x81\x01a"
    assert q.pop() == b"\x81\x01b"
    assert q.pop() is None


def test_droppable_frames_stop_at_their_own_limit_and_are_counted() -> None:
    q = _queue(queue_frames=4, droppable_frames=2)
    assert [q.push(b"d", True, 0.0) for _ in range(3)] == [Push.WAKE, Push.QUEUED, Push.DROPPED]
    assert q.dropped == 1 and len(q) == 2
    assert q.push(b"control", False, 0.0) is Push.QUEUED  # control frames still fit, up to queue_frames
    assert q.push(b"control", False, 0.0) is Push.QUEUED
    assert len(q) == 4


def test_one_control_frame_past_the_limit_closes_and_queues_nothing() -> None:
    q = _queue(queue_frames=2)
    q.push(b"c1", False, 0.0)
    q.push(b"c2", False, 0.0)
    assert q.push(b"c3", False, 0.0) is Push.CLOSE
    assert len(q) == 2 and q.dropped == 0


def test_a_queue_full_for_longer_than_the_timeout_closes_4008() -> None:
    q = _queue(droppable_frames=1, slow_timeout_s=10.0)
    q.push(b"d", True, 0.0)
    assert q.push(b"d", True, 100.0) is Push.DROPPED  # the clock starts at the first drop
    assert q.push(b"d", True, 110.0) is Push.DROPPED  # exactly the timeout: not yet
    assert q.push(b"d", True, 110.5) is Push.CLOSE
    assert q.dropped == 3


def test_an_accepted_or_written_frame_restarts_the_slow_clock() -> None:
    q = _queue(droppable_frames=1, slow_timeout_s=10.0)
    q.push(b"d", True, 0.0)
    q.push(b"d", True, 1.0)  # full since 1.0
    q.pop()
    assert q.push(b"d", True, 50.0) is Push.WAKE  # the writer made room: accepted, clock reset
    assert q.push(b"d", True, 51.0) is Push.DROPPED  # full since 51.0
    q.wrote()  # a frame went straight out: reset again
    assert q.push(b"d", True, 70.0) is Push.DROPPED  # full since 70.0, not 51.0
    assert q.push(b"d", True, 79.0) is Push.DROPPED


def test_the_welcome_goes_ahead_of_what_queued_while_joining() -> None:
    q = _queue(queue_frames=2)
    q.push(b"pushed-while-joining", False, 0.0)
    q.push_first([b"welcome", b"replay"])  # past queue_frames: the welcome is never refused
    assert [q.pop() for _ in range(3)] == [b"welcome", b"replay", b"pushed-while-joining"]


def test_a_close_is_written_after_what_is_queued_and_clear_forgets_everything() -> None:
    q = _queue()
    q.push(b"last words", False, 0.0)
    q.close(4008, "slow consumer")
    assert q.pop() == b"last words"
    assert q.pop() == Closing(4008, "slow consumer")
    q.push(b"x", False, 0.0)
    q.clear()
    assert len(q) == 0 and q.pop() is None
