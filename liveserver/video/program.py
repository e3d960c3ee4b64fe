"""A room's program: what its viewers see (pure).

``single`` shows the ``main`` camera; ``pip`` shows it with the ``inset`` camera
a quarter of the width wide in ``inset_corner``.  ``beauty`` (0-100) is the
strength of the skin-smoothing filter.  The program only ever names live
cameras: when one goes off, :func:`settle` falls back (another live camera
becomes ``main``; a lost inset turns ``pip`` into ``single``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import Conflict, Invalid
from ..wire import ID_RE

__all__ = ["CORNERS", "Program", "parse_program", "program_message", "settle"]

CORNERS = ("br", "bl", "tr", "tl")
LAYOUTS = ("single", "pip")


@dataclass(frozen=True, slots=True)
class Program:
    layout: str = "single"
    main: str | None = None  # None while no camera is live
    inset: str | None = None
    inset_corner: str = "br"
    beauty: int = 0

    def public(self, live: Sequence[str]) -> dict[str, Any]:
        """The program as the API and the ``program`` message say it."""
        return {"layout": self.layout, "main": self.main, "inset": self.inset, "inset_corner": self.inset_corner,
                "beauty": self.beauty, "live": list(live)}


def _camera(body: Mapping[str, Any], name: str, live: Sequence[str]) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not ID_RE.match(value):
        raise Invalid(name, f"'{name}' must be a camera id: 1-64 of [A-Za-z0-9_.-]")
    if value not in live:
        raise Conflict(f"camera {value} is not live")
    return value


def parse_program(body: Mapping[str, Any], live: Sequence[str], current: Program) -> Program:
    """The program a ``PUT program`` body asks for, checked against the live cameras."""
    layout = body.get("layout", "single")
    if layout not in LAYOUTS:
        raise Invalid("layout", "'layout' must be single or pip")
    main = _camera(body, "main", live)
    inset = None
    corner = body.get("inset_corner", "br")
    if corner not in CORNERS:
        raise Invalid("inset_corner", "'inset_corner' must be br, bl, tr or tl")
    if layout == "pip":
        inset = _camera(body, "inset", live)
        if inset == main:
            raise Invalid("inset", "'inset' must be another camera than 'main'")
    beauty = body.get("beauty", current.beauty)
    if not isinstance(beauty, int) or isinstance(beauty, bool) or not 0 <= beauty <= 100:
        raise Invalid("beauty", "'beauty' must be an integer from 0 to 100")
    return Program(layout, main, inset, corner, beauty)


def settle(program: Program, live: Sequence[str]) -> Program:
    """``program`` with only live cameras in it: the first camera to go live becomes ``main``
    when none is set; a ``main`` that went off is replaced by another live camera (the
    inset first); an inset that went off (or became ``main``) ends the ``pip``."""
    main, inset = program.main, program.inset
    if main not in live:
        main = inset if inset in live else (live[0] if live else None)
    if inset not in live or inset == main:
        inset = None
    layout = program.layout if inset is not None else "single"
    if (main, inset, layout) == (program.main, program.inset, program.layout):
        return program
    return replace(program, main=main, inset=inset, layout=layout)


def program_message(program: Program, live: Sequence[str]) -> dict[str, Any]:
    """The ``program`` push to the room's viewers."""
    return {"type": "program", **program.public(live)}
