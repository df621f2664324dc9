"""deliver's errors over SQL become typed exceptions carrying the SQLSTATE,
the server's message, detail and hint; the SQLSTATE table."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import psycopg
import pytest
from conftest import DSN, ROLE, sql, unique

import deliver
from deliver.errors import error_class, error_from_http


def raises(cls: type[deliver.DeliverError], sqlstate: str | None, fn: Callable[[], Any]) -> deliver.DeliverError:
    """fn() raises exactly cls with this SQLSTATE."""
    with pytest.raises(deliver.DeliverError) as info:
        fn()
    e = info.value
    assert type(e) is cls, f"{type(e).__name__} ({e.sqlstate}: {e.message}) is not a {cls.__name__}"
    assert e.sqlstate == sqlstate
    assert isinstance(e.message, str) and e.message
    assert e.status is None  # SQL errors have no HTTP status
    assert isinstance(info.value.__cause__, psycopg.Error)  # the driver's error is kept
    return e


@pytest.fixture
def as_role() -> Iterator[deliver.Client]:
    """A client whose connection runs as the test role (SET ROLE)."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'SET ROLE "{ROLE}"')
        yield deliver.Client(conn)


def test_42704_unknown_queue_or_group(client: deliver.Client, queue: str) -> None:
    e = raises(deliver.QueueNotFound, "42704", lambda: client.send(unique("missing"), 1))
    assert "does not exist" in e.message
    assert deliver.NotFound is deliver.QueueNotFound
    raises(deliver.QueueNotFound, "42704", lambda: client.receive(queue, consumer_group="nogroup"))
    raises(deliver.QueueNotFound, "42704", lambda: client.drop_queue(unique("missing")))
    raises(deliver.QueueNotFound, "42704", lambda: client.alter_queue(unique("missing"), max_attempts=2))
    raises(deliver.QueueNotFound, "42704", lambda: client.metrics(unique("missing")))
    raises(deliver.QueueNotFound, "42704", lambda: client.dead_letters(unique("missing")))
    # get_queue finds no row: the same class and code, raised by the client
    with pytest.raises(deliver.QueueNotFound) as info:
        client.get_queue(unique("missing"))
    assert info.value.sqlstate == "42704"


def test_55000_not_current_with_detail(client: deliver.Client, queue: str) -> None:
    client.send(queue, 1)
    [m] = client.receive(queue)
    assert m.delivery_id is not None
    client.ack(queue, m.delivery_id)
    e = raises(deliver.NotCurrent, "55000", lambda: client.ack(queue, m.delivery_id or 0))
    assert "not current" in e.message
    assert e.detail, "the server's detail is kept"
    assert "DETAIL: " in str(e) and "(SQLSTATE 55000)" in str(e)
    raises(deliver.NotCurrent, "55000", lambda: client.nack(queue, m.delivery_id or 0))
    raises(deliver.NotCurrent, "55000", lambda: client.extend_lease(queue, m.delivery_id or 0, 10))
    raises(deliver.NotCurrent, "55000", lambda: client.ack(queue, 12345))


def test_22023_out_of_range(client: deliver.Client, queue: str) -> None:
    raises(deliver.InvalidParameter, "22023", lambda: client.receive(queue, 0))
    raises(deliver.InvalidParameter, "22023", lambda: client.receive(queue, visibility_timeout=-1))
    raises(deliver.InvalidParameter, "22023", lambda: client.create_queue(unique("bad"), guarantee="twice"))  # type: ignore[arg-type]
    raises(deliver.InvalidParameter, "22023", lambda: client.create_queue(unique("bad"), max_attempts=0))
    raises(deliver.InvalidParameter, "22023", lambda: client.send(queue, 1, headers=[1, 2]))  # type: ignore[arg-type]
    raises(deliver.InvalidParameter, "22023", lambda: client.send(queue, 1, delay=-5))
    raises(deliver.InvalidParameter, "22023", lambda: client.create_consumer_group(queue, "g", start_from="middle"))
    raises(deliver.InvalidParameter, "22023", lambda: client.grant_queue(queue, ROLE, "delete"))  # type: ignore[arg-type]
    raises(deliver.InvalidParameter, "22023", lambda: client.set_alert(queue, "speed", 1))
    raises(deliver.InvalidParameter, "22023", lambda: client.dead_letters(queue, max_messages=0))
    assert issubclass(deliver.InvalidParameter, deliver.InvalidInput)


def test_22004_22007_2202E(client: deliver.Client, queue: str, make_queue: Callable[..., str]) -> None:
    eo = make_queue(guarantee="exactly_once")
    e = raises(deliver.NullValueNotAllowed, "22004", lambda: client.send(eo, 1))
    assert isinstance(e, deliver.InvalidInput)
    raises(deliver.InvalidInput, "22007", lambda: client.send(queue, 1, delay="soon"))
    raises(deliver.InvalidInput, "2202E", lambda: client.send_batch(queue, [1, 2], ordering_keys=["a"]))
    raises(deliver.InvalidInput, "22003", lambda: client.ack(queue, 2**70))


def test_42602_invalid_name(client: deliver.Client, queue: str) -> None:
    e = raises(deliver.InvalidName, "42602", lambda: client.create_queue("bad name!"))
    assert isinstance(e, deliver.InvalidInput)
    raises(deliver.InvalidName, "42602", lambda: client.create_consumer_group(queue, "no spaces"))


def test_42710_already_exists(client: deliver.Client, queue: str) -> None:
    raises(deliver.AlreadyExists, "42710", lambda: client.create_queue(queue))
    raises(deliver.AlreadyExists, "42710", lambda: client.create_consumer_group(queue, "default"))


