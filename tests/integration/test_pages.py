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


async def launch(flags: list[str]) -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, with ``flags`` (skips the test, saying why, without it)."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium package (.ci/run does)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=flags, headless=True)
        yield b
        await b.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async for b in launch(FLAGS):
        yield b


async def _page(browser: Browser, url: str, width: int, height: int, locale: str = "en-US") -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": width, "height": height}, locale=locale)
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
    dash, dash_errors = await _page(browser, f"{node.base_url}/app/dashboard.html?room={room}&lang=en", 1400, 1000)
    view, view_errors = await _page(browser, f"{node.base_url}/app/viewer.html?room={room}&lang=en", 420, 900)
    await expect(view.get_by_test_id("pinned-title")).to_have_text("Longjing tea")
    await expect(view.get_by_test_id("room-status")).to_have_text("live")
    await expect(dash.get_by_test_id("room-title")).to_have_text("Browser test")

    # a flash sale with a countdown: the button waits for zero on the server's clock
    await h.create_flash_sale(room, "p1", 1000, 5, countdown_s=2)
    await expect(view.get_by_test_id("countdown")).to_contain_text("Starts in")
    await expect(view.get_by_test_id("grab")).to_be_disabled()
    await expect(view.get_by_test_id("grab")).to_be_enabled(timeout=5000)
    await view.get_by_test_id("grab").click()
    await expect(view.get_by_test_id("grab-result")).to_have_text("Got it! Pay soon")
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
    view, _ = await _page(browser, f"{node.base_url}/app/viewer.html?room={room}&lang=en", 420, 900)
    await expect(view.locator("#token-box")).to_contain_text("Paste a viewer token")
    # a token from the platform, in the URL fragment (never sent to the server's logs)
    view, _ = await _page(browser, f"{node.base_url}/app/viewer.html?room={room}&lang=en#token={token('alice')}", 420, 900)
    await expect(view.get_by_test_id("pinned-title")).to_have_text("Longjing tea")
    await expect(view.get_by_test_id("watching")).to_have_text("1 watching")
    # a viewer's token on the dashboard: the metrics are refused
    dash, _ = await _page(browser, f"{node.base_url}/app/dashboard.html?room={room}&lang=en#token={token('bob')}", 1200, 800)
    await expect(dash.locator("#notice")).to_contain_text("only the room's host")
    await expect(dash.get_by_test_id("gmv")).to_have_text("–")
    await _shot(view, "viewer-with-token")
    await h.close()


async def _visible_only(page: Page, shown: list[str], hidden: list[str]) -> None:
    """What a person sees: these test ids are on screen (with a box), those are not."""
    for tid in shown:
        await expect(page.get_by_test_id(tid).first).to_be_visible()
        assert await page.get_by_test_id(tid).first.bounding_box() is not None
    for tid in hidden:
        await expect(page.get_by_test_id(tid)).to_be_hidden()


