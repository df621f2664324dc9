"""HttpClient against a real deliverd (test.sh starts it: DELIVER_TEST_HTTP,
DELIVER_TEST_JWT_SECRET): every method, ids exact (JSON strings on the
wire, ints here, shared with SQL), errors typed with the SQLSTATE and the
HTTP status, token auth (none, expired, badly signed, a role without
grants, a function called per request), and a Consumer over HTTP."""

from __future__ import annotations

import getpass
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
from conftest import HTTP_URL, JWT_SECRET, ROLE, put_in_archive, unique, wait_until

import deliver

if not HTTP_URL or not JWT_SECRET:
    raise RuntimeError("DELIVER_TEST_HTTP and DELIVER_TEST_JWT_SECRET must be set (test.sh starts deliverd)")

from conftest import jwt  # noqa: E402

#: a token for the database user deliverd logs in as (the tests' own)
TOKEN = jwt(role=os.environ.get("PGUSER") or getpass.getuser(), exp=int(time.time()) + 3600)


@pytest.fixture
def http() -> deliver.HttpClient:
    return deliver.HttpClient(HTTP_URL, TOKEN, timeout=15)


@pytest.fixture
def hq(http: deliver.HttpClient) -> Iterator[Callable[..., str]]:
    """hq(**options) creates a queue over HTTP; dropped at the end."""
    made: list[str] = []

    def make(**options: Any) -> str:
        q = unique("h")
        http.create_queue(q, **options)
        made.append(q)
        return q

    yield make
    for q in made:
        try:
            http.drop_queue(q)
        except deliver.QueueNotFound:
            pass


def check(cls: type[deliver.DeliverError], sqlstate: str | None, status: int, fn: Callable[[], Any]) -> deliver.DeliverError:
    with pytest.raises(deliver.DeliverError) as info:
        fn()
    e = info.value
    assert type(e) is cls, f"{type(e).__name__} {e.status} {e.sqlstate}: {e.message}"
    assert (e.sqlstate, e.status) == (sqlstate, status)
    assert e.message
    return e


def test_health_and_ready(http: deliver.HttpClient) -> None:
    assert http.healthy() is True
    assert http.ready() is True
    assert deliver.HttpClient("http://127.0.0.1:1").healthy() is False


def test_queues_with_options_as_over_sql(http: deliver.HttpClient, client: deliver.Client) -> None:
    q = unique("h")
    http.create_queue(
        q, guarantee="exactly_once", visibility_timeout=90, max_attempts=4, fifo=True,
        dedup_window="1 day", retry_base=timedelta(milliseconds=500), retry_max="2 minutes",
    )
    info = http.get_queue(q)
    assert info == client.get_queue(q), "the same as over SQL"
    assert (info.guarantee, info.visibility_timeout, info.max_attempts, info.fifo) == (
        "exactly_once", timedelta(seconds=90), 4, True)
    assert (info.dedup_window, info.retry_base, info.retry_max, info.archive_retention) == (
        timedelta(days=1), timedelta(seconds=0.5), timedelta(minutes=2), None)
    assert info.consumer_groups == ["default"] and isinstance(info.created_at, datetime)
    client.alter_queue(q, archive_retention="3 days 04:00:00")
    assert http.get_queue(q).archive_retention == timedelta(days=3, hours=4)
    assert any(x.queue_name == q for x in http.list_queues())
    assert http.drop_queue(q) is True
    e = check(deliver.QueueNotFound, "42704", 404, lambda: http.get_queue(q))
    assert q in e.message


