"""HttpClient against a cluster's gateway (test.sh starts it, see
clients/test-gateways.sh: DELIVER_CLUSTER_URL, and DELIVER_CLUSTER_QUEUE, a
queue of 4 partitions on 2 shards with every right for DELIVER_TEST_ROLE):
its ids are strings "partition:epoch:id", kept as such and given back as
such, through send, send_batch, receive, ack, ack_batch, nack,
extend_lease, peek, dead letters, redrive, delete_message, the stream and a
Consumer; ids that are no ids are refused before a request.

The tests share the queue: each drains it first, and tells its own messages
by a tag in their payloads (a message a failed test left leased comes back
later, and is acked as a stranger)."""

from __future__ import annotations

import getpass
import os
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from conftest import JWT_SECRET, ROLE, jwt, wait_until

import deliver

CLUSTER_URL = os.environ.get("DELIVER_CLUSTER_URL", "")
QUEUE = os.environ.get("DELIVER_CLUSTER_QUEUE", "")
if not CLUSTER_URL or not QUEUE or not JWT_SECRET:
    raise RuntimeError(
        "DELIVER_CLUSTER_URL, DELIVER_CLUSTER_QUEUE and DELIVER_TEST_JWT_SECRET must be set "
        "(test.sh starts a cluster's gateway: clients/test-gateways.sh)"
    )

#: a cluster's id: partition, epoch (the placement), the id on its shard
CLUSTER_ID = re.compile(r"^[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}$")
PARTITIONS = 4


def is_cluster_id(v: object) -> bool:
    return isinstance(v, str) and CLUSTER_ID.match(v) is not None


def partition(v: deliver.Id) -> int:
    assert isinstance(v, str), v
    return int(v.split(":")[0])


@pytest.fixture
def http() -> deliver.HttpClient:
    return deliver.HttpClient(CLUSTER_URL, jwt(role=ROLE, exp=int(time.time()) + 3600), timeout=15)


@pytest.fixture
def admin() -> deliver.HttpClient:
    """A token of the database user deliverd logs in as (a superuser): for
    deliver's functions that are not for PUBLIC (delete_message,
    delete_dead_letters, redrive, create_consumer_group...), whose EXECUTE
    grant_queue does not give on the shards."""
    return deliver.HttpClient(
        CLUSTER_URL, jwt(role=os.environ.get("PGUSER") or getpass.getuser(), exp=int(time.time()) + 3600), timeout=15
    )


@pytest.fixture
def tag(http: deliver.HttpClient) -> str:
    """The queue drained (received and acked until empty), and a tag for
    this test's payloads."""
    for _ in range(100):
        got = http.receive(QUEUE, 100)
        if not got:
            break
        assert http.ack_batch(QUEUE, [m.delivery_id for m in got if m.delivery_id is not None]) == len(got)
    else:
        raise AssertionError(f"{QUEUE} does not drain")
    return uuid.uuid4().hex


def mine(tag: str, m: deliver.Message) -> bool:
    return isinstance(m.payload, dict) and m.payload.get("tag") == tag


def receive_mine(http: deliver.HttpClient, tag: str, count: int, timeout: float = 10.0, **kw: Any) -> list[deliver.Message]:
    """Receive until count messages of this test came (each at most once);
    strangers are acked."""
    got: list[deliver.Message] = []
    end = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < end, f"{len(got)} of {count} messages came within {timeout}s"
        for m in http.receive(QUEUE, count - len(got), wait=1, **kw):
            if mine(tag, m):
                got.append(m)
            elif m.delivery_id is not None and not kw.get("consumer_group"):
                http.ack(QUEUE, m.delivery_id)
    return got


