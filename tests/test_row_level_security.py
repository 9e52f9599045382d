"""PostgreSQL's row-level security, the second layer of tenant isolation, proven as production
runs it: the tables owned by one role (the migrations ran as it), the service connected as
another one that deploy/postgres/app-role.sql made, neither SUPERUSER nor BYPASSRLS.

The store layer's scope (app/store/scope.py) is the first layer and is tested on both
databases elsewhere; here each statement is written WITHOUT a tenant condition, so that only
the policies of migration 0009 stand between a tenant and another one's rows.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import flask_migrate
import pytest
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from app import tenancy, validate
from app.auth import new_token, token_hash
from app.db import db, reading_only, writing
from app.models import EventReceiver, EventSigningKey, User
from app.schema.core import USER_RESOURCE
from app.store import events as events_store
from app.store import rls, scope, tenants, tokens, users
from app.store.scope import TENANT_OWNED
from tests.conftest import TOKEN, make_app, statements
from tests.databases import (
    Deployment,
    drop_roles_later,
    scratch_postgres_database,
    two_roles,
)
from tests.payloads import BASE, GROUP_URN, error, user_payload

OWNED = sorted(model.__table__.name for model in TENANT_OWNED)
ADMIN = "scim-admin"  # tenant 1's named token, so that `tokens` holds rows of both tenants

# Keys and indexes of the tenant-owned tables that do not lead with tenant_id, and why
# (docs/tenancy.md, "Distributing by tenant"). Anything else that does not is a finding.
NOT_LEADING_WITH_TENANT = {
    # The one lookup across tenants: a bearer token's hash is what names its tenant.
    ("tokens", "uq_tokens_hash"): "unique index (hash)",
    # Row numbers from a sequence, unique across tenants; nothing looks a row up by them alone.
    ("tokens", "pk_tokens"): "primary key (id)",
    ("user_values", "pk_user_values"): "primary key (id)",
    ("audit_events", "pk_audit_events"): "primary key (id)",
    ("membership_changes", "pk_membership_changes"): "primary key (id)",
    # The outbox's global order (app/store/events.py): one sequence across tenants.
    ("events", "pk_events"): "primary key (id)",
    # The console search's trigram indexes (app/models.py): a GIN has no column order to lead
    # with; one holding the tenant (btree_gin) made each index scan 3 times as slow.
    ("users", "ix_users_user_name_key_trgm"): "GIN trigram index (user_name_key)",
    ("users", "ix_users_display_name_key_trgm"): "GIN trigram index (display_name_key)",
    ("users", "ix_users_full_name_key_trgm"): "GIN trigram index ('given family')",
    ("user_values", "ix_user_values_emails_trgm"): "GIN trigram index (value_key of emails)",
    ("groups", "ix_groups_display_name_key_trgm"): "GIN trigram index (display_name_key)",
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """A scratch database set up as deploy/ sets one up: roles by the script, then migrations
    as the owner (MIGRATION_DATABASE_URL)."""
    if request.param == "sqlite":
        pytest.skip(
            "row-level security is PostgreSQL's: on SQLite the store layer's tenant scope is "
            "the only layer (tested on both databases by the tenancy tests)"
        )
    with scratch_postgres_database() as admin_url, two_roles(admin_url) as deployment:
        _migrate(deployment)
        yield deployment


@pytest.fixture(scope="module", autouse=True)
def _drop_roles() -> Iterator[None]:
    yield
    drop_roles_later()


def _migrate(deployment: Deployment) -> None:
    """`flask db upgrade` as deploy/ runs it: DATABASE_URL the service's, the migrations the
    owner's."""
    migrating = make_app(deployment.app_url, MIGRATION_DATABASE_URL=deployment.owner_url)
    with migrating.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    _join_check(migrating)


@pytest.fixture(scope="module")
def service(deployment: Deployment) -> Iterator[Flask]:
    """The service, connected as the role app-role.sql made."""
    app = make_app(deployment.app_url)
    _join_check(app)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@dataclass(frozen=True)
