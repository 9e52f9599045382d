"""The Alembic revisions build exactly the schema the models declare, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect

from app import tenancy, validate
from app.auth import new_token, token_hash
from app.config import ConfigError
from app.db import UTCDateTime, db
from app.models import User, is_search_object
from app.store import console as console_store
from app.store import tenants, tokens
from app.store import users as users_store
from tests.conftest import BASE, TOKEN, make_app
from tests.databases import scratch_postgres_database
from tests.payloads import (
    ENTERPRISE_URN,
    GROUP_URN,
    USER_URN,
    error,
    patch_payload,
    user_payload,
    without_volatile,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An app on a fresh database that only the migrations have built."""
    if request.param == "sqlite":
        yield from _migrated(f"sqlite:///{tmp_path / 'migrated.sqlite3'}")
    else:
        with scratch_postgres_database() as url:
            yield from _migrated(url)


def _migrated(url: str, revision: str = "head") -> Iterator[Flask]:
    app = make_app(url)
    with app.app_context():
        flask_migrate.upgrade(revision=revision)
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


def _diff_from_the_models() -> list[Any]:
    """What Alembic finds different between the database and the models, leaving out the
    console search's indexes, which the models cannot declare (compared below instead)."""
    options = {"include_name": lambda name, type_, parents: not is_search_object(name)}
    with db.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection, opts=options), db.metadata)


def _tables(engine: sa.Engine) -> set[str]:
    return {name for name in inspect(engine).get_table_names() if not is_search_object(name)}


def test_migrations_match_the_models(migrated):
    assert _diff_from_the_models() == []


def test_migrations_create_every_table_and_stop_at_head(migrated):
    tables = _tables(db.engine)
    assert tables == {t.name for t in db.metadata.sorted_tables} | {"alembic_version"}
    with db.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    assert len(current) == 1


def test_the_service_works_on_the_migrated_database(migrated):
    client = migrated.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    created = client.post(f"{BASE}/Users", json=user_payload())
    assert created.status_code == 201
    url = f"{BASE}/Users/{created.json['id']}"
    assert client.get(url).json == created.json
    # The partial unique index exists: a second live Jane is refused...
    duplicate = client.post(f"{BASE}/Users", json=user_payload(userName="JANE@example.com"))
    assert duplicate.status_code == 409
    assert duplicate.json == error(
        409, "userName 'JANE@example.com' is already taken", "uniqueness"
    )
    # ...and the per-element index serves filters.
    lookup = client.get(
        f"{BASE}/Users", query_string={"filter": 'emails.value eq "jane@example.com"'}
    )
    assert lookup.json["totalResults"] == 1
    deactivate = patch_payload({"op": "replace", "value": {"active": False}})
    assert client.patch(url, json=deactivate).json["active"] is False
    group = client.post(
        f"{BASE}/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Engineering",
            "members": [{"value": created.json["id"]}],
        },
    )
    assert group.status_code == 201
    assert client.delete(url).status_code == 204
    # A tombstone does not hold on to its userName.
    assert client.post(f"{BASE}/Users", json=user_payload()).status_code == 201


def test_downgrade_to_base_and_upgrade_again(migrated):
    flask_migrate.downgrade(revision="base")
    assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
    flask_migrate.upgrade()
    assert _diff_from_the_models() == []


# ---------------------------------------------------------------------------------------------
# 0011_console_search: the indexes the models cannot declare


def _schema_objects() -> list[tuple[str, str, str, str]]:
    """(name, table, type, SQL with its spaces normalized): PostgreSQL's indexes, every object
    of SQLite's schema."""
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            rows = connection.exec_driver_sql(
                "SELECT indexname, tablename, 'index', indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema()"
            ).all()
        else:
            rows = connection.exec_driver_sql(
                "SELECT name, tbl_name, type, sql FROM sqlite_master"
            ).all()
    return [(name, table, kind, " ".join((sql or "").split())) for name, table, kind, sql in rows]


