"""Sends and acks inside the caller's transaction: the transactional outbox
(client.transaction(), conn=), a receive rolled back, and the exactly-once
helper (effects and ack in one transaction)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from conftest import DSN, sql, unique

import deliver


def test_transaction_commits_sends(client: deliver.Client, queue: str, effects: str) -> None:
    with client.transaction() as conn:
        conn.execute(f"INSERT INTO {effects} VALUES (1, 'order placed')")
        mid = client.send(queue, {"order": 1})
        # not visible before the commit, not even to this transaction's receive
        with deliver.Client.connect(DSN) as other:
            assert other.receive(queue) == []
    assert [m.message_id for m in client.receive(queue)] == [mid]
    assert sql(f"SELECT count(*) FROM {effects}") == [(1,)]


def test_transaction_rollback_sends_nothing(client: deliver.Client, queue: str, effects: str) -> None:
    with pytest.raises(RuntimeError):
        with client.transaction() as conn:
            conn.execute(f"INSERT INTO {effects} VALUES (1, 'order placed')")
            client.send(queue, {"order": 1})
            client.send_batch(queue, [2, 3])
            raise RuntimeError("the order failed")
    assert client.receive(queue, 10) == []
    assert sql(f"SELECT count(*) FROM {effects}") == [(0,)]
    # a failing deliver call rolls the block back too
    with pytest.raises(deliver.QueueNotFound):
        with client.transaction():
            client.send(queue, "kept?")
            client.send(queue + "_nope", "x")
    assert client.receive(queue, 10) == []


def test_send_on_the_callers_connection(client: deliver.Client, queue: str, effects: str) -> None:
    with psycopg.connect(DSN) as app:  # not autocommit: the application's own transaction
        app.execute(f"INSERT INTO {effects} VALUES (1, 'debit')")
        client.send(queue, {"debit": 1}, conn=app)
        client.send_batch(queue, [{"debit": 2}], conn=app)
        assert client.receive(queue, 10) == []  # the client's own connection sees nothing yet
        app.rollback()
        assert client.receive(queue, 10) == []
        app.execute(f"INSERT INTO {effects} VALUES (2, 'debit')")
        client.send(queue, {"debit": 3}, conn=app)
        app.commit()
    assert [m.payload for m in client.receive(queue, 10)] == [{"debit": 3}]
    assert sql(f"SELECT message_id FROM {effects}") == [(2,)]


def test_receive_and_ack_in_one_transaction(client: deliver.Client, queue: str, effects: str) -> None:
    client.send(queue, "pay")
    with pytest.raises(RuntimeError):
        with client.transaction() as conn:
            [m] = client.receive(queue)
            conn.execute(f"INSERT INTO {effects} VALUES (%s, 'paid')", (m.message_id,))
            client.ack(queue, m.delivery_id or 0)
            raise RuntimeError("crash before commit")
    # the rolled-back receive frees the message at once
    [m] = client.receive(queue)
    assert m.attempt == 2
    with client.transaction() as conn:
        conn.execute(f"INSERT INTO {effects} VALUES (%s, 'paid')", (m.message_id,))
        assert client.ack(queue, m.delivery_id or 0, conn=conn) is True
    assert sql(f"SELECT count(*) FROM {effects}") == [(1,)]
    assert client.metrics(queue)[0].acked_total == 1


def test_exactly_once_helper(client: deliver.Client, queue: str, effects: str) -> None:
    client.send_batch(queue, ["a", "b"])
    a, b = client.receive(queue, 2, visibility_timeout=1)

    def apply(conn: psycopg.Connection[Any], m: deliver.Message) -> str:
        conn.execute(f"INSERT INTO {effects} VALUES (%s, %s)", (m.message_id, m.payload))
        return f"applied {m.payload}"

    assert client.exactly_once(a, apply) == "applied a"

    def fail(conn: psycopg.Connection[Any], m: deliver.Message) -> None:
        apply(conn, m)
        raise ValueError("no")

    with pytest.raises(ValueError):
        client.exactly_once(b, fail)
    assert sql(f"SELECT note FROM {effects}") == [("a",)]
    # b's lease runs out and it goes to another consumer: the stale ack
    # fails and takes the effects down with it
    time.sleep(1.1)
    [b2] = wait_redelivered(client, queue)
    with pytest.raises(deliver.NotCurrent):
        client.exactly_once(b, apply)
    assert sql(f"SELECT note FROM {effects} ORDER BY note") == [("a",)]
    with psycopg.connect(DSN, autocommit=True) as own:
        assert client.exactly_once(b2, apply, conn=own) == "applied b"
    assert sql(f"SELECT note FROM {effects} ORDER BY note") == [("a",), ("b",)]
    with pytest.raises(deliver.NotCurrent):  # acked: never again
        client.exactly_once(b2, apply)


def wait_redelivered(client: deliver.Client, queue: str) -> list[deliver.Message]:
    end = time.monotonic() + 5
    while time.monotonic() < end:
        got = client.receive(queue, 1, wait=0.5)
        if got:
            return got
    raise AssertionError("not redelivered")


def test_two_phase_commit(client: deliver.Client, queue: str) -> None:
    gid = unique("gid")
    with psycopg.connect(DSN) as app:
        client.send(queue, "prepared", conn=app)
        app.execute(f"PREPARE TRANSACTION '{gid}'")
        assert client.receive(queue) == []
    sql(f"COMMIT PREPARED '{gid}'")  # from another session, as a transaction manager would
    assert [m.payload for m in client.receive(queue)] == ["prepared"]
