"""One frozen settings object, built from the environment and the command line.

Every tunable of the server lives here, with its default and its environment
variable.  A missing or invalid required value raises :class:`SettingsError`
with one line that the CLI prints as it is.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MIN_SECRET_LENGTH", "Settings", "SettingsError"]

#: HS256 keys shorter than the hash output (32 bytes) are brute-forceable; PyJWT warns below it too.
MIN_SECRET_LENGTH = 32

_PREFIX_RE = re.compile(r"\A[A-Za-z0-9_.:-]{0,32}\Z")


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message is one line for stderr."""


def _tunables_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Every numeric or boolean setting may be given as ``LIVESERVER_<NAME>`` (e.g.
    ``LIVESERVER_SEND_QUEUE_FRAMES=2048``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if f.type not in ("int", "float", "bool") or f.name in ("port", "workers", "dev", "redis_cluster"):
            continue
        raw = env.get(f"LIVESERVER_{f.name.upper()}")
        if raw is None:
            continue
        try:
            if f.type == "bool":
                out[f.name] = raw.lower() in ("1", "true", "yes")
            else:
                out[f.name] = int(raw) if f.type == "int" else float(raw)
        except ValueError:
            kind = "an integer" if f.type == "int" else "a number"
            raise SettingsError(f"LIVESERVER_{f.name.upper()} must be {kind}, not {raw!r}") from None
    return out


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server reads at start.  Build it with :meth:`from_env`."""

    secret: str
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str | None = None
    redis_cluster: bool = False
    dev: bool = False
    workers: int = 1
    data_dir: Path = Path(".liveserver")
    key_prefix: str = "ls:"
    log_level: str = "INFO"

    # WebSocket gateway
    hello_timeout_s: float = 10.0
    max_frame_bytes: int = 4096  # larger client frames get an error frame and a strike
    hard_frame_bytes: int = 65536  # larger client frames close the connection with 4008
    bad_frame_limit: int = 10  # strikes within ``bad_frame_window_s`` before 4008
    bad_frame_window_s: float = 60.0
    client_msg_rate: float = 30.0  # client messages per second per connection (token bucket)
    client_msg_burst: int = 60
    ws_heartbeat_s: float = 30.0
    ws_sndbuf_bytes: int = 0  # SO_SNDBUF for WebSocket sockets; 0 keeps the kernel's autotuning
    max_connections: int = 100_000  # per process
    max_connections_per_user: int = 10  # per process

    # Per-connection send queue (see hub.py)
    send_queue_frames: int = 1024  # control frames beyond this close the connection (4008)
    droppable_queue_frames: int = 256  # droppable frames (danmaku, likes, presence) beyond this are dropped
    slow_consumer_timeout_s: float = 5.0  # a queue that stays full this long closes the connection
    close_grace_s: float = 5.0  # how long a close handshake may take before the socket is aborted

    # Presence
    presence_beat_s: float = 0.4  # node heartbeat and dead-node sweep period
    presence_ttl_s: float = 1.2  # a node silent this long is dead and its users leave
    presence_push_s: float = 1.0  # at most one ``presence`` frame per viewer this often

    # Danmaku
    danmaku_tick_s: float = 0.05  # one coalesced ``danmaku`` frame per room per tick
    danmaku_max_chars: int = 200  # longer text is refused with ``too_long``
    danmaku_user_rate: float = 1.0  # danmaku per second per user per room (GCRA in Redis)
    danmaku_user_burst: int = 3
    danmaku_room_rate: float = 1000.0  # accepted danmaku per second per room: the flood cap
    danmaku_room_burst: int = 2000
    danmaku_history: int = 500  # danmaku kept per room for resume (capped stream)
    danmaku_items_per_tick: int = 100  # items per frame; more wait for the next ticks (10 at most), then are thinned
    danmaku_lag_items_per_tick: int = 10  # items per tick for a viewer whose queue is backing up
    danmaku_lag_frames: int = 32  # queued frames past which a viewer counts as backing up
    likes_push_s: float = 1.0  # at most one ``likes`` frame per viewer this often
    banned_words_file: Path | None = None  # one word per line, matched in every room

    # Drops: flash sales, coupons (seckill/)
    grab_user_rate: float = 5.0  # grabs per second per user per drop (GCRA inside the grab script)
    grab_user_burst: int = 10
    grab_ip_rate: float = 100.0  # grabs per second per client IP per drop
    grab_ip_burst: int = 200
    grab_batch_max: int = 256  # grabs of one drop decided in one script call
    grab_too_soon: bool = True  # refuse grabs that arrive sooner after the start than the client's clock allows
    sweep_interval_s: float = 0.2  # payment deadlines are enforced this often
    schedule_interval_s: float = 0.05  # start and end announcements fire this soon after their time

    # Alerts to the host (metrics/alerts.py)
    alert_online_drop_pct: float = 20.0  # online down this many % below its peak of the window
    alert_online_window_s: float = 60.0
    alert_online_min: int = 20  # rooms whose recent peak is smaller are not judged
    alert_no_paid_s: float = 300.0  # no paid order this long while a flash sale is live
    alert_low_stock: int = 10  # a live sale with fewer left than this ...
    alert_low_stock_pct: float = 20.0  # ... and at most this share of its stock, once some was sold
    alert_unpaid_min: int = 20  # at least this many orders waiting for payment ...
    alert_unpaid_ratio: float = 0.5  # ... and at least this share of the orders taken
    alert_clear_s: float = 10.0  # an alert clears once its condition has not held this long

    # Pages: the host dashboard and the viewer page under /app/ (static files; they need a token).
    # On with --dev (the contract's demo pages); without it only when asked for.
    serve_pages: bool = False

    # HTTP
    http_write_rate: float = 20.0  # mutating requests per second per user (token bucket in Redis)
    http_write_burst: int = 40
    http_max_body_bytes: int = 65536
    http_header_timeout_s: float = 10.0  # a request's head must be complete this soon after its first byte
    http_keepalive_s: float = 75.0  # an idle kept-alive HTTP connection closes after this

    # TLS: HTTPS and WSS on the same port (serving.py)
    tls_cert: Path | None = None  # PEM certificate chain
    tls_key: Path | None = None  # PEM private key (may be in tls_cert's file)
    tls_min: str = "1.2"  # "1.2" or "1.3"

    # Embedded Redis (no REDIS_URL): how often its AOF is fsynced: "everysec" (a crash of the
    # machine can lose the last second of grabs) or "always" (nothing acknowledged is lost)
    embedded_appendfsync: str = "everysec"

    # Live video (video/): the program each room encodes once, and the ICE addresses offered
    #: host candidates are offered on these addresses only; () = ``host`` when it is not a
    #: wildcard, else every interface (LIVESERVER_ICE_HOSTS, comma-separated; --ice-host)
    ice_hosts: tuple[str, ...] = ()
    #: where other nodes send WHIP and WHEP for the rooms whose media this node holds (a 307);
    #: None = the address it listens on, when it runs one worker (LIVESERVER_PUBLIC_URL, --public-url)
    public_url: str | None = None
    video_width: int = 1280
    video_height: int = 720
    video_fps: int = 30
    video_kbps: int = 2500
    video_gop_s: float = 2.0
    video_camera_timeout_s: float = 5.0  # a camera that sends no frame this long goes off
    whep_queue_packets: int = 90  # per WHEP viewer, about 3 s at 30 fps: past it, skip to the next keyframe

    # Lifecycle
    drain_timeout_s: float = 10.0
    ended_room_ttl_s: int = 7 * 24 * 3600
    dev_token_ttl_s: int = 24 * 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``), then apply ``overrides``.

        Overrides whose value is ``None`` are ignored, so CLI flags that were not
        given fall through to the environment and the defaults.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("REDIS_URL"):
            values["redis_url"] = env["REDIS_URL"]
        if env.get("LIVESERVER_SECRET"):
            values["secret"] = env["LIVESERVER_SECRET"]
        if env.get("LIVESERVER_DATA_DIR"):
            values["data_dir"] = Path(env["LIVESERVER_DATA_DIR"])
        if env.get("LIVESERVER_BANNED_WORDS_FILE"):
            values["banned_words_file"] = Path(env["LIVESERVER_BANNED_WORDS_FILE"])
        if env.get("LIVESERVER_KEY_PREFIX") is not None:
            values["key_prefix"] = env["LIVESERVER_KEY_PREFIX"]
        if env.get("LIVESERVER_LOG_LEVEL"):
            values["log_level"] = env["LIVESERVER_LOG_LEVEL"]
        for name in ("tls_cert", "tls_key"):
            if env.get(f"LIVESERVER_{name.upper()}"):
                values[name] = Path(env[f"LIVESERVER_{name.upper()}"])
        for name in ("tls_min", "embedded_appendfsync"):
            if env.get(f"LIVESERVER_{name.upper()}"):
                values[name] = env[f"LIVESERVER_{name.upper()}"]
        if env.get("LIVESERVER_PUBLIC_URL"):
            values["public_url"] = env["LIVESERVER_PUBLIC_URL"]
        if env.get("LIVESERVER_ICE_HOSTS"):
            values["ice_hosts"] = env["LIVESERVER_ICE_HOSTS"]
        if env.get("LIVESERVER_REDIS_CLUSTER", "").lower() in ("1", "true", "yes"):
            values["redis_cluster"] = True
        values.update(_tunables_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("serve_pages", bool(values.get("dev")))

        for name in ("data_dir", "tls_cert", "tls_key"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        if isinstance(values.get("ice_hosts"), str):
            values["ice_hosts"] = tuple(a.strip() for a in values["ice_hosts"].split(",") if a.strip())
        if not values.get("secret"):
            if values.get("dev"):
                values["secret"] = secrets.token_urlsafe(32)
            else:
                raise SettingsError(
                    "LIVESERVER_SECRET is not set: give the HS256 token key "
                    f"(at least {MIN_SECRET_LENGTH} characters), or run with --dev for a demo"
                )
        settings = cls(**values)
        settings.check()
        return settings

    @property
    def offered_ice_hosts(self) -> tuple[str, ...]:
        """The addresses WebRTC host candidates are offered on; () = every interface."""
        if self.ice_hosts:
            return self.ice_hosts
        return () if self.host in ("", "0.0.0.0", "::") else (self.host,)

    def check(self) -> None:
        """Raise :class:`SettingsError` for the first invalid value."""
        if len(self.secret) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"LIVESERVER_SECRET is too short ({len(self.secret)} characters): "
                f"HS256 needs at least {MIN_SECRET_LENGTH}"
            )
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port must be 0-65535, not {self.port}")
        if not 1 <= self.workers <= 256:
            raise SettingsError(f"--workers must be 1-256, not {self.workers}")
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise SettingsError(
                f"REDIS_URL must start with redis://, rediss:// or unix://, not {self.redis_url!r}"
            )
        if self.redis_cluster and self.redis_url is None:
            raise SettingsError("--redis-cluster needs REDIS_URL (or --redis-url) of a cluster node")
        if not _PREFIX_RE.match(self.key_prefix):
            raise SettingsError(
                f"LIVESERVER_KEY_PREFIX must be 0-32 of [A-Za-z0-9_.:-], not {self.key_prefix!r}"
            )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"unknown log level {self.log_level!r}")
        if self.presence_ttl_s <= self.presence_beat_s:
            raise SettingsError("presence_ttl_s must be longer than presence_beat_s")
        if self.droppable_queue_frames > self.send_queue_frames:
            raise SettingsError("droppable_queue_frames must not exceed send_queue_frames")
        if self.max_frame_bytes > self.hard_frame_bytes:
            raise SettingsError("max_frame_bytes must not exceed hard_frame_bytes")
        if not 0.01 <= self.danmaku_tick_s <= 1.0:
            raise SettingsError("danmaku_tick_s must be from 0.01 to 1.0")
        if self.danmaku_history < 1 or self.danmaku_items_per_tick < 1 or self.danmaku_lag_items_per_tick < 1:
            raise SettingsError("danmaku_history and the items per tick must be at least 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("TLS needs both --tls-cert and --tls-key (LIVESERVER_TLS_CERT, LIVESERVER_TLS_KEY)")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise SettingsError(f"--{name.replace('_', '-')} {path} is not a readable file")
        if self.public_url is not None and not re.match(r"\Ahttps?://[^/\s]+\Z", self.public_url):
            raise SettingsError(f"--public-url must be http(s)://host[:port], not {self.public_url!r}")
        for address in self.ice_hosts:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise SettingsError(f"--ice-host must list IP addresses, not {address!r}") from None
        if not (16 <= self.video_width <= 3840 and 16 <= self.video_height <= 2160 and 1 <= self.video_fps <= 60):
            raise SettingsError("the video size must be within 16x16 and 3840x2160, at 1-60 fps")
        if self.tls_min not in ("1.2", "1.3"):
            raise SettingsError(f"--tls-min must be 1.2 or 1.3, not {self.tls_min!r}")
        if self.embedded_appendfsync not in ("everysec", "always"):
            raise SettingsError(f"LIVESERVER_EMBEDDED_APPENDFSYNC must be everysec or always, not {self.embedded_appendfsync!r}")
        if self.http_header_timeout_s < 0 or self.http_keepalive_s <= 0:
            raise SettingsError("http_header_timeout_s must be >= 0 (0: no limit) and http_keepalive_s > 0")
        if self.banned_words_file is not None and not Path(self.banned_words_file).is_file():
            raise SettingsError(f"LIVESERVER_BANNED_WORDS_FILE {self.banned_words_file} is not a readable file")

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``, checked."""
        new = dataclasses.replace(self, **changes)
        new.check()
        return new