def _search_objects() -> set[tuple[str, str]]:
    """The console search's indexes, tables and triggers (app/models.py), with their SQL."""
    return {
        (name, sql)
        for name, table, _kind, sql in _schema_objects()
        if is_search_object(name) or is_search_object(table)
    }


def test_migrations_build_the_search_index_create_all_builds(migrated):
    migrated_objects = _search_objects()
    # PostgreSQL: 6 indexes; SQLite: 3 FTS5 tables (and theirs), 2 _ids tables, the backlog,
    # 9 triggers.
    assert len(migrated_objects) >= 6
    db.drop_all()
    assert _search_objects() == set()
    db.create_all()
    assert _search_objects() == migrated_objects


def _index_definitions() -> dict[str, str]:
    """Every index of the database with its SQL, as the database states it."""
    return {name: sql for name, _table, kind, sql in _schema_objects() if kind == "index"}


def test_migrations_build_every_index_as_create_all_does(migrated):
    """Alembic's comparison sees an index's columns, not its operator classes or collations:
    ix_users_live_display's ids compare byte by byte on PostgreSQL (0017) only if both say so."""
    migrated_indexes = _index_definitions()
    db.drop_all()
    db.create_all()
    assert _index_definitions() == migrated_indexes
    if db.engine.dialect.name == "postgresql":
        assert "id text_pattern_ops" in migrated_indexes["ix_users_live_display"]


def test_0017_downgrades_to_the_collation_ordered_index_and_back(migrated):
    flask_migrate.downgrade(revision="0016_member_groups_index")
    display = _index_definitions()["ix_users_live_display"]
    assert "text_pattern_ops" not in display
    flask_migrate.upgrade()
    if db.engine.dialect.name == "postgresql":
        assert "id text_pattern_ops" in _index_definitions()["ix_users_live_display"]
    assert _diff_from_the_models() == []


def test_0011_indexes_the_directory_already_stored_and_downgrades(migrated):
    client = _scim_client(migrated)
    ada = user_payload(
        userName="ada@example.com",
        name={"givenName": "Ada", "familyName": "Lovelace"},
        emails=[{"value": "ada@analytical.example", "type": "work"}],
    )
    assert client.post(f"{BASE}/Users", json=ada).status_code == 201
    gone = client.post(f"{BASE}/Users", json=user_payload(userName="gone@example.com"))
    assert client.delete(f"{BASE}/Users/{gone.json['id']}").status_code == 204
    group = {"schemas": [GROUP_URN], "displayName": "Analytical Engines"}
    assert client.post(f"{BASE}/Groups", json=group).status_code == 201
    flask_migrate.downgrade(revision="0010_rls_inline")
    assert _search_objects() == set()
    # Written while no index (nor trigger) existed: the upgrade's copy must find it. Through
    # the store's seeding insert, not the API: today's request writes tables (events) and
    # columns (audit_events.txn) that 0010 did not have.
    grace = user_payload(userName="grace@example.com", emails=[{"value": "grace@navy.example"}])
    rt = migrated.extensions["scim_registry"].user
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        document = validate.resource(rt, grace).document
        users_store.insert_many(rt, [document], [datetime.now(UTC)])
        db.session.commit()
    flask_migrate.upgrade()
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):

        def found(text: str) -> list[str]:
            return [user.user_name for user in console_store.users(rt, text).rows]

        assert found("lovelace") == ["ada@example.com"]
        assert found("analytical") == ["ada@example.com"]
        assert found("navy.example") == ["grace@example.com"]
        assert found("gone@") == []
        groups = console_store.groups_listing("ENGINES").rows
        assert [g.display_name for g in groups] == ["Analytical Engines"]
        db.session.rollback()


