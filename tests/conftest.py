"""Fixtures: one app per database (SQLite and PostgreSQL), an authenticated client, factories,
and the statement recorder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event

from app import create_app, tenancy
from app.auth import new_token, token_hash
from app.db import db, reads_only
from app.store import search_backlog, tenants, tokens
from tests.databases import drop_roles_later, scratch_postgres_database, two_roles
from tests.payloads import BASE, GROUP_URN, user_payload

TOKEN = "test-token-0123456789"
OTHER_TOKEN = "rotated-token-9876543210"


def make_app(database_url: str, **settings: str) -> Flask:
    env = {
        "DATABASE_URL": database_url,
        "SCIM_TOKEN_HASHES": f"{token_hash(TOKEN)},{token_hash(OTHER_TOKEN)}",
        # The suite sends thousands of requests a minute with one token; test_rate_limit.py sets it.
        "SCIM_RATE_LIMIT": "",
        **settings,
    }
    app = create_app(env)
    app.testing = True
    return app


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'scim.sqlite3'}"
    else:
        with scratch_postgres_database() as url:
            yield url


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the same kind, for a test that migrates it and runs real processes."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    else:
        with scratch_postgres_database() as url:
            yield url


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    app = make_app(database_url)
    with app.app_context():
        create_schema()
        yield app
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "postgresql-service-role"])
def app_as_deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    """For the isolation proofs: `app` on each database, and on PostgreSQL as deploy/ runs it
    too (roles by deploy/postgres/app-role.sql, migrations as the owner, the service as a role
    that row-level security binds). A module uses it by naming it its `app` fixture."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'scim.sqlite3'}"
        yield from _serving(make_app(url))
        return
    with scratch_postgres_database() as admin_url:
        if request.param == "postgresql":
            yield from _serving(make_app(admin_url))
            return
        with two_roles(admin_url) as roles:
            migrating = make_app(roles.app_url, MIGRATION_DATABASE_URL=roles.owner_url)
            with migrating.app_context():
                flask_migrate.upgrade()
                _settled(migrating)
            yield from _serving(make_app(roles.app_url), migrated=True)
    drop_roles_later()


def _serving(app: Flask, *, migrated: bool = False) -> Iterator[Flask]:
    with app.app_context():
        if not migrated:
            create_schema()
        yield app
        db.session.remove()
        if not migrated:
            db.drop_all()
        _settled(app)


def _settled(app: Flask) -> None:
    """The app's start-up check (app/store/rls.py) done and its connections closed."""
    if (check := app.extensions.get("scim_rls_check")) is not None:
        check.join(timeout=10)
    db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    yield client
    empty_tables()


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The clock of the workers' memory of token callers (store/tokens.py), stopped: what a test
    counts (statements, audit rows) must not depend on whether a second went by; the tests of
    that memory move it by hand."""
    now = [1_000.0]
    monkeypatch.setattr(tokens, "_clock", lambda: now[0])
    return now


@pytest.fixture(autouse=True)
def default_tenant() -> Iterator[None]:
    """What a test reads or writes through the store directly, it does for the default tenant,
    as a request with the suite's TOKEN does; tests of other tenants enter theirs."""
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        yield


# Writes run while the request only reads (app.db.start_reading_only), by any engine; the
# autouse fixture below fails the test that ran one.
_WRITTEN_WHILE_READING: list[str] = []
_WRITES = ("INSERT", "UPDATE", "DELETE", "MERGE")


