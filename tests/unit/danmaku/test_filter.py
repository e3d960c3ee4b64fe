"""Banned-word filtering (pure)."""

from __future__ import annotations

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