def test_0018_keeps_what_0011_indexed_and_its_downgrade_folds_the_backlog_in(migrated):
    """Users written under 0011's triggers (in the FTS5 tables at once) and under 0018's (in
    the backlog) are found either way; downgrading writes the backlog into the tables, which
    0011's triggers then keep again."""
    client = _scim_client(migrated)
    flask_migrate.downgrade(revision="0017_member_display_bytewise")
    ada = user_payload(userName="ada@example.com", emails=[{"value": "ada@analytical.example"}])
    assert client.post(f"{BASE}/Users", json=ada).status_code == 201
    flask_migrate.upgrade()
    grace = user_payload(userName="grace@example.com", emails=[{"value": "grace@navy.example"}])
    grace_id = client.post(f"{BASE}/Users", json=grace).json["id"]
    rt = migrated.extensions["scim_registry"].user

    def found(text: str) -> list[str]:
        with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
            names = [user.user_name for user in console_store.users(rt, text).rows]
            db.session.rollback()
            return names

    def backlog() -> int:
        with db.engine.connect() as connection:
            return connection.exec_driver_sql("SELECT count(*) FROM search_backlog").scalar()

    assert found("analytical") == ["ada@example.com"]
    assert found("navy.example") == ["grace@example.com"]
    if db.engine.dialect.name == "sqlite":
        assert backlog() == 2  # grace's user row and email address
    flask_migrate.downgrade(revision="0017_member_display_bytewise")
    patched = patch_payload({"op": "replace", "path": "userName", "value": "hopper@example.com"})
    assert client.patch(f"{BASE}/Users/{grace_id}", json=patched).status_code == 200
    if db.engine.dialect.name == "sqlite":  # today's search reads the backlog: SQL at 0017
        with db.engine.connect() as connection:

            def indexed(table: str, phrase: str) -> int:
                match = f"SELECT count(*) FROM {table} WHERE {table} MATCH ?"
                return connection.exec_driver_sql(match, (f'"{phrase}"',)).scalar()

            assert indexed("user_values_search", "navy.example") == 1  # folded in
            assert indexed("users_search", "hopper@") == 1  # by 0011's trigger
            assert indexed("users_search", "grace@") == 0
    flask_migrate.upgrade()
    assert _diff_from_the_models() == []
    assert (found("grace@example"), found("hopper@")) == ([], ["hopper@example.com"])
    assert found("analytical") == ["ada@example.com"]


# ---------------------------------------------------------------------------------------------
# 0013_live_counts: the triggers that keep each tenant's live counts


def _live_count_objects() -> set[tuple[str, str]]:
    """The live counters' triggers (and, on PostgreSQL, their functions), with their SQL."""
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            rows = connection.exec_driver_sql(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE tgname LIKE 'live_counts_%%' UNION ALL "
                "SELECT proname, pg_get_functiondef(oid) FROM pg_proc "
                "WHERE proname LIKE 'scim_live_counts_%%'"
            ).all()
        else:
            rows = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'trigger' AND name LIKE 'live_counts_%'"
            ).all()
    return {(name, " ".join(sql.split())) for name, sql in rows}


def test_migrations_build_the_live_count_triggers_create_all_builds(migrated):
    migrated_objects = _live_count_objects()
    # Insert, delete and update on users and groups; PostgreSQL's two functions besides.
    expected = 8 if db.engine.dialect.name == "postgresql" else 6
    assert len(migrated_objects) == expected
    db.drop_all()
    assert _live_count_objects() == set()
    db.create_all()
    assert _live_count_objects() == migrated_objects


def _live_counts() -> dict[tuple[int, str], int]:
    """Every tenant's counters summed per resource type, and the live rows counted one by one;
    asserted equal, then returned."""
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT set_config('scim.tenant', '*', true)")
        summed = connection.exec_driver_sql(
            "SELECT tenant_id, resource_type, sum(live) FROM live_counts GROUP BY 1, 2"
        ).all()
        rows = connection.exec_driver_sql(
            "SELECT tenant_id, 'User', count(*) FROM users WHERE deleted_at IS NULL GROUP BY 1 "
            "UNION ALL "
            "SELECT tenant_id, 'Group', count(*) FROM groups WHERE deleted_at IS NULL GROUP BY 1"
        ).all()
    counters = {(tenant, kind): int(total) for tenant, kind, total in summed if total}
    assert counters == {(tenant, kind): total for tenant, kind, total in rows}
    return counters


