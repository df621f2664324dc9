"""Fixtures: a real Postgres with deliver (test.sh makes the database and
passes DELIVER_TEST_DSN and DELIVER_TEST_ROLE, a role with no rights on any
queue), queues made and dropped per test, the gateway test.sh started
(DELIVER_TEST_HTTP, DELIVER_TEST_JWT_SECRET), each of the three clients in
turn (anyclient), and consumer processes run from tests/fixtures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import getpass
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(SRC))

import psycopg  # noqa: E402

import deliver  # noqa: E402

DSN = os.environ.get("DELIVER_TEST_DSN") or "dbname=" + os.environ.get("PGDATABASE", "client_python")
#: a NOLOGIN role with USAGE on the schema deliver and no queue rights
ROLE = os.environ.get("DELIVER_TEST_ROLE", "client_py_app")
HTTP_URL = os.environ.get("DELIVER_TEST_HTTP", "")
JWT_SECRET = os.environ.get("DELIVER_TEST_JWT_SECRET", "")
PYTHON = os.environ.get("DELIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def dsn() -> str:
    return DSN


def sql(query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run a statement on a connection of its own (autocommit)."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []


def unique(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client() -> Iterator[deliver.Client]:
    with deliver.Client.connect(DSN) as c:
        yield c


@pytest.fixture
def make_queue() -> Iterator[Callable[..., str]]:
    """make_queue(**options) creates a queue with a unique name; each is
    dropped when the test ends."""
    made: list[str] = []

    def make(**options: Any) -> str:
        name = unique("q")
        with deliver.Client.connect(DSN) as c:
            c.create_queue(name, **options)
        made.append(name)
        return name

    yield make
    with deliver.Client.connect(DSN) as c:
        for name in made:
            try:
                c.drop_queue(name)
            except deliver.QueueNotFound:
                pass


@pytest.fixture
def queue(make_queue: Callable[..., str]) -> str:
    """An at-least-once queue: 2 s leases, retries after 0.1 s, 3 attempts."""
    return make_queue(visibility_timeout=2, max_attempts=3, retry_base=0.1, retry_max=0.2)


@pytest.fixture
def effects() -> Iterator[str]:
    """A table of effects (message_id, note), no unique key: a duplicate
    effect shows as a second row."""
    name = unique("effects")
    sql(f"CREATE TABLE {name} (message_id bigint NOT NULL, note text)")
    yield name
    sql(f"DROP TABLE {name}")


def drop_queue_retrying(queue: str) -> None:
    """Drop a queue while consumers long-poll it: a drop that meets a
    receive in progress can lose a deadlock (40P01), and is tried again."""
    with deliver.Client.connect(DSN) as c:
        for _ in range(20):
            try:
                c.drop_queue(queue)
                return
            except deliver.Unavailable as e:
                if e.sqlstate != "40P01":
                    raise
                time.sleep(0.1)
    raise AssertionError(f"could not drop {queue}")


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(interval)


def jwt(secret: str = "", **claims: Any) -> str:
    """An HS256 JWT signed with the gateway's secret (or another)."""

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new((secret or JWT_SECRET).encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


class Child:
    """A Python process running a script of tests/fixtures; its output lines
    are collected as they come."""

    def __init__(self, script: str, **env: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [PYTHON, str(FIXTURES / script)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env={**os.environ, "DELIVER_TEST_DSN": DSN, **env},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, prefix: str, count: int = 1, timeout: float = 15.0) -> list[str]:
        def found() -> list[str] | None:
            got = [x for x in self.lines if x.startswith(prefix)]
            if len(got) >= count:
                return got
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise AssertionError(f"the process ended ({self.proc.returncode}): {self.lines}")
            return None

        result: list[str] = wait_until(found, timeout, what=f"{count} line(s) {prefix!r}")
        return result

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def children() -> Iterator[Callable[..., Child]]:
    """children(script, **env) starts a process; any still running at the
    end is killed."""
    started: list[Child] = []

    def start(script: str, **env: str) -> Child:
        c = Child(script, **env)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def put_in_archive(queue: str) -> None:
    """Two messages in the queue's archive (ids 7 and 8, the first an hour
    old with key "k" and headers), as maintenance would have left them."""
    table = sql(
        "SELECT format('deliver.%%I', format('q%%s_archive', queue_id)) FROM deliver.queue WHERE queue_name = %s",
        queue,
    )[0][0]
    sql(
        f"INSERT INTO {table} (message_id, enqueued_at, ordering_key, headers, payload) VALUES "
        """(7, now() - interval '1 hour', 'k', '{"h": 1}', '{"n": 7}'), (8, now(), NULL, NULL, '{"n": 8}')"""
    )


class AsyncAdapter:
    """The AsyncClient's calls run one at a time, as the blocking client's."""

    def __init__(self, c: deliver.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self._c, self._loop = c, loop

    def __getattr__(self, name: str) -> Callable[..., Any]:
        f = getattr(self._c, name)
        return lambda *a, **k: self._loop.run_until_complete(f(*a, **k))


@pytest.fixture(params=["sql", "asyncio", "http"])
def anyclient(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Each of the three clients in turn, calls made the same way."""
    if request.param == "sql":
        with deliver.Client.connect(DSN) as c:
            yield c
    elif request.param == "asyncio":
        loop = asyncio.new_event_loop()
        ac = loop.run_until_complete(deliver.AsyncClient.connect(DSN))
        yield AsyncAdapter(ac, loop)
        loop.run_until_complete(ac.close())
        loop.close()
    else:
        if not HTTP_URL or not JWT_SECRET:
            raise RuntimeError("DELIVER_TEST_HTTP and DELIVER_TEST_JWT_SECRET must be set (test.sh starts deliverd)")
        token = jwt(role=os.environ.get("PGUSER") or getpass.getuser(), exp=int(time.time()) + 3600)
        yield deliver.HttpClient(HTTP_URL, token, timeout=15)
