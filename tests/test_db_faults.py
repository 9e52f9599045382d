"""Database faults: 503 SCIM errors with Retry-After within SCIM_DB_TIMEOUT_SECONDS, never a hang
or a 500; recovery without a restart; serialization failures and deadlocks retried."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.auth import new_token, token_hash
from app.db import db, describe_failure
from app.store import locked, tokens
from tests.conftest import BASE, TOKEN, make_app, statements
from tests.databases import postgres_admin_url
from tests.payloads import GROUP_URN, SEARCH_URN, error, patch_payload, user_payload
from tests.tcp_forwarder import Forwarder

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-pw"  # in every URL below: it must never appear in a message
CLOSED_PORT_URL = f"postgresql+psycopg://scim:{PASSWORD}@127.0.0.1:1/scimdb"  # nothing on port 1

UNAVAILABLE = error(503, "The service cannot reach its database; retry later")
TIMEOUT = 2  # SCIM_DB_TIMEOUT_SECONDS in these tests (libpq's connect_timeout is at least 2)
SLACK = 2.5  # seconds on top of the timeout: pre-ping, retries and a loaded test machine


def timed(client, method: str, path: str, **kwargs):
    started = time.monotonic()
    response = client.open(path, method=method, **kwargs)
    return response, time.monotonic() - started


@pytest.fixture
def postgres_url(app, database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.fail("parametrize this test with database_url=postgresql")
    return database_url


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[object, Forwarder]]:
    url = make_url(postgres_url)
    forwarder = Forwarder((url.host or "127.0.0.1", url.port or 5432))
    forwarder.start()
    app = make_app(
        url.set(host="127.0.0.1", port=forwarder.port).render_as_string(hide_password=False),
        SCIM_DB_TIMEOUT_SECONDS=str(TIMEOUT),
    )
    yield app, forwarder
    forwarder.stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_outage_gives_503_within_the_timeout_then_recovers_by_itself(client, proxied):
    app, forwarder = proxied
    scim = app.test_client()
    scim.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    created = scim.post(f"{BASE}/Users", json=user_payload())
    assert created.status_code == 201
    user_url = f"{BASE}/Users/{created.json['id']}"

    # Cut: the pooled connections die and new ones are refused.
    forwarder.stop()
    for method, path, body in (
        ("GET", user_url, None),
        ("PATCH", user_url, patch_payload({"op": "replace", "value": {"active": False}})),
        ("POST", f"{BASE}/Users", user_payload(userName="bob@example.com")),
    ):
        response, took = timed(scim, method, path, json=body)
        assert (response.status_code, response.json) == (503, UNAVAILABLE), method
        assert response.headers["Retry-After"] == "5"
        assert took < TIMEOUT + SLACK
    ready, took = timed(scim, "GET", "/readyz")
    assert ready.status_code == 503 and took < TIMEOUT + SLACK

    # Blackhole: connections are accepted but nothing ever answers. Still no hang.
    forwarder.mode = "blackhole"
    forwarder.start()
    response, took = timed(scim, "GET", user_url)
    assert response.status_code == 503
    assert TIMEOUT - 0.5 < took < TIMEOUT + SLACK
    ready, took = timed(scim, "GET", "/readyz")
    assert ready.status_code == 503 and took < TIMEOUT + SLACK

    # Restored: the same app answers again, no restart.
    forwarder.stop()
    forwarder.mode = "forward"
    forwarder.start()
    assert scim.get("/readyz").status_code == 200
    assert scim.get(user_url).json["userName"] == "jane@example.com"
    patched = scim.patch(
        user_url, json=patch_payload({"op": "replace", "value": {"active": False}})
    )
    assert (patched.status_code, patched.json["active"]) == (200, False)


def _terminate_backends(url: str) -> int:
    """Every other connection to the database ends, as when PostgreSQL restarts."""
    admin = create_engine(url)
    try:
        with admin.connect() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
            )
    finally:
        admin.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_connections_that_died_while_idle_are_replaced_before_a_request_uses_them(
    app, client, postgres_url, monkeypatch
):
    monkeypatch.setattr(sys.modules["app.db"], "PING_AFTER_IDLE_SECONDS", 0.05)
    created = client.post(f"{BASE}/Users", json=user_payload())
    assert created.status_code == 201
    user_url = f"{BASE}/Users/{created.json['id']}"
    db.session.remove()
    assert _terminate_backends(postgres_url) >= 1  # the pool's connection, at least
    time.sleep(0.1)  # idle for longer than PING_AFTER_IDLE_SECONDS
    for _ in range(3):
        read = client.get(user_url)
        assert read.status_code == 200, read.json
        db.session.remove()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_back_in_the_pool_a_moment_ago_is_not_pinged(app, client):
    client.get(f"{BASE}/Users?count=1")  # the pool holds a connection that just served
    db.session.remove()
    with statements() as seen:
        assert client.get(f"{BASE}/Users?count=1").status_code == 200
    assert "SELECT 1" not in seen


@pytest.fixture
def slow_app(app, database_url: str) -> Iterator[object]:
    other = make_app(database_url, SCIM_DB_TIMEOUT_SECONDS="1")
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_write_stuck_behind_a_lock_is_503_within_the_timeout(
    client, create_user, slow_app, database_url, caplog
):
    """PostgreSQL: a row lock held too long hits statement_timeout; SQLite: the busy timeout."""
    user = create_user()
    url = f"{BASE}/Users/{user['id']}"
    scim = slow_app.test_client()
    scim.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    body = patch_payload({"op": "replace", "path": "displayName", "value": "Locked out"})
    db.session.remove()
    with _lock_held(database_url, user["id"]):
        response, took = timed(scim, "PATCH", url, json=body)
        assert (response.status_code, response.json) == (503, UNAVAILABLE)
        assert response.headers["Retry-After"] == "5"
        assert took < 1 + SLACK
    assert scim.patch(url, json=body).json["displayName"] == "Locked out"
    # The log names the database and why, in one line.
    [line] = [r.getMessage() for r in caplog.records if r.name == "app.protocol"]
    name = make_url(database_url).database
    if database_url.startswith("sqlite"):
        assert line == f'database unavailable: SQLite database "{name}": database is locked'
    else:
        url = make_url(database_url)
        assert line == (
            f'database unavailable: PostgreSQL database "{name}" on {url.host}:{url.port} as user '
            f'"{url.username}": canceling statement due to statement timeout (SQLSTATE 57014)'
        )


def test_reads_answer_while_a_write_holds_the_lock(
    client, create_user, create_group, slow_app, database_url
):
    """A GET or a .search never waits for a writer: on SQLite its transactions begin DEFERRED
    and read the last committed state (WAL), on PostgreSQL a row lock never blocks a read."""
    user = create_user()
    group = create_group("Readers", members=[{"value": user["id"]}])
    scim = slow_app.test_client()
    scim.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    lookup = {"filter": f'userName eq "{user["userName"]}"'}
    search_body = {"schemas": [SEARCH_URN], "filter": lookup["filter"]}
    named_token = new_token()
    tokens.create("okta", token_hash(named_token))
    db.session.remove()
    with _lock_held(database_url, user["id"]):
        for method, url, body in (
            ("GET", f"{BASE}/Users/{user['id']}", None),
            ("GET", f"{BASE}/Users?{urlencode(lookup)}", None),
            ("GET", f"{BASE}/Groups/{group['id']}", None),
            ("POST", f"{BASE}/Users/.search", search_body),
            ("POST", f"{BASE}/.search", search_body),
        ):
            response, took = timed(scim, method, url, json=body)
            assert response.status_code == 200, (method, url, response.json)
            assert took < SLACK, (method, url, took)
        # A named token is looked up the same way; marking it used is a hint that waits its
        # turn at most, never failing the request.
        named = scim.get(
            f"{BASE}/Users/{user['id']}", headers={"Authorization": f"Bearer {named_token}"}
        )
        assert named.status_code == 200, named.json
        # A write still queues behind the lock, and says so within the timeout.
        rename = patch_payload({"op": "replace", "path": "displayName", "value": "Late"})
        blocked = scim.patch(f"{BASE}/Users/{user['id']}", json=rename)
        assert (blocked.status_code, blocked.json) == (503, UNAVAILABLE)
    assert scim.get(f"{BASE}/Users/{user['id']}").json["groups"][0]["value"] == group["id"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_write_renders_its_response_without_queueing_for_the_lock_again(
    client, create_user, create_group, slow_app, database_url, monkeypatch
):
    """After its commit, a PATCH needs nothing that waits for the lock to answer: the user's
    groups were read with its locked row (they were read in a second BEGIN IMMEDIATE after the
    commit, then in a transaction that only reads). Another writer taking SQLite's lock at that
    moment delays nothing."""
    user = create_user()
    group = create_group("Readers", members=[{"value": user["id"]}])
    db.session.remove()
    held = _lock_held(database_url, user["id"])
    real_commit = locked.commit

    def commit_then_lose_the_lock(session):  # noqa: ANN001
        real_commit(session)
        held.__enter__()

    monkeypatch.setattr(locked, "commit", commit_then_lose_the_lock)
    scim = slow_app.test_client()
    scim.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    rename = patch_payload({"op": "replace", "path": "displayName", "value": "Prompt"})
    try:
        response, took = timed(scim, "PATCH", f"{BASE}/Users/{user['id']}", json=rename)
    finally:
        held.__exit__()
    assert response.status_code == 200, response.json
    assert response.json["groups"][0]["value"] == group["id"]
    assert took < 1  # slow_app's SCIM_DB_TIMEOUT_SECONDS: no wait for the lock


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_writer_takes_the_lock_once_it_is_released_and_keeps_its_busy_timeout(
    client, create_user, slow_app, database_url
):
    """app.db._begin_writing tries for the lock itself, with the busy timeout set to 0 while it
    tries; the timeout is back afterwards for the rest of the transaction and the connection."""
    user = create_user()
    db.session.remove()
    holder = sqlite3.connect(
        make_url(database_url).database, isolation_level=None, check_same_thread=False
    )
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, holder.execute, ["ROLLBACK"])
    release.start()
    scim = slow_app.test_client()
    scim.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    rename = patch_payload({"op": "replace", "path": "displayName", "value": "Waited"})
    try:
        response = scim.patch(f"{BASE}/Users/{user['id']}", json=rename)
    finally:
        release.join()
        holder.close()
    assert response.status_code == 200, response.json
    with slow_app.app_context():
        with db.engine.connect() as connection:
            timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        db.engine.dispose()
    assert timeout == 1000  # slow_app's SCIM_DB_TIMEOUT_SECONDS


class _lock_held:
    """Another client holds the user's row (PostgreSQL) or the write lock (SQLite)."""

    def __init__(self, database_url: str, user_id: str) -> None:
        self.url, self.user_id = database_url, user_id

    def __enter__(self) -> None:
        if self.url.startswith("sqlite"):
            self.sqlite = sqlite3.connect(make_url(self.url).database, isolation_level=None)
            self.sqlite.execute("BEGIN IMMEDIATE")
            return
        self.engine = create_engine(self.url)
        self.connection = self.engine.connect()
        self.connection.execute(
            text("SELECT id FROM users WHERE id = :id FOR UPDATE"), {"id": self.user_id}
        )

    def __exit__(self, *exc: object) -> None:
        if self.url.startswith("sqlite"):
            self.sqlite.execute("ROLLBACK")
            self.sqlite.close()
            return
        self.connection.rollback()
        self.connection.close()
        self.engine.dispose()


