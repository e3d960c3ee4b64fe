"""A connection's send queue, as a policy without I/O (pure: fed ``now``, told what to do).

The hub hands every frame to a connection without awaiting its socket; what
happens to a frame that cannot be written at once is decided here, and the
connection's writer (hub.py) is the thin shell that acts on the answer:

- droppable frames (``danmaku``, ``likes``, ``presence``) are queued only while
  fewer than ``droppable_frames`` wait; past that they are dropped and counted;
- control frames are always queued, up to ``queue_frames``; one more means the
  connection cannot keep up: close it with 4008 (:attr:`Push.CLOSE`);
- a queue that stays at the droppable limit for ``slow_timeout_s`` (dropped
  frames with no frame accepted or written between them) closes it with 4008 too.

python-websockets' broadcast model: no backpressure in the fan-out loop, a
bounded queue per client, disconnect the laggard.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

__all__ = ["Closing", "Push", "SendQueue"]


class Push(enum.Enum):
    """What :meth:`SendQueue.push` did with a frame."""

    QUEUED = "queued"  # behind others: the writer is awake already
    WAKE = "wake"  # the first in an empty queue: wake the writer
    DROPPED = "dropped"  # a droppable frame past the droppable limit
    CLOSE = "close"  # the connection cannot keep up: close it with 4008 (nothing was queued)


@dataclass(frozen=True, slots=True)
class Closing:
    """A queue entry: flush what is ahead of it, then close with ``code``."""

    code: int
    reason: str


class SendQueue:
    """The frames waiting for one connection's writer, and the rules that bound them.

    ``entries`` is the queue itself, for the I/O shell's hot paths (is anything waiting?
    the next entry), which run per viewer per frame and so avoid a method call; only
    :meth:`push`, :meth:`push_first` and :meth:`close` add to it.  ``full_since`` is the
    slow-consumer clock: None while the consumer keeps up."""

    __slots__ = ("_droppable_frames", "_queue_frames", "_slow_timeout_s", "dropped", "entries", "full_since")

    def __init__(self, queue_frames: int, droppable_frames: int, slow_timeout_s: float) -> None:
        self.entries: deque[bytes | Closing] = deque()
        self._queue_frames = queue_frames
        self._droppable_frames = droppable_frames
        self._slow_timeout_s = slow_timeout_s
        self.full_since: float | None = None  # when the droppable limit was first hit, since a frame last went
        self.dropped = 0  # droppable frames dropped, over the connection's life

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, frame: bytes, droppable: bool, now: float) -> Push:
        """Queue ``frame`` if the rules let it wait (see the module's docstring)."""
        entries = self.entries
        n = len(entries)
        if droppable:
            if n >= self._droppable_frames:
                self.dropped += 1
                if self.full_since is None:
                    self.full_since = now
                elif now - self.full_since > self._slow_timeout_s:
                    return Push.CLOSE
                return Push.DROPPED
            self.full_since = None
        elif n >= self._queue_frames:
            return Push.CLOSE
        entries.append(frame)
        return Push.WAKE if n == 0 else Push.QUEUED

    def wrote(self) -> None:
        """A frame went straight to the socket (nothing was waiting): the consumer keeps up."""
        self.full_since = None

    def push_first(self, frames: list[bytes]) -> None:
        """Put ``frames`` ahead of everything queued (the ``welcome`` and its replay), whatever the limits."""
        self.entries.extendleft(reversed(frames))

    def close(self, code: int, reason: str) -> None:
        """Close with ``code`` once what is queued now is written."""
        self.entries.append(Closing(code, reason))

    def pop(self) -> bytes | Closing | None:
        """The next entry for the writer, or None if nothing waits."""
        return self.entries.popleft() if self.entries else None

    def clear(self) -> None:
        """Forget what waits (the connection is gone, or closes as too slow)."""
        self.entries.clear()
