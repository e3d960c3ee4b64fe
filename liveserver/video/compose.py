"""Composing and encoding a room's program, once for all its viewers (PyAV: libavfilter, libx264).

:class:`Composer` turns the latest decoded frame of the main camera (and of the
inset camera, for ``pip``) into one output frame of the program's size, through
an FFmpeg filter graph: ``scale`` to the output size, ``scale`` the inset to a
quarter of the width and ``overlay`` it 16 px from the chosen corner, and for
``beauty`` an edge-preserving ``bilateral`` filter run at half resolution and
blended back (strength = beauty / 100 × 0.7).  The graph is built again only
when its shape changes (a camera's frame size, the layout, the corner, the
beauty), so a steady program costs one graph run a frame.

:class:`Encoder` is the room's one H.264 encoder (libx264, ``ultrafast`` and
``zerolatency``, constrained baseline: what browsers decode in hardware), with a
periodic keyframe and keyframes on request.

Both run in the room's own thread (room.py); FFmpeg releases the GIL while it
works, so the event loop serving danmaku and grabs keeps its core.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import av.filter
from av.video.frame import PictureType

__all__ = ["TIME_BASE", "Composer", "Encoder", "Layout"]

TIME_BASE = Fraction(1, 90000)  # RTP's video clock
_MARGIN = 16


@dataclass(frozen=True, slots=True)
class Layout:
    """The shape of one composition: what the filter graph depends on."""

    width: int
    height: int
    main_size: tuple[int, int]
    inset_size: tuple[int, int] | None  # None: no inset
    corner: str = "br"
    beauty: int = 0


_OVERLAY_AT = {
    "br": f"W-w-{_MARGIN}:H-h-{_MARGIN}",
    "bl": f"{_MARGIN}:H-h-{_MARGIN}",
    "tr": f"W-w-{_MARGIN}:{_MARGIN}",
    "tl": f"{_MARGIN}:{_MARGIN}",
}


class Composer:
    """Builds (and rebuilds, when the layout changes) the filter graph of a program."""

    def __init__(self) -> None:
        self._layout: Layout | None = None
        self._graph: av.filter.Graph | None = None
        self._main: av.filter.context.FilterContext | None = None
        self._inset: av.filter.context.FilterContext | None = None
        self._sink: av.filter.context.FilterContext | None = None

    def render(self, layout: Layout, main: av.VideoFrame, inset: av.VideoFrame | None, pts: int) -> av.VideoFrame:
        """One program frame at ``pts`` (in :data:`TIME_BASE`) from the cameras' latest frames."""
        if layout != self._layout:
            self._build(layout)
        assert self._main is not None and self._sink is not None
        self._main.push(_stamped(main, pts))
        if self._inset is not None and inset is not None:
            self._inset.push(_stamped(inset, pts))
        frame = self._sink.pull()
        frame.pts, frame.time_base = pts, TIME_BASE
        return frame

    def _build(self, layout: Layout) -> None:
        w, h = layout.width, layout.height
        g = av.filter.Graph()
        main = g.add_buffer(width=layout.main_size[0], height=layout.main_size[1], format="yuv420p",
                            time_base=TIME_BASE)
        out = g.add("scale", f"{w}:{h}:force_original_aspect_ratio=decrease")
        main.link_to(out)
        pad = g.add("pad", f"{w}:{h}:(ow-iw)/2:(oh-ih)/2")  # a camera of another aspect ratio: letterboxed
        out.link_to(pad)
        out = pad
        inset = None
        if layout.inset_size is not None:
            inset = g.add_buffer(width=layout.inset_size[0], height=layout.inset_size[1], format="yuv420p",
                                 time_base=TIME_BASE)
            small = g.add("scale", f"{_even(w // 4)}:-2")
            inset.link_to(small)
            overlay = g.add("overlay", _OVERLAY_AT[layout.corner])
            out.link_to(overlay, 0, 0)
            small.link_to(overlay, 0, 1)
            out = overlay
        if layout.beauty > 0:
            split = g.add("split")
            out.link_to(split)
            half = g.add("scale", f"{_even(w // 2)}:{_even(h // 2)}")
            smooth = g.add("bilateral", "sigmaS=6:sigmaR=0.08")
            full = g.add("scale", f"{w}:{h}")
            blend = g.add("blend", f"all_mode=normal:all_opacity={0.7 * layout.beauty / 100:.3f}")
            split.link_to(blend, 0, 0)
            split.link_to(half, 1, 0)
            half.link_to(smooth)
            smooth.link_to(full)
            full.link_to(blend, 0, 1)
            out = blend
        fmt = g.add("format", "yuv420p")
        out.link_to(fmt)
        sink = g.add("buffersink")
        fmt.link_to(sink)
        g.configure()
        self._layout, self._graph, self._main, self._inset, self._sink = layout, g, main, inset, sink


def _even(n: int) -> int:
    return max(2, n - n % 2)


def _stamped(frame: av.VideoFrame, pts: int) -> av.VideoFrame:
    """``frame`` in yuv420p with the composition's clock (a camera's own pts is its publisher's)."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    frame.pts, frame.time_base = pts, TIME_BASE
    return frame


class Encoder:
    """The program's one H.264 encoder."""

    def __init__(self, width: int, height: int, fps: int, kbps: int, gop_s: float) -> None:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.framerate = Fraction(fps, 1)
        ctx.bit_rate = kbps * 1000
        ctx.gop_size = max(1, round(fps * gop_s))
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
        self._ctx = ctx
        self.frames = 0

    def encode(self, frame: av.VideoFrame, keyframe: bool) -> list[av.Packet]:
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        packets = list(self._ctx.encode(frame))
        for packet in packets:
            packet.time_base = TIME_BASE
        self.frames += 1
        return packets