def test_54000_limits(client: deliver.Client, queue: str) -> None:
    raises(deliver.LimitExceeded, "54000", lambda: client.send(queue, 1, ordering_key="k" * 513))
    raises(deliver.LimitExceeded, "54000", lambda: client.send(queue, 1, idempotency_key="k" * 513))
    raises(deliver.LimitExceeded, "54000", lambda: client.send(queue, "x" * (1024 * 1024 + 10)))
    assert client.receive(queue, 10) == []


def test_42501_permission_denied(client: deliver.Client, as_role: deliver.Client, queue: str) -> None:
    raises(deliver.PermissionDenied, "42501", lambda: as_role.send(queue, 1))
    raises(deliver.PermissionDenied, "42501", lambda: as_role.receive(queue))
    raises(deliver.PermissionDenied, "42501", lambda: as_role.create_queue(unique("notmine")))
    client.grant_queue(queue, ROLE, "send")
    assert type(as_role.send(queue, "allowed")) is int
    raises(deliver.PermissionDenied, "42501", lambda: as_role.receive(queue))
    raises(deliver.PermissionDenied, "42501", lambda: as_role.metrics(queue))
    client.revoke_queue(queue, ROLE)
    raises(deliver.PermissionDenied, "42501", lambda: as_role.send(queue, 1))


def test_25001_at_most_once_receive_in_a_transaction(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    amo = make_queue(guarantee="at_most_once")
    client.send(amo, 1)

    def receive_in_transaction() -> None:
        with client.transaction():
            client.receive(amo)

    e = raises(deliver.ActiveTransaction, "25001", receive_in_transaction)
    assert isinstance(e, deliver.WrongTransactionState)
    assert [m.payload for m in client.receive(amo)] == [1], "nothing was taken"


def test_55P03_being_acked(client: deliver.Client, make_queue: Callable[..., str]) -> None:
    eo = make_queue(guarantee="exactly_once")
    client.send(eo, 1, idempotency_key="one")
    [m] = client.receive(eo)
    assert m.delivery_id is not None
    with psycopg.connect(DSN) as other:  # a transaction left open
        assert client.ack(eo, m.delivery_id, conn=other) is True
        raises(deliver.BeingAcked, "55P03", lambda: client.ack(eo, m.delivery_id or 0))
        other.rollback()
    assert client.ack(eo, m.delivery_id) is True, "the rolled-back ack can be done again"


def test_2BP01_queue_with_a_push_subscription(client: deliver.Client, queue: str) -> None:
    sub = unique("sub")
    client.create_push_subscription(queue, sub)
    try:
        raises(deliver.DependentObjects, "2BP01", lambda: client.drop_queue(queue))
    finally:
        client.drop_push_subscription(sub)
    assert client.drop_queue(queue) is True


def test_connection_failure_is_unavailable() -> None:
    with pytest.raises(deliver.Unavailable) as info:
        deliver.Client.connect("host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    assert info.value.sqlstate == "08006"
    # a connection that broke under the client
    with deliver.Client.connect(DSN) as c:
        pid = c.connection.info.backend_pid
        sql("SELECT pg_terminate_backend(%s)", pid)
        with pytest.raises(deliver.Unavailable) as info2:
            c.list_queues()
        assert info2.value.sqlstate is not None and info2.value.sqlstate[:2] in ("08", "57")


def test_the_sqlstate_table() -> None:
    table: dict[str, type[deliver.DeliverError]] = {
        "42704": deliver.QueueNotFound,
        "55000": deliver.NotCurrent,
        "22023": deliver.InvalidParameter,
        "22004": deliver.NullValueNotAllowed,
        "22P02": deliver.InvalidInput,
        "2202E": deliver.InvalidInput,
        "42602": deliver.InvalidName,
        "42501": deliver.PermissionDenied,
        "42710": deliver.AlreadyExists,
        "54000": deliver.LimitExceeded,
        "53400": deliver.TooManyInFlight,
        "55P03": deliver.BeingAcked,
        "25001": deliver.ActiveTransaction,
        "25006": deliver.ReadOnly,
        "25P02": deliver.WrongTransactionState,
        "2BP01": deliver.DependentObjects,
        "28000": deliver.AuthenticationFailed,
        "08006": deliver.Unavailable,
        "57P01": deliver.Unavailable,
        "57014": deliver.Unavailable,
        "53300": deliver.Unavailable,
        "40001": deliver.Unavailable,
        "40P01": deliver.Unavailable,
        "XX000": deliver.DeliverError,
    }
    for code, cls in table.items():
        assert error_class(code) is cls, code
        e = deliver.error_for(code, "m", "d", "h")
        assert type(e) is cls and e.sqlstate == code and (e.detail, e.hint) == ("d", "h")
    # the gateway's answers: the SQLSTATE decides, else the status
    e = error_from_http(404, {"error": "queue \"x\" does not exist", "sqlstate": "42704", "detail": None, "hint": None})
    assert type(e) is deliver.QueueNotFound and (e.sqlstate, e.status) == ("42704", 404)
    e = error_from_http(401, {"error": "no token", "sqlstate": None})
    assert type(e) is deliver.AuthenticationFailed and e.sqlstate is None and e.status == 401
    e = error_from_http(503, {"error": "busy", "sqlstate": "53300"}, retry_after="2")
    assert type(e) is deliver.Unavailable and e.retry_after == 2.0
    e = error_from_http(503, {"error": "too many messages in flight", "sqlstate": "53400"}, retry_after="1")
    assert type(e) is deliver.TooManyInFlight and isinstance(e, deliver.Unavailable) and e.retry_after == 1.0
    e = error_from_http(502, "<html>bad gateway</html>")
    assert type(e) is deliver.DeliverError and e.status == 502 and "bad gateway" in e.message
