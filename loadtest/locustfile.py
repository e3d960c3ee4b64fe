"""Locust users of a live-commerce show: an audience of viewers and one host per room.

Run it from the repository root (``loadtest/README.md`` has every knob)::

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 --shape spike --viewers 2000
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 --headless -u 100 -r 50 -t 60s

(the first plays a show, the second Locust's own -u/-r/-t with the evening's
programme for the host), or let ``python -m loadtest.run`` start a server, run Locust headless and
check the invariants afterwards.

Viewers join over WebSocket and stay; between glances at the screen they
chat rarely (a danmaku every 40 s or so), like in bursts, and keep their
clock in step with the server's.  They react to what the room pushes: a
pinned product is seen (``exposure``) and sometimes clicked; when a flash
sale opens, a share of them grab it at the start second on the server's
clock; a won order is paid, cancelled or left to expire; a red packet is
claimed.  Hosts create and start their room, put products up, pin them,
open the sales and drop the red packets of the show's programme
(``loadtest/scenario.py``), read their metrics, and end the room when the
show is over.
"""

from __future__ import annotations

import functools
import logging
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import gevent
from gevent.pool import Group
from locust import HttpUser, between, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

# Locust puts the working directory on sys.path: run from the repository root.
from loadtest import options, tokens
from loadtest.scenario import PRODUCTS, Packet, Sale, packet_id, room_id, sale_id
from loadtest.shapes import LiveShape
from loadtest.tally import TALLY
from loadtest.wsclient import LiveSocket, Message, ServerError, WsError

__all__ = ["Host", "LiveShape", "Viewer"]

log = logging.getLogger("loadtest")

#: Answers that are right for a correct client, so they count as successes in Locust.
GRAB_REASONS = frozenset({"not_started", "ended", "sold_out", "limit", "rate_limited"})
CLAIM_REASONS = frozenset({"not_started", "expired", "empty", "rate_limited"})
ACK_REASONS = frozenset({"rate_limited", "slow_mode", "room_not_live"})

REACTION_S = (0.1, 0.5)  # how long people (and their phones) take to act on a countdown reaching zero
CLOCK_MARGIN_MS = 50  # how far our estimate of the server's clock may be off (half a loopback round trip, and more)
ROOM_WAIT_S = 30.0  # a viewer may come before its room's host created the room
CLICK_RATIO, CART_RATIO = 0.15, 0.3  # of the viewers who saw a pinned product
PAY_RATIO, CANCEL_RATIO = 0.7, 0.1  # of the winners; the rest walk away and their order expires
METRICS_EVERY_S = 5.0

LINES = [
    "好看!", "这个多少钱", "已下单", "主播好美", "666", "求链接", "还有库存吗", "抢到了!!", "再上一次吧",
    "how much is shipping?", "love this", "first time here", "is the blue one back?", "hi from Hangzhou",
]

F = TypeVar("F", bound=Callable[..., Any])


