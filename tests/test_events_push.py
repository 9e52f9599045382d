"""Push delivery (RFC 8935) by the worker (`flask events run`, app/worker.py) to a real local
HTTP receiver: signed SETs that verify against the JWKS, retries with backoff, dead letters,
tenancy, per-resource order under several workers (PostgreSQL), one worker on SQLite, and the
operators' commands `flask events status`, `dead` and `replay` (issue 17)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import tenancy
from app.db import db
from app.models import EventDelivery
from app.store import deliveries
from app.worker import AlreadyRunning, Settings, Worker, failure
from tests.net import free_port
from tests.payloads import BASE, patch_payload, user_payload
from tests.set_receiver import Received, running
from tests.test_events_delivery import verify
from tests.test_tenants_cli import fails, ok, run

PROV = "urn:ietf:params:scim:event:prov"
AUDIENCE = "https://app.example"
ISSUER = "https://scim.example/scim/v2"


def add_pusher(app: Flask, url: str, *extra: str, name: str = "hook", tenant: str = "default"):
    out = ok(
        app, "events", "receivers", "add", name, "--tenant", tenant, "--url", url,
        "--audience", AUDIENCE, *extra,
    )  # fmt: skip
    return {"id": re.search(r": ([0-9a-f-]{36})\n", out).group(1)}


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "base_url": ISSUER,
        "timeout": 5.0,
        "retry_base": 0.05,
        "retry_max": 0.2,
        "max_age": timedelta(hours=1),
        "poll_interval": 0.05,
        "threads": 4,
    }
    return Settings(**(values | overrides))


@contextmanager
def worker(app: Flask, **overrides: Any) -> Iterator[Worker]:
    """The worker in a thread of its own, as `flask events run` runs it; stopped at the end."""
    runner = Worker(app, settings(**overrides))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as e:  # the test sees it
            failure.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop()
        thread.join(30)
        assert not thread.is_alive()
        assert failure == []


def rows(tenant_id: int = tenancy.DEFAULT_TENANT_ID) -> list[EventDelivery]:
    db.session.remove()
    with tenancy.entered(tenant_id):
        found = list(db.session.query(EventDelivery).order_by(EventDelivery.event_id))
    db.session.remove()
    return found


def wait_until(done: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        time.sleep(0.02)


def deactivate(client, user_id: str) -> None:
    response = client.patch(
        f"{BASE}/Users/{user_id}",
        json=patch_payload({"op": "replace", "path": "active", "value": False}),
    )
    assert response.status_code == 200


def test_pushed_sets_verify_against_the_jwks_and_keep_the_resources_order(app, client):
    with running() as receiver:
        hook = add_pusher(app, receiver.url)
        user = client.post(f"{BASE}/Users", json=user_payload(externalId="ada")).json
        deactivate(client, user["id"])
        client.patch(
            f"{BASE}/Users/{user['id']}",
            json=patch_payload({"op": "replace", "path": "displayName", "value": "Ada L."}),
        )
        assert client.delete(f"{BASE}/Users/{user['id']}").status_code == 204
        with worker(app):
            receiver.wait_for(lambda: len(receiver.received) == 4)
            wait_until(lambda: all(row.state == "delivered" for row in rows()))
    for got in receiver.received:
        assert got.headers["Content-Type"] == "application/secevent+jwt"  # RFC 8935 §2
        assert got.headers["Accept"] == "application/json"
    claims = [verify(client, hook, got.token, audience=AUDIENCE) for got in receiver.received]
    assert [c["iss"] for c in claims] == [ISSUER] * 4
    assert [sorted(c["events"]) for c in claims] == [
        [f"{PROV}:activate", f"{PROV}:create:notice"],
        [f"{PROV}:deactivate", f"{PROV}:patch:notice"],
        [f"{PROV}:patch:notice"],
        [f"{PROV}:delete"],
    ]
    assert claims[2]["events"][f"{PROV}:patch:notice"]["attributes"] == ["displayName"]
    assert {c["sub_id"]["uri"] for c in claims} == {f"/Users/{user['id']}"}
    sequences = [c["sequence"] for c in claims]
    assert sequences == sorted(sequences) and len(set(sequences)) == 4
    assert [(row.state, row.attempts, row.last_error) for row in rows()] == [
        ("delivered", 1, None)
    ] * 4


def test_a_503_is_tried_again_after_a_backoff_with_the_same_jti(app, client):
    answers = iter([(503, None)])
    with running() as receiver:
        receiver.answer = lambda _: next(answers, (202, None))
        add_pusher(app, receiver.url)
        client.post(f"{BASE}/Users", json=user_payload())
        with worker(app):
            wait_until(lambda: [row.state for row in rows()] == ["delivered"])
    (jti,) = set(receiver.jtis())
    assert receiver.jtis() == [jti, jti]
    ((attempts, error),) = [(row.attempts, row.last_error) for row in rows()]
    assert (attempts, error) == (2, "HTTP 503")  # the last error stays, for the operator


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(503, None, id="503"),
        pytest.param(400, {"err": "authentication_failed", "description": "expired"}, id="auth"),
        pytest.param(404, None, id="404"),
    ],
)
def test_retryable_failures_are_dead_lettered_after_the_maximum_age(app, client, status, body):
    with running() as receiver:
        receiver.answer = lambda _: (status, body)
        add_pusher(app, receiver.url)
        client.post(f"{BASE}/Users", json=user_payload())
        with worker(app, max_age=timedelta(seconds=1)):
            wait_until(lambda: [row.state for row in rows()] == ["dead"])
    ((row),) = rows()
    assert row.attempts >= 2 and len(receiver.received) == row.attempts
    expected = f"HTTP {status}"
    if body:
        expected += f" {body['err']}: {body['description']}"
    assert row.last_error == f"{expected} (gave up after 0:00:01; last error)"


@pytest.mark.parametrize(
    "err", ["invalid_request", "invalid_key", "invalid_issuer", "invalid_audience"]
)
def test_a_non_retryable_error_is_dead_at_once_and_the_next_event_goes(app, client, err):
    answers = iter([(400, {"err": err, "description": "no"})])
    with running() as receiver:
        receiver.answer = lambda _: next(answers, (202, None))
        add_pusher(app, receiver.url)
        user = client.post(f"{BASE}/Users", json=user_payload()).json
        deactivate(client, user["id"])
        with worker(app):
            wait_until(lambda: [row.state for row in rows()] == ["dead", "delivered"])
        first, second = rows()
        assert (first.attempts, first.last_error) == (1, f"HTTP 400 {err}: no")
        dead = ok(app, "events", "dead", "--receiver", "hook")
        assert re.search(rf"User {user['id']} +create,activate .* 1 +HTTP 400 {err}: no", dead)
        out = ok(
            app, "events", "replay", "--receiver", "hook", "--since", "2000-01-01", "--dead-only"
        )
        assert "Receiver hook: 1 events queued again, 0 queued for the first time" in out
        with worker(app):
            wait_until(lambda: [row.state for row in rows()] == ["delivered", "delivered"])
    assert len(receiver.received) == 3  # the dead one, the next, the dead one again
    assert receiver.jtis()[0] == receiver.jtis()[2]


def test_a_receiver_gets_only_its_tenants_events(app, client, tenant_client):
    acme = tenant_client("acme")
    with running() as ours, running() as theirs:
        add_pusher(app, ours.url)
        add_pusher(app, theirs.url, tenant="acme")
        mine = client.post(f"{BASE}/Users", json=user_payload(userName="ada@example.com")).json
        other = acme.post(f"{BASE}/Users", json=user_payload(userName="ada@example.com")).json
        deactivate(acme, other["id"])
        with worker(app):
            ours.wait_for(lambda: len(ours.received) == 1)
            theirs.wait_for(lambda: len(theirs.received) == 2)
        time.sleep(0.2)  # a round more: nothing else arrives
    assert [r.claims["sub_id"]["uri"] for r in ours.received] == [f"/Users/{mine['id']}"]
    assert {r.claims["sub_id"]["uri"] for r in theirs.received} == {f"/Users/{other['id']}"}


def test_a_suspended_tenants_events_wait(app, client, tenant_client):
    acme = tenant_client("acme")
    with running() as receiver:
        add_pusher(app, receiver.url, tenant="acme")
        acme.post(f"{BASE}/Users", json=user_payload())
        ok(app, "tenants", "suspend", "acme")
        with worker(app):
            time.sleep(0.5)
            assert receiver.received == []
            ok(app, "tenants", "resume", "acme")
            receiver.wait_for(lambda: len(receiver.received) == 1)


def test_status_and_replay(app, client):
    with running() as receiver:
        add_pusher(app, receiver.url)
        assert re.search(
            r"default +hook +push +enabled +0 +0 +0 +0 +- +-", ok(app, "events", "status")
        )
        for n in range(2):
            client.post(f"{BASE}/Users", json=user_payload(userName=f"u{n}@example.com"))
        status = ok(app, "events", "status")
        assert re.search(r"default +hook +push +enabled +0 +2 +0 +0 +\d+s +-", status), status
        with worker(app):
            wait_until(lambda: [row.state for row in rows()] == ["delivered"] * 2)
        assert re.search(r"hook +push +enabled +2 +0 +0 +0 +- +-", ok(app, "events", "status"))
        # Disabled: its events are stored, not queued; replay queues them.
        ok(app, "events", "receivers", "disable", "hook")
        client.post(f"{BASE}/Users", json=user_payload(userName="u2@example.com"))
        ok(app, "events", "receivers", "enable", "hook")
        out = ok(app, "events", "replay", "--receiver", "hook", "--since", "2000-01-01T00:00:00Z")
        assert "Receiver hook: 2 events queued again, 1 queued for the first time" in out
        assert re.search(r"hook +push +enabled +0 +3 +0 +0", ok(app, "events", "status"))
        with worker(app):
            receiver.wait_for(lambda: len(receiver.received) == 5)
    assert "No dead letters for hook." in ok(app, "events", "dead", "--receiver", "hook")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--since", "yesterday"), "'yesterday' is not an ISO 8601 time", id="since"),
        pytest.param(("--since", "2026-01-01", "--tenant", "nope"), "nope", id="tenant"),
    ],
)
def test_replay_refuses(app, client, args, message):
    result = fails if "--tenant" in args else _usage
    with running() as receiver:
        add_pusher(app, receiver.url)
        assert message in result(app, "events", "replay", "--receiver", "hook", *args)
    assert "no receiver named 'nope'" in fails(
        app, "events", "replay", "--receiver", "nope", "--since", "2026-01-01"
    )


def _usage(app: Flask, *args: str) -> str:
    result = run(app, *args)
    assert result.exit_code == 2, result.output
    return result.output


def test_run_needs_the_base_url(app, client):
    assert "set SCIM_BASE_URL" in fails(app, "events", "run")


def test_sqlite_runs_one_worker_at_a_time(app, client, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL runs several workers at once (the order test below)")
    with worker(app):
        time.sleep(0.2)  # it holds the lock
        with pytest.raises(AlreadyRunning, match="on SQLite one worker runs at a time"):
            Worker(app, settings()).run()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_write_wakes_the_workers(app, client):
    with running() as receiver:
        add_pusher(app, receiver.url)
        with deliveries.listening() as connection:
            assert not deliveries.wait(connection, 0)
            client.get(f"{BASE}/Users")  # a read: no delivery, no wake-up
            assert not deliveries.wait(connection, 0.1)
            client.post(f"{BASE}/Users", json=user_payload())
            assert deliveries.wait(connection, 5)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_several_workers_never_send_a_resources_events_at_once_nor_out_of_order(app, client):
    in_flight: dict[str, int] = defaultdict(int)
    overlaps: list[str] = []
    guard = threading.Lock()

    def slow(got: Received) -> tuple[int, None]:
        uri = got.claims["sub_id"]["uri"]
        with guard:
            in_flight[uri] += 1
            if in_flight[uri] > 1:
                overlaps.append(uri)
        time.sleep(0.005)
        with guard:
            in_flight[uri] -= 1
        return 202, None

    with running() as receiver:
        receiver.answer = slow
        add_pusher(app, receiver.url)
        users = [
            client.post(f"{BASE}/Users", json=user_payload(userName=f"u{n}@example.com")).json
            for n in range(4)
        ]
        for step in range(8):
            for user in users:
                client.patch(
                    f"{BASE}/Users/{user['id']}",
                    json=patch_payload({"op": "replace", "path": "title", "value": f"t{step}"}),
                )
        with worker(app), worker(app), worker(app):
            receiver.wait_for(lambda: len(receiver.received) == 36)
            wait_until(lambda: all(row.state == "delivered" for row in rows()))
    assert overlaps == []
    by_resource: dict[str, list[int]] = defaultdict(list)
    for got in receiver.received:
        by_resource[got.claims["sub_id"]["uri"]].append(got.claims["sequence"])
    assert len(by_resource) == 4
    for sequences in by_resource.values():
        assert sequences == sorted(set(sequences)) and len(sequences) == 9


def test_the_documentation_shows_the_receiver_the_crash_test_runs():
    root = Path(__file__).resolve().parent.parent
    receiver = (root / "docs" / "events_receiver.py").read_text()
    assert f"```python\n{receiver}```" in (root / "docs" / "events.md").read_text()


def test_a_receiver_that_refuses_connections_is_retried_and_says_so(app, client):
    add_pusher(app, f"http://127.0.0.1:{free_port()}/events")  # nothing listens there
    client.post(f"{BASE}/Users", json=user_payload())
    with worker(app):
        wait_until(lambda: [row.attempts >= 2 for row in rows()] == [True])
    ((row),) = rows()
    assert (row.state, row.last_error) == (
        "pending",
        "connection refused: nothing listens at the receiver's address and port",
    )


@pytest.mark.parametrize(
    ("error", "said"),
    [
        pytest.param(
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "DNS: the receiver's host name does not resolve (Name or service not known)",
            id="dns",
        ),
        pytest.param(
            TimeoutError("timed out"),
            "timed out: no answer within SCIM_EVENTS_PUSH_TIMEOUT_SECONDS",
            id="timeout",
        ),
        pytest.param(
            ConnectionResetError(104, "Connection reset by peer"),
            "ConnectionResetError: [Errno 104] Connection reset by peer",
            id="other",
        ),
    ],
)
def test_network_failures_read_as_what_to_fix(error, said):
    assert failure(error) == said
