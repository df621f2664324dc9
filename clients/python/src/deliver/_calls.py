"""The SQL of every call and the mapping of its rows: one implementation that
the sync :class:`~deliver.Client` and the asyncio :class:`~deliver.AsyncClient`
both run (each only executes ``Call.sql`` with ``Call.params`` and hands the
rows to ``Call.result``).

Every argument is a query parameter with an explicit type; the SQL text is
built only from the fixed argument names below, never from user input. An
optional argument left as None is left out of the call, so the SQL
function's default applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Generic, Iterable, Sequence, TypeVar

from psycopg.types.json import Jsonb

from .errors import InvalidParameter, QueueNotFound
from .types import (
    Alert,
    ArchivedMessage,
    Binding,
    ConsumerGroup,
    DeadLetter,
    Grant,
    Id,
    Interval,
    LeaseSlots,
    MaintainResult,
    Message,
    PeekedMessage,
    Published,
    PushMetrics,
    PushSubscription,
    QueueInfo,
    QueueMetrics,
    Replayed,
    RoutingMatch,
)

T = TypeVar("T")
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One statement: its SQL, its parameters, and what its rows mean."""

    sql: str
    params: dict[str, Any]
    result: Callable[[list[Row]], T]


@dataclass(frozen=True)
class Arg:
    name: str
    sqltype: str
    value: Any
    required: bool = False


def _req(name: str, sqltype: str, value: Any) -> Arg:
    return Arg(name, sqltype, value, True)


def _opt(name: str, sqltype: str, value: Any) -> Arg:
    return Arg(name, sqltype, value, False)


_RESERVED = frozenset({"to"})


def _call_args(args: Iterable[Arg]) -> tuple[str, dict[str, Any]]:
    parts: list[str] = []
    params: dict[str, Any] = {}
    for a in args:
        if a.value is None and not a.required:
            continue
        # a parameter named like a reserved word ("to") is quoted
        sqlname = f'"{a.name}"' if a.name in _RESERVED else a.name
        parts.append(f"{sqlname} => %({a.name})s::{a.sqltype}")
        params[a.name] = a.value
    return ", ".join(parts), params


def scalar(function: str, args: Iterable[Arg], result: Callable[[Any], T]) -> Call[T]:
    """SELECT deliver.function(args): one value."""
    text, params = _call_args(args)
    return Call(f"SELECT deliver.{function}({text})", params, lambda rows: result(rows[0][0]))


def table(
    function: str,
    columns: Sequence[str],
    args: Iterable[Arg],
    row: Callable[[Row], T],
    where: str = "",
    where_params: dict[str, Any] | None = None,
) -> Call[list[T]]:
    """SELECT columns FROM deliver.function(args): a list of rows."""
    text, params = _call_args(args)
    cols = ", ".join(f"t.{c}" for c in columns)
    sql = f"SELECT {cols} FROM deliver.{function}({text}) t"
    if where:
        sql += f" WHERE {where}"
        params.update(where_params or {})
    return Call(sql, params, lambda rows: [row(r) for r in rows])


# ---- argument conversions --------------------------------------------------


def interval(value: Interval | None) -> timedelta | str | None:
    """A duration as Postgres takes it: a timedelta, a number of seconds or
    an interval string."""
    if value is None or isinstance(value, (timedelta, str)):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a duration must be a timedelta, seconds or an interval string, not {type(value).__name__}")
    return f"{value!r} seconds"


#: a cluster's id, "partition:epoch:id": its gateway's, never a node's
_CLUSTER_ID = re.compile(r"[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}")