# --- One line naming the database and the cause, never the password ----------------------


def test_an_outage_is_logged_naming_host_port_database_and_cause(caplog):
    app = make_app(CLOSED_PORT_URL, SCIM_DB_TIMEOUT_SECONDS=str(TIMEOUT))
    with caplog.at_level(logging.WARNING, logger="app"):
        response = app.test_client().get(
            f"{BASE}/Users", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert (response.status_code, response.json) == (503, UNAVAILABLE)
    [line] = [r.getMessage() for r in caplog.records if r.name == "app.protocol"]
    assert line.startswith(
        'database unavailable: PostgreSQL database "scimdb" on 127.0.0.1:1 as user "scim": '
        "Connection refused"
    ), line
    assert "\n" not in line
    assert PASSWORD not in caplog.text
    with app.app_context():
        db.engine.dispose()


def flask_db_upgrade(database_url: str) -> tuple[int, list[str]]:
    """`flask --app wsgi db upgrade` as the service's directory runs it: exit code and output."""
    names = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(dict.fromkeys(names, ""))  # a developer's .env cannot leak in
    env.update(DATABASE_URL=database_url, SCIM_DB_TIMEOUT_SECONDS="2")
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, [line for line in (done.stdout + done.stderr).splitlines() if line]


def local_postgres(**parts: str) -> str:
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL not reachable at TEST_DATABASE_URL or 127.0.0.1:5432")
    return make_url(admin).set(password=PASSWORD, **parts).render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        pytest.param(lambda: CLOSED_PORT_URL, "Connection refused", id="closed-port"),
        pytest.param(
            lambda: local_postgres(database="scim_missing_db"),
            'database "scim_missing_db" does not exist',
            id="missing-database",
        ),
        pytest.param(
            lambda: local_postgres(username="scim_no_such_role"),
            '"scim_no_such_role"',  # "role ... does not exist", or a failed password check
            id="wrong-credentials",
        ),
    ],
)
def test_flask_db_upgrade_names_the_database_and_the_cause_in_one_line(url, cause):
    database_url = url()
    target = make_url(database_url)
    code, output = flask_db_upgrade(database_url)
    assert code == 1
    assert len(output) == 1, output  # no traceback
    [line] = output
    assert line.startswith(
        f'Error: cannot use the database (DATABASE_URL): PostgreSQL database "{target.database}" '
        f'on {target.host}:{target.port} as user "{target.username}": '
    ), line
    assert cause in line and PASSWORD not in line


