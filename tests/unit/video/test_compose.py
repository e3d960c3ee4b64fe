"""The composer and the encoder on solid-coloured frames (PyAV, no network, no event loop)."""

from __future__ import annotations

import av
import pytest

from liveserver.video.compose import Composer, Encoder, Layout

RED, BLUE, BLACK = (220, 30, 30), (30, 30, 220), (0, 0, 0)
W, H = 320, 180


def solid(rgb: tuple[int, int, int], width: int, height: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    row = bytes(rgb) * width
    plane.update((row + bytes(plane.line_size - len(row))) * height)  # rows are padded to the line size
    return frame.reformat(format="yuv420p")


def pixel(frame: av.VideoFrame, x: int, y: int) -> tuple[int, ...]:
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    offset = y * plane.line_size + x * 3
    return tuple(bytes(plane)[offset : offset + 3])


def near(got: tuple[int, ...], want: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 30 for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize(("corner", "x", "y"), [("br", W - 30, H - 25), ("bl", 30, H - 25),
                                                ("tr", W - 30, 25), ("tl", 30, 25)])
def test_the_inset_is_a_quarter_of_the_width_in_its_corner(corner: str, x: int, y: int) -> None:
    main, inset = solid(RED, W, H), solid(BLUE, 160, 90)
    out = Composer().render(Layout(W, H, (W, H), (160, 90), corner), main, inset, 0)
    assert (out.width, out.height, out.format.name) == (W, H, "yuv420p")
    assert near(pixel(out, x, y), BLUE)
    assert near(pixel(out, W // 2, H // 2), RED)
    inset_width = sum(1 for px in range(W) if near(pixel(out, px, y), BLUE))
    assert inset_width == W // 4


def test_a_camera_of_another_shape_is_letterboxed_and_the_graph_follows_a_new_layout() -> None:
    composer = Composer()
    square = solid(RED, 120, 120)
    out = composer.render(Layout(W, H, (120, 120), None), square, None, 0)
    assert near(pixel(out, 5, H // 2), BLACK) and near(pixel(out, W // 2, H // 2), RED)
    wide = solid(BLUE, W, H)
    out = composer.render(Layout(W, H, (W, H), None, beauty=50), wide, None, 3000)
    assert near(pixel(out, 5, H // 2), BLUE) and out.pts == 3000


def test_one_encoder_makes_keyframes_when_asked_and_on_its_own_schedule() -> None:
    encoder = Encoder(W, H, 30, 500, gop_s=1.0)
    composer = Composer()
    keys = []
    for i in range(70):
        frame = composer.render(Layout(W, H, (W, H), None), solid(RED if i < 40 else BLUE, W, H), None, i * 3000)
        for packet in encoder.encode(frame, keyframe=(i == 45)):
            if packet.is_keyframe:
                keys.append(i)
    assert keys[0] == 0 and 45 in keys and 30 in keys  # the first, the asked-for, the periodic (1 s at 30 fps)
