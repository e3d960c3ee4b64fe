"""WHIP and WHEP sessions (aiortc), the rooms' media on this node, and the program API.

- WHIP (RFC 9725): a host publishes one camera per session.  The answer is sent
  only once aiortc has gathered every candidate (WHIP has no server-side
  trickle), offering host candidates on the configured ICE addresses only.
- WHEP: a viewer's recvonly offer gets the room's program, H.264 packets from
  the room's one encoder (no encoder per viewer).
- The program lives with the room's media (room.py); every change is published
  to the room (``program``, on every node) and kept in Redis for the ``welcome``.

A session whose peer connection fails or closes ends by itself: a camera whose
publisher vanished goes off after ICE's consent checks fail (about 30 s), or at
once on DELETE.

The WebRTC stack (aiortc, PyAV: about 0.4 s and 27 MB a process) loads with the
first camera or viewer, so that a node that serves no video does not carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from ..auth import Principal
from ..errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, RateLimited
from ..redisio.client import RedisClient, json_object
from ..redisio.store import Store
from ..rooms.service import RoomService
from .hls import Segment, playlist
from .limits import VideoLimits
from .program import Program, parse_program, program_message

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack, RTCPeerConnection

    from .room import AudioPacketTrack, PacketTrack, RoomVideo

__all__ = ["Elsewhere", "NoProgram", "VideoService", "WhipSession", "restrict_ice_hosts"]

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
PROGRAM_TTL_S = 24 * 3600
HLS_WINDOW = 6  # segments in the live playlist (about 12 s)
HLS_SEGMENT_TTL_S = 60  # a segment outlives the window, for players a little behind
HLS_INDEX_TTL_S = 10  # the playlist goes (404) soon after the last camera
HLS_CLIENT_TTL_MS = 60_000  # HLS players remembered this long (the metrics count the last 10 s)
VIDEO_STATUS_TTL_S = 5
MAX_WHEP_PER_USER = 4  # a user's WHEP seats on this node (each holds a peer connection and its sockets)


class Elsewhere(ApiError):
    """The room's media is held by another node (api/video.py forwards the request there)."""

    status, code = 409, "conflict"

    def __init__(self, base_url: str) -> None:
        super().__init__(f"this room's media is served by {base_url}")
        self.base_url = base_url


class NoProgram(ApiError):
    """WHEP while no camera of the room is live: 409, retry later."""

    status, code = 409, "conflict"
    retry_after_s = 2


def restrict_ice_hosts(hosts: Sequence[str]) -> None:
    """Offer host candidates on ``hosts`` only (aioice otherwise offers every interface but loopback)."""
    import aioice.ice

    addresses = list(hosts)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses  # type: ignore[assignment]


@dataclass(slots=True)
class WhipSession:
    session_id: str
    kind: str  # "whip" or "whep"
    room_id: str
    camera_id: str | None
    user: str
    pc: RTCPeerConnection
    track: PacketTrack | None = None
    audio: AudioPacketTrack | None = None
    rate_mark: tuple[int, float] | None = None  # (bytes received, when): the last bitrate sample