@pytest.mark.parametrize(
    "command",
    [["tokens", "list"], ["tokens", "create", "okta"], ["stats"], ["purge"]],
    ids=" ".join,
)
def test_management_commands_name_an_unreachable_database_in_one_line(command):
    app = make_app(CLOSED_PORT_URL, SCIM_DB_TIMEOUT_SECONDS=str(TIMEOUT))
    with app.app_context():  # not the session app's, which the `app` fixture keeps pushed
        result = app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 1
    assert result.output.startswith(
        'Error: cannot use the database (DATABASE_URL): PostgreSQL database "scimdb" on '
        '127.0.0.1:1 as user "scim": Connection refused'
    ), result.output
    assert result.output.count("\n") == 1 and PASSWORD not in result.output
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def injected_faults(app, database_url: str) -> Iterator[object]:
    """Make the next N UPDATEs of a table fail with a given SQLSTATE (PostgreSQL only)."""
    created: list[str] = []

    def inject(table: str, sqlstate: str, count: int) -> None:
        with db.engine.begin() as connection:
            connection.execute(text("CREATE SEQUENCE IF NOT EXISTS fault_seq"))
            connection.execute(text("SELECT setval('fault_seq', 1, false)"))
            connection.execute(
                text(
                    "CREATE OR REPLACE FUNCTION inject_fault() RETURNS trigger AS $$ BEGIN "
                    f"IF nextval('fault_seq') <= {count} THEN "
                    f"RAISE EXCEPTION 'injected fault' USING ERRCODE = '{sqlstate}'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(text(f"DROP TRIGGER IF EXISTS inject_fault ON {table}"))
            connection.execute(
                text(
                    f"CREATE TRIGGER inject_fault BEFORE UPDATE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION inject_fault()"
                )
            )
        created.append(table)

    yield inject
    db.session.remove()
    with db.engine.begin() as connection:
        for table in created:
            connection.execute(text(f"DROP TRIGGER IF EXISTS inject_fault ON {table}"))
        connection.execute(text("DROP FUNCTION IF EXISTS inject_fault()"))
        connection.execute(text("DROP SEQUENCE IF EXISTS fault_seq"))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sqlstate", ["40001", "40P01"], ids=["serialization", "deadlock"])
def test_user_writes_retry_serialization_failures_and_deadlocks(
    client, create_user, injected_faults, sqlstate
):
    user = create_user()
    url = f"{BASE}/Users/{user['id']}"
    injected_faults("users", sqlstate, 2)
    db.session.remove()
    patched = client.patch(
        url, json=patch_payload({"op": "replace", "path": "displayName", "value": "J"})
    )
    assert (patched.status_code, patched.json["displayName"]) == (200, "J")
    injected_faults("users", sqlstate, 5)  # as many as the attempts: the caller is told to retry
    db.session.remove()
    refused = client.patch(
        url, json=patch_payload({"op": "replace", "path": "displayName", "value": "K"})
    )
    assert refused.status_code == 409
    assert client.get(url).json["displayName"] == "J"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sqlstate", ["40001", "40P01"], ids=["serialization", "deadlock"])
def test_group_writes_retry_serialization_failures_and_deadlocks(client, injected_faults, sqlstate):
    group = client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Eng"}).json
    url = f"{BASE}/Groups/{group['id']}"
    injected_faults("groups", sqlstate, 3)
    db.session.remove()
    renamed = client.patch(
        url, json=patch_payload({"op": "replace", "path": "displayName", "value": "R&D"})
    )
    assert renamed.status_code == 204
    assert client.get(url).json["displayName"] == "R&D"


def test_a_statement_error_that_is_not_a_fault_stays_a_500(app, client, monkeypatch):
    """Only unavailability becomes a 503: a bug (here an undefined table) is still a 500."""
    from sqlalchemy.exc import ProgrammingError

    from app.store import users

    def broken(*args, **kwargs):
        raise ProgrammingError("SELECT", {}, Exception("no such table"))

    monkeypatch.setattr(users, "search", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        response = client.get(f"{BASE}/Users")
    finally:
        app.config["PROPAGATE_EXCEPTIONS"] = None
    assert response.status_code == 500


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_sqlite_programming_error_is_a_500_not_a_503(app, client, monkeypatch):
    """SQLite reports "no such table" as OperationalError: that is a bug, not an outage."""
    from sqlalchemy.exc import OperationalError

    from app.store import users

    def broken(*args, **kwargs):
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: users"))

    monkeypatch.setattr(users, "search", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        response = client.get(f"{BASE}/Users")
    finally:
        app.config["PROPAGATE_EXCEPTIONS"] = None
    assert response.status_code == 500


class _DriverError(Exception):
    """A driver exception carrying a SQLSTATE, as psycopg's do."""

    def __init__(self, sqlstate: str | None, message: str = "driver error"):
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [
        pytest.param("54000", 400, id="index-row-too-large"),
        pytest.param("22021", 400, id="bad-encoding"),
        pytest.param("57P01", 503, id="admin-shutdown"),
        pytest.param("08006", 503, id="connection-failure"),
        pytest.param("57014", 503, id="statement-timeout"),
        pytest.param(None, 503, id="connection-dropped"),
    ],
)
def test_only_an_outage_is_503_never_a_value_the_database_refused(
    slow_app, monkeypatch, caplog, sqlstate, status
):
    """A retry cannot store what the database refused: 400, so the IdP does not retry it."""
    from sqlalchemy.exc import OperationalError

    from app.store import users

    def refused(*args, **kwargs):
        raise OperationalError("INSERT", {}, _DriverError(sqlstate))

    monkeypatch.setattr(users, "create", refused)
    # An app of its own: tests share the session app's context, and with it `g`, across requests.
    client = slow_app.test_client()
    response = client.post(
        f"{BASE}/Users", json=user_payload(), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == status
    if status == 400:
        assert response.json == error(
            400,
            "A value in the request is too large or malformed to be stored",
            "invalidValue",
        )
        assert "Retry-After" not in response.headers
        # The driver's class and SQLSTATE only: no SQL, no values.
        [line] = [r.getMessage() for r in caplog.records if r.name == "app.protocol"]
        assert line == f"database refused a value: _DriverError (SQLSTATE {sqlstate})"
    else:
        assert response.json == UNAVAILABLE and response.headers["Retry-After"] == "5"


def test_a_rollback_that_fails_at_teardown_leaves_the_response_alone(app, client, monkeypatch):
    """A connection the database dropped after the response was built: no HTML 500."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    created = client.post(f"{BASE}/Users", json=user_payload())

    def dropped(self):
        raise OperationalError("ROLLBACK", {}, _DriverError(None))

    monkeypatch.setattr(Session, "rollback", dropped)
    response = client.get(f"{BASE}/Users/{created.json['id']}")
    assert response.status_code == 200
    assert response.json["userName"] == "jane@example.com"


def _lose_the_answer_of_the_next_commit(monkeypatch) -> list[bool]:
    """The next COMMIT happens, then the connection breaks before PostgreSQL's answer arrives;
    the list gets an item when it has."""
    import psycopg

    dialect = db.engine.dialect
    commit = dialect.do_commit
    lost: list[bool] = []

    def commit_then_lose_the_answer(dbapi_connection):
        commit(dbapi_connection)
        if not lost:
            lost.append(True)
            dbapi_connection.dbapi_connection.close()  # the driver's, under the pool's wrapper
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(dialect, "do_commit", commit_then_lose_the_answer)
    return lost


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_commit_whose_answer_is_lost_is_answered_as_committed(app, client, monkeypatch):
    """PostgreSQL committed, then the connection broke before saying so: never a 5xx, since
    the IdP would retry a write that happened (a create would come back 409)."""
    lost = _lose_the_answer_of_the_next_commit(monkeypatch)
    created = client.post(f"{BASE}/Users", json=user_payload())
    assert lost and created.status_code == 201, created.json
    assert created.json["userName"] == "jane@example.com"
    assert client.get(f"{BASE}/Users/{created.json['id']}").status_code == 200

    lost.clear()
    patched = client.patch(
        f"{BASE}/Users/{created.json['id']}",
        json=patch_payload({"op": "replace", "value": {"active": False}}),
    )
    assert lost and patched.status_code == 200, patched.json
    assert patched.json["active"] is False and patched.json["meta"]["version"] == 'W/"2"'


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_every_kind_of_write_whose_commit_answer_is_lost_is_answered_as_committed(
    app, client, create_user, create_group, monkeypatch
):
    """Every write the API makes, including those whose rows the ORM writes only when the
    commit flushes (a user's DELETE when it is in no group, a group's PUT), and a Bulk's, which
    writes its audit rows with its other rows: the answer is the write's, and the write is
    there."""
    ada = create_user(userName="ada@example.com")
    grace = create_user(userName="grace@example.com")
    group = create_group("Engineering")
    url = {"ada": f"{BASE}/Users/{ada['id']}", "group": f"{BASE}/Groups/{group['id']}"}
    rename = patch_payload({"op": "replace", "path": "displayName", "value": "Platform"})
    add_grace = patch_payload({"op": "add", "path": "members", "value": [{"value": grace["id"]}]})
    bulk = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": "b",
                "data": user_payload(userName="barbara@example.com"),
            },
        ],
    }
    writes = [
        ("PUT", url["ada"], user_payload(userName="ada@example.com", displayName="Ada L."), 200),
        ("PATCH", url["group"], add_grace, 204),
        ("PATCH", url["group"], rename, 204),
        ("PUT", url["group"], {"schemas": [GROUP_URN], "displayName": "Research"}, 200),
        ("POST", f"{BASE}/Groups", {"schemas": [GROUP_URN], "displayName": "Ops"}, 201),
        ("POST", f"{BASE}/Bulk", bulk, 200),
        ("DELETE", url["ada"], None, 204),  # in no group: the ORM writes its row at the commit
        ("DELETE", url["group"], None, 204),
    ]
    for method, path, body, status in writes:
        lost = _lose_the_answer_of_the_next_commit(monkeypatch)
        response = client.open(path, method=method, json=body)
        monkeypatch.undo()
        assert (method, path, lost, response.status_code) == (method, path, [True], status), (
            response.json
        )
    assert client.get(url["ada"]).status_code == 404
    assert client.get(url["group"]).status_code == 404
    found = client.get(
        f"{BASE}/Users", query_string={"filter": 'userName eq "barbara@example.com"'}
    )
    assert found.json["totalResults"] == 1
    ops = client.get(f"{BASE}/Groups", query_string={"filter": 'displayName eq "Ops"'})
    assert ops.json["totalResults"] == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_commit_that_failed_is_503(client, slow_app, monkeypatch):
    """The connection broke before COMMIT reached the server: nothing was written, retry."""
    import psycopg

    with slow_app.app_context():
        dialect = db.engine.dialect

    def lose_the_commit(dbapi_connection):
        dbapi_connection.dbapi_connection.close()
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(dialect, "do_commit", lose_the_commit)
    # An app of its own: tests share the session app's context, and with it `g`, across requests.
    response = slow_app.test_client().post(
        f"{BASE}/Users", json=user_payload(), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    monkeypatch.undo()
    assert (response.status_code, response.json) == (503, UNAVAILABLE)
    found = client.get(f"{BASE}/Users", query_string={"filter": 'userName eq "jane@example.com"'})
    assert found.json["totalResults"] == 0


@pytest.mark.parametrize(
    ("error", "described"),
    [
        pytest.param(
            OperationalError(
                "connect",
                {},
                _DriverError(
                    None,
                    'connection failed: connection to server at "10.0.0.5", port '
                    '5432 failed: FATAL:  password authentication failed for user "scim"\n'
                    "Multiple connection attempts failed. All failures were:\n- host: 'db', ...",
                ),
            ),
            'password authentication failed for user "scim"',
            id="several-addresses-tried",
        ),
        pytest.param(
            OperationalError("connect", {}, _DriverError(None, f"bad option near {PASSWORD}")),
            "bad option near ***",
            id="password-in-the-driver-text",
        ),
        pytest.param(
            OperationalError("SELECT", {}, _DriverError("57P01", "terminating connection")),
            "terminating connection (SQLSTATE 57P01)",
            id="sqlstate",
        ),
        pytest.param(
            PoolTimeout("QueuePool limit of size 5 overflow 10 reached, connection timed out"),
            "QueuePool limit of size 5 overflow 10 reached, connection timed out",
            id="pool-timeout-without-its-link",
        ),
    ],
)
def test_a_database_failure_is_described_in_one_line(error, described):
    url = make_url("postgresql+psycopg://scim:" + PASSWORD + "@db.internal/scim")
    assert describe_failure(error, url) == (
        f'PostgreSQL database "scim" on db.internal:5432 as user "scim": {described}'
    )
