"""Live video fan-out: server CPU and memory against the number of WHEP viewers, beside aiortc's
stock MediaRelay (which encodes once per viewer) in the same run.

    .venv/bin/python bench/video.py [--viewers 1 8 32 64] [--peer-viewers 1 4 8] [--duration 10]

One publisher (aiortc, on the client's core) sends FFmpeg's moving ``testsrc2`` at 640x360 and
30 fps over WHIP; the server composes a 1280x720 program and N viewers hold it over WHEP.  The
viewers do not decode (aiortc's decoder thread is replaced by one that counts frames), so that
the client's core is not the limit.  Reported per N: the server's CPU share of one core while
the N viewers watch, its RSS, and the frames a second each viewer received.  Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import queue
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOM, SECRET, Bench, RedisServer, Row, _server, bench_parser, done, fresh_prefix
from harness import liveserver, make_room, ready, run_role

HERE = Path(__file__).resolve().parent
FRAMES = {"received": 0}


def _decode_free() -> None:
    """aiortc decodes every received video frame in a thread; the load client only counts them."""
    import aiortc.rtcrtpreceiver as receiver

    def count_frames(loop: Any, input_q: queue.Queue, output_q: Any, decode_error: Any) -> None:
        while True:
            item = input_q.get()
            if item is None:
                return
            FRAMES["received"] += 1

    receiver.decoder_worker = count_frames  # type: ignore[assignment]


def _loopback_ice() -> None:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]


class _TestCamera:
    """FFmpeg's testsrc2 (moving, detailed) as an aiortc video track."""

    @staticmethod
    def make() -> Any:
        import av
        import av.filter
        from aiortc import VideoStreamTrack

        class Camera(VideoStreamTrack):
            def __init__(self) -> None:
                super().__init__()
                graph = self._graph = av.filter.Graph()  # kept: the sink needs its graph alive
                src, fmt, self._sink = graph.add("testsrc2", "size=640x360:rate=30"), graph.add("format", "yuv420p"), \
                    graph.add("buffersink")
                src.link_to(fmt)
                fmt.link_to(self._sink)
                graph.configure()

            async def recv(self) -> av.VideoFrame:
                pts, time_base = await self.next_timestamp()
                frame = self._sink.pull()
                frame.pts, frame.time_base = pts, time_base
                return frame

        return Camera()


async def _post(http: Any, url: str, pc: Any, token: str) -> None:
    from aiortc import RTCSessionDescription

    await pc.setLocalDescription(await pc.createOffer())
    for _ in range(100):
        async with http.post(url, data=pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}) as r:
            if r.status == 201:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=await r.text(), type="answer"))
                return
            if r.status != 409:
                raise RuntimeError(f"{url}: {r.status} {await r.text()}")
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url}: no program")


async def client_role(args: argparse.Namespace) -> None:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection

    from liveserver.auth import mint_token

    _loopback_ice()
    _decode_free()
    base = f"http://127.0.0.1:{args.port}"
    host = mint_token(SECRET, "bench-host", "host")
    pcs: list[Any] = []
    async with aiohttp.ClientSession() as http:
        publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        publisher.addTransceiver(_TestCamera.make(), direction="sendonly")
        pcs.append(publisher)
        await _post(http, f"{base}/api/v1/rooms/{ROOM}/cameras/cam1/whip", publisher, host)
        for i in range(args.viewers):  # a user holds at most 4 seats: every viewer is its own user
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("video", direction="recvonly")
            pcs.append(pc)
            await _post(http, f"{base}/api/v1/rooms/{ROOM}/whep", pc, mint_token(SECRET, f"bench-viewer-{i}", "viewer"))
        await asyncio.sleep(3)  # every seat connected and at its first keyframe
        states = [pc.connectionState for pc in pcs]
        print(f"# client: connections {states}, frames so far {FRAMES['received']}", file=sys.stderr, flush=True)
        FRAMES["received"] = 0
        ready()
        t0 = time.monotonic()
        await asyncio.sleep(args.duration)
        wall = time.monotonic() - t0
        received = FRAMES["received"]
        done({"target": args.target, "viewers": args.viewers,
              "fps_per_viewer": round(received / wall / max(1, args.viewers), 1)})
        for pc in pcs:
            with contextlib.suppress(Exception):
                await pc.close()


