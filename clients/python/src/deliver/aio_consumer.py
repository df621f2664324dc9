"""Consumers on asyncio tasks: the same behaviour as
:class:`~deliver.Consumer`, with ``async`` handlers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import deque
from typing import Any, Awaitable, Callable

import psycopg

from ._consumer_core import ConsumerStats, Held, LeaseBook, error_text, is_fatal, log, seconds
from .aio import AsyncClient
from .errors import DeliverError, NotCurrent
from .types import Id, Interval, Message

__all__ = ["AsyncConsumer", "AsyncExactlyOnceConsumer"]

AsyncConnection = psycopg.AsyncConnection[Any]


class AsyncConsumer:
    """Receive from ``queue`` and await ``handler(message)`` in up to
    ``concurrency`` tasks; leases extended while a handler runs, ack on
    return, nack with the exception's text when it raises, and a graceful
    stop on ``stop()`` or SIGTERM/SIGINT: receiving stops, what is held but
    not started is released (nack with ``retry_after`` 0), running handlers
    get ``grace_period`` seconds, and those still running then are
    cancelled and released. The arguments are those of
    :class:`~deliver.Consumer`."""

    def __init__(
        self,
        conninfo: str,
        queue: str,
        handler: Callable[[Message], Awaitable[Any]],
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
        self.conninfo = conninfo
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._cond: asyncio.Condition | None = None
        self._pending: deque[Held] = deque()
        self._book = LeaseBook(self.visibility_timeout or 30.0)
        self._control: AsyncClient | None = None
        self._control_lock: asyncio.Lock | None = None
        self._receiver_client: AsyncClient | None = None
        self._receiving = False
        self._keeper_stop: asyncio.Event | None = None

    # ---- public ----

    def stop(self) -> None:
        """Ask the consumer to stop (from the loop, another thread or a
        signal handler)."""
        self._stop_requested = True
        if self._loop is not None and self._stop_event is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:  # the loop is closed
                pass

    async def run(self, *, handle_signals: bool = True) -> ConsumerStats:
        """Consume until stopped; returns the statistics, or raises the
        error that made the queue impossible to consume."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._cond = asyncio.Condition()
        self._control_lock = asyncio.Lock()
        self._keeper_stop = asyncio.Event()
        if self._stop_requested:
            self._stop_event.set()
        installed: list[signal.Signals] = []
        if handle_signals:
            for s in (signal.SIGTERM, signal.SIGINT):
                try:
                    self._loop.add_signal_handler(s, self.stop)
                    installed.append(s)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            await self._open()
            keeper = asyncio.create_task(self._keeper())
            workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]
            receiver = asyncio.create_task(self._receiver())
            await self._stop_event.wait()
            await self._shutdown(receiver, workers, keeper)
        finally:
            for s in installed:
                self._loop.remove_signal_handler(s)
            await self._close()
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    # ---- the parts ----

    async def _connect(self) -> AsyncClient:
        return await AsyncClient.connect(self.conninfo, **self.connect_kwargs)

    async def _open(self) -> None:
        self._control = await self._connect()
        if self.visibility_timeout is None:
            info = await self._control.get_queue(self.queue)
            self.visibility_timeout = info.visibility_timeout.total_seconds()
        self._book = LeaseBook(self.visibility_timeout)
        self._receiver_client = await self._connect()

    async def _close(self) -> None:
        for c in (self._receiver_client, self._control):
            if c is not None:
                with contextlib.suppress(Exception):
                    await c.close()

    async def _control_call(self, fn: Callable[[AsyncClient], Awaitable[Any]]) -> Any:
        assert self._control_lock is not None
        async with self._control_lock:
            c = self._control
            if c is None or c.connection.closed or c.connection.broken:
                if c is not None:
                    with contextlib.suppress(Exception):
                        await c.close()
                c = self._control = await self._connect()
        return await fn(c)

    async def _settle(self, h: Held, what: str, fn: Callable[[AsyncClient], Awaitable[Any]]) -> bool:
        try:
            await self._control_call(fn)
            return True
        except NotCurrent as e:
            self.stats.count("lost")
            h.lost = True
            log.warning("%s of message %s on %s refused: %s", what, h.message.message_id, self.queue, e.message)
        except DeliverError as e:
            self.stats.note_error(f"{what}: {e.message}")
            log.error("%s of message %s on %s failed: %s", what, h.message.message_id, self.queue, e)
        return False

    async def _receiver(self) -> None:
        assert self._cond is not None and self.visibility_timeout is not None
        backoff = 0.1
        capacity = self.concurrency + self.prefetch
        while True:
            async with self._cond:
                while not self._stop_requested and len(self._book) >= capacity:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._cond.wait(), 0.1)
                if self._stop_requested:
                    return
                n = capacity - len(self._book)
                self._receiving = True
            before = time.monotonic()
            try:
                rc = self._receiver_client
                if rc is None or rc.connection.closed or rc.connection.broken:
                    rc = self._receiver_client = await self._connect()
                msgs = await rc.receive(
                    self.queue,
                    n,
                    visibility_timeout=self.visibility_timeout,
                    wait=self.wait,
                    consumer_group=self.consumer_group,
                )
            except DeliverError as e:
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
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            start = self._book.lease_start(before, time.monotonic())
            async with self._cond:
                self._receiving = False
                for m in msgs:
                    self.stats.count("received")
                    self._pending.append(self._book.add(m, start))
                self._cond.notify_all()

    async def _sleep(self, s: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), s)

    async def _worker(self) -> None:
        assert self._cond is not None
        ctx = self._worker_context()
        try:
            while True:
                async with self._cond:
                    while not self._pending and not self._stopping:
                        await self._cond.wait()
                    if self._stopping:
                        return
                    h = self._pending.popleft()
                    h.started = True
                try:
                    await self._process(h, ctx)
                finally:
                    self._book.remove(h)
                    async with self._cond:
                        self._cond.notify_all()
        finally:
            await self._close_worker_context(ctx)

    async def _keeper(self) -> None:
        assert self._keeper_stop is not None and self.visibility_timeout is not None
        vt = self.visibility_timeout
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._keeper_stop.wait(), self._book.tick())
            if self._keeper_stop.is_set():
                return
            for h in self._book.due(time.monotonic()):
                if h.message.delivery_id is None:
                    continue
                did: Id = h.message.delivery_id
                before = time.monotonic()
                try:
                    await self._control_call(lambda c: c.extend_lease(self.queue, did, vt))
                except NotCurrent as e:
                    if not h.done:
                        h.lost = True
                        self.stats.count("lost")
                        log.warning("lease of message %s on %s lost: %s", h.message.message_id, self.queue, e.message)
                    continue
                except DeliverError as e:
                    self.stats.note_error(f"extend: {e.message}")
                    log.warning("extend of message %s on %s failed: %s", h.message.message_id, self.queue, e)
                    continue
                h.deadline = before + vt
                self.stats.count("extended")

    async def _release(self, h: Held, error: str | None) -> bool:
        h.released = True
        if h.message.delivery_id is None:
            return False
        did: Id = h.message.delivery_id
        return await self._settle(h, "release", lambda c: c.nack(self.queue, did, error=error, retry_after=0))

    async def _shutdown(
        self, receiver: asyncio.Task[None], workers: list[asyncio.Task[None]], keeper: asyncio.Task[None]
    ) -> None:
        assert self._cond is not None and self._keeper_stop is not None
        deadline = time.monotonic() + self.grace_period
        async with self._cond:
            self._cond.notify_all()
        while not receiver.done():
            rc = self._receiver_client
            if self._receiving and rc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(rc.connection.cancel)
            await asyncio.wait({receiver}, timeout=0.1)
        async with self._cond:
            self._stopping = True
            pending = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        for h in pending:
            if await self._release(h, None):
                self.stats.count("released")
            self._book.remove(h)
        _, still = await asyncio.wait(workers, timeout=max(0.0, deadline - time.monotonic()))
        running = [h for h in self._book.held.values() if h.started and not h.done]
        for h in running:
            log.warning(
                "handler of message %s on %s still running after the grace period: cancelled and released",
                h.message.message_id,
                self.queue,
            )
            if await self._release(h, "consumer stopped before the handler finished"):
                self.stats.count("abandoned")
        for t in still:
            t.cancel()
        for t in still:
            with contextlib.suppress(BaseException):
                await t
        self._keeper_stop.set()
        with contextlib.suppress(BaseException):
            await keeper

    # ---- what a worker does with a message ----

    def _worker_context(self) -> Any:
        return None

    async def _close_worker_context(self, ctx: Any) -> None:
        pass

    async def _process(self, h: Held, ctx: Any) -> None:
        m = h.message
        try:
            await self.handler(m)
        except Exception as exc:
            self.stats.count("failed")
            if m.delivery_id is None or h.released:
                log.error("handler failed on message %s of %s: %s", m.message_id, self.queue, exc)
                return
            did = m.delivery_id
            text = error_text(exc)
            log.info("handler failed on message %s of %s: %s", m.message_id, self.queue, text)
            if await self._settle(
                h, "nack", lambda c: c.nack(self.queue, did, error=text, retry_after=self.retry_after)
            ):
                self.stats.count("nacked")
            return
        self.stats.count("handled")
        if m.delivery_id is None or h.released:
            return
        did = m.delivery_id
        if await self._settle(h, "ack", lambda c: c.ack(self.queue, did)):
            self.stats.count("acked")


