"""peek and delete_dead_letters from every client (Client, AsyncClient,
HttpClient): peek shows what the next receive of a group would hand out
(redeliveries first) without leasing anything; delete_dead_letters deletes
dead letters for good, of one group or of all; bad input and the rights
(a role without them: PermissionDenied) as the other calls map them."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, Iterator

import pytest
from conftest import DSN, HTTP_URL, ROLE, AsyncAdapter, jwt, sql, unique

import deliver

DELETE_DEAD_LETTERS = "deliver.delete_dead_letters(text, bigint[], text)"


@pytest.fixture
def as_role(anyclient: Any) -> Iterator[Any]:
    """The same kind of client as anyclient, acting as the test role (no
    rights on any queue): SET ROLE over SQL, a token of that role over HTTP."""
    if isinstance(anyclient, deliver.Client):
        c = deliver.Client.connect(DSN)
        c.connection.execute(f'SET ROLE "{ROLE}"')
        yield c
        c.close()
    elif isinstance(anyclient, AsyncAdapter):
        loop = asyncio.new_event_loop()
        ac = loop.run_until_complete(deliver.AsyncClient.connect(DSN))
        loop.run_until_complete(ac.connection.execute(f'SET ROLE "{ROLE}"'))
        yield AsyncAdapter(ac, loop)
        loop.run_until_complete(ac.close())
        loop.close()
    else:
        yield deliver.HttpClient(HTTP_URL, jwt(role=ROLE, exp=int(time.time()) + 3600), timeout=15)


def kill_all(c: Any, q: str, group: str = "default") -> None:
    """Nack every message of the group until all are dead letters."""
    for _ in range(10):
        got = c.receive(q, 100, consumer_group=group)
        if not got:
            return
        for m in got:
            assert c.nack(q, m.delivery_id, error="no", retry_after=0) is True
    raise AssertionError("messages still alive after 10 rounds")


def test_peek_shows_the_next_messages_without_leasing(anyclient: Any) -> None:
    c = anyclient
    q = unique("peek")
    c.create_queue(q, max_attempts=2, retry_base=0)
    try:
        assert c.peek(q) == []
        ids = c.send_batch(q, [1, 2, 3], headers=[None, {"h": "x"}, None], ordering_keys=["k", None, None])
        [first] = c.receive(q)
        assert c.nack(q, first.delivery_id, error="again", retry_after=0) is True
        peeked = c.peek(q, 10)
        assert all(isinstance(p, deliver.PeekedMessage) for p in peeked)
        assert [(p.message_id, p.payload, p.attempt, p.redelivery, p.ordering_key, p.headers) for p in peeked] == [
            (ids[0], 1, 2, True, "k", None),
            (ids[1], 2, 1, False, None, {"h": "x"}),
            (ids[2], 3, 1, False, None, None),
        ]
        assert all(type(p.message_id) is int for p in peeked)
        assert isinstance(peeked[0].enqueued_at, datetime) and peeked[0].enqueued_at.tzinfo is not None
        assert [p.message_id for p in c.peek(q, 1)] == [ids[0]]
        assert c.peek(q, 10) == peeked, "peeking changes nothing"
        assert [m.in_flight for m in c.metrics(q)] == [0], "peek leased nothing"
        got = c.receive(q, 10)
        assert [(m.message_id, m.attempt) for m in got] == [(p.message_id, p.attempt) for p in peeked], (
            "a receive hands out what peek showed"
        )
        assert c.peek(q) == [], "leased messages are not shown"
        # another group: everything stored, first attempts; the default group's leases do not matter
        c.create_consumer_group(q, "g2", start_from="earliest")
        assert [(p.message_id, p.attempt, p.redelivery) for p in c.peek(q, consumer_group="g2")] == [
            (i, 1, False) for i in ids
        ]
        # None: the server's default (10 messages, group "default")
        c.ack_batch(q, [m.delivery_id for m in got])
        more = c.send_batch(q, list(range(12)))
        assert [p.message_id for p in c.peek(q)] == more[:10]
        assert [p.message_id for p in c.peek(q, None, consumer_group=None)] == more[:10]
        assert [p.message_id for p in c.peek(q, 12)] == more
    finally:
        c.drop_queue(q)


def test_peek_bad_input(anyclient: Any) -> None:
    c = anyclient
    q = unique("peekbad")
    with pytest.raises(deliver.QueueNotFound) as e:
        c.peek(q)
    assert e.value.sqlstate == "42704"
    c.create_queue(q)
    try:
        c.send(q, 1)
        with pytest.raises(deliver.QueueNotFound) as e:
            c.peek(q, consumer_group="nogroup")
        assert e.value.sqlstate == "42704"
        for bad in (0, -1, 10001):
            with pytest.raises(deliver.InvalidParameter) as e2:
                c.peek(q, bad)
            assert e2.value.sqlstate == "22023"
        # a name no group can have (names are checked when made): not found
        with pytest.raises(deliver.QueueNotFound) as e:
            c.peek(q, consumer_group="no such group!")
        assert e.value.sqlstate == "42704"
        assert [m.payload for m in c.receive(q, 10)] == [1], "nothing was leased"
    finally:
        c.drop_queue(q)


def test_delete_dead_letters(anyclient: Any) -> None:
    c = anyclient
    q = unique("ddl")
    c.create_queue(q, max_attempts=1, retry_base=0)
    c.create_consumer_group(q, "g2")
    try:
        ids = c.send_batch(q, [1, 2, 3])
        for group in ("default", "g2"):
            kill_all(c, q, group)
        assert len(c.dead_letters(q)) == 6
        # one group
        assert c.delete_dead_letters(q, [ids[0], ids[1]], consumer_group="g2") == 2
        assert [d.message_id for d in c.dead_letters(q, consumer_group="g2")] == [ids[2]]
        assert [d.message_id for d in c.dead_letters(q, consumer_group="default")] == ids
        # every group (None): only default still has ids[0]
        assert c.delete_dead_letters(q, [ids[0]]) == 1
        assert c.delete_dead_letters(q, [ids[0]]) == 0, "an id that is no dead letter counts nothing"
        assert c.delete_dead_letters(q, []) == 0
        assert c.delete_dead_letters(q, [ids[2] + 1000]) == 0
        assert c.delete_dead_letters(q, (i for i in ids[1:])) == 3, "any iterable of ints"
        assert c.dead_letters(q) == []
        # the messages are gone from the dead letters, not redriven
        assert c.redrive(q) == 0
        assert c.receive(q, 10) == []
    finally:
        c.drop_queue(q)


def test_delete_dead_letters_bad_input(anyclient: Any) -> None:
    c = anyclient
    q = unique("ddlbad")
    with pytest.raises(deliver.QueueNotFound) as e:
        c.delete_dead_letters(q, [1])
    assert e.value.sqlstate == "42704"
    c.create_queue(q, max_attempts=1, retry_base=0)
    try:
        mid = c.send(q, "x")
        kill_all(c, q)
        with pytest.raises(deliver.QueueNotFound) as e:
            c.delete_dead_letters(q, [mid], consumer_group="nogroup")
        assert e.value.sqlstate == "42704"
        with pytest.raises(deliver.QueueNotFound) as e:
            c.delete_dead_letters(q, [mid], consumer_group="no such group!")
        assert e.value.sqlstate == "42704"
        with pytest.raises(deliver.NullValueNotAllowed) as e3:
            c.delete_dead_letters(q, None)
        assert e3.value.sqlstate == "22004"
        # ids are ints (over HTTP also strings of digits or a cluster's
        # partition:epoch:id): anything else is refused before anything is sent
        for bad in ([1.5], [True], "12", [None]):
            with pytest.raises(TypeError):
                c.delete_dead_letters(q, bad)
        if isinstance(c, deliver.HttpClient):
            for no_id in (["1:2"], ["a:b:c"], ["x"]):
                with pytest.raises(deliver.InvalidParameter):
                    c.delete_dead_letters(q, no_id)
        else:
            with pytest.raises(TypeError):
                c.delete_dead_letters(q, ["1"])
            with pytest.raises(deliver.InvalidParameter) as e4:
                c.delete_dead_letters(q, ["1:1:7"])
            assert "cluster" in e4.value.message
        assert [d.message_id for d in c.dead_letters(q)] == [mid], "nothing was deleted"
    finally:
        c.drop_queue(q)


def test_rights(anyclient: Any, as_role: Any) -> None:
    c = anyclient
    q = unique("peekperm")
    c.create_queue(q, max_attempts=1, retry_base=0)
    try:
        mid = c.send(q, "x")
        # peek needs the receive right
        with pytest.raises(deliver.PermissionDenied) as e:
            as_role.peek(q)
        assert e.value.sqlstate == "42501"
        sql("SELECT deliver.grant_queue(%s, %s, 'send')", q, ROLE)
        with pytest.raises(deliver.PermissionDenied):
            as_role.peek(q)
        sql("SELECT deliver.grant_queue(%s, %s, 'receive')", q, ROLE)
        assert [p.message_id for p in as_role.peek(q)] == [mid]
        kill_all(c, q)
        # delete_dead_letters is not for PUBLIC: without EXECUTE, refused even with the receive right
        with pytest.raises(deliver.PermissionDenied) as e:
            as_role.delete_dead_letters(q, [mid])
        assert e.value.sqlstate == "42501"
        sql(f"GRANT EXECUTE ON FUNCTION {DELETE_DEAD_LETTERS} TO {ROLE}")
        try:
            # EXECUTE without the queue's receive right: refused
            sql("SELECT deliver.revoke_queue(%s, %s, 'receive')", q, ROLE)
            with pytest.raises(deliver.PermissionDenied) as e:
                as_role.delete_dead_letters(q, [mid])
            assert e.value.sqlstate == "42501"
            assert [d.message_id for d in c.dead_letters(q)] == [mid]
            sql("SELECT deliver.grant_queue(%s, %s, 'receive')", q, ROLE)
            assert as_role.delete_dead_letters(q, [mid]) == 1
            assert c.dead_letters(q) == []
        finally:
            sql(f"REVOKE EXECUTE ON FUNCTION {DELETE_DEAD_LETTERS} FROM {ROLE}")
    finally:
        c.drop_queue(q)
