"""Typed errors of deliver, mapped from the SQLSTATE of the server's error.

The SQL clients and the HTTP client raise the same classes: a Postgres error
carries its SQLSTATE directly, the gateway puts it in its JSON error body.
Every error keeps the server's message, detail and hint.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = [
    "DeliverError",
    "InvalidInput",
    "InvalidParameter",
    "NullValueNotAllowed",
    "InvalidName",
    "QueueNotFound",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "AuthenticationFailed",
    "NotCurrent",
    "BeingAcked",
    "LimitExceeded",
    "TooManyInFlight",
    "WrongTransactionState",
    "ActiveTransaction",
    "ReadOnly",
    "DependentObjects",
    "Unavailable",
    "error_for",
    "error_from_http",
]


class DeliverError(Exception):
    """Base class of every error deliver raises.

    ``sqlstate`` is the five-character SQLSTATE (None when the failure has
    none: a lost connection, a gateway error of its own); ``detail`` and
    ``hint`` are the server's, when it gave them; ``status`` is the HTTP
    status for errors of :class:`~deliver.HttpClient` (None over SQL).
    """

    #: the SQLSTATE this class stands for (None: a class of codes, or none)
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate if sqlstate is not None else self.code
        self.detail = detail
        self.hint = hint
        self.status = status

    def __str__(self) -> str:
        s = self.message
        if self.sqlstate:
            s = f"{s} (SQLSTATE {self.sqlstate})"
        if self.detail:
            s = f"{s}\nDETAIL: {self.detail}"
        if self.hint:
            s = f"{s}\nHINT: {self.hint}"
        return s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, sqlstate={self.sqlstate!r})"


class InvalidInput(DeliverError):
    """A value deliver refuses: class 22 (data exception) and 42602."""


class InvalidParameter(InvalidInput):
    """22023: an option out of range, an unknown guarantee, privilege..."""

    code = "22023"


class NullValueNotAllowed(InvalidInput):
    """22004: a required argument is missing (an exactly-once send without
    idempotency key, a NULL queue name)."""

    code = "22004"


class InvalidName(InvalidInput):
    """42602: a queue, group or subscription name that breaks the rules."""

    code = "42602"


class QueueNotFound(DeliverError):
    """42704: an unknown queue (or consumer group, role, push subscription),
    also one dropped while a long poll waited on it."""

    code = "42704"


#: the same class under a name that fits groups and roles too
NotFound = QueueNotFound


class AlreadyExists(DeliverError):
    """42710: the queue, group or subscription exists already."""

    code = "42710"


class PermissionDenied(DeliverError):
    """42501: the role has no grant for this queue or function (HTTP 403)."""

    code = "42501"


class AuthenticationFailed(DeliverError):
    """Class 28 or HTTP 401: no token, a bad or expired one."""


class NotCurrent(DeliverError):
    """55000: the delivery id is not current (acked, nacked, its receive
    rolled back, delivered again, or its lease ran out for an extend)."""

    code = "55000"


class BeingAcked(DeliverError):
    """55P03: exactly-once, another open transaction is acking the delivery."""

    code = "55P03"


class LimitExceeded(DeliverError):
    """54000: payload over ``deliver.max_payload_size``, a batch over
    ``deliver.max_batch_size``, a key over 512 bytes (HTTP 413)."""

    code = "54000"


class WrongTransactionState(DeliverError):
    """Class 25: the call does not fit the transaction it runs in."""


class ActiveTransaction(WrongTransactionState):
    """25001: an at-most-once receive inside a transaction block."""

    code = "25001"


class ReadOnly(WrongTransactionState):
    """25006: a write on a standby: connect to the primary."""

    code = "25006"


class DependentObjects(DeliverError):
    """2BP01: drop_queue of a queue that has push subscriptions."""

    code = "2BP01"


class Unavailable(DeliverError):
    """The database (or the gateway) cannot serve now: connection lost,
    shutting down, too many connections, a serialization failure or
    deadlock. Safe to retry a call that is idempotent (a send with an
    idempotency key). ``retry_after`` is the gateway's hint in seconds."""

    retry_after: float | None = None


class TooManyInFlight(Unavailable):
    """53400: the queue holds its share of lease slots, or a send would take
    the queue over its ``max_depth``; retry later (an :class:`Unavailable`,
    over SQL and over HTTP's 503)."""

    code = "53400"


_BY_CODE: dict[str, type[DeliverError]] = {
    cls.code: cls
    for cls in (
        InvalidParameter,
        NullValueNotAllowed,
        InvalidName,
        QueueNotFound,
        AlreadyExists,
        PermissionDenied,
        NotCurrent,
        BeingAcked,
        LimitExceeded,
        TooManyInFlight,
        ActiveTransaction,
        ReadOnly,
        DependentObjects,
    )
    if cls.code is not None
}

# whole classes of SQLSTATEs, and the codes that say "try again"
_UNAVAILABLE = {"57P01", "57P02", "57P03", "57014", "53300", "40001", "40P01"}


def error_class(sqlstate: str | None) -> type[DeliverError]:
    """The exception class of a SQLSTATE."""
    if not sqlstate:
        return DeliverError
    if sqlstate in _BY_CODE:
        return _BY_CODE[sqlstate]
    if sqlstate in _UNAVAILABLE or sqlstate.startswith("08"):
        return Unavailable
    if sqlstate.startswith("22"):
        return InvalidInput
    if sqlstate.startswith("28"):
        return AuthenticationFailed
    if sqlstate.startswith("25"):
        return WrongTransactionState
    return DeliverError


def error_for(
    sqlstate: str | None,
    message: str,
    detail: str | None = None,
    hint: str | None = None,
    status: int | None = None,
) -> DeliverError:
    """The typed error of a SQLSTATE with the server's message, detail, hint."""
    return error_class(sqlstate)(message, sqlstate=sqlstate, detail=detail, hint=hint, status=status)


# HTTP statuses of the gateway's own errors, which carry no SQLSTATE
_BY_STATUS: dict[int, type[DeliverError]] = {
    400: InvalidInput,
    401: AuthenticationFailed,
    403: PermissionDenied,
    409: NotCurrent,
    413: LimitExceeded,
    422: InvalidInput,
    503: Unavailable,
}


def error_from_http(status: int, body: Any, retry_after: str | None = None) -> DeliverError:
    """The typed error of a gateway answer: its JSON body
    ``{"error", "detail", "hint", "sqlstate"}`` and its HTTP status."""
    if isinstance(body, Mapping):
        message = str(body.get("error") or f"HTTP {status}")
        sqlstate = body.get("sqlstate")
        detail = body.get("detail")
        hint = body.get("hint")
    else:
        message = f"HTTP {status}: {str(body)[:200]}" if body else f"HTTP {status}"
        sqlstate = detail = hint = None
    sqlstate = sqlstate if isinstance(sqlstate, str) and sqlstate else None
    cls = error_class(sqlstate) if sqlstate else _BY_STATUS.get(status, DeliverError)
    # an answer about the caller's rights or the service wins over the code
    if status == 401:
        cls = AuthenticationFailed
    elif status == 503 and not issubclass(cls, Unavailable):
        cls = Unavailable
    err = cls(
        message,
        sqlstate=sqlstate,
        detail=detail if isinstance(detail, str) else None,
        hint=hint if isinstance(hint, str) else None,
        status=status,
    )
    if isinstance(err, Unavailable) and retry_after:
        try:
            err.retry_after = float(retry_after)
        except ValueError:
            pass
    return err