class Tenants:
    default: FlaskClient  # tenant 1, with the suite's TOKEN
    acme: FlaskClient
    acme_id: int
    default_ada: dict
    acme_ada: dict


@pytest.fixture(scope="module")
def two_tenants(service: Flask) -> Tenants:
    """Both tenants hold a user ada@example.com and a group with her in it, made through the API;
    so every tenant-owned table holds rows of both."""
    acme_id = tenants.create("acme").id
    acme_token = new_token()
    with tenancy.entered(acme_id):
        tokens.create("acme-idp", token_hash(acme_token))
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        tokens.create(ADMIN, token_hash(new_token()))
    for tenant_id in (tenancy.DEFAULT_TENANT_ID, acme_id):  # so that writes make events
        with tenancy.entered(tenant_id):
            receiver = EventReceiver(
                name="app",
                delivery="poll",
                events=list(events_store.EVENT_NAMES),
                audience="https://app.example",
            )
            key = EventSigningKey(kid=f"key-{tenant_id}", alg="HS256", secret="not-a-secret")
            events_store.add_receiver(receiver, key)
    clients = []
    for token in (TOKEN, acme_token):
        client = service.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        clients.append(client)
    adas = []
    for client in clients:
        ada = client.post(f"{BASE}/Users", json=user_payload(userName="ada@example.com"))
        assert ada.status_code == 201, ada.json
        group = {"schemas": [GROUP_URN], "displayName": "Engineering"}
        group["members"] = [{"value": ada.json["id"]}]
        created = client.post(f"{BASE}/Groups", json=group)
        assert created.status_code == 201, created.json
        for response in (ada, created):
            response.close()  # stores the audit row, as the WSGI server does after sending
        adas.append(ada.json)
    # A write refused before any token was recognised is audited with no tenant at all.
    refused = service.test_client().post(f"{BASE}/Users", json=user_payload())
    assert refused.status_code == 401
    refused.close()
    db.session.remove()
    return Tenants(clients[0], clients[1], acme_id, adas[0], adas[1])


@pytest.fixture(autouse=True)
def fresh_session() -> Iterator[None]:
    """Each test's statements begin a new transaction, which sets scim.tenant afresh."""
    yield
    if has_app_context():  # the tests of start-up have none
        db.session.remove()


def _join_check(app: Flask) -> None:
    thread = app.extensions.get("scim_rls_check")
    if thread is not None:
        thread.join(timeout=10)


def _tenants_seen(table: str) -> set[int | None]:
    """Whose rows a statement with no tenant condition at all returns from `table`."""
    try:
        return set(db.session.scalars(text(f"SELECT DISTINCT tenant_id FROM {table}")))
    finally:
        db.session.remove()


# --- The deployment -------------------------------------------------------------------------


def test_the_migrations_ran_as_the_owner_and_the_service_owns_nothing(deployment, service):
    roles = db.session.execute(
        text(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles "
            "WHERE rolname IN (:owner, :app) ORDER BY rolname = :app"
        ),
        {"owner": deployment.owner_role, "app": deployment.app_role},
    ).all()
    assert [tuple(r) for r in roles] == [
        (deployment.owner_role, False, False),
        (deployment.app_role, False, False),
    ]
    owners = dict(
        db.session.execute(
            text("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")
        ).all()
    )
    assert set(owners.values()) == {deployment.owner_role}
    assert set(owners) == {t.name for t in db.metadata.sorted_tables} | {"alembic_version"}
    security = db.session.execute(
        text(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relname = ANY(:owned) ORDER BY relname"
        ),
        {"owned": OWNED},
    ).all()
    assert [tuple(r) for r in security] == [(name, True, True) for name in OWNED]


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("ALTER TABLE users DISABLE ROW LEVEL SECURITY", id="disable"),
        pytest.param("ALTER TABLE users NO FORCE ROW LEVEL SECURITY", id="no-force"),
        pytest.param("DROP POLICY tenant_isolation ON users", id="drop-policy"),
        pytest.param("CREATE TABLE scratch (id integer)", id="create-table"),
        pytest.param("UPDATE alembic_version SET version_num = 'x'", id="write-revision"),
    ],
)
def test_the_service_role_cannot_turn_row_level_security_off(service, statement):
    with pytest.raises(ProgrammingError) as refused:
        db.session.execute(text(statement))
    assert refused.value.orig.sqlstate == "42501"  # insufficient_privilege