def bigint(value: Any, what: str = "id") -> int:
    """An id: a Python int (exact), never a float or a bool. A cluster's
    ``"partition:epoch:id"`` raises InvalidParameter (22023): only the
    cluster's gateway takes it (HttpClient)."""
    if isinstance(value, str) and _CLUSTER_ID.fullmatch(value):
        raise InvalidParameter(
            f"{what}: {value!r} is a cluster's id (partition:epoch:id): use HttpClient against the cluster's gateway"
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def bigints(values: Iterable[Any] | None, what: str) -> list[int] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of ints")
    return [bigint(v, what) for v in values]


def jsonb(value: Any) -> Jsonb:
    return Jsonb(value)


def jsonb_or_null(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def optional_list(values: Sequence[Any] | None, what: str) -> list[Any] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{what} must be a sequence, not {type(values).__name__}")
    return list(values)


# ---- row mappings ----------------------------------------------------------

MESSAGE_COLUMNS = (
    "message_id",
    "delivery_id",
    "payload",
    "headers",
    "ordering_key",
    "attempt",
    "enqueued_at",
    "lease_expires_at",
)


def message_row(queue: str, group: str) -> Callable[[Row], Message]:
    def row(r: Row) -> Message:
        return Message(
            message_id=r[0],
            delivery_id=r[1],
            payload=r[2],
            headers=r[3],
            ordering_key=r[4],
            attempt=r[5],
            enqueued_at=r[6],
            lease_expires_at=r[7],
            queue=queue,
            consumer_group=group,
        )

    return row


QUEUE_COLUMNS = (
    "queue_name",
    "guarantee",
    "visibility_timeout",
    "max_attempts",
    "fifo",
    "dedup_window",
    "retry_base",
    "retry_max",
    "archive_retention",
    "consumer_groups",
    "created_at",
    "message_ttl",
    "on_expire",
    "max_depth",
    "overflow",
    "ack_commit",
    "priorities",
)


def queue_row(r: Row) -> QueueInfo:
    return QueueInfo(
        queue_name=r[0],
        guarantee=r[1],
        visibility_timeout=r[2],
        max_attempts=r[3],
        fifo=r[4],
        dedup_window=r[5],
        retry_base=r[6],
        retry_max=r[7],
        archive_retention=r[8],
        consumer_groups=list(r[9] or []),
        created_at=r[10],
        message_ttl=r[11],
        on_expire=r[12],
        max_depth=r[13],
        overflow=r[14],
        ack_commit=r[15],
        priorities=bool(r[16]),
    )


DEAD_LETTER_COLUMNS = (
    "message_id",
    "group_name",
    "payload",
    "headers",
    "ordering_key",
    "attempts",
    "reason",
    "last_error",
    "enqueued_at",
    "dead_at",
)


def dead_letter_row(r: Row) -> DeadLetter:
    return DeadLetter(*r)


ARCHIVED_COLUMNS = ("message_id", "payload", "headers", "ordering_key", "enqueued_at", "archived_at")
METRICS_COLUMNS = (
    "queue_name",
    "consumer_group",
    "depth",
    "in_flight",
    "delayed",
    "dead_letters",
    "oldest_age",
    "sent_total",
    "acked_total",
    "dead_total",
    "worker_last_run",
    "worker_lag",
    "worker_errors",
)
ALERT_COLUMNS = ("queue_name", "metric", "threshold", "firing", "value", "changed_at")


def _none(_: Any) -> None:
    return None


def _bool(v: Any) -> bool:
    return bool(v)


def _int(v: Any) -> int:
    return int(v)


def _ints(v: Any) -> list[int]:
    return [int(x) for x in v]


def _timestamp(v: Any) -> datetime:
    assert isinstance(v, datetime)
    return v


# ---- the calls -------------------------------------------------------------


def create_queue(
    queue: str,
    guarantee: str | None,
    visibility_timeout: Interval | None,
    max_attempts: int | None,
    fifo: bool | None,
    dedup_window: Interval | None,
    retry_base: Interval | None,
    retry_max: Interval | None,
    message_ttl: Interval | None = None,
    on_expire: str | None = None,
    max_depth: int | None = None,
    overflow: str | None = None,
    ack_commit: str | None = None,
    priorities: bool | None = None,
) -> Call[None]:
    return scalar(
        "create_queue",
        [
            _req("queue_name", "text", queue),
            _opt("guarantee", "text", guarantee),
            _opt("visibility_timeout", "interval", interval(visibility_timeout)),
            _opt("max_attempts", "int", max_attempts),
            _opt("fifo", "boolean", fifo),
            _opt("dedup_window", "interval", interval(dedup_window)),
            _opt("retry_base", "interval", interval(retry_base)),
            _opt("retry_max", "interval", interval(retry_max)),
            _opt("message_ttl", "interval", interval(message_ttl)),
            _opt("on_expire", "text", on_expire),
            _opt("max_depth", "bigint", max_depth),
            _opt("overflow", "text", overflow),
            _opt("ack_commit", "text", ack_commit),
            _opt("priorities", "boolean", priorities),
        ],
        _none,
    )


def alter_queue(
    queue: str,
    visibility_timeout: Interval | None,
    max_attempts: int | None,
    dedup_window: Interval | None,
    retry_base: Interval | None,
    retry_max: Interval | None,
    archive_retention: Interval | None,
    message_ttl: Interval | None = None,
    on_expire: str | None = None,
    max_depth: int | None = None,
    overflow: str | None = None,
    ack_commit: str | None = None,
    priorities: bool | None = None,
) -> Call[None]:
    return scalar(
        "alter_queue",
        [
            _req("queue_name", "text", queue),
            _opt("visibility_timeout", "interval", interval(visibility_timeout)),
            _opt("max_attempts", "int", max_attempts),
            _opt("dedup_window", "interval", interval(dedup_window)),
            _opt("retry_base", "interval", interval(retry_base)),
            _opt("retry_max", "interval", interval(retry_max)),
            _opt("archive_retention", "interval", interval(archive_retention)),
            _opt("message_ttl", "interval", interval(message_ttl)),
            _opt("on_expire", "text", on_expire),
            _opt("max_depth", "bigint", max_depth),
            _opt("overflow", "text", overflow),
            _opt("ack_commit", "text", ack_commit),
            _opt("priorities", "boolean", priorities),
        ],
        _none,
    )


def drop_queue(queue: str) -> Call[bool]:
    return scalar("drop_queue", [_req("queue_name", "text", queue)], _bool)


def purge_queue(queue: str) -> Call[int]:
    return scalar("purge_queue", [_req("queue_name", "text", queue)], _int)


def list_queues() -> Call[list[QueueInfo]]:
    return table("list_queues", QUEUE_COLUMNS, [], queue_row)


def _one_queue(queue: str) -> Callable[[list[Row]], QueueInfo]:
    def result(rows: list[Row]) -> QueueInfo:
        if not rows:
            raise QueueNotFound(f'queue "{queue}" does not exist')
        return queue_row(rows[0])

    return result


def get_queue(queue: str) -> Call[QueueInfo]:
    c = table("list_queues", QUEUE_COLUMNS, [], queue_row, "t.queue_name = %(queue_name)s::text", {"queue_name": queue})
    return Call(c.sql, c.params, _one_queue(queue))


def create_consumer_group(queue: str, group: str, start_from: str | None) -> Call[None]:
    return scalar(
        "create_consumer_group",
        [
            _req("queue_name", "text", queue),
            _req("consumer_group", "text", group),
            _opt("start_from", "text", start_from),
        ],
        _none,
    )


def drop_consumer_group(queue: str, group: str) -> Call[bool]:
    return scalar(
        "drop_consumer_group",
        [_req("queue_name", "text", queue), _req("consumer_group", "text", group)],
        _bool,
    )


def position_text(to: Any) -> str:
    """A consumer group position as reset_consumer_group takes it:
    "earliest", "latest", a message id (int) or a time (an aware datetime)."""
    if isinstance(to, bool):
        raise TypeError("to must be 'earliest', 'latest', a message id or a datetime, not bool")
    if isinstance(to, datetime):
        if to.tzinfo is None:
            raise ValueError("to must be an aware datetime (with a tzinfo)")
        return to.isoformat()
    if isinstance(to, int):
        return str(bigint(to, "to"))
    if isinstance(to, str):
        return to
    raise TypeError(f"to must be 'earliest', 'latest', a message id or a datetime, not {type(to).__name__}")


def reset_consumer_group(queue: str, group: str, to: Any) -> Call[None]:
    return scalar(
        "reset_consumer_group",
        [_req("queue_name", "text", queue), _req("consumer_group", "text", group), _req("to", "text", position_text(to))],
        _none,
    )


def replay_archive(
    queue: str, group: str, since: datetime | str | None, after_id: Id | None, max_messages: int | None
) -> Call[Replayed]:
    c = table(
        "replay_archive",
        ("replayed", "last_id"),
        [
            _req("queue_name", "text", queue),
            _req("consumer_group", "text", group),
            _opt("since", "timestamptz", since),
            _opt("after_id", "bigint", None if after_id is None else bigint(after_id, "after_id")),
            _opt("max_messages", "int", max_messages),
        ],
        lambda r: Replayed(int(r[0]), None if r[1] is None else int(r[1])),
    )
    return Call(c.sql, c.params, lambda rows: c.result(rows)[0])


def list_consumer_groups(queue: str) -> Call[list[ConsumerGroup]]:
    return table(
        "list_consumer_groups",
        ("consumer_group", "created_at", "paused", "rate_per_second", "rate_burst"),
        [_req("queue_name", "text", queue)],
        lambda r: ConsumerGroup(r[0], r[1], r[2], r[3], r[4]),
    )


def pause_consumer_group(queue: str, group: str) -> Call[bool]:
    return scalar(
        "pause_consumer_group",
        [_req("queue_name", "text", queue), _req("consumer_group", "text", group)],
        _bool,
    )


def resume_consumer_group(queue: str, group: str) -> Call[bool]:
    return scalar(
        "resume_consumer_group",
        [_req("queue_name", "text", queue), _req("consumer_group", "text", group)],
        _bool,
    )


def set_consumer_group_rate(queue: str, group: str, per_second: float | None, burst: int | None) -> Call[None]:
    return scalar(
        "set_consumer_group_rate",
        [
            _req("queue_name", "text", queue),
            _req("consumer_group", "text", group),
            _req("per_second", "float8", per_second),
            _opt("burst", "int", burst),
        ],
        _none,
    )


def set_fifo_key_limit(queue: str, max_in_flight_per_key: int) -> Call[None]:
    return scalar(
        "set_fifo_key_limit",
        [_req("queue_name", "text", queue), _req("max_in_flight_per_key", "int", max_in_flight_per_key)],
        _none,
    )


def send(
    queue: str,
    payload: Any,
    headers: dict[str, Any] | None,
    ordering_key: str | None,
    idempotency_key: str | None,
    delay: Interval | None,
    expires_at: datetime | str | None = None,
    priority: int | None = None,
) -> Call[int]:
    return scalar(
        "send",
        [
            _req("queue_name", "text", queue),
            _req("payload", "jsonb", jsonb(payload)),
            _opt("headers", "jsonb", jsonb_or_null(headers)),
            _opt("ordering_key", "text", ordering_key),
            _opt("idempotency_key", "text", idempotency_key),
            _opt("delay", "interval", interval(delay)),
            _opt("expires_at", "timestamptz", expires_at),
            _opt("priority", "int", priority),
        ],
        _int,
    )


def send_batch(
    queue: str,
    payloads: Sequence[Any],
    headers: Sequence[dict[str, Any] | None] | None,
    ordering_keys: Sequence[str | None] | None,
    idempotency_keys: Sequence[str | None] | None,
    delay: Interval | None,
    expires_at: datetime | str | None = None,
    priority: int | None = None,
) -> Call[list[int]]:
    if isinstance(payloads, (str, bytes, dict)):
        raise TypeError("payloads must be a sequence of payloads")
    hs = optional_list(headers, "headers")
    return scalar(
        "send_batch",
        [
            _req("queue_name", "text", queue),
            _req("payloads", "jsonb[]", [jsonb(p) for p in payloads]),
            _opt("headers", "jsonb[]", None if hs is None else [jsonb_or_null(h) for h in hs]),
            _opt("ordering_keys", "text[]", optional_list(ordering_keys, "ordering_keys")),
            _opt("idempotency_keys", "text[]", optional_list(idempotency_keys, "idempotency_keys")),
            _opt("delay", "interval", interval(delay)),
            _opt("expires_at", "timestamptz", expires_at),
            _opt("priority", "int", priority),
        ],
        _ints,
    )


def receive(
    queue: str,
    max_messages: int,
    visibility_timeout: Interval | None,
    wait: Interval | None,
    consumer_group: str | None,
) -> Call[list[Message]]:
    return table(
        "receive",
        MESSAGE_COLUMNS,
        [
            _req("queue_name", "text", queue),
            _req("max_messages", "int", max_messages),
            _opt("visibility_timeout", "interval", interval(visibility_timeout)),
            _opt("wait", "interval", interval(wait)),
            _opt("consumer_group", "text", consumer_group),
        ],
        message_row(queue, consumer_group or "default"),
    )


def ack(queue: str, delivery_id: Id) -> Call[bool]:
    return scalar(
        "ack",
        [_req("queue_name", "text", queue), _req("delivery_id", "bigint", bigint(delivery_id, "delivery_id"))],
        _bool,
    )


def ack_batch(queue: str, delivery_ids: Iterable[Id]) -> Call[int]:
    return scalar(
        "ack_batch",
        [_req("queue_name", "text", queue), _req("delivery_ids", "bigint[]", bigints(delivery_ids, "delivery_ids"))],
        _int,
    )


def nack(
    queue: str, delivery_id: Id, error: str | None, retry_after: Interval | None, dead_letter: bool = False
) -> Call[bool]:
    return scalar(
        "nack",
        [
            _req("queue_name", "text", queue),
            _req("delivery_id", "bigint", bigint(delivery_id, "delivery_id")),
            _opt("error", "text", error),
            _opt("retry_after", "interval", interval(retry_after)),
            _opt("dead_letter", "boolean", True if dead_letter else None),
        ],
        _bool,
    )


def extend_lease(queue: str, delivery_id: Id, visibility_timeout: Interval) -> Call[datetime]:
    return scalar(
        "extend_lease",
        [
            _req("queue_name", "text", queue),
            _req("delivery_id", "bigint", bigint(delivery_id, "delivery_id")),
            _req("visibility_timeout", "interval", interval(visibility_timeout)),
        ],
        _timestamp,
    )


def dead_letters(queue: str, consumer_group: str | None, max_messages: int | None) -> Call[list[DeadLetter]]:
    return table(
        "dead_letters",
        DEAD_LETTER_COLUMNS,
        [
            _req("queue_name", "text", queue),
            _opt("consumer_group", "text", consumer_group),
            _opt("max_messages", "int", max_messages),
        ],
        dead_letter_row,
    )


def redrive(
    queue: str, message_ids: Iterable[Id] | None, consumer_group: str | None, to_queue: str | None = None
) -> Call[int]:
    return scalar(
        "redrive",
        [
            _req("queue_name", "text", queue),
            _opt("message_ids", "bigint[]", bigints(message_ids, "message_ids")),
            _opt("consumer_group", "text", consumer_group),
            _opt("to_queue", "text", to_queue),
        ],
        _int,
    )


def delete_message(queue: str, message_id: Id) -> Call[bool]:
    return scalar(
        "delete_message",
        [_req("queue_name", "text", queue), _req("message_id", "bigint", bigint(message_id, "message_id"))],
        _bool,
    )


PEEK_COLUMNS = ("message_id", "payload", "headers", "ordering_key", "attempt", "enqueued_at", "redelivery")


def peek(queue: str, max_messages: int | None, consumer_group: str | None) -> Call[list[PeekedMessage]]:
    return table(
        "peek",
        PEEK_COLUMNS,
        [
            _req("queue_name", "text", queue),
            _opt("max_messages", "int", max_messages),
            _opt("consumer_group", "text", consumer_group),
        ],
        lambda r: PeekedMessage(*r),
    )


def delete_dead_letters(queue: str, message_ids: Iterable[Id] | None, consumer_group: str | None) -> Call[int]:
    return scalar(
        "delete_dead_letters",
        [
            _req("queue_name", "text", queue),
            _req("message_ids", "bigint[]", bigints(message_ids, "message_ids")),
            _opt("consumer_group", "text", consumer_group),
        ],
        _int,
    )


def archived(queue: str, max_messages: int | None, after_id: int | None) -> Call[list[ArchivedMessage]]:
    return table(
        "archived",
        ARCHIVED_COLUMNS,
        [
            _req("queue_name", "text", queue),
            _opt("max_messages", "int", max_messages),
            _opt("after_id", "bigint", None if after_id is None else bigint(after_id, "after_id")),
        ],
        lambda r: ArchivedMessage(*r),
    )


def metrics(queue: str | None) -> Call[list[QueueMetrics]]:
    return table("metrics", METRICS_COLUMNS, [_opt("queue_name", "text", queue)], lambda r: QueueMetrics(*r))


def grant_queue(queue: str, role: str, privilege: str | None) -> Call[None]:
    return scalar(
        "grant_queue",
        [_req("queue_name", "text", queue), _req("role_name", "text", role), _opt("privilege", "text", privilege)],
        _none,
    )


def revoke_queue(queue: str, role: str, privilege: str | None) -> Call[None]:
    return scalar(
        "revoke_queue",
        [_req("queue_name", "text", queue), _req("role_name", "text", role), _opt("privilege", "text", privilege)],
        _none,
    )


def list_grants(queue: str | None) -> Call[list[Grant]]:
    return table(
        "list_grants",
        ("queue_name", "role_name", "privilege"),
        [_opt("queue_name", "text", queue)],
        lambda r: Grant(*r),
    )


def has_queue_privilege(queue: str, privilege: str) -> Call[bool]:
    return scalar(
        "has_queue_privilege",
        [_req("queue_name", "text", queue), _req("privilege", "text", privilege)],
        _bool,
    )


def set_alert(queue: str, metric: str, threshold: float | int | Decimal | None) -> Call[None]:
    if isinstance(threshold, bool):
        raise TypeError("threshold must be a number")
    value = None if threshold is None else Decimal(str(threshold)) if isinstance(threshold, float) else Decimal(threshold)
    return scalar(
        "set_alert",
        [_req("queue_name", "text", queue), _req("metric", "text", metric), _req("threshold", "numeric", value)],
        _none,
    )


def list_alerts(queue: str | None) -> Call[list[Alert]]:
    return table("list_alerts", ALERT_COLUMNS, [_opt("queue_name", "text", queue)], lambda r: Alert(*r))


def lease_slots() -> Call[LeaseSlots]:
    c = table(
        "lease_slots",
        ("total", "free", "reserved", "reserve_per_queue", "max_per_queue", "queues"),
        [],
        lambda r: LeaseSlots(*r),
    )
    return Call(c.sql, c.params, lambda rows: c.result(rows)[0])


def maintain(queue: str | None) -> Call[list[MaintainResult]]:
    return table(
        "maintain",
        ("queue", "truncated", "rotated", "expired_keys", "expired_dead_letters", "archived", "expired_archive"),
        [_opt("queue_name", "text", queue)],
        lambda r: MaintainResult(*r),
    )


def create_push_subscription(queue: str, subscription: str, consumer_group: str | None) -> Call[str]:
    text, params = _call_args(
        [
            _req("queue_name", "text", queue),
            _req("subscription_name", "text", subscription),
            _opt("consumer_group", "text", consumer_group),
        ]
    )
    return Call(f"SELECT deliver.create_push_subscription({text})::text", params, lambda rows: str(rows[0][0]))


def drop_push_subscription(subscription: str) -> Call[bool]:
    return scalar("drop_push_subscription", [_req("subscription_name", "text", subscription)], _bool)


def list_push_subscriptions() -> Call[list[PushSubscription]]:
    return table(
        "list_push_subscriptions",
        (
            "subscription_name",
            "queue_name",
            "consumer_group",
            "slot_options",
            "active",
            "confirmed_lsn::text",
            "created_at",
        ),
        [],
        lambda r: PushSubscription(*r),
    )


def push_metrics() -> Call[list[PushMetrics]]:
    return table(
        "push_metrics",
        ("subscription_name", "queue_name", "active", "confirmed_lsn::text", "lag_bytes", "retained_wal_bytes"),
        [],
        lambda r: PushMetrics(*r),
    )


# ---- topic routing ----


def publish(
    routing_key: str,
    payload: Any,
    headers: dict[str, Any] | None,
    ordering_key: str | None,
    idempotency_key: str | None,
    delay: Interval | None,
    mandatory: bool | None,
    expires_at: datetime | str | None = None,
    priority: int | None = None,
) -> Call[list[Published]]:
    return table(
        "publish",
        ("queue_name", "message_id"),
        [
            _req("routing_key", "text", routing_key),
            _req("payload", "jsonb", jsonb(payload)),
            _opt("headers", "jsonb", jsonb_or_null(headers)),
            _opt("ordering_key", "text", ordering_key),
            _opt("idempotency_key", "text", idempotency_key),
            _opt("delay", "interval", interval(delay)),
            _opt("mandatory", "boolean", mandatory),
            _opt("expires_at", "timestamptz", expires_at),
            _opt("priority", "int", priority),
        ],
        lambda r: Published(r[0], r[1]),
    )


def bind(pattern: str, queue: str) -> Call[bool]:
    return scalar("bind", [_req("pattern", "text", pattern), _req("queue_name", "text", queue)], _bool)


def unbind(pattern: str, queue: str) -> Call[bool]:
    return scalar("unbind", [_req("pattern", "text", pattern), _req("queue_name", "text", queue)], _bool)


def list_bindings(queue: str | None) -> Call[list[Binding]]:
    return table(
        "list_bindings",
        ("pattern", "queue_name", "created_at"),
        [_opt("queue_name", "text", queue)],
        lambda r: Binding(*r),
    )


def test_routing(routing_key: str) -> Call[list[RoutingMatch]]:
    return table(
        "test_routing",
        ("queue_name", "pattern"),
        [_req("routing_key", "text", routing_key)],
        lambda r: RoutingMatch(*r),
    )

