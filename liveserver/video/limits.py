"""The limits of a room's video (from the settings), without the WebRTC stack (pure)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VideoLimits"]


@dataclass(frozen=True, slots=True)
class VideoLimits:
    width: int = 1280
    height: int = 720
    fps: int = 30
    kbps: int = 2500
    gop_s: float = 2.0
    queue_packets: int = 90  # per viewer: about 3 s at 30 fps
    keyframe_interval_s: float = 1.0  # at most one requested keyframe a second
    camera_timeout_s: float = 5.0  # a camera that sent no frame this long goes off (its publisher vanished)
