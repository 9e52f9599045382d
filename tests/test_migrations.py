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

from app.db import UTCDateTime, db
from tests.conftest import BASE, TOKEN, make_app
from tests.databases import scratch_postgres_database
from tests.payloads import (
    ENTERPRISE_URN,
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


def test_migrations_match_the_models(migrated):
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert diff == []


def test_migrations_create_every_table_and_stop_at_head(migrated):
    tables = set(inspect(db.engine).get_table_names())
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
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert diff == []


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