class VideoService:
    def __init__(self, store: Store, rooms: RoomService, publish: Publish, limits: VideoLimits,
                 ice_hosts: Sequence[str] = (), connect_media: Callable[[], RedisClient] | None = None,
                 now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._redis, self._scripts, self._keys = store
        self._rooms = rooms
        self._publish = publish
        self.limits = limits
        self.rooms: dict[str, RoomVideo] = {}
        self.sessions: dict[str, WhipSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ice_hosts = tuple(ice_hosts)  # () = every interface
        self._now_ms = now_ms  # the shared (Redis) clock
        self.base_url: str | None = None  # where other nodes forward WHIP and WHEP for our rooms
        self._http: aiohttp.ClientSession | None = None
        self._connect_media = connect_media  # a bytes client for HLS segments; None: no HLS
        self._media: RedisClient | None = None
        self._windows: dict[str, deque[tuple[int, float]]] = {}
        self._ended = (0, 0.0)  # frames and encode seconds of the rooms that ended, so the counters never fall

    def http(self) -> aiohttp.ClientSession:
        """The client that forwards requests to the node holding a room's media."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._http

    def advertise(self, base_url: str) -> None:
        """This node's URL, to which the other nodes forward requests (the CLI, once it listens)."""
        self.base_url = base_url.rstrip("/")

    async def _holder(self, room_id: str, *, claim: bool) -> None:
        """Raise :class:`Elsewhere` when another node holds the room's media; with ``claim``,
        take the room for this node if no one holds it."""
        if (room_id in self.rooms and self.rooms[room_id].cameras) or self.base_url is None:
            return
        key = self._keys.room(room_id).video_node
        if claim and await self._redis.set(key, self.base_url, nx=True, ex=VIDEO_STATUS_TTL_S):
            return
        holder = await self._redis.get(key)
        if holder is None or holder == self.base_url:
            if holder == self.base_url and room_id not in self.rooms and not claim:
                raise Conflict("this room's media was held here until moments ago: retry in a few seconds")
            return
        raise Elsewhere(holder)

    # -- publishing (WHIP) --------------------------------------------------------

    async def publish_camera(self, room_id: str, camera_id: str, who: Principal, offer: str) -> tuple[str, str]:
        """A host's camera goes live: (session id, SDP answer)."""
        await self._rooms.get_run(room_id, who)
        await self._holder(room_id, claim=True)
        room = self._room(room_id)
        if camera_id in room.cameras or any(
            s.kind == "whip" and s.room_id == room_id and s.camera_id == camera_id for s in self.sessions.values()
        ):
            raise Conflict(f"camera {camera_id} of room {room_id} is live already")
        pc = self._peer()
        session = WhipSession(secrets.token_urlsafe(12), "whip", room_id, camera_id, who.user, pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._spawn(room.add_camera(camera_id, track))
            else:  # read even while the camera is not on air, so that nothing piles up
                self._spawn(room.add_audio(camera_id, track))

        answer = await self._negotiate(session, offer, "video", direction="recvonly")
        return session.session_id, answer

    # -- watching (WHEP) ----------------------------------------------------------

    async def watch(self, room_id: str, who: Principal, offer: str) -> tuple[str, str]:
        """A viewer's seat: (session id, SDP answer) for the room's program."""
        await self._rooms.get(room_id)
        room = self.rooms.get(room_id)
        if room is None or room.program.main is None:
            await self._holder(room_id, claim=False)
            raise NoProgram(f"no camera of room {room_id} is live yet")
        if sum(1 for s in self.sessions.values() if s.kind == "whep" and s.user == who.user) >= MAX_WHEP_PER_USER:
            raise RateLimited(f"at most {MAX_WHEP_PER_USER} WHEP sessions a user: close one first", retry_after_s=5)
        from .room import AudioPacketTrack, PacketTrack

        pc = self._peer()
        session = WhipSession(secrets.token_urlsafe(12), "whep", room_id, None, who.user, pc)
        track = session.track = PacketTrack(room)
        audio = session.audio = AudioPacketTrack(room) if "m=audio" in offer else None
        answer = await self._negotiate(session, offer, "video", direction="sendonly", track=track, audio=audio)
        room.viewers.add(track)
        if audio is not None:
            room.listeners.add(audio)
        room.request_keyframe()
        return session.session_id, answer

    # -- both -----------------------------------------------------------------------

    async def _negotiate(self, session: WhipSession, offer: str, kind: str, *, direction: str,
                         track: PacketTrack | None = None, audio: AudioPacketTrack | None = None) -> str:
        from aiortc import RTCRtpSender, RTCSessionDescription

        pc = session.pc
        if track is not None:  # ours to send: H.264 only, the one encoding of the room
            transceiver = pc.addTransceiver(track, direction=direction)
            transceiver.setCodecPreferences(
                [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == "video/h264"]
            )
            transceiver.sender._send_keyframe = self.rooms[session.room_id].request_keyframe  # noqa: SLF001 - PLI/FIR
        if audio is not None:  # the program's sound, Opus encoded once for the room
            pc.addTransceiver(audio, direction=direction).setCodecPreferences(
                [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
            )
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as exc:  # aiortc raises ValueError and friends for an SDP it cannot use
            await pc.close()
            raise BadRequest(f"the SDP offer cannot be used: {exc}") from None
        media = [t for t in pc.getTransceivers() if t.kind == kind and t.mid is not None]
        if not media:
            await pc.close()
            raise BadRequest(f"the SDP offer has no {kind} section")
        sound = [t for t in pc.getTransceivers() if t.kind == "audio" and t.mid is not None][:1]
        for transceiver in pc.getTransceivers():
            transceiver.direction = direction if transceiver is media[0] or transceiver in sound else "inactive"
        try:
            await pc.setLocalDescription(await pc.createAnswer())  # gathers every candidate first
        except Exception as exc:
            await pc.close()
            raise BadRequest(f"no answer to this offer: {exc}") from None
        self.sessions[session.session_id] = session

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._end(session)

        return pc.localDescription.sdp

    async def end_session(self, session_id: str, who: Principal) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFound("no such session")
        if session.user != who.user and who.role.value != "admin":
            raise Forbidden("this session is another user's")
        await self._end(session)

    def session(self, session_id: str) -> WhipSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFound("no such session")
        return session

    async def _end(self, session: WhipSession) -> None:
        if self.sessions.pop(session.session_id, None) is None:
            return
        room = self.rooms.get(session.room_id)
        if session.track is not None:
            session.track.stop()
        if session.audio is not None:
            session.audio.stop()
        if room is not None and session.camera_id is not None:
            room.remove_camera(session.camera_id)
        with contextlib.suppress(Exception):
            await session.pc.close()

    # -- the program ----------------------------------------------------------------

    async def set_program(self, room_id: str, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        await self._rooms.get_run(room_id, who)
        room = self.rooms.get(room_id)
        live = room.live if room is not None else []
        if room is None or not live:
            await self._holder(room_id, claim=False)
            raise Conflict(f"no camera of room {room_id} is live")
        program = parse_program(body, live, room.program)
        room.set_program(program)
        return program.public(live)

    async def cameras(self, room_id: str) -> list[dict[str, object]]:
        """The room's live cameras: here if this node holds its media, else from its status in Redis."""
        await self._rooms.get(room_id)
        room = self.rooms.get(room_id)
        if room is not None and room.cameras:
            return [c.stats() for c in room.cameras.values()]
        status = json_object(await self._redis.get(self._keys.room(room_id).video_status)) or {}
        cameras = status.get("cameras")
        return [{k: v for k, v in c.items() if k != "kbps"} for c in cameras or [] if isinstance(c, dict)]

    def totals(self) -> tuple[int, int, float, int]:
        """(cameras live, frames encoded, seconds spent encoding, WHEP viewers) on this node."""
        rooms = self.rooms.values()
        return (sum(len(r.cameras) for r in rooms), self._ended[0] + sum(r.frames_out for r in rooms),
                self._ended[1] + sum(r.encode_seconds for r in rooms), sum(len(r.viewers) for r in rooms))

    def _room(self, room_id: str) -> RoomVideo:
        from .room import RoomVideo

        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = RoomVideo(
                room_id, self.limits, lambda p, live: self._announce(room_id, p, live),
                (lambda seg: self._spawn(asyncio.ensure_future(self._store_segment(room_id, seg))))
                if self._connect_media is not None else None,
                lambda camera: self._spawn(asyncio.ensure_future(self._camera_gone(room_id, camera))),
                lambda: self._spawn(asyncio.ensure_future(self._write_status(room_id))),
            )
        return room

    async def _write_status(self, room_id: str) -> None:
        """The room's video now, for the metrics body of every node (expires 5 s after the media stops)."""
        room = self.rooms.get(room_id)
        if room is None:
            return
        cameras = []
        for camera in list(room.cameras.values()):
            stats = camera.stats()
            stats["kbps"] = await self._kbps(room_id, camera.camera_id)
            cameras.append(stats)
        status = {"cameras": cameras, "program": room.program.public(room.live), "whep_viewers": len(room.viewers)}
        k = self._keys.room(room_id)
        try:
            await self._redis.set(k.video_status, json.dumps(status), ex=VIDEO_STATUS_TTL_S)
            if self.base_url is not None and room.cameras:
                await self._redis.set(k.video_node, self.base_url, ex=VIDEO_STATUS_TTL_S)
        except Exception as exc:  # the next second tries again
            log.warning("video status of room %s not written: %s", room_id, exc)

    async def _kbps(self, room_id: str, camera_id: str) -> int | None:
        """A camera's incoming bitrate since the last call, in kbit/s (from its session's transport stats)."""
        session = next((s for s in self.sessions.values()
                        if s.kind == "whip" and s.room_id == room_id and s.camera_id == camera_id), None)
        if session is None:
            return None
        try:
            report = await session.pc.getStats()
        except Exception:  # a connection closing under us
            return None
        # aiortc counts bytes per transport (one WHIP session: one camera, and its audio if any)
        received = sum(getattr(s, "bytesReceived", 0) for s in report.values() if getattr(s, "type", "") == "transport")
        now = time.monotonic()
        last = session.rate_mark
        session.rate_mark = (received, now)
        if last is None or now <= last[1]:
            return None
        return round((received - last[0]) * 8 / (now - last[1]) / 1000)

    async def seen_hls(self, room_id: str, client: str) -> None:
        """An HLS player fetched the room's playlist (the HLS viewers of the metrics, on every node)."""
        k = self._keys.room(room_id)
        now = self._now_ms()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(k.hls_clients, {client: now})
        pipe.zremrangebyscore(k.hls_clients, "-inf", now - HLS_CLIENT_TTL_MS)
        pipe.pexpire(k.hls_clients, HLS_CLIENT_TTL_MS)
        await pipe.execute()

    async def _camera_gone(self, room_id: str, camera_id: str) -> None:
        for session in [s for s in self.sessions.values()
                        if s.kind == "whip" and s.room_id == room_id and s.camera_id == camera_id]:
            await self._end(session)

    def _announce(self, room_id: str, program: Program, live: list[str]) -> None:
        msg = program_message(program, live)
        self._spawn(asyncio.ensure_future(self._send(room_id, msg)))

    async def _send(self, room_id: str, msg: dict[str, Any]) -> None:
        try:
            await self._redis.set(self._keys.room(room_id).program, json.dumps(msg), ex=PROGRAM_TTL_S)
            await self._publish(room_id, msg)
        except Exception as exc:  # the next change says it again; the media goes on
            log.warning("program of room %s not announced: %s", room_id, exc)

    # -- HLS ------------------------------------------------------------------------

    def media(self) -> RedisClient:
        """The bytes client HLS segments and playlists are stored and served with."""
        if self._media is None:
            assert self._connect_media is not None
            self._media = self._connect_media()
        return self._media

    async def _store_segment(self, room_id: str, segment: Segment) -> None:
        k = self._keys.room(room_id)
        media = self.media()
        try:
            number = int(await media.incr(k.hls_seq))
            await media.set(k.hls_segment(number), segment.data, ex=HLS_SEGMENT_TTL_S)
            window = self._windows.setdefault(room_id, deque(maxlen=HLS_WINDOW))
            window.append((number, segment.duration_s))
            await media.set(k.hls_index, playlist(window, self.limits.gop_s).encode(), ex=HLS_INDEX_TTL_S)
        except Exception as exc:  # a lost segment is a skip in the players; the next one goes on
            log.warning("HLS segment of room %s not stored: %s", room_id, exc)

    async def hls(self, room_id: str, name: str) -> bytes | None:
        """The playlist (``index.m3u8``) or a segment (``<n>.ts``) of a room, from Redis (any node)."""
        if self._connect_media is None:
            return None
        k = self._keys.room(room_id)
        key = k.hls_index if name == "index.m3u8" else k.hls_segment(int(name.removesuffix(".ts")))
        data = await self.media().get(key)
        return bytes(data) if data is not None else None

    def _spawn(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lifecycle -----------------------------------------------------------------

    async def end_room(self, room_id: str) -> None:
        for session in [s for s in self.sessions.values() if s.room_id == room_id]:
            await self._end(session)
        self._windows.pop(room_id, None)
        room = self.rooms.pop(room_id, None)
        if room is not None:
            self._ended = (self._ended[0] + room.frames_out, self._ended[1] + room.encode_seconds)
            await room.close()

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await self._end(session)
        for room in list(self.rooms.values()):
            await room.close()
        self.rooms.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._media is not None:
            await self._media.aclose()
        if self._http is not None:
            await self._http.close()


    def _peer(self) -> RTCPeerConnection:
        from aiortc import RTCConfiguration, RTCPeerConnection

        if self._ice_hosts:
            restrict_ice_hosts(self._ice_hosts)
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: host candidates only
