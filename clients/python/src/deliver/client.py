"""The synchronous client: deliver's SQL API over one psycopg connection."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import psycopg

from . import _calls as calls
from ._pg import translate
from .errors import DeliverError
from .types import (
    Alert,
    ArchivedMessage,
    Binding,
    ConsumerGroup,
    DeadLetter,
    Grant,
    Guarantee,
    Id,
    OnExpire,
    Overflow,
    AckCommit,
    Interval,
    LeaseSlots,
    MaintainResult,
    Message,
    PeekedMessage,
    Privilege,
    Published,
    PushMetrics,
    PushSubscription,
    QueueInfo,
    QueueMetrics,
    Replayed,
    RoutingMatch,
)

__all__ = ["Client"]

T = TypeVar("T")
Connection = psycopg.Connection[Any]


class Client:
    """deliver's SQL functions over one psycopg connection.

    ``Client.connect(conninfo)`` opens a connection of its own in autocommit
    mode (each call is its own transaction) and closes it with the client;
    ``Client(conn)`` uses a connection you opened (and leaves it open).

    A call runs in the connection's transaction when one is open: inside
    ``with client.transaction():`` a send exists if and only if the block
    commits (the transactional outbox). Calls that take ``conn=`` run on that
    connection instead, in whatever transaction it has, so a send or an ack
    joins your own transaction.

    A connection runs one statement at a time: a client shared by threads
    serializes their calls (a long poll holds it for its wait).
    """

    def __init__(self, connection: Connection, *, owned: bool = False) -> None:
        self._conn = connection
        self._owned = owned

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Client:
        """Open a connection (autocommit) with psycopg's ``conninfo`` and
        keyword arguments; the client closes it."""
        kwargs.setdefault("autocommit", True)
        try:
            conn = psycopg.connect(conninfo, **kwargs)
        except psycopg.Error as e:
            raise translate(e) from e
        return cls(conn, owned=True)

    @property
    def connection(self) -> Connection:
        return self._conn

    def close(self) -> None:
        """Close the connection if the client opened it."""
        if self._owned:
            self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction on the client's connection (a savepoint when one is
        open): every call made in the block joins it, and so does what you
        run on the connection it yields. It commits when the block ends and
        rolls back when the block raises."""
        with _transaction(self._conn):
            yield self._conn

    def _run(self, call: calls.Call[T], conn: Connection | None = None) -> T:
        c = self._conn if conn is None else conn
        try:
            with c.cursor() as cur:
                cur.execute(call.sql, call.params)
                rows = cur.fetchall() if cur.description else []
        except psycopg.Error as e:
            raise translate(e) from e
        return call.result(rows)

    # ---- queues ----

    def create_queue(
        self,
        queue: str,
        *,
        guarantee: Guarantee | None = None,
        visibility_timeout: Interval | None = None,
        max_attempts: int | None = None,
        fifo: bool | None = None,
        dedup_window: Interval | None = None,
        retry_base: Interval | None = None,
        retry_max: Interval | None = None,
        message_ttl: Interval | None = None,
        on_expire: OnExpire | None = None,
        max_depth: int | None = None,
        overflow: Overflow | None = None,
        ack_commit: AckCommit | None = None,
        priorities: bool | None = None,
    ) -> None:
        """Create a queue (with its consumer group ``default``); an option
        left as None takes the server's default.  ``message_ttl``: a message
        expires this long after it was sent; ``on_expire``: ``"dead_letter"``
        (default) or ``"drop"``; ``max_depth``: a send that would take the
        depth over it is refused (:class:`~deliver.TooManyInFlight`, 53400);
        ``ack_commit``: ``"durable"`` (default) or ``"async"`` (an ack that is
        its transaction's only work does not wait for the WAL flush; after a
        crash an acked message may be delivered again; at_least_once only);
        ``priorities``: a receive hands out a message of higher priority
        first (not on at_most_once queues); off (default), a send with a
        priority above 0 is refused (:class:`~deliver.NotCurrent`, 55000)."""
        self._run(
            calls.create_queue(
                queue, guarantee, visibility_timeout, max_attempts, fifo, dedup_window, retry_base, retry_max,
                message_ttl, on_expire, max_depth, overflow, ack_commit, priorities,
            )
        )

    def alter_queue(
        self,
        queue: str,
        *,
        visibility_timeout: Interval | None = None,
        max_attempts: int | None = None,
        dedup_window: Interval | None = None,
        retry_base: Interval | None = None,
        retry_max: Interval | None = None,
        archive_retention: Interval | None = None,
        message_ttl: Interval | None = None,
        on_expire: OnExpire | None = None,
        max_depth: int | None = None,
        overflow: Overflow | None = None,
        ack_commit: AckCommit | None = None,
        priorities: bool | None = None,
    ) -> None:
        """Change a queue's settings; None keeps a setting as it is
        (``message_ttl=0`` removes the ttl)."""
        self._run(
            calls.alter_queue(
                queue, visibility_timeout, max_attempts, dedup_window, retry_base, retry_max, archive_retention,
                message_ttl, on_expire, max_depth, overflow, ack_commit, priorities,
            )
        )

    def drop_queue(self, queue: str) -> bool:
        return self._run(calls.drop_queue(queue))

    def purge_queue(self, queue: str) -> int:
        """Remove every message of the queue; returns how many."""
        return self._run(calls.purge_queue(queue))

    def list_queues(self) -> list[QueueInfo]:
        return self._run(calls.list_queues())

    def get_queue(self, queue: str) -> QueueInfo:
        """One queue's settings; :class:`~deliver.QueueNotFound` when none."""
        return self._run(calls.get_queue(queue))

    # ---- consumer groups ----

    def create_consumer_group(self, queue: str, group: str, *, start_from: str | None = None) -> None:
        """``start_from``: ``"latest"`` (default, messages sent from now on)
        or ``"earliest"`` (every message still stored)."""
        self._run(calls.create_consumer_group(queue, group, start_from))

    def drop_consumer_group(self, queue: str, group: str) -> bool:
        return self._run(calls.drop_consumer_group(queue, group))

    def reset_consumer_group(self, queue: str, group: str, to: str | int | datetime) -> None:
        """Move the group's position (seek): ``"earliest"`` delivers every
        stored message again, ``"latest"`` none of them; a message id or an
        aware datetime: its sending transaction and later ones. The group's
        leases end."""
        self._run(calls.reset_consumer_group(queue, group, to))

    def replay_archive(
        self,
        queue: str,
        group: str,
        since: datetime | str | None = None,
        after_id: Id | None = 0,
        max_messages: int | None = 100,
    ) -> Replayed:
        """Send archived messages again, to this group only, as new messages
        (new ids; each keeps its first time of sending, key, headers and
        payload): those enqueued at or after ``since`` (None: any), with ids
        after ``after_id``, by id, at most ``max_messages``. Call again with
        ``after_id=result.last_id`` until ``result.replayed`` is 0."""
        return self._run(calls.replay_archive(queue, group, since, after_id, max_messages))

    def list_consumer_groups(self, queue: str) -> list[ConsumerGroup]:
        return self._run(calls.list_consumer_groups(queue))

    # ---- flow control (administration) ----

    def pause_consumer_group(self, queue: str, group: str = "default") -> bool:
        """Pause a consumer group: its receives return nothing until it is
        resumed (leases already handed out keep working). False when it was
        paused already."""
        return self._run(calls.pause_consumer_group(queue, group))

    def resume_consumer_group(self, queue: str, group: str = "default") -> bool:
        """Resume a paused consumer group; its waiting long polls wake up.
        False when it was not paused."""
        return self._run(calls.resume_consumer_group(queue, group))

    def set_consumer_group_rate(
        self, queue: str, group: str, per_second: float | None, burst: int | None = None
    ) -> None:
        """Limit the group's receives to ``per_second`` messages a second,
        at most ``burst`` at once (default ``max(1, ceil(per_second))``);
        ``per_second=None`` removes the limit."""
        self._run(calls.set_consumer_group_rate(queue, group, per_second, burst))

    def set_fifo_key_limit(self, queue: str, max_in_flight_per_key: int) -> None:
        """FIFO queues: let up to ``max_in_flight_per_key`` messages of one
        ordering key out at once (1, the default: one at a time)."""
        self._run(calls.set_fifo_key_limit(queue, max_in_flight_per_key))

    # ---- sending ----

    def send(
        self,
        queue: str,
        payload: Any,
        *,
        headers: dict[str, Any] | None = None,
        ordering_key: str | None = None,
        idempotency_key: str | None = None,
        delay: Interval | None = None,
        expires_at: datetime | str | None = None,
        priority: int | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Send one message (any JSON value); returns its message id. With
        ``conn``, the send runs on that connection, in its transaction.
        ``priority``: 0 (default) to 9, for a queue with priorities
        (:class:`~deliver.InvalidParameter` outside that range,
        :class:`~deliver.NotCurrent` above 0 to a queue without)."""
        return self._run(
            calls.send(queue, payload, headers, ordering_key, idempotency_key, delay, expires_at, priority), conn
        )

    def send_batch(
        self,
        queue: str,
        payloads: Sequence[Any],
        *,
        headers: Sequence[dict[str, Any] | None] | None = None,
        ordering_keys: Sequence[str | None] | None = None,
        idempotency_keys: Sequence[str | None] | None = None,
        delay: Interval | None = None,
        expires_at: datetime | str | None = None,
        priority: int | None = None,
        conn: Connection | None = None,
    ) -> list[int]:
        """Send messages all or nothing; the optional lists have one element
        per payload. Returns the message ids in order."""
        return self._run(
            calls.send_batch(
                queue, payloads, headers, ordering_keys, idempotency_keys, delay, expires_at, priority
            ),
            conn,
        )

    # ---- receiving ----

    def receive(
        self,
        queue: str,
        max_messages: int = 1,
        *,
        visibility_timeout: Interval | None = None,
        wait: Interval | None = None,
        consumer_group: str | None = None,
        conn: Connection | None = None,
    ) -> list[Message]:
        """Receive up to ``max_messages``, leased for ``visibility_timeout``
        (None: the queue's); ``wait`` makes it a long poll that wakes when a
        send commits."""
        return self._run(calls.receive(queue, max_messages, visibility_timeout, wait, consumer_group), conn)

    def ack(self, queue: str, delivery_id: Id, *, conn: Connection | None = None) -> bool:
        """Finish a message (when the transaction commits). Raises
        :class:`~deliver.NotCurrent` for a delivery that is not current."""
        return self._run(calls.ack(queue, delivery_id), conn)

    def ack_batch(self, queue: str, delivery_ids: Iterable[Id], *, conn: Connection | None = None) -> int:
        """Ack all or nothing; returns how many were acked."""
        return self._run(calls.ack_batch(queue, delivery_ids), conn)

    def nack(
        self,
        queue: str,
        delivery_id: Id,
        *,
        error: str | None = None,
        retry_after: Interval | None = None,
        dead_letter: bool = False,
        conn: Connection | None = None,
    ) -> bool:
        """Give a message back: visible again after ``retry_after`` (None:
        the queue's backoff); after its last attempt it goes to the dead
        letters with ``error``. Takes effect at once. With ``dead_letter``
        it goes to the dead letters now (reason ``rejected``), whatever
        attempts it has left, with the transaction."""
        return self._run(calls.nack(queue, delivery_id, error, retry_after, dead_letter), conn)

    def extend_lease(
        self, queue: str, delivery_id: Id, visibility_timeout: Interval, *, conn: Connection | None = None
    ) -> datetime:
        """Make the lease run out ``visibility_timeout`` from now; returns the
        new expiry."""
        return self._run(calls.extend_lease(queue, delivery_id, visibility_timeout), conn)

    def exactly_once(
        self, message: Message, handler: Callable[[Connection, Message], T], *, conn: Connection | None = None
    ) -> T:
        """Run ``handler(conn, message)`` and ack the message in one
        transaction: its effects and the ack commit together or not at all.
        An ack that is not current (the lease ran out and the message went to
        another consumer) raises :class:`~deliver.NotCurrent` and rolls the
        effects back."""
        c = self._conn if conn is None else conn
        if message.delivery_id is None:
            raise DeliverError("an at-most-once message has no delivery to ack")
        with _transaction(c):
            result = handler(c, message)
            self._run(calls.ack(message.queue, message.delivery_id), c)
        return result

    # ---- dead letters, archive ----

    def dead_letters(
        self, queue: str, *, consumer_group: str | None = None, max_messages: int | None = None
    ) -> list[DeadLetter]:
        """The oldest dead letters of one group, or of every group (None)."""
        return self._run(calls.dead_letters(queue, consumer_group, max_messages))

    def redrive(
        self,
        queue: str,
        *,
        message_ids: Iterable[Id] | None = None,
        consumer_group: str | None = None,
        to_queue: str | None = None,
    ) -> int:
        """Send dead letters (those named, or all) back as new messages, or
        with ``to_queue`` to that queue (the caller needs the right to send
        to it); returns how many."""
        return self._run(calls.redrive(queue, message_ids, consumer_group, to_queue))

    def delete_message(self, queue: str, message_id: Id) -> bool:
        """Delete a message that some consumer group has not finished: no
        group gets it (again), a lease on it ends. False when no group had
        it unfinished."""
        return self._run(calls.delete_message(queue, message_id))

    def peek(
        self, queue: str, max_messages: int | None = 10, *, consumer_group: str | None = "default"
    ) -> list[PeekedMessage]:
        """The next messages (up to ``max_messages``) a receive of the
        consumer group would hand out, without leasing them: first those due
        for redelivery (``redelivery`` true), then those the group has not
        been handed yet. Nothing of the group changes. Needs the receive
        right; None takes the server's default (10, ``"default"``)."""
        return self._run(calls.peek(queue, max_messages, consumer_group))

    def delete_dead_letters(
        self, queue: str, message_ids: Iterable[Id], *, consumer_group: str | None = None
    ) -> int:
        """Delete the dead letters of these messages for good, of one
        consumer group or of every group (None); returns how many (an id
        that is no dead letter counts nothing). Needs EXECUTE on
        ``deliver.delete_dead_letters`` and the queue's receive right."""
        return self._run(calls.delete_dead_letters(queue, message_ids, consumer_group))

    def archived(
        self, queue: str, *, max_messages: int | None = None, after_id: int | None = None
    ) -> list[ArchivedMessage]:
        return self._run(calls.archived(queue, max_messages, after_id))

    # ---- metrics, alerts ----

    def metrics(self, queue: str | None = None) -> list[QueueMetrics]:
        """One row per consumer group of a queue, or of every queue (None)."""
        return self._run(calls.metrics(queue))

    def set_alert(self, queue: str, metric: str, threshold: float | int | Decimal | None) -> None:
        """Set the threshold of ``depth``, ``oldest_age`` or
        ``dead_letters``; None removes the alert."""
        self._run(calls.set_alert(queue, metric, threshold))

    def list_alerts(self, queue: str | None = None) -> list[Alert]:
        return self._run(calls.list_alerts(queue))

    # ---- privileges ----

    def grant_queue(self, queue: str, role: str, privilege: Privilege | None = None) -> None:
        """Let ``role`` send, receive, or both (``all``, the default)."""
        self._run(calls.grant_queue(queue, role, privilege))

    def revoke_queue(self, queue: str, role: str, privilege: Privilege | None = None) -> None:
        self._run(calls.revoke_queue(queue, role, privilege))

    def list_grants(self, queue: str | None = None) -> list[Grant]:
        return self._run(calls.list_grants(queue))

    def has_queue_privilege(self, queue: str, privilege: Privilege) -> bool:
        """Whether the current user may ``send``, ``receive`` or do ``all``."""
        return self._run(calls.has_queue_privilege(queue, privilege))

    # ---- the server, maintenance, push subscriptions ----

    def lease_slots(self) -> LeaseSlots:
        """The server's lease slots and how they are shared."""
        return self._run(calls.lease_slots())

    def maintain(self, queue: str | None = None) -> list[MaintainResult]:
        """One maintenance pass over a queue, or every queue (None): what
        the maintenance worker runs; call it about once a second where no
        worker serves the database."""
        return self._run(calls.maintain(queue))

    def create_push_subscription(
        self, queue: str, subscription: str, *, consumer_group: str | None = None
    ) -> str:
        """Create a push subscription (a logical replication slot streaming
        the queue's messages at commit); returns its starting LSN as text."""
        return self._run(calls.create_push_subscription(queue, subscription, consumer_group))

    def drop_push_subscription(self, subscription: str) -> bool:
        return self._run(calls.drop_push_subscription(subscription))

    def list_push_subscriptions(self) -> list[PushSubscription]:
        return self._run(calls.list_push_subscriptions())

    def push_metrics(self) -> list[PushMetrics]:
        """Each subscription's lag and the WAL its slot retains, in bytes."""
        return self._run(calls.push_metrics())


    # ---- topic routing ----

    def publish(
        self,
        routing_key: str,
        payload: Any,
        *,
        headers: dict[str, Any] | None = None,
        ordering_key: str | None = None,
        idempotency_key: str | None = None,
        delay: Interval | None = None,
        mandatory: bool | None = None,
        expires_at: datetime | str | None = None,
        priority: int | None = None,
        conn: Connection | None = None,
    ) -> list[Published]:
        """Send the message once to every queue with a binding whose pattern
        matches ``routing_key``, in one transaction (``conn``'s, when given);
        returns the queues and the message's id in each ([] when nothing
        matched; with ``mandatory``, :class:`QueueNotFound` instead).
        ``expires_at`` is every copy's deadline, as in :meth:`send`."""
        return self._run(
            calls.publish(
                routing_key, payload, headers, ordering_key, idempotency_key, delay, mandatory, expires_at, priority
            ),
            conn,
        )

    def bind(self, pattern: str, queue: str) -> bool:
        """Bind ``queue`` to ``pattern`` (``*`` one word, ``#`` zero or more);
        False when it was bound to it already."""
        return self._run(calls.bind(pattern, queue))

    def unbind(self, pattern: str, queue: str) -> bool:
        """Remove the binding; False when there was none."""
        return self._run(calls.unbind(pattern, queue))

    def list_bindings(self, queue: str | None = None) -> list[Binding]:
        return self._run(calls.list_bindings(queue))

    def test_routing(self, routing_key: str) -> list[RoutingMatch]:
        """The bindings a publish with ``routing_key`` would match (nothing is sent)."""
        return self._run(calls.test_routing(routing_key))


@contextmanager
def _transaction(conn: Connection) -> Iterator[None]:
    """psycopg's transaction block, with the errors of its BEGIN, COMMIT and
    ROLLBACK as deliver's errors (what the block raises passes unchanged)."""
    try:
        tx = conn.transaction()
        tx.__enter__()
    except psycopg.Error as e:
        raise translate(e) from e
    try:
        yield
    except BaseException as exc:
        try:
            swallowed = tx.__exit__(type(exc), exc, exc.__traceback__)
        except psycopg.Error as e:
            raise translate(e) from exc
        if not swallowed:
            raise
        return
    try:
        tx.__exit__(None, None, None)
    except psycopg.Error as e:
        raise translate(e) from e
