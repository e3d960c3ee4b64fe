"""Drop entry points: the WebSocket ``grab`` command and the HTTP routes of flash sales,
coupons, orders and the blocklist."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..auth import Principal, Role
from ..errors import Forbidden, Invalid
from ..http import json_response, principal, read_json, require_admin, writer_principal
from ..keys import SERVICES
from ..wire import MAX_REQ_ID, Claim, Grab

if TYPE_CHECKING:
    from ..gateway import Command, Session

__all__ = ["commands", "routes"]

routes = web.RouteTableDef()


def _grabber(who: Principal) -> None:
    if who.role is not Role.VIEWER:
        raise Forbidden("only viewers grab")


# -- WebSocket -----------------------------------------------------------------------------


async def on_grab(session: Session, msg: Grab) -> None:
    assert session.principal is not None
    _grabber(session.principal)
    kind, drop_id = ("sale", msg.sale_id) if msg.sale_id is not None else ("coupon", msg.coupon_id)
    assert drop_id is not None
    result = await session.services.grabs.grab(session.principal, drop_id, kind, msg.req_id, session.ip, session.rtt_ms)
    session.reply(result, msg.req_id)


async def on_claim(session: Session, msg: Claim) -> None:
    assert session.principal is not None
    _grabber(session.principal)
    session.reply(await session.services.packets.claim(session.principal, msg.packet_id), msg.req_id)


commands: dict[type, Command] = {Grab: on_grab, Claim: on_claim}


# -- HTTP: flash sales and coupons ------------------------------------------------------------


def _drop_routes(kind: str, collection: str) -> None:
    """Create (host) and read (anyone signed in) one kind of drop: the same handlers for a
    flash sale and a coupon, which differ only in their kind and their path."""

    async def create(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        who = await writer_principal(request)
        body = await services.seckill.create(request.match_info["room"], who, await read_json(request), kind)
        return json_response(body, status=201)

    async def get(request: web.Request) -> web.Response:
        principal(request)
        services = request.app[SERVICES]
        return json_response(await services.seckill.get(request.match_info["room"], request.match_info[kind], kind))

    routes.post(f"/api/v1/rooms/{{room}}/{collection}")(create)
    routes.get(f"/api/v1/rooms/{{room}}/{collection}/{{{kind}}}")(get)


_drop_routes("sale", "flash-sales")
_drop_routes("coupon", "coupons")


async def _http_grab(request: web.Request, kind: str, drop_id: str) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    _grabber(who)
    body = await read_json(request)
    req_id = body.get("req_id")
    if not isinstance(req_id, str) or not 1 <= len(req_id) <= MAX_REQ_ID:
        raise Invalid("req_id", f"'req_id' must be a string of 1-{MAX_REQ_ID} characters (it makes retries safe)")
    result: dict[str, Any] = await services.grabs.grab(who, drop_id, kind, req_id, request.remote or "unknown")
    return json_response({**result, "req_id": req_id})


@routes.post("/api/v1/flash-sales/{sale}/grab")
async def grab_sale(request: web.Request) -> web.Response:
    return await _http_grab(request, "sale", request.match_info["sale"])


@routes.post("/api/v1/coupons/{coupon}/grab")
async def grab_coupon(request: web.Request) -> web.Response:
    return await _http_grab(request, "coupon", request.match_info["coupon"])


@routes.get("/api/v1/me/coupons")
async def my_coupons(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return json_response({"coupons": await services.orders.my_coupons(principal(request))})


# -- HTTP: red packets -----------------------------------------------------------------------


@routes.post("/api/v1/rooms/{room}/red-packets")
async def create_packet(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    return json_response(await services.packets.create(request.match_info["room"], who, await read_json(request)), status=201)


@routes.post("/api/v1/rooms/{room}/red-packet-rains")
async def create_rain(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    body = await services.packets.create_rain(request.match_info["room"], who, await read_json(request))
    return json_response(body, status=201)


@routes.get("/api/v1/rooms/{room}/red-packets/{packet}")
async def get_packet(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return json_response(await services.packets.get(request.match_info["room"], request.match_info["packet"], principal(request)))


@routes.post("/api/v1/red-packets/{packet}/claim")
async def claim_packet(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = await writer_principal(request)
    _grabber(who)
    return json_response(await services.packets.claim(who, request.match_info["packet"]))


# -- HTTP: orders ------------------------------------------------------------------------------


@routes.get("/api/v1/orders/{order}")
async def get_order(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return json_response(await services.orders.get_order(request.match_info["order"], principal(request)))


@routes.post("/api/v1/orders/{order}/pay")
async def pay_order(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return json_response(await services.orders.pay(request.match_info["order"], await writer_principal(request)))


@routes.post("/api/v1/orders/{order}/cancel")
async def cancel_order(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return json_response(await services.orders.cancel(request.match_info["order"], await writer_principal(request)))


# -- HTTP: the blocklist ---------------------------------------------------------------------------


@routes.get("/api/v1/blocklist")
async def get_blocklist(request: web.Request) -> web.Response:
    require_admin(request, "the blocklist")
    services = request.app[SERVICES]
    return json_response({"users": sorted(await services.redis.smembers(services.keys.blocklist))})


@routes.patch("/api/v1/blocklist")
async def patch_blocklist(request: web.Request) -> web.Response:
    require_admin(request, "the blocklist")
    services = request.app[SERVICES]
    return json_response({"users": await services.seckill.change_blocklist(await read_json(request))})