def test_send_gives_cluster_ids_over_partitions(http: deliver.HttpClient, tag: str) -> None:
    by_key: dict[str, list[deliver.Id]] = {}
    for i in range(20):
        key = f"{tag}-key-{i}"
        by_key[key] = [http.send(QUEUE, {"tag": tag, "n": i}, ordering_key=key) for _ in range(2)]
    ids = [i for pair in by_key.values() for i in pair]
    assert all(is_cluster_id(i) for i in ids), ids
    assert len(set(ids)) == 40
    assert len({partition(i) for i in ids}) > 1, f"20 keys on one partition: {ids}"
    assert all(0 <= partition(i) < PARTITIONS for i in ids)
    assert all(partition(a) == partition(b) for a, b in by_key.values()), "a key's messages share its partition"
    # without a key: the next partition in turn
    unkeyed = [http.send(QUEUE, {"tag": tag, "n": 100 + i}) for i in range(8)]
    assert all(is_cluster_id(i) for i in unkeyed)
    assert len({partition(i) for i in unkeyed}) > 1
    got = receive_mine(http, tag, 48)
    assert sorted(str(m.message_id) for m in got) == sorted(map(str, ids + unkeyed))
    assert http.ack_batch(QUEUE, [m.delivery_id for m in got if m.delivery_id is not None]) == 48


def test_priorities_in_cluster_mode(http: deliver.HttpClient, admin: deliver.HttpClient, tag: str) -> None:
    """send, send_batch and publish pass a message's priority to its
    partition's queue (the shard's deliver answers, 55000 for a queue
    without priorities); create_queue and alter_queue set the switch on
    every partition, and one partition hands out by priority."""
    with pytest.raises(deliver.NotCurrent) as e:
        http.send(QUEUE, {"tag": tag}, priority=3)
    assert e.value.sqlstate == "55000"
    with pytest.raises(deliver.NotCurrent) as e:
        http.send_batch(QUEUE, [{"tag": tag}], priority=3)
    assert e.value.sqlstate == "55000"
    out_of_range: list[Callable[[], object]] = [
        lambda: http.send(QUEUE, {"tag": tag}, priority=10),
        lambda: http.send_batch(QUEUE, [{"tag": tag}], priority=10),
        lambda: http.publish("prio.x", {"tag": tag}, priority=10),
    ]
    for call in out_of_range:
        with pytest.raises(deliver.InvalidParameter):
            call()
    sent = [http.send(QUEUE, {"tag": tag, "n": 1}, priority=0)]
    sent += http.send_batch(QUEUE, [{"tag": tag, "n": 2}], priority=0)
    got = receive_mine(http, tag, 2)
    assert sorted(str(m.message_id) for m in got) == sorted(map(str, sent))
    assert http.ack_batch(QUEUE, [m.delivery_id for m in got if m.delivery_id is not None]) == 2

    pq = f"{QUEUE}_prio"
    admin.create_queue(pq, priorities=True)
    try:
        # get_queue: a node's answer (partition 0's settings and groups)
        info = admin.get_queue(pq)
        assert (info.queue_name, info.priorities, info.guarantee, info.consumer_groups) == (
            pq,
            True,
            "at_least_once",
            ["default"],
        )
        key = "one-partition"
        admin.send(pq, "low", ordering_key=key, priority=1)
        admin.send_batch(pq, ["mid"], ordering_keys=[key], priority=5)
        admin.bind("prio.#", pq)
        assert [p.queue_name for p in admin.publish("prio.x", "high", ordering_key=key, priority=9)] == [pq]
        admin.send(pq, "none", ordering_key=key)
        got = admin.receive(pq, 10)
        assert [m.payload for m in got] == ["high", "mid", "low", "none"]
        assert admin.ack_batch(pq, [m.delivery_id for m in got if m.delivery_id is not None]) == 4
        admin.alter_queue(pq, priorities=False)
        assert admin.get_queue(pq).priorities is False
        with pytest.raises(deliver.NotCurrent) as e:
            admin.send(pq, "x", ordering_key=key, priority=2)
        assert e.value.sqlstate == "55000"
    finally:
        admin.unbind("prio.#", pq)
        admin.drop_queue(pq)


