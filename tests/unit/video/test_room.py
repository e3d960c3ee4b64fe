"""A room's viewer queues and keyframe requests (no network: packets made by hand)."""

from __future__ import annotations

import av

from liveserver.video.limits import VideoLimits
from liveserver.video.room import AudioPacketTrack, PacketTrack, RoomVideo


def _packet(keyframe: bool, n: int) -> av.Packet:
    packet = av.Packet(bytes([n % 256]) * 10)
    packet.is_keyframe = keyframe
    packet.pts = n
    return packet


def _room(queue_packets: int = 4) -> RoomVideo:
    return RoomVideo("r", VideoLimits(width=64, height=48, queue_packets=queue_packets), lambda p, live: None)


def test_a_new_viewer_starts_at_a_keyframe() -> None:
    room = _room()
    track = PacketTrack(room)
    track.offer(_packet(False, 1))
    track.offer(_packet(False, 2))
    assert len(track._queue) == 0  # noqa: SLF001 - what waits for the viewer
    track.offer(_packet(True, 3))
    track.offer(_packet(False, 4))
    assert [p.pts for p in track._queue] == [3, 4]  # noqa: SLF001


def test_a_slow_viewer_drops_to_the_next_keyframe_and_asks_for_one() -> None:
    room = _room(queue_packets=4)
    track = PacketTrack(room)
    room._last_requested = -10.0  # noqa: SLF001 - no keyframe asked for lately
    room._keyframe = False  # noqa: SLF001
    for n in range(1, 5):
        track.offer(_packet(n == 1, n))
    track.offer(_packet(False, 5))  # one more than the viewer could take: it is too far behind
    assert len(track._queue) == 0 and track.dropped == 4  # noqa: SLF001
    assert room._keyframe is True  # noqa: SLF001 - the shared encoder makes one soon
    track.offer(_packet(False, 6))  # still waiting for it
    track.offer(_packet(True, 7))
    assert [p.pts for p in track._queue] == [7]  # noqa: SLF001 - and it resumes there, memory bounded


def test_keyframes_on_request_are_at_most_one_a_second() -> None:
    room = _room()
    room._keyframe = False  # noqa: SLF001
    room._last_requested = -10.0  # noqa: SLF001
    room.request_keyframe()
    assert room._keyframe is True  # noqa: SLF001
    room._keyframe = False  # noqa: SLF001 - the encoder made it
    room.request_keyframe()  # a second join within the second
    assert room._keyframe is False  # noqa: SLF001


def test_a_listener_that_falls_behind_loses_the_oldest_sound_first() -> None:
    room = _room()
    track = AudioPacketTrack(room)
    for n in range(80):
        track.offer(_packet(False, n))
    assert [p.pts for p in track._queue][:1] == [30] and len(track._queue) == 50  # noqa: SLF001