def test_consumer_groups(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq()
    http.send(q, "old")
    http.create_consumer_group(q, "late")
    http.create_consumer_group(q, "all", start_from="earliest")
    groups = http.list_consumer_groups(q)
    assert [g.consumer_group for g in groups] == ["default", "late", "all"]
    assert isinstance(groups[0].created_at, datetime)
    assert [m.payload for m in http.receive(q, 5, consumer_group="all")] == ["old"]
    assert http.receive(q, 5, consumer_group="late") == []
    assert http.drop_consumer_group(q, "late") is True
    assert [g.consumer_group for g in http.list_consumer_groups(q)] == ["default", "all"]


def test_flow_control(http: deliver.HttpClient, client: deliver.Client, hq: Callable[..., str]) -> None:
    q = hq()
    http.send_batch(q, [1, 2, 3, 4])
    assert http.pause_consumer_group(q) is True
    assert http.pause_consumer_group(q, "default") is False
    assert http.receive(q, 10) == []
    assert http.list_consumer_groups(q)[0].paused is True
    assert http.list_consumer_groups(q) == client.list_consumer_groups(q)
    assert http.resume_consumer_group(q) is True
    assert http.resume_consumer_group(q) is False
    http.set_consumer_group_rate(q, "default", 0.001, 3)
    (g,) = http.list_consumer_groups(q)
    assert (g.paused, g.rate_per_second, g.rate_burst) == (False, 0.001, 3)
    assert [m.payload for m in http.receive(q, 10)] == [1, 2, 3]
    assert http.receive(q, 10) == []
    http.set_consumer_group_rate(q, "default", None)
    assert [m.payload for m in http.receive(q, 10)] == [4]
    check(deliver.InvalidParameter, "22023", 422, lambda: http.set_consumer_group_rate(q, "default", -1))
    check(deliver.QueueNotFound, "42704", 404, lambda: http.resume_consumer_group(q, "nosuch"))


def test_fifo_key_limit(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq(fifo=True)
    http.send_batch(q, [1, 2, 3], ordering_keys=["k"] * 3)
    http.set_fifo_key_limit(q, 2)
    assert [m.payload for m in http.receive(q, 10)] == [1, 2]
    check(deliver.InvalidParameter, "22023", 422, lambda: http.set_fifo_key_limit(q, 0))


def test_send_receive_ack_ids_exact_and_shared_with_sql(
    http: deliver.HttpClient, client: deliver.Client, hq: Callable[..., str]
) -> None:
    q = hq()
    mid = http.send(q, {"order": 1, "big": 2**63 - 1}, headers={"trace": "t"}, ordering_key="k", idempotency_key="i-1")
    assert type(mid) is int and mid == 1
    assert http.send(q, {"order": "again"}, idempotency_key="i-1") == mid
    http.send(q, "later", delay=3600)
    [m] = http.receive(q, 10, visibility_timeout=60, wait=1)
    assert (m.message_id, m.payload, m.headers, m.ordering_key, m.attempt) == (
        mid, {"order": 1, "big": 2**63 - 1}, {"trace": "t"}, "k", 1)
    assert type(m.delivery_id) is int and m.delivery_id > 2**53, "delivery ids beyond 2^53 arrive exact"
    assert m.queue == q and m.consumer_group == "default"
    assert isinstance(m.enqueued_at, datetime) and m.enqueued_at.tzinfo is not None
    assert m.lease_expires_at is not None and m.lease_expires_at - datetime.now(timezone.utc) > timedelta(seconds=50)
    assert http.ack(q, m.delivery_id) is True
    # on the wire ids are JSON strings of digits
    client.send(q, "raw")
    [raw] = http.request("POST", f"/v1/queues/{q}/receive")
    assert isinstance(raw["message_id"], str) and isinstance(raw["delivery_id"], str)
    assert int(raw["delivery_id"]) > 2**53
    # an id received over HTTP acks over SQL, and the other way round
    with pytest.raises(deliver.NotCurrent):
        client.ack(q, int(raw["delivery_id"]) + 1)
    assert client.ack(q, int(raw["delivery_id"])) is True
    client.send(q, "sql")
    [s] = client.receive(q)
    assert http.ack(q, s.delivery_id or 0) is True
    with pytest.raises(TypeError):
        http.ack(q, float(2**60))  # type: ignore[arg-type]
    [metrics] = http.metrics(q)
    assert (metrics.delayed, metrics.acked_total, metrics.sent_total) == (1, 3, 3)


def test_ids_given_back_as_ints_or_strings_of_digits(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    """A single node's ids come as ints; an id goes back as an int or a
    string of digits (what a cluster's gateway sends, "partition:epoch:id",
    this gateway refuses itself)."""
    q = hq(retry_base=0)
    ids = http.send_batch(q, ["a", "b", "c"])
    mid = http.send(q, "d")
    assert all(type(i) is int for i in [*ids, mid])
    assert [type(p.message_id) for p in http.peek(q)] == [int] * 4
    got = http.receive(q, 3)
    assert all(type(m.message_id) is int and type(m.delivery_id) is int for m in got)
    a, b, c = (str(m.delivery_id) for m in got)
    assert http.ack(q, a) is True
    with pytest.raises(deliver.NotCurrent):
        http.ack(q, a)
    assert http.extend_lease(q, b, 60) - datetime.now(timezone.utc) > timedelta(seconds=50)
    assert http.nack(q, b, retry_after=0) is True
    assert http.ack_batch(q, [c]) == 1
    [again] = http.receive(q)
    assert (again.payload, again.attempt, type(again.delivery_id)) == ("b", 2, int)
    assert http.nack(q, str(again.delivery_id), dead_letter=True) is True
    [dead] = http.dead_letters(q)
    assert (dead.message_id, type(dead.message_id)) == (ids[1], int)
    assert http.redrive(q, message_ids=[str(ids[1])]) == 1
    assert http.delete_message(q, str(mid)) is True
    [back] = http.receive(q, 10)
    assert (back.payload, back.attempt, type(back.message_id)) == ("b", 1, int)
    with pytest.raises(deliver.InvalidInput) as e:
        http.ack(q, "0:1:" + str(back.delivery_id))
    assert e.value.status == 400, "a single node's gateway refuses a cluster's id"
    assert http.ack(q, back.delivery_id or 0) is True


def test_ids_that_are_no_ids_are_refused_before_a_request(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    """A string that is neither digits nor partition:epoch:id raises
    InvalidParameter (22023), a float or a bool TypeError, before anything
    is sent: the client of a gateway that cannot be reached would raise
    Unavailable otherwise."""
    nowhere = deliver.HttpClient("http://127.0.0.1:1", TOKEN, timeout=3)
    calls: list[Callable[[Any], Any]] = [
        lambda i: nowhere.ack("q", i),
        lambda i: nowhere.nack("q", i),
        lambda i: nowhere.extend_lease("q", i, 10),
        lambda i: nowhere.ack_batch("q", [1, i]),
        lambda i: nowhere.delete_message("q", i),
        lambda i: nowhere.delete_dead_letters("q", [i]),
        lambda i: nowhere.redrive("q", message_ids=[i]),
        lambda i: nowhere.replay_archive("q", "g", after_id=i),
        lambda i: next(iter(nowhere.stream("q", last_event_id=i))),
    ]
    bad_strings = ["1:2", "a:b:c", "", " 1", "1 ", "-1", "0x1f", "1e3", "\uff11", "1:2:3:4", "1::3", ":1:2",
                   "1234567:1:1", "1:1234567890:1", "1:1:12345678901234567890", "1" * 20, "3:1:42\n"]
    for call in calls:
        for bad in bad_strings:
            with pytest.raises(deliver.InvalidParameter) as e:
                call(bad)
            assert e.value.sqlstate == "22023" and repr(bad) in e.value.message
        for wrong in (1.0, True, b"1"):
            with pytest.raises(TypeError):
                call(wrong)
    # a str is no sequence of ids (its characters would be digits)
    many: list[Callable[[], Any]] = [
        lambda: nowhere.ack_batch("q", "12"),
        lambda: nowhere.redrive("q", message_ids="12"),
        lambda: nowhere.delete_dead_letters("q", "12"),
    ]
    for call_many in many:
        with pytest.raises(TypeError):
            call_many()
    with pytest.raises(deliver.Unavailable):
        nowhere.ack("q", "3:1:42")  # a good one is sent


def test_ids_the_gateway_sends_are_checked() -> None:
    """How the answers' ids are read: digits (or an int) an int, a
    cluster's partition:epoch:id that string, anything else a DeliverError
    (no ValueError from int())."""
    from deliver.http import _id

    assert (_id("42"), _id(42), _id("9223372036854775807")) == (42, 42, 2**63 - 1)
    assert type(_id("42")) is int
    assert _id("3:1:42") == "3:1:42"
    assert _id("999999:999999999:9223372036854775807") == "999999:999999999:9223372036854775807"
    for bad in ("abc", "1:2", "", "-1", " 1", "1.5", "1:2:3:4", "a:b:c", "3:1:42\n", "1" * 20, 1.5, True, None, [1]):
        with pytest.raises(deliver.DeliverError):
            _id(bad)


def test_send_batch_ack_batch_nack_extend(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq(retry_base=0)
    ids = http.send_batch(q, [1, 2, 3], headers=[{"x": 1}, None, None], ordering_keys=["a", None, None],
                          idempotency_keys=[None, "b2", None])
    assert ids == [1, 2, 3]
    assert http.send_batch(q, [9], idempotency_keys=["b2"]) == [2], "a key seen before"
    got = http.receive(q, 3)
    assert [(m.payload, m.ordering_key, m.headers) for m in got] == [(1, "a", {"x": 1}), (2, None, None), (3, None, None)]
    assert http.ack_batch(q, [m.delivery_id or 0 for m in got[:2]]) == 2
    last = got[2]
    exp = http.extend_lease(q, last.delivery_id or 0, 120)
    assert exp - datetime.now(timezone.utc) > timedelta(seconds=100)
    assert http.extend_lease(q, last.delivery_id or 0, timedelta(seconds=30)) < exp
    assert http.nack(q, last.delivery_id or 0, error="later", retry_after=0) is True
    [again] = http.receive(q)
    assert (again.payload, again.attempt) == (3, 2)
    assert http.ack(q, again.delivery_id or 0) is True
    assert http.ack_batch(q, []) == 0
    assert len(http.send_batch(q, ["d"], delay=timedelta(hours=1))) == 1
    assert http.metrics(q)[0].delayed == 1
    with pytest.raises(ValueError):
        http.send_batch(q, [1, 2], ordering_keys=["only one"])


def test_receive_long_polls_until_a_send(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq()
    t0 = time.monotonic()
    threading.Timer(0.3, lambda: http.send(q, "wake")).start()
    got = http.receive(q, wait=8)
    assert [m.payload for m in got] == ["wake"]
    assert time.monotonic() - t0 < 6
    t0 = time.monotonic()
    assert http.receive(q, wait=0.5) == []
    assert time.monotonic() - t0 >= 0.4


def test_dead_letters_redrive_metrics(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq(max_attempts=1, retry_base=0)
    [first, _] = http.send_batch(q, ["x", "y"])
    for m in http.receive(q, 2):
        http.nack(q, m.delivery_id or 0, error=f"no {m.payload}")
    assert http.receive(q) == []
    dead = http.dead_letters(q, consumer_group="default", max_messages=10)
    assert [(d.message_id, d.payload, d.reason, d.last_error, d.attempts, d.consumer_group) for d in dead] == [
        (1, "x", "nacked", "no x", 1, "default"), (2, "y", "nacked", "no y", 1, "default")]
    assert isinstance(dead[0].dead_at, datetime)
    assert len(http.dead_letters(q, max_messages=1)) == 1
    [metrics] = http.metrics(q)
    assert (metrics.dead_letters, metrics.dead_total, metrics.sent_total) == (2, 2, 2)
    assert http.redrive(q, message_ids=[first], consumer_group="default") == 1
    assert [m.payload for m in http.receive(q, 5)] == ["x"]
    assert http.redrive(q) == 1
    [metrics] = http.metrics(q)
    assert (metrics.queue_name, metrics.consumer_group, metrics.depth, metrics.in_flight) == (q, "default", 1, 1)
    assert metrics.dead_letters == 0
    assert isinstance(metrics.oldest_age, timedelta)


def test_errors_typed_with_sqlstate_and_status(http: deliver.HttpClient, client: deliver.Client, hq: Callable[..., str]) -> None:
    q = hq()
    check(deliver.QueueNotFound, "42704", 404, lambda: http.send(unique("missing"), 1))
    check(deliver.QueueNotFound, "42704", 404, lambda: http.receive(q, consumer_group="nogroup"))
    http.send(q, 1)
    [m] = http.receive(q)
    http.ack(q, m.delivery_id or 0)
    e = check(deliver.NotCurrent, "55000", 409, lambda: http.ack(q, m.delivery_id or 0))
    assert e.detail
    with pytest.raises(deliver.NotCurrent) as sql_e:  # the same failure over SQL
        client.ack(q, m.delivery_id or 0)
    assert sql_e.value.sqlstate == "55000" and sql_e.value.message == e.message
    check(deliver.NotCurrent, "55000", 409, lambda: http.extend_lease(q, m.delivery_id or 0, 10))
    check(deliver.NotCurrent, "55000", 409, lambda: http.nack(q, m.delivery_id or 0))
    check(deliver.InvalidParameter, "22023", 422, lambda: http.receive(q, 0))
    check(deliver.InvalidParameter, "22023", 422, lambda: http.create_queue(unique("x"), guarantee="twice"))  # type: ignore[arg-type]
    check(deliver.InvalidName, "42602", 400, lambda: http.create_queue("bad name!"))
    check(deliver.AlreadyExists, "42710", 409, lambda: http.create_queue(q))
    check(deliver.AlreadyExists, "42710", 409, lambda: http.create_consumer_group(q, "default"))
    check(deliver.LimitExceeded, "54000", 413, lambda: http.send(q, 1, ordering_key="k" * 600))
    eo = hq(guarantee="exactly_once")
    check(deliver.NullValueNotAllowed, "22004", 422, lambda: http.send(eo, 1))
    # a gateway error of its own (a wait that is no number of seconds): 400, no SQLSTATE
    with pytest.raises(deliver.InvalidInput) as bad:
        http.receive(q, wait="2 minutes")
    assert bad.value.status == 400


def test_token_auth(http: deliver.HttpClient, client: deliver.Client, hq: Callable[..., str]) -> None:
    q = hq()
    as_role = deliver.HttpClient(HTTP_URL, jwt(role=ROLE))
    check(deliver.PermissionDenied, "42501", 403, lambda: as_role.send(q, 1))
    client.grant_queue(q, ROLE, "send")
    assert type(as_role.send(q, "granted")) is int
    check(deliver.PermissionDenied, "42501", 403, lambda: as_role.receive(q))
    client.revoke_queue(q, ROLE)
    # no token, an expired one, one signed with another secret
    for bad in (None, jwt(role=ROLE, exp=1), jwt("another secret of 32 characters!!", role=ROLE)):
        with pytest.raises(deliver.AuthenticationFailed) as e:
            deliver.HttpClient(HTTP_URL, bad).list_queues()
        assert e.value.status == 401
    # a token function is called per request
    calls = 0

    def token() -> str:
        nonlocal calls
        calls += 1
        return TOKEN

    c = deliver.HttpClient(HTTP_URL, token)
    c.list_queues()
    c.get_queue(q)
    assert calls == 2


def test_unreachable_gateway_is_unavailable() -> None:
    with pytest.raises(deliver.Unavailable) as e:
        deliver.HttpClient("http://127.0.0.1:1", TOKEN, timeout=3).list_queues()
    assert (e.value.sqlstate, e.value.status) == ("08006", None)


def test_consumer_over_http(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq(retry_base=0)
    http.send_batch(q, list(range(6)))
    done: set[int] = set()
    lock = threading.Lock()
    failed = False
    slow_calls = 0

    def handler(m: deliver.Message) -> None:
        nonlocal failed, slow_calls
        if m.payload == 3 and not failed:
            failed = True
            raise RuntimeError("first try fails")
        if m.payload == 5:
            slow_calls += 1
            time.sleep(2.5)  # longer than the 1 s lease: kept by extensions
        with lock:
            done.add(m.payload)

    consumer = deliver.Consumer(http, q, handler, concurrency=3, visibility_timeout=1, wait=1)
    consumer.start()
    wait_until(lambda: len(done) == 6 and consumer.stats.acked == 6, 20, what="every message")
    t0 = time.monotonic()
    consumer.stop()
    consumer.join(10)
    assert time.monotonic() - t0 < 3, "the stop waited at most for one long poll"
    s = consumer.stats
    assert (s.acked, s.nacked, s.lost, s.errors) == (6, 1, 0, [])
    assert s.extended >= 2
    assert slow_calls == 1, "the slow handler's message was not redelivered"
    [metrics] = http.metrics(q)
    assert metrics.depth + metrics.in_flight == 0
    with pytest.raises(TypeError):
        deliver.ExactlyOnceConsumer(http, q, lambda conn, m: None)  # type: ignore[arg-type]


def test_nack_to_dead_letters_redrive_to_queue_delete_message(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq(max_attempts=5)
    to = hq()
    first, second = http.send_batch(q, ["x", "y"], ordering_keys=["k", None])
    [m] = http.receive(q)
    assert http.nack(q, m.delivery_id or 0, error="bad", dead_letter=True) is True
    [d] = http.dead_letters(q)
    assert (d.message_id, d.reason, d.last_error) == (first, "rejected", "bad")
    assert http.redrive(q, to_queue=to) == 1
    [moved] = http.receive(to)
    assert (moved.payload, moved.ordering_key) == ("x", "k")
    with pytest.raises(deliver.QueueNotFound):
        http.redrive(q, to_queue=unique("missing"))
    assert http.delete_message(q, second) is True
    assert http.receive(q, 10) == []
    assert http.delete_message(q, second) is False


def test_reset_consumer_group(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq()
    ids = [http.send(q, i) for i in range(1, 4)]
    for m in http.receive(q, 10):
        http.ack(q, m.delivery_id or 0)
    http.reset_consumer_group(q, "default", "earliest")
    assert [m.message_id for m in http.receive(q, 10)] == ids
    http.reset_consumer_group(q, "default", ids[2])
    assert [m.message_id for m in http.receive(q, 10)] == ids[2:]
    http.reset_consumer_group(q, "default", "latest")
    assert http.receive(q, 10) == []
    with pytest.raises(deliver.QueueNotFound):
        http.reset_consumer_group(q, "nobody", "latest")


def test_replay_archive(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq()
    http.alter_queue(q, archive_retention=86400)
    http.create_consumer_group(q, "audit")
    put_in_archive(q)
    first = http.replay_archive(q, "audit", max_messages=1)
    assert first == deliver.Replayed(1, 7)
    second = http.replay_archive(
        q, "audit", since=datetime.now(timezone.utc) - timedelta(hours=2), after_id=first.last_id
    )
    assert second == deliver.Replayed(1, 8)
    assert http.replay_archive(q, "audit", after_id=8) == deliver.Replayed(0, None)
    got = http.receive(q, 10, consumer_group="audit")
    assert [m.payload for m in got] == [{"n": 7}, {"n": 8}]
    assert (got[0].ordering_key, got[0].headers) == ("k", {"h": 1})
    assert http.receive(q, 10) == []
    with pytest.raises(deliver.InvalidInput):
        http.replay_archive(q, "audit", max_messages=0)
    with pytest.raises(deliver.QueueNotFound):
        http.replay_archive(q, "nobody")
    plain = hq()
    with pytest.raises(deliver.NotCurrent) as e:
        http.replay_archive(plain, "default")
    assert e.value.sqlstate == "55000"


def test_stream(http: deliver.HttpClient, hq: Callable[..., str]) -> None:
    q = hq()
    ids = http.send_batch(q, [{"n": i} for i in range(3)], ordering_keys=["a", None, "c"])
    got: list[deliver.Message] = []
    for m in http.stream(q, max_messages=10):
        got.append(m)
        if len(got) == 3:
            break
    assert [m.message_id for m in got] == ids
    assert [(m.payload, m.ordering_key, m.attempt, m.queue) for m in got] == [
        ({"n": 0}, "a", 1, q), ({"n": 1}, None, 1, q), ({"n": 2}, "c", 1, q)]
    assert all(isinstance(m.delivery_id, int) and m.enqueued_at for m in got)

    def settled() -> bool:
        m = http.metrics(q)[0]
        return (m.depth, m.in_flight, m.acked_total) == (0, 0, 3)

    wait_until(settled, what="the streamed messages acked by the gateway")

    # resume: a message seen but whose ack was lost (its lease ran out) is
    # acked, not sent again, when the stream resumes after it (another
    # queue: the gateway may still be serving the stream left above until
    # its next keep-alive finds the client gone)
    q2 = hq()
    m1 = http.send(q2, "seen")
    assert [m.message_id for m in http.receive(q2, visibility_timeout=0.3)] == [m1]
    time.sleep(0.8)
    m2 = http.send(q2, "new")
    first = next(iter(http.stream(q2, last_event_id=m1)))
    assert (first.message_id, first.payload) == (m2, "new")
    wait_until(lambda: http.metrics(q2)[0].acked_total == 2, what="both acked")

    check(deliver.QueueNotFound, "42704", 404, lambda: next(iter(http.stream(unique("none")))))
    with pytest.raises(TypeError):
        next(iter(http.stream(q, last_event_id=1.0)))  # type: ignore[arg-type]
    with pytest.raises(deliver.InvalidParameter):
        next(iter(http.stream(q, last_event_id="1:2")))
    # a token that expires ends the stream: the generator returns
    short = deliver.HttpClient(HTTP_URL, jwt(role=os.environ.get("PGUSER") or getpass.getuser(),
                                            exp=int(time.time()) + 2), timeout=15)
    t0 = time.monotonic()
    assert list(short.stream(hq())) == []
    assert time.monotonic() - t0 < 10