async def publisher_role(args: argparse.Namespace) -> None:
    """One camera published into ``ROOM`` until this process is stopped (bench/danmaku.py --video)."""
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection

    from liveserver.auth import mint_token

    _loopback_ice()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(_TestCamera.make(), direction="sendonly")
    async with aiohttp.ClientSession() as http:
        await _post(http, f"http://127.0.0.1:{args.port}/api/v1/rooms/{ROOM}/cameras/cam1/whip", pc,
                    mint_token(SECRET, "bench-host", "host"))
    print("PUBLISHING", flush=True)
    await asyncio.Event().wait()


def _measure(args: argparse.Namespace, port: int, proc: Any, target: str, viewers: int) -> dict:
    result = run_role(__file__, ["--role", "client", "--target", target, "--port", str(port), "--viewers",
                                 str(viewers), "--duration", str(args.duration)], proc.pid)
    result["cpu_share"] = round(result["cpu_s"] / result["wall_s"], 3)
    return result


def run(args: argparse.Namespace, redis: RedisServer) -> list[dict]:
    results = []
    for n in args.viewers_list:
        prefix = fresh_prefix("video")
        make_room(redis.url, prefix)
        with liveserver(redis.url, prefix, video_width=1280, video_height=720) as (port, proc):
            results.append(_measure(args, port, proc, "liveserver", n))
        print(f"# liveserver, {n} viewers: {results[-1]}", file=sys.stderr, flush=True)
    for n in args.peer_viewers:
        with _server([sys.executable, str(HERE / "peers" / "relay_server.py")], {}) as (port, proc):
            results.append(_measure(args, port, proc, "aiortc MediaRelay", n))
        print(f"# MediaRelay, {n} viewers: {results[-1]}", file=sys.stderr, flush=True)
    return results


def rows(results: list[dict]) -> list[Row]:
    ls = [r for r in results if r["target"] == "liveserver"]
    peer = [r for r in results if r["target"] != "liveserver"]
    first, last = ls[0], ls[-1]
    per_viewer = [r["cpu_share"] / r["viewers"] for r in peer]
    peer_viewers_per_core = 1 / max(per_viewer) if per_viewer else None
    ls_viewers_per_core = last["viewers"] / last["cpu_share"] if last["cpu_share"] else None
    problems = [f"{r['target']} at {r['viewers']} viewers: {r['fps_per_viewer']} fps" for r in ls
                if r["fps_per_viewer"] < 25]
    return [Row(
        benchmark="live video fan-out", figure=f"WHEP viewers a core could hold ({last['viewers']} measured)",
        liveserver=ls_viewers_per_core, baseline_name="aiortc MediaRelay", baseline=peer_viewers_per_core,
        higher_is_better=True, problems=problems,
        notes=(f"liveserver CPU {first['cpu_share']:.0%} at {first['viewers']} viewer(s), {last['cpu_share']:.0%} at "
               f"{last['viewers']}; {last['fps_per_viewer']} fps each; RSS {last['rss_done_mb']:.0f} MB"),
    )]


def _parser() -> argparse.ArgumentParser:
    p = bench_parser(__doc__, ["client", "publisher"], "1 and 4 viewers, 1 peer viewer, 4 s")
    p.add_argument("--viewers", type=int, default=1, help=argparse.SUPPRESS)  # the client role's count
    p.add_argument("--viewers-list", type=int, nargs="+", default=[1, 8, 32, 64], dest="viewers_list",
                   help="the viewer counts liveserver is measured at")
    p.add_argument("--peer-viewers", type=int, nargs="+", default=[1, 4, 8], help="the peer's viewer counts")
    p.add_argument("--duration", type=float, default=10.0)
    return p


BENCH = Bench(parser=_parser(), quick={"viewers_list": [1, 4], "peer_viewers": [1], "duration": 4.0},
              roles={"client": client_role, "publisher": publisher_role}, run=run,
              cols=["target", "viewers", "cpu_share", "fps_per_viewer", "rss_ready_mb", "rss_done_mb"], rows=rows)

if __name__ == "__main__":
    BENCH.main()
