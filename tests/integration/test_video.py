"""Live video end to end over loopback: aiortc publishers with solid-coloured cameras publish over
WHIP, an aiortc viewer watches the program over WHEP and checks the colours it decodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from liveserver.sdk import ViewerClient

from .conftest import RunningNode, StartNode, token

RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)
W, H = 320, 240


class ColourCamera(VideoStreamTrack):
    """A camera that films one colour at 30 fps."""

    def __init__(self, rgb: tuple[int, int, int], width: int = 320, height: int = 240) -> None:
        super().__init__()
        frame = av.VideoFrame(width, height, "rgb24")
        frame.planes[0].update(bytes(rgb) * (width * height))
        self._frame = frame.reformat(format="yuv420p")

    frozen = False  # a publisher whose app hung: the connection stays up, no frame comes

    async def recv(self) -> av.VideoFrame:
        while self.frozen:
            await asyncio.sleep(0.05)
        pts, time_base = await self.next_timestamp()
        frame = self._frame
        frame.pts, frame.time_base = pts, time_base
        return frame


def pixel(frame: av.VideoFrame, x: int, y: int) -> tuple[int, int, int]:
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    offset = y * plane.line_size + x * 3
    r, g, b = bytes(plane)[offset : offset + 3]
    return r, g, b


def near(rgb: tuple[int, int, int], want: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, want, strict=True))


def _pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def _post_sdp(http: aiohttp.ClientSession, url: str, sdp: str, tok: str) -> tuple[int, str, dict[str, str]]:
    async with http.post(url, data=sdp, headers={"Content-Type": "application/sdp",
                                                   "Authorization": f"Bearer {tok}"}) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


class Publisher:
    def __init__(self, node: RunningNode, room: str, camera: str, rgb: tuple[int, int, int]) -> None:
        self.node, self.room, self.camera, self.rgb = node, room, camera, rgb
        self.pc = _pc()
        self.location = ""

    async def start(self, http: aiohttp.ClientSession, tok: str) -> int:
        self.track = ColourCamera(self.rgb)
        self.pc.addTransceiver(self.track, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        url = f"{self.node.base_url}/api/v1/rooms/{self.room}/cameras/{self.camera}/whip"
        status, body, headers = await _post_sdp(http, url, self.pc.localDescription.sdp, tok)
        self.answer = body
        if status == 201:
            self.location = headers["Location"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        return status


class Viewer:
    def __init__(self) -> None:
        self.pc = _pc()
        self.frames: list[av.VideoFrame] = []
        self.got = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, http: aiohttp.ClientSession, node: RunningNode, room: str, tok: str) -> tuple[int, str, dict[str, str]]:
        self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._reader = asyncio.ensure_future(self._read(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        status, body, headers = await _post_sdp(http, f"{node.base_url}/api/v1/rooms/{room}/whep",
                                                self.pc.localDescription.sdp, tok)
        if status == 201:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        return status, body, headers

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                self.frames.append(frame)
                del self.frames[:-5]
                self.got.set()

    async def colour_becomes(self, x: int, y: int, want: tuple[int, int, int], timeout_s: float = 10) -> float:
        """Seconds until the pixel at (x, y) shows ``want``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        last: Any = None
        while loop.time() - start < timeout_s:
            if self.frames:
                last = pixel(self.frames[-1], x, y)
                if near(last, want):
                    return loop.time() - start
            await asyncio.sleep(0.03)
        raise AssertionError(f"pixel ({x}, {y}) is {last}, not {want}, after {timeout_s} s")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()


async def on_air(node: RunningNode, room: str, camera: str) -> None:
    """Wait until ``camera`` is the program's main (its first frame arrived)."""
    for _ in range(100):
        media = node.services.video.rooms.get(room)
        if media is not None and media.program.main == camera and media.cameras[camera].latest is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{camera} did not go on air in room {room}")


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice skips loopback when it gathers: the test's own peers offer 127.0.0.1 only (the server
    offers its --ice-host addresses, 127.0.0.1 here, by the same means)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def video_node(start_node: StartNode) -> RunningNode:
    return await start_node(video_width=W, video_height=H)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _live_room(http: aiohttp.ClientSession, node: RunningNode, room: str, host: str = "h") -> None:
    auth = {"Authorization": f"Bearer {token(host, 'host')}"}
    async with http.post(f"{node.base_url}/api/v1/rooms", json={"room_id": room, "title": "video"}, headers=auth) as r:
        assert r.status == 201, await r.text()
    async with http.post(f"{node.base_url}/api/v1/rooms/{room}/start", headers=auth) as r:
        assert r.status == 200, await r.text()