async def test_a_newcomers_evening_in_chinese(start_node: StartNode, browser: Browser) -> None:
    """The pages in Simplified Chinese, walked as a newcomer would: load, pin, a sale typed in
    yuan on the dashboard, its countdown, grab, the limit, pay, a red packet, danmaku with an
    emoji, the room's end; at each step what is visible, and what is not."""
    node = await start_node(dev=True, serve_pages=True, **FAST)
    h = HostClient(node.base_url, token("zh-host", "host"))
    room = (await h.create_room("秋季茶叶专场", room_id=f"zh-{uuid.uuid4().hex[:8]}"))["room_id"]
    await h.start_room(room)
    await h.put_product(room, "tea", "西湖龙井 250 克", 12900)
    dash, dash_errors = await _page(browser, f"{node.base_url}/app/dashboard.html?room={room}", 1400, 1100, "zh-CN")
    view, view_errors = await _page(browser, f"{node.base_url}/app/viewer.html?room={room}", 420, 900, "zh-CN")

    # load: the room, in Chinese; no red packet, no pinned card, no sale: nothing empty on screen
    await expect(view.get_by_test_id("room-title")).to_have_text("秋季茶叶专场")
    await expect(view.get_by_test_id("room-status")).to_have_text("直播中")
    await expect(view.get_by_test_id("watching")).to_have_text("1 人在看")
    await _visible_only(view, ["danmaku-input", "danmaku-send"], ["red-packet", "pinned", "drop"])
    # the host's own dashboard is not audience: one viewer, one online, not two
    await expect(dash.get_by_test_id("online")).to_have_text("1", timeout=3000)
    await expect(dash.get_by_test_id("uv")).to_have_text("1")
    await _shot(view, "zh-viewer-1-load")

    await h.pin_product(room, "tea")
    await expect(view.get_by_test_id("pinned-title")).to_have_text("西湖龙井 250 克")
    await _visible_only(view, ["pinned"], ["red-packet"])

    # a flash sale typed in yuan on the dashboard, every field labelled, confirmed on screen
    form = dash.get_by_test_id("sale-form")
    await expect(form.get_by_label("秒杀价（元）")).to_be_visible()
    await form.get_by_label("秒杀价（元）").fill("99.5")
    await form.get_by_label("库存（件）").fill("3")
    await form.get_by_label("每人限购").fill("1")
    await form.get_by_label("倒计时（秒）").fill("3")
    await form.get_by_label("时长（秒）").fill("120")
    await dash.get_by_test_id("sale-submit").click()
    await expect(dash.get_by_test_id("sale-done")).to_contain_text("已创建秒杀")
    await expect(dash.get_by_test_id("drop-note").first).to_contain_text("后开始", timeout=3000)

    # the viewer's card: the product, the sale and the list price, the stock, the countdown
    card = view.get_by_test_id("drop")
    await expect(card).to_be_visible()
    await expect(card.get_by_test_id("drop-title")).to_have_text("西湖龙井 250 克")
    await expect(card.get_by_test_id("drop-price")).to_have_text("¥99.50")
    await expect(card.get_by_test_id("original-price")).to_have_text("¥129.00")
    await expect(card.get_by_test_id("stock-left")).to_have_text("共 3 件")
    await expect(card.get_by_test_id("countdown")).to_contain_text("后开抢")
    await expect(card.get_by_test_id("grab")).to_be_disabled()
    await _shot(view, "zh-viewer-2-countdown")
    await _shot(dash, "zh-dashboard-1-countdown")
    await expect(card.get_by_test_id("grab")).to_be_enabled(timeout=6000)
    await expect(card.get_by_test_id("grab")).to_have_text("立即抢购")
    await card.get_by_test_id("grab").click()
    await expect(card.get_by_test_id("grab-result")).to_have_text("抢到了！请尽快支付")
    await expect(card.get_by_test_id("grab")).to_be_disabled()  # the limit is 1: no second grab
    await expect(card.get_by_test_id("grab")).to_have_text("已达限购")
    await expect(card.get_by_test_id("order-text")).to_contain_text("内支付")
    await expect(card.get_by_test_id("stock-left")).to_have_text("仅剩 2 件", timeout=3000)  # the stock push
    await card.get_by_test_id("pay").click()
    await expect(card.get_by_test_id("order-text")).to_contain_text("已支付")
    await _visible_only(view, ["order"], ["pay", "cancel"])
    await expect(dash.get_by_test_id("gmv")).to_have_text("¥99.50", timeout=3000)
    await expect(dash.get_by_test_id("buyers")).to_have_text("1 位买家")
    await _shot(view, "zh-viewer-3-paid")

    # a red packet from the dashboard's form, in yuan; the viewer opens it; the host sees it
    packet_form = dash.get_by_test_id("packet-form")
    await packet_form.get_by_label("总金额（元）").fill("3.00")
    await packet_form.get_by_label("份数").fill("3")
    await packet_form.get_by_label("倒计时（秒）").fill("0")
    await dash.get_by_test_id("packet-submit").click()
    await expect(dash.get_by_test_id("packet-done")).to_contain_text("已发出红包 ¥3.00")
    await expect(view.get_by_test_id("red-packet")).to_be_visible()
    await expect(view.get_by_test_id("packet-info")).to_have_text("共 3 份")
    await _shot(view, "zh-viewer-4-packet")
    await view.get_by_test_id("claim").click()
    await expect(view.get_by_test_id("claim-result")).to_contain_text("抢到 ¥")
    packet_row = dash.locator("tr[data-packet]")
    await expect(packet_row).to_contain_text("1/3", timeout=3000)
    await expect(packet_row).to_contain_text("手气最佳")
    await _shot(dash, "zh-dashboard-2-packet")

    # danmaku with an emoji reaches the overlay and the host's feed
    await view.get_by_test_id("danmaku-input").fill("好茶 🍵 已下单")
    await view.get_by_test_id("danmaku-send").click()
    await expect(dash.get_by_test_id("danmaku-feed")).to_contain_text("好茶 🍵 已下单")
    await expect(view.get_by_test_id("danmaku-overlay")).to_contain_text("好茶 🍵")
    await _shot(view, "zh-viewer-5-danmaku")

    # the room ends: the viewer is told, and nothing stays on screen that invites a tap
    await h.end_room(room)
    await expect(view.get_by_test_id("room-status")).to_have_text("已结束")
    await expect(view.get_by_test_id("notice")).to_have_text("直播已结束，感谢观看！")
    await expect(view.get_by_test_id("watching")).to_have_text("")
    await _visible_only(view, ["order"], ["red-packet", "pinned", "grab"])
    await expect(dash.get_by_test_id("room-status")).to_have_text("已结束")
    await _shot(view, "zh-viewer-6-ended")
    await _shot(dash, "zh-dashboard-3-ended")
    assert dash_errors == [] and view_errors == []
    await h.close()


async def test_english_on_request_and_reasons_in_words(start_node: StartNode, browser: Browser) -> None:
    node = await start_node(dev=True, serve_pages=True, danmaku_user_rate=0.1, danmaku_user_burst=1, **FAST)
    h, room = await _live_room(node, "en-host")
    view, errors = await _page(browser, f"{node.base_url}/app/viewer.html?room={room}&lang=en", 420, 900, "zh-CN")
    await expect(view.get_by_test_id("room-status")).to_have_text("live")
    for text in ("one", "two"):  # the second is over the rate: said in words, never "rate_limited"
        await view.get_by_test_id("danmaku-input").fill(text)
        await view.get_by_test_id("danmaku-send").click()
    await expect(view.get_by_test_id("notice")).to_have_text("Not sent: Too fast, try again in a moment")
    # two sales of one product at once: the viewer sees both, each with its own Grab
    await h.create_flash_sale(room, "p1", 900, 5)
    await h.create_flash_sale(room, "p1", 700, 5, countdown_s=60)
    await expect(view.get_by_test_id("drop")).to_have_count(2)
    await expect(view.get_by_test_id("drop").nth(0).get_by_test_id("drop-price")).to_have_text("¥9.00")
    await expect(view.get_by_test_id("drop").nth(1).get_by_test_id("countdown")).to_contain_text("Starts in")
    await expect(view.get_by_test_id("drop").nth(0).get_by_test_id("grab")).to_be_enabled()
    await expect(view.get_by_test_id("drop").nth(1).get_by_test_id("grab")).to_be_disabled()
    await _shot(view, "en-viewer-two-sales")
    await h.close()
    assert errors == []
