"""Live video over HTTP: WHIP (publish a camera), WHEP (watch the program), the cameras, the program.

WHIP (RFC 9725) and WHEP speak ``application/sdp``: the offer in the body, the
answer in a 201 with the session's URL in ``Location``.  The session URL takes
PATCH (trickled candidates, ``application/trickle-ice-sdpfrag``: 204; an ICE
restart: 422) and DELETE (200).  OPTIONS answers CORS with ``Accept-Post``.
"""

from __future__ import annotations

import hashlib

import aiohttp
from aiohttp import web

from ..errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, Unavailable
from ..http import json_response, principal, read_json, writer_principal
from ..keys import SERVICES
from ..video.service import Elsewhere
from ..wire import ID_RE

__all__ = ["routes"]

routes = web.RouteTableDef()

SDP = "application/sdp"
SDP_FRAG = "application/trickle-ice-sdpfrag"
MAX_SDP_BYTES = 64 * 1024
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag",
}


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class IceRestartRefused(ApiError):
    status, code = 422, "invalid"


def _id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_RE.match(value):
        raise BadRequest(f"'{name}' must be 1-64 of [A-Za-z0-9_.-]")
    return value


async def _sdp(request: web.Request, content_type: str = SDP) -> str:
    if request.content_type != content_type:
        raise UnsupportedMediaType(f"send the offer as {content_type}")
    raw = await request.content.read(MAX_SDP_BYTES + 1)
    if len(raw) > MAX_SDP_BYTES:
        raise BadRequest(f"an SDP body is limited to {MAX_SDP_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the SDP is not UTF-8") from None


FORWARDED = "X-Liveserver-Forwarded"  # a request one node passed to another: never passed on again
_PASSED_ON = ("Authorization", "Content-Type", "User-Agent")
_PASSED_BACK = ("Content-Type", "Location", "Retry-After", "ETag", "Link")


async def _forward(request: web.Request, base_url: str, body: bytes) -> web.Response:
    """The room's media is on the node at ``base_url``: pass the request there and its answer back.

    Forwarded rather than redirected: a 307 to another origin loses ``Authorization`` (browsers and
    aiohttp drop it), and WHIP clients need not follow redirects.  The media itself then flows
    between the client and that node (the answer's candidates are its), and the session's URL in
    ``Location`` is that node's, so PATCH and DELETE go there directly."""
    if request.headers.get(FORWARDED):
        raise Conflict("the node this was forwarded to does not hold the room's media either: retry")
    headers = {h: request.headers[h] for h in _PASSED_ON if h in request.headers}
    headers[FORWARDED] = "1"
    http = request.app[SERVICES].video.http()
    try:
        async with http.request(request.method, base_url + request.path_qs, data=body, headers=headers,
                                allow_redirects=False) as resp:
            data = await resp.read()
            kept = {h: resp.headers[h] for h in _PASSED_BACK if h in resp.headers}
            return web.Response(status=resp.status, body=data, headers={**kept, **_CORS})
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"the node that holds the room's media does not answer: {exc}") from None


def _answer(request: web.Request, answer: str, path: str) -> web.Response:
    """201 with the answer; ``Location`` is absolute when this node knows its URL (the session lives
    here, whichever node the client first asked)."""
    base = request.app[SERVICES].video.base_url or ""
    return web.Response(status=201, body=answer.encode(), content_type=SDP, headers={"Location": base + path, **_CORS})


# -- WHIP ---------------------------------------------------------------------------------------


@routes.post("/api/v1/rooms/{room}/cameras/{camera}/whip")
async def whip(request: web.Request) -> web.Response:
    room, camera = _id(request, "room"), _id(request, "camera")
    who = await writer_principal(request)
    offer = await _sdp(request)
    try:
        session_id, answer = await request.app[SERVICES].video.publish_camera(room, camera, who, offer)
    except Elsewhere as exc:
        return await _forward(request, exc.base_url, offer.encode())
    return _answer(request, answer, f"/api/v1/rooms/{room}/cameras/{camera}/whip/{session_id}")


