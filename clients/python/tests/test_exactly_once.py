"""Exactly-once processing: the handler's writes and the ack commit in one
transaction (Client.exactly_once, ExactlyOnceConsumer); a failing handler
or COMMIT leaves no effect; and a consumer process killed with SIGKILL at
random points and restarted leaves each message's effect exactly once."""

from __future__ import annotations

import json
import random
import signal
import time
from typing import Any, Callable

import psycopg
import pytest
from conftest import DSN, Child, sql, wait_until

import deliver

Conn = psycopg.Connection[Any]


def counts(table: str) -> tuple[int, int, int]:
    """(rows, distinct messages, distinct payloads) of the effects table."""
    [(rows, messages, notes)] = sql(f"SELECT count(*), count(DISTINCT message_id), count(DISTINCT note) FROM {table}")
    return rows, messages, notes


def test_a_failing_commit_leaves_neither_effect_nor_ack(
    client: deliver.Client, make_queue: Callable[..., str], effects: str
) -> None:
    q = make_queue(guarantee="exactly_once")
    client.send(q, {"n": 1}, idempotency_key="one")
    [m] = client.receive(q, visibility_timeout=30)

    def handler(conn: Conn, m: deliver.Message) -> None:
        conn.execute(f"INSERT INTO {effects} VALUES (%s, 'x')", (m.message_id,))
        # a deferred failure: the COMMIT itself fails
        conn.execute("CREATE TEMP TABLE deferred_fail (x int UNIQUE DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP")
        conn.execute("INSERT INTO deferred_fail VALUES (1), (1)")

    with pytest.raises(deliver.DeliverError) as e:
        client.exactly_once(m, handler)
    assert e.value.sqlstate == "23505"
    assert counts(effects) == (0, 0, 0)
    assert client.metrics(q)[0].acked_total == 0
    # the ack rolled back with the effect: the delivery is still current
    assert client.ack(q, m.delivery_id or 0) is True


def test_exactly_once_of_an_at_most_once_message_is_refused(
    client: deliver.Client, make_queue: Callable[..., str]
) -> None:
    q = make_queue(guarantee="at_most_once")
    client.send(q, 1)
    [m] = client.receive(q)
    with pytest.raises(deliver.DeliverError):
        client.exactly_once(m, lambda conn, m: None)


def test_consumer_effects_and_acks_commit_together(
    client: deliver.Client, make_queue: Callable[..., str], effects: str
) -> None:
    q = make_queue(guarantee="exactly_once", retry_base=0)
    client.send_batch(q, [{"n": n} for n in (1, 2, 3)], idempotency_keys=["k1", "k2", "k3"])
    failed_once = False
    failed_commit = False

    def handler(conn: Conn, m: deliver.Message) -> None:
        nonlocal failed_once, failed_commit
        conn.execute(f"INSERT INTO {effects} VALUES (%s, %s)", (m.message_id, str(m.payload["n"])))
        if m.payload["n"] == 2 and not failed_once:
            failed_once = True
            raise RuntimeError("handler failed after its write")
        if m.payload["n"] == 3 and not failed_commit:
            failed_commit = True
            conn.execute("CREATE TEMP TABLE deferred_fail (x int UNIQUE DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP")
            conn.execute("INSERT INTO deferred_fail VALUES (1), (1)")

    consumer = deliver.ExactlyOnceConsumer(DSN, q, handler, concurrency=2, wait=0.3)
    consumer.start()
    wait_until(lambda: consumer.stats.acked == 3, 15, what="three acks")
    consumer.stop()
    consumer.join(10)
    assert counts(effects) == (3, 3, 3), "the failed attempts' writes were rolled back"
    s = consumer.stats
    assert (s.failed, s.nacked, s.lost) == (2, 2, 0)
    m = client.metrics(q)[0]
    assert (m.depth, m.in_flight, m.acked_total) == (0, 0, 3)


