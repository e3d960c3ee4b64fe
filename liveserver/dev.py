"""--dev: a demo room with products, and tokens to try it with."""

from __future__ import annotations

import logging

from .auth import Principal, Role, mint_token
from .errors import ApiError
from .node import Node

__all__ = ["seed_demo"]

log = logging.getLogger("liveserver.dev")

DEMO_ROOM = "demo"
DEMO_HOST = "demo-host"
_PRODUCTS = [
    ("p1", "Silk scarf", 12900),
    ("p2", "Ceramic teapot", 8800),
    ("p3", "Bluetooth earbuds", 19900),
]


async def seed_demo(node: Node, base_url: str) -> None:
    """Create (or keep) the live demo room and log how to join it."""
    secret = node.settings.secret
    host = Principal(user=DEMO_HOST, role=Role.HOST, name="Demo host", exp=0)
    try:
        await node.rooms.create(host, {"room_id": DEMO_ROOM, "title": "Demo live room"})
        for pid, title, price in _PRODUCTS:
            await node.rooms.put_product(DEMO_ROOM, pid, host, {"title": title, "price_cents": price})
        await node.rooms.start(DEMO_ROOM, host)
    except ApiError as exc:  # an ended demo room from an earlier run, or another host's "demo"
        log.warning("demo room not set up: %s", exc.message)
        return
    host_token = mint_token(secret, DEMO_HOST, Role.HOST, name="Demo host", ttl_s=node.settings.dev_token_ttl_s)
    viewer_token = mint_token(secret, "demo-viewer", Role.VIEWER, name="Viewer", ttl_s=node.settings.dev_token_ttl_s)
    log.info("demo room %r is live: GET %s/api/v1/rooms/%s", DEMO_ROOM, base_url, DEMO_ROOM)
    log.info("host dashboard: %s/app/dashboard.html?room=%s", base_url, DEMO_ROOM)
    log.info("viewer page:    %s/app/viewer.html?room=%s", base_url, DEMO_ROOM)
    log.info("demo host token:   %s", host_token)
    log.info("demo viewer token: %s", viewer_token)
    log.info(
        "more tokens: curl -X POST %s/api/v1/dev/tokens -d '{\"sub\": \"alice\", \"role\": \"viewer\"}'", base_url
    )
