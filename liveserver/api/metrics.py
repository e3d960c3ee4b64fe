"""Metrics entry points: the funnel events over WebSocket and the room's metrics over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import Forbidden
from ..http import json_response, principal
from ..keys import SERVICES
from ..wire import Funnel

if TYPE_CHECKING:
    from ..gateway import Command, Session

__all__ = ["commands", "routes"]

routes = web.RouteTableDef()


async def on_funnel(session: Session, msg: Funnel) -> None:
    """``exposure``, ``click``, ``cart``: counted, no reply."""
    assert session.conn is not None
    session.services.room_metrics.funnel(session.conn.room, session.conn.user, msg.kind, msg.product_id)


commands: dict[type, Command] = {Funnel: on_funnel}


@routes.get("/api/v1/rooms/{room}/metrics")
async def room_metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = principal(request)
    room = await services.rooms.get(request.match_info["room"])
    if not who.may_run(room.host):
        raise Forbidden("only the room's host or an admin may read its metrics")
    return json_response(await services.room_metrics.body(room.room_id, await services.presence.online(room.room_id)))