# -- WHEP ---------------------------------------------------------------------------------------


@routes.post("/api/v1/rooms/{room}/whep")
async def whep(request: web.Request) -> web.Response:
    room = _id(request, "room")
    who = principal(request)
    offer = await _sdp(request)
    try:
        session_id, answer = await request.app[SERVICES].video.watch(room, who, offer)  # NoProgram: 409, Retry-After
    except Elsewhere as exc:
        return await _forward(request, exc.base_url, offer.encode())
    return _answer(request, answer, f"/api/v1/rooms/{room}/whep/{session_id}")


# -- sessions -----------------------------------------------------------------------------------


async def _patch(request: web.Request) -> web.Response:
    who = principal(request)
    video = request.app[SERVICES].video
    session = video.session(request.match_info["session"])
    if session.user != who.user:
        raise Forbidden("this session is another user's")
    frag = await _sdp(request, SDP_FRAG)
    remote = session.pc.remoteDescription
    ufrag = next((line.split(":", 1)[1].strip() for line in frag.splitlines() if line.startswith("a=ice-ufrag:")),
                 None)
    if ufrag is not None and remote is not None and f"a=ice-ufrag:{ufrag}" not in remote.sdp:
        raise IceRestartRefused("ICE restarts are not supported: start a new session")
    return web.Response(status=204, headers=_CORS)  # every candidate of ours was in the answer already


async def _delete(request: web.Request) -> web.Response:
    await request.app[SERVICES].video.end_session(request.match_info["session"], principal(request))
    return web.Response(status=200, headers=_CORS)


async def _options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={**_CORS, "Accept-Post": SDP})


for path in ("/api/v1/rooms/{room}/cameras/{camera}/whip/{session}", "/api/v1/rooms/{room}/whep/{session}"):
    routes.patch(path)(_patch)
    routes.delete(path)(_delete)
    routes.options(path)(_options)
routes.options("/api/v1/rooms/{room}/cameras/{camera}/whip")(_options)
routes.options("/api/v1/rooms/{room}/whep")(_options)


# -- HLS: served by every node, from Redis ------------------------------------------------------


@routes.get("/live/{room}/index.m3u8")
async def hls_playlist(request: web.Request) -> web.Response:
    room = _id(request, "room")
    video = request.app[SERVICES].video
    data = await video.hls(room, "index.m3u8")
    if data is None:
        raise NotFound("no camera of this room is live")
    # an HLS viewer: one player fetches the playlist every segment (behind a CDN: the CDN's fetches)
    client = f"{request.remote}|{request.headers.get('User-Agent', '')}"
    await video.seen_hls(room, hashlib.blake2b(client.encode(), digest_size=8).hexdigest())
    return web.Response(body=data, content_type="application/vnd.apple.mpegurl",
                        headers={"Cache-Control": "max-age=1", "Access-Control-Allow-Origin": "*"})


@routes.get(r"/live/{room}/{segment:\d{1,19}}.ts")
async def hls_segment(request: web.Request) -> web.Response:
    data = await request.app[SERVICES].video.hls(_id(request, "room"), request.match_info["segment"] + ".ts")
    if data is None:
        raise NotFound("no such segment (segments live 60 s)")
    return web.Response(body=data, content_type="video/mp2t",
                        headers={"Cache-Control": "max-age=60, immutable", "Access-Control-Allow-Origin": "*"})


# -- cameras and the program --------------------------------------------------------------------


@routes.get("/api/v1/rooms/{room}/cameras")
async def cameras(request: web.Request) -> web.Response:
    principal(request)
    return json_response({"cameras": await request.app[SERVICES].video.cameras(_id(request, "room"))})


@routes.put("/api/v1/rooms/{room}/program")
async def put_program(request: web.Request) -> web.Response:
    who = await writer_principal(request)
    body = await read_json(request)
    try:
        return json_response(await request.app[SERVICES].video.set_program(_id(request, "room"), who, body))
    except Elsewhere as exc:
        return await _forward(request, exc.base_url, await request.read())