def test_0013_counts_the_directory_already_stored_and_downgrades(migrated):
    client = _scim_client(migrated)
    with tenancy.entered(None):
        acme_id = tenants.create("acme").id
    acme_token = new_token()
    with tenancy.entered(acme_id):
        tokens.create("acme-idp", token_hash(acme_token))
    db.session.remove()
    acme = migrated.test_client()
    acme.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {acme_token}"

    def user(caller: FlaskClient, name: str) -> str:
        response = caller.post(f"{BASE}/Users", json=user_payload(userName=name))
        assert response.status_code == 201, response.json
        return response.json["id"]

    user(client, "ada@example.com")
    gone = user(client, "gone@example.com")
    assert client.delete(f"{BASE}/Users/{gone}").status_code == 204
    user(acme, "ada@acme.example")
    group = {"schemas": [GROUP_URN], "displayName": "Acme staff"}
    assert acme.post(f"{BASE}/Groups", json=group).status_code == 201
    assert _live_counts() == {(1, "User"): 1, (acme_id, "User"): 1, (acme_id, "Group"): 1}

    flask_migrate.downgrade(revision="0012_live_order_indexes")
    assert _live_count_objects() == set()
    assert "live_counts" not in inspect(db.engine).get_table_names()
    # Written while no counter (nor trigger) existed: the upgrade's count must find them.
    # Through the store's seeding insert and a plain tombstone, not the API: today's requests
    # write what 0012 did not have (the events outbox of 0014, audit_events.txn).
    rt = migrated.extensions["scim_registry"].user

    def seed(tenant_id: int, *names: str) -> None:
        with tenancy.entered(tenant_id):
            documents = [validate.resource(rt, user_payload(userName=n)).document for n in names]
            users_store.insert_many(rt, documents, [datetime.now(UTC)] * len(names))
            db.session.commit()

    seed(tenancy.DEFAULT_TENANT_ID, "grace@example.com")
    seed(acme_id, *(f"u{n}@acme.example" for n in range(3)))
    with tenancy.entered(acme_id):
        tombstone = sa.update(User).where(User.user_name == "ada@acme.example")
        db.session.execute(tombstone.values(deleted_at=datetime.now(UTC)))
        db.session.commit()
    db.session.remove()
    flask_migrate.upgrade()
    assert _live_counts() == {(1, "User"): 2, (acme_id, "User"): 3, (acme_id, "Group"): 1}
    totals = [
        caller.get(f"{BASE}/{kind}").json["totalResults"]
        for caller in (client, acme)
        for kind in ("Users", "Groups")
    ]
    assert totals == [2, 0, 3, 1]
    # And the triggers count from there.
    user(acme, "new@acme.example")
    assert acme.get(f"{BASE}/Users").json["totalResults"] == 4
    assert _live_counts()[(acme_id, "User")] == 4


# ---------------------------------------------------------------------------------------------
# 0008_folded_copies on a database that already holds users

REVISION_0007 = "0007_console_sessions"


