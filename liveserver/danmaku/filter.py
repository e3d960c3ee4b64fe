"""Banned-word filtering, pure: normalisation and an Aho-Corasick automaton.

Text and words are normalised the same way before matching:

1. NFKC, which folds full-width letters and digits to half-width
   (``ＢＡＤ`` -> ``BAD``) and compatibility forms to their base;
2. case folding (``Bad`` -> ``bad``);
3. traditional Chinese to simplified (OpenCC ``t2s``: ``壞`` -> ``坏``);
4. separators, punctuation, symbols and invisible format characters removed,
   so that ``b.a d`` or a zero-width space inside a word still match.

The automaton comes from ``ahocorasick-rs`` (Rust): one pass over the text,
whatever the number of words.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

import ahocorasick_rs

__all__ = ["WordFilter", "normalize"]

_DROP_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sk", "Sm", "So"})


@functools.cache
def _t2s() -> object:
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    """The form both text and banned words are matched in."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    simplified: str = _t2s().convert(folded)  # type: ignore[attr-defined]
    return "".join(ch for ch in simplified if unicodedata.category(ch) not in _DROP_CATEGORIES)


class WordFilter:
    """Matches any of ``words`` anywhere in a text, after :func:`normalize`."""

    __slots__ = ("_automaton", "words")

    def __init__(self, words: Iterable[str]) -> None:
        normalized = {normalize(w) for w in words}
        normalized.discard("")
        self.words = frozenset(normalized)
        self._automaton = ahocorasick_rs.AhoCorasick(sorted(self.words)) if self.words else None

    def __len__(self) -> int:
        return len(self.words)

    def match(self, text: str) -> str | None:
        """The first banned word (normalised) found in ``text``, or None."""
        if self._automaton is None:
            return None
        found = self._automaton.find_matches_as_strings(normalize(text))
        return found[0] if found else None
