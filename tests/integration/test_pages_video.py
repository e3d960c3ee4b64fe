"""The viewer page plays the room's program (WHEP) under the danmaku, in Debian's Chromium.

A Python (aiortc) publisher films solid colours; the page must show them: the ``<video>``
decodes frames of the program's size, and a switch of the program reaches the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from .conftest import StartNode, token
from .test_pages import FLAGS, _live_room, _page, _shot, launch
from .test_video import BLUE, RED, Publisher, loopback_ice, near  # noqa: F401 - loopback_ice is an autouse fixture

VIDEO_FLAGS = [*FLAGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
               "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"]
W, H = 320, 240


@pytest.fixture
async def video_browser() -> AsyncIterator[Browser]:
    async for b in launch(VIDEO_FLAGS):
        yield b


async def _centre(page: Page) -> tuple[int, int, int]:
    """The colour at the centre of what the page's <video> shows now."""
    rgb = await page.evaluate("""() => {
        const v = document.querySelector('[data-testid=program-video]');
        const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d');
        g.drawImage(v, 0, 0);
        return Array.from(g.getImageData(c.width / 2, c.height / 2, 1, 1).data.slice(0, 3));
    }""")
    return rgb[0], rgb[1], rgb[2]


async def _shows(page: Page, want: tuple[int, int, int], timeout_s: float = 10) -> None:
    got: tuple[int, int, int] | None = None
    for _ in range(int(timeout_s / 0.1)):
        if await page.evaluate("() => document.querySelector('[data-testid=program-video]').videoWidth") > 0:
            got = await _centre(page)
            if near(got, want, 50):
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the page's video shows {got}, not {want}")


async def test_the_viewer_page_plays_the_program_and_follows_a_switch(start_node: StartNode,
                                                                      video_browser: Browser) -> None:
    node = await start_node(dev=True, serve_pages=True, video_width=W, video_height=H)
    h, room = await _live_room(node, "pw-video-host")
    view, errors = await _page(video_browser, f"{node.base_url}/app/viewer.html?room={room}", 420, 900, "zh-CN")
    video = view.get_by_test_id("program-video")
    await expect(video).to_be_hidden()  # no camera yet: the stage's placeholder
    cams = [Publisher(node, room, "cam1", RED), Publisher(node, room, "cam2", BLUE)]
    host = token("pw-video-host", "host")
    try:
        async with aiohttp.ClientSession() as http:
            for cam in cams:
                assert await cam.start(http, host) == 201
            await expect(video).to_be_visible(timeout=15000)
            await _shows(view, RED)
            assert await view.evaluate("() => document.querySelector('[data-testid=program-video]').videoWidth") == W
            await view.locator("#text").fill("画面好清楚")  # danmaku fly over the video
            await view.locator("#text").press("Enter")
            await expect(view.get_by_test_id("danmaku-overlay")).to_contain_text("画面好清楚")
            await expect(view.get_by_test_id("unmute")).to_be_visible()  # muted until the viewer taps
            await _shot(view, "viewer-video-red")
            await view.get_by_test_id("unmute").click()
            assert await view.evaluate("() => document.querySelector('[data-testid=program-video]').muted") is False
            async with http.put(f"{node.base_url}/api/v1/rooms/{room}/program", json={"main": "cam2"},
                                headers={"Authorization": f"Bearer {host}"}) as r:
                assert r.status == 200
            await _shows(view, BLUE, timeout_s=3)
            await expect(video).to_have_attribute("data-main", "cam2")
            await _shot(view, "viewer-video-switched")
    finally:
        for cam in cams:
            await cam.pc.close()
        await h.close()
    assert errors == []


