"""Kept-alive connections under gunicorn.conf.py's worker (KeepAliveThreadWorker), as IdPs and
nginx's upstream pool use them: request after request on one connection, each answered in
order and in full; with more busy connections than threads, every connection still served
(a thread keeps its connection only while no other connection waits for one); and with several
workers, the connections spread evenly over them, whichever worker won each connect."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import TOKEN
from tests.e2e.service import gunicorn, migrate
from tests.payloads import PATCH_URN, user_payload

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}


@pytest.fixture
def service(fresh_database_url: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """One worker of 2 threads, so that a few connections outnumber its threads; yields
    (host, port)."""
    migrate(fresh_database_url)
    with gunicorn(fresh_database_url, tmp_path / "gunicorn.log", workers=1, threads=2) as base:
        address = urlsplit(base)
        yield address.hostname or "", address.port or 0


@pytest.fixture
def connection(service: tuple[str, int]) -> Iterator[http.client.HTTPConnection]:
    """A client connection to the service, kept alive between requests."""
    connection = http.client.HTTPConnection(*service, timeout=30)
    yield connection
    connection.close()


def call(
    connection: http.client.HTTPConnection, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    data = json.dumps(body) if body is not None else None
    connection.request(method, f"/scim/v2{path}", body=data, headers=AUTH)
    response = connection.getresponse()
    raw = response.read()
    return response.status, json.loads(raw) if raw else None


def test_one_connection_carries_a_users_whole_lifecycle(
    connection: http.client.HTTPConnection,
) -> None:
    status, _ = call(connection, "GET", "/Users?filter=userName%20eq%20%22kim%40example.com%22")
    assert status == 200
    first_socket = connection.sock
    for n in range(20):
        status, created = call(
            connection, "POST", "/Users", user_payload(userName=f"kim{n}@example.com")
        )
        assert (status, created["userName"]) == (201, f"kim{n}@example.com")
        operation = {"op": "replace", "path": "active", "value": False}
        patch = {"schemas": [PATCH_URN], "Operations": [operation]}
        status, patched = call(connection, "PATCH", f"/Users/{created['id']}", patch)
        assert (status, patched["active"]) == (200, False)
        status, found = call(connection, "GET", f"/Users/{created['id']}")
        assert (status, found["id"], found["active"]) == (200, created["id"], False)
    assert connection.sock is first_socket  # never closed: every answer kept it alive
    status, listed = call(connection, "GET", "/Users?count=1")
    assert (status, listed["totalResults"]) == (200, 20)


def test_pipelined_requests_are_answered_in_order(
    service: tuple[str, int], connection: http.client.HTTPConnection
) -> None:
    """Two requests in one write: the second is read already, with the first, and must still be
    answered, second."""
    ids = [
        call(connection, "POST", "/Users", user_payload(userName=f"p{n}@example.com"))[1]["id"]
        for n in range(2)
    ]
    with socket.create_connection(service, timeout=30) as raw:
        raw.sendall(
            b"".join(
                f"GET /scim/v2/Users/{user_id} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
                for user_id in ids
            )
        )
        answers = _read_responses(raw, 2)
    assert [status for status, _ in answers] == [200, 200]
    assert [body["id"] for _, body in answers] == ids


def test_an_unread_refused_body_leaves_the_next_request_intact(service: tuple[str, int]) -> None:
    """A POST refused before its body is read (no token: 401), then a request on the same
    connection: the unread body is not taken for the start of the next request."""
    body = json.dumps(user_payload(userName="unread@example.com")).encode()
    with socket.create_connection(service, timeout=30) as raw:
        raw.sendall(
            b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        ((status, refused),) = _read_responses(raw, 1)
        assert (status, refused["status"]) == (401, "401")
        raw.sendall(
            b"GET /scim/v2/Users?count=0 HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        ((status, listed),) = _read_responses(raw, 1)
    assert (status, listed["totalResults"]) == (200, 0)


def test_more_busy_connections_than_threads_are_all_served(service: tuple[str, int]) -> None:
    """Six connections sending without pause to one worker of two threads: a thread that kept
    answering its own connection while others waited would starve four of them."""
    connections = 6
    answered = [0] * connections
    failures: list[str] = []
    stop = threading.Event()

    def send(index: int) -> None:
        connection = http.client.HTTPConnection(*service, timeout=30)
        try:
            while not stop.is_set():
                status, _ = call(connection, "GET", "/Users?count=1")
                if status != 200:
                    failures.append(f"connection {index}: {status}")
                    return
                answered[index] += 1
        except OSError as e:
            failures.append(f"connection {index}: {e!r}")
        finally:
            connection.close()

    _run_for(3, stop, [lambda n=n: send(n) for n in range(connections)])
    assert failures == []
    # Measured: within 15% of each other. Without the worker's check for waiting connections,
    # some got a single answer in the 3 s while others got hundreds.
    assert min(answered) >= max(answered) // 3, answered


def test_kept_alive_connections_spread_evenly_over_the_workers(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """Eight connections sending without pause to two workers of two threads end up four and
    four, whichever worker won each connect: a worker two connections above the other stops
    accepting and, while connections wait for its threads, answers with "Connection: close";
    the client connects again, and the other worker takes it. Every request is answered."""
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("counts each worker's connections from Linux's /proc")
    migrate(fresh_database_url)
    with gunicorn(fresh_database_url, tmp_path / "gunicorn.log", workers=2, threads=2) as base:
        address = urlsplit(base)
        service = (address.hostname or "", address.port or 0)
        connections = [http.client.HTTPConnection(*service, timeout=30) for _ in range(8)]
        statuses: Counter[int] = Counter()
        failures: list[str] = []
        stop = threading.Event()

        def send(connection: http.client.HTTPConnection) -> None:
            try:
                while not stop.is_set():
                    statuses[call(connection, "GET", "/Users?count=1")[0]] += 1
            except OSError as e:
                failures.append(repr(e))

        _run_for(4, stop, [lambda c=c: send(c) for c in connections])
        held = sorted(_connections_held(service[1]).values())
        for connection in connections:
            connection.close()
    assert (failures, set(statuses)) == ([], {200})
    # A connection closed by its last answer may not have come back yet.
    assert len(held) == 2 and held[1] - held[0] <= 1 and sum(held) >= 7, held


def _run_for(seconds: float, stop: threading.Event, senders: list[Callable[[], None]]) -> None:
    """Each sender in a thread of its own for `seconds`; then `stop` is set, and they end."""
    threads = [threading.Thread(target=sender) for sender in senders]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)


def _connections_held(port: int) -> dict[int, int]:
    """How many established TCP connections to local IPv4 `port` each process holds (Linux:
    the kernel's socket table, then each process's open sockets)."""
    sockets = set()
    with open("/proc/net/tcp") as rows:
        for row in list(rows)[1:]:
            _, local, _, state, *_, inode = row.split()[:10]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":  # ESTABLISHED
                sockets.add(f"socket:[{inode}]")
    held: Counter[int] = Counter()
    for descriptors in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [os.readlink(descriptor) for descriptor in descriptors.iterdir()]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        held[int(descriptors.parent.name)] += sum(link in sockets for link in links)
    return {pid: count for pid, count in held.items() if count}


def _read_responses(raw: socket.socket, count: int) -> list[tuple[int, Any]]:
    """`count` HTTP/1.1 responses with a Content-Length, read off a raw socket."""
    buffer = b""
    answers: list[tuple[int, Any]] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            buffer += _receive(raw)
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        while len(buffer) < length:
            buffer += _receive(raw)
        body, buffer = buffer[:length], buffer[length:]
        answers.append((int(lines[0].split()[1]), json.loads(body)))
    return answers


def _receive(raw: socket.socket) -> bytes:
    chunk = raw.recv(65536)
    if not chunk:
        raise AssertionError("the service closed the connection before answering")
    return chunk