def test_row_security_off_makes_a_query_fail_rather_than_see_everything(service, two_tenants):
    db.session.execute(text("SET LOCAL row_security = off"))
    with pytest.raises(ProgrammingError) as refused:
        db.session.execute(text("SELECT * FROM users"))
    assert 'query would be affected by row-level security policy for table "users"' in str(
        refused.value.orig
    )


# --- Isolation without a tenant condition -----------------------------------------------------


def test_two_tenants_see_only_their_own_rows_through_the_api(two_tenants):
    for client, ada, other in (
        (two_tenants.default, two_tenants.default_ada, two_tenants.acme_ada),
        (two_tenants.acme, two_tenants.acme_ada, two_tenants.default_ada),
    ):
        listed = client.get(f"{BASE}/Users")
        assert [u["id"] for u in listed.json["Resources"]] == [ada["id"]]
        groups = client.get(f"{BASE}/Groups").json["Resources"]
        assert [[m["value"] for m in g["members"]] for g in groups] == [[ada["id"]]]
        response = client.get(f"{BASE}/Users/{other['id']}")
        assert (response.status_code, response.json) == (
            404,
            error(404, f"User {other['id']} not found"),
        )


def test_raw_sql_without_a_tenant_condition_returns_only_the_entered_tenants_rows(two_tenants):
    for table in OWNED:
        with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
            assert _tenants_seen(table) == {tenancy.DEFAULT_TENANT_ID}, table
        with tenancy.entered(two_tenants.acme_id):
            assert _tenants_seen(table) == {two_tenants.acme_id}, table
    with tenancy.entered(two_tenants.acme_id):
        rows = db.session.execute(text("SELECT * FROM users")).mappings().all()
    assert [(r["tenant_id"], r["id"]) for r in rows] == [
        (two_tenants.acme_id, two_tenants.acme_ada["id"])
    ]


def test_raw_sql_with_no_tenant_entered_returns_nothing(two_tenants):
    with tenancy.entered(None):
        for table in OWNED:
            assert _tenants_seen(table) == set(), table


@pytest.mark.parametrize("read", [False, True], ids=["in a transaction", "a read"])
def test_a_pooled_connection_runs_under_the_tenant_entered_now_not_its_last(
    deployment, two_tenants, read
):
    """The connection keeps its `scim.tenant` from one use to the next (app/store/scope.py):
    whoever uses it next, an ORM session or Core, runs under the tenant entered then, or
    under none. One pooled connection, so that every use below is that same connection."""
    engine = create_engine(deployment.app_url, pool_size=1, max_overflow=0)
    acme, default = two_tenants.acme_id, tenancy.DEFAULT_TENANT_ID
    used = set()

    def seen_by_core() -> dict[str, set[int]]:
        with reading_only() if read else writing(), engine.connect() as connection:
            used.add(id(connection.connection.dbapi_connection))
            return {
                table: set(connection.scalars(text(f"SELECT DISTINCT tenant_id FROM {table}")))
                for table in OWNED
            }

    def seen_by_a_session() -> set[int]:
        with reading_only() if read else writing(), Session(engine) as session:
            used.add(id(session.connection().connection.dbapi_connection))
            return set(session.scalars(text("SELECT DISTINCT tenant_id FROM users")))

    try:
        for scope, expected in (
            (acme, {acme}),
            (None, set()),
            (default, {default}),
            (acme, {acme}),
        ):
            with tenancy.entered(scope):
                assert seen_by_core() == dict.fromkeys(OWNED, expected), scope
                assert seen_by_a_session() == expected, scope
        with tenancy.entered(None):
            assert seen_by_core() == dict.fromkeys(OWNED, set())
        with tenancy.entered(tenancy.ALL_TENANTS):
            assert seen_by_a_session() == {acme, default}
        with tenancy.entered(None):
            assert seen_by_a_session() == set()
    finally:
        engine.dispose()
    assert len(used) == 1


