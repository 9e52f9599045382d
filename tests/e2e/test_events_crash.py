"""The crash test of push delivery (issue 17), with real processes: gunicorn taking writes, the
worker (`flask events run`) and the receiver of docs/events_receiver.py, the example the
documentation gives applications.

While writers create and change users, the worker and the receiver are killed with SIGKILL
mid-stream and started again, more than once; on PostgreSQL the database is also cut (every
connection of gunicorn and of the worker, through tests/tcp_forwarder.py) and restored. Then:
every event the outbox holds was delivered and handled by the receiver (none lost), every SET
the receiver saw is one of those events and each event has one jti (duplicates only with the
same jti), and each resource's SETs arrived in order (the receiver never saw an older event
after a newer one).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from app import tenancy
from app.db import db
from app.models import Event, EventDelivery
from tests.conftest import make_app
from tests.e2e.service import ROOT, gunicorn, migrate, request, service_env
from tests.net import free_port
from tests.payloads import PATCH_URN, user_payload
from tests.tcp_forwarder import Forwarder

WRITERS = 4
USERS_PER_WRITER = 3
SETTLE_SECONDS = 90  # for the backlog to drain once the faults are over: generous


@contextmanager
def through_forwarder(database_url: str) -> Iterator[tuple[str, Forwarder | None]]:
    """PostgreSQL: the URL through a forwarder the test can cut; SQLite: as it is."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        yield database_url, None
        return
    forwarder = Forwarder((url.host or "127.0.0.1", url.port or 5432))
    forwarder.start()
    try:
        yield url.set(host="127.0.0.1", port=forwarder.port).render_as_string(False), forwarder
    finally:
        forwarder.stop()


class Process:
    """A process the test starts, kills with SIGKILL and starts again, its output appended."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path):
        self.argv, self.env, self.log = argv, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cli(app, *args: str) -> str:
    db.session.remove()
    with tenancy.entered(None):
        result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def write(base: str, writer: int, stop: threading.Event) -> None:
    """Create a few users, then change them round-robin (deactivate, reactivate, retitle)
    until told to stop; failures (a 503 while the database is cut) are left as they are."""
    ids: list[str] = []
    for n in range(USERS_PER_WRITER):
        body = user_payload(userName=f"w{writer}-{n}@example.com", externalId=f"x{writer}-{n}")
        while not stop.is_set():
            reply = request("POST", f"{base}/Users", body, timeout=10)
            if reply.status == 201:
                ids.append(reply.body["id"])
                break
            if reply.status == 409:  # created, answer lost: found below
                found = request("GET", f'{base}/Users?filter=externalId eq "x{writer}-{n}"')
                if found.status == 200 and found.body["Resources"]:
                    ids.append(found.body["Resources"][0]["id"])
                    break
            time.sleep(0.1)
    step = 0
    while not stop.is_set() and ids:
        user_id = ids[step % len(ids)]
        operation = (
            {"op": "replace", "path": "active", "value": step % 3 != 1}
            if step % 2
            else {"op": "replace", "path": "title", "value": f"t{step}"}
        )
        request(
            "PATCH",
            f"{base}/Users/{user_id}",
            {"schemas": [PATCH_URN], "Operations": [operation]},
            timeout=10,
        )
        step += 1
        time.sleep(0.02)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_kill_worker_receiver_and_database_mid_stream_loses_nothing(fresh_database_url, tmp_path):
    migrate(fresh_database_url)
    with (
        through_forwarder(fresh_database_url) as (service_url, forwarder),
        gunicorn(service_url, tmp_path / "gunicorn.log", workers=2, threads=4) as base,
    ):
        receiver_port = free_port()
        hook = f"http://127.0.0.1:{receiver_port}/events"
        admin = make_app(fresh_database_url, SCIM_BASE_URL=base)
        with admin.app_context():
            out = cli(admin, "events", "receivers", "add", "app", "--url", hook, "--audience", hook)
        receiver_id = out.split(": ")[1].split()[0]
        jwks = f"{base.removesuffix('/scim/v2')}/events/receivers/{receiver_id}/jwks.json"

        receiver = Process(
            [sys.executable, "docs/events_receiver.py", "--port", str(receiver_port),
             "--state", str(tmp_path / "receiver.sqlite3"), "--jwks", jwks,
             "--issuer", base, "--audience", hook],
            dict(os.environ), tmp_path / "receiver.log",
        )  # fmt: skip
        env = service_env(
            service_url,
            free_port(),
            SCIM_BASE_URL=base,
            SCIM_EVENTS_RETRY_BASE_SECONDS="1",
            SCIM_EVENTS_RETRY_MAX_SECONDS="1",
            SCIM_EVENTS_PUSH_TIMEOUT_SECONDS="2",
        )
        worker = Process(
            [sys.executable, "-m", "flask", "--app", "wsgi", "events", "run"],
            env,
            tmp_path / "worker.log",
        )
        receiver.start()
        worker.start()
        stop = threading.Event()
        writers = [
            threading.Thread(target=write, args=(base, n, stop), daemon=True)
            for n in range(WRITERS)
        ]
        for thread in writers:
            thread.start()
        try:
            time.sleep(3)
            worker.kill()  # mid-stream: batches under way, their outcomes not recorded
            time.sleep(1)
            receiver.kill()
            worker.start()  # the receiver is down: the worker backs off
            time.sleep(2)
            receiver.start()
            time.sleep(2)
            receiver.kill()
            worker.kill()
            time.sleep(0.5)
            worker.start()
            receiver.start()
            time.sleep(2)
            if forwarder is not None:  # PostgreSQL cut under the API and the worker
                forwarder.stop()
                time.sleep(3)
                forwarder.start()
                time.sleep(2)
            worker.kill()
            worker.start()
            time.sleep(2)
        finally:
            stop.set()
            for thread in writers:
                thread.join(30)
        try:
            deadline = time.monotonic() + SETTLE_SECONDS
            while (left := _not_delivered(admin)) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert left == 0, f"{left} deliveries not delivered:\n{worker.log.read_text()[-3000:]}"
        finally:
            worker.stop()
            receiver.stop()

    with admin.app_context(), tenancy.across_tenants():
        events = {e.jti: (e.resource_id, e.id) for e in db.session.query(Event)}
        db.session.remove()
        db.engine.dispose()
    assert len(events) > 100, "too few events to prove anything"
    seen = {
        jti
        for (jti,) in sqlite3.connect(tmp_path / "receiver.sqlite3").execute("SELECT jti FROM seen")
    }
    assert seen == set(events)  # every event handled, none unknown
    lines = [
        json.loads(line)
        for line in receiver.log.read_text().splitlines()
        if line.startswith('{"jti"')
    ]
    outcomes = defaultdict(int)
    arrivals: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        outcomes[line["outcome"]] += 1
        resource_id, event_id = events[line["jti"]]  # a jti of the outbox, nothing else
        assert line["sequence"] == event_id and line["resource"].endswith(resource_id)
        arrivals[resource_id].append(line["sequence"])
    assert outcomes["stale"] == 0, outcomes
    for resource_id, sequences in arrivals.items():
        assert sequences == sorted(sequences), (resource_id, sequences)
    print(f"{len(events)} events, receiver outcomes {dict(outcomes)}")


def _not_delivered(app) -> int:
    with app.app_context(), tenancy.across_tenants():
        try:
            return (
                db.session.query(EventDelivery).filter(EventDelivery.state != "delivered").count()
            )
        finally:
            db.session.remove()
