"""send, send_batch, receive, ack, ack_batch, nack, extend_lease: options,
exact 64-bit ids, long polls; priorities from every client."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from conftest import DSN, sql, unique, wait_until

import deliver


def test_send_options_and_payloads(client: deliver.Client, queue: str) -> None:
    payloads = [{"order": 1, "big": 2**63 - 1, "neg": -(2**62)}, [1, "two", None], "text", 42, 1.5, True, None]
    ids = [client.send(queue, p, headers={"trace": str(i)}, ordering_key=f"k{i % 2}") for i, p in enumerate(payloads)]
    assert all(type(i) is int for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    got = client.receive(queue, 10)
    assert [m.payload for m in got] == payloads
    assert [m.message_id for m in got] == ids
    assert [m.headers for m in got] == [{"trace": str(i)} for i in range(len(payloads))]
    assert [m.ordering_key for m in got] == [f"k{i % 2}" for i in range(len(payloads))]
    m = got[0]
    assert m.attempt == 1 and m.queue == queue and m.consumer_group == "default"
    assert isinstance(m.enqueued_at, datetime) and m.enqueued_at.tzinfo is not None
    assert m.lease_expires_at is not None and m.lease_expires_at > m.enqueued_at


def test_ids_are_exact_ints(client: deliver.Client, queue: str) -> None:
    client.send(queue, "x")
    [m] = client.receive(queue)
    assert type(m.delivery_id) is int and type(m.message_id) is int
    assert m.delivery_id is not None and m.delivery_id > 2**53  # beyond what a float holds
    assert client.ack(queue, m.delivery_id) is True
    with pytest.raises(TypeError):
        client.ack(queue, float(m.delivery_id))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.ack_batch(queue, [True])
    # strings are ids of the HTTP client only: refused before a call is made
    with pytest.raises(TypeError):
        client.ack(queue, str(m.delivery_id))
    with pytest.raises(deliver.InvalidParameter) as e:
        client.ack(queue, f"0:1:{m.delivery_id}")
    assert e.value.sqlstate == "22023" and "cluster" in e.value.message


def test_idempotency_key(client: deliver.Client, queue: str) -> None:
    a = client.send(queue, {"n": 1}, idempotency_key="order-7")
    b = client.send(queue, {"n": 2}, idempotency_key="order-7")
    c = client.send(queue, {"n": 3}, idempotency_key="order-8")
    assert a == b != c
    assert [m.payload for m in client.receive(queue, 10)] == [{"n": 1}, {"n": 3}]


def test_delay(client: deliver.Client, queue: str) -> None:
    client.send(queue, "later", delay=timedelta(milliseconds=700))
    client.send(queue, "much later", delay="1 hour")
    assert client.receive(queue, 10) == []
    # without a maintenance worker in this database, a receive moves what came due
    [m] = wait_until(lambda: client.receive(queue, 10, wait=0.2), timeout=5)
    assert m.payload == "later"
    assert client.receive(queue, 10) == []


def test_send_batch(client: deliver.Client, queue: str) -> None:
    ids = client.send_batch(
        queue,
        [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}],
        headers=[{"h": 0}, None, {"h": 2}, None],
        ordering_keys=["a", None, "a", "b"],
        idempotency_keys=["k0", "k1", "k0", None],
    )
    assert len(ids) == 4 and ids[2] == ids[0]  # a key repeated in the batch gets the first one's id
    got = client.receive(queue, 10)
    assert [m.payload for m in got] == [{"i": 0}, {"i": 1}, {"i": 3}]
    assert [m.headers for m in got] == [{"h": 0}, None, None]
    assert [m.ordering_key for m in got] == ["a", None, "b"]
    later = client.send_batch(queue, ["d1", "d2"], delay=3600)
    assert len(later) == 2
    assert client.receive(queue, 10) == []
    with pytest.raises(deliver.DeliverError) as e:
        client.send_batch(queue, [1, 2], ordering_keys=["only one"])
    assert e.value.sqlstate == "2202E"


def test_receive_max_group_and_visibility(client: deliver.Client, queue: str) -> None:
    client.create_consumer_group(queue, "audit")
    client.send_batch(queue, list(range(5)))
    first = client.receive(queue, 2, visibility_timeout=timedelta(milliseconds=300))
    assert [m.payload for m in first] == [0, 1]
    rest = client.receive(queue, 10, visibility_timeout=30)
    assert [m.payload for m in rest] == [2, 3, 4]
    audit = client.receive(queue, 10, consumer_group="audit")
    assert [m.payload for m in audit] == [0, 1, 2, 3, 4]
    assert all(m.consumer_group == "audit" for m in audit)
    # the short leases run out: the messages come back (after the retry backoff)
    again = client.receive(queue, 10, wait=3)
    assert sorted(m.payload for m in again) == [0, 1] or [m.payload for m in again] in ([0], [1])
    assert all(m.attempt == 2 for m in again)


def test_long_poll_wakes_at_commit(client: deliver.Client, queue: str) -> None:
    def send_later() -> None:
        time.sleep(0.5)
        with deliver.Client.connect(DSN) as other:
            other.send(queue, "wake")

    t = threading.Thread(target=send_later)
    start = time.monotonic()
    t.start()
    msgs = client.receive(queue, 1, wait=10)
    took = time.monotonic() - start
    t.join()
    assert [m.payload for m in msgs] == ["wake"]
    assert 0.4 < took < 5
    start = time.monotonic()
    assert client.receive(queue, 1, wait=0.3) == []
    assert time.monotonic() - start >= 0.25


def test_ack_and_ack_batch(client: deliver.Client, queue: str) -> None:
    client.send_batch(queue, ["a", "b", "c", "d"])
    ms = client.receive(queue, 4)
    assert client.ack(queue, ms[0].delivery_id or 0) is True
    assert client.ack_batch(queue, [m.delivery_id or 0 for m in ms[1:3]]) == 2
    assert client.ack_batch(queue, []) == 0
    # all or nothing: one stale id fails the whole batch
    with pytest.raises(deliver.NotCurrent):
        client.ack_batch(queue, [ms[3].delivery_id or 0, ms[0].delivery_id or 0])
    assert client.ack(queue, ms[3].delivery_id or 0) is True
    assert client.metrics(queue)[0].acked_total == 4


def test_nack_and_retry_after(client: deliver.Client, queue: str) -> None:
    client.send(queue, "x")
    [m] = client.receive(queue)
    assert client.nack(queue, m.delivery_id or 0, error="try again", retry_after=0) is True
    [m2] = client.receive(queue)
    assert (m2.message_id, m2.attempt) == (m.message_id, 2)
    assert m2.delivery_id != m.delivery_id
    assert client.nack(queue, m2.delivery_id or 0, retry_after=timedelta(hours=1)) is True
    assert client.receive(queue) == []
    with pytest.raises(deliver.NotCurrent):
        client.nack(queue, m2.delivery_id or 0)


def test_extend_lease(client: deliver.Client, queue: str) -> None:
    client.send(queue, "slow")
    [m] = client.receive(queue, visibility_timeout=1)
    assert m.lease_expires_at is not None
    new = client.extend_lease(queue, m.delivery_id or 0, timedelta(seconds=3))
    assert isinstance(new, datetime) and new > m.lease_expires_at
    assert new - datetime.now(timezone.utc) > timedelta(seconds=2)
    time.sleep(1.3)  # past the first lease
    assert client.receive(queue) == []  # still leased
    assert client.ack(queue, m.delivery_id or 0) is True
    with pytest.raises(deliver.NotCurrent):
        client.extend_lease(queue, m.delivery_id or 0, 5)


def test_at_most_once(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue(guarantee="at_most_once")
    client.send_batch(q, [1, 2])
    got = client.receive(q, 10)
    assert [m.payload for m in got] == [1, 2]
    assert all(m.delivery_id is None and m.lease_expires_at is None for m in got)
    assert client.receive(q, 10) == []


def stored_priorities(q: str) -> list[int]:
    """The priorities a queue stored, in id order (0 for none), delayed
    messages too."""
    [(qid, segments)] = sql("SELECT queue_id, segments FROM deliver.queue WHERE queue_name = %s", q)
    parts = [f"SELECT message_id, priority FROM deliver.q{qid}_s{s}" for s in range(segments)]
    parts.append(f"SELECT message_id, priority FROM deliver.q{qid}_delayed")
    rows = sql(f"SELECT coalesce(priority, 0)::int FROM ({' UNION ALL '.join(parts)}) m ORDER BY message_id")
    return [r[0] for r in rows]


def test_priorities_pass_through(anyclient: Any) -> None:
    c = anyclient
    q, key = unique("prio"), unique("prio")
    c.create_queue(q, priorities=True)
    try:
        c.send(q, {"n": 1}, priority=7)
        c.send_batch(q, [{"n": 2}, {"n": 3}], priority=3)
        c.send(q, {"n": 4}, priority=None)
        c.send(q, {"n": 5}, priority=0, delay=3600)
        c.send(q, {"n": 6}, priority=9, delay=3600)
        c.bind(f"{key}.#", q)
        assert len(c.publish(f"{key}.x", {"n": 7}, priority=5)) == 1
        assert stored_priorities(q) == [7, 3, 3, 0, 0, 9, 5]
        c.alter_queue(q, priorities=False)
        with pytest.raises(deliver.NotCurrent):
            c.send(q, 1, priority=1)
        c.alter_queue(q, max_attempts=4)
        with pytest.raises(deliver.NotCurrent):
            c.send(q, 1, priority=1)  # left out: still off
        assert c.get_queue(q).priorities is False
        c.alter_queue(q, priorities=True)
        assert c.get_queue(q).priorities is True
        c.send(q, {"n": 8}, priority=1)
        assert stored_priorities(q)[-1] == 1
        # receives hand out the highest priority first (the delayed ones are not due)
        got = c.receive(q, 10)
        assert [m.payload["n"] for m in got] == [1, 7, 2, 3, 8, 4]
    finally:
        c.unbind(f"{key}.#", q)
        c.drop_queue(q)


def test_priority_errors(anyclient: Any) -> None:
    c = anyclient
    q, plain, key = unique("prio"), unique("noprio"), unique("prio")
    c.create_queue(q, priorities=True)
    c.create_queue(plain)
    try:
        for bad in (10, -1):
            with pytest.raises(deliver.InvalidParameter) as e:
                c.send(q, 1, priority=bad)
            assert e.value.sqlstate == "22023"
            with pytest.raises(deliver.InvalidParameter):
                c.send_batch(q, [1], priority=bad)
        with pytest.raises(deliver.NotCurrent) as e2:
            c.send(plain, 1, priority=1)
        assert e2.value.sqlstate == "55000"
        with pytest.raises(deliver.NotCurrent):
            c.send_batch(plain, [1], priority=9)
        c.bind(f"{key}.#", q)
        c.bind(f"{key}.#", plain)
        with pytest.raises(deliver.InvalidParameter):
            c.publish(f"{key}.x", 1, priority=10)
        with pytest.raises(deliver.NotCurrent):
            c.publish(f"{key}.x", 1, priority=2)  # one queue without priorities: nothing sent
        assert stored_priorities(q) == []
        assert len(c.publish(f"{key}.x", 1, priority=0)) == 2
        c.send(plain, 1, priority=0)
        assert stored_priorities(plain) == [0, 0]
        with pytest.raises(deliver.DeliverError) as e3:
            c.create_queue(unique("prio_amo"), guarantee="at_most_once", priorities=True)
        assert e3.value.sqlstate == "0A000"
    finally:
        c.unbind(f"{key}.#", q)
        c.unbind(f"{key}.#", plain)
        c.drop_queue(q)
        c.drop_queue(plain)
