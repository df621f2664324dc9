"""The HTTP client for deliverd, deliver's gateway: the standard library only.

Ids travel as JSON strings (a JSON number in many parsers holds 53 bits, and
delivery ids are larger): a single node's are strings of digits, which this
client turns into Python ints; a cluster's gateway's are strings
"partition:epoch:id", which it keeps as they are. It sends ids as strings.
Errors are the same typed errors as over SQL, from the SQLSTATE in the
gateway's error body.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import DeliverError, InvalidParameter, QueueNotFound, Unavailable, error_from_http
from .types import (
    Binding,
    ConsumerGroup,
    DeadLetter,
    Guarantee,
    Id,
    OnExpire,
    Overflow,
    AckCommit,
    Interval,
    Message,
    PeekedMessage,
    Published,
    QueueInfo,
    QueueMetrics,
    Replayed,
    RoutingMatch,
)

__all__ = ["HttpClient", "parse_interval", "parse_timestamp"]


#: a single node's id (a bigint) as the gateway sends it: a string of digits
_DIGITS = re.compile(r"[0-9]{1,19}")
#: a cluster's id, "partition:epoch:id" (digits only, as deliverd's parse_global_id takes it)
_CLUSTER_ID = re.compile(r"[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}")


def _id(v: Any) -> Id:
    """An id from the gateway: a string of digits (or an int) becomes an
    int; a cluster's ``"partition:epoch:id"`` stays that string."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        if _DIGITS.fullmatch(v):
            return int(v)
        if _CLUSTER_ID.fullmatch(v):
            return v
    raise DeliverError(f"the gateway sent an id that is neither a string of digits nor partition:epoch:id: {v!r}")


def _opt_id(v: Any) -> Id | None:
    return None if v is None else _id(v)


def _id_out(v: Any, what: str) -> str:
    """An id to send: an int, a string of digits or a cluster's
    ``"partition:epoch:id"``; a float or a bool raises TypeError, any other
    string InvalidParameter (22023), before a request is made."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise TypeError(f"{what} must be an int or a str, not {type(v).__name__}")
    if isinstance(v, int):
        return str(v)
    if _DIGITS.fullmatch(v):
        return str(int(v))
    if _CLUSTER_ID.fullmatch(v):
        return v
    raise InvalidParameter(
        f'{what}: {v!r} is not an id (an int, a string of digits or a cluster\'s "partition:epoch:id")'
    )


def _position_out(to: Any) -> str:
    """A consumer group position: "earliest", "latest", a message id (int)
    or an aware datetime."""
    if isinstance(to, bool):
        raise TypeError("to must be 'earliest', 'latest', a message id or a datetime, not bool")
    if isinstance(to, datetime):
        if to.tzinfo is None:
            raise ValueError("to must be an aware datetime (with a tzinfo)")
        return to.isoformat()
    if isinstance(to, int):
        return str(to)
    if isinstance(to, str):
        return to
    raise TypeError(f"to must be 'earliest', 'latest', a message id or a datetime, not {type(to).__name__}")


def parse_timestamp(v: Any) -> datetime | None:
    """A timestamptz as Postgres writes it in JSON (ISO 8601)."""
    if v is None:
        return None
    return datetime.fromisoformat(str(v))


_INTERVAL = re.compile(
    r"""^\s*(?:([-+]?\d+)\s+years?\s*)?
    (?:([-+]?\d+)\s+mons?\s*)?
    (?:([-+]?\d+)\s+days?\s*)?
    (?:([-+])?(\d+):(\d+):(\d+(?:\.\d+)?))?\s*$""",
    re.VERBOSE,
)
_ISO_INTERVAL = re.compile(
    r"^P(?:([-\d.]+)Y)?(?:([-\d.]+)M)?(?:([-\d.]+)D)?(?:T(?:([-\d.]+)H)?(?:([-\d.]+)M)?(?:([-\d.]+)S)?)?$"
)


def parse_interval(v: Any) -> timedelta | None:
    """An interval as Postgres writes it (IntervalStyle ``postgres``, as
    ``"1 day 02:00:00"``, or ``iso_8601``); a month counts 30 days, a year
    365, as psycopg counts them."""
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return timedelta(seconds=v)
    s = str(v)
    m = _INTERVAL.match(s)
    if m and s.strip():
        ye, mo, da, sign, ho, mi, se = m.groups()
        days = 365 * int(ye or 0) + 30 * int(mo or 0) + int(da or 0)
        secs = 0.0
        if ho is not None:
            secs = 3600 * int(ho) + 60 * int(mi) + float(se)
            if sign == "-":
                secs = -secs
        return timedelta(days=days, seconds=secs)
    m = _ISO_INTERVAL.match(s)
    if m:
        ye, mo, da, ho, mi, se = (float(x) if x else 0.0 for x in m.groups())
        return timedelta(days=365 * ye + 30 * mo + da, hours=ho, minutes=mi, seconds=se)
    raise DeliverError(f"the gateway sent an interval that does not parse: {s!r}")


def _interval_out(v: Interval | None) -> float | str | None:
    """A duration in a request body: seconds, or a Postgres interval string."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"a duration must be a timedelta, seconds or an interval string, not {type(v).__name__}")
    return v


