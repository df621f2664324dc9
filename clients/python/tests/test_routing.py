"""Topic routing from the SQL, asyncio and HTTP clients: bind, unbind,
list_bindings, test_routing and publish (to every queue with a matching
binding, once, in the caller's transaction; mandatory; expires_at; bad
patterns)."""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Union

import pytest
from conftest import DSN, HTTP_URL, JWT_SECRET, jwt, unique

import deliver

if not HTTP_URL or not JWT_SECRET:
    raise RuntimeError("DELIVER_TEST_HTTP and DELIVER_TEST_JWT_SECRET must be set (test.sh starts deliverd)")

TOKEN = jwt(role=os.environ.get("PGUSER") or getpass.getuser(), exp=int(time.time()) + 3600)
Api = Union[deliver.Client, deliver.HttpClient]


def topic(api: Api, make_queue: Callable[..., str]) -> tuple[str, str, str]:
    """A topic of its own: keys "<t>.eu.x" go to both queues, "<t>.us.x" to the second."""
    t = unique("topic")
    eu, all_ = make_queue(), make_queue()
    assert api.bind(f"{t}.eu.*", eu) is True
    assert api.bind(f"{t}.eu.*", eu) is False
    assert api.bind(f"{t}.#", all_) is True
    return t, eu, all_


@pytest.fixture(params=["sql", "http"])
def api(request: pytest.FixtureRequest, client: deliver.Client) -> Api:
    if request.param == "sql":
        return client
    return deliver.HttpClient(HTTP_URL, TOKEN, timeout=15)


def test_bind_list_test_publish_unbind(api: Api, client: deliver.Client, make_queue: Callable[..., str]) -> None:
    t, eu, all_ = topic(api, make_queue)
    assert [(b.pattern, b.queue_name) for b in api.list_bindings(eu)] == [(f"{t}.eu.*", eu)]
    assert sorted((m.queue_name, m.pattern) for m in api.test_routing(f"{t}.eu.new")) == sorted(
        [(eu, f"{t}.eu.*"), (all_, f"{t}.#")]
    )

    sent = api.publish(f"{t}.eu.new", {"n": 1}, headers={"h": "v"}, ordering_key="k")
    assert sorted(p.queue_name for p in sent) == sorted([eu, all_])
    assert all(isinstance(p.message_id, int) for p in sent)
    [m] = client.receive(eu)
    assert (m.payload, m.headers, m.ordering_key) == ({"n": 1}, {"h": "v"}, "k")
    assert m.message_id == next(p.message_id for p in sent if p.queue_name == eu)

    assert [p.queue_name for p in api.publish(f"{t}.us.new", 2)] == [all_]
    assert api.publish(f"nobody.{t}", 3) == []
    with pytest.raises(deliver.QueueNotFound):
        api.publish(f"nobody.{t}", 3, mandatory=True)
    with pytest.raises(deliver.InvalidParameter):
        api.publish(f"{t}.*", 3)
    with pytest.raises(deliver.InvalidParameter):
        api.bind("a..b", eu)
    with pytest.raises(deliver.QueueNotFound):
        api.bind("a", eu + "_nope")

    # idempotency keys apply per queue, as in send
    first = api.publish(f"{t}.eu.x", 4, idempotency_key="once")
    assert api.publish(f"{t}.eu.x", 4, idempotency_key="once") == first

    assert api.unbind(f"{t}.eu.*", eu) is True
    assert api.unbind(f"{t}.eu.*", eu) is False
    assert [m.queue_name for m in api.test_routing(f"{t}.eu.x")] == [all_]


def test_publish_expires_at(api: Api, client: deliver.Client, make_queue: Callable[..., str]) -> None:
    """Every copy gets the deadline, as in send: a dead letter (reason
    expired) in one queue, dropped in a queue with on_expire drop."""
    t = unique("topic")
    dl, drop = make_queue(), make_queue(on_expire="drop")
    api.bind(f"{t}.#", dl)
    api.bind(f"{t}.#", drop)
    now = datetime.now(timezone.utc)
    gone = api.publish(f"{t}.a", {"n": 1}, expires_at=now - timedelta(minutes=1))
    assert sorted(p.queue_name for p in gone) == sorted([dl, drop])
    iso = api.publish(f"{t}.a", {"n": 2}, expires_at="2001-02-03T04:05:06Z")
    kept = api.publish(f"{t}.a", {"n": 3}, expires_at=now + timedelta(hours=1))
    plain = api.publish(f"{t}.a", {"n": 4}, expires_at=None)

    def id_in(sent: list[deliver.Published], q: str) -> deliver.Id:
        return next(p.message_id for p in sent if p.queue_name == q)

    for q in (dl, drop):
        assert [m.message_id for m in client.receive(q, 10)] == [id_in(kept, q), id_in(plain, q)]
    dead = client.dead_letters(dl)
    assert [d.message_id for d in dead] == [id_in(gone, dl), id_in(iso, dl)]
    assert all(d.reason == "expired" and d.attempts == 0 for d in dead)
    assert client.dead_letters(drop) == []
    with pytest.raises(deliver.DeliverError) as e:
        api.publish(f"{t}.a", 5, expires_at="not a time")
    assert e.value.sqlstate == "22007"
    assert client.receive(dl, 10) == []


def test_publish_in_a_transaction(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    t, eu, all_ = topic(client, make_queue)
    with pytest.raises(RuntimeError):
        with client.transaction():
            client.publish(f"{t}.eu.a", {"rolled": "back"})
            raise RuntimeError("the order failed")
    with client.transaction():
        client.publish(f"{t}.eu.a", {"kept": True})
    for q in (eu, all_):
        assert [m.payload for m in client.receive(q, 10)] == [{"kept": True}]


def test_asyncio_client(make_queue: Callable[..., str]) -> None:
    async def run() -> None:
        async with await deliver.AsyncClient.connect(DSN) as c:
            t = unique("topic")
            q = make_queue()
            assert await c.bind(f"{t}.#", q) is True
            assert [b.queue_name for b in await c.list_bindings(q)] == [q]
            assert [m.pattern for m in await c.test_routing(t)] == [f"{t}.#"]
            [p] = await c.publish(f"{t}.x", {"a": 1})
            assert p.queue_name == q
            [m] = await c.receive(q)
            assert m.message_id == p.message_id
            [e] = await c.publish(f"{t}.x", {"a": 2}, expires_at="2001-02-03T04:05:06Z")
            assert await c.receive(q) == []
            assert [(d.message_id, d.reason) for d in await c.dead_letters(q)] == [(e.message_id, "expired")]
            assert await c.unbind(f"{t}.#", q) is True

    asyncio.run(run())
