"""What the thread and asyncio consumers share: the book of held deliveries
and their lease deadlines, the statistics, the error text of a nack."""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass, field
from datetime import timedelta

from .errors import (
    AuthenticationFailed,
    DeliverError,
    InvalidInput,
    PermissionDenied,
    QueueNotFound,
)
from .types import Id, Interval, Message

log = logging.getLogger("deliver.consumer")

#: longest error text sent with a nack (the server keeps 119 bytes)
MAX_ERROR_TEXT = 1000


@dataclass
class ConsumerStats:
    """What a consumer did: counts since it started."""

    received: int = 0
    #: handlers that returned (acked, or at-most-once messages handled)
    handled: int = 0
    acked: int = 0
    #: handlers that raised (their message nacked)
    failed: int = 0
    nacked: int = 0
    #: held but not started at stop: nacked with retry_after 0
    released: int = 0
    #: still running when the grace period ran out: nacked with retry_after 0
    abandoned: int = 0
    extended: int = 0
    #: leases found lost (an extend, ack or nack refused as not current)
    lost: int = 0
    receive_errors: int = 0
    #: the last errors (at most 20) of receives, acks, nacks and extends
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def note_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)
            del self.errors[:-20]


@dataclass
class Held:
    """A delivery the consumer holds: received, maybe running."""

    message: Message
    deadline: float  # monotonic time its lease runs out, a conservative estimate
    started: bool = False
    done: bool = False
    lost: bool = False
    released: bool = False


def seconds(value: Interval) -> float:
    """A duration in seconds (a Postgres interval string is not taken here:
    the consumer needs the number)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("the consumer takes durations as a timedelta or seconds")
    return float(value)


def error_text(exc: BaseException) -> str:
    """The error a nack records: the exception's type and text, its last
    line of traceback."""
    text = f"{type(exc).__name__}: {exc}".strip()
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        last = tb[-1]
        text += f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
    return text[:MAX_ERROR_TEXT]


def is_fatal(exc: DeliverError) -> bool:
    """Errors a receive loop cannot wait out: the queue or group is gone,
    the role may not, the arguments are wrong."""
    return isinstance(exc, (QueueNotFound, PermissionDenied, AuthenticationFailed, InvalidInput))


class LeaseBook:
    """The held deliveries and when to extend their leases: a lease is
    extended once less than half of the visibility timeout is left."""

    def __init__(self, visibility_timeout: float) -> None:
        self.vt = visibility_timeout
        self.held: dict[Id, Held] = {}  # by message id (at-most-once: no delivery id)

    def __len__(self) -> int:
        return len(self.held)

    def lease_start(self, before: float, after: float) -> float:
        """When a receive that ran from ``before`` to ``after`` granted its
        leases, at the earliest we must assume: a long poll grants them when
        it finds messages and returns at once."""
        return max(before, after - min(1.0, self.vt / 4))

    def add(self, message: Message, lease_start: float) -> Held:
        h = Held(message, lease_start + self.vt)
        self.held[message.message_id] = h
        return h

    def remove(self, h: Held) -> None:
        h.done = True
        if self.held.get(h.message.message_id) is h:
            del self.held[h.message.message_id]

    def due(self, now: float) -> list[Held]:
        """The leases to extend now."""
        return [
            h
            for h in self.held.values()
            if not h.done and not h.lost and not h.released and h.message.delivery_id is not None
            and h.deadline - now <= self.vt / 2
        ]

    def tick(self) -> float:
        """How often to look for leases to extend."""
        return min(1.0, max(0.01, self.vt / 8))
