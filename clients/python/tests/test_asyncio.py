"""The asyncio API: AsyncClient (every call, the outbox in a transaction,
exactly-once), AsyncConsumer (bounded concurrency, a throwing handler
nacked to the dead letters, a lease extended past the visibility timeout,
stop and its grace period, SIGTERM of a process) and
AsyncExactlyOnceConsumer. Each test runs its own event loop."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Awaitable, Callable, TypeVar

import psycopg
import pytest
from conftest import DSN, ROLE, Child, drop_queue_retrying, put_in_archive, sql, unique

import deliver

T = TypeVar("T")
AConn = psycopg.AsyncConnection[Any]


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        v = check()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.05)


async def drained(c: deliver.AsyncClient, q: str) -> bool:
    return all(m.depth == 0 and m.in_flight == 0 for m in await c.metrics(q))


def test_queues_groups_and_settings() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(
                q, guarantee="at_least_once", visibility_timeout=12.5, max_attempts=7, fifo=True,
                dedup_window="2 hours", retry_base=0.25, retry_max=timedelta(seconds=90),
            )
            info = await c.get_queue(q)
            assert (info.visibility_timeout, info.max_attempts, info.fifo, info.dedup_window) == (
                timedelta(seconds=12.5), 7, True, timedelta(hours=2))
            assert (info.retry_base, info.retry_max, info.consumer_groups) == (
                timedelta(seconds=0.25), timedelta(seconds=90), ["default"])
            assert any(x.queue_name == q for x in await c.list_queues())
            await c.alter_queue(q, max_attempts=3, archive_retention="1 day")
            info = await c.get_queue(q)
            assert (info.max_attempts, info.archive_retention, info.visibility_timeout) == (
                3, timedelta(days=1), timedelta(seconds=12.5))
            await c.create_consumer_group(q, "late")
            await c.create_consumer_group(q, "all", start_from="earliest")
            groups = await c.list_consumer_groups(q)
            assert [g.consumer_group for g in groups] == ["default", "late", "all"]
            assert isinstance(groups[0].created_at, datetime)
            assert await c.drop_consumer_group(q, "late") is True
            with pytest.raises(deliver.AlreadyExists):
                await c.create_consumer_group(q, "all")
            assert await c.pause_consumer_group(q, "all") is True
            assert (await c.list_consumer_groups(q))[1].paused is True
            assert await c.resume_consumer_group(q, "all") is True
            await c.set_consumer_group_rate(q, "all", 0.5)
            assert [(g.rate_per_second, g.rate_burst) for g in await c.list_consumer_groups(q)] == [
                (None, None), (0.5, 1)]
            await c.send_batch(q, [1, 2])
            await c.send(q, 3, delay=3600)
            assert await c.purge_queue(q) == 3
            assert await c.drop_queue(q) is True
            with pytest.raises(deliver.QueueNotFound) as e:
                await c.get_queue(q)
            assert e.value.sqlstate == "42704"

    run(main())


def test_send_receive_ack_nack_extend() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q, retry_base=0, max_attempts=2)
            mid = await c.send(q, {"order": 1}, headers={"trace": "t"}, ordering_key="k", idempotency_key="i1")
            assert await c.send(q, {"order": "again"}, idempotency_key="i1") == mid
            ids = await c.send_batch(q, ["b1", "b2"], headers=[{"h": 1}, None], ordering_keys=[None, "k2"],
                                     idempotency_keys=["b1", None])
            assert len(ids) == 2 and all(type(i) is int for i in ids)
            got = await c.receive(q, 10, visibility_timeout=60)
            assert [(m.payload, m.headers, m.ordering_key) for m in got] == [
                ({"order": 1}, {"trace": "t"}, "k"), ("b1", {"h": 1}, None), ("b2", None, "k2")]
            m = got[0]
            assert type(m.delivery_id) is int and m.delivery_id > 2**53 and m.attempt == 1
            assert m.lease_expires_at is not None and m.lease_expires_at - datetime.now(m.lease_expires_at.tzinfo) > timedelta(seconds=50)
            assert await c.ack(q, m.delivery_id) is True
            assert await c.ack_batch(q, [got[1].delivery_id or 0]) == 1
            exp = await c.extend_lease(q, got[2].delivery_id or 0, 120)
            assert exp - datetime.now(exp.tzinfo) > timedelta(seconds=100)
            assert await c.nack(q, got[2].delivery_id or 0, error="later", retry_after=0) is True
            [again] = await c.receive(q)
            assert (again.payload, again.attempt) == ("b2", 2)
            with pytest.raises(deliver.NotCurrent):
                await c.ack(q, got[2].delivery_id or 0)
            await c.nack(q, again.delivery_id or 0, error="no more")
            assert await c.receive(q) == []  # a receive moves the message out of attempts to the dead letters
            [dead] = await c.dead_letters(q, consumer_group="default", max_messages=5)
            assert (dead.payload, dead.reason, dead.last_error, dead.attempts) == ("b2", "nacked", "no more", 2)
            [mt] = await c.metrics(q)
            assert (mt.dead_letters, mt.dead_total) == (1, 1)
            assert await c.redrive(q, message_ids=[dead.message_id]) == 1
            [back] = await c.receive(q)
            assert back.payload == "b2" and back.message_id != dead.message_id
            await c.ack(q, back.delivery_id or 0)
            [mt] = await c.metrics(q)
            assert (mt.depth, mt.in_flight, mt.dead_letters) == (0, 0, 0)
            assert mt.acked_total == 3
            assert any(x.queue_name == q for x in await c.metrics())
            assert await c.archived(q) == []
            assert (await c.lease_slots()).total > 0
            [r] = await c.maintain(q)
            assert r.queue == q
            sub = unique("sub")
            assert "/" in await c.create_push_subscription(q, sub)
            assert [x.queue_name for x in await c.list_push_subscriptions() if x.subscription_name == sub] == [q]
            assert any(x.subscription_name == sub for x in await c.push_metrics())
            assert await c.drop_push_subscription(sub) is True
            await c.drop_queue(q)

    run(main())


def test_long_poll_and_concurrent_clients() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c, await deliver.AsyncClient.connect(DSN) as other:
            q = unique("aq")
            await c.create_queue(q)

            async def send_later() -> None:
                await asyncio.sleep(0.4)
                await other.send(q, "wake")

            t0 = time.monotonic()
            got, _ = await asyncio.gather(c.receive(q, wait=10), send_later())
            assert [m.payload for m in got] == ["wake"]
            assert 0.3 < time.monotonic() - t0 < 5
            await c.drop_queue(q)

    run(main())


def test_alerts_and_grants() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q)
            await c.set_alert(q, "depth", 10)
            [a] = await c.list_alerts(q)
            assert (a.metric, a.threshold, a.firing) == ("depth", Decimal(10), False)
            await c.set_alert(q, "depth", None)
            assert await c.list_alerts(q) == []
            await c.grant_queue(q, ROLE, "send")
            assert await c.list_grants(q) == [deliver.Grant(q, ROLE, "send")]
            assert await c.has_queue_privilege(q, "all") is True
            conn = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
            try:
                await conn.execute(f'SET ROLE "{ROLE}"')
                as_role = deliver.AsyncClient(conn)
                assert await as_role.has_queue_privilege(q, "send") is True
                assert await as_role.has_queue_privilege(q, "receive") is False
                with pytest.raises(deliver.PermissionDenied) as e:
                    await as_role.receive(q)
                assert e.value.sqlstate == "42501"
            finally:
                await conn.close()
            await c.revoke_queue(q, ROLE)
            assert await c.list_grants(q) == []
            await c.drop_queue(q)

    run(main())


def test_outbox_and_exactly_once(effects: str) -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q, visibility_timeout=30)
            async with c.transaction() as conn:
                await conn.execute(f"INSERT INTO {effects} VALUES (1, 'placed')")
                await c.send(q, {"order": 1})
            with pytest.raises(RuntimeError):
                async with c.transaction() as conn:
                    await conn.execute(f"INSERT INTO {effects} VALUES (2, 'placed')")
                    await c.send(q, {"order": 2})
                    raise RuntimeError("the order failed")
            # the application's own connection and transaction
            app = await psycopg.AsyncConnection.connect(DSN)
            try:
                await c.send(q, {"order": 3}, conn=app)
                await c.send_batch(q, [{"order": 4}], conn=app)
                await app.rollback()
                await c.send(q, {"order": 5}, conn=app)
                await app.commit()
            finally:
                await app.close()
            got = await c.receive(q, 10)
            assert [m.payload for m in got] == [{"order": 1}, {"order": 5}]
            assert sql(f"SELECT message_id FROM {effects}") == [(1,)]

            async def apply(conn: AConn, m: deliver.Message) -> deliver.Id:
                await conn.execute(f"INSERT INTO {effects} VALUES (%s, 'applied')", (m.message_id,))
                return m.message_id

            async def fail(conn: AConn, m: deliver.Message) -> None:
                await apply(conn, m)
                raise ValueError("no")

            assert await c.exactly_once(got[0], apply) == got[0].message_id
            with pytest.raises(ValueError):
                await c.exactly_once(got[1], fail)
            assert sql(f"SELECT count(*) FROM {effects} WHERE note = 'applied'") == [(1,)]
            with pytest.raises(deliver.NotCurrent):  # acked already: its effect rolls back
                await c.exactly_once(got[0], apply)
            assert sql(f"SELECT count(*) FROM {effects} WHERE note = 'applied'") == [(1,)]
            await c.drop_queue(q)

    run(main())


def test_errors_and_connection_failure() -> None:
    async def main() -> None:
        with pytest.raises(deliver.Unavailable) as u:
            await deliver.AsyncClient.connect("host=127.0.0.1 port=1 dbname=x connect_timeout=2")
        assert u.value.sqlstate == "08006"
        async with await deliver.AsyncClient.connect(DSN) as c:
            with pytest.raises(deliver.QueueNotFound):
                await c.send(unique("missing"), 1)
            with pytest.raises(deliver.InvalidName) as e:
                await c.create_queue("bad name!")
            assert e.value.sqlstate == "42602"
            with pytest.raises(deliver.InvalidParameter):
                await c.create_queue(unique("x"), max_attempts=0)

    run(main())


def test_consumer_concurrency_acks_and_a_throwing_handler() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q, max_attempts=2, retry_base=0)
            await c.send_batch(q, list(range(12)))
            running = most = 0
            seen: list[int] = []

            async def handler(m: deliver.Message) -> None:
                nonlocal running, most
                running += 1
                most = max(most, running)
                try:
                    await asyncio.sleep(0.05)
                    if m.payload == 7:
                        raise LookupError(f"no {m.payload}")
                    seen.append(m.payload)
                finally:
                    running -= 1

            consumer = deliver.AsyncConsumer(DSN, q, handler, concurrency=3, wait=0.3)
            task = asyncio.create_task(consumer.run(handle_signals=False))
            await until(lambda: len(seen) == 11 and consumer.stats.nacked == 2, 15, "11 acks and 2 nacks")
            await until(lambda: c.dead_letters(q), 5, "the dead letter")
            consumer.stop()
            stats = await asyncio.wait_for(task, 10)
            assert most == 3
            assert sorted(seen) == [i for i in range(12) if i != 7]
            assert (stats.acked, stats.failed, stats.nacked) == (11, 2, 2)
            [dead] = await c.dead_letters(q)
            assert dead.payload == 7 and dead.reason == "nacked"
            assert dead.last_error is not None and dead.last_error.startswith("LookupError: no 7 (test_asyncio.py:")
            assert await drained(c, q)
            await c.drop_queue(q)

    run(main())


def test_consumer_extends_the_lease_of_a_slow_handler() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q, retry_base=0)
            await c.send(q, "slow")
            calls = 0

            async def handler(m: deliver.Message) -> None:
                nonlocal calls
                calls += 1
                await asyncio.sleep(3)

            consumer = deliver.AsyncConsumer(DSN, q, handler, visibility_timeout=1, wait=0.2)
            task = asyncio.create_task(consumer.run(handle_signals=False))
            await until(lambda: calls == 1, 5, "the handler started")
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.5:
                assert await c.receive(q, wait=0.3) == [], "not redelivered while the handler runs"
            await until(lambda: consumer.stats.acked == 1, 5, "the ack")
            consumer.stop()
            stats = await asyncio.wait_for(task, 10)
            assert calls == 1 and stats.extended >= 2 and stats.lost == 0 and stats.errors == []
            assert await drained(c, q)
            await c.drop_queue(q)

    run(main())


def test_consumer_stop_cancels_the_poll_and_the_grace_period_releases() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q, retry_base=60)
            await c.send_batch(q, ["quick", "stuck"])
            finished: list[str] = []
            cancelled: list[str] = []

            async def handler(m: deliver.Message) -> None:
                try:
                    await asyncio.sleep(0.5 if m.payload == "quick" else 30)
                    finished.append(m.payload)
                except asyncio.CancelledError:
                    cancelled.append(m.payload)
                    raise

            consumer = deliver.AsyncConsumer(DSN, q, handler, concurrency=2, wait=30, grace_period=1.5)
            task = asyncio.create_task(consumer.run(handle_signals=False))
            await until(lambda: consumer.stats.received == 2, 5, "both received")
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            consumer.stop()
            stats = await asyncio.wait_for(task, 10)
            took = time.monotonic() - t0
            assert 1.2 < took < 4, f"the 30 s poll was cancelled, the grace period waited ({took:.1f}s)"
            assert finished == ["quick"] and cancelled == ["stuck"]
            assert (stats.acked, stats.abandoned) == (1, 1)
            [m] = await c.receive(q)
            assert (m.payload, m.attempt) == ("stuck", 2), "released at once despite the 60 s backoff"
            await c.drop_queue(q)

    run(main())


def test_exactly_once_consumer(effects: str) -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q, guarantee="exactly_once", retry_base=0)
            await c.send_batch(q, [{"n": n} for n in range(5)], idempotency_keys=[f"k{n}" for n in range(5)])
            failed = False

            async def handler(conn: AConn, m: deliver.Message) -> None:
                nonlocal failed
                await conn.execute(f"INSERT INTO {effects} VALUES (%s, %s)", (m.message_id, str(m.payload["n"])))
                if m.payload["n"] == 3 and not failed:
                    failed = True
                    raise RuntimeError("after the write")

            consumer = deliver.AsyncExactlyOnceConsumer(DSN, q, handler, concurrency=2, wait=0.3)
            task = asyncio.create_task(consumer.run(handle_signals=False))
            await until(lambda: consumer.stats.acked == 5, 15, "five acks")
            consumer.stop()
            stats = await asyncio.wait_for(task, 10)
            assert (stats.failed, stats.nacked, stats.lost) == (1, 1, 0)
            assert sql(f"SELECT count(*), count(DISTINCT message_id) FROM {effects}") == [(5, 5)]
            assert await drained(c, q)
            await c.drop_queue(q)

    run(main())


def test_a_dropped_queue_stops_the_consumer_with_its_error() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q)

            async def handler(m: deliver.Message) -> None:
                return None

            # (a drop waits for a long poll in progress to end: a short wait)
            consumer = deliver.AsyncConsumer(DSN, q, handler, wait=1)
            task = asyncio.create_task(consumer.run(handle_signals=False))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(drop_queue_retrying, q)
            with pytest.raises(deliver.QueueNotFound) as e:
                await asyncio.wait_for(task, 8)
            assert e.value.sqlstate == "42704"

    run(main())


def test_sigterm_stops_an_asyncio_consumer_process_gracefully(
    client: deliver.Client, make_queue: Callable[..., str], children: Callable[..., Child]
) -> None:
    q = make_queue()
    client.send_batch(q, ["x", "y", "z"])
    child = children("consumer_child.py", QUEUE=q, HANDLER_S="1", CONCURRENCY="2", ASYNC="1")
    child.wait_line("handling", 2)
    child.signal(signal.SIGTERM)
    assert child.wait(15) == 0
    [stopped] = [x for x in child.lines if x.startswith("stopped ")]
    stats = json.loads(stopped[len("stopped ") :])
    assert stats["acked"] == 2 and stats["abandoned"] == 0
    assert [m.attempt for m in client.receive(q, 10)] == [1], "the third message was never taken"


def test_nack_to_dead_letters_redrive_to_queue_delete_message() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q, to = unique("aq"), unique("aq")
            await c.create_queue(q)
            await c.create_queue(to)
            first, second = await c.send_batch(q, ["a", "b"])
            [m] = await c.receive(q)
            assert m.delivery_id is not None
            assert await c.nack(q, m.delivery_id, error="bad", dead_letter=True) is True
            [d] = await c.dead_letters(q)
            assert (d.message_id, d.reason) == (first, "rejected")
            assert await c.redrive(q, to_queue=to) == 1
            assert [x.payload for x in await c.receive(to)] == ["a"]
            assert await c.delete_message(q, second) is True
            assert await c.receive(q, 10) == []
            await c.drop_queue(q)
            await c.drop_queue(to)

    run(main())


def test_reset_consumer_group() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q)
            first = await c.send(q, "a")
            for m in await c.receive(q, 10):
                assert m.delivery_id is not None
                await c.ack(q, m.delivery_id)
            await c.reset_consumer_group(q, "default", "earliest")
            assert [m.message_id for m in await c.receive(q, 10)] == [first]
            await c.drop_queue(q)

    run(main())


def test_replay_archive() -> None:
    async def main() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            q = unique("aq")
            await c.create_queue(q)
            await c.alter_queue(q, archive_retention="1 day")
            await c.create_consumer_group(q, "audit")
            put_in_archive(q)
            assert await c.replay_archive(q, "audit") == deliver.Replayed(2, 8)
            got = await c.receive(q, 10, consumer_group="audit")
            assert [m.payload for m in got] == [{"n": 7}, {"n": 8}]
            plain = unique("aq")
            await c.create_queue(plain)
            with pytest.raises(deliver.NotCurrent):
                await c.replay_archive(plain, "default")
            await c.drop_queue(q)
            await c.drop_queue(plain)

    run(main())
