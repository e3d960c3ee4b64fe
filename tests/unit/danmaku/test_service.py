"""Whether a resume after a gap is complete (pure)."""

from __future__ import annotations

from liveserver.danmaku.service import resume_complete


def test_resume_is_complete_when_the_history_follows_on() -> None:
    held = [(5, 4), (6, 5), (7, 6)]
    assert resume_complete(5, 7, held, trimmed=True)  # last_seq itself still held
    assert resume_complete(4, 7, held, trimmed=True)  # the first entry follows last_seq
    assert resume_complete(7, 7, [(7, 6)], trimmed=True)  # nothing after it
    assert resume_complete(9, 9, [], trimmed=False)


def test_resume_is_incomplete_after_trimming_or_a_rollback() -> None:
    assert not resume_complete(2, 30, [(21, 20), (22, 21)], trimmed=True)  # 3..20 trimmed away
    assert resume_complete(2, 30, [(21, 20), (22, 21)], trimmed=False)  # not trimmed: 3..20 were deleted
    # Redis lost 8..10 that the viewer saw: ids jumped past them, and the chain says so
    assert not resume_complete(10, 1_733_000_000_000_001, [(1_733_000_000_000_001, 7)], trimmed=False)
    assert not resume_complete(10, 7, [], trimmed=False)  # the viewer is ahead of the room