def test_send_batch_ids_in_order(http: deliver.HttpClient, tag: str) -> None:
    payloads = [{"tag": tag, "n": i} for i in range(10)]
    ids = http.send_batch(QUEUE, payloads, ordering_keys=[f"{tag}-{i}" for i in range(10)])
    assert len(ids) == 10 and all(is_cluster_id(i) for i in ids), ids
    assert len(set(ids)) == 10
    assert len({partition(i) for i in ids}) > 1, "the batch went to more than one partition (so shard)"
    got = {m.message_id: m for m in receive_mine(http, tag, 10)}
    assert set(got) == set(ids)
    assert [got[i].payload for i in ids] == payloads, "the ids in the order of the payloads"
    assert [got[i].ordering_key for i in ids] == [f"{tag}-{i}" for i in range(10)]
    assert http.ack_batch(QUEUE, [m.delivery_id for m in got.values() if m.delivery_id is not None]) == 10


def test_receive_and_ack(http: deliver.HttpClient, tag: str) -> None:
    sent = {http.send(QUEUE, {"tag": tag, "n": i}, headers={"h": i}, ordering_key=f"{tag}-{i}"): i for i in range(3)}
    got = receive_mine(http, tag, 3, visibility_timeout=60)
    assert {m.message_id: m.payload for m in got} == {mid: {"tag": tag, "n": i} for mid, i in sent.items()}
    for m in got:
        assert is_cluster_id(m.message_id) and is_cluster_id(m.delivery_id), (m.message_id, m.delivery_id)
        assert partition(m.delivery_id or "") == partition(m.message_id), "a delivery of the message's partition"
        assert m.delivery_id != m.message_id
        assert (m.attempt, m.headers, m.queue, m.consumer_group) == (1, {"h": m.payload["n"]}, QUEUE, "default")
        assert m.lease_expires_at is not None and m.lease_expires_at - datetime.now(timezone.utc) > timedelta(seconds=50)
        assert isinstance(m.enqueued_at, datetime)
    first = got[0].delivery_id
    assert first is not None
    assert http.ack(QUEUE, first) is True
    # acked: the same id again is no current delivery, as on one node
    with pytest.raises(deliver.NotCurrent) as e:
        http.ack(QUEUE, first)
    assert (e.value.sqlstate, e.value.status) == ("55000", 409)
    assert http.ack_batch(QUEUE, [m.delivery_id for m in got[1:] if m.delivery_id is not None]) == 2
    assert [m for m in http.receive(QUEUE, 10) if mine(tag, m)] == []


def test_nack_then_received_again_and_extend_lease(http: deliver.HttpClient, tag: str) -> None:
    mid = http.send(QUEUE, {"tag": tag, "n": 1}, ordering_key=f"{tag}-k")
    [m] = receive_mine(http, tag, 1, visibility_timeout=5)
    assert (m.message_id, m.attempt) == (mid, 1)
    did = m.delivery_id
    assert is_cluster_id(did) and did is not None
    exp = http.extend_lease(QUEUE, did, 120)
    assert exp - datetime.now(timezone.utc) > timedelta(seconds=100)
    assert m.lease_expires_at is not None and exp > m.lease_expires_at
    assert http.extend_lease(QUEUE, did, timedelta(seconds=30)) < exp
    assert http.nack(QUEUE, did, error="again", retry_after=0) is True
    with pytest.raises(deliver.NotCurrent):
        http.extend_lease(QUEUE, did, 10)
    [again] = receive_mine(http, tag, 1)
    assert (again.message_id, again.attempt, again.payload) == (mid, 2, {"tag": tag, "n": 1})
    assert is_cluster_id(again.delivery_id) and again.delivery_id != did
    with pytest.raises(deliver.NotCurrent):
        http.ack(QUEUE, did)
    assert http.ack(QUEUE, again.delivery_id or "") is True


