"""One room's media on this node: its cameras, its program, one composer and encoder, its viewers.

Each camera's decoded frames (aiortc decodes them off the loop) replace the
camera's latest frame; the room's clock ticks at ``fps``, and at each tick the
room's one worker thread composes the program from the latest frames and
encodes it once.  The same ``av.Packet`` objects go to every viewer's
:class:`PacketTrack`, which aiortc packetises without encoding again.

Keyframes: one every ``gop_s``; one when a viewer joins or a viewer's decoder
asks (PLI/FIR), at most one a second for the room; one at every switch.

A viewer's queue is bounded: a viewer that falls ``queue_packets`` behind
drops what waits and skips to the next keyframe (which it asks for), so a
slow viewer never slows the others or grows memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .compose import Composer, Encoder, Layout
from .hls import Segment, Segmenter
from .limits import VideoLimits
from .program import Program, settle

__all__ = ["AudioPacketTrack", "Camera", "PacketTrack", "ProgramAudio", "RoomVideo"]

AUDIO_QUEUE_PACKETS = 50  # per viewer: 1 s of 20 ms Opus packets
OPUS_TIME_BASE = Fraction(1, 48000)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Camera:
    camera_id: str
    latest: av.VideoFrame | None = None
    frames: int = 0
    started: float = field(default_factory=time.monotonic)
    last_frame: float = field(default_factory=time.monotonic)

    def stats(self) -> dict[str, object]:
        """``{camera, live, width, height, fps}`` (fps: frames received over its life so far)."""
        age = max(1e-3, time.monotonic() - self.started)
        frame = self.latest
        return {"camera": self.camera_id, "live": True, "width": frame.width if frame else None,
                "height": frame.height if frame else None, "fps": round(self.frames / age, 1)}


class _QueuedTrack(MediaStreamTrack):
    """A viewer's track fed the room's encoded packets through a queue (aiortc packetises them)."""

    def __init__(self, room: RoomVideo, maxlen: int | None = None) -> None:
        super().__init__()
        self._room = room
        self._queue: deque[av.Packet] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()

    def _put(self, packet: av.Packet) -> None:
        self._queue.append(packet)
        self._ready.set()

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()
        self._room.viewers.discard(self)  # type: ignore[arg-type]
        self._room.listeners.discard(self)  # type: ignore[arg-type]


class PacketTrack(_QueuedTrack):
    """One viewer's video: a bounded queue that starts at a keyframe and, when the viewer falls
    ``queue_packets`` behind, drops what waits and skips to the next keyframe."""

    kind = "video"

    def __init__(self, room: RoomVideo) -> None:
        super().__init__(room)
        self._waiting_keyframe = True  # a new viewer starts at a keyframe
        self.dropped = 0

    def offer(self, packet: av.Packet) -> None:
        """Queue ``packet`` (never blocks): a full queue is dropped, up to the next keyframe."""
        if self._waiting_keyframe:
            if not packet.is_keyframe:
                return
            self._waiting_keyframe = False
        if len(self._queue) >= self._room.limits.queue_packets:
            self.dropped += len(self._queue)
            self._queue.clear()
            self._waiting_keyframe = not packet.is_keyframe
            if self._waiting_keyframe:
                self._room.request_keyframe()
                return
        self._put(packet)


class AudioPacketTrack(_QueuedTrack):
    """One viewer's sound: the room's Opus packets (encoded once), through a bounded queue that
    drops its oldest packets when the viewer falls behind (audio has no keyframes)."""

    kind = "audio"

    def __init__(self, room: RoomVideo) -> None:
        super().__init__(room, AUDIO_QUEUE_PACKETS)

    def offer(self, packet: av.Packet) -> None:
        self._put(packet)


class ProgramAudio:
    """The program's sound: the main camera's audio, encoded once (Opus, 48 kHz) for every viewer."""

    def __init__(self) -> None:
        from aiortc.codecs.opus import OpusEncoder

        self._encoder = OpusEncoder()
        self._samples = 0  # the program's own clock: cameras' clocks differ, a switch must not jump

    def encode(self, frame: av.AudioFrame) -> list[av.Packet]:
        if frame.format.name != "s16" or frame.layout.name not in ("mono", "stereo"):
            frame = av.AudioResampler(format="s16", layout="stereo", rate=frame.sample_rate).resample(frame)[0]
        frame.pts, frame.time_base = self._samples, Fraction(1, frame.sample_rate)
        self._samples += frame.samples
        payloads, timestamp = self._encoder.encode(frame)
        packets = []
        for payload in payloads:
            packet = av.Packet(payload)
            packet.pts, packet.time_base = timestamp, OPUS_TIME_BASE
            packets.append(packet)
        return packets


class RoomVideo:
    """The media of one room on this node."""

    def __init__(self, room_id: str, limits: VideoLimits, on_program: Callable[[Program, list[str]], None],
                 on_segment: Callable[[Segment], None] | None = None,
                 on_stale: Callable[[str], None] | None = None,
                 on_second: Callable[[], None] | None = None) -> None:
        self.room_id = room_id
        self.limits = limits
        self.cameras: dict[str, Camera] = {}
        self.viewers: set[PacketTrack] = set()
        self.listeners: set[AudioPacketTrack] = set()  # the viewers' sound (those whose offer had audio)
        self._audio: ProgramAudio | None = None
        self.program = Program()
        self._on_program = on_program  # told of every change of the program or of the live cameras
        self._composer = Composer()
        self._encoder = Encoder(limits.width, limits.height, limits.fps, limits.kbps, limits.gop_s)
        self._on_second = on_second  # once a second while the room's clock runs (its status for the metrics)
        self._on_stale = on_stale  # a camera sent nothing for camera_timeout_s: end its session
        self._on_segment = on_segment  # an HLS segment was cut (every ~gop_s), to store for every node
        self._segmenter = Segmenter(limits.width, limits.height, limits.fps, limits.gop_s) if on_segment else None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"video-{room_id}")
        self._keyframe = True
        self._last_requested = 0.0
        self._ticker: asyncio.Task[None] | None = None
        self._program_frames = 0  # frames made for the program so far: its clock
        self.frames_out = 0
        self.encode_seconds = 0.0

    @property
    def live(self) -> list[str]:
        return sorted(self.cameras)

    # -- cameras -------------------------------------------------------------------

    def add_camera(self, camera_id: str, track: MediaStreamTrack) -> asyncio.Task[None]:
        """A camera went live: read its frames until its track ends."""
        camera = self.cameras[camera_id] = Camera(camera_id)
        self._changed()
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name=f"video-tick:{self.room_id}")
        return asyncio.get_running_loop().create_task(self._read(camera, track), name=f"camera:{self.room_id}:{camera_id}")

    async def _read(self, camera: Camera, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    camera.latest = frame
                    camera.frames += 1
                    camera.last_frame = time.monotonic()
        except MediaStreamError:  # the publisher's track ended
            pass
        finally:
            self.remove_camera(camera.camera_id, camera)

    def add_audio(self, camera_id: str, track: MediaStreamTrack) -> asyncio.Task[None]:
        """A camera's sound: the program carries the main camera's, encoded once while anyone listens."""
        return asyncio.get_running_loop().create_task(self._hear(camera_id, track),
                                                      name=f"audio:{self.room_id}:{camera_id}")

    async def _hear(self, camera_id: str, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if camera_id != self.program.main or not isinstance(frame, av.AudioFrame):
                    continue
                if self._segmenter is not None:
                    self._segmenter.hear(frame)
                if not self.listeners:
                    continue
                if self._audio is None:
                    self._audio = ProgramAudio()
                try:
                    packets = self._audio.encode(frame)
                except Exception:  # one odd frame never silences the room for good
                    log.exception("audio frame of room %s failed", self.room_id)
                    continue
                for packet in packets:
                    for listener in list(self.listeners):
                        listener.offer(packet)

    def remove_camera(self, camera_id: str, camera: Camera | None = None) -> None:
        if camera_id in self.cameras and (camera is None or self.cameras[camera_id] is camera):
            del self.cameras[camera_id]
            self._changed()

    # -- the program ---------------------------------------------------------------

    def set_program(self, program: Program) -> None:
        switched = (program.main, program.inset, program.layout) != (self.program.main, self.program.inset,
                                                                      self.program.layout)
        self.program = program
        if switched:
            self._keyframe = True  # a switch shows at once, never smeared over the old picture
        self._on_program(program, self.live)

    def _changed(self) -> None:
        settled = settle(self.program, self.live)
        if settled != self.program:
            self.set_program(settled)
        else:
            self._on_program(self.program, self.live)

    def request_keyframe(self) -> None:
        """A viewer joined or its decoder asked: a keyframe soon, at most one a second."""
        now = time.monotonic()
        if now - self._last_requested >= self.limits.keyframe_interval_s:
            self._last_requested = now
            self._keyframe = True

    # -- the clock -----------------------------------------------------------------

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.limits.fps
        start = loop.time()
        n = 0
        while self.cameras:
            n += 1
            await asyncio.sleep(max(0.0, start + n * period - loop.time()))
            if n % self.limits.fps == 0:
                self._reap(time.monotonic())
                if self._on_second is not None:
                    self._on_second()
            try:
                job = self._job()
                if job is None:
                    continue
                keyframe, self._keyframe = self._keyframe, False
                packets, seconds, segments = await loop.run_in_executor(self._worker, self._render, *job, keyframe)
            except Exception:  # one bad frame (a bug, a camera's odd format) never stops the room's video
                log.exception("video frame %d of room %s failed", n, self.room_id)
                self._keyframe = True
                continue
            self.frames_out += 1
            self.encode_seconds += seconds
            for packet in packets:
                for viewer in list(self.viewers):
                    viewer.offer(packet)
            if self._on_segment is not None:
                for segment in segments:
                    self._on_segment(segment)
        self._ticker = None

    def _reap(self, now: float) -> None:
        """Cameras whose publisher stopped sending (a crashed app, a dead network) go off."""
        for camera in list(self.cameras.values()):
            if now - camera.last_frame > self.limits.camera_timeout_s:
                log.info("camera %s of room %s sent nothing for %.0f s: off", camera.camera_id, self.room_id,
                         now - camera.last_frame)
                self.remove_camera(camera.camera_id, camera)
                if self._on_stale is not None:
                    self._on_stale(camera.camera_id)

    def _job(self) -> tuple[Layout, av.VideoFrame, av.VideoFrame | None, int] | None:
        """The next program frame's inputs, stamped on the program's own clock: one frame later than
        the last one made, across every restart of the room's ticker (when all cameras went off and
        one came back), so the encoder, the viewers and the HLS segments never see time go back."""
        p, limits = self.program, self.limits
        main = self.cameras.get(p.main or "")
        if main is None or main.latest is None:
            return None
        inset_cam = self.cameras.get(p.inset or "") if p.layout == "pip" else None
        inset = inset_cam.latest if inset_cam is not None else None
        layout = Layout(limits.width, limits.height, (main.latest.width, main.latest.height),
                        (inset.width, inset.height) if inset is not None else None, p.inset_corner, p.beauty)
        self._program_frames += 1
        return layout, main.latest, inset, self._program_frames * 90000 // limits.fps

    def _render(self, layout: Layout, main: av.VideoFrame, inset: av.VideoFrame | None, pts: int,
                keyframe: bool) -> tuple[list[av.Packet], float, list[Segment]]:
        """In the room's thread: compose and encode one frame, and cut HLS segments from it."""
        t0 = time.perf_counter()
        frame = self._composer.render(layout, main, inset, pts)
        packets = self._encoder.encode(frame, keyframe)
        segments = []
        if self._segmenter is not None:
            segments = [s for s in map(self._segmenter.add, packets) if s is not None]
            self._segmenter.tick()  # and this frame's sound
        return packets, time.perf_counter() - t0, segments

    async def close(self) -> None:
        for viewer in list(self.viewers):
            viewer.stop()
        for listener in list(self.listeners):
            listener.stop()
        self.cameras.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._worker.shutdown(wait=False, cancel_futures=True)
