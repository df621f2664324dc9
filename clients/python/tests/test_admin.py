"""Dead letters and redrive, the archive, metrics, alerts and privileges
over SQL."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable

import psycopg
import pytest
from conftest import DSN, ROLE, put_in_archive, unique

import deliver


def test_dead_letters_by_group_and_max_and_redrive(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue(max_attempts=1, retry_base=0)
    client.create_consumer_group(q, "g2")
    ids = client.send_batch(q, [1, 2, 3], headers=[{"h": 1}, None, None], ordering_keys=["k", None, None])
    for group in ("default", "g2"):
        for m in client.receive(q, 3, consumer_group=group):
            assert m.delivery_id is not None
            assert client.nack(q, m.delivery_id, error=f"e{m.payload}") is True
        assert client.receive(q, 3, consumer_group=group) == []
    dead = client.dead_letters(q)
    assert len(dead) == 6
    g2 = client.dead_letters(q, consumer_group="g2")
    assert [(d.message_id, d.payload, d.consumer_group) for d in g2] == [(ids[i], i + 1, "g2") for i in range(3)]
    d = g2[0]
    assert (d.reason, d.last_error, d.attempts, d.headers, d.ordering_key) == ("nacked", "e1", 1, {"h": 1}, "k")
    assert isinstance(d.dead_at, datetime) and isinstance(d.enqueued_at, datetime) and d.dead_at >= d.enqueued_at
    assert len(client.dead_letters(q, max_messages=2)) == 2
    by_group = {r.consumer_group: r for r in client.metrics(q)}
    assert [(by_group[g].dead_letters, by_group[g].dead_total) for g in ("default", "g2")] == [(3, 3), (3, 3)]
    # redrive one message of one group, then all the rest
    assert client.redrive(q, message_ids=[ids[0]], consumer_group="g2") == 1
    back = client.receive(q, 10, consumer_group="g2")
    assert [b.payload for b in back] == [1]
    assert back[0].message_id != ids[0], "a redriven message is a new message"
    assert (back[0].headers, back[0].ordering_key, back[0].attempt) == ({"h": 1}, "k", 1)
    assert client.redrive(q) == 5
    assert sorted(m.payload for m in client.receive(q, 10)) == [1, 2, 3]
    assert client.dead_letters(q) == []
    with pytest.raises(deliver.QueueNotFound):
        client.redrive(q, consumer_group="nogroup")


def test_lease_expired_dead_letter(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue(max_attempts=1, retry_base=0)
    client.send(q, "slow")
    [m] = client.receive(q, visibility_timeout=0.2)
    time.sleep(0.4)
    assert client.receive(q) == []  # the receive moves the expired last attempt to the dead letters
    [d] = client.dead_letters(q)
    assert (d.message_id, d.reason, d.last_error, d.attempts) == (m.message_id, "lease expired", None, 1)


def test_archive(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue()
    client.alter_queue(q, archive_retention="1 day")
    assert client.get_queue(q).archive_retention == timedelta(days=1)
    ids = client.send_batch(q, [{"n": 1}, {"n": 2}], ordering_keys=["k", None], headers=[None, {"h": 1}])
    got = client.receive(q, 2)
    assert client.ack_batch(q, [m.delivery_id or 0 for m in got]) == 2
    # maintain rotates, closes and truncates the segment, archiving it; the
    # empty receives move the cursor on
    archived: list[deliver.ArchivedMessage] = []
    with psycopg.connect(DSN, autocommit=True, options="-c deliver.rotation_interval=1ms") as fast:
        fc = deliver.Client(fast)
        for _ in range(200):
            fc.maintain(q)
            fc.receive(q)
            archived = client.archived(q, max_messages=10)
            if len(archived) >= 2:
                break
            time.sleep(0.05)
    assert [a.message_id for a in archived] == ids
    assert archived[0].payload == {"n": 1} and archived[0].ordering_key == "k"
    assert archived[1].headers == {"h": 1}
    assert isinstance(archived[0].archived_at, datetime)
    assert [a.message_id for a in client.archived(q, after_id=ids[0])] == [ids[1]]
    assert len(client.archived(q, max_messages=1)) == 1
    client.alter_queue(q, archive_retention=0)
    assert client.get_queue(q).archive_retention is None


def test_metrics(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue()
    client.create_consumer_group(q, "other")
    client.send_batch(q, [1, 2, 3])
    client.send(q, 4, delay=600)
    [m] = client.receive(q)
    rows = {r.consumer_group: r for r in client.metrics(q)}
    assert set(rows) == {"default", "other"}
    d, o = rows["default"], rows["other"]
    assert d.queue_name == q
    assert (d.depth, d.in_flight, d.delayed, d.dead_letters, d.sent_total, d.acked_total) == (2, 1, 1, 0, 3, 0)
    assert (o.depth, o.in_flight) == (3, 0)
    assert isinstance(d.oldest_age, timedelta)
    # no maintenance worker serves this database
    assert (d.worker_last_run, d.worker_lag, d.worker_errors) == (None, None, None)
    client.ack(q, m.delivery_id or 0)
    assert {r.consumer_group: r for r in client.metrics(q)}["default"].acked_total == 1
    assert any(r.queue_name == q for r in client.metrics())


def test_alerts(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue()
    client.set_alert(q, "depth", 100)
    client.set_alert(q, "oldest_age", 2.5)
    client.set_alert(q, "dead_letters", Decimal("0"))
    alerts = {a.metric: a for a in client.list_alerts(q)}
    assert {k: (a.threshold, a.firing) for k, a in alerts.items()} == {
        "depth": (Decimal(100), False),
        "oldest_age": (Decimal("2.5"), False),
        "dead_letters": (Decimal(0), False),
    }
    assert all(a.queue_name == q for a in alerts.values())
    client.set_alert(q, "depth", 50)  # changed
    assert {a.metric: a.threshold for a in client.list_alerts(q)}["depth"] == Decimal(50)
    client.set_alert(q, "depth", None)  # removed
    assert sorted(a.metric for a in client.list_alerts(q)) == ["dead_letters", "oldest_age"]
    assert any(a.queue_name == q for a in client.list_alerts())
    with pytest.raises(TypeError):
        client.set_alert(q, "depth", True)


def test_grants_and_privileges(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue()
    client.grant_queue(q, ROLE, "send")
    assert client.list_grants(q) == [deliver.Grant(q, ROLE, "send")]
    client.grant_queue(q, ROLE, "receive")
    assert sorted(g.privilege for g in client.list_grants(q)) == ["receive", "send"]
    assert any(g.queue_name == q for g in client.list_grants())
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'SET ROLE "{ROLE}"')
        as_role = deliver.Client(conn)
        assert as_role.has_queue_privilege(q, "send") is True
        assert as_role.has_queue_privilege(q, "all") is True
        mid = as_role.send(q, "from the role")
        [m] = as_role.receive(q)
        assert m.message_id == mid and as_role.ack(q, m.delivery_id or 0) is True
        client.revoke_queue(q, ROLE, "receive")
        assert as_role.has_queue_privilege(q, "receive") is False
        assert as_role.has_queue_privilege(q, "send") is True
        with pytest.raises(deliver.PermissionDenied):
            as_role.receive(q)
    assert client.list_grants(q) == [deliver.Grant(q, ROLE, "send")]
    client.revoke_queue(q, ROLE)
    assert client.list_grants(q) == []
    assert client.has_queue_privilege(q, "all") is True  # the owner
    other = make_queue()
    client.grant_queue(other, ROLE)  # all by default
    assert sorted(g.privilege for g in client.list_grants(other)) in (["all"], ["receive", "send"])
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'SET ROLE "{ROLE}"')
        assert deliver.Client(conn).has_queue_privilege(other, "all") is True
    client.revoke_queue(other, ROLE)


def test_list_queues_reports_settings(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue(fifo=True, max_attempts=9)
    [info] = [x for x in client.list_queues() if x.queue_name == q]
    assert info == client.get_queue(q)
    assert (info.fifo, info.max_attempts) == (True, 9)
    with pytest.raises(deliver.QueueNotFound):
        client.get_queue(unique("missing"))


def test_lease_slots_maintain_and_push_subscriptions(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    s = client.lease_slots()
    assert s.total > 0 and 0 <= s.free <= s.total and s.max_per_queue > 0 and s.queues >= 0
    q = make_queue()
    [r] = client.maintain(q)
    assert r.queue == q and isinstance(r.rotated, bool) and r.truncated >= 0 and r.archived == 0
    assert any(x.queue == q for x in client.maintain())
    with pytest.raises(deliver.QueueNotFound):
        client.maintain(unique("missing"))
    sub = unique("sub")
    lsn = client.create_push_subscription(q, sub)
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", lsn)
    [p] = [x for x in client.list_push_subscriptions() if x.subscription_name == sub]
    assert (p.queue_name, p.consumer_group, p.active) == (q, None, False)
    assert isinstance(p.created_at, datetime)
    [m] = [x for x in client.push_metrics() if x.subscription_name == sub]
    assert m.queue_name == q and isinstance(m.lag_bytes, Decimal)
    with pytest.raises(deliver.AlreadyExists):
        client.create_push_subscription(q, sub)
    assert client.drop_push_subscription(sub) is True
    with pytest.raises(deliver.QueueNotFound):
        client.drop_push_subscription(sub)
    g = unique("sub")
    client.create_push_subscription(q, g, consumer_group="default")
    assert [x.consumer_group for x in client.list_push_subscriptions() if x.subscription_name == g] == ["default"]
    assert client.drop_push_subscription(g) is True


def test_nack_to_dead_letters_redrive_to_queue_delete_message(
    client: deliver.Client, make_queue: Callable[..., str]
) -> None:
    q = make_queue(max_attempts=5)
    to = make_queue()
    first, second = client.send_batch(q, [1, 2], headers=[{"h": 1}, None], ordering_keys=["k", None])
    [m] = client.receive(q)
    assert m.delivery_id is not None
    assert client.nack(q, m.delivery_id, error="bad", dead_letter=True) is True
    [d] = client.dead_letters(q)
    assert (d.message_id, d.reason, d.last_error, d.attempts) == (first, "rejected", "bad", 1)
    with pytest.raises(deliver.DeliverError) as e:
        client.nack(q, m.delivery_id, dead_letter=True)
    assert e.value.sqlstate == "55000"
    assert client.redrive(q, to_queue=to) == 1
    assert client.dead_letters(q) == []
    [moved] = client.receive(to)
    assert (moved.payload, moved.headers, moved.ordering_key, moved.attempt) == (1, {"h": 1}, "k", 1)
    with pytest.raises(deliver.DeliverError) as e:
        client.redrive(q, to_queue=q)
    assert e.value.sqlstate == "22023"
    # the second message: deleted before any receive reached it
    assert client.delete_message(q, second) is True
    assert client.receive(q, 10) == []
    assert client.delete_message(q, second) is False
    assert client.delete_message(q, 999999) is False


def test_reset_consumer_group(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue()
    ids = [client.send(q, i) for i in range(1, 4)]
    for m in client.receive(q, 10):
        assert m.delivery_id is not None
        client.ack(q, m.delivery_id)
    client.reset_consumer_group(q, "default", "earliest")
    got = client.receive(q, 10)
    assert [m.message_id for m in got] == ids
    client.reset_consumer_group(q, "default", "latest")
    assert got[0].delivery_id is not None
    with pytest.raises(deliver.DeliverError) as e:
        client.ack(q, got[0].delivery_id)
    assert e.value.sqlstate == "55000"
    assert client.receive(q, 10) == []
    client.reset_consumer_group(q, "default", ids[1])
    assert [m.message_id for m in client.receive(q, 10)] == ids[1:]
    client.reset_consumer_group(q, "default", datetime.now().astimezone() + timedelta(hours=1))
    assert client.receive(q, 10) == []
    with pytest.raises(deliver.DeliverError) as e:
        client.reset_consumer_group(q, "default", 0)
    assert e.value.sqlstate == "22023"
    with pytest.raises(ValueError):
        client.reset_consumer_group(q, "default", datetime.now())


def test_replay_archive(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    q = make_queue()
    client.alter_queue(q, archive_retention="1 day")
    client.create_consumer_group(q, "audit")
    put_in_archive(q)
    first = client.replay_archive(q, "audit", max_messages=1)
    assert first == deliver.Replayed(replayed=1, last_id=7)
    second = client.replay_archive(
        q, "audit", since=datetime.now().astimezone() - timedelta(hours=2), after_id=first.last_id
    )
    assert second == deliver.Replayed(1, 8)
    assert client.replay_archive(q, "audit", after_id=8) == deliver.Replayed(0, None)
    got = client.receive(q, 10, consumer_group="audit")
    assert [m.payload for m in got] == [{"n": 7}, {"n": 8}]
    assert (got[0].ordering_key, got[0].headers, got[0].attempt) == ("k", {"h": 1}, 1)
    assert got[0].enqueued_at < datetime.now().astimezone() - timedelta(minutes=30)
    assert client.receive(q, 10) == [], "the other groups get nothing"
    with pytest.raises(deliver.InvalidInput) as e:
        client.replay_archive(q, "audit", max_messages=0)
    assert e.value.sqlstate == "22023"
    with pytest.raises(deliver.InvalidInput) as e:
        client.replay_archive(q, "audit", since=datetime.now().astimezone() - timedelta(days=2))
    assert e.value.sqlstate == "22023"
    with pytest.raises(deliver.QueueNotFound):
        client.replay_archive(q, "nobody")
    with pytest.raises(TypeError):
        client.replay_archive(q, "audit", after_id="7")
    plain = make_queue()
    with pytest.raises(deliver.NotCurrent) as not_current:
        client.replay_archive(plain, "default")
    assert not_current.value.sqlstate == "55000"
