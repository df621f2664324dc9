"""A queue's ack_commit from every client (Client, AsyncClient, HttpClient):
create_queue and alter_queue set it, list_queues and get_queue show it
("durable" by default); "async" is refused on exactly-once and at-most-once
queues (0A000), bad values are InvalidParameter (22023); the acks of an
async queue finish their messages."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import DSN, HTTP_URL, ROLE, jwt, sql, unique

import deliver


def stored(q: str) -> Any:
    rows = sql("SELECT ack_commit FROM deliver.queue WHERE queue_name = %s", q)
    return rows[0][0] if rows else None


def test_default_async_and_alter(anyclient: Any) -> None:
    c = anyclient
    plain, q = unique("ackd"), unique("acka")
    c.create_queue(plain)
    c.create_queue(q, ack_commit="async")
    try:
        assert c.get_queue(plain).ack_commit == "durable"
        assert c.get_queue(q).ack_commit == "async"
        assert [i.ack_commit for i in c.list_queues() if i.queue_name == q] == ["async"]
        assert stored(q) == "async"
        c.alter_queue(q, max_attempts=7)
        assert stored(q) == "async", "left out: unchanged"
        c.alter_queue(q, ack_commit="durable")
        assert c.get_queue(q).ack_commit == "durable"
        c.alter_queue(q, ack_commit="async")
        assert stored(q) == "async"
    finally:
        c.drop_queue(plain)
        c.drop_queue(q)


def test_async_acks_finish_messages(anyclient: Any) -> None:
    c = anyclient
    q = unique("ackw")
    c.create_queue(q, ack_commit="async")
    try:
        ids = c.send_batch(q, [{"n": 1}, {"n": 2}])
        got = c.receive(q, max_messages=1)
        assert len(got) == 1
        assert c.ack(q, got[0].delivery_id) is True
        rest = c.receive(q, max_messages=10)
        assert [m.message_id for m in rest] == [ids[1]]
        assert c.ack_batch(q, [m.delivery_id for m in rest]) == 1
        assert c.receive(q, max_messages=10) == []
    finally:
        c.drop_queue(q)


def test_refused(anyclient: Any) -> None:
    c = anyclient
    q = unique("acke")
    for g in ("exactly_once", "at_most_once"):
        with pytest.raises(deliver.DeliverError) as e:
            c.create_queue(q, guarantee=g, ack_commit="async")
        assert e.value.sqlstate == "0A000"
    with pytest.raises(deliver.InvalidParameter) as e2:
        c.create_queue(q, ack_commit="later")
    assert e2.value.sqlstate == "22023"
    assert stored(q) is None
    c.create_queue(q, guarantee="exactly_once")
    try:
        with pytest.raises(deliver.DeliverError) as e:
            c.alter_queue(q, ack_commit="async")
        assert e.value.sqlstate == "0A000"
        with pytest.raises(deliver.InvalidParameter):
            c.alter_queue(q, ack_commit="sometimes")
        assert stored(q) == "durable"
    finally:
        c.drop_queue(q)


def test_ack_commit_over_http_needs_the_right() -> None:
    q = unique("ackp")
    with deliver.Client.connect(DSN) as c:
        c.create_queue(q)
        try:
            app = deliver.HttpClient(HTTP_URL, jwt(role=ROLE, exp=int(time.time()) + 3600), timeout=15)
            with pytest.raises(deliver.PermissionDenied):
                app.alter_queue(q, ack_commit="async")
            assert stored(q) == "durable"
        finally:
            c.drop_queue(q)
