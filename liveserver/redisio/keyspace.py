"""Every Redis key and channel the server uses, in one place.

All keys of a room share the hash tag ``{r:<room>}`` so that one Lua script
may touch any of them on Redis Cluster.  Key names are built here, in Python,
and passed to scripts through ``KEYS``; no script builds a key name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keyspace", "RoomKeys", "NODE_SET_TTL_MS"]

#: A reaped node's per-room member set is kept this long, so that a node that
#: was only paused can revive its members; then it goes.
NODE_SET_TTL_MS = 10 * 60 * 1000


@dataclass(frozen=True, slots=True)
class RoomKeys:
    """The keys of one room.  ``tag`` is the hash tag they all share."""

    prefix: str
    room_id: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}{{r:{self.room_id}}}"

    @property
    def meta(self) -> str:
        """HASH room_id, title, host, status, created_ms, started_ms, ended_ms, pinned."""
        return f"{self.tag}:meta"

    @property
    def products(self) -> str:
        """HASH product_id -> JSON {product_id, title, price_cents}."""
        return f"{self.tag}:products"

    @property
    def nodes(self) -> str:
        """ZSET node_id -> expiry (ms, Redis clock): the nodes holding viewers of the room."""
        return f"{self.tag}:nodes"

    def node_users(self, node_id: str) -> str:
        """SET of users connected to the room through ``node_id``."""
        return f"{self.tag}:n:{node_id}"

    @property
    def online(self) -> str:
        """HASH user -> number of live nodes the user is connected through.  HLEN is ``online``."""
        return f"{self.tag}:online"

    @property
    def banned(self) -> str:
        """ZSET user -> ban expiry (ms): users who may not join the room."""
        return f"{self.tag}:banned"

    @property
    def mutes(self) -> str:
        """ZSET user -> mute expiry (ms): users whose danmaku are refused."""
        return f"{self.tag}:mutes"

    @property
    def seq(self) -> str:
        """STRING: the room's danmaku sequence (the last seq handed out)."""
        return f"{self.tag}:seq"

    @property
    def history(self) -> str:
        """STREAM of the last N danmaku, entry id ``<seq>-0``, fields u, n, t, ts, p."""
        return f"{self.tag}:history"

    def user_rate(self, user: str) -> str:
        """STRING: the user's danmaku GCRA cell in this room."""
        return f"{self.tag}:rl:{user}"

    def user_slow(self, user: str) -> str:
        """STRING with a TTL: set while slow mode keeps the user waiting."""
        return f"{self.tag}:slow:{user}"

    @property
    def room_rate(self) -> str:
        """STRING: the room's danmaku GCRA cell (the flood cap)."""
        return f"{self.tag}:rl"

    def danmaku_req(self, user: str, req_id: str) -> str:
        """STRING seq:ts, 5 min: the answer to a danmaku sent with ``req_id`` (retries are not doubled)."""
        return f"{self.tag}:req:{user}:{req_id}"

    @property
    def words(self) -> str:
        """SET: the room's own banned words (the global list applies too)."""
        return f"{self.tag}:words"

    @property
    def likes(self) -> str:
        """STRING: the room's like total."""
        return f"{self.tag}:likes"

    @property
    def thinned(self) -> str:
        """STRING: danmaku items not delivered to viewers that could not keep up, all nodes."""
        return f"{self.tag}:thinned"

    @property
    def channel(self) -> str:
        """Pub/sub channel of the room's events (hash-tagged like its keys)."""
        return f"{self.tag}:events"

    def all_static(self) -> list[str]:
        """The room keys that expire with it after it ends."""
        return [self.meta, self.products, self.nodes, self.online, self.banned, self.mutes, self.seq,
                self.history, self.words, self.likes, self.thinned]


@dataclass(frozen=True, slots=True)
class Keyspace:
    prefix: str = "ls:"

    def room(self, room_id: str) -> RoomKeys:
        return RoomKeys(self.prefix, room_id)

    def room_of_channel(self, channel: str) -> str | None:
        """The room id of a room channel name, or None."""
        head = f"{self.prefix}{{r:"
        if channel.startswith(head) and channel.endswith("}:events"):
            return channel[len(head) : -len("}:events")]
        return None

    def rate(self, bucket: str, subject: str) -> str:
        """STRING: a GCRA rate-limit cell (theoretical arrival time, ms)."""
        return f"{self.prefix}rl:{bucket}:{{{subject}}}"

    @property
    def words(self) -> str:
        """SET: the global banned words (every room)."""
        return f"{self.prefix}words"

    @property
    def nodes_channel(self) -> str:
        """Pub/sub channel every node listens to (node-wide notices)."""
        return f"{self.prefix}nodes"
