"""HLS for the crowd: the program's encoded packets cut into MPEG-TS segments at keyframes.

The room's one encoder feeds the segmenter the same packets it gives its WHEP
viewers (no second encode). A segment closes at the first keyframe after
``target_s`` (the GOP is 2 s, so segments are about 2 s long). Segments and the
playlist go to Redis with a TTL (video/service.py), so that **every** node
serves ``/live/{room}/index.m3u8`` and its segments, and a CDN can sit in front
of any node.

The playlist is a live sliding window (no ``#EXT-X-ENDLIST``) of the last
``window`` segments; segment numbers come from a counter in Redis, so they never
repeat when the room's media moves or restarts.
"""

from __future__ import annotations

import io
import math
from collections import deque
from dataclasses import dataclass

import av

from .compose import TIME_BASE

__all__ = ["Segment", "Segmenter", "playlist"]


@dataclass(frozen=True, slots=True)
class Segment:
    data: bytes  # MPEG-TS
    duration_s: float


class Segmenter:
    """Cuts one H.264 stream into MPEG-TS segments (runs in the room's thread)."""

    def __init__(self, width: int, height: int, fps: int, target_s: float = 2.0) -> None:
        self._width, self._height, self._fps = width, height, fps
        self._target = round(target_s / TIME_BASE)  # in TIME_BASE ticks
        self._buffer: io.BytesIO | None = None
        self._out: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._first_pts = 0
        self._last_pts = 0

    def add(self, packet: av.Packet) -> Segment | None:
        """Mux ``packet``; returns the segment it closed, if it starts a new one."""
        closed = None
        pts = packet.pts or 0
        if packet.is_keyframe and self._out is not None and pts - self._first_pts >= self._target:
            closed = self._close(pts)
        if self._out is None:
            if not packet.is_keyframe:
                return closed  # a segment starts at a keyframe
            self._open(pts)
        assert self._out is not None and self._stream is not None
        packet.stream = self._stream
        self._out.mux(packet)
        self._last_pts = pts
        return closed

    def _open(self, pts: int) -> None:
        self._buffer = io.BytesIO()
        self._out = av.open(self._buffer, "w", format="mpegts")
        stream = self._out.add_stream("h264", rate=self._fps)
        stream.width, stream.height, stream.pix_fmt = self._width, self._height, "yuv420p"
        stream.time_base = TIME_BASE
        self._stream = stream
        self._first_pts = pts

    def _close(self, next_pts: int) -> Segment:
        assert self._out is not None and self._buffer is not None
        self._out.close()
        duration = float((next_pts - self._first_pts) * TIME_BASE)
        segment = Segment(self._buffer.getvalue(), duration)
        self._out = self._buffer = self._stream = None
        return segment


def playlist(segments: deque[tuple[int, float]] | list[tuple[int, float]], target_s: float) -> str:
    """A live HLS media playlist of ``(number, duration)`` segments, oldest first."""
    items = list(segments)
    longest = max([target_s, *(d for _, d in items)])
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{math.ceil(longest)}",
        f"#EXT-X-MEDIA-SEQUENCE:{items[0][0] if items else 0}",
    ]
    for number, duration in items:
        lines += [f"#EXTINF:{duration:.3f},", f"{number}.ts"]
    return "\n".join(lines) + "\n"
