"""The Lua sources: shared helpers written once and prepended where they are used."""

from __future__ import annotations

from importlib import resources

from liveserver.redisio.scripts import Scripts, load_source

LUA = resources.files("liveserver.redisio").joinpath("lua")


def test_the_rate_arithmetic_lives_in_one_file() -> None:
    holders = [p.name for p in LUA.iterdir() if p.name.endswith(".lua") and "1000 / rate" in p.read_text("utf-8")]
    assert holders == ["_gcra_lib.lua"]


def test_the_revival_of_a_reaped_node_lives_in_one_file() -> None:
    holders = [p.name for p in LUA.iterdir() if p.name.endswith(".lua") and "'PERSIST'" in p.read_text("utf-8")]
    assert holders == ["_presence_lib.lua"]


def test_every_script_gets_the_helpers_it_calls() -> None:
    helpers = {"gcra_peek": "_gcra_lib", "gcra_take": "_gcra_lib", "ids_floor": "_ids_lib", "ids_mark": "_ids_lib",
               "announce": "_seckill_lib", "release": "_seckill_lib", "presence_alive": "_presence_lib"}
    for name in Scripts.__annotations__:
        own = LUA.joinpath(f"{name}.lua").read_text("utf-8")
        full = load_source(name)
        for fn, lib in helpers.items():
            if f"{fn}(" in own:
                assert f"local function {fn}(" in full, f"{name}.lua calls {fn} but is loaded without {lib}.lua"
