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
