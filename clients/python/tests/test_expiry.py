"""Message expiry and depth limits from every client (Client, AsyncClient,
HttpClient): create_queue and alter_queue with message_ttl, on_expire and
max_depth, send and send_batch with expires_at (an aware datetime or a
string); expired messages are never received and become dead letters with
reason ``expired``, or are dropped; a send beyond max_depth is refused."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import DSN, HTTP_URL, ROLE, jwt, sql, unique

import deliver


def settings(q: str) -> tuple[Any, ...]:
    return sql("SELECT message_ttl, on_expire FROM deliver.queue WHERE queue_name = %s", q)[0]


def past() -> datetime:
    return datetime.now(timezone.utc) - timedelta(minutes=1)


def future() -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=1)


def test_expires_at_dead_letters_the_expired(anyclient: Any) -> None:
    c = anyclient
    q = unique("exp")
    c.create_queue(q)
    try:
        gone = c.send(q, {"n": 1}, expires_at=past())
        kept = c.send(q, {"n": 2}, expires_at=future())
        plain = c.send(q, {"n": 3}, expires_at=None)
        as_text = c.send(q, {"n": 4}, expires_at="2001-02-03T04:05:06Z")
        batch = c.send_batch(q, [{"n": 5}, {"n": 6}], expires_at=past())
        later = c.send_batch(q, [{"n": 7}], expires_at=future().isoformat())
        assert [m.message_id for m in c.receive(q, max_messages=10)] == [kept, plain, *later]
        dead = c.dead_letters(q)
        assert [d.message_id for d in dead] == [gone, as_text, *batch]
        assert {(d.reason, d.attempts) for d in dead} == {("expired", 0)}
    finally:
        c.drop_queue(q)


def test_message_ttl_and_on_expire(anyclient: Any) -> None:
    c = anyclient
    q = unique("ttl")
    c.create_queue(q, message_ttl=3600, on_expire="drop", max_depth=50, overflow="drop_oldest")
    try:
        assert settings(q) == (timedelta(hours=1), "drop")
        info = c.get_queue(q)
        assert (info.message_ttl, info.on_expire, info.max_depth, info.overflow) == (
            timedelta(hours=1), "drop", 50, "drop_oldest")
        c.send(q, {"n": 1}, expires_at=past())
        assert c.receive(q, max_messages=10) == []
        assert c.dead_letters(q) == [], "on_expire drop keeps no dead letter"
        c.alter_queue(q, message_ttl="2 hours", on_expire="dead_letter")
        assert settings(q) == (timedelta(hours=2), "dead_letter")
        c.alter_queue(q, message_ttl=0)
        assert settings(q) == (None, "dead_letter")
        c.alter_queue(q, max_attempts=3)
        assert settings(q) == (None, "dead_letter"), "left out: unchanged"
        c.send(q, {"n": 2}, expires_at=past())
        assert c.receive(q, max_messages=10) == []
        assert [d.reason for d in c.dead_letters(q)] == ["expired"]
    finally:
        c.drop_queue(q)


def test_bad_settings(anyclient: Any) -> None:
    c = anyclient
    q = unique("bad")
    with pytest.raises(deliver.InvalidParameter) as e:
        c.create_queue(q, message_ttl=-1)
    assert e.value.sqlstate == "22023"
    with pytest.raises(deliver.InvalidParameter) as e:
        c.create_queue(q, on_expire="keep")
    assert e.value.sqlstate == "22023"
    c.create_queue(q)
    try:
        with pytest.raises(deliver.InvalidParameter) as e:
            c.alter_queue(q, message_ttl="400 days")
        assert e.value.sqlstate == "22023"
        with pytest.raises(deliver.DeliverError) as e2:
            c.send(q, {}, expires_at="not a time")
        assert e2.value.sqlstate == "22007"
    finally:
        c.drop_queue(q)


def test_alter_queue_over_http_needs_the_right() -> None:
    q = unique("perm")
    with deliver.Client.connect(DSN) as c:
        c.create_queue(q)
        try:
            app = deliver.HttpClient(HTTP_URL, jwt(role=ROLE, exp=int(time.time()) + 3600), timeout=15)
            with pytest.raises(deliver.PermissionDenied):
                app.alter_queue(q, message_ttl=5)
            assert settings(q) == (None, "dead_letter")
        finally:
            c.drop_queue(q)


def test_max_depth(anyclient: Any) -> None:
    c = anyclient
    q = unique("depth")
    c.create_queue(q, max_depth=2, overflow="reject")
    try:
        assert sql("SELECT max_depth, overflow FROM deliver.queue WHERE queue_name = %s", q)[0] == (2, "reject")
        c.send_batch(q, [1, 2])
        with pytest.raises(deliver.TooManyInFlight) as e:
            c.send(q, 3)
        assert e.value.sqlstate == "53400"
        with pytest.raises(deliver.TooManyInFlight):
            c.send_batch(q, [3])
        assert len(c.receive(q, max_messages=10)) == 2, "the refused sends wrote nothing"
        c.alter_queue(q, max_depth=0)
        assert sql("SELECT max_depth FROM deliver.queue WHERE queue_name = %s", q)[0] == (None,)
        with pytest.raises(deliver.InvalidParameter):
            c.alter_queue(q, max_depth=-1)
    finally:
        c.drop_queue(q)


def test_overflow_drop_oldest(anyclient: Any) -> None:
    c = anyclient
    q = unique("dropold")
    c.create_queue(q, max_depth=2, overflow="drop_oldest")
    try:
        first, second = c.send_batch(q, [1, 2])
        third = c.send(q, 3)
        assert [(d.message_id, d.reason) for d in c.dead_letters(q)] == [(first, "overflow")]
        assert [m.message_id for m in c.receive(q, max_messages=10)] == [second, third]
    finally:
        c.drop_queue(q)
