"""The program's rules (pure): what a PUT may ask for, and the fallbacks when cameras go off."""

from __future__ import annotations

import pytest

from liveserver.errors import Conflict, Invalid
from liveserver.video.program import Program, parse_program, program_message, settle

LIVE = ["cam1", "cam2", "cam3"]


def test_a_put_names_live_cameras_a_layout_a_corner_and_a_beauty() -> None:
    p = parse_program({"layout": "pip", "main": "cam2", "inset": "cam1", "inset_corner": "tl", "beauty": 40},
                      LIVE, Program())
    assert p == Program("pip", "cam2", "cam1", "tl", 40)
    assert parse_program({"main": "cam3"}, LIVE, Program(beauty=55)) == Program("single", "cam3", None, "br", 55)


@pytest.mark.parametrize(("body", "field"), [
    ({"layout": "grid", "main": "cam1"}, "layout"),
    ({"main": 7}, "main"),
    ({"main": "cam 1"}, "main"),
    ({"layout": "pip", "main": "cam1"}, "inset"),
    ({"layout": "pip", "main": "cam1", "inset": "cam1"}, "inset"),
    ({"main": "cam1", "inset_corner": "middle"}, "inset_corner"),
    ({"main": "cam1", "beauty": 101}, "beauty"),
    ({"main": "cam1", "beauty": True}, "beauty"),
])
def test_a_bad_put_names_its_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_program(body, LIVE, Program())
    assert err.value.field == field


def test_only_live_cameras_may_be_put_on_air() -> None:
    with pytest.raises(Conflict):
        parse_program({"main": "cam9"}, LIVE, Program())


def test_the_first_live_camera_becomes_main() -> None:
    assert settle(Program(), ["cam1"]) == Program(main="cam1")
    assert settle(Program(), []) == Program()


def test_when_main_goes_off_the_inset_then_another_camera_takes_over() -> None:
    pip = Program("pip", "cam1", "cam2", "tr", 20)
    assert settle(pip, ["cam2", "cam3"]) == Program("single", "cam2", None, "tr", 20)
    assert settle(Program(main="cam1"), ["cam3"]) == Program(main="cam3")
    assert settle(Program(main="cam1"), []) == Program(main=None)


def test_a_lost_inset_ends_the_pip_and_a_steady_program_is_kept_as_it_is() -> None:
    pip = Program("pip", "cam1", "cam2")
    assert settle(pip, ["cam1"]) == Program("single", "cam1", None)
    assert settle(pip, LIVE) is pip


def test_the_message_says_the_program_and_the_live_cameras() -> None:
    assert program_message(Program("pip", "cam1", "cam2", "bl", 10), ["cam1", "cam2"]) == {
        "type": "program", "layout": "pip", "main": "cam1", "inset": "cam2", "inset_corner": "bl", "beauty": 10,
        "live": ["cam1", "cam2"],
    }
