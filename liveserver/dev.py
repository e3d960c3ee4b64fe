"""--dev: a demo room with products, and tokens to try it with."""

from __future__ import annotations

import logging
import os
import shlex

from .auth import Principal, Role, mint_token
from .errors import ApiError
from .services import Services

__all__ = ["seed_demo"]

log = logging.getLogger("liveserver.dev")

DEMO_ROOM = "demo"
DEMO_HOST = "demo-host"
_PRODUCTS = [
    ("p1", "Silk scarf", 12900),
    ("p2", "Ceramic teapot", 8800),
    ("p3", "Bluetooth earbuds", 19900),
]


async def seed_demo(services: Services, base_url: str) -> None:
    """Create (or keep) the live demo room and log how to join it: commands that work as printed."""
    secret = services.settings.secret
    host = Principal(user=DEMO_HOST, role=Role.HOST, name="Demo host", exp=0)
    try:
        await services.rooms.create(host, {"room_id": DEMO_ROOM, "title": "Demo live room"})
        for pid, title, price in _PRODUCTS:
            await services.rooms.put_product(DEMO_ROOM, pid, host, {"title": title, "price_cents": price})
        await services.rooms.start(DEMO_ROOM, host)
    except ApiError as exc:  # an ended demo room from an earlier run, or another host's "demo"
        log.warning("demo room not set up: %s", exc.message)
        return
    host_token = mint_token(secret, DEMO_HOST, Role.HOST, name="Demo host", ttl_s=services.settings.dev_token_ttl_s)
    viewer_token = mint_token(secret, "demo-viewer", Role.VIEWER, name="Viewer", ttl_s=services.settings.dev_token_ttl_s)
    for line in demo_lines(base_url, host_token, viewer_token, secret_from_env=_secret_from_env(secret)):
        log.info("%s", line)


def demo_lines(base_url: str, host_token: str, viewer_token: str, *, secret_from_env: bool) -> list[str]:
    """What ``--dev`` logs once the demo room is live."""
    curl_room = shlex.join(["curl", "-H", f"Authorization: Bearer {viewer_token}",
                            f"{base_url}/api/v1/rooms/{DEMO_ROOM}"])
    signed = ("LIVESERVER_SECRET" if secret_from_env
              else "a secret generated for this run (set LIVESERVER_SECRET to keep tokens across restarts)")
    return [
        f"demo room {DEMO_ROOM!r} is live: {curl_room}",
        f"host dashboard: {base_url}/app/dashboard.html?room={DEMO_ROOM}",
        f"viewer page:    {base_url}/app/viewer.html?room={DEMO_ROOM}",
        f"demo host token:   {host_token}",
        f"demo viewer token: {viewer_token}",
        f"tokens are signed with {signed}",
        f"more tokens: liveserver token --dev-url {base_url} --sub alice --role viewer "
        f"(or: curl -X POST {base_url}/api/v1/dev/tokens -d '{{\"sub\": \"alice\", \"role\": \"viewer\"}}')",
    ]


def _secret_from_env(secret: str) -> bool:
    """Whether the server signs with ``LIVESERVER_SECRET`` (``--dev`` generates one only without it)."""
    return os.environ.get("LIVESERVER_SECRET") == secret