def test_an_orm_query_with_the_scope_listener_bypassed_returns_only_the_entered_tenants(
    two_tenants,
):
    # As if the store's scope had a bug that forgot the tenant condition: no listener at all.
    unscoped = select(User.tenant_id, User.id)
    event.remove(Session, "do_orm_execute", scope._scope_statement)
    try:
        with tenancy.entered(two_tenants.acme_id), statements() as seen:
            rows = db.session.execute(unscoped).all()
        assert [tuple(r) for r in rows] == [(two_tenants.acme_id, two_tenants.acme_ada["id"])]
        [query] = [s for s in seen if "FROM users" in s]
        assert "tenant_id =" not in query and "WHERE" not in query
        db.session.remove()
        with tenancy.entered(None):
            assert db.session.execute(unscoped).all() == []
    finally:
        event.listen(Session, "do_orm_execute", scope._scope_statement)


def test_across_tenants_sees_every_tenants_rows(two_tenants):
    with tenancy.across_tenants():
        for table in OWNED:
            expected = {tenancy.DEFAULT_TENANT_ID, two_tenants.acme_id}
            if table == "audit_events":
                expected.add(None)  # the refused request no token identified
            assert _tenants_seen(table) == expected, table


# --- Writes for another tenant ----------------------------------------------------------------

INSERT_GROUP = text(
    "INSERT INTO groups (tenant_id, id, display_name, display_name_key, created_at, "
    "last_modified, version) VALUES (:tenant, :id, 'Planted', 'planted', now(), now(), 1)"
)


def test_an_insert_for_another_tenant_is_refused_by_the_policy(two_tenants):
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        with pytest.raises(ProgrammingError) as refused:
            db.session.execute(
                INSERT_GROUP, {"tenant": two_tenants.acme_id, "id": str(uuid.uuid4())}
            )
    assert refused.value.orig.sqlstate == "42501"
    assert 'new row violates row-level security policy for table "groups"' in str(
        refused.value.orig
    )
    db.session.remove()
    with tenancy.entered(None):
        with pytest.raises(ProgrammingError):
            db.session.execute(
                INSERT_GROUP, {"tenant": two_tenants.acme_id, "id": str(uuid.uuid4())}
            )


def test_a_row_cannot_be_moved_to_another_tenant(two_tenants):
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        with pytest.raises(ProgrammingError) as refused:
            db.session.execute(
                text("UPDATE users SET tenant_id = :other"), {"other": two_tenants.acme_id}
            )
    assert 'new row violates row-level security policy for table "users"' in str(refused.value.orig)


def test_updates_and_deletes_without_a_tenant_condition_touch_only_the_entered_tenant(
    two_tenants,
):
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        changed = db.session.execute(text("UPDATE groups SET version = version")).rowcount
        db.session.rollback()
    assert changed == 1
    with tenancy.entered(None):
        assert db.session.execute(text("DELETE FROM users")).rowcount == 0
        db.session.rollback()
    assert two_tenants.acme.get(f"{BASE}/Users/{two_tenants.acme_ada['id']}").status_code == 200


# --- The schema could be distributed by tenant ------------------------------------------------


