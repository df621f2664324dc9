"""The Consumer over SQL: bounded concurrency, acks, a throwing handler
nacked with its error until the dead letters, a lease extended past the
visibility timeout, stop() (long poll cancelled, running handlers finished,
held messages released, the grace period), at-most-once queues, a queue
dropped under it, and SIGTERM of a consumer process."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Callable

import pytest
from conftest import DSN, Child, drop_queue_retrying, unique, wait_until

import deliver


def drained(client: deliver.Client, q: str) -> bool:
    return all(m.depth == 0 and m.in_flight == 0 for m in client.metrics(q))


def stop_and_join(consumer: deliver.Consumer, timeout: float = 15) -> float:
    """stop() and wait for the consumer's thread; returns how long it took."""
    t0 = time.monotonic()
    consumer.stop()
    consumer.join(timeout)
    assert consumer._thread is not None and not consumer._thread.is_alive(), "the consumer stopped"
    return time.monotonic() - t0


def test_bounded_concurrency_and_acks(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue()
    client.send_batch(q, list(range(20)))
    lock = threading.Lock()
    running = 0
    most = 0
    seen: list[int] = []

    def handler(m: deliver.Message) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            seen.append(m.payload)
            running -= 1

    consumer = deliver.Consumer(DSN, q, handler, concurrency=4, wait=1)
    consumer.start()
    wait_until(lambda: len(seen) == 20, 15, what="every message handled")
    wait_until(lambda: consumer.stats.acked == 20, 5, what="every ack")
    stop_and_join(consumer)
    assert most == 4, "four at once, never more"
    assert sorted(seen) == list(range(20))
    s = consumer.stats
    assert (s.received, s.handled, s.acked, s.failed, s.nacked, s.lost) == (20, 20, 20, 0, 0, 0)
    assert s.errors == []
    assert drained(client, q)
    assert client.receive(q) == [], "nothing comes back"


def test_throwing_handler_is_nacked_with_its_error_until_the_dead_letters(
    client: deliver.Client, make_queue: Callable[..., str]
) -> None:
    q = make_queue(max_attempts=3, retry_base=0)
    client.send(q, "bad")
    attempts: list[int] = []

    def handler(m: deliver.Message) -> None:
        attempts.append(m.attempt)
        raise ValueError(f"kaput {m.attempt}")

    consumer = deliver.Consumer(DSN, q, handler, wait=0.2)
    consumer.start()
    wait_until(lambda: len(client.dead_letters(q)) == 1, 15, what="the dead letter")
    stop_and_join(consumer)
    assert attempts == [1, 2, 3]
    assert (consumer.stats.failed, consumer.stats.nacked, consumer.stats.acked) == (3, 3, 0)
    [dead] = client.dead_letters(q)
    assert dead.reason == "nacked" and dead.attempts == 3
    assert dead.last_error is not None and dead.last_error.startswith("ValueError: kaput 3 (test_consumer.py:")
    assert drained(client, q)


def test_retry_after_of_a_nack(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue(retry_base=0)
    client.send(q, "x")
    calls: list[float] = []

    def handler(m: deliver.Message) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("once")

    consumer = deliver.Consumer(DSN, q, handler, wait=0.2, retry_after=1.0)
    consumer.start()
    wait_until(lambda: consumer.stats.acked == 1, 10, what="the second attempt's ack")
    stop_and_join(consumer)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.9, "given back for retry_after"


def test_lease_extended_past_the_visibility_timeout(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue(retry_base=0)
    client.send(q, "slow")
    calls = 0

    def handler(m: deliver.Message) -> None:
        nonlocal calls
        calls += 1
        time.sleep(3.5)  # 3.5 times the visibility timeout

    consumer = deliver.Consumer(DSN, q, handler, visibility_timeout=1, wait=0.2)
    consumer.start()
    wait_until(lambda: calls == 1, 5, what="the handler started")
    # another consumer of the group looks all along: the message stays leased
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3:
        assert client.receive(q, wait=0.3) == [], "not redelivered while the handler runs"
    wait_until(lambda: consumer.stats.acked == 1, 5, what="the ack")
    stop_and_join(consumer)
    assert calls == 1
    assert consumer.stats.extended >= 3
    assert (consumer.stats.lost, consumer.stats.errors) == (0, []), "every extension and the ack succeeded"
    assert drained(client, q)


def test_stop_cancels_the_long_poll_and_finishes_running_handlers(
    client: deliver.Client, make_queue: Callable[..., str]
) -> None:
    q = make_queue()
    client.send_batch(q, [1, 2])
    started: list[int] = []
    finished: list[int] = []

    def handler(m: deliver.Message) -> None:
        started.append(m.payload)
        time.sleep(0.8)
        finished.append(m.payload)

    consumer = deliver.Consumer(DSN, q, handler, concurrency=3, wait=30)
    consumer.start()
    wait_until(lambda: len(started) == 2, 5, what="both handlers started")
    took = stop_and_join(consumer)
    assert took < 3, f"the 30 s long poll did not hold the stop ({took:.1f}s)"
    assert sorted(finished) == [1, 2], "running handlers finished"
    assert consumer.stats.acked == 2
    client.send(q, 3)
    time.sleep(0.3)
    [m] = client.receive(q)
    assert (m.payload, m.attempt) == (3, 1), "a stopped consumer takes nothing more"


def test_stop_releases_held_messages_not_started(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue(retry_base=60)
    client.send_batch(q, ["a", "b", "c"])
    started: list[str] = []

    def handler(m: deliver.Message) -> None:
        started.append(m.payload)
        time.sleep(1)

    consumer = deliver.Consumer(DSN, q, handler, concurrency=1, prefetch=2, wait=5)
    consumer.start()
    wait_until(lambda: len(started) == 1 and consumer.stats.received == 3, 5, what="one running, two held")
    stop_and_join(consumer)
    s = consumer.stats
    assert (s.acked, s.released, s.abandoned) == (1, 2, 0)
    assert started == ["a"]
    # released with retry_after 0 (not the queue's 60 s backoff): at once
    back = client.receive(q, 10)
    assert sorted(m.payload for m in back) == ["b", "c"]
    assert all(m.attempt == 2 for m in back)


def test_stop_after_the_grace_period_releases_a_handler_still_running(
    client: deliver.Client, make_queue: Callable[..., str]
) -> None:
    q = make_queue(retry_base=60)
    client.send(q, "stuck")
    running = threading.Event()
    release = threading.Event()

    def handler(m: deliver.Message) -> None:
        running.set()
        release.wait(20)

    consumer = deliver.Consumer(DSN, q, handler, wait=5, grace_period=0.5)
    consumer.start()
    assert running.wait(5)
    took = stop_and_join(consumer)
    assert took < 4
    assert (consumer.stats.abandoned, consumer.stats.acked) == (1, 0)
    [m] = client.receive(q)
    assert (m.payload, m.attempt) == ("stuck", 2), "given back at once"
    release.set()  # the abandoned handler returns: its message is not acked
    time.sleep(0.3)
    assert consumer.stats.acked == 0
    assert client.ack(q, m.delivery_id or 0) is True


def test_at_most_once_messages_are_handled_without_acks(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue(guarantee="at_most_once")
    client.send_batch(q, ["a", "b"])
    got: list[str] = []

    def handler(m: deliver.Message) -> None:
        assert m.delivery_id is None
        got.append(m.payload)

    consumer = deliver.Consumer(DSN, q, handler, concurrency=2, wait=0.5)
    consumer.start()
    wait_until(lambda: len(got) == 2, 5, what="both")
    stop_and_join(consumer)
    assert sorted(got) == ["a", "b"]
    assert (consumer.stats.handled, consumer.stats.acked, consumer.stats.errors) == (2, 0, [])


def test_a_missing_or_dropped_queue_stops_the_consumer_with_its_error(
    client: deliver.Client, make_queue: Callable[..., str]
) -> None:
    with pytest.raises(deliver.QueueNotFound):
        deliver.Consumer(DSN, unique("missing"), lambda m: None).run(handle_signals=False)
    q = make_queue()
    # (a drop waits for a long poll in progress to end: a short wait)
    consumer = deliver.Consumer(DSN, q, lambda m: None, wait=1)
    dropper = threading.Timer(0.5, drop_queue_retrying, [q])
    dropper.start()
    t0 = time.monotonic()
    with pytest.raises(deliver.QueueNotFound) as e:
        consumer.run(handle_signals=False)
    assert e.value.sqlstate == "42704"
    assert time.monotonic() - t0 < 8
    assert consumer.stats.receive_errors >= 1
    dropper.join(5)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        deliver.Consumer(DSN, "q", lambda m: None, concurrency=0)
    with pytest.raises(ValueError):
        deliver.Consumer(DSN, "q", lambda m: None, prefetch=-1)
    with pytest.raises(TypeError):
        deliver.Consumer(DSN, "q", lambda m: None, visibility_timeout="30 seconds")
    with pytest.raises(TypeError):
        deliver.Consumer(42, "q", lambda m: None)  # type: ignore[arg-type]


def test_sigterm_stops_a_consumer_process_gracefully(
    client: deliver.Client, make_queue: Callable[..., str], children: Callable[..., Child]
) -> None:
    q = make_queue()
    client.send_batch(q, ["x", "y", "z"])
    child = children("consumer_child.py", QUEUE=q, HANDLER_S="1", CONCURRENCY="2")
    child.wait_line("handling", 2)
    child.signal(signal.SIGTERM)
    assert child.wait(15) == 0
    [stopped] = [x for x in child.lines if x.startswith("stopped ")]
    stats = json.loads(stopped[len("stopped ") :])
    assert stats["acked"] == 2, f"both running handlers finished and were acked: {child.lines}"
    assert stats["released"] == 0 and stats["abandoned"] == 0
    rest = client.receive(q, 10)
    assert [(m.attempt) for m in rest] == [1], "the third message was never taken"
