"""Danmaku: send, delete, mutes, slow mode, banned words, history.

Every check that must hold across nodes (room live, mute, slow mode, the
user's and the room's rates, the sequence number) runs in
``danmaku_send.lua``, which also appends to the history stream and publishes
to the room's channel in the same atomic step.  The banned-word filter runs
on the node (it is a pure function of the lists), before the script.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..auth import Principal
from ..errors import Conflict, Invalid, NotFound
from ..redisio.client import json_object
from ..redisio.keyspace import DANMAKU_REQ_TTL_S
from ..redisio.store import Store
from ..rooms.service import Room, RoomService, check_id, check_int
from ..settings import Settings
from .filter import WordFilter

__all__ = ["DanmakuService", "JoinState", "item_from_stream", "resume_complete"]

log = logging.getLogger(__name__)

MAX_WORDS = 2000
MAX_WORD_CHARS = 50
MAX_MUTE_S = 30 * 24 * 3600
MAX_SLOW_MODE_S = 3600


@dataclass(slots=True)
class JoinState:
    """The room as a joining viewer sees it: read in one MULTI after the viewer subscribed."""

    room: Room | None
    ban_ms: int | None
    seq: int
    likes: int
    recovered: bool | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    drop_ids: list[str] = field(default_factory=list)  # the room's open drops and packets, read in the same
    packet_ids: list[str] = field(default_factory=list)  # MULTI so that the join needs no round trip for them
    program: dict[str, Any] | None = None  # the room's video program, when a camera has been live


def _program(raw: str | None) -> dict[str, Any] | None:
    """The room's last ``program`` message as the welcome carries it (without its type)."""
    msg = json_object(raw)
    if msg is not None:
        msg.pop("type", None)
    return msg


