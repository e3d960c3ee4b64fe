"""The host dashboard and the viewer page in a real browser: Debian's Chromium driven by Playwright.

Screenshots go to ``test-artifacts/`` (or ``$LIVESERVER_TEST_ARTIFACTS``).  Chromium
comes from the ``chromium`` Debian package, which ``.ci/run`` installs; Playwright's own
browser download is never used.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from liveserver.sdk import HostClient

from .conftest import RunningNode, StartNode, token
from .test_metrics import FAST

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(os.environ.get("LIVESERVER_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium package (.ci/run does)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield b
        await b.close()


async def _page(browser: Browser, url: str, width: int, height: int) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(url)
    return page, errors


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _live_room(node: RunningNode, host: str) -> tuple[HostClient, str]:
    h = HostClient(node.base_url, token(host, "host"))
    room = (await h.create_room("Browser test", room_id=f"b-{uuid.uuid4().hex[:8]}"))["room_id"]
    await h.start_room(room)
    await h.put_product(room, "p1", "Longjing tea", 1500)
    await h.put_product(room, "p2", "Teacup", 800)
    await h.pin_product(room, "p1")
    return h, room


async def test_viewer_grabs_and_claims_and_the_dashboard_follows(start_node: StartNode, browser: Browser) -> None:
    node = await start_node(dev=True, serve_pages=True, **FAST)
    h, room = await _live_room(node, "pw-host")
    dash, dash_errors = await _page(browser, f"{node.base_url}/app/dashboard.html?room={room}", 1400, 1000)
    view, view_errors = await _page(browser, f"{node.base_url}/app/viewer.html?room={room}", 420, 900)
    await expect(view.get_by_test_id("pinned-title")).to_have_text("Longjing tea")
    await expect(view.get_by_test_id("room-status")).to_have_text("live")
    await expect(dash.get_by_test_id("room-title")).to_have_text("Browser test")

    # a flash sale with a countdown: the button waits for zero on the server's clock
    await h.create_flash_sale(room, "p1", 1000, 5, countdown_s=2)
    await expect(view.get_by_test_id("countdown")).to_contain_text("Starts in")
    await expect(view.get_by_test_id("grab")).to_be_disabled()
    await expect(view.get_by_test_id("grab")).to_be_enabled(timeout=5000)
    await view.get_by_test_id("grab").click()
    await expect(view.get_by_test_id("grab-result")).to_have_text("Got it!")
    await view.get_by_test_id("pay").click()
    await expect(view.get_by_test_id("order")).to_contain_text("paid")
    paid_at = time.monotonic()

    # the dashboard: the new order, GMV and the funnel within 2 s of the payment
    await expect(dash.get_by_test_id("gmv")).to_have_text("¥10.00", timeout=2000)
    await expect(dash.get_by_test_id("paid-count")).to_have_text("1", timeout=500)
    await expect(dash.get_by_test_id("order-count")).to_have_text("1", timeout=500)
    for step in range(4):  # saw a product -> clicked -> ordered -> paid: one viewer all the way
        await expect(dash.get_by_test_id(f"funnel-{step}")).to_have_text("1", timeout=500)
    assert time.monotonic() - paid_at < 2.5
    body: dict[str, Any] = await h.request("GET", f"/api/v1/rooms/{room}/metrics")
    assert body["gmv_cents"] == 1000 and body["buyer_uv"] == 1 and body["click_uv"] == 1
    row = dash.locator('tr[data-product="p1"]')
    await expect(row).to_contain_text("Longjing tea")
    await expect(row).to_contain_text("¥10.00")

    # a red packet: the viewer opens it and sees the amount the server recorded
    packet = await h.create_red_packet(room, 300, 3)
    await expect(view.get_by_test_id("red-packet")).to_be_visible()
    await view.get_by_test_id("claim").click()
    await expect(view.get_by_test_id("claim-result")).to_contain_text("You got ¥")
    record = await h.get_red_packet(room, packet["packet_id"])
    (claim,) = record["claims"]
    assert claim["amount_cents"] >= 1
    await expect(view.get_by_test_id("claim-result")).to_have_text(f"You got ¥{claim['amount_cents'] / 100:.2f}")

    # danmaku from the viewer reaches the overlay and the host's feed; markers reach the series
    await view.get_by_test_id("danmaku-input").fill("great tea")
    await view.get_by_test_id("danmaku-send").click()
    await expect(dash.get_by_test_id("danmaku-feed")).to_contain_text("great tea")
    await expect(view.get_by_test_id("danmaku-overlay")).to_contain_text("great tea")
    body = await h.request("GET", f"/api/v1/rooms/{room}/metrics")
    assert {"pin", "sale_start", "red_packet"} <= {m["kind"] for m in body["markers"]}
    await _shot(dash, "dashboard")
    await _shot(view, "viewer")
    assert dash_errors == [] and view_errors == []
    await h.close()


async def test_pages_need_a_token_outside_dev_and_hosts_only_see_metrics(
    start_node: StartNode, browser: Browser
) -> None:
    node = await start_node(serve_pages=True, **FAST)  # not --dev: no token is minted for the page
    h, room = await _live_room(node, "pw-host2")
    view, _ = await _page(browser, f"{node.base_url}/app/viewer.html?room={room}", 420, 900)
    await expect(view.locator("#token-box")).to_contain_text("Paste a viewer token")
    # a token from the platform, in the URL fragment (never sent to the server's logs)
    view, _ = await _page(browser, f"{node.base_url}/app/viewer.html?room={room}#token={token('alice')}", 420, 900)
    await expect(view.get_by_test_id("pinned-title")).to_have_text("Longjing tea")
    await expect(view.get_by_test_id("online")).to_have_text("1")
    # a viewer's token on the dashboard: the metrics are refused
    dash, _ = await _page(browser, f"{node.base_url}/app/dashboard.html?room={room}#token={token('bob')}", 1200, 800)
    await expect(dash.locator("#notice")).to_contain_text("only the room's host")
    await expect(dash.get_by_test_id("gmv")).to_have_text("–")
    await _shot(view, "viewer-with-token")
    await h.close()