@pytest.fixture(params=["sqlite", "postgresql"])
def at_0007(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An app on a database the migrations have built up to revision 0007 only."""
    if request.param == "sqlite":
        yield from _migrated(f"sqlite:///{tmp_path / 'at_0007.sqlite3'}", REVISION_0007)
    else:
        with scratch_postgres_database() as url:
            yield from _migrated(url, REVISION_0007)


# The tables as revision 0007 left them: user_values still had `type` and `display`.
USERS_0007 = sa.table(
    "users",
    sa.column("id", sa.String),
    sa.column("user_name", sa.String),
    sa.column("user_name_key", sa.String),
    sa.column("external_id", sa.String),
    sa.column("display_name", sa.String),
    sa.column("given_name", sa.String),
    sa.column("family_name", sa.String),
    sa.column("display_name_key", sa.String),
    sa.column("given_name_key", sa.String),
    sa.column("family_name_key", sa.String),
    sa.column("active", sa.Boolean),
    sa.column("password_hash", sa.String),
    sa.column("document", sa.JSON),
    sa.column("created_at", UTCDateTime()),
    sa.column("last_modified", UTCDateTime()),
    sa.column("deleted_at", UTCDateTime()),
    sa.column("version", sa.Integer),
)
USER_VALUES_0007 = sa.table(
    "user_values",
    sa.column("id", sa.Integer),
    sa.column("user_id", sa.String),
    sa.column("attribute", sa.String),
    sa.column("value", sa.String),
    sa.column("value_key", sa.String),
    sa.column("type", sa.String),
    sa.column("primary", sa.Boolean),
    sa.column("display", sa.String),
    sa.column("data", sa.JSON),
)
ADA_ID = "0a0a0a0a-0000-4000-8000-000000000000"
ADA = {
    "userName": "Ada@École.fr",
    "name": {"givenName": "Ada", "familyName": "Straße", "formatted": "ADA STRASSE"},
    "displayName": "Ada Straße",
    "nickName": "STRASSE",
    "emails": [
        {"value": "Ada@École.fr", "type": "Work", "display": "Ada at École", "primary": True},
        {"value": "ada@home.example", "type": "home"},
    ],
    "active": True,
    ENTERPRISE_URN: {"department": "ΟΔΟΣ"},
}
# More users than one batch of 0008 (1,000 rows), so that every batch is seen to be filled.
FILLERS = 1002


def _rows_0007(user_id: str, document: dict[str, Any]) -> tuple[dict, list[dict]]:
    """A users row and its user_values rows as the service wrote them up to revision 0007."""
    name = document.get("name", {})

    def folded(text: str | None) -> str | None:
        return None if text is None else text.casefold()

    created = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    user = {
        "id": user_id,
        "user_name": document["userName"],
        "user_name_key": folded(document["userName"]),
        "external_id": None,
        "display_name": document.get("displayName"),
        "given_name": name.get("givenName"),
        "family_name": name.get("familyName"),
        "display_name_key": folded(document.get("displayName")),
        "given_name_key": folded(name.get("givenName")),
        "family_name_key": folded(name.get("familyName")),
        "active": document["active"],
        "password_hash": None,
        "document": document,
        "created_at": created,
        "last_modified": created,
        "deleted_at": None,
        "version": 1,
    }
    values = [
        {
            "user_id": user_id,
            "attribute": "emails",
            "value": email["value"],
            "value_key": folded(email["value"]),
            "type": email.get("type"),
            "primary": email.get("primary") is True,
            "display": email.get("display"),
            "data": email,
        }
        for email in document.get("emails", [])
    ]
    return user, values


def _scim_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    return client


def _found(client: FlaskClient, filter_text: str) -> tuple[int, list[str]]:
    """totalResults and the ids on a first page of at most 5."""
    query = {"filter": filter_text, "count": 5, "attributes": "userName"}
    response = client.get(f"{BASE}/Users", query_string=query)
    assert response.status_code == 200, (filter_text, response.json)
    return response.json["totalResults"], [r["id"] for r in response.json["Resources"]]


def test_0008_folds_the_users_already_stored(at_0007):
    users, values = _rows_0007(ADA_ID, ADA)
    users, values = [users], list(values)
    for n in range(FILLERS):
        filler = {
            "userName": f"user{n}@example.com",
            "nickName": "Füller",
            "emails": [{"value": f"user{n}@example.com", "type": "Home"}],
            "active": True,
        }
        user, rows = _rows_0007(f"{n:08d}-0000-4000-8000-000000000000", filler)
        users.append(user)
        values += rows
    with db.engine.begin() as connection:
        connection.execute(USERS_0007.insert(), users)
        connection.execute(USER_VALUES_0007.insert(), values)

    flask_migrate.upgrade()

    client = _scim_client(at_0007)
    assert _found(client, 'nickName eq "straße"') == (1, [ADA_ID])
    assert _found(client, 'name.formatted sw "ada straß"') == (1, [ADA_ID])
    assert _found(client, f'{ENTERPRISE_URN}:department eq "οδος"') == (1, [ADA_ID])
    assert _found(client, 'nickName eq "FÜLLER"')[0] == FILLERS
    assert _found(client, 'emails[type eq "work"]') == (1, [ADA_ID])
    assert _found(client, 'emails[type eq "WORK" and value eq "ada@école.fr"]') == (1, [ADA_ID])
    assert _found(client, 'emails.display eq "ADA AT ÉCOLE"') == (1, [ADA_ID])
    assert _found(client, 'emails[type eq "HOME"]')[0] == FILLERS + 1
    response = client.get(f"{BASE}/Users/{ADA_ID}")
    assert response.status_code == 200
    assert without_volatile(response.json) == {
        "schemas": [USER_URN, ENTERPRISE_URN],
        **ADA,
        "meta": {"resourceType": "User"},
    }


def test_0008_downgrade_restores_type_and_display_from_each_element(migrated):
    client = _scim_client(migrated)
    created = client.post(f"{BASE}/Users", json={"schemas": [USER_URN, ENTERPRISE_URN], **ADA})
    assert created.status_code == 201, created.json
    db.session.remove()

    flask_migrate.downgrade(revision=REVISION_0007)

    columns = {c["name"] for c in inspect(db.engine).get_columns("user_values")}
    assert {"type", "display"} <= columns
    assert "data_key" not in columns
    assert "document_key" not in {c["name"] for c in inspect(db.engine).get_columns("users")}
    values = USER_VALUES_0007.c
    with db.engine.connect() as connection:
        restored = connection.execute(
            sa.select(values.value, values.type, values.display).order_by(values.id)
        ).all()
    assert [tuple(row) for row in restored] == [
        ("Ada@École.fr", "Work", "Ada at École"),
        ("ada@home.example", "home", None),
    ]


# ---------------------------------------------------------------------------------------------
# 0009_tenants on a database that already holds a directory

REVISION_0008 = "0008_folded_copies"
OKTA_TOKEN = "okta-token-from-before-tenants-0123"
GRACE_ID = "0b0b0b0b-0000-4000-8000-000000000000"
GRACE = {
    "userName": "grace@example.org",
    "name": {"givenName": "Grace", "familyName": "Hopper"},
    "displayName": "Grace Hopper",
    "emails": [{"value": "grace@example.org", "type": "work", "primary": True}],
    "active": True,
}
GROUP_ID = "0c0c0c0c-0000-4000-8000-000000000000"
BEFORE = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

# The tables as revision 0008 left them, before any of them had a tenant.
GROUPS_0008 = sa.table(
    "groups",
    *(sa.column(n, sa.String) for n in ("id", "display_name", "display_name_key", "external_id")),
    sa.column("created_at", UTCDateTime()),
    sa.column("last_modified", UTCDateTime()),
    sa.column("deleted_at", UTCDateTime()),
    sa.column("version", sa.Integer),
)
GROUP_MEMBERS_0008 = sa.table(
    "group_members", *(sa.column(n, sa.String) for n in ("group_id", "member_id", "member_type"))
)
TOKENS_0008 = sa.table(
    "tokens",
    sa.column("name", sa.String),
    sa.column("hash", sa.String),
    sa.column("created_at", UTCDateTime()),
)
AUDIT_EVENTS_0008 = sa.table(
    "audit_events",
    sa.column("at", UTCDateTime()),
    *(sa.column(n, sa.String) for n in ("request_id", "token_name", "method", "resource_type")),
    sa.column("resource_id", sa.String),
    sa.column("operation", sa.String),
    sa.column("attributes", sa.JSON),
    sa.column("status", sa.Integer),
    sa.column("duration_ms", sa.Float),
)
CONSOLE_ADMINS_0008 = sa.table(
    "console_admins",
    sa.column("username", sa.String),
    sa.column("password_hash", sa.String),
    sa.column("created_at", UTCDateTime()),
    sa.column("password_changed_at", UTCDateTime()),
)
TENANT_OWNED_TABLES = ("users", "user_values", "groups", "group_members", "tokens")


@pytest.fixture(params=["sqlite", "postgresql"])
def populated_at_0008(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """A directory as a deployment held it at revision 0008, before tenants: two users (stored
    as 0007 stored them, then folded by 0008 as a real upgrade folds them), a group with both,
    a named token, audit rows (one of a request no token identified) and a console admin."""
    if request.param == "sqlite":
        migrated = _migrated(f"sqlite:///{tmp_path / 'at_0008.sqlite3'}", REVISION_0007)
        yield from _populated_at_0008(migrated)
    else:
        with scratch_postgres_database() as url:
            yield from _populated_at_0008(_migrated(url, REVISION_0007))


def _populated_at_0008(migrated: Iterator[Flask]) -> Iterator[Flask]:
    for app in migrated:
        rows = [_rows_0007(ADA_ID, ADA), _rows_0007(GRACE_ID, GRACE)]
        with db.engine.begin() as connection:
            connection.execute(USERS_0007.insert(), [user for user, _ in rows])
            connection.execute(USER_VALUES_0007.insert(), [v for _, values in rows for v in values])
        flask_migrate.upgrade(revision=REVISION_0008)
        with db.engine.begin() as connection:
            connection.execute(
                GROUPS_0008.insert(),
                [
                    {
                        "id": GROUP_ID,
                        "display_name": "Engineering",
                        "display_name_key": "engineering",
                        "external_id": None,
                        "created_at": BEFORE,
                        "last_modified": BEFORE,
                        "deleted_at": None,
                        "version": 1,
                    }
                ],
            )
            connection.execute(
                GROUP_MEMBERS_0008.insert(),
                [
                    {"group_id": GROUP_ID, "member_id": member, "member_type": "User"}
                    for member in (ADA_ID, GRACE_ID)
                ],
            )
            connection.execute(
                TOKENS_0008.insert(),
                [{"name": "okta", "hash": token_hash(OKTA_TOKEN), "created_at": BEFORE}],
            )
            audit = {
                "at": BEFORE,
                "method": "POST",
                "resource_type": "User",
                "operation": "create",
                "attributes": [],
                "status": 201,
                "duration_ms": 1.5,
            }
            connection.execute(
                AUDIT_EVENTS_0008.insert(),
                [
                    {**audit, "request_id": "r-1", "token_name": "okta", "resource_id": ADA_ID},
                    {
                        **audit,
                        "request_id": "r-2",
                        "token_name": None,
                        "resource_id": None,
                        "status": 401,
                    },
                ],
            )
            connection.execute(
                CONSOLE_ADMINS_0008.insert(),
                [
                    {
                        "username": "admin",
                        "password_hash": "scrypt:32768:8:1$salt$hash",
                        "created_at": BEFORE,
                        "password_changed_at": BEFORE,
                    }
                ],
            )
        yield app


def _column(table: str, *columns: str) -> list[tuple[Any, ...]]:
    """Every row's values of these columns, with no tenant condition (ordered, for comparing)."""
    names = ", ".join(columns)
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Across tenants, as migrations and operators' commands say they are.
            connection.exec_driver_sql("SELECT set_config('scim.tenant', '*', true)")
        rows = connection.execute(sa.text(f"SELECT {names} FROM {table} ORDER BY {names}")).all()
    return [tuple(row) for row in rows]


def test_0009_moves_an_existing_directory_into_the_default_tenant(populated_at_0008):
    flask_migrate.upgrade()

    assert _column("tenants", "id", "slug", "state") == [(1, "default", "active")]
    for table in TENANT_OWNED_TABLES:
        assert {tenant for (tenant,) in _column(table, "tenant_id")} == {1}, table
    assert _column("users", "tenant_id", "id") == [(1, ADA_ID), (1, GRACE_ID)]
    assert _column("group_members", "tenant_id", "group_id", "member_id") == [
        (1, GROUP_ID, ADA_ID),
        (1, GROUP_ID, GRACE_ID),
    ]
    assert _column("tokens", "tenant_id", "name") == [(1, "okta")]
    # A request no token identified belongs to no tenant; the others to `default`.
    assert sorted(_column("audit_events", "request_id", "tenant_id")) == [("r-1", 1), ("r-2", None)]
    # The console admin from before sees every tenant: a global account.
    assert _column("console_admins", "username", "tenant_id") == [("admin", None)]
    assert _column("membership_changes", "id") == []


def test_after_0009_the_old_tokens_see_the_old_directory(populated_at_0008):
    flask_migrate.upgrade()

    for token in (OKTA_TOKEN, TOKEN):  # the named token, and one of SCIM_TOKEN_HASHES
        client = populated_at_0008.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        assert _found(client, 'emails.value eq "ADA@école.fr"') == (1, [ADA_ID])
        assert _found(client, 'userName eq "GRACE@example.org"') == (1, [GRACE_ID])
        ada = client.get(f"{BASE}/Users/{ADA_ID}")
        assert ada.status_code == 200
        assert without_volatile(ada.json) == {
            "schemas": [USER_URN, ENTERPRISE_URN],
            **ADA,
            "groups": [
                {
                    "value": GROUP_ID,
                    "$ref": f"http://localhost{BASE}/Groups/{GROUP_ID}",
                    "display": "Engineering",
                    "type": "direct",
                }
            ],
            "meta": {"resourceType": "User"},
        }
        group = client.get(f"{BASE}/Groups/{GROUP_ID}")
        assert group.status_code == 200
        assert sorted(m["value"] for m in group.json["members"]) == [ADA_ID, GRACE_ID]


def test_after_0009_uniqueness_holds_per_tenant(populated_at_0008):
    flask_migrate.upgrade()
    default = _scim_client(populated_at_0008)
    acme_id = tenants.create("acme").id
    acme_token = new_token()
    with tenancy.entered(acme_id):
        tokens.create("acme-idp", token_hash(acme_token))
    acme = populated_at_0008.test_client()
    acme.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {acme_token}"

    same_name = user_payload(userName="ADA@école.fr", emails=None)
    taken = default.post(f"{BASE}/Users", json=same_name)
    assert (taken.status_code, taken.json) == (
        409,
        error(409, "userName 'ADA@école.fr' is already taken", "uniqueness"),
    )
    assert acme.post(f"{BASE}/Users", json=same_name).status_code == 201
    group = {"schemas": [GROUP_URN], "displayName": "ENGINEERING"}
    assert default.post(f"{BASE}/Groups", json=group).status_code == 409
    assert acme.post(f"{BASE}/Groups", json=group).status_code == 201
    assert acme.post(f"{BASE}/Groups", json=group).status_code == 409
    # Each tenant still sees only its own.
    assert _found(default, 'userName eq "ada@école.fr"') == (1, [ADA_ID])
    assert _found(acme, 'userName eq "ada@école.fr"')[0] == 1
    assert _found(acme, 'userName eq "grace@example.org"') == (0, [])


def test_migration_database_url_must_name_the_same_kind_of_database(tmp_path):
    with pytest.raises(ConfigError) as refused:
        make_app(
            f"sqlite:///{tmp_path / 'scim.sqlite3'}",
            MIGRATION_DATABASE_URL="postgresql://owner:owner-secret@db.example:5432/scim",
        )
    assert str(refused.value) == (
        "MIGRATION_DATABASE_URL must name the same kind of database as DATABASE_URL "
        "(the same PostgreSQL database, as the role that owns its tables)"
    )


def test_flask_db_upgrade_connects_with_migration_database_url_when_set(tmp_path):
    service, owner = tmp_path / "service.sqlite3", tmp_path / "owner.sqlite3"
    app = make_app(f"sqlite:///{service}", MIGRATION_DATABASE_URL=f"sqlite:///{owner}")
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    tables = {}
    for path in (owner, service):
        engine = sa.create_engine(f"sqlite:///{path}")
        tables[path] = _tables(engine)
        engine.dispose()
    assert tables[owner] == {t.name for t in db.metadata.sorted_tables} | {"alembic_version"}
    assert tables[service] == set()  # unset, DATABASE_URL would have been migrated instead