def item_from_stream(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A history stream entry as a frame item."""
    item: dict[str, Any] = {
        "id": int(entry_id.split("-", 1)[0]),
        "user": fields["u"],
        "name": fields["n"],
        "text": fields["t"],
        "ts_ms": int(float(fields["ts"])),
    }
    if fields.get("p", "0") != "0":
        item["prio"] = int(fields["p"])
    return item


def resume_complete(last_seq: int, seq: int, held: list[tuple[int, int | None]], *, trimmed: bool) -> bool:
    """Whether a viewer that had every danmaku up to ``last_seq`` misses none by resuming (pure).

    ``seq`` is the room's last id; ``held`` the (id, prev) of the history entries from
    ``last_seq`` on, oldest first (``prev``: the id before it in the room, None for
    entries older than that field); ``trimmed``: the history may have dropped its oldest
    entries (it is at its length limit).

    - ``last_seq`` above ``seq``: the viewer saw ids that Redis no longer has (it lost its
      last second): not complete, whatever follows;
    - nothing after ``last_seq``: complete;
    - the first entry after it follows ``last_seq`` (or ``last_seq`` itself is still held):
      complete; one that follows an earlier id than ``last_seq``: the ids after that were
      lost, and ``last_seq`` with them: not complete;
    - otherwise entries between are gone: deleted (complete) unless the history trims.
    """
    if last_seq > seq:
        return False
    after = [(i, p) for i, p in held if i > last_seq]
    if not after:
        return True
    if held[0][0] == last_seq:
        return True
    prev = after[0][1]
    if prev is None:
        return not trimmed
    if prev < last_seq:
        return False
    return prev == last_seq or not trimmed


def check_words(value: Any, name: str = "words") -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_WORDS:
        raise Invalid(name, f"'{name}' must be a list of at most {MAX_WORDS} words")
    words = []
    for w in value:
        if not isinstance(w, str) or not w.strip() or len(w) > MAX_WORD_CHARS:
            raise Invalid(name, f"each word must be a non-empty string of at most {MAX_WORD_CHARS} characters")
        words.append(w.strip())
    return words


class DanmakuService:
    def __init__(self, store: Store, settings: Settings, rooms: RoomService) -> None:
        self._redis, self._scripts, self._keys = store
        self._s = settings
        self._rooms = rooms
        self._file_words: list[str] = self._read_words_file(settings.banned_words_file)
        self._global_words: list[str] = list(self._file_words)
        self._filters: dict[str, WordFilter] = {}

    @staticmethod
    def _read_words_file(path: Path | None) -> list[str]:
        if path is None:
            return []
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]

    async def _moderated(self, room_id: str, who: Principal) -> None:
        """The room, if ``who`` runs it and it has not ended (an ended room's keys expire; new ones would not)."""
        room = await self._rooms.get_run(room_id, who)
        if room.status == "ended":
            raise Conflict(f"room {room_id!r} has ended")

    # -- banned words ------------------------------------------------------------

    async def load_global_words(self) -> None:
        stored = await self._redis.smembers(self._keys.words)
        self._global_words = sorted(set(self._file_words) | set(stored))
        self._filters.clear()

    def invalidate(self, room: str) -> None:
        """The room's word list changed (a ``_words`` notice): rebuild on next use."""
        self._filters.pop(room, None)

    async def _filter(self, room: str) -> WordFilter:
        f = self._filters.get(room)
        if f is None:
            room_words = await self._redis.smembers(self._keys.room(room).words)
            f = self._filters[room] = WordFilter([*self._global_words, *room_words])
        return f

    async def room_words(self, room_id: str, who: Principal) -> list[str]:
        await self._rooms.get_run(room_id, who)
        return sorted(await self._redis.smembers(self._keys.room(room_id).words))

    async def change_room_words(self, room_id: str, who: Principal, body: dict[str, Any], *, replace: bool) -> list[str]:
        await self._moderated(room_id, who)
        key = self._keys.room(room_id).words
        await self._change_set(key, body, replace=replace)
        await self._publish_words(self._keys.room(room_id).channel)
        return sorted(await self._redis.smembers(key))

    async def global_words(self) -> list[str]:
        return sorted(await self._redis.smembers(self._keys.words))

    async def change_global_words(self, body: dict[str, Any], *, replace: bool) -> list[str]:
        await self._change_set(self._keys.words, body, replace=replace)
        await self._publish_words(self._keys.nodes_channel)
        return await self.global_words()

    async def _change_set(self, key: str, body: dict[str, Any], *, replace: bool) -> None:
        """Replace (``{words}``) or edit (``{add, remove}``) a word set; checked before any write."""
        pipe = self._redis.pipeline(transaction=True)
        if replace:
            words = check_words(body.get("words"))
            pipe.delete(key)
            if words:
                pipe.sadd(key, *words)
        else:
            add = check_words(body.get("add", []), "add")
            remove = check_words(body.get("remove", []), "remove")
            if add and await self._redis.scard(key) + len(add) > MAX_WORDS:
                raise Invalid("add", f"a list holds at most {MAX_WORDS} words")
            if add:
                pipe.sadd(key, *add)
            if remove:
                pipe.srem(key, *remove)
        await pipe.execute()

    async def _publish_words(self, channel: str) -> None:
        from ..wire import encode_msgpack

        await self._redis.publish(channel, encode_msgpack({"type": "_words"}))

    # -- send ----------------------------------------------------------------------

    async def send(self, who: Principal, room_id: str, text: str, req_id: str | None, is_host: bool) -> dict[str, Any]:
        """Try to accept one danmaku.  Returns the ``ack`` message (without ``req_id``)."""
        if len(text) > self._s.danmaku_max_chars:
            return {"type": "ack", "ok": False, "reason": "too_long", "max_chars": self._s.danmaku_max_chars}
        if not text.strip():
            raise Invalid("text", "'text' must not be blank")
        if not is_host and (await self._filter(room_id)).match(text) is not None:
            return {"type": "ack", "ok": False, "reason": "blocked"}
        k = self._keys.room(room_id)
        s = self._s
        res = await self._scripts.danmaku_send(
            keys=[
                k.meta, k.mutes, k.user_rate(who.user), k.user_slow(who.user), k.room_rate, k.seq, k.history,
                k.danmaku_req(who.user, req_id or ""), k.metric("s:danmaku"),
            ],
            args=[
                who.user, who.name, text, 1 if is_host else 0, 1 if is_host else 0,
                s.danmaku_user_rate, s.danmaku_user_burst, s.danmaku_room_rate, s.danmaku_room_burst,
                s.danmaku_history, k.channel, DANMAKU_REQ_TTL_S, 1 if req_id else 0,
            ],
        )
        if res[0] == "ok":
            return {"type": "ack", "ok": True, "id": int(res[1]), "ts_ms": int(res[2])}
        ack: dict[str, Any] = {"type": "ack", "ok": False, "reason": res[0]}
        if int(res[1]) > 0:
            ack["retry_after_ms"] = int(res[1])
        return ack

    # -- moderation ------------------------------------------------------------------

    async def delete(self, room_id: str, danmaku_id: str, who: Principal) -> None:
        await self._rooms.get_run(room_id, who)
        if not (danmaku_id.isascii() and danmaku_id.isdigit()) or len(danmaku_id) > 18:  # not "²"
            raise NotFound(f"danmaku {danmaku_id!r} not found")
        k = self._keys.room(room_id)
        if not int(await self._scripts.danmaku_delete(keys=[k.seq, k.history], args=[int(danmaku_id), k.channel])):
            raise NotFound(f"danmaku {danmaku_id!r} not found in room {room_id!r}")

    async def mute(self, room_id: str, who: Principal, body: dict[str, Any]) -> int:
        await self._moderated(room_id, who)
        user = check_id(body.get("user"), "user")
        seconds = check_int(body.get("seconds"), "seconds", 1, MAX_MUTE_S)
        return int(await self._scripts.room_sanction(keys=[self._keys.room(room_id).mutes], args=[user, seconds]))

    async def unmute(self, room_id: str, user: str, who: Principal) -> None:
        await self._rooms.get_run(room_id, who)
        await self._scripts.room_sanction(keys=[self._keys.room(room_id).mutes], args=[check_id(user, "user"), 0])

    async def set_slow_mode(self, room_id: str, who: Principal, body: dict[str, Any]) -> int:
        await self._moderated(room_id, who)
        seconds = check_int(body.get("seconds"), "seconds", 0, MAX_SLOW_MODE_S)
        await self._redis.hset(self._keys.room(room_id).meta, "slow_mode_s", seconds)
        return seconds

    # -- history -----------------------------------------------------------------------

    async def join_state(self, room_id: str, user: str, last_seq: int | None) -> JoinState:
        """The room, the user's ban, the room's seq and likes, and with ``last_seq`` the
        danmaku after it that the history holds.  One MULTI, so that they all agree."""
        k = self._keys.room(room_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hgetall(k.meta)
        pipe.zscore(k.banned, user)
        pipe.get(k.seq)
        pipe.get(k.likes)
        pipe.smembers(k.drops)
        pipe.smembers(k.packets)
        pipe.get(k.program)
        if last_seq is not None:  # from last_seq itself: whether it is still held says what was trimmed
            pipe.xrange(k.history, min=f"{last_seq}-0", max="+", count=self._s.danmaku_history + 1)
            pipe.xlen(k.history)
        res = await pipe.execute()
        seq = int(res[2] or 0)
        state = JoinState(
            room=Room.from_hash(res[0]) if res[0] else None,
            ban_ms=int(res[1]) if res[1] is not None else None,
            seq=seq,
            likes=int(res[3] or 0),
            drop_ids=sorted(res[4]),
            packet_ids=sorted(res[5]),
            program=_program(res[6]),
        )
        if last_seq is not None:
            entries = res[7]
            held = [(int(eid.split("-", 1)[0]), int(f["pv"]) if "pv" in f else None) for eid, f in entries]
            state.items = [item_from_stream(eid, f) for (i, _), (eid, f) in zip(held, entries, strict=True)
                           if i > last_seq]
            state.recovered = resume_complete(last_seq, seq, held, trimmed=int(res[8]) >= self._s.danmaku_history)
        return state

    async def history_range(self, room_id: str, after: int, before: int) -> list[dict[str, Any]]:
        """Items with ``after < id < before`` (to fill a gap in what the broker delivered)."""
        if before - after <= 1:
            return []
        entries = await self._redis.xrange(
            self._keys.room(room_id).history, min=f"{after + 1}-0", max=f"{before - 1}-0"
        )
        return [item_from_stream(eid, f) for eid, f in entries]
