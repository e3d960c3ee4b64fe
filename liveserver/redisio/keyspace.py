"""Every Redis key and channel the server uses, in one place.

All keys of a room share the hash tag ``{r:<room>}`` so that one Lua script
may touch any of them on Redis Cluster.  Key names are built here, in Python,
and passed to scripts through ``KEYS``; no script builds a key name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DANMAKU_REQ_TTL_S", "FINISHED_TTL_S", "NODE_SET_TTL_MS", "DropKeys", "Keyspace", "PacketKeys", "RoomKeys"]

#: The fixed live-metrics keys of a room (RoomKeys.metric), expired with the room.
METRIC_KEYS = ("uv", "peak", "counts", "products", "exposure_uv", "click_uv", "cart_uv",
               "s:online", "s:enter", "s:leave", "s:danmaku", "markers", "drops", "packets")

#: A reaped node's per-room member set is kept this long, so that a node that
#: was only paused can revive its members; then it goes.
NODE_SET_TTL_MS = 10 * 60 * 1000

#: A danmaku's answer is kept this long under its (user, req_id): a retry within it gets the same id.
DANMAKU_REQ_TTL_S = 300

#: A finished drop's or red packet's keys (ended, nothing left to pay or refund) expire after this.
FINISHED_TTL_S = 7 * 24 * 3600


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
    def hls_seq(self) -> str:
        """STRING: the number of the room's last HLS segment (numbers never repeat)."""
        return f"{self.tag}:hls:seq"

    @property
    def hls_index(self) -> str:
        """STRING (bytes): the room's live HLS playlist; expires when no camera is live."""
        return f"{self.tag}:hls:index"

    def hls_segment(self, number: int) -> str:
        """STRING (bytes): one MPEG-TS segment of the room's program."""
        return f"{self.tag}:hls:{number}"

    @property
    def video_status(self) -> str:
        """STRING: JSON of the room's video now (cameras, program, WHEP viewers), from the node that
        holds its media, refreshed every second, expiring 5 s after the media stops."""
        return f"{self.tag}:video"

    @property
    def video_node(self) -> str:
        """STRING: the base URL of the node that holds the room's media (WHIP and WHEP go there),
        claimed with SET NX by the first camera and kept alive every second."""
        return f"{self.tag}:video:node"

    @property
    def hls_clients(self) -> str:
        """ZSET client hash -> ms it last fetched the room's HLS playlist (HLS viewers)."""
        return f"{self.tag}:hls:clients"

    @property
    def program(self) -> str:
        """STRING: JSON of the room's last ``program`` message (video/service.py), for the welcome."""
        return f"{self.tag}:program"

    @property
    def thinned(self) -> str:
        """STRING: danmaku items not delivered to viewers that could not keep up, all nodes."""
        return f"{self.tag}:thinned"

    @property
    def channel(self) -> str:
        """Pub/sub channel of the room's events (hash-tagged like its keys)."""
        return f"{self.tag}:events"

    @property
    def drops(self) -> str:
        """SET: the room's drops (flash sales and coupons) that have not ended."""
        return f"{self.tag}:drops"

    @property
    def packets(self) -> str:
        """SET: the room's red packets that have not expired."""
        return f"{self.tag}:packets"

    def metric(self, name: str) -> str:
        """A live-metrics key: ``uv``/``exposure_uv``/``click_uv``/``cart_uv`` (HyperLogLog),
        ``counts`` (HASH: ``pv``, ``watch_ms``, funnel events), ``peak`` (ZSET, one member),
        ``products`` (SET), ``s:<series>`` (HASH epoch minute -> value), ``markers`` (ZSET of event
        JSON by ms: pins, red packets), ``drops`` / ``packets`` (SETs of every drop and red packet
        the room ever had: their own keys hold the orders, payments and claims)."""
        return f"{self.tag}:m:{name}"

    def product_metric(self, product_id: str, name: str) -> str:
        """A product's HyperLogLog (``exposure_uv``, ``click_uv``) in the room's slot."""
        return f"{self.tag}:m:p:{product_id}:{name}"

    def all_static(self) -> list[str]:
        """The room keys that expire with it after it ends."""
        return [self.meta, self.products, self.nodes, self.online, self.banned, self.mutes, self.seq,
                self.history, self.words, self.likes, self.thinned, self.drops, self.packets,
                *(self.metric(n) for n in METRIC_KEYS)]


