"""How a request's statements meet the database (app/db.py, _begin): on PostgreSQL a read (a
GET, a .search) runs outside any transaction and a write inside one; on SQLite a read begins
without the write lock and a write takes it at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, text

from app.db import db, in_autocommit, reading_only, writing
from tests.conftest import BASE, statements
from tests.payloads import SEARCH_URN, patch_payload, user_payload


@contextmanager
def modes() -> Iterator[list[tuple[str, bool]]]:
    """Each statement run meanwhile (its first word), and whether it ran in autocommit."""
    seen: list[tuple[str, bool]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        seen.append((statement.split()[0].upper(), in_autocommit(conn)))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


@pytest.fixture
def postgresql(app: Flask) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("autocommit reads are PostgreSQL's; SQLite reads begin DEFERRED")


def create_and_deactivate(client: FlaskClient, user_name: str) -> dict[str, Any]:
    """Two writes: a user created, then PATCHed to active=false; the user as created."""
    created = client.post(f"{BASE}/Users", json=user_payload(userName=user_name))
    assert created.status_code == 201
    patched = client.patch(
        f"{BASE}/Users/{created.json['id']}",
        json=patch_payload({"op": "replace", "path": "active", "value": False}),
    )
    assert patched.status_code == 200
    return created.json


def test_postgresql_reads_run_outside_transactions_and_writes_inside_one(
    postgresql: None, client: FlaskClient
) -> None:
    with modes() as writes:
        created = create_and_deactivate(client, "tx@example.com")
    # The caller's token is read first, on a connection of its own (store/tokens.py): a read.
    written = [(word, autocommit) for word, autocommit in writes if word != "SELECT"]
    assert {"INSERT", "UPDATE"} <= {word for word, _ in written}
    assert not any(autocommit for _, autocommit in written), writes

    with modes() as reads:
        assert client.get(f"{BASE}/Users/{created['id']}").status_code == 200
        assert client.get(f'{BASE}/Users?filter=userName eq "tx@example.com"').status_code == 200
        search = {"schemas": [SEARCH_URN], "filter": 'userName eq "tx@example.com"'}
        assert client.post(f"{BASE}/Users/.search", json=search).status_code == 200
    assert reads and all(autocommit for _, autocommit in reads), reads


def test_a_connection_that_read_and_then_writes_writes_in_a_transaction(
    postgresql: None, app: Flask
) -> None:
    with db.engine.connect() as connection:
        with reading_only():
            connection.execute(text("SELECT 1"))
            assert in_autocommit(connection)
            connection.commit()
        with writing():
            connection.execute(text("SELECT 1"))
            driver: Any = connection.connection.dbapi_connection
            assert not in_autocommit(connection)
            assert driver.info.transaction_status.name == "INTRANS"
            connection.rollback()


def test_a_pooled_connection_goes_back_to_transactions(postgresql: None, app: Flask) -> None:
    """A connection returned after a read is in transactions again; one of an engine that
    runs in autocommit (as the tests' and the benchmarks' administrative engines) stays so."""
    with reading_only(), db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        driver: Any = connection.connection.dbapi_connection
    assert driver.autocommit is False
    engine = create_engine(db.engine.url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        for read in (True, False, True):
            with reading_only() if read else writing(), engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                assert in_autocommit(connection)
    finally:
        engine.dispose()


ASKED_FOR_THE_TRANSACTION = "SELECT pg_current_xact_id_if_assigned()::text"


def test_a_postgresql_write_learns_its_transaction_id_from_its_audit_row(
    postgresql: None, client: FlaskClient
) -> None:
    """A write must know its transaction's id before COMMIT (app.db.commit: a commit whose
    answer is lost is looked up). The audit row's INSERT returns it; only a write whose audit
    rows the session writes with its other rows (a Bulk's) asks for it, once, just before
    COMMIT."""
    with statements() as single:
        created = create_and_deactivate(client, "xid@example.com")
    single = [" ".join(s.split()) for s in single]
    audit_rows = [s for s in single if s.startswith("INSERT INTO audit_events")]
    assert len(audit_rows) == 2 and all(
        s.endswith("RETURNING pg_current_xact_id()::text") for s in audit_rows
    ), audit_rows
    assert ASKED_FOR_THE_TRANSACTION not in single, single

    bulk = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": user_payload()},
            {"method": "DELETE", "path": f"/Users/{created['id']}"},
        ],
    }
    with statements() as batched:
        response = client.post(f"{BASE}/Bulk", json=bulk)
        assert response.status_code == 200, response.json
        assert [op["status"] for op in response.json["Operations"]] == ["201", "204"]
    batched = [" ".join(s.split()) for s in batched]
    assert batched.count(ASKED_FOR_THE_TRANSACTION) == 1, batched
    assert batched.index(ASKED_FOR_THE_TRANSACTION) > max(
        n for n, s in enumerate(batched) if s.startswith("INSERT INTO audit_events")
    ), batched


def test_the_suite_notes_a_write_run_while_a_request_reads(app: Flask) -> None:
    """The autouse fixture no_write_while_reading (conftest.py) sees writes, of any engine, run
    while the context reads only, and nothing else."""
    from tests import conftest

    engine = create_engine(db.engine.url)
    try:
        with engine.connect() as connection:
            with writing():
                connection.execute(text("CREATE TEMPORARY TABLE noted (n integer)"))
                connection.execute(text("INSERT INTO noted VALUES (1)"))
            connection.commit()
            with reading_only():
                connection.execute(text("SELECT n FROM noted"))
                assert conftest._WRITTEN_WHILE_READING == []
                connection.execute(text("UPDATE noted SET n = 2"))
                connection.execute(
                    text("WITH v AS (SELECT 3 AS n) INSERT INTO noted SELECT n FROM v")
                )
            connection.rollback()
    finally:
        engine.dispose()
    noted = list(conftest._WRITTEN_WHILE_READING)
    conftest._WRITTEN_WHILE_READING.clear()  # noted on purpose: the fixture must not fail
    assert noted == [
        "UPDATE noted SET n = 2",
        "WITH v AS (SELECT 3 AS n) INSERT INTO noted SELECT n FROM v",
    ]