def _time_out(v: datetime | str | None) -> str | None:
    """A time in a request body: ISO 8601 (give an aware datetime: a naive
    one is read in the server's time zone), or a string as it is."""
    if v is None or isinstance(v, str):
        return v
    if not isinstance(v, datetime):
        raise TypeError(f"a time must be a datetime or a string, not {type(v).__name__}")
    return v.isoformat()


def _seconds_param(v: Interval | None) -> str | None:
    """A duration in a query parameter: decimal seconds."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, timedelta):
        v = v.total_seconds()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"a duration must be a timedelta or seconds, not {type(v).__name__}")
    return f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def _seconds_of(v: Interval | None) -> float:
    if v is None:
        return 0.0
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except ValueError:
        return 0.0


def _message(d: Mapping[str, Any], queue: str, group: str) -> Message:
    return Message(
        message_id=_id(d["message_id"]),
        delivery_id=_opt_id(d.get("delivery_id")),
        payload=d.get("payload"),
        headers=d.get("headers"),
        ordering_key=d.get("ordering_key"),
        attempt=int(d.get("attempt") or 0),
        enqueued_at=parse_timestamp(d.get("enqueued_at")),  # type: ignore[arg-type]
        lease_expires_at=parse_timestamp(d.get("lease_expires_at")),
        queue=queue,
        consumer_group=group,
    )


def _queue_info(d: Mapping[str, Any]) -> QueueInfo:
    return QueueInfo(
        queue_name=d["queue_name"],
        guarantee=d["guarantee"],
        visibility_timeout=parse_interval(d["visibility_timeout"]),  # type: ignore[arg-type]
        max_attempts=int(d["max_attempts"]),
        fifo=bool(d["fifo"]),
        dedup_window=parse_interval(d["dedup_window"]),  # type: ignore[arg-type]
        retry_base=parse_interval(d["retry_base"]),  # type: ignore[arg-type]
        retry_max=parse_interval(d["retry_max"]),  # type: ignore[arg-type]
        archive_retention=parse_interval(d.get("archive_retention")),
        consumer_groups=list(d.get("consumer_groups") or []),
        created_at=parse_timestamp(d.get("created_at")),
        message_ttl=parse_interval(d.get("message_ttl")),
        on_expire=d.get("on_expire") or "dead_letter",
        max_depth=None if d.get("max_depth") is None else int(d["max_depth"]),
        overflow=d.get("overflow") or "reject",
        ack_commit=d.get("ack_commit") or "durable",
        priorities=bool(d.get("priorities")),
    )


def _dead_letter(d: Mapping[str, Any]) -> DeadLetter:
    return DeadLetter(
        message_id=_id(d["message_id"]),
        consumer_group=d["group_name"],
        payload=d.get("payload"),
        headers=d.get("headers"),
        ordering_key=d.get("ordering_key"),
        attempts=int(d["attempts"]),
        reason=d["reason"],
        last_error=d.get("last_error"),
        enqueued_at=parse_timestamp(d["enqueued_at"]),  # type: ignore[arg-type]
        dead_at=parse_timestamp(d["dead_at"]),  # type: ignore[arg-type]
    )


def _peeked(d: Mapping[str, Any]) -> PeekedMessage:
    return PeekedMessage(
        message_id=_id(d["message_id"]),
        payload=d.get("payload"),
        headers=d.get("headers"),
        ordering_key=d.get("ordering_key"),
        attempt=int(d["attempt"]),
        enqueued_at=parse_timestamp(d["enqueued_at"]),  # type: ignore[arg-type]
        redelivery=bool(d["redelivery"]),
    )


def _metrics(d: Mapping[str, Any]) -> QueueMetrics:
    def opt_int(v: Any) -> int | None:
        return None if v is None else int(v)

    return QueueMetrics(
        queue_name=d["queue_name"],
        consumer_group=d["consumer_group"],
        depth=int(d["depth"]),
        in_flight=int(d["in_flight"]),
        delayed=int(d["delayed"]),
        dead_letters=int(d["dead_letters"]),
        oldest_age=parse_interval(d.get("oldest_age")),
        sent_total=int(d["sent_total"]),
        acked_total=int(d["acked_total"]),
        dead_total=int(d["dead_total"]),
        worker_last_run=parse_timestamp(d.get("worker_last_run")),
        worker_lag=parse_interval(d.get("worker_lag")),
        worker_errors=opt_int(d.get("worker_errors")),
    )


def _lines(resp: Any, base_url: str) -> Iterator[bytes]:
    """The lines of a streamed answer; a connection that breaks raises Unavailable (08006)."""
    while True:
        try:
            line = resp.readline()
        except OSError as e:
            raise Unavailable(f"the stream from {base_url} broke: {e}", sqlstate="08006") from e
        if not line:
            return
        yield line


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class HttpClient:
    """deliver over HTTP: the routes of ``deliverd`` (``/v1``).

    ``token`` is sent as ``Authorization: Bearer`` (a JWT or a token of the
    gateway's token file), or a function returning one, called for each
    request (to renew a token before it expires); ``timeout`` bounds each
    request in seconds (a long poll gets its ``wait`` on top). The methods
    are those of :class:`~deliver.Client` that the gateway serves, with the
    same arguments and return types. A gateway that cannot be reached raises
    :class:`~deliver.Unavailable` with SQLSTATE 08006.
    """

    def __init__(
        self, base_url: str, token: str | Callable[[], str] | None = None, *, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _path(self, *segments: str) -> str:
        for s in segments:
            if not isinstance(s, str):
                raise TypeError(f"a name must be a str, not {type(s).__name__}")
        return "/v1/queues" + "".join("/" + urllib.parse.quote(s, safe="") for s in segments)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One request; returns the decoded JSON answer, raises the typed
        error of an error answer."""
        url = self.base_url + path
        q = {k: v for k, v in (query or {}).items() if v is not None}
        if q:
            url += "?" + urllib.parse.urlencode(q)
        data = None
        h = {"Accept": "application/json"}
        token = self.token() if callable(self.token) else self.token
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        with self._open(urllib.request.Request(url, data=data, headers=h, method=method), timeout) as resp:
            try:
                raw = resp.read()
            except OSError as e:
                raise Unavailable(f"cannot reach the gateway at {self.base_url}: {e}", sqlstate="08006") from e
        return json.loads(raw) if raw else None

    def _open(self, req: urllib.request.Request, timeout: float | None) -> Any:
        """Send a request; its answer to read, or the typed error of an
        error answer (Unavailable, 08006, when the gateway cannot be reached)."""
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                decoded = json.loads(raw) if raw else None
            except ValueError:
                decoded = raw.decode("utf-8", "replace")
            raise error_from_http(e.code, decoded, e.headers.get("Retry-After")) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise Unavailable(
                f"cannot reach the gateway at {self.base_url}: {reason}", sqlstate="08006"
            ) from e

    # ---- queues ----

    def create_queue(
        self,
        queue: str,
        *,
        guarantee: Guarantee | None = None,
        visibility_timeout: Interval | None = None,
        max_attempts: int | None = None,
        fifo: bool | None = None,
        dedup_window: Interval | None = None,
        retry_base: Interval | None = None,
        retry_max: Interval | None = None,
        message_ttl: Interval | None = None,
        on_expire: OnExpire | None = None,
        max_depth: int | None = None,
        overflow: Overflow | None = None,
        ack_commit: AckCommit | None = None,
        priorities: bool | None = None,
    ) -> None:
        self.request(
            "POST",
            self._path(),
            body=_drop_none(
                {
                    "name": queue,
                    "guarantee": guarantee,
                    "visibility_timeout": _interval_out(visibility_timeout),
                    "max_attempts": max_attempts,
                    "fifo": fifo,
                    "dedup_window": _interval_out(dedup_window),
                    "retry_base": _interval_out(retry_base),
                    "retry_max": _interval_out(retry_max),
                    "message_ttl": _interval_out(message_ttl),
                    "on_expire": on_expire,
                    "max_depth": max_depth,
                    "overflow": overflow,
                    "ack_commit": ack_commit,
                    "priorities": priorities,
                }
            ),
        )

    def alter_queue(
        self,
        queue: str,
        *,
        visibility_timeout: Interval | None = None,
        max_attempts: int | None = None,
        dedup_window: Interval | None = None,
        retry_base: Interval | None = None,
        retry_max: Interval | None = None,
        archive_retention: Interval | None = None,
        message_ttl: Interval | None = None,
        on_expire: OnExpire | None = None,
        max_depth: int | None = None,
        overflow: Overflow | None = None,
        ack_commit: AckCommit | None = None,
        priorities: bool | None = None,
    ) -> None:
        """Change a queue's settings (PATCH /v1/queues/{queue}); None keeps a
        setting as it is (``message_ttl=0`` removes the ttl)."""
        self.request(
            "PATCH",
            self._path(queue),
            body=_drop_none(
                {
                    "visibility_timeout": _interval_out(visibility_timeout),
                    "max_attempts": max_attempts,
                    "dedup_window": _interval_out(dedup_window),
                    "retry_base": _interval_out(retry_base),
                    "retry_max": _interval_out(retry_max),
                    "archive_retention": _interval_out(archive_retention),
                    "message_ttl": _interval_out(message_ttl),
                    "on_expire": on_expire,
                    "max_depth": max_depth,
                    "overflow": overflow,
                    "ack_commit": ack_commit,
                    "priorities": priorities,
                }
            ),
        )

    def drop_queue(self, queue: str) -> bool:
        return bool(self.request("DELETE", self._path(queue))["dropped"])

    def list_queues(self) -> list[QueueInfo]:
        return [_queue_info(d) for d in self.request("GET", self._path())]

    def get_queue(self, queue: str) -> QueueInfo:
        d = self.request("GET", self._path(queue))
        if d is None:
            raise QueueNotFound(f'queue "{queue}" does not exist')
        return _queue_info(d)

    # ---- consumer groups ----

    def create_consumer_group(self, queue: str, group: str, *, start_from: str | None = None) -> None:
        self.request("POST", self._path(queue, "groups"), body=_drop_none({"name": group, "start_from": start_from}))

    def drop_consumer_group(self, queue: str, group: str) -> bool:
        return bool(self.request("DELETE", self._path(queue, "groups", group))["dropped"])

    def reset_consumer_group(self, queue: str, group: str, to: str | int | datetime) -> None:
        self.request("POST", self._path(queue, "groups", group, "reset"), body={"to": _position_out(to)})

    def replay_archive(
        self,
        queue: str,
        group: str,
        since: datetime | str | None = None,
        after_id: Id | None = 0,
        max_messages: int | None = 100,
    ) -> Replayed:
        body = _drop_none(
            {
                "since": _time_out(since),
                "after_id": None if after_id is None else _id_out(after_id, "after_id"),
                "max_messages": max_messages,
            }
        )
        d = self.request("POST", self._path(queue, "groups", group, "replay"), body=body)
        return Replayed(int(d["replayed"]), _opt_id(d["last_id"]))

    def list_consumer_groups(self, queue: str) -> list[ConsumerGroup]:
        return [
            ConsumerGroup(
                d["consumer_group"],
                parse_timestamp(d["created_at"]),  # type: ignore[arg-type]
                bool(d.get("paused", False)),
                d.get("rate_per_second"),
                d.get("rate_burst"),
            )
            for d in self.request("GET", self._path(queue, "groups"))
        ]

    # ---- flow control (administration) ----

    def pause_consumer_group(self, queue: str, group: str = "default") -> bool:
        """Pause a consumer group: its receives return nothing until it is
        resumed (leases already handed out keep working). False when it was
        paused already."""
        return bool(self.request("POST", self._path(queue, "groups", group, "pause"))["paused"])

    def resume_consumer_group(self, queue: str, group: str = "default") -> bool:
        """Resume a paused consumer group; its waiting long polls wake up.
        False when it was not paused."""
        return bool(self.request("POST", self._path(queue, "groups", group, "resume"))["resumed"])

    def set_consumer_group_rate(
        self, queue: str, group: str, per_second: float | None, burst: int | None = None
    ) -> None:
        """Limit the group's receives to ``per_second`` messages a second,
        at most ``burst`` at once (default ``max(1, ceil(per_second))``);
        ``per_second=None`` removes the limit."""
        self.request("PUT", self._path(queue, "groups", group, "rate"), body={"per_second": per_second, "burst": burst})

    def set_fifo_key_limit(self, queue: str, max_in_flight_per_key: int) -> None:
        """FIFO queues: let up to ``max_in_flight_per_key`` messages of one
        ordering key out at once (1, the default: one at a time)."""
        self.request("PUT", self._path(queue, "fifo-key-limit"), body={"max_in_flight_per_key": max_in_flight_per_key})

    # ---- sending ----

    def send(
        self,
        queue: str,
        payload: Any,
        *,
        headers: dict[str, Any] | None = None,
        ordering_key: str | None = None,
        idempotency_key: str | None = None,
        delay: Interval | None = None,
        expires_at: datetime | str | None = None,
        priority: int | None = None,
    ) -> Id:
        body: dict[str, Any] = {"payload": payload}
        body.update(
            _drop_none(
                {
                    "headers": headers,
                    "ordering_key": ordering_key,
                    "idempotency_key": idempotency_key,
                    "delay": _interval_out(delay),
                    "expires_at": _time_out(expires_at),
                    "priority": priority,
                }
            )
        )
        return _id(self.request("POST", self._path(queue, "messages"), body=body)["message_id"])

    def send_batch(
        self,
        queue: str,
        payloads: Sequence[Any],
        *,
        headers: Sequence[dict[str, Any] | None] | None = None,
        ordering_keys: Sequence[str | None] | None = None,
        idempotency_keys: Sequence[str | None] | None = None,
        delay: Interval | None = None,
        expires_at: datetime | str | None = None,
        priority: int | None = None,
    ) -> list[Id]:
        if isinstance(payloads, (str, bytes, dict)):
            raise TypeError("payloads must be a sequence of payloads")
        n = len(payloads)
        for what, lst in (("headers", headers), ("ordering_keys", ordering_keys), ("idempotency_keys", idempotency_keys)):
            if lst is not None and len(lst) != n:
                raise ValueError(f"{what} must have one element per payload ({n}), not {len(lst)}")
        messages = []
        for i, p in enumerate(payloads):
            m: dict[str, Any] = {"payload": p}
            m.update(
                _drop_none(
                    {
                        "headers": headers[i] if headers is not None else None,
                        "ordering_key": ordering_keys[i] if ordering_keys is not None else None,
                        "idempotency_key": idempotency_keys[i] if idempotency_keys is not None else None,
                    }
                )
            )
            messages.append(m)
        body = _drop_none(
            {
                "messages": messages,
                "delay": _interval_out(delay),
                "expires_at": _time_out(expires_at),
                "priority": priority,
            }
        )
        ids = self.request("POST", self._path(queue, "messages", "batch"), body=body)["message_ids"]
        return [_id(x) for x in ids]

    # ---- receiving ----

    def receive(
        self,
        queue: str,
        max_messages: int = 1,
        *,
        visibility_timeout: Interval | None = None,
        wait: Interval | None = None,
        consumer_group: str | None = None,
    ) -> list[Message]:
        """``visibility_timeout`` and ``wait`` in seconds (``wait`` up to the
        gateway's ``max_wait``)."""
        rows = self.request(
            "POST",
            self._path(queue, "receive"),
            query={
                "max": str(max_messages),
                "visibility_timeout": _seconds_param(visibility_timeout),
                "wait": _seconds_param(wait),
                "group": consumer_group,
            },
            timeout=self.timeout + _seconds_of(wait),
        )
        return [_message(d, queue, consumer_group or "default") for d in rows]

    def stream(
        self,
        queue: str,
        *,
        max_messages: int | None = None,
        visibility_timeout: Interval | None = None,
        consumer_group: str | None = None,
        last_event_id: Id | None = None,
    ) -> Iterator[Message]:
        """The queue's Server-Sent Events stream (``GET .../stream``): yields
        each message as its event comes. The gateway acks the messages whose
        events it handed to the socket (a message yielded is acked, one lost
        on the way is not: at most once for the consumer; for per-message
        acks use ``receive``). Pass the id of the last message seen as
        ``last_event_id`` when resuming: if it comes back (its ack was lost)
        the gateway acks it without sending it again. The stream ends when
        the gateway ends it (its token expired, a shutdown); an error event
        raises its typed error. Errors before the stream opens (an unknown
        queue, no grant) raise as any request's. Closing the generator
        closes the connection. ``timeout`` must be longer than the gateway's
        ``stream_wait`` (its keep-alives come that often)."""
        group = consumer_group or "default"
        url = self.base_url + self._path(queue, "stream")
        q = {
            "max": str(max_messages) if max_messages is not None else None,
            "visibility_timeout": _seconds_param(visibility_timeout),
            "group": consumer_group,
        }
        q = {k: v for k, v in q.items() if v is not None}
        if q:
            url += "?" + urllib.parse.urlencode(q)
        h = {"Accept": "text/event-stream"}
        token = self.token() if callable(self.token) else self.token
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if last_event_id is not None:
            h["Last-Event-ID"] = _id_out(last_event_id, "last_event_id")
        with self._open(urllib.request.Request(url, headers=h, method="GET"), None) as resp:
            event: dict[str, str] = {}
            for raw_line in _lines(resp, self.base_url):
                line = raw_line.decode("utf-8").rstrip("\r\n")
                if line:
                    if not line.startswith(":"):
                        field, _, value = line.partition(":")
                        event[field] = value[1:] if value.startswith(" ") else value
                    continue
                kind, data = event.get("event", "message"), event.get("data")
                event = {}
                if data is None:
                    continue
                if kind == "message":
                    yield _message(json.loads(data), queue, group)
                elif kind == "error":
                    raise error_from_http(200, json.loads(data))
                elif kind == "end":
                    return

    def ack(self, queue: str, delivery_id: Id) -> bool:
        path = self._path(queue, "deliveries", _id_out(delivery_id, "delivery_id"), "ack")
        return bool(self.request("POST", path)["acked"])

    def ack_batch(self, queue: str, delivery_ids: Iterable[Id]) -> int:
        if isinstance(delivery_ids, (str, bytes)):
            raise TypeError("delivery_ids must be a sequence of ids")
        ids = [_id_out(x, "delivery_ids") for x in delivery_ids]
        return int(self.request("POST", self._path(queue, "ack"), body={"delivery_ids": ids})["acked"])

    def nack(
        self,
        queue: str,
        delivery_id: Id,
        *,
        error: str | None = None,
        retry_after: Interval | None = None,
        dead_letter: bool = False,
    ) -> bool:
        path = self._path(queue, "deliveries", _id_out(delivery_id, "delivery_id"), "nack")
        body = _drop_none(
            {"error": error, "retry_after": _interval_out(retry_after), "dead_letter": True if dead_letter else None}
        )
        return bool(self.request("POST", path, body=body)["nacked"])

    def extend_lease(self, queue: str, delivery_id: Id, visibility_timeout: Interval) -> datetime:
        path = self._path(queue, "deliveries", _id_out(delivery_id, "delivery_id"), "extend")
        d = self.request("POST", path, body={"visibility_timeout": _interval_out(visibility_timeout)})
        return parse_timestamp(d["lease_expires_at"])  # type: ignore[return-value]

    # ---- dead letters, metrics ----

    def dead_letters(
        self, queue: str, *, consumer_group: str | None = None, max_messages: int | None = None
    ) -> list[DeadLetter]:
        rows = self.request(
            "GET",
            self._path(queue, "dead-letters"),
            query={"group": consumer_group, "max": None if max_messages is None else str(max_messages)},
        )
        return [_dead_letter(d) for d in rows]

    def redrive(
        self,
        queue: str,
        *,
        message_ids: Iterable[Id] | None = None,
        consumer_group: str | None = None,
        to_queue: str | None = None,
    ) -> int:
        body: dict[str, Any] = {}
        if message_ids is not None:
            if isinstance(message_ids, (str, bytes)):
                raise TypeError("message_ids must be a sequence of ids")
            body["message_ids"] = [_id_out(x, "message_ids") for x in message_ids]
        if consumer_group is not None:
            body["consumer_group"] = consumer_group
        if to_queue is not None:
            body["to_queue"] = to_queue
        return int(self.request("POST", self._path(queue, "redrive"), body=body)["redriven"])

    def delete_message(self, queue: str, message_id: Id) -> bool:
        path = self._path(queue, "messages", _id_out(message_id, "message_id"))
        return bool(self.request("DELETE", path)["deleted"])

    def peek(
        self, queue: str, max_messages: int | None = 10, *, consumer_group: str | None = "default"
    ) -> list[PeekedMessage]:
        """``GET /v1/queues/{queue}/peek?max=&group=``: the next messages a
        receive of the group would hand out, not leased (None: the gateway's
        default, 10 and ``"default"``)."""
        rows = self.request(
            "GET",
            self._path(queue, "peek"),
            query={"group": consumer_group, "max": None if max_messages is None else str(max_messages)},
        )
        return [_peeked(d) for d in rows]

    def delete_dead_letters(
        self, queue: str, message_ids: Iterable[Id], *, consumer_group: str | None = None
    ) -> int:
        """``DELETE /v1/queues/{queue}/dead-letters``: delete the dead letters
        of these messages for good (of one group, or of every group: None);
        returns how many."""
        body: dict[str, Any] = {}
        if message_ids is not None:
            if isinstance(message_ids, (str, bytes)):
                raise TypeError("message_ids must be a sequence of ids")
            body["message_ids"] = [_id_out(x, "message_ids") for x in message_ids]
        if consumer_group is not None:
            body["consumer_group"] = consumer_group
        return int(self.request("DELETE", self._path(queue, "dead-letters"), body=body)["deleted"])

    def metrics(self, queue: str) -> list[QueueMetrics]:
        return [_metrics(d) for d in self.request("GET", self._path(queue, "metrics"))]

    # ---- topic routing ----

    def publish(
        self,
        routing_key: str,
        payload: Any,
        *,
        headers: dict[str, Any] | None = None,
        ordering_key: str | None = None,
        idempotency_key: str | None = None,
        delay: Interval | None = None,
        mandatory: bool | None = None,
        expires_at: datetime | str | None = None,
        priority: int | None = None,
    ) -> list[Published]:
        """``POST /v1/publish``: the message to every queue bound to a
        matching pattern; the queues and the message's id in each
        (``expires_at``: every copy's deadline, ``priority`` every copy's
        priority, as in :meth:`send`)."""
        body: dict[str, Any] = {"routing_key": routing_key, "payload": payload}
        body.update(
            _drop_none(
                {
                    "headers": headers,
                    "ordering_key": ordering_key,
                    "idempotency_key": idempotency_key,
                    "delay": _interval_out(delay),
                    "mandatory": mandatory,
                    "expires_at": _time_out(expires_at),
                    "priority": priority,
                }
            )
        )
        return [Published(d["queue"], _id(d["message_id"])) for d in self.request("POST", "/v1/publish", body=body)]

    def bind(self, pattern: str, queue: str) -> bool:
        """``POST /v1/bindings``; False when the queue was bound to the pattern already."""
        return bool(self.request("POST", "/v1/bindings", body={"pattern": pattern, "queue": queue})["created"])

    def unbind(self, pattern: str, queue: str) -> bool:
        """``DELETE /v1/bindings``; False when there was no such binding."""
        return bool(self.request("DELETE", "/v1/bindings", body={"pattern": pattern, "queue": queue})["removed"])

    def list_bindings(self, queue: str | None = None) -> list[Binding]:
        return [
            Binding(d["pattern"], d["queue"], parse_timestamp(d["created_at"]))  # type: ignore[arg-type]
            for d in self.request("GET", "/v1/bindings", query={"queue": queue})
        ]

    def test_routing(self, routing_key: str) -> list[RoutingMatch]:
        """``GET /v1/routing?key=``: the bindings a publish would match."""
        return [RoutingMatch(d["queue"], d["pattern"]) for d in self.request("GET", "/v1/routing", query={"key": routing_key})]

    # ---- the gateway itself ----

    def healthy(self) -> bool:
        """``/healthz`` answers 200 (the process runs)."""
        try:
            self.request("GET", "/healthz")
            return True
        except DeliverError:
            return False

    def ready(self) -> bool:
        """``/readyz`` answers 200 (Postgres answers through the pool)."""
        try:
            self.request("GET", "/readyz")
            return True
        except DeliverError:
            return False