def test_consumer_keeps_the_lease_of_a_slow_handler_and_stop_cancels_the_poll(
    client: deliver.Client, make_queue: Callable[..., str], effects: str
) -> None:
    q = make_queue(guarantee="exactly_once", retry_base=0)
    client.send(q, {"n": 1}, idempotency_key="slow")
    calls = 0

    def handler(conn: Conn, m: deliver.Message) -> None:
        nonlocal calls
        calls += 1
        time.sleep(2.5)  # 2.5 times the lease
        conn.execute(f"INSERT INTO {effects} VALUES (%s, 'slow')", (m.message_id,))

    consumer = deliver.ExactlyOnceConsumer(DSN, q, handler, visibility_timeout=1, wait=20)
    consumer.start()
    wait_until(lambda: consumer.stats.acked == 1, 10, what="the ack")
    t0 = time.monotonic()
    consumer.stop()
    consumer.join(10)
    assert time.monotonic() - t0 < 3, "the 20 s long poll was cancelled"
    assert calls == 1 and consumer.stats.extended >= 1 and consumer.stats.lost == 0
    assert counts(effects) == (1, 1, 1)


def test_a_lost_lease_rolls_the_effects_back(
    client: deliver.Client, make_queue: Callable[..., str], effects: str
) -> None:
    q = make_queue(guarantee="exactly_once", retry_base=0)
    client.send(q, {"n": 1}, idempotency_key="late")
    [m] = client.receive(q, visibility_timeout=0.3)
    time.sleep(0.5)
    [again] = client.receive(q)  # the lease ran out: another consumer has it
    assert again.attempt == 2

    def apply(conn: Conn, msg: deliver.Message) -> None:
        conn.execute(f"INSERT INTO {effects} VALUES (%s, 'x')", (msg.message_id,))

    with pytest.raises(deliver.NotCurrent):
        client.exactly_once(m, apply)
    assert counts(effects) == (0, 0, 0)
    client.exactly_once(again, apply)
    assert counts(effects) == (1, 1, 1)


def run_kill_test(
    client: deliver.Client,
    make_queue: Callable[..., str],
    effects: str,
    children: Callable[..., Child],
    **env: str,
) -> None:
    q = make_queue(guarantee="exactly_once", retry_base=0, max_attempts=20)
    total = 400
    for i in range(0, total, 100):
        client.send_batch(q, [{"n": n} for n in range(i, i + 100)], idempotency_keys=[f"m{n}" for n in range(i, i + 100)])
    # the producer retries a batch (say after a timeout): the keys store nothing new
    client.send_batch(q, [{"n": n} for n in range(50)], idempotency_keys=[f"m{n}" for n in range(50)])
    assert client.metrics(q)[0].sent_total == total

    kills = 0
    last = 0
    for _ in range(8):
        child = children("exactly_once_child.py", QUEUE=q, TABLE=effects, **env)
        child.wait_line("ready")
        # kill once it is working (a random number of effects in) or at a random time
        target = last + random.randint(1, 60)
        end = time.monotonic() + random.uniform(0.2, 1.5)
        while time.monotonic() < end and counts(effects)[0] < target:
            time.sleep(0.01)
        child.kill()  # SIGKILL
        kills += 1
        rows, messages, notes = counts(effects)
        print(f"kill {kills}: {rows} of {total} effects committed")  # shown with -s, or when the test fails
        assert rows == messages == notes, f"no duplicate effect after kill {kills}: {rows} rows, {messages} messages"
        assert rows >= last, "committed effects stay"
        last = rows
        if rows == total:
            break
    assert kills >= 1
    # a last process finishes the queue and is stopped gracefully
    child = children("exactly_once_child.py", QUEUE=q, TABLE=effects, **env)
    child.wait_line("ready")
    wait_until(lambda: counts(effects)[0] >= total, 60, what="every message applied")
    child.signal(signal.SIGTERM)
    assert child.wait(20) == 0, child.lines
    assert child.lines[-1].startswith("stopped "), child.lines
    json.loads(child.lines[-1][len("stopped ") :])
    assert counts(effects) == (total, total, total), "each distinct message applied exactly once"
    [m] = client.metrics(q)
    assert (m.depth, m.in_flight, m.dead_letters, m.acked_total) == (0, 0, 0, total)
    assert client.receive(q, 10) == [], "nothing left to deliver"


def test_kill_9_at_random_points_effects_exactly_once(
    client: deliver.Client, make_queue: Callable[..., str], effects: str, children: Callable[..., Child]
) -> None:
    run_kill_test(client, make_queue, effects, children)


def test_kill_9_of_an_asyncio_consumer_effects_exactly_once(
    client: deliver.Client, make_queue: Callable[..., str], effects: str, children: Callable[..., Child]
) -> None:
    run_kill_test(client, make_queue, effects, children, ASYNC="1")