async def test_a_camera_published_over_whip_is_watched_over_whep(video_node: RunningNode,
                                                                 http: aiohttp.ClientSession) -> None:
    await _live_room(http, video_node, "v1")
    cam = Publisher(video_node, "v1", "cam1", RED)
    viewer = Viewer()
    chat = await ViewerClient.connect(video_node.ws_url, token("c"), "v1")
    try:
        assert "program" not in chat.welcome  # no camera has been live
        assert await cam.start(http, token("h", "host")) == 201
        program = await chat.wait_for("program")  # every viewer on /ws hears of it
        assert program["main"] == "cam1" and program["live"] == ["cam1"] and program["layout"] == "single"
        assert cam.location.startswith(f"{video_node.base_url}/api/v1/rooms/v1/cameras/cam1/whip/")
        async with http.get(f"{video_node.base_url}/api/v1/rooms/v1/cameras",
                            headers={"Authorization": f"Bearer {token('v')}"}) as r:
            assert [c["camera"] for c in (await r.json())["cameras"]] == ["cam1"]
        await on_air(video_node, "v1", "cam1")
        status, answer, headers = await viewer.start(http, video_node, "v1", token("v"))
        assert status == 201, answer
        assert headers["Content-Type"].startswith("application/sdp")
        assert "H264" in answer  # the program's one encoding
        assert "127.0.0.1" in answer  # host candidates on the configured ICE address only
        await viewer.colour_becomes(W // 2, H // 2, RED)
        assert viewer.frames[-1].width == W and viewer.frames[-1].height == H
        async with http.get(f"{video_node.base_url}/metrics") as r:
            text = await r.text()
        assert "liveserver_video_cameras 1.0" in text and "liveserver_whep_viewers 1.0" in text
        frames = next(float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith("liveserver_video_frames_out_total"))
        assert frames > 0
        late = await ViewerClient.connect(video_node.ws_url, token("late"), "v1")
        assert late.welcome["program"]["main"] == "cam1"  # and a viewer who joins later finds it in its welcome
        await late.close()
    finally:
        await chat.close()
        await viewer.close()
        await cam.pc.close()


async def test_switch_pip_and_fallback_reach_the_viewer(video_node: RunningNode, http: aiohttp.ClientSession) -> None:
    await _live_room(http, video_node, "v2")
    host = token("h", "host")
    cams = [Publisher(video_node, "v2", "cam1", RED), Publisher(video_node, "v2", "cam2", BLUE)]
    viewer = Viewer()
    auth = {"Authorization": f"Bearer {host}"}
    url = f"{video_node.base_url}/api/v1/rooms/v2/program"
    try:
        for cam in cams:
            assert await cam.start(http, host) == 201
        room = video_node.services.video.rooms["v2"]
        for _ in range(100):
            if len(room.live) == 2 and all(c.latest is not None for c in room.cameras.values()):
                break
            await asyncio.sleep(0.05)
        assert (await viewer.start(http, video_node, "v2", token("v")))[0] == 201
        await viewer.colour_becomes(W // 2, H // 2, RED)  # the first camera live is the main

        async with http.put(url, json={"layout": "single", "main": "cam2"}, headers=auth) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["main"] == "cam2"
        assert await viewer.colour_becomes(W // 2, H // 2, BLUE) < 1.5  # a switch shows within about a second

        async with http.put(url, json={"layout": "pip", "main": "cam2", "inset": "cam1", "inset_corner": "tl"},
                            headers=auth) as r:
            assert r.status == 200, await r.text()
        await viewer.colour_becomes(16 + 20, 16 + 10, RED)  # the inset, in the top left corner
        assert near(pixel(viewer.frames[-1], W - 30, H - 30), BLUE)  # the main elsewhere

        async with http.delete(cams[1].location, headers=auth) as r:
            assert r.status == 200
        await viewer.colour_becomes(W // 2, H // 2, RED)  # the main went off: the other camera takes over
        assert room.program.layout == "single" and room.program.main == "cam1"
    finally:
        await viewer.close()
        for cam in cams:
            await cam.pc.close()


async def test_whip_and_whep_refusals(video_node: RunningNode, http: aiohttp.ClientSession) -> None:
    await _live_room(http, video_node, "v3")
    base = video_node.base_url
    host = token("h", "host")
    viewer = Viewer()
    publishers = [Publisher(video_node, "v3", "cam1", GREEN) for _ in range(4)]
    seats = [Viewer() for _ in range(5)]
    try:
        status, _, headers = await viewer.start(http, video_node, "v3", token("v"))
        assert status == 409 and int(headers["Retry-After"]) >= 1  # no camera live yet
        assert await publishers[0].start(http, token("not-the-host", "host")) == 403
        assert await publishers[1].start(http, token("v")) == 403
        assert await publishers[2].start(http, host) == 201
        assert await publishers[3].start(http, host) == 409  # one publisher per camera
        status, body, _ = await _post_sdp(http, f"{base}/api/v1/rooms/v3/cameras/cam9/whip", "v=0\r\nnot sdp", host)
        assert status == 400 and "error" in body
        async with http.post(f"{base}/api/v1/rooms/v3/cameras/cam9/whip", json={"sdp": "x"},
                             headers={"Authorization": f"Bearer {host}"}) as r:
            assert r.status == 415
        async with http.options(f"{base}/api/v1/rooms/v3/cameras/cam1/whip") as r:
            assert r.headers["Accept-Post"] == "application/sdp"
        async with http.put(f"{base}/api/v1/rooms/v3/program", json={"main": "nope"},
                            headers={"Authorization": f"Bearer {host}"}) as r:
            assert r.status == 409  # only live cameras
        await on_air(video_node, "v3", "cam1")
        for seat in seats[:4]:
            assert (await seat.start(http, video_node, "v3", token("greedy")))[0] == 201
        status, _, headers = await seats[4].start(http, video_node, "v3", token("greedy"))
        assert status == 429 and int(headers["Retry-After"]) >= 1  # a user's seats are bounded
    finally:
        for seat in seats:
            await seat.close()
        await viewer.close()
        for pub in publishers:
            await pub.pc.close()


async def test_hls_is_served_by_another_node_from_the_one_encode(start_node: StartNode,
                                                                 http: aiohttp.ClientSession) -> None:
    """The node holding the media cuts ~2 s MPEG-TS segments from its one encode; a second node that
    holds nothing of the room serves the playlist and the segments (from Redis), and they decode."""
    import io

    a = await start_node(video_width=W, video_height=H)
    b = await start_node(video_width=W, video_height=H)
    await _live_room(http, a, "v4")
    async with http.get(f"{b.base_url}/live/v4/index.m3u8") as r:
        assert r.status == 404  # no camera yet
    cam = Publisher(a, "v4", "cam1", GREEN)
    try:
        assert await cam.start(http, token("h", "host")) == 201
        playlist = ""
        for _ in range(200):  # two segments: about 4 s
            async with http.get(f"{b.base_url}/live/v4/index.m3u8") as r:
                if r.status == 200:
                    assert r.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
                    playlist = await r.text()
                    if playlist.count(".ts") >= 2:
                        break
            await asyncio.sleep(0.05)
        lines = playlist.splitlines()
        assert lines[0] == "#EXTM3U" and "#EXT-X-ENDLIST" not in playlist  # live
        assert any(line.startswith("#EXT-X-TARGETDURATION:") for line in lines)
        durations = [float(line.split(":")[1].rstrip(",")) for line in lines if line.startswith("#EXTINF:")]
        assert all(1.5 <= d <= 4.5 for d in durations), durations
        segment = [line for line in lines if line.endswith(".ts")][-1]
        async with http.get(f"{b.base_url}/live/v4/{segment}") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "video/mp2t"
            data = await r.read()
        with av.open(io.BytesIO(data), format="mpegts") as ts:
            assert [s.type for s in ts.streams] == ["video", "audio"]  # the picture and its sound (AAC)
            frames = list(ts.decode(video=0))
        with av.open(io.BytesIO(data), format="mpegts") as ts:
            sound = list(ts.decode(audio=0))
        assert sound and sound[0].sample_rate == 48000
        heard_s = sum(f.samples for f in sound) / 48000
        assert abs(heard_s - len(frames) / 30) < 0.2  # as long as the picture: silence where no one speaks
        assert len(frames) >= 30 and (frames[0].width, frames[0].height) == (W, H)
        assert near(pixel(frames[-1], W // 2, H // 2), GREEN)
        async with http.get(f"{b.base_url}/live/v4/99999999.ts") as r:
            assert r.status == 404
        video: dict[str, Any] = {}
        for _ in range(60):  # the host's metrics, on the node without the media: the contract's video block
            async with http.get(f"{b.base_url}/api/v1/rooms/v4/metrics",
                                headers={"Authorization": f"Bearer {token('h', 'host')}"}) as r:
                video = (await r.json())["video"]
            if video["cameras"] and video["cameras"][0]["kbps"]:
                break
            await asyncio.sleep(0.1)
        assert [c["camera"] for c in video["cameras"]] == ["cam1"]
        assert video["cameras"][0]["width"] == 320 and video["cameras"][0]["kbps"] > 0
        assert video["program"] == {"layout": "single", "main": "cam1", "inset": None}
        assert video["hls_viewers"] == 1 and video["whep_viewers"] == 0
    finally:
        await cam.pc.close()


async def test_a_camera_that_stops_sending_goes_off_and_the_program_falls_back(start_node: StartNode,
                                                                             http: aiohttp.ClientSession) -> None:
    node = await start_node(video_width=W, video_height=H, video_camera_timeout_s=1.0)
    await _live_room(http, node, "v5")
    cams = [Publisher(node, "v5", "cam1", RED), Publisher(node, "v5", "cam2", BLUE)]
    chat = await ViewerClient.connect(node.ws_url, token("c"), "v5")
    try:
        for cam in cams:
            assert await cam.start(http, token("h", "host")) == 201
        room = node.services.video.rooms["v5"]
        for _ in range(100):
            if all(c.frames for c in room.cameras.values()) and len(room.cameras) == 2:
                break
            await asyncio.sleep(0.05)
        assert room.program.main == "cam1"
        cams[0].track.frozen = True  # the connection stays up; the frames stop
        for _ in range(100):
            msg = await chat.wait_for("program", timeout_s=5)
            if msg["live"] == ["cam2"]:
                break
        assert msg["main"] == "cam2"
        assert not any(s.camera_id == "cam1" for s in node.services.video.sessions.values())  # its session ended
    finally:
        await chat.close()
        for cam in cams:
            await cam.pc.close()


async def test_whip_whep_and_the_program_on_another_node_reach_the_media_node(start_node: StartNode,
                                                                              http: aiohttp.ClientSession) -> None:
    """One room's media runs on one node: a WHIP or WHEP offer or a PUT program that reaches another
    node is forwarded to it (the answer's candidates and the session URL are that node's), and any
    node lists the cameras."""
    a = await start_node(video_width=W, video_height=H)
    b = await start_node(video_width=W, video_height=H)
    await _live_room(http, a, "v6")
    host = token("h", "host")
    cams = [Publisher(a, "v6", "cam1", RED), Publisher(b, "v6", "cam2", BLUE)]
    viewer = Viewer()
    try:
        assert await cams[0].start(http, host) == 201
        assert await cams[1].start(http, host) == 201  # posted to b, forwarded to a, which holds the room
        assert cams[1].location.startswith(a.base_url)
        assert sorted(a.services.video.rooms["v6"].cameras) == ["cam1", "cam2"] and not b.services.video.rooms.get("v6")
        status, answer, _ = await viewer.start(http, b, "v6", token("v"))
        assert status == 201, answer
        await viewer.colour_becomes(W // 2, H // 2, RED)
        async with http.put(f"{b.base_url}/api/v1/rooms/v6/program", json={"main": "cam2"},
                            headers={"Authorization": f"Bearer {host}"}) as r:
            assert r.status == 200 and (await r.json())["main"] == "cam2"
        await viewer.colour_becomes(W // 2, H // 2, BLUE)
        for _ in range(40):
            async with http.get(f"{b.base_url}/api/v1/rooms/v6/cameras",
                                headers={"Authorization": f"Bearer {token('v')}"}) as r:
                listed = [c["camera"] for c in (await r.json())["cameras"]]
            if listed == ["cam1", "cam2"]:
                break
            await asyncio.sleep(0.1)
        assert listed == ["cam1", "cam2"]
    finally:
        await viewer.close()
        for cam in cams:
            await cam.pc.close()


async def test_the_main_cameras_sound_reaches_whep_viewers_encoded_once(video_node: RunningNode,
                                                                        http: aiohttp.ClientSession) -> None:
    from aiortc import AudioStreamTrack

    await _live_room(http, video_node, "v7")
    cam = Publisher(video_node, "v7", "cam1", RED)
    cam.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")  # the camera's microphone
    viewer = Viewer()
    heard: list[Any] = []
    listening: list[asyncio.Future[None]] = []
    viewer.pc.addTransceiver("audio", direction="recvonly")

    async def listen(track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            while True:
                heard.append(await track.recv())

    @viewer.pc.on("track")
    def on_audio(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            listening.append(asyncio.ensure_future(listen(track)))

    try:
        assert await cam.start(http, token("h", "host")) == 201
        await on_air(video_node, "v7", "cam1")
        status, answer, _ = await viewer.start(http, video_node, "v7", token("v"))
        assert status == 201 and "opus" in answer.lower()
        await viewer.colour_becomes(W // 2, H // 2, RED)
        for _ in range(100):
            if len(heard) >= 25:  # half a second of 20 ms frames
                break
            await asyncio.sleep(0.05)
        assert len(heard) >= 25 and heard[-1].sample_rate == 48000
        assert len(video_node.services.video.rooms["v7"].listeners) == 1
    finally:
        for task in listening:
            task.cancel()
        await viewer.close()
        await cam.pc.close()


async def test_ending_the_room_ends_its_video(video_node: RunningNode, http: aiohttp.ClientSession) -> None:
    await _live_room(http, video_node, "v8")
    cam = Publisher(video_node, "v8", "cam1", RED)
    viewer = Viewer()
    try:
        assert await cam.start(http, token("h", "host")) == 201
        await on_air(video_node, "v8", "cam1")
        assert (await viewer.start(http, video_node, "v8", token("v")))[0] == 201
        await viewer.colour_becomes(W // 2, H // 2, RED)
        async with http.post(f"{video_node.base_url}/api/v1/rooms/v8/end",
                             headers={"Authorization": f"Bearer {token('h', 'host')}"}) as r:
            assert r.status == 200
        assert "v8" not in video_node.services.video.rooms
        assert video_node.services.video.sessions == {}  # the camera's and the viewer's sessions closed
        async with http.put(f"{video_node.base_url}/api/v1/rooms/v8/program", json={"main": "cam1"},
                            headers={"Authorization": f"Bearer {token('h', 'host')}"}) as r:
            assert r.status == 409
    finally:
        await viewer.close()
        await cam.pc.close()


async def test_four_cameras_one_of_them_h264_and_a_switch_within_a_second(video_node: RunningNode,
                                                                         http: aiohttp.ClientSession) -> None:
    from aiortc import RTCRtpSender

    await _live_room(http, video_node, "v9")
    colours = {"cam1": RED, "cam2": BLUE, "cam3": GREEN, "cam4": (230, 230, 40)}
    cams = [Publisher(video_node, "v9", cam, rgb) for cam, rgb in colours.items()]
    viewer = Viewer()
    host = token("h", "host")
    try:
        for cam in cams[:3]:
            assert await cam.start(http, host) == 201  # aiortc's first choice: VP8
        h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
        cams[3].track = ColourCamera(cams[3].rgb)
        cams[3].pc.addTransceiver(cams[3].track, direction="sendonly").setCodecPreferences(h264)
        await cams[3].pc.setLocalDescription(await cams[3].pc.createOffer())
        status, answer, _ = await _post_sdp(http, f"{video_node.base_url}/api/v1/rooms/v9/cameras/cam4/whip",
                                                  cams[3].pc.localDescription.sdp, host)
        assert status == 201 and "H264" in answer  # OBS and browsers send H.264
        await cams[3].pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        room = video_node.services.video.rooms["v9"]
        for _ in range(100):
            if len(room.cameras) == 4 and all(c.latest is not None for c in room.cameras.values()):
                break
            await asyncio.sleep(0.05)
        assert sorted(room.cameras) == list(colours)
        assert (await viewer.start(http, video_node, "v9", token("v")))[0] == 201
        await viewer.colour_becomes(W // 2, H // 2, RED)
        for cam in ("cam4", "cam3", "cam2"):
            async with http.put(f"{video_node.base_url}/api/v1/rooms/v9/program", json={"main": cam},
                                headers={"Authorization": f"Bearer {host}"}) as r:
                assert r.status == 200
            seconds = await viewer.colour_becomes(W // 2, H // 2, colours[cam])
            assert seconds < 1.0, f"{cam} showed after {seconds:.2f} s"
    finally:
        await viewer.close()
        for cam in cams:
            await cam.pc.close()


async def test_a_stopping_node_closes_its_webrtc_sessions(start_node: StartNode, http: aiohttp.ClientSession) -> None:
    """SIGTERM (the runner's cleanup): publishers and viewers see their connections close, at once."""
    node = await start_node(video_width=W, video_height=H)
    await _live_room(http, node, "v10")
    cam = Publisher(node, "v10", "cam1", RED)
    viewer = Viewer()
    try:
        assert await cam.start(http, token("h", "host")) == 201
        await on_air(node, "v10", "cam1")
        assert (await viewer.start(http, node, "v10", token("v")))[0] == 201
        await viewer.colour_becomes(W // 2, H // 2, RED)
        await node.stop()
        for _ in range(100):
            if cam.pc.connectionState == "closed" and viewer.pc.connectionState == "closed":
                break
            await asyncio.sleep(0.05)
        assert (cam.pc.connectionState, viewer.pc.connectionState) == ("closed", "closed")
    finally:
        await viewer.close()
        await cam.pc.close()


async def test_hls_carries_the_main_cameras_sound(start_node: StartNode, http: aiohttp.ClientSession) -> None:
    import io
    import math

    from aiortc.mediastreams import AudioStreamTrack

    class Tone(AudioStreamTrack):
        """A 440 Hz tone, 20 ms a frame."""

        def __init__(self) -> None:
            super().__init__()
            self._n = 0

        async def recv(self) -> av.AudioFrame:
            frame = await super().recv()  # silence at the track's own pace and clock
            samples = frame.samples
            tone = b"".join(int(12000 * math.sin(2 * math.pi * 440 * (self._n + i) / frame.sample_rate))
                            .to_bytes(2, "little", signed=True) for i in range(samples))
            self._n += samples
            frame.planes[0].update(tone)
            return frame

    node = await start_node(video_width=W, video_height=H)
    await _live_room(http, node, "v11")
    cam = Publisher(node, "v11", "cam1", RED)
    cam.pc.addTransceiver(Tone(), direction="sendonly")
    try:
        assert await cam.start(http, token("h", "host")) == 201
        segment = None
        for _ in range(200):
            async with http.get(f"{node.base_url}/live/v11/index.m3u8") as r:
                if r.status == 200:
                    names = [line for line in (await r.text()).splitlines() if line.endswith(".ts")]
                    if len(names) >= 2:
                        segment = names[-1]
                        break
            await asyncio.sleep(0.05)
        assert segment is not None
        async with http.get(f"{node.base_url}/live/v11/{segment}") as r:
            data = await r.read()
        to_s16 = av.AudioResampler(format="s16", layout="mono", rate=48000)
        with av.open(io.BytesIO(data), format="mpegts") as ts:
            pcm = b"".join(bytes(r.planes[0])[: r.samples * 2] for f in ts.decode(audio=0) for r in to_s16.resample(f))
        values = [int.from_bytes(pcm[i:i + 2], "little", signed=True) for i in range(0, len(pcm) - 1, 2)]
        loud = math.sqrt(sum(v * v for v in values) / max(1, len(values)))
        assert loud > 1000, loud  # the tone, not silence
    finally:
        await cam.pc.close()


async def test_a_camera_that_comes_back_continues_the_programs_clock(video_node: RunningNode,
                                                                     http: aiohttp.ClientSession,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Every camera goes off, one comes back: the room's clock goes on where it was (the encoder, the
    viewers and the open HLS segment never see time go back), so no frame fails and HLS goes on."""
    await _live_room(http, video_node, "v12")
    host = token("h", "host")

    async def segments() -> list[int]:
        async with http.get(f"{video_node.base_url}/live/v12/index.m3u8") as r:
            text = await r.text() if r.status == 200 else ""
        return [int(line[:-3]) for line in text.splitlines() if line.endswith(".ts")]

    first = Publisher(video_node, "v12", "cam1", RED)
    again = Publisher(video_node, "v12", "cam1", BLUE)
    try:
        assert await first.start(http, host) == 201
        for _ in range(100):
            if await segments():
                break
            await asyncio.sleep(0.05)
        async with http.delete(first.location, headers={"Authorization": f"Bearer {host}"}) as r:
            assert r.status == 200
        room = video_node.services.video.rooms["v12"]
        for _ in range(50):  # the room's ticker stops with its last camera
            if room._ticker is None:  # noqa: SLF001
                break
            await asyncio.sleep(0.05)
        seen = max(await segments())
        assert await again.start(http, host) == 201
        for _ in range(200):
            if max(await segments(), default=0) > seen + 1:
                break
            await asyncio.sleep(0.05)
        assert max(await segments()) > seen + 1  # HLS goes on
        failed = [r for r in caplog.records if r.name == "liveserver.video.room" and r.levelname == "ERROR"]
        assert failed == []
    finally:
        await first.pc.close()
        await again.pc.close()
