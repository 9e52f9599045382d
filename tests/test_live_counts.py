"""An unfiltered list's totalResults is read from counters the database's own triggers keep
(models.LiveCount, migration 0013): exact after every kind of write, on SQLite, PostgreSQL, and
PostgreSQL as deployed (the service's role, bound by row-level security)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app import tenancy
from app.db import db
from app.models import Group, LiveCount, User
from app.store import groups as groups_store
from app.store import locked
from app.store import users as users_store
from tests.conftest import empty_tables, statements
from tests.payloads import BASE, GROUP_URN, user_payload
from tests.test_tenants_cli import backdate_deletion, ok, tenant_id


@pytest.fixture(scope="module")
def app(app_as_deployed: Flask) -> Flask:
    """SQLite, PostgreSQL, and PostgreSQL as deployed: the triggers write the counters as the
    service's role, under row-level security (tests/conftest.py)."""
    return app_as_deployed


def totals(client: FlaskClient) -> tuple[int, int]:
    """totalResults of an unfiltered /Users and /Groups page: what the counters say."""
    answers = []
    for resource in ("Users", "Groups"):
        response = client.get(f"{BASE}/{resource}", query_string={"count": 1})
        assert response.status_code == 200, response.json
        answers.append(response.json["totalResults"])
    db.session.remove()
    return answers[0], answers[1]


def counted(tenant: int) -> tuple[int, int]:
    """The live users and groups of a tenant, counted row by row (count(*), as lists did)."""
    db.session.remove()
    with tenancy.entered(tenant):
        users, groups = (
            db.session.scalar(
                select(func.count()).select_from(model).where(model.deleted_at.is_(None))
            )
            for model in (User, Group)
        )
    db.session.remove()
    return users, groups


def counters(tenant: int) -> dict[str, int]:
    """The tenant's counter rows summed per resource type, read across tenants."""
    db.session.remove()
    with tenancy.across_tenants():
        rows = db.session.execute(
            select(LiveCount.resource_type, func.sum(LiveCount.live))
            .where(LiveCount.tenant_id == tenant)
            .group_by(LiveCount.resource_type)
        ).all()
    db.session.remove()
    return {kind: int(total) for kind, total in rows if total}


def post_user(client: FlaskClient, name: str) -> dict[str, Any]:
    response = client.post(f"{BASE}/Users", json=user_payload(userName=name))
    assert response.status_code == 201, response.json
    return response.json


def post_group(client: FlaskClient, name: str, *members: dict[str, Any]) -> dict[str, Any]:
    body = {
        "schemas": [GROUP_URN],
        "displayName": name,
        "members": [{"value": m["id"]} for m in members],
    }
    response = client.post(f"{BASE}/Groups", json=body)
    assert response.status_code == 201, response.json
    return response.json


def delete(client: FlaskClient, resource: dict[str, Any]) -> None:
    response = client.delete(f"{BASE}/{resource['meta']['resourceType']}s/{resource['id']}")
    assert response.status_code == 204


def test_creates_and_deletes_count_live_users_and_groups_only(client):
    assert totals(client) == (0, 0)
    ada, grace, alan = (post_user(client, f"{n}@example.com") for n in ("ada", "grace", "alan"))
    eng = post_group(client, "Engineering", ada, grace)
    ops = post_group(client, "Ops", eng)
    assert totals(client) == (3, 2)
    delete(client, grace)
    delete(client, ops)
    assert totals(client) == (2, 1) == counted(tenancy.DEFAULT_TENANT_ID)
    # A second DELETE of a tombstone is 404 and changes nothing; so do updates of live rows.
    assert client.delete(f"{BASE}/Users/{grace['id']}").status_code == 404
    renamed = {"schemas": [GROUP_URN], "displayName": "R&D", "members": []}
    assert client.put(f"{BASE}/Groups/{eng['id']}", json=renamed).status_code == 200
    assert (
        client.put(
            f"{BASE}/Users/{alan['id']}", json=user_payload(userName="a@x.example")
        ).status_code
        == 200
    )
    # The name of a tombstone may be taken again: a new live user.
    post_user(client, "grace@example.com")
    assert totals(client) == (3, 1) == counted(tenancy.DEFAULT_TENANT_ID)
    assert counters(tenancy.DEFAULT_TENANT_ID) == {"User": 3, "Group": 1}


def test_a_filtered_list_still_counts_its_matches(client):
    for n in range(3):
        post_user(client, f"user{n}@example.com")
    with statements() as seen:
        response = client.get(
            f"{BASE}/Users", query_string={"filter": 'userName sw "user"', "count": 1}
        )
    assert response.json["totalResults"] == 3
    assert not any("live_counts" in s for s in seen)


