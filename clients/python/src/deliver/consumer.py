"""Consumers on threads: a handler run with bounded concurrency, leases
extended while it runs, ack on success, nack with the error on failure, and a
graceful stop (SIGTERM, SIGINT or ``stop()``)."""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from types import FrameType
from typing import Any, Callable, Union

import psycopg

from ._consumer_core import ConsumerStats, Held, LeaseBook, error_text, is_fatal, log, seconds
from .client import Client
from .errors import DeliverError, NotCurrent
from .http import HttpClient
from .types import Id, Interval, Message

__all__ = ["Consumer", "ExactlyOnceConsumer", "ConsumerStats"]

Connection = psycopg.Connection[Any]
#: what a consumer calls deliver with: a SQL client or the HTTP client
AnyClient = Union[Client, HttpClient]


class Consumer:
    """Receive from ``queue`` and run ``handler(message)`` on up to
    ``concurrency`` threads.

    ``source`` is a libpq connection string (the consumer opens its own
    connections: one to receive, one for acks, nacks and extensions) or an
    :class:`~deliver.HttpClient` (deliver over the gateway).

    - A handler that returns acks its message; one that raises nacks it with
      the exception's text as the error (visible again after the queue's
      backoff, or ``retry_after``; dead-lettered after ``max_attempts``).
    - While a handler runs, its lease is extended (``extend_lease``) each
      time less than half of the visibility timeout is left, so a handler
      slower than the timeout keeps its message.
    - ``run()`` blocks until ``stop()`` is called, or SIGTERM/SIGINT arrive
      (when run in the main thread): it stops receiving, releases what it
      holds but did not start (nack with ``retry_after`` 0), lets running
      handlers finish within ``grace_period`` seconds, and releases those
      that do not. It returns the :class:`ConsumerStats`.

    ``visibility_timeout`` None takes the queue's; ``wait`` is the long
    poll of each receive; ``prefetch`` messages may be held beyond the
    running ones (they wait for a free thread, their leases extended).
    Messages of an at-most-once queue are handled and never acked.

    Over SQL, ``stop()`` cancels a long poll in progress; over HTTP it waits
    for it to return (at most ``wait``) and releases what it brought.
    """

    def __init__(
        self,
        source: str | HttpClient,
        queue: str,
        handler: Callable[[Message], Any],
        *,
        consumer_group: str = "default",
        concurrency: int = 4,
        prefetch: int = 0,
        visibility_timeout: Interval | None = None,
        wait: Interval = 10.0,
        retry_after: Interval | None = None,
        grace_period: float = 30.0,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if prefetch < 0:
            raise ValueError("prefetch must not be negative")
        if not isinstance(source, (str, HttpClient)):
            raise TypeError("source must be a connection string or an HttpClient")
        self.source = source
        self.queue = queue
        self.handler = handler
        self.consumer_group = consumer_group
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.visibility_timeout = None if visibility_timeout is None else seconds(visibility_timeout)
        self.wait = seconds(wait)
        self.retry_after = retry_after
        self.grace_period = grace_period
        self.connect_kwargs = dict(connect_kwargs or {})
        self.stats = ConsumerStats()
        self._stop_requested = False
        self._stopping = False
        self._fatal: DeliverError | None = None
        self._cond = threading.Condition()
        self._pending: deque[Held] = deque()
        self._book = LeaseBook(self.visibility_timeout or 30.0)
        self._control: AnyClient | None = None
        self._control_lock = threading.Lock()
        self._receiver_client: AnyClient | None = None
        self._receiving = False
        self._thread: threading.Thread | None = None
        self._keeper_stop = threading.Event()

    # ---- public ----

    def stop(self) -> None:
        """Ask the consumer to stop (from any thread or a signal handler)."""
        self._stop_requested = True

    def start(self) -> threading.Thread:
        """Run the consumer in a background thread (no signal handlers);
        ``stop()`` then ``join()`` it."""
        t = threading.Thread(target=self._run_in_thread, name=f"deliver-consumer-{self.queue}", daemon=True)
        self._thread = t
        t.start()
        return t

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, *, handle_signals: bool = True) -> ConsumerStats:
        """Consume until stopped; returns the statistics. Raises the error
        that stopped it when the queue cannot be consumed (it was dropped,
        the role may not receive)."""
        old: dict[signal.Signals, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                old[s] = signal.signal(s, self._on_signal)
        try:
            self._open()
            threads = [threading.Thread(target=self._keeper, name="deliver-lease-keeper", daemon=True)]
            threads += [
                threading.Thread(target=self._worker, name=f"deliver-worker-{i}", daemon=True)
                for i in range(self.concurrency)
            ]
            receiver = threading.Thread(target=self._receiver, name="deliver-receiver", daemon=True)
            for t in threads:
                t.start()
            receiver.start()
            while not self._stop_requested:
                time.sleep(0.05)
            self._shutdown(receiver, threads[1:], threads[0])
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self._close()
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    # ---- the parts ----

    def _run_in_thread(self) -> None:
        try:
            self.run(handle_signals=False)
        except DeliverError as e:
            log.error("consumer of %s stopped: %s", self.queue, e)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    def _connect(self) -> AnyClient:
        if isinstance(self.source, HttpClient):
            return self.source
        return Client.connect(self.source, **self.connect_kwargs)

    @staticmethod
    def _usable(c: AnyClient | None) -> bool:
        """Whether a client can take calls (a SQL connection that broke is
        opened anew)."""
        if c is None:
            return False
        if isinstance(c, HttpClient):
            return True
        return not c.connection.closed and not c.connection.broken

    def _open(self) -> None:
        self._control = self._connect()
        if self.visibility_timeout is None:
            self.visibility_timeout = self._control.get_queue(self.queue).visibility_timeout.total_seconds()
        self._book = LeaseBook(self.visibility_timeout)
        self._receiver_client = self._connect()
        self._open_workers()

    def _close(self) -> None:
        for c in (self._receiver_client, self._control):
            if isinstance(c, Client):
                try:
                    c.close()
                except Exception:  # closing what is broken
                    pass

    def _control_call(self, what: str, fn: Callable[[AnyClient], Any]) -> Any:
        """Run fn on the control connection (acks, nacks, extends), opened
        anew when it broke; errors are raised."""
        with self._control_lock:
            if not self._usable(self._control):
                try:
                    if isinstance(self._control, Client):
                        self._control.close()
                except Exception:
                    pass
                self._control = self._connect()
            control = self._control
        assert control is not None
        return fn(control)

    def _settle(self, h: Held, what: str, fn: Callable[[AnyClient], Any]) -> bool:
        """Ack or nack a delivery; False when it was no longer current."""
        try:
            self._control_call(what, fn)
            return True
        except NotCurrent as e:
            self.stats.count("lost")
            h.lost = True
            log.warning("%s of message %s on %s refused: %s", what, h.message.message_id, self.queue, e.message)
        except DeliverError as e:
            self.stats.note_error(f"{what}: {e.message}")
            log.error("%s of message %s on %s failed: %s", what, h.message.message_id, self.queue, e)
        return False

    def _receiver(self) -> None:
        assert self.visibility_timeout is not None
        backoff = 0.1
        capacity = self.concurrency + self.prefetch
        while True:
            with self._cond:
                while not self._stop_requested and len(self._book) >= capacity:
                    self._cond.wait(0.1)
                if self._stop_requested:
                    return
                n = capacity - len(self._book)
                self._receiving = True
            before = time.monotonic()
            try:
                if not self._usable(self._receiver_client):
                    self._receiver_client = self._connect()
                assert self._receiver_client is not None
                msgs = self._receiver_client.receive(
                    self.queue,
                    n,
                    visibility_timeout=self.visibility_timeout,
                    wait=self.wait,
                    consumer_group=self.consumer_group,
                )
            except DeliverError as e:
                with self._cond:
                    self._receiving = False
                if self._stop_requested:
                    return
                self.stats.count("receive_errors")
                self.stats.note_error(f"receive: {e.message}")
                if is_fatal(e):
                    log.error("consumer of %s: %s", self.queue, e)
                    self._fatal = e
                    self.stop()
                    return
                log.warning("receive from %s failed, retrying in %.1fs: %s", self.queue, backoff, e)
                self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            after = time.monotonic()
            start = self._book.lease_start(before, after)
            with self._cond:
                self._receiving = False
                for m in msgs:
                    self.stats.count("received")
                    self._pending.append(self._book.add(m, start))
                self._cond.notify_all()

    def _sleep(self, s: float) -> None:
        end = time.monotonic() + s
        while not self._stop_requested and time.monotonic() < end:
            time.sleep(min(0.05, s))

    def _worker(self) -> None:
        ctx = self._worker_context()
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._stopping:
                        self._cond.wait(0.1)
                    if self._stopping:
                        return
                    h = self._pending.popleft()
                    h.started = True
                try:
                    self._process(h, ctx)
                finally:
                    with self._cond:
                        self._book.remove(h)
                        self._cond.notify_all()
        finally:
            self._close_worker_context(ctx)

    def _keeper(self) -> None:
        assert self.visibility_timeout is not None
        vt = self.visibility_timeout
        while not self._keeper_stop.wait(self._book.tick()):
            with self._cond:
                due = self._book.due(time.monotonic())
            for h in due:
                if h.message.delivery_id is None:
                    continue
                did: Id = h.message.delivery_id
                before = time.monotonic()
                try:
                    self._control_call("extend", lambda c: c.extend_lease(self.queue, did, vt))
                except NotCurrent as e:
                    if not h.done:
                        h.lost = True
                        self.stats.count("lost")
                        log.warning(
                            "lease of message %s on %s lost: %s", h.message.message_id, self.queue, e.message
                        )
                    continue
                except DeliverError as e:
                    self.stats.note_error(f"extend: {e.message}")
                    log.warning("extend of message %s on %s failed: %s", h.message.message_id, self.queue, e)
                    continue
                h.deadline = before + vt
                self.stats.count("extended")

    def _release(self, h: Held, error: str | None) -> bool:
        h.released = True
        if h.message.delivery_id is None:
            return False
        did: Id = h.message.delivery_id
        return self._settle(h, "release", lambda c: c.nack(self.queue, did, error=error, retry_after=0))

    def _shutdown(self, receiver: threading.Thread, workers: list[threading.Thread], keeper: threading.Thread) -> None:
        deadline = time.monotonic() + self.grace_period
        # stop receiving: cancel a long poll in progress (it rolls back)
        while receiver.is_alive():
            with self._cond:
                receiving = self._receiving
            rc = self._receiver_client
            if receiving and isinstance(rc, Client):
                try:
                    rc.connection.cancel()
                except Exception:
                    pass
            receiver.join(0.1)
        # no new starts; give back what was held but not started
        with self._cond:
            self._stopping = True
            pending = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        for h in pending:
            if self._release(h, None):
                self.stats.count("released")
            with self._cond:
                self._book.remove(h)
        # let running handlers finish within the grace period
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            running = [h for h in self._book.held.values() if h.started and not h.done]
        for h in running:
            log.warning(
                "handler of message %s on %s still running after the grace period: released",
                h.message.message_id,
                self.queue,
            )
            if self._release(h, "consumer stopped before the handler finished"):
                self.stats.count("abandoned")
        self._keeper_stop.set()
        keeper.join(5)

    # ---- what a worker does with a message (ExactlyOnceConsumer changes it) ----

    def _open_workers(self) -> None:
        pass

    def _worker_context(self) -> Any:
        return None

    def _close_worker_context(self, ctx: Any) -> None:
        pass

    def _process(self, h: Held, ctx: Any) -> None:
        m = h.message
        try:
            self.handler(m)
        except Exception as exc:
            self.stats.count("failed")
            if m.delivery_id is None or h.released:
                log.error("handler failed on message %s of %s: %s", m.message_id, self.queue, exc)
                return
            did = m.delivery_id
            text = error_text(exc)
            log.info("handler failed on message %s of %s: %s", m.message_id, self.queue, text)
            if self._settle(h, "nack", lambda c: c.nack(self.queue, did, error=text, retry_after=self.retry_after)):
                self.stats.count("nacked")
            return
        self.stats.count("handled")
        if m.delivery_id is None or h.released:
            return
        did = m.delivery_id
        if self._settle(h, "ack", lambda c: c.ack(self.queue, did)):
            self.stats.count("acked")


class ExactlyOnceConsumer(Consumer):
    """A consumer whose ``handler(conn, message)`` runs in a transaction on
    its thread's own connection, with the message's ack in the same
    transaction: the handler's effects (what it writes through ``conn``) and
    the ack commit together or not at all.

    A handler that raises rolls its effects back and the message is nacked
    with the error; a lease that ran out meanwhile (the message went to
    another consumer) makes the ack fail, which rolls the effects back too.
    So with consumers killed at any point, each message's effects commit
    exactly once.
    """

    def __init__(
        self,
        conninfo: str,
        queue: str,
        handler: Callable[[Connection, Message], Any],
        **kwargs: Any,
    ) -> None:
        if not isinstance(conninfo, str):
            raise TypeError("an exactly-once consumer needs a connection string (its handler runs over SQL)")
        super().__init__(conninfo, queue, lambda m: None, **kwargs)
        self.tx_handler = handler

    def _worker_context(self) -> dict[str, Client | None]:
        return {"client": None}

    def _connect_sql(self) -> Client:
        assert isinstance(self.source, str)
        return Client.connect(self.source, **self.connect_kwargs)

    def _close_worker_context(self, ctx: dict[str, Client | None]) -> None:
        c = ctx.get("client")
        if c is not None:
            try:
                c.close()
            except Exception:
                pass

    def _process(self, h: Held, ctx: dict[str, Client | None]) -> None:
        m = h.message
        client = ctx.get("client")
        try:
            if client is None or client.connection.closed or client.connection.broken:
                client = ctx["client"] = self._connect_sql()
            client.exactly_once(m, self.tx_handler)
        except NotCurrent as e:
            # the ack was refused: the effects rolled back with it
            self.stats.count("lost")
            log.warning("ack of message %s on %s refused, effects rolled back: %s", m.message_id, self.queue, e.message)
            return
        except Exception as exc:
            self.stats.count("failed")
            if m.delivery_id is None or h.released:
                return
            did = m.delivery_id
            text = error_text(exc)
            log.info("handler failed on message %s of %s: %s", m.message_id, self.queue, text)
            if self._settle(h, "nack", lambda c: c.nack(self.queue, did, error=text, retry_after=self.retry_after)):
                self.stats.count("nacked")
            return
        self.stats.count("handled")
        self.stats.count("acked")
