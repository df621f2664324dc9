"""deliver: a Python client for deliver, the PostgreSQL message queue.

- :class:`Client` and :class:`AsyncClient`: the SQL API over psycopg 3
  (sync and asyncio), including sends and acks inside your own transactions;
- :class:`HttpClient`: the HTTP gateway ``deliverd``, standard library only;
- :class:`Consumer`, :class:`AsyncConsumer`: handlers run with bounded
  concurrency, leases extended, ack/nack, graceful stop;
- :class:`ExactlyOnceConsumer`, :class:`AsyncExactlyOnceConsumer`: the
  handler's effects and the ack in one transaction;
- typed errors carrying the SQLSTATE (:class:`DeliverError` and subclasses).

The SQL classes import psycopg when first used, so the HTTP client and the
errors work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._consumer_core import ConsumerStats
from .errors import (
    ActiveTransaction,
    AlreadyExists,
    AuthenticationFailed,
    BeingAcked,
    DeliverError,
    DependentObjects,
    InvalidInput,
    InvalidName,
    InvalidParameter,
    LimitExceeded,
    NotCurrent,
    NotFound,
    NullValueNotAllowed,
    PermissionDenied,
    QueueNotFound,
    ReadOnly,
    TooManyInFlight,
    Unavailable,
    WrongTransactionState,
    error_for,
)
from .http import HttpClient
from .types import (
    Alert,
    ArchivedMessage,
    Binding,
    ConsumerGroup,
    DeadLetter,
    Grant,
    Guarantee,
    Id,
    OnExpire,
    Overflow,
    AckCommit,
    Interval,
    LeaseSlots,
    MaintainResult,
    Message,
    PeekedMessage,
    Privilege,
    Published,
    PushMetrics,
    PushSubscription,
    QueueInfo,
    QueueMetrics,
    Replayed,
    RoutingMatch,
)

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .aio_consumer import AsyncConsumer, AsyncExactlyOnceConsumer
    from .client import Client
    from .consumer import Consumer, ExactlyOnceConsumer

__version__ = "0.2.0"

_LAZY = {
    "Client": ".client",
    "AsyncClient": ".aio",
    "Consumer": ".consumer",
    "ExactlyOnceConsumer": ".consumer",
    "AsyncConsumer": ".aio_consumer",
    "AsyncExactlyOnceConsumer": ".aio_consumer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Client",
    "AsyncClient",
    "HttpClient",
    "Consumer",
    "ExactlyOnceConsumer",
    "AsyncConsumer",
    "AsyncExactlyOnceConsumer",
    "ConsumerStats",
    "Message",
    "PeekedMessage",
    "QueueInfo",
    "ConsumerGroup",
    "DeadLetter",
    "ArchivedMessage",
    "QueueMetrics",
    "Grant",
    "Alert",
    "LeaseSlots",
    "Replayed",
    "MaintainResult",
    "PushSubscription",
    "PushMetrics",
    "Binding",
    "Published",
    "RoutingMatch",
    "Id",
    "Interval",
    "Guarantee",
    "OnExpire",
    "Overflow",
    "AckCommit",
    "Privilege",
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
]