def reported(fn: F) -> F:
    """End an action quietly on :class:`WsError`: the client reported the failure where it happened."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WsError:
            return None

    return wrapper  # type: ignore[return-value]


def ws_url(host: str) -> str:
    parts = urlsplit(host)
    return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/ws"


@functools.cache
def _loopback_spread(host: str) -> bool:
    """Whether viewers can each take their own 127.x.y.z (Linux routes all of 127/8 to lo)."""
    if urlsplit(host).hostname not in ("127.0.0.1", "localhost"):
        return False
    try:
        with socket.socket() as probe:
            probe.bind(("127.3.2.1", 0))
    except OSError:
        return False
    return True


def source_ip(host: str) -> str | None:
    if not _loopback_spread(host):
        return None
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


class LiveUser(HttpUser):
    """What viewers and hosts share: a token, an HTTP client, and one WebSocket to the room."""

    abstract = True

    def token_for(self, sub: str, role: str, name: str | None = None) -> str | None:
        """Minted with ``LIVESERVER_SECRET``, else from the --dev server (None if that failed: reported)."""
        secret = tokens.platform_secret()
        if secret:
            return tokens.mint(secret, sub, role, name=name)
        body: dict[str, Any] = {"sub": sub, "role": role}
        if name:
            body["name"] = name
        with self.client.post("/api/v1/dev/tokens", json=body, name="/api/v1/dev/tokens",
                              catch_response=True) as resp:
            if resp.status_code != 201:
                resp.failure(f"dev token: HTTP {resp.status_code} {resp.text[:200]}")
                return None
            return str(resp.json()["token"])

    def open_socket(self, on_push: Callable[[Message, int], None], *, spread: bool) -> LiveSocket:
        env = self.environment
        assert env.host, "--host is required"
        return LiveSocket(env, ws_url(env.host), on_push, reply_timeout_s=options.reply_timeout_s(env),
                          source_ip=source_ip(env.host) if spread else None)


# -- viewers ---------------------------------------------------------------------------


@dataclass
class SaleInterest:
    """One viewer and one flash sale."""

    wants: bool  # decided once, when the viewer first hears of the sale
    busy: bool = False  # a grab (and its checkout) is under way
    order: str | None = None  # held: pending or paid


class Viewer(LiveUser):
    """A member of the audience."""

    wait_time = between(1, 3)  # watching, between two things a viewer does
    _payments_token: str | None = None

    def on_start(self) -> None:
        env = self.environment
        show = options.scenario(env)
        self.user_id = f"{options.run_id(env)}_v{uuid.uuid4().hex[:10]}"
        self.room = room_id(options.run_id(env), random.randrange(show.rooms))
        self.grab_ratio = options.grab_ratio(env)
        self.claim_ratio = options.claim_ratio(env)
        self.sales: dict[str, SaleInterest] = {}
        self.packets: set[str] = set()
        self.live = False
        self.last_seq = 0
        self.reactions = Group()
        self.token = self.token_for(self.user_id, "viewer", name=f"fan{random.randint(1, 99999)}")
        self.socket = self.open_socket(self._on_push, spread=True)
        self._join()

    def on_stop(self) -> None:
        """Stop the reactions first (a grab or a like under way), then leave: nothing sends after the close."""
        self.reactions.kill(block=True, timeout=2)
        self.socket.close()

    # -- tasks (Locust picks one by weight after each wait) --------------------------------

    @task(30)
    def watch(self) -> None:
        """Most of the time a viewer only watches; a dropped connection is picked up again here."""
        if not self.socket.open:
            self._join()

    @task(2)
    @reported
    def chat(self) -> None:
        """About one danmaku per 40 s per viewer (2 of 38 weights, a wait of 2 s on average)."""
        if self.live and self.socket.open:
            self.socket.request({"type": "danmaku", "text": random.choice(LINES)}, "danmaku → ack",
                                expect="ack", reasons=ACK_REASONS)

    @task(4)
    @reported
    def like_burst(self) -> None:
        """A run of taps on the heart, sent as a few ``like`` messages carrying the taps in between."""
        for _ in range(random.randint(3, 8)):
            if not self.socket.open:
                return
            self.socket.send({"type": "like", "count": random.randint(1, 5)}, "like")
            gevent.sleep(random.uniform(0.2, 0.6))

    @task(2)
    @reported
    def sync_clock(self) -> None:
        if self.socket.open:
            self.socket.ping()

    # -- joining ---------------------------------------------------------------------------

    @reported
    def _join(self) -> None:
        if self.token is None:
            self.token = self.token_for(self.user_id, "viewer")
            if self.token is None:
                return
        deadline = time.monotonic() + ROOM_WAIT_S
        while True:
            waiting = time.monotonic() < deadline
            try:
                welcome = self.socket.join(self.token, self.room, last_seq=self.last_seq or None,
                                           quiet=frozenset({"not_found"}) if waiting else frozenset())
                break
            except ServerError as exc:
                if not (waiting and exc.code == "not_found"):
                    raise
            gevent.sleep(random.uniform(0.5, 1.0))
        self.socket.ping()  # the clock offset, before any countdown
        self.socket.ping()  # ... and the round trip it measured, for the server's too-soon rule
        self._on_welcome(welcome)

    def _on_welcome(self, welcome: Message) -> None:
        self.live = welcome["room"]["status"] == "live"
        self.last_seq = max(self.last_seq, int(welcome.get("seq", 0)))
        if pinned := welcome.get("pinned"):
            self._react(self._look_at, pinned["product_id"])
        for drop in welcome.get("drops", []):
            self._on_drop(drop)

    def _payment_token(self) -> str | None:
        """The payment system's token (an admin, which marks orders paid): one per Locust process."""
        if Viewer._payments_token is None:
            Viewer._payments_token = self.token_for(f"{options.run_id(self.environment)}_payments", "admin")
        return Viewer._payments_token

    # -- what the room pushes (the receive greenlet: never block here) ------------------------

    def _on_push(self, msg: Message, size: int) -> None:
        kind = msg.get("type")
        if kind == "danmaku":
            items = msg.get("items") or [{}]
            self.last_seq = max(self.last_seq, int(msg.get("seq", 0)))
            latency = self.socket.clock.now_ms() - items[0].get("ts_ms", self.socket.clock.now_ms())
            self.socket.report_push("danmaku", size, latency)  # the delivery time of its oldest item
            return
        status = msg.get("status")
        self.socket.report_push(f"{kind} {status}" if status else str(kind), size)
        if kind == "room":
            self.live = status == "live"
        elif kind == "product_pinned":
            self._react(self._look_at, msg["product_id"])
        else:
            self._on_drop(msg)

    def _on_drop(self, drop: Message) -> None:
        if drop.get("type") == "flash_sale":
            self._on_sale(drop)
        elif drop.get("type") == "red_packet":
            self._on_packet(drop)

    def _on_sale(self, sale: Message) -> None:
        interest = self.sales.get(sale["sale_id"])
        if interest is None:
            interest = self.sales[sale["sale_id"]] = SaleInterest(wants=random.random() < self.grab_ratio)
        # "live" also comes back after a sell-out when an unpaid order expired: the keen try again.
        if interest.wants and not interest.busy and interest.order is None and sale["status"] in ("countdown", "live"):
            interest.busy = True
            # The opening storm gets its own row: its latency is the headline figure of a sale.
            name = "grab at open → grab_result" if sale["status"] == "countdown" else "grab → grab_result"
            self._react(self._grab, sale["sale_id"], sale["starts_at_ms"], interest, name)

    def _on_packet(self, packet: Message) -> None:
        pid = packet["packet_id"]
        if pid in self.packets or packet["status"] not in ("countdown", "live"):
            return
        self.packets.add(pid)
        if random.random() < self.claim_ratio:
            self._react(self._claim, pid, packet["starts_at_ms"])

    def _react(self, action: Callable[..., None], *args: Any) -> None:
        self.reactions.spawn(self._guarded, action, *args)

    def _guarded(self, action: Callable[..., None], *args: Any) -> None:
        """A reaction ends on a reported failure; anything else is a bug of the load test, reported too."""
        try:
            action(*args)
        except WsError:
            pass
        except Exception as exc:
            log.exception("viewer reaction %s failed", action.__name__)
            self.environment.events.request.fire(request_type="LOADTEST", name=f"bug in {action.__name__}",
                                                 response_time=0, response_length=0, exception=exc, context={})

    # -- reactions (each in its own greenlet) ---------------------------------------------------

    def _look_at(self, product_id: str) -> None:
        """The product card slides in (``exposure``); some tap it (``click``), fewer add it to the cart."""
        gevent.sleep(random.uniform(0, 1))
        self.socket.send({"type": "exposure", "product_id": product_id}, "exposure")
        if random.random() < CLICK_RATIO:
            gevent.sleep(random.uniform(1, 4))
            self.socket.send({"type": "click", "product_id": product_id}, "click")
            if random.random() < CART_RATIO:
                gevent.sleep(random.uniform(1, 3))
                self.socket.send({"type": "cart", "product_id": product_id}, "cart")

    def _grab(self, sid: str, starts_at_ms: int, interest: SaleInterest, name: str) -> None:
        """Grab at the start second on the server's clock; retry as the protocol says to."""
        try:
            gevent.sleep(self.socket.clock.seconds_until(starts_at_ms) + random.uniform(*REACTION_S))
            req_id = self.socket.new_req_id()
            for _ in range(10):
                reply = self.socket.request({"type": "grab", "sale_id": sid}, name, expect="grab_result",
                                            reasons=GRAB_REASONS, req_id=req_id)
                reason = reply.get("reason")
                TALLY.count(f"grab {reason or 'won'}")
                if reply["ok"]:
                    interest.order = reply["order_id"]
                    TALLY.order(reply["order_id"], "won")
                    self._checkout(interest, reply["order_id"], reply["expires_at_ms"])
                    return
                if reason == "rate_limited":  # not recorded: the same req_id is decided anew
                    gevent.sleep(0.25)
                elif reason == "not_started":  # recorded: a new attempt needs a new req_id
                    gevent.sleep(0.05)
                    req_id = self.socket.new_req_id()
                else:  # sold_out, ended, limit: over, unless a "live" push brings stock back
                    return
        finally:
            interest.busy = False

    def _checkout(self, interest: SaleInterest, order: str, expires_at_ms: int) -> None:
        """Most winners pay (the payment system calls pay), some cancel, the rest let the order expire."""
        gevent.sleep(random.uniform(0.2, 0.5) * self.socket.clock.seconds_until(expires_at_ms))
        draw = random.random()
        if draw < PAY_RATIO:
            if self._order_call(order, "pay", self._payment_token(), expires_at_ms):
                TALLY.order(order, "paid")
        elif draw < PAY_RATIO + CANCEL_RATIO and self._order_call(order, "cancel", self.token, expires_at_ms):
            TALLY.order(order, "cancelled")
            interest.order = None

    def _order_call(self, order: str, action: str, token: str | None, expires_at_ms: int) -> bool:
        """Pay or cancel.  A 409 for a call that left after the deadline is the server holding it
        (a load generator short of CPU can be that late); one that left before it is a failure."""
        if token is None:
            return False
        sent_ms = self.socket.clock.now_ms()
        with self.client.post(f"/api/v1/orders/{order}/{action}", headers={"Authorization": f"Bearer {token}"},
                              name=f"/api/v1/orders/[order]/{action}", catch_response=True) as resp:
            if resp.status_code == 409 and sent_ms > expires_at_ms - CLOCK_MARGIN_MS:
                resp.success()
                TALLY.count(f"{action} too_late")
            elif not resp.ok:
                resp.failure(f"HTTP {resp.status_code} {resp.text[:200]}")
            return bool(resp.ok)

    def _claim(self, pid: str, starts_at_ms: int) -> None:
        gevent.sleep(self.socket.clock.seconds_until(starts_at_ms) + random.uniform(*REACTION_S))
        for _ in range(10):
            reply = self.socket.request({"type": "claim", "packet_id": pid}, "claim → claim_result",
                                        expect="claim_result", reasons=CLAIM_REASONS)
            reason = reply.get("reason")
            TALLY.count(f"claim {reason or 'won'}")
            if reply["ok"]:
                TALLY.claim(pid, self.user_id, int(reply["amount_cents"]))
                return
            if reason not in ("not_started", "rate_limited"):  # empty, expired: over
                return
            gevent.sleep(0.1)


