"""Pure parts of danmaku: normalisation, the word filter, thinning."""

from __future__ import annotations

from liveserver.danmaku.fanout import thin
from liveserver.danmaku.filter import WordFilter, normalize


def test_normalize_folds_width_case_script_and_separators() -> None:
    assert normalize("ＢＡＤ") == "bad"
    assert normalize("B.a-D") == "bad"
    assert normalize("b\u200bad") == "bad"
    assert normalize("壞人") == "坏人"
    assert normalize("Ｈｅｌｌｏ，世界！") == "hello世界"


def test_word_filter() -> None:
    f = WordFilter(["Scam", "壞人", "  "])
    assert len(f) == 2
    assert f.match("total ＳＣＡＭ here") == "scam"
    assert f.match("这是坏人") == "坏人"
    assert f.match("all good") is None
    assert WordFilter([]).match("anything") is None


def test_thin_keeps_host_first_then_newest_in_seq_order() -> None:
    items = [{"id": i} for i in range(1, 11)]
    items[2]["prio"] = 1
    kept = thin(items, 4)
    assert [i["id"] for i in kept] == [3, 8, 9, 10]
    assert thin(items, 20) is items


# --------------------------------------------------------------------------- resume after a gap


def test_resume_is_complete_when_the_history_follows_on() -> None:
    from liveserver.danmaku.service import resume_complete

    held = [(5, 4), (6, 5), (7, 6)]
    assert resume_complete(5, 7, held, trimmed=True)  # last_seq itself still held
    assert resume_complete(4, 7, held, trimmed=True)  # the first entry follows last_seq
    assert resume_complete(7, 7, [(7, 6)], trimmed=True)  # nothing after it
    assert resume_complete(9, 9, [], trimmed=False)


def test_resume_is_incomplete_after_trimming_or_a_rollback() -> None:
    from liveserver.danmaku.service import resume_complete

    assert not resume_complete(2, 30, [(21, 20), (22, 21)], trimmed=True)  # 3..20 trimmed away
    assert resume_complete(2, 30, [(21, 20), (22, 21)], trimmed=False)  # not trimmed: 3..20 were deleted
    # Redis lost 8..10 that the viewer saw: ids jumped past them, and the chain says so
    assert not resume_complete(10, 1_733_000_000_000_001, [(1_733_000_000_000_001, 7)], trimmed=False)
    assert not resume_complete(10, 7, [], trimmed=False)  # the viewer is ahead of the room
