"""The peer of bench/video.py: aiortc's stock MediaRelay behind the same WHIP and WHEP paths.

One publisher's track is relayed to every viewer with ``MediaRelay().subscribe``; each viewer's
``RTCRtpSender`` then encodes the frames for itself, as an aiortc server does out of the box.
Loopback only, no auth, one room.
"""

from __future__ import annotations

import argparse
import asyncio

import aioice.ice
from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]

relay = MediaRelay()
source: dict[str, MediaStreamTrack] = {}
pcs: set[RTCPeerConnection] = set()


async def _answer(pc: RTCPeerConnection, offer: str) -> web.Response:
    pcs.add(pc)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.Response(status=201, body=pc.localDescription.sdp.encode(), content_type="application/sdp",
                        headers={"Location": f"/session/{id(pc)}"})


async def whip(request: web.Request) -> web.Response:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            source["video"] = track

    return await _answer(pc, await request.text())


async def whep(request: web.Request) -> web.Response:
    if "video" not in source:
        return web.Response(status=409, headers={"Retry-After": "1"})
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    offer = await request.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    pc.addTrack(relay.subscribe(source["video"]))
    pcs.add(pc)
    await pc.setLocalDescription(await pc.createAnswer())
    return web.Response(status=201, body=pc.localDescription.sdp.encode(), content_type="application/sdp",
                        headers={"Location": f"/session/{id(pc)}"})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    app = web.Application()
    app.router.add_post("/api/v1/rooms/{room}/cameras/{camera}/whip", whip)
    app.router.add_post("/api/v1/rooms/{room}/whep", whep)
    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, handle_signals=True)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