class AsyncExactlyOnceConsumer(AsyncConsumer):
    """:class:`~deliver.ExactlyOnceConsumer` for asyncio: ``await
    handler(conn, message)`` runs in a transaction on the task's own
    connection, with the ack in the same transaction."""

    def __init__(
        self,
        conninfo: str,
        queue: str,
        handler: Callable[[AsyncConnection, Message], Awaitable[Any]],
        **kwargs: Any,
    ) -> None:
        async def unused(m: Message) -> None:
            return None

        super().__init__(conninfo, queue, unused, **kwargs)
        self.tx_handler = handler

    def _worker_context(self) -> dict[str, AsyncClient | None]:
        return {"client": None}

    async def _close_worker_context(self, ctx: dict[str, AsyncClient | None]) -> None:
        c = ctx.get("client")
        if c is not None:
            with contextlib.suppress(Exception):
                await c.close()

    async def _process(self, h: Held, ctx: dict[str, AsyncClient | None]) -> None:
        m = h.message
        client = ctx.get("client")
        try:
            if client is None or client.connection.closed or client.connection.broken:
                client = ctx["client"] = await self._connect()
            await client.exactly_once(m, self.tx_handler)
        except NotCurrent as e:
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
            if await self._settle(
                h, "nack", lambda c: c.nack(self.queue, did, error=text, retry_after=self.retry_after)
            ):
                self.stats.count("nacked")
            return
        self.stats.count("handled")
        self.stats.count("acked")