def test_every_key_and_index_of_the_tenant_owned_tables_leads_with_tenant_id(service):
    # Indexes (those of primary keys and unique constraints included) by their first column;
    # an index on an expression has none, and is a finding too.
    indexes = db.session.execute(
        text(
            """
            SELECT t.relname, i.relname, a.attname
            FROM pg_index x
            JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_class i ON i.oid = x.indexrelid
            LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
            WHERE t.relname = ANY(:owned)
            """
        ),
        {"owned": OWNED},
    ).all()
    # Primary, unique and foreign keys on these tables, and foreign keys pointing at them: both
    # ends of a reference must lead with the tenant.
    keys = db.session.execute(
        text(
            """
            SELECT t.relname, c.conname, a.attname
            FROM pg_constraint c
            JOIN pg_class t ON t.oid = c.conrelid
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype IN ('p', 'u', 'f') AND t.relname = ANY(:owned)
            UNION ALL
            SELECT r.relname, c.conname, a.attname
            FROM pg_constraint c
            JOIN pg_class r ON r.oid = c.confrelid
            JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = c.confkey[1]
            WHERE c.contype = 'f' AND r.relname = ANY(:owned)
            """
        ),
        {"owned": OWNED},
    ).all()
    assert len(indexes) >= 20 and len(keys) >= 15  # the queries see the schema at all
    not_leading = {
        (table, name) for table, name, first in [*indexes, *keys] if first != "tenant_id"
    }
    assert not_leading == set(NOT_LEADING_WITH_TENANT)


# --- The start-up warning ---------------------------------------------------------------------


def _warnings_at_start(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=rls.log.name):
        app = make_app(url)
        _join_check(app)
    with app.app_context():
        db.engine.dispose()
    return [r.getMessage() for r in caplog.records if r.name == rls.log.name and r.levelno >= 30]


def test_a_superuser_service_is_warned_at_start(deployment, caplog):
    role = make_url(deployment.admin_url).username
    assert _warnings_at_start(deployment.admin_url, caplog) == [
        f'row-level security does not apply: the service connects to PostgreSQL as "{role}", '
        "a superuser, so tenant isolation rests on the store layer alone. Connect DATABASE_URL "
        "as a role without SUPERUSER or BYPASSRLS and run migrations as the tables' owner with "
        "MIGRATION_DATABASE_URL (deploy/postgres/app-role.sql; docs/tenancy.md)"
    ]


def test_the_service_role_is_not_warned_at_start(deployment, caplog):
    assert _warnings_at_start(deployment.app_url, caplog) == []


def test_a_bypassrls_role_is_warned_and_sees_every_tenant(deployment, two_tenants, caplog):
    """Why the warning matters: with BYPASSRLS the policies are skipped without a sign."""
    url = make_url(deployment.app_url)
    bypassing = f"{deployment.app_role}_bypass"
    admin = create_engine(deployment.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            text(f'CREATE ROLE "{bypassing}" LOGIN BYPASSRLS IN ROLE "{deployment.app_role}"')
        )
    try:
        bypass_url = url.set(username=bypassing, password=None).render_as_string(
            hide_password=False
        )
        assert _warnings_at_start(bypass_url, caplog) == [
            f"row-level security does not apply: the service connects to PostgreSQL as "
            f'"{bypassing}", a role with BYPASSRLS, so tenant isolation rests on the store layer '
            "alone. Connect DATABASE_URL as a role without SUPERUSER or BYPASSRLS and run "
            "migrations as the tables' owner with MIGRATION_DATABASE_URL "
            "(deploy/postgres/app-role.sql; docs/tenancy.md)"
        ]
        engine = create_engine(bypass_url)
        with engine.connect() as connection:
            connection.execute(text("SELECT set_config('scim.tenant', '1', false)"))
            seen = set(connection.scalars(text("SELECT DISTINCT tenant_id FROM users")))
        engine.dispose()
        assert seen == {tenancy.DEFAULT_TENANT_ID, two_tenants.acme_id}
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP ROLE "{bypassing}"'))
        admin.dispose()