@event.listens_for(Engine, "before_cursor_execute")
def _note_a_write_while_reading(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
    if reads_only():
        words = statement.upper().split()
        if words[:1] and (
            words[0] in _WRITES or (words[0] == "WITH" and set(_WRITES) & set(words))
        ):
            _WRITTEN_WHILE_READING.append(" ".join(statement.split())[:200])


@pytest.fixture(autouse=True)
def no_write_while_reading() -> Iterator[None]:
    """A GET or a .search runs as a read: on PostgreSQL outside any transaction, where each
    statement commits by itself, so a write there would not be atomic (app.db._begin). Nothing
    enforces that in the service; every test checks it."""
    _WRITTEN_WHILE_READING.clear()
    yield
    assert not _WRITTEN_WHILE_READING, _WRITTEN_WHILE_READING


def create_schema() -> None:
    """The tables as the models declare them, and the default tenant migration 0009 creates."""
    db.create_all()
    tenants.ensure_default()


def empty_tables() -> None:
    """Delete every row of every tenant, children first, and every tenant but the default one.
    Emptied, not rolled back: race tests need commits that other connections see; a
    hypothesis test calls it to start each example afresh. Across tenants, as the service's
    PostgreSQL role sees only the entered tenant's rows (row-level security)."""
    db.session.remove()
    with tenancy.across_tenants():
        for table in reversed(db.metadata.sorted_tables):
            delete = table.delete()
            if table.name == "tenants":
                delete = delete.where(table.c.id != tenancy.DEFAULT_TENANT_ID)
            db.session.execute(delete)
        if db.engine.dialect.name == "sqlite":
            # SQLite's search backlog noted every row deleted (app/models.py): folded, it
            # leaves the search tables as empty as the rest for the next test.
            search_backlog.fold(db.session.connection())
        db.session.commit()
    tokens.forget_callers()  # the tokens and tenants it remembers are gone
    tenants.ensure_default()


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def tenant_client(app: Flask, client: FlaskClient) -> Callable[[str], FlaskClient]:
    """A client of a new tenant with this slug, holding a token of its own (`client` empties
    the tables afterwards, every tenant's)."""

    def make(slug: str) -> FlaskClient:
        tenant = tenants.create(slug)
        token = new_token()
        with tenancy.entered(tenant.id):
            tokens.create(f"{slug}-idp", token_hash(token))
        other = app.test_client()
        other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return other

    return make


@pytest.fixture
def create_user(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    """POST a user (Okta's create body, with overrides) and return the created resource."""

    def create(**overrides: Any) -> dict[str, Any]:
        response = client.post(f"{BASE}/Users", json=user_payload(**overrides))
        assert response.status_code == 201, response.json
        return response.json

    return create


@pytest.fixture
def create_group(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    """POST a group (displayName and any other attributes) and return the created resource."""

    def create(display_name: str = "Engineering", **extra: Any) -> dict[str, Any]:
        body = {"schemas": [GROUP_URN], "displayName": display_name, **extra}
        response = client.post(f"{BASE}/Groups", json=body)
        assert response.status_code == 201, response.json
        return response.json

    return create


@pytest.fixture
def directory(create_user: Callable[..., dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Four users (ada, grace, alan inactive, edsger) that differ in every attribute the filter
    and sort tests query, by key."""

    def person(
        user_name: str, given: str, family: str, email_type: str = "work", **overrides: Any
    ) -> dict[str, Any]:
        return create_user(
            userName=user_name,
            name={"givenName": given, "familyName": family},
            displayName=f"{given} {family}",
            emails=[{"value": user_name, "type": email_type, "primary": True}],
            externalId=f"ext-{given}",
            **overrides,
        )

    return {
        "ada": person("ada@example.com", "Ada", "Lovelace", title="Engineer"),
        "grace": person("grace@example.org", "Grace", "Hopper", email_type="home"),
        "alan": person("alan@example.com", "Alan", "Turing", title="Engineer", active=False),
        "edsger": person("edsger@example.net", "Edsger", "Dijkstra", title="Professor"),
    }


@contextmanager
def statements_run(containing: str) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements with `containing` in their text run meanwhile on the current app's
    engine, with their parameters: for reading a statement's plan (EXPLAIN) afterwards."""
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if containing in statement:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements run meanwhile on the current app's engine, in order."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