def test_purging_tombstones_leaves_the_count_and_purging_a_tenant_removes_its_counters(
    app, client, tenant_client
):
    acme = tenant_client("acme")
    ada = post_user(acme, "ada@acme.example")
    gone = post_user(acme, "gone@acme.example")
    post_group(acme, "Acme staff", ada, gone)
    delete(acme, gone)
    post_user(client, "ada@example.com")
    acme_id = tenant_id("acme")
    assert totals(acme) == (1, 1) and totals(client) == (1, 0)

    ok(app, "purge", "--tombstones-older-than", "0")
    assert totals(acme) == (1, 1) == counted(acme_id)
    assert totals(client) == (1, 0)

    ok(app, "tenants", "delete", "acme")
    assert counters(acme_id) == {"User": 1, "Group": 1}  # a deleted tenant's data is kept...
    backdate_deletion("acme", 31)
    ok(app, "purge")
    db.session.remove()
    with tenancy.across_tenants():
        left = db.session.scalar(
            select(func.count()).select_from(LiveCount).where(LiveCount.tenant_id == acme_id)
        )
    db.session.remove()
    assert left == 0  # ...until it is purged, its counter rows with it
    assert totals(client) == (1, 0) == counted(tenancy.DEFAULT_TENANT_ID)


def test_two_tenants_each_count_their_own(client, tenant_client):
    acme = tenant_client("acme")
    for n in range(3):
        post_user(acme, f"u{n}@acme.example")
    post_user(client, "ada@example.com")
    post_group(acme, "Acme")
    assert totals(acme) == (3, 1)
    assert totals(client) == (1, 0)


@pytest.mark.parametrize("write", ["create user", "delete user", "create group", "delete group"])
def test_a_write_rolled_back_after_its_rows_changed_leaves_the_count(
    app, client, monkeypatch, write
):
    """The row was inserted or tombstoned (the triggers ran), then the transaction failed: the
    counters go back with it."""
    ada = post_user(client, "ada@example.com")
    eng = post_group(client, "Engineering", ada)
    before = totals(client)

    def fail_after_flush(session: Any) -> None:
        session.flush()  # the INSERT or UPDATE ran, and the triggers with it
        raise RuntimeError("the commit failed")

    kind, resource = write.split()
    for store in (users_store, groups_store, locked):  # creates commit in the first two
        monkeypatch.setattr(store, "commit", fail_after_flush)
    with pytest.raises(RuntimeError, match="the commit failed"):
        if kind == "create" and resource == "user":
            client.post(f"{BASE}/Users", json=user_payload(userName="new@example.com"))
        elif kind == "create":
            client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "New"})
        else:
            target = ada if resource == "user" else eng
            client.delete(f"{BASE}/{target['meta']['resourceType']}s/{target['id']}")
    monkeypatch.undo()
    db.session.remove()
    assert totals(client) == before == counted(tenancy.DEFAULT_TENANT_ID)


def test_concurrent_creates_in_one_tenant_are_each_counted(app, client):
    threads, each = 6, 8
    failures: list[Any] = []

    def create(n: int) -> None:
        worker = app.test_client()
        worker.environ_base["HTTP_AUTHORIZATION"] = client.environ_base["HTTP_AUTHORIZATION"]
        for i in range(each):
            response = worker.post(
                f"{BASE}/Users", json=user_payload(userName=f"t{n}-{i}@x.example")
            )
            if response.status_code != 201:
                failures.append(response.json)
            body = {"schemas": [GROUP_URN], "displayName": f"g{n}-{i}"}
            if (response := worker.post(f"{BASE}/Groups", json=body)).status_code != 201:
                failures.append(response.json)

    running = [threading.Thread(target=create, args=(n,)) for n in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    assert failures == []
    assert totals(client) == (threads * each, threads * each)
    assert counted(tenancy.DEFAULT_TENANT_ID) == (threads * each, threads * each)


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["default", "acme"]),
        st.sampled_from(["create user", "delete user", "create group", "delete group", "purge"]),
        st.integers(min_value=0, max_value=50),
    ),
    max_size=25,
)


@pytest.fixture
def two_clients(
    client: FlaskClient, tenant_client: Callable[[str], FlaskClient]
) -> Iterator[Callable[[], dict[str, FlaskClient]]]:
    def fresh() -> dict[str, FlaskClient]:
        empty_tables()
        return {"default": client, "acme": tenant_client("acme")}

    yield fresh


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
def test_random_writes_keep_the_counters_equal_to_counting_the_rows(app, two_clients, operations):
    clients = two_clients()
    live: dict[str, dict[str, list[dict[str, Any]]]] = {
        t: {"user": [], "group": []} for t in clients
    }
    for n, (tenant, operation, pick) in enumerate(operations):
        client = clients[tenant]
        if operation == "purge":
            ok(app, "purge", "--tombstones-older-than", "0")
            continue
        kind, resource = operation.split()
        resources = live[tenant][resource]
        if kind == "create":
            create = post_user if resource == "user" else post_group
            resources.append(create(client, f"r{n}@example.com"))
        elif resources:
            delete(client, resources.pop(pick % len(resources)))
    for tenant, client in clients.items():
        expected = (len(live[tenant]["user"]), len(live[tenant]["group"]))
        tenant_id = tenancy.DEFAULT_TENANT_ID if tenant == "default" else _acme_id()
        assert totals(client) == expected == counted(tenant_id)


def _acme_id() -> int:
    return tenant_id("acme")
