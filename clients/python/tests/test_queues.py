"""Queues and consumer groups: every option, listing, altering, purging,
dropping."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

import pytest
from conftest import unique

import deliver


def test_create_queue_with_every_option(client: deliver.Client) -> None:
    name = unique("q")
    client.create_queue(
        name,
        guarantee="exactly_once",
        visibility_timeout=timedelta(seconds=45),
        max_attempts=7,
        fifo=True,
        dedup_window="10 minutes",
        retry_base=0.5,
        retry_max=120,
    )
    try:
        q = client.get_queue(name)
        assert q.queue_name == name
        assert q.guarantee == "exactly_once"
        assert q.visibility_timeout == timedelta(seconds=45)
        assert q.max_attempts == 7
        assert q.fifo is True
        assert q.dedup_window == timedelta(minutes=10)
        assert q.retry_base == timedelta(seconds=0.5)
        assert q.retry_max == timedelta(minutes=2)
        assert q.archive_retention is None
        assert q.consumer_groups == ["default"]
        assert isinstance(q.created_at, datetime) and q.created_at.tzinfo is not None
    finally:
        assert client.drop_queue(name) is True


def test_create_queue_defaults(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    name = make_queue()
    q = client.get_queue(name)
    assert (q.guarantee, q.visibility_timeout, q.max_attempts, q.fifo, q.dedup_window) == (
        "at_least_once",
        timedelta(seconds=30),
        5,
        False,
        timedelta(minutes=5),
    )


def test_list_queues(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    a = make_queue()
    b = make_queue(guarantee="at_most_once")
    listed = {q.queue_name: q for q in client.list_queues()}
    assert a in listed and b in listed
    assert listed[b].guarantee == "at_most_once"
    names = [q.queue_name for q in client.list_queues()]
    assert names == sorted(names)


def test_alter_queue(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    name = make_queue()
    client.alter_queue(
        name,
        visibility_timeout=90,
        max_attempts=2,
        dedup_window=timedelta(hours=1),
        retry_base="2 seconds",
        retry_max=timedelta(minutes=10),
        archive_retention="3 days",
    )
    q = client.get_queue(name)
    assert q.visibility_timeout == timedelta(seconds=90)
    assert q.max_attempts == 2
    assert q.dedup_window == timedelta(hours=1)
    assert q.retry_base == timedelta(seconds=2)
    assert q.retry_max == timedelta(minutes=10)
    assert q.archive_retention == timedelta(days=3)
    client.alter_queue(name, max_attempts=4)  # the others stay
    q = client.get_queue(name)
    assert (q.max_attempts, q.visibility_timeout) == (4, timedelta(seconds=90))


def test_drop_and_purge(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    name = make_queue()
    client.send_batch(name, [1, 2, 3])
    client.send(name, 4, delay=3600)
    assert client.purge_queue(name) == 4
    assert client.receive(name, 10) == []
    assert client.drop_queue(name) is True
    with pytest.raises(deliver.QueueNotFound):
        client.get_queue(name)
    with pytest.raises(deliver.QueueNotFound):
        client.drop_queue(name)


def test_consumer_groups(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    name = make_queue()
    client.send(name, "before")
    client.create_consumer_group(name, "latest_group")
    client.create_consumer_group(name, "all_of_it", start_from="earliest")
    client.send(name, "after")
    groups = client.list_consumer_groups(name)
    assert [g.consumer_group for g in groups] == ["default", "latest_group", "all_of_it"]
    assert all(isinstance(g.created_at, datetime) for g in groups)
    assert client.get_queue(name).consumer_groups == ["default", "latest_group", "all_of_it"]
    # each group gets every message (from where it started)
    got = {g: [m.payload for m in client.receive(name, 10, consumer_group=g)] for g in ("default", "latest_group", "all_of_it")}
    assert got == {"default": ["before", "after"], "latest_group": ["after"], "all_of_it": ["before", "after"]}
    m = client.receive(name, 1, consumer_group="latest_group")
    assert m == []
    assert client.drop_consumer_group(name, "latest_group") is True
    assert [g.consumer_group for g in client.list_consumer_groups(name)] == ["default", "all_of_it"]
    with pytest.raises(deliver.AlreadyExists) as e:
        client.create_consumer_group(name, "all_of_it")
    assert e.value.sqlstate == "42710"
    with pytest.raises(deliver.QueueNotFound):
        client.drop_consumer_group(name, "latest_group")
    with pytest.raises(deliver.QueueNotFound):
        client.receive(name, consumer_group="latest_group")


def test_flow_control(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    name = make_queue()
    client.send_batch(name, [1, 2, 3, 4, 5])
    assert client.pause_consumer_group(name) is True
    assert client.pause_consumer_group(name, "default") is False
    assert client.receive(name, 10) == []
    (g,) = client.list_consumer_groups(name)
    assert (g.paused, g.rate_per_second, g.rate_burst) == (True, None, None)
    assert client.resume_consumer_group(name) is True
    assert client.resume_consumer_group(name) is False
    client.set_consumer_group_rate(name, "default", 0.001, 2)
    (g,) = client.list_consumer_groups(name)
    assert (g.paused, g.rate_per_second, g.rate_burst) == (False, 0.001, 2)
    assert [m.payload for m in client.receive(name, 10)] == [1, 2]
    assert client.receive(name, 10) == []
    client.set_consumer_group_rate(name, "default", 2.5)
    assert client.list_consumer_groups(name)[0].rate_burst == 3
    client.set_consumer_group_rate(name, "default", None)
    assert [m.payload for m in client.receive(name, 10)] == [3, 4, 5]
    with pytest.raises(deliver.InvalidParameter) as e:
        client.set_consumer_group_rate(name, "default", 0)
    assert e.value.sqlstate == "22023"
    with pytest.raises(deliver.QueueNotFound):
        client.pause_consumer_group(name, "nosuch")


def test_fifo_key_limit(client: deliver.Client) -> None:
    name = unique("fifolimit")
    client.create_queue(name, fifo=True)
    try:
        client.send_batch(name, [1, 2, 3, 4], ordering_keys=["k"] * 4)
        client.set_fifo_key_limit(name, 3)
        assert [m.payload for m in client.receive(name, 10)] == [1, 2, 3]
        assert client.receive(name, 10) == []
        with pytest.raises(deliver.InvalidParameter):
            client.set_fifo_key_limit(name, 0)
    finally:
        client.drop_queue(name)