# -- hosts -----------------------------------------------------------------------------------


@dataclass
class Step:
    """One item of a host's programme."""

    at_s: float  # seconds into the show
    run: Callable[[], bool]  # True when done
    tries: int = 0


class Host(LiveUser):
    """A host running one room (one per ``--rooms``; set as ``fixed_count`` at init)."""

    fixed_count = 1
    wait_time = constant(0.5)  # the programme's resolution

    def on_start(self) -> None:
        env = self.environment
        self.show = options.scenario(env)
        self.user_id = f"{options.run_id(env)}_h{uuid.uuid4().hex[:8]}"
        self.room = ""
        self.agenda: deque[Step] = deque()
        self.started_ms = 0.0
        self.next_metrics_s = 0.0
        self.token = self.token_for(self.user_id, "host", name="Host")
        self.socket = self.open_socket(self._on_push, spread=False)
        self._set_up()

    def on_stop(self) -> None:
        """The show is over: end the room (its open sales end, its red packets expire and refund)."""
        if self.room and self.token:
            self._call("POST", f"/api/v1/rooms/{self.room}/end", "/api/v1/rooms/[room]/end")
        self.socket.close()

    @task
    @reported
    def run_show(self) -> None:
        """Do what the programme says is due, and glance at the metrics now and then."""
        if not self.started_ms:
            self._set_up()
            return
        if not self.socket.open:
            self.socket.join(self.token or "", self.room)
        elapsed_s = (self.socket.clock.now_ms() - self.started_ms) / 1000
        while self.agenda and self.agenda[0].at_s <= elapsed_s:
            step = self.agenda[0]
            step.tries += 1
            if not step.run() and step.tries < 3:
                break  # try again at the next tick, with the same id
            self.agenda.popleft()
        if elapsed_s >= self.next_metrics_s:
            self.next_metrics_s = elapsed_s + METRICS_EVERY_S
            self._call("GET", f"/api/v1/rooms/{self.room}/metrics", "/api/v1/rooms/[room]/metrics")

    # -- setting up ----------------------------------------------------------------------------

    @reported
    def _set_up(self) -> None:
        """Claim a room, put the products up, go live, connect; each step is safe to repeat."""
        if self.token is None:
            self.token = self.token_for(self.user_id, "host", name="Host")
            if self.token is None:
                return
        if not self.room and not self._claim_room():
            return
        for product, title, price in PRODUCTS:
            body = {"title": title, "price_cents": price}
            if not self._call("PUT", f"/api/v1/rooms/{self.room}/products/{product}",
                              "/api/v1/rooms/[room]/products/[product]", body):
                return
        if not self._call("POST", f"/api/v1/rooms/{self.room}/start", "/api/v1/rooms/[room]/start"):
            return
        self.socket.join(self.token, self.room)
        self.socket.ping()
        self.started_ms = self.socket.clock.now_ms()
        self.agenda = self._programme()

    def _claim_room(self) -> bool:
        """The first room id of this run no other host took (409: taken).  Rooms are numbered so
        that viewers on any Locust worker, and the check after the run, know them without asking."""
        run = options.run_id(self.environment)
        for k in range(self.show.rooms):
            candidate = room_id(run, k)
            with self.client.post("/api/v1/rooms", json={"title": f"Load test {run} #{k}", "room_id": candidate},
                                  headers=self._auth(), name="/api/v1/rooms", catch_response=True) as resp:
                if resp.status_code == 201:
                    self.room = candidate
                    return True
                if resp.status_code == 409:
                    resp.success()  # another host's room: try the next
                    continue
                resp.failure(f"HTTP {resp.status_code} {resp.text[:200]}")
                return False
        raise StopUser  # more hosts than rooms

    def _programme(self) -> deque[Step]:
        steps = [Step(at, functools.partial(self._pin, product)) for at, product in self.show.pins()]
        steps += [Step(s.announce_s, functools.partial(self._open_sale, s)) for s in self.show.sales()]
        steps += [Step(p.announce_s, functools.partial(self._drop_packet, p)) for p in self.show.packets()]
        return deque(sorted(steps, key=lambda step: step.at_s))

    # -- the programme ----------------------------------------------------------------------------

    def _pin(self, product: str) -> bool:
        return self._call("POST", f"/api/v1/rooms/{self.room}/products/{product}/pin",
                          "/api/v1/rooms/[room]/products/[product]/pin")

    def _open_sale(self, sale: Sale) -> bool:
        body = {
            "sale_id": sale_id(self.room, sale.n), "product_id": sale.product_id, "price_cents": sale.price_cents,
            "stock": sale.stock, "per_user_limit": 1, "starts_at_ms": self._show_ms(sale.start_s),
            "duration_s": sale.duration_s, "pay_timeout_s": sale.pay_timeout_s,
        }
        return self._call("POST", f"/api/v1/rooms/{self.room}/flash-sales", "/api/v1/rooms/[room]/flash-sales", body)

    def _drop_packet(self, packet: Packet) -> bool:
        body = {
            "packet_id": packet_id(self.room, packet.n), "total_cents": packet.total_cents, "count": packet.count,
            "starts_at_ms": self._show_ms(packet.start_s), "expires_s": packet.expires_s,
        }
        return self._call("POST", f"/api/v1/rooms/{self.room}/red-packets", "/api/v1/rooms/[room]/red-packets", body)

    def _show_ms(self, at_s: float) -> int:
        """A time of the programme on the server's clock, never in the past (a late host opens at once)."""
        return round(max(self.started_ms + at_s * 1000, self.socket.clock.now_ms()))

    # -- helpers ------------------------------------------------------------------------------------

    def _on_push(self, msg: Message, size: int) -> None:
        kind = msg.get("type")
        if kind == "metrics":  # pushed once a second; late by the time since its ts_ms
            now = self.socket.clock.now_ms()
            self.socket.report_push("metrics", size, now - msg.get("ts_ms", now))
        elif kind != "danmaku":  # the audience's rows already count the danmaku frames
            status = msg.get("status")
            self.socket.report_push(f"{kind} {status}" if status else str(kind), size)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _call(self, method: str, path: str, name: str, body: dict[str, Any] | None = None) -> bool:
        """One REST call as the host; any status but 2xx is a Locust failure (HttpSession reports it)."""
        return self.client.request(method, path, json=body, headers=self._auth(), name=name).ok


@events.init.add_listener
def _one_host_per_room(environment: Environment, **_: Any) -> None:
    """Locust starts ``fixed_count`` users before the weighted ones, and keeps them through ramp-downs."""
    if environment.parsed_options is not None:
        Host.fixed_count = options.scenario(environment).rooms