def test_ack_batch_over_shards(http: deliver.HttpClient, tag: str) -> None:
    http.send_batch(QUEUE, [{"tag": tag, "n": i} for i in range(12)], ordering_keys=[f"{tag}-{i}" for i in range(12)])
    got = receive_mine(http, tag, 12)
    dids = [m.delivery_id for m in got if m.delivery_id is not None]
    assert len(dids) == 12 and all(is_cluster_id(d) for d in dids)
    assert len({partition(d) for d in dids}) > 1
    assert http.ack_batch(QUEUE, dids) == 12
    assert [m for m in http.receive(QUEUE, 20) if mine(tag, m)] == []
    with pytest.raises(deliver.NotCurrent):
        http.ack_batch(QUEUE, dids[:1])
    assert http.ack_batch(QUEUE, []) == 0


def test_peek_dead_letters_redrive_delete(http: deliver.HttpClient, admin: deliver.HttpClient, tag: str) -> None:
    keep, drop = http.send_batch(QUEUE, [{"tag": tag, "n": 1}, {"tag": tag, "n": 2}],
                                 ordering_keys=[f"{tag}-a", f"{tag}-b"])
    peeked = [p for p in http.peek(QUEUE, 100) if isinstance(p.payload, dict) and p.payload.get("tag") == tag]
    assert sorted(map(str, (p.message_id for p in peeked))) == sorted([str(keep), str(drop)])
    assert all(is_cluster_id(p.message_id) and p.attempt == 1 and not p.redelivery for p in peeked)
    # a message deleted is received by nobody
    assert admin.delete_message(QUEUE, drop) is True
    assert admin.delete_message(QUEUE, drop) is False
    [m] = receive_mine(http, tag, 1)
    assert m.message_id == keep
    assert http.nack(QUEUE, m.delivery_id or "", error="bad", dead_letter=True) is True
    dead = [d for d in http.dead_letters(QUEUE, max_messages=1000) if d.message_id == keep]
    assert [(d.reason, d.last_error, d.payload) for d in dead] == [("rejected", "bad", {"tag": tag, "n": 1})]
    assert admin.redrive(QUEUE, message_ids=[keep]) == 1
    assert [d for d in http.dead_letters(QUEUE, max_messages=1000) if d.message_id == keep] == []
    [back] = receive_mine(http, tag, 1)
    assert (back.payload, back.attempt) == ({"tag": tag, "n": 1}, 1)
    assert is_cluster_id(back.message_id) and partition(back.message_id) == partition(keep), "back in its partition"
    assert http.nack(QUEUE, back.delivery_id or "", error="worse", dead_letter=True) is True
    assert [d.last_error for d in http.dead_letters(QUEUE, max_messages=1000) if d.message_id == back.message_id] == [
        "worse"]
    assert admin.delete_dead_letters(QUEUE, [back.message_id]) == 1
    assert admin.delete_dead_letters(QUEUE, [back.message_id]) == 0
    assert [d for d in http.dead_letters(QUEUE, max_messages=1000) if d.message_id == back.message_id] == []


def test_stream_yields_cluster_ids_and_acks(http: deliver.HttpClient, admin: deliver.HttpClient, tag: str) -> None:
    # a consumer group of its own: the stream the gateway may still serve
    # until its next keep-alive finds the client gone takes nothing from
    # the default group the other tests use
    group = "s" + tag[:12]
    admin.create_consumer_group(QUEUE, group)
    try:
        sent = [http.send(QUEUE, {"tag": tag, "n": i}, ordering_key=f"{tag}-{i}") for i in range(3)]
        got: list[deliver.Message] = []
        for m in http.stream(QUEUE, max_messages=10, visibility_timeout=1, consumer_group=group):
            assert mine(tag, m), m
            got.append(m)
            if len(got) == 3:
                break
        assert sorted(map(str, (m.message_id for m in got))) == sorted(map(str, sent))
        assert all(is_cluster_id(m.message_id) and is_cluster_id(m.delivery_id) for m in got)
        assert all(m.consumer_group == group and m.attempt == 1 for m in got)
        # acked by the gateway: with a lease of 1 s, a message not acked
        # would be there again by now
        time.sleep(2.5)
        assert http.receive(QUEUE, 10, consumer_group=group, wait=1) == []
        assert http.peek(QUEUE, 10, consumer_group=group) == []
        # resume after the last message seen (a cluster id as Last-Event-ID)
        later = http.send(QUEUE, {"tag": tag, "n": 9})
        first = next(iter(http.stream(QUEUE, consumer_group=group, last_event_id=got[-1].message_id)))
        assert (first.message_id, first.payload) == (later, {"tag": tag, "n": 9})
    finally:
        admin.drop_consumer_group(QUEUE, group)
    # the default group had them too
    got_default = receive_mine(http, tag, 4)
    assert http.ack_batch(QUEUE, [m.delivery_id for m in got_default if m.delivery_id is not None]) == 4


