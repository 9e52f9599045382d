"""The Alembic revisions build exactly the schema the models declare, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import inspect

from app.db import db
from tests.conftest import BASE, TOKEN, make_app
from tests.databases import scratch_postgres_database
from tests.payloads import error, patch_payload, user_payload


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An app on a fresh database that only the migrations have built."""
    if request.param == "sqlite":
        yield from _migrated(f"sqlite:///{tmp_path / 'migrated.sqlite3'}")
    else:
        with scratch_postgres_database() as url:
            yield from _migrated(url)


def _migrated(url: str) -> Iterator[Flask]:
    app = make_app(url)
    with app.app_context():
        flask_migrate.upgrade()
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