@dataclass(frozen=True, slots=True)
class DropKeys:
    """The keys of one drop (a flash sale or a coupon): hash tag ``{d:<id>}``.

    Its orders live inside its slot too (``order_id`` is ``<drop id>.<n>``), so
    that grab, pay, cancel and expire each run as one script on one shard.
    """

    prefix: str
    drop_id: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}{{d:{self.drop_id}}}"

    @property
    def meta(self) -> str:
        """HASH: the drop's terms and counters (see lua/_seckill_lib.lua)."""
        return f"{self.tag}:meta"

    @property
    def buyers(self) -> str:
        """HASH user -> units held (pending + paid orders, or coupons won)."""
        return f"{self.tag}:buyers"

    @property
    def answers(self) -> str:
        """HASH "user\\nreq_id" -> the grab's answer (a retry gets it again)."""
        return f"{self.tag}:answers"

    @property
    def orders(self) -> str:
        """HASH order_id -> the order as JSON."""
        return f"{self.tag}:orders"

    @property
    def deadlines(self) -> str:
        """ZSET order_id -> payment deadline (ms) of the pending orders."""
        return f"{self.tag}:deadlines"

    @property
    def winners(self) -> str:
        """SET of everyone who ever won this drop (never shrinks: their grabs may be retries)."""
        return f"{self.tag}:winners"

    @property
    def order_uv(self) -> str:
        """HyperLogLog of the users who won an order (the host's metrics)."""
        return f"{self.tag}:order_uv"

    @property
    def buyer_uv(self) -> str:
        """HyperLogLog of the users who paid an order (the host's metrics)."""
        return f"{self.tag}:buyer_uv"

    @property
    def stats(self) -> str:
        """HASH for the host's metrics: ``o:<minute>`` orders and ``g:<minute>`` paid cents per
        epoch minute, ``last_paid`` (ms)."""
        return f"{self.tag}:stats"

    def user_rate(self, user: str) -> str:
        return f"{self.tag}:rl:u:{user}"

    def ip_rate(self, ip: str) -> str:
        return f"{self.tag}:rl:ip:{ip}"

    def all(self) -> list[str]:
        return [self.meta, self.buyers, self.answers, self.orders, self.deadlines, self.winners, self.order_uv,
                self.buyer_uv, self.stats]


@dataclass(frozen=True, slots=True)
class PacketKeys:
    """The keys of one red packet.  A rain's packets (``<rain>-<n>``) share the rain's hash
    tag ``{p:<rain>}``, so that the per-user cap across the rain is checked atomically."""

    prefix: str
    packet_id: str

    @property
    def tag(self) -> str:
        return f"{self.prefix}{{p:{self.packet_id.split('-', 1)[0]}}}"

    @property
    def meta(self) -> str:
        return f"{self.tag}:{self.packet_id}:meta"

    @property
    def shares(self) -> str:
        """LIST of the shares not claimed yet (cents), in claim order."""
        return f"{self.tag}:{self.packet_id}:shares"

    @property
    def claims(self) -> str:
        """HASH user -> cents claimed."""
        return f"{self.tag}:{self.packet_id}:claims"

    @property
    def claim_times(self) -> str:
        """HASH user -> when (ms)."""
        return f"{self.tag}:{self.packet_id}:claimed_at"

    @property
    def rain_claims(self) -> str:
        """HASH user -> packets claimed across the rain."""
        return f"{self.tag}:rain_claims"


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

    def drop(self, drop_id: str) -> DropKeys:
        return DropKeys(self.prefix, drop_id)

    def packet(self, packet_id: str) -> PacketKeys:
        return PacketKeys(self.prefix, packet_id)

    @property
    def wallet_stream(self) -> str:
        """STREAM of every red-packet claim and refund, for the payment system."""
        return f"{self.prefix}wallet"

    @property
    def orders_stream(self) -> str:
        """STREAM of every order state change, for the downstream order service."""
        return f"{self.prefix}orders"

    @property
    def schedule(self) -> str:
        """ZSET "start:<drop>" / "end:<drop>" -> when (ms): announcements fired once across nodes."""
        return f"{self.prefix}schedule"

    @property
    def active_drops(self) -> str:
        """SET of drops with a sale window or pending orders: what the sweeper looks at."""
        return f"{self.prefix}drops:active"

    @property
    def sweep_lease(self) -> str:
        """STRING with a TTL: the node that sweeps payment deadlines this round."""
        return f"{self.prefix}sweep:lease"

    @property
    def blocklist(self) -> str:
        """SET of users who may not grab or claim anything."""
        return f"{self.prefix}blocklist"

    def user_coupons(self, user: str) -> str:
        """SET of the coupons a user has won."""
        return f"{self.prefix}{{u:{user}}}:coupons"

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