def test_consumer_over_a_cluster(http: deliver.HttpClient, tag: str) -> None:
    sent = http.send_batch(QUEUE, [{"tag": tag, "n": i} for i in range(6)], ordering_keys=[f"{tag}-{i}" for i in range(6)])
    done: dict[deliver.Id, int] = {}
    lock = threading.Lock()
    failed = False

    def handler(m: deliver.Message) -> None:
        nonlocal failed
        if not mine(tag, m):
            return
        if m.payload["n"] == 2 and not failed:
            failed = True
            raise RuntimeError("first try fails")
        with lock:
            done[m.message_id] = m.payload["n"]

    # visibility_timeout given: a cluster's gateway answers GET /v1/queues/{q}
    # with the queue's name and creation time only
    consumer = deliver.Consumer(http, QUEUE, handler, concurrency=3, visibility_timeout=30, wait=1, retry_after=0)
    consumer.start()
    try:
        wait_until(lambda: len(done) == 6, 20, what="every message handled")
    finally:
        consumer.stop()
        consumer.join(10)
    assert sorted(map(str, done)) == sorted(map(str, sent))
    assert all(is_cluster_id(i) for i in done)
    s = consumer.stats
    assert s.nacked == 1 and s.acked >= 6 and s.lost == 0 and s.errors == []
    assert [m for m in http.receive(QUEUE, 20) if mine(tag, m)] == []


def test_ids_that_are_no_ids_are_refused_before_a_request(
    http: deliver.HttpClient, admin: deliver.HttpClient, tag: str
) -> None:
    nowhere = deliver.HttpClient("http://127.0.0.1:1", "token", timeout=3)
    calls: list[Callable[[deliver.HttpClient, Any], Any]] = [
        lambda c, i: c.ack(QUEUE, i),
        lambda c, i: c.nack(QUEUE, i, retry_after=0),
        lambda c, i: c.extend_lease(QUEUE, i, 10),
        lambda c, i: c.ack_batch(QUEUE, ["0:1:1", i]),
        lambda c, i: c.delete_message(QUEUE, i),
        lambda c, i: c.delete_dead_letters(QUEUE, [i]),
        lambda c, i: c.redrive(QUEUE, message_ids=[i]),
        lambda c, i: next(iter(c.stream(QUEUE, last_event_id=i))),
    ]
    for c in (http, nowhere):
        for call in calls:
            for bad in ("1:2", "a:b:c", "1:2:3:4", "1:2:x", "1234567:1:1", " 0:1:1"):
                with pytest.raises(deliver.InvalidParameter) as e:
                    call(c, bad)
                assert e.value.sqlstate == "22023" and e.value.status is None, "refused by the client"
    # the gateway itself refuses what is no cluster id, an int among them
    mid = http.send(QUEUE, {"tag": tag})
    with pytest.raises(deliver.InvalidInput) as refused:
        admin.delete_message(QUEUE, 42)
    assert refused.value.status == 400
    assert admin.delete_message(QUEUE, mid) is True
