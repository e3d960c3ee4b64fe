"""Key names: one hash tag (one Cluster slot) per room, prefixes, channel inversion."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from liveserver.redisio.keyspace import NODE_SET_TTL_MS, Keyspace, RoomKeys


def _all_keys(k: RoomKeys) -> list[str]:
    return [k.meta, k.products, k.nodes, k.node_users("node-a"), k.node_users("n2"), k.online,
            k.banned, k.seq, k.channel, *k.all_static()]


def _slot(key: str) -> int:
    return key_slot(key.encode())


@pytest.mark.parametrize("prefix", ["ls:", "", "app.1:"])
@pytest.mark.parametrize("room", ["room1", "a", "Room_2.x-y", "z" * 64])
def test_every_room_key_shares_the_hash_tag_and_slot(prefix: str, room: str) -> None:
    k = Keyspace(prefix).room(room)
    tag = f"{{r:{room}}}"
    assert k.tag == f"{prefix}{tag}"
    keys = _all_keys(k)
    for key in keys:
        assert key.startswith(prefix)
        # the first {...} of the key is the room's tag, so Cluster hashes exactly it
        start = key.index("{")
        assert key[start : key.index("}", start) + 1] == tag
    slots = {_slot(key) for key in keys}
    assert slots == {key_slot(f"r:{room}".encode())}


def test_keys_are_distinct() -> None:
    k = Keyspace().room("r1")
    keys = [k.meta, k.products, k.nodes, k.node_users("n1"), k.online, k.banned, k.seq, k.channel,
            k.mutes, k.history, k.words, k.likes, k.thinned, k.room_rate, k.user_rate("u"), k.user_slow("u"),
            k.danmaku_req("u", "r")]
    assert len(set(keys)) == len(keys)
    assert k.node_users("n1") != k.node_users("n2")


def test_all_static_lists_the_expiring_keys() -> None:
    k = Keyspace().room("r1")
    static = k.all_static()
    for key in (k.meta, k.products, k.nodes, k.online, k.banned, k.mutes, k.seq, k.history, k.words, k.likes):
        assert key in static
    assert k.channel not in static
    assert len(set(static)) == len(static)


def test_exact_names_with_default_prefix() -> None:
    k = Keyspace().room("r1")
    assert k.meta == "ls:{r:r1}:meta"
    assert k.channel == "ls:{r:r1}:events"
    assert k.node_users("n9") == "ls:{r:r1}:n:n9"


def test_different_rooms_use_their_own_tag() -> None:
    a, b = Keyspace().room("alpha"), Keyspace().room("beta")
    assert a.tag != b.tag
    assert _slot(a.meta) == key_slot(b"r:alpha")
    assert _slot(b.meta) == key_slot(b"r:beta")


@pytest.mark.parametrize("prefix", ["ls:", "", "x:y:"])
@pytest.mark.parametrize("room", ["r1", "a.b-c_d", "z" * 64])
def test_room_of_channel_inverts_channel(prefix: str, room: str) -> None:
    ks = Keyspace(prefix)
    assert ks.room_of_channel(ks.room(room).channel) == room


def test_room_of_channel_rejects_other_channels() -> None:
    ks = Keyspace("ls:")
    assert ks.room_of_channel(ks.nodes_channel) is None
    assert ks.room_of_channel("random") is None
    assert ks.room_of_channel(ks.room("r1").meta) is None
    assert ks.room_of_channel(Keyspace("other:").room("r1").channel) is None


def test_prefix_is_applied_everywhere() -> None:
    ks = Keyspace("app7:")
    assert ks.nodes_channel == "app7:nodes"
    assert ks.rate("danmaku", "u1") == "app7:rl:danmaku:{u1}"
    assert ks.room("r").meta.startswith("app7:{r:r}")
    assert Keyspace().prefix == "ls:"
    assert Keyspace().nodes_channel == "ls:nodes"


def test_rate_key_is_tagged_by_subject() -> None:
    ks = Keyspace()
    assert _slot(ks.rate("a", "user1")) == _slot(ks.rate("b", "user1")) == key_slot(b"user1")


def test_node_set_ttl() -> None:
    assert NODE_SET_TTL_MS == 600_000