async def test_the_dashboard_publishes_cameras_and_switches_what_viewers_see(start_node: StartNode,
                                                                            video_browser: Browser) -> None:
    """The host publishes Chromium's fake camera twice from the dashboard (WHIP from the browser),
    puts the second on air and the first as an inset; the viewer page follows each change."""
    node = await start_node(dev=True, serve_pages=True, video_width=W, video_height=H)
    h, room = await _live_room(node, "pw-dash-host")
    try:
        dash, dash_errors = await _page(video_browser, f"{node.base_url}/app/dashboard.html?room={room}", 1400, 1100,
                                        "zh-CN")
        view, view_errors = await _page(video_browser, f"{node.base_url}/app/viewer.html?room={room}", 420, 900,
                                        "zh-CN")
        await expect(dash.get_by_test_id("program-state")).to_have_text("还没有机位开播")
        await dash.get_by_test_id("publish-camera").click()
        await expect(dash.get_by_test_id("program-state")).to_contain_text("主画面 cam1", timeout=10000)
        await expect(view.get_by_test_id("program-video")).to_be_visible(timeout=15000)
        frames = await view.evaluate("""async () => {
            const v = document.querySelector('[data-testid=program-video]');
            for (let i = 0; i < 50 && !(v.getVideoPlaybackQuality?.().totalVideoFrames > 5); i++)
                await new Promise(r => setTimeout(r, 100));
            return [v.getVideoPlaybackQuality().totalVideoFrames, v.videoWidth, v.videoHeight];
        }""")
        assert frames[0] > 5 and frames[1:] == [W, H]  # the fake camera, composed at the program's size

        await dash.get_by_test_id("publish-camera").click()
        await expect(dash.get_by_test_id("camera-cam2")).to_be_visible(timeout=10000)
        await dash.get_by_test_id("main-cam2").click()
        await expect(dash.get_by_test_id("program-state")).to_contain_text("主画面 cam2")
        await expect(view.get_by_test_id("program-video")).to_have_attribute("data-main", "cam2")
        await dash.get_by_test_id("inset-cam1").click()
        await expect(dash.get_by_test_id("program-state")).to_contain_text("小窗 cam1（右下）")
        await expect(view.get_by_test_id("program-video")).to_have_attribute("data-layout", "pip")
        await expect(dash.get_by_test_id("video-figures")).to_have_text("WebRTC 观众 1 · HLS 观众 0", timeout=5000)
        await expect(dash.get_by_test_id("camera-cam1")).to_contain_text("kbps", timeout=5000)
        await dash.get_by_test_id("beauty").fill("40")
        await expect(dash.get_by_test_id("program-state")).to_contain_text("美颜 40")
        assert node.services.video.rooms[room].program.beauty == 40
        await dash.get_by_test_id("video-panel").scroll_into_view_if_needed()
        await _shot(dash, "dashboard-cameras")
        await _shot(view, "viewer-pip")
        assert dash_errors == [] and view_errors == []
    finally:
        await h.close()


async def test_the_viewer_page_falls_back_to_hls(start_node: StartNode, video_browser: Browser) -> None:
    """Where WebRTC cannot get through (here forced with ?video=hls), the page plays the program's
    HLS through the vendored hls.js: the same picture, a few seconds later."""
    node = await start_node(dev=True, serve_pages=True, video_width=W, video_height=H)
    h, room = await _live_room(node, "pw-hls-host")
    view, errors = await _page(video_browser, f"{node.base_url}/app/viewer.html?room={room}&video=hls", 420, 900,
                               "zh-CN")
    cam = Publisher(node, room, "cam1", RED)
    try:
        async with aiohttp.ClientSession() as http:
            assert await cam.start(http, token("pw-hls-host", "host")) == 201
            video = view.get_by_test_id("program-video")
            await expect(video).to_be_visible(timeout=25000)
            await expect(video).to_have_attribute("data-transport", "hls")
            await _shows(view, RED)
            assert await view.evaluate("() => document.querySelector('[data-testid=program-video]').videoWidth") == W
            await _shot(view, "viewer-hls")
    finally:
        await cam.pc.close()
        await h.close()
    assert [e for e in errors if "404" not in e] == []  # hls.js may see a 404 before the first segment
