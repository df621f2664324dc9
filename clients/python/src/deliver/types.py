"""The values deliver's calls return, the same for SQL and HTTP.

Message and delivery ids are :data:`Id`: from a single node (over SQL or
HTTP) Python ints, exact 64-bit integers (delivery ids are larger than 2**53,
beyond what a float holds); from the gateway of a deliver cluster strings
``"partition:epoch:id"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Union

__all__ = [
    "Id",
    "Interval",
    "Guarantee",
    "OnExpire",
    "Overflow",
    "AckCommit",
    "Privilege",
    "Message",
    "PeekedMessage",
    "QueueInfo",
    "ConsumerGroup",
    "DeadLetter",
    "ArchivedMessage",
    "QueueMetrics",
    "Grant",
    "Alert",
    "LeaseSlots",
    "Replayed",
    "MaintainResult",
    "PushSubscription",
    "PushMetrics",
]

#: A message or delivery id: an ``int`` from a single node, over SQL or HTTP
#: (exact, also beyond 2**53); a ``str`` ``"partition:epoch:id"`` (digits
#: only: 1 to 6, 1 to 9 and 1 to 19 of them, as ``"3:1:42"``) from the gateway
#: of a deliver cluster. Pass an id back as it was given.
Id = Union[int, str]

#: A duration argument: a timedelta, a number of seconds, or a Postgres
#: interval string such as ``"30 seconds"`` (SQL clients; over HTTP only
#: numbers and timedeltas are sent as such, strings go to the gateway as
#: they are).
Interval = Union[timedelta, int, float, str]

Guarantee = Literal["at_most_once", "at_least_once", "exactly_once"]
Privilege = Literal["send", "receive", "all"]
#: What expiry does to a message (the queue's on_expire).
OnExpire = Literal["dead_letter", "drop"]
#: What a send beyond a queue's max_depth does (the queue's overflow).
Overflow = Literal["reject", "drop_oldest"]
#: How a queue's acks commit (its ack_commit): "durable" waits for the WAL
#: flush; "async" does not when the ack is its transaction's only work.
AckCommit = Literal["durable", "async"]


@dataclass(frozen=True)
class Message:
    """A received message.

    ``delivery_id`` is the fencing token to ack, nack or extend with; it is
    None for at-most-once queues (nothing to ack). ``attempt`` counts the
    message's deliveries, this one included.
    """

    message_id: Id
    delivery_id: Id | None
    payload: Any
    headers: dict[str, Any] | None
    ordering_key: str | None
    attempt: int
    enqueued_at: datetime
    lease_expires_at: datetime | None
    #: the queue and consumer group it was received from
    queue: str = ""
    consumer_group: str = "default"


@dataclass(frozen=True)
class PeekedMessage:
    """A message ``peek`` shows: one a receive of the consumer group would
    hand out next, not leased. ``attempt`` is the attempt that receive would
    make; ``redelivery`` is true for a message due for redelivery (nacked,
    or its lease ran out), false for one the group has not been handed yet.
    """

    message_id: Id
    payload: Any
    headers: dict[str, Any] | None
    ordering_key: str | None
    attempt: int
    enqueued_at: datetime
    redelivery: bool


@dataclass(frozen=True)
class QueueInfo:
    """A queue and its settings (``list_queues``); ``archive_retention`` is
    None when the archive is off."""

    queue_name: str
    guarantee: str
    visibility_timeout: timedelta
    max_attempts: int
    fifo: bool
    dedup_window: timedelta
    retry_base: timedelta
    retry_max: timedelta
    archive_retention: timedelta | None
    consumer_groups: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    #: None when the queue has no message_ttl
    message_ttl: timedelta | None = None
    on_expire: str = "dead_letter"
    #: None when the queue has no depth limit
    max_depth: int | None = None
    overflow: str = "reject"
    ack_commit: str = "durable"
    #: receives hand out higher priorities first (create_queue's priorities)
    priorities: bool = False


@dataclass(frozen=True)
class ConsumerGroup:
    consumer_group: str
    created_at: datetime
    #: paused (``pause_consumer_group``): its receives return nothing
    paused: bool = False
    #: rate limit in messages a second (``set_consumer_group_rate``); None: none
    rate_per_second: float | None = None
    #: the most one receive may take at once under the rate limit; None: none
    rate_burst: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A message that ran out of attempts (``reason``: ``lease expired``,
    ``nacked`` or ``receiving transaction rolled back``), outlived its
    deadline (``reason``: ``expired``) or was dropped by a send over the
    queue's max_depth (``reason``: ``overflow``)."""

    message_id: Id
    consumer_group: str
    payload: Any
    headers: dict[str, Any] | None
    ordering_key: str | None
    attempts: int
    reason: str
    last_error: str | None
    enqueued_at: datetime
    dead_at: datetime


@dataclass(frozen=True)
class ArchivedMessage:
    message_id: int
    payload: Any
    headers: dict[str, Any] | None
    ordering_key: str | None
    enqueued_at: datetime
    archived_at: datetime


@dataclass(frozen=True)
class QueueMetrics:
    """One consumer group's gauges and counters (``metrics``)."""

    queue_name: str
    consumer_group: str
    depth: int
    in_flight: int
    delayed: int
    dead_letters: int
    oldest_age: timedelta | None
    sent_total: int
    acked_total: int
    dead_total: int
    worker_last_run: datetime | None
    worker_lag: timedelta | None
    worker_errors: int | None


@dataclass(frozen=True)
class Grant:
    queue_name: str
    role_name: str
    privilege: str


@dataclass(frozen=True)
class Alert:
    queue_name: str
    metric: str
    threshold: Decimal
    firing: bool
    value: Decimal | None
    changed_at: datetime | None


@dataclass(frozen=True)
class LeaseSlots:
    """The server's lease slots (``deliver.max_in_flight``): free ones,
    those kept for queues below their reserve, the reserve and the most one
    queue may hold, the queues in use."""

    total: int
    free: int
    reserved: int
    reserve_per_queue: int
    max_per_queue: int
    queues: int


@dataclass(frozen=True)
class Replayed:
    """What ``replay_archive`` sent: how many messages, and the last id
    replayed (None when none); call again with ``after_id=last_id`` until
    ``replayed`` is 0."""

    replayed: int
    last_id: Id | None


@dataclass(frozen=True)
class MaintainResult:
    """One queue's maintenance pass (``maintain``)."""

    queue: str
    truncated: int
    rotated: bool
    expired_keys: int
    expired_dead_letters: int
    archived: int
    expired_archive: int


@dataclass(frozen=True)
class PushSubscription:
    """A push subscription (a logical replication slot); LSNs as text
    (``"0/1A2B3C"``)."""

    subscription_name: str
    queue_name: str
    consumer_group: str | None
    slot_options: str | None
    active: bool
    confirmed_lsn: str | None
    created_at: datetime


@dataclass(frozen=True)
class PushMetrics:
    subscription_name: str
    queue_name: str
    active: bool
    confirmed_lsn: str | None
    lag_bytes: Decimal | None
    retained_wal_bytes: Decimal | None


# ---- topic routing ----


@dataclass(frozen=True)
class Published:
    """A queue ``publish`` sent the message to, and its id there."""

    queue_name: str
    message_id: Id


@dataclass(frozen=True)
class Binding:
    """``publish`` sends to ``queue_name`` when ``pattern`` matches the routing key."""

    pattern: str
    queue_name: str
    created_at: datetime


@dataclass(frozen=True)
class RoutingMatch:
    """A binding ``test_routing`` found."""

    queue_name: str
    pattern: str