def test_there_is_nothing_to_check_on_sqlite(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'rls.sqlite3'}")
    assert "scim_rls_check" not in app.extensions
    with app.app_context():
        db.engine.dispose()


def test_an_existing_deployment_moves_to_two_roles():
    """A database the migrations built as one role (a superuser here, as the old compose file
    did): the script hands every table to the owner, and the service works as the other role."""
    with scratch_postgres_database() as admin_url:
        before = make_app(admin_url)
        with before.app_context():
            flask_migrate.upgrade()
            db.engine.dispose()
        _join_check(before)
        with two_roles(admin_url) as deployment:
            _migrate(deployment)  # nothing left to do, as the new owner
            app = make_app(deployment.app_url)
            _join_check(app)
            with app.app_context():
                owners = set(
                    db.session.scalars(
                        text(
                            "SELECT pg_get_userbyid(c.relowner) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')"
                        )
                    )
                )
                client = app.test_client()
                client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
                created = client.post(f"{BASE}/Users", json=user_payload())
                created.close()
                db.session.remove()
                db.engine.dispose()
    assert owners == {deployment.owner_role}
    assert created.status_code == 201, created.json


def test_the_check_never_delays_or_fails_start_up(caplog):
    # Nothing listens on port 1: the check gives up quietly, in its own thread.
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger=rls.log.name):
        app = make_app("postgresql+psycopg://scim@127.0.0.1:1/scim")
        assert time.monotonic() - started < 2  # create_app did not wait for the database
        _join_check(app)
    with app.app_context():
        db.engine.dispose()
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == rls.log.name] == [
        ("DEBUG", "row-level security check skipped: OperationalError")
    ]


# --- What the policy costs ------------------------------------------------------------------

PAGE = (
    "EXPLAIN (COSTS OFF) SELECT id FROM users WHERE tenant_id = :tenant AND deleted_at IS NULL "
    "ORDER BY created_at, id LIMIT 100 OFFSET :offset"
)


def _plan(url: str, setting: str, offset: int) -> str:
    """The plan of a page of the default tenant's users, with `scim.tenant` set to `setting`."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT set_config('scim.tenant', :t, true)"), {"t": setting})
            rows = connection.execute(
                text(PAGE), {"tenant": tenancy.DEFAULT_TENANT_ID, "offset": offset}
            )
            # The policy's own condition shows in the Filter lines; the plan is the rest.
            return "\n".join(row[0] for row in rows if "Filter:" not in row[0])
    finally:
        engine.dispose()


@pytest.mark.parametrize("offset", [0, 2_500, 4_900])  # the last page: both read and sort
def test_a_page_under_the_policy_walks_the_index_as_without_it(offset):
    """One tenant holding every row, as a single-customer deployment does: the policy (one
    comparison PostgreSQL inlines, migration 0010) leaves the planner the plan it makes without
    any policy (for a superuser), the creation-order index walked to the page where that is
    cheaper; 0009's opaque function made it read and sort the whole table for every page."""
    with scratch_postgres_database() as admin_url, two_roles(admin_url) as deployment:
        _migrate(deployment)
        app = make_app(deployment.app_url)
        _join_check(app)
        with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):
            documents = [
                validate.resource(
                    USER_RESOURCE, user_payload(userName=f"u{n}@example.com")
                ).document
                for n in range(5_000)
            ]
            start = datetime(2026, 1, 1, tzinfo=UTC)
            created = [start + timedelta(seconds=n) for n in range(5_000)]
            users.insert_many(USER_RESOURCE, documents, created)
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        owner = create_engine(deployment.owner_url)
        with owner.begin() as connection:
            connection.execute(text("ANALYZE users"))
        owner.dispose()
        unpoliced = _plan(admin_url, "*", offset)
        as_service = _plan(deployment.app_url, str(tenancy.DEFAULT_TENANT_ID), offset)
    assert as_service == unpoliced
    if offset < 4_900:
        assert "ix_users_created_at_id" in as_service and "Sort" not in as_service, as_service
