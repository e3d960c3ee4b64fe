"""What a room's program costs to compose and encode, per frame, on one core (no network).

    .venv/bin/python bench/video_compose.py [--width 1280 --height 720 --frames 150]

Frames come from FFmpeg's own test sources (``testsrc2`` as the main camera at the output
size, ``mandelbrot`` at 640x480 as the inset), so that the encoder sees moving, detailed
pictures.  Each layout runs the composer and the one H.264 encoder exactly as a room's
thread does (liveserver/video/compose.py), with a keyframe every 2 s.  The budget a frame
is 1000 / fps ms (33 ms at 30 fps); the figure is paid once per room, whatever the number
of viewers.
"""

from __future__ import annotations

import argparse
import statistics
import time

import av
import av.filter

from liveserver.video.compose import Composer, Encoder, Layout


def _frames(source: str, args: str, n: int) -> list[av.VideoFrame]:
    graph = av.filter.Graph()
    src, fmt, sink = graph.add(source, args), graph.add("format", "yuv420p"), graph.add("buffersink")
    src.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    return [sink.pull() for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--frames", type=int, default=150)
    args = p.parse_args()
    w, h = args.width, args.height
    main_frames = _frames("testsrc2", f"size={w}x{h}:rate={args.fps}", args.frames)
    inset_frames = _frames("mandelbrot", f"size=640x480:rate={args.fps}", args.frames)
    print(f"| layout | median ms a frame | p95 ms | share of the {1000 / args.fps:.0f} ms budget (median) |")
    print("|---|---|---|---|")
    for name, inset, beauty in (("single", False, 0), ("pip", True, 0), ("single, beauty 60", False, 60),
                                ("pip, beauty 60", True, 60)):
        composer, encoder = Composer(), Encoder(w, h, args.fps, 2500, 2.0)
        times = []
        for i, frame in enumerate(main_frames):
            small = inset_frames[i] if inset else None
            layout = Layout(w, h, (frame.width, frame.height), (small.width, small.height) if small else None,
                            "br", beauty)
            t0 = time.perf_counter()
            encoder.encode(composer.render(layout, frame, small, i * 90000 // args.fps), i % (2 * args.fps) == 0)
            times.append((time.perf_counter() - t0) * 1000)
        times = sorted(times[5:])  # the first frames build the graph and warm the encoder
        median = statistics.median(times)
        print(f"| {name} | {median:.1f} | {times[int(len(times) * 0.95)]:.1f} | {median * args.fps / 10:.0f} % |")


if __name__ == "__main__":
    main()
