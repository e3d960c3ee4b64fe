"""HLS for the crowd: the program's encoded packets cut into MPEG-TS segments at keyframes.

The room's one encoder feeds the segmenter the same packets it gives its WHEP
viewers (no second encode). A segment closes at the first keyframe after
``target_s`` (the GOP is 2 s, so segments are about 2 s long). Segments and the
playlist go to Redis with a TTL (video/service.py), so that **every** node
serves ``/live/{room}/index.m3u8`` and its segments, and a CDN can sit in front
of any node.

Sound: every segment carries an AAC track on the picture's clock.  At each
program frame the segmenter takes one frame's worth of samples (1/fps s) of the
main camera's sound, or silence when there is none (or too little yet), so the
track never has a gap and never drifts from the picture; sound that piles up
beyond half a second is dropped.

The playlist is a live sliding window (no ``#EXT-X-ENDLIST``) of the last
``window`` segments; segment numbers come from a counter in Redis, so they never
repeat when the room's media moves or restarts.
"""

from __future__ import annotations

import io
import math
import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import av

from .compose import TIME_BASE

__all__ = ["AUDIO_RATE", "Segment", "Segmenter", "playlist"]

AUDIO_RATE = 48000
_AUDIO_BACKLOG = AUDIO_RATE // 2  # samples of sound kept waiting at most (half a second)


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
        self._audio_stream: av.audio.stream.AudioStream | None = None
        self._first_pts = 0
        self._fifo = av.AudioFifo()  # the main camera's sound, waiting for the picture's clock
        self._fifo_lock = threading.Lock()  # fed on the event loop, read in the room's thread
        self._aac = av.CodecContext.create("aac", "w")
        self._aac.sample_rate, self._aac.layout, self._aac.format = AUDIO_RATE, "stereo", "fltp"
        self._aac.time_base, self._aac.bit_rate = Fraction(1, AUDIO_RATE), 96_000
        self._to_s16 = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
        self._to_aac = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE, frame_size=1024)
        self._samples = 0  # sound samples given to the encoder: the audio clock
        self._per_frame = AUDIO_RATE // fps

    def hear(self, frame: av.AudioFrame) -> None:
        """The main camera's sound (any thread): kept until the picture's clock takes it."""
        for resampled in self._to_s16.resample(frame):  # called on one thread only (the event loop)
            resampled.pts = None  # the fifo keeps no clock of its own: the picture's decides
            with self._fifo_lock:
                self._fifo.write(resampled)
                if self._fifo.samples > _AUDIO_BACKLOG:
                    self._fifo.read(self._fifo.samples - _AUDIO_BACKLOG)  # behind: drop the oldest

    def _sound(self) -> av.AudioFrame:
        """One program frame's worth of sound: the camera's, topped up with silence."""
        with self._fifo_lock:
            frame = self._fifo.read(self._per_frame) if self._fifo.samples >= self._per_frame else None
        if frame is None:
            frame = av.AudioFrame(format="s16", layout="stereo", samples=self._per_frame)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
        frame.sample_rate = AUDIO_RATE
        frame.pts, frame.time_base = self._samples, Fraction(1, AUDIO_RATE)
        self._samples += frame.samples
        return frame

    def tick(self) -> None:
        """One program frame passed: encode its sound into the open segment."""
        for resampled in self._to_aac.resample(self._sound()):
            for packet in self._aac.encode(resampled):
                if self._out is not None and self._audio_stream is not None:
                    packet.stream = self._audio_stream
                    self._out.mux(packet)

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
        return closed

    def _open(self, pts: int) -> None:
        self._buffer = io.BytesIO()
        self._out = av.open(self._buffer, "w", format="mpegts")
        stream = self._out.add_stream("h264", rate=self._fps)
        stream.width, stream.height, stream.pix_fmt = self._width, self._height, "yuv420p"
        stream.time_base = TIME_BASE
        self._stream = stream
        audio = self._out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "stereo"
        self._audio_stream = audio
        self._first_pts = pts

    def _close(self, next_pts: int) -> Segment:
        assert self._out is not None and self._buffer is not None
        self._out.close()
        duration = float((next_pts - self._first_pts) * TIME_BASE)
        segment = Segment(self._buffer.getvalue(), duration)
        self._out = self._buffer = self._stream = self._audio_stream = None
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
