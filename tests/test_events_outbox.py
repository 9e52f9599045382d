"""The events outbox (RFC 9967, issue 17): every committed change writes its event rows, and a
delivery row per subscribed receiver, in its own transaction; nothing else writes any."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app import store, tenancy
from app.db import db, utcnow
from app.models import AuditEvent, Event, EventDelivery, EventReceiver
from app.store import audit
from app.store import events as events_store
from tests.conftest import BASE, statements
from tests.payloads import ENTERPRISE_URN, GROUP_URN, patch_payload, user_payload


def add_receiver(name: str = "app", **columns: Any) -> EventReceiver:
    receiver = EventReceiver(
        name=name,
        delivery=columns.pop("delivery", "push"),
        url=columns.pop("url", "https://app.example/events"),
        events=columns.pop("events", list(events_store.EVENT_NAMES)),
        full=columns.pop("full", False),
        enabled=columns.pop("enabled", True),
        audience=columns.pop("audience", "https://app.example"),
        alg="ES256",
        **columns,
    )
    db.session.add(receiver)
    db.session.commit()
    return receiver


@pytest.fixture
def receiver(client) -> EventReceiver:
    return add_receiver()


def events(tenant_id: int = tenancy.DEFAULT_TENANT_ID) -> list[dict[str, Any]]:
    """The tenant's event rows as plain data, oldest first (volatile columns left out)."""
    db.session.remove()
    with tenancy.entered(tenant_id):
        return [
            {
                "type": e.resource_type,
                "id": e.resource_id,
                "operation": e.operation,
                "activation": e.activation,
                "attributes": e.attributes,
                "externalId": e.external_id,
                "version": e.version,
            }
            for e in events_store.since()
        ]


def post_user(client, **overrides: Any) -> dict[str, Any]:
    response = client.post(f"{BASE}/Users", json=user_payload(**overrides))
    assert response.status_code == 201, response.json
    return response.json


def version(resource: dict[str, Any]) -> int:
    return int(resource["meta"]["version"].split('"')[1].split("-")[-1])


def deliveries(tenant_id: int = tenancy.DEFAULT_TENANT_ID) -> list[tuple[str, str, str]]:
    """The tenant's delivery rows: (receiver id, state, resource id), in event order."""
    db.session.remove()
    with tenancy.entered(tenant_id):
        rows = db.session.query(EventDelivery).order_by(EventDelivery.event_id).all()
        return [(r.receiver_id, r.state, r.resource_id) for r in rows]


def test_without_a_receiver_events_are_written_without_deliveries(client):
    user = post_user(client)
    assert [(e["id"], e["operation"]) for e in events()] == [(user["id"], "create")]
    assert deliveries() == []
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        (event,) = events_store.since()
        assert event.data is None  # no `:full` receiver: the resource is not stored


def test_scim_events_off_writes_no_event_and_no_txn(app, client, receiver, monkeypatch):
    monkeypatch.setitem(app.config, "SCIM_EVENTS", False)
    user = post_user(client)
    assert events() == []
    assert deliveries() == []
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        (row,) = db.session.query(AuditEvent).all()
    assert (row.resource_id, row.txn) == (user["id"], None)


def test_user_create_is_a_create_and_an_activation(client, receiver):
    user = post_user(client, userName="ada@example.com", externalId="ada")
    assert events() == [
        {
            "type": "User",
            "id": user["id"],
            "operation": "create",
            "activation": "activate",
            "attributes": [
                "id",
                "externalId",
                "userName",
                "name",
                "displayName",
                "locale",
                "active",
                "emails",
            ],
            "externalId": "ada",
            "version": 1,
        }
    ]


def test_an_inactive_user_created_is_not_activated(client, receiver):
    post_user(client, active=False)
    assert [e["activation"] for e in events()] == [None]


def test_patch_lists_the_changed_paths_and_deactivation(client, receiver):
    user = post_user(client)
    response = client.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload(
            {"op": "replace", "path": "active", "value": False},
            {"op": "replace", "path": "name.familyName", "value": "Byron"},
            {"op": "add", "path": f"{ENTERPRISE_URN}:department", "value": "Maths"},
        ),
    )
    assert response.status_code == 200
    last = events()[-1]
    assert last == {
        "type": "User",
        "id": user["id"],
        "operation": "patch",
        "activation": "deactivate",
        "attributes": ["name.familyName", "active", f"{ENTERPRISE_URN}:department"],
        "externalId": user.get("externalId"),
        "version": version(response.json),
    }


def test_reactivation_and_put(client, receiver):
    user = post_user(client, active=False)
    body = user_payload(active=True, title="Engineer")
    response = client.put(f"{BASE}/Users/{user['id']}", json=body)
    assert response.status_code == 200
    last = events()[-1]
    assert (last["operation"], last["activation"], last["attributes"]) == (
        "put",
        "activate",
        ["title", "active"],
    )


def test_a_password_change_names_the_password_never_its_value(client, receiver):
    user = post_user(client)
    client.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload({"op": "replace", "path": "password", "value": "s3cret-Pass!"}),
    )
    assert events()[-1]["attributes"] == ["password"]


def test_a_write_that_changes_nothing_writes_no_event(client, receiver):
    user = post_user(client, active=True)
    client.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload({"op": "replace", "path": "active", "value": True}),
    )
    assert len(events()) == 1


def test_delete_user_is_a_delete_and_a_members_patch_of_its_groups_in_one_txn(client, receiver):
    user = post_user(client, externalId="ada")
    group = client.post(
        f"{BASE}/Groups",
        json={"schemas": [GROUP_URN], "displayName": "Eng", "members": [{"value": user["id"]}]},
    ).json
    assert client.delete(f"{BASE}/Users/{user['id']}").status_code == 204
    fetched = client.get(f"{BASE}/Groups/{group['id']}").json
    delete, patch = events()[-2:]
    assert {(e["type"], e["operation"], tuple(e["attributes"])) for e in (delete, patch)} == {
        ("User", "delete", ()),
        ("Group", "patch", ("members",)),
    }
    assert patch["version"] == version(fetched)
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        rows = [e for e in events_store.since() if e.operation in ("delete", "patch")]
    assert len({e.txn for e in rows}) == 1


def test_group_events(client, receiver):
    user = post_user(client)
    group = client.post(
        f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Eng", "externalId": "e"}
    ).json
    gid = group["id"]
    client.patch(
        f"{BASE}/Groups/{gid}",
        json=patch_payload({"op": "add", "path": "members", "value": [{"value": user["id"]}]}),
    )
    client.patch(
        f"{BASE}/Groups/{gid}",
        json=patch_payload({"op": "replace", "path": "displayName", "value": "Engineering"}),
    )
    # An existing member added again changes nothing.
    client.patch(
        f"{BASE}/Groups/{gid}",
        json=patch_payload({"op": "add", "path": "members", "value": [{"value": user["id"]}]}),
    )
    client.put(
        f"{BASE}/Groups/{gid}",
        json={"schemas": [GROUP_URN], "displayName": "Engineering", "externalId": "e"},
    )
    client.delete(f"{BASE}/Groups/{gid}")
    assert [(e["operation"], e["attributes"]) for e in events() if e["type"] == "Group"] == [
        ("create", ["id", "externalId", "displayName"]),
        ("patch", ["members"]),
        ("patch", ["displayName"]),
        ("put", ["members"]),
        ("delete", []),
    ]


def test_the_audit_row_holds_the_txn_and_request_id_of_the_events(client, receiver):
    response = client.post(f"{BASE}/Users", json=user_payload())
    request_id = response.headers["X-Request-Id"]
    db.session.remove()
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        (row,) = [r for r in audit.recent() if r.request_id == request_id]
        (event,) = events_store.with_txn(row.txn)
    assert (event.request_id, event.resource_id) == (request_id, response.json["id"])


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(("post", "/Users", user_payload(userName="taken@example.com")), id="409"),
        pytest.param(("post", "/Users", {"schemas": ["x"]}), id="400"),
        pytest.param(
            ("patch", "/Users/{id}", patch_payload({"op": "replace", "path": "nope", "value": 1})),
            id="400-patch",
        ),
        pytest.param(
            ("put", "/Users/{id}", user_payload(userName="taken@example.com", active=False)),
            id="put-409",
        ),
        pytest.param(("delete-if-match", "/Users/{id}", None), id="412"),
    ],
)
def test_a_refused_request_writes_no_event(client, receiver, request_):
    post_user(client, userName="taken@example.com")
    user = post_user(client, userName="other@example.com")
    before = events()
    method, path, body = request_
    path = BASE + path.format(id=user["id"])
    if method == "delete-if-match":
        response = client.delete(path, headers={"If-Match": 'W/"nope"'})
    else:
        response = client.open(path, method=method.upper(), json=body)
    assert response.status_code in (400, 409, 412)
    assert events() == before
    with tenancy.across_tenants():
        assert db.session.query(EventDelivery).count() == len(before)


def test_a_group_conflict_writes_no_event(client, receiver):
    client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Eng"})
    before = events()
    response = client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "ENG"})
    assert response.status_code == 409
    assert events() == before


def test_deliveries_go_to_enabled_subscribed_receivers_only(client):
    everything = add_receiver("everything")
    deactivations = add_receiver("deactivations", events=["deactivate"])
    add_receiver("off", enabled=False)
    user = post_user(client)
    client.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload({"op": "replace", "path": "active", "value": False}),
    )
    assert sorted(deliveries()) == sorted(
        [
            (everything.id, "pending", user["id"]),
            (everything.id, "pending", user["id"]),
            (deactivations.id, "pending", user["id"]),
        ]
    )


def test_a_tenant_without_an_enabled_receiver_runs_no_fan_out(client):
    add_receiver("off", enabled=False)
    with statements() as seen:
        user = post_user(client)
    assert deliveries() == []
    fan_outs = [s for s in seen if "INSERT INTO event_deliveries" in s]
    # SQLite: the events' INSERT returned that no receiver listens, so the deliveries' INSERT
    # did not run. PostgreSQL writes events and deliveries in one statement whatever.
    assert len(fan_outs) == (0 if db.engine.dialect.name == "sqlite" else 1)
    on = add_receiver("on")  # from now on, the tenant's writes are fanned out
    client.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload({"op": "replace", "path": "active", "value": False}),
    )
    assert deliveries() == [(on.id, "pending", user["id"])]


def test_a_bulk_of_creates_in_a_tenant_without_an_enabled_receiver_runs_no_fan_out(client):
    # Consecutive creates of a Bulk write their events together, under a txn each.
    def create_two(prefix: str) -> list[str]:
        operations = [
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": f"{prefix}{n}",
                "data": user_payload(userName=f"{prefix}{n}@example.com", externalId=None),
            }
            for n in range(2)
        ]
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": operations,
        }
        response = client.post(f"{BASE}/Bulk", json=body)
        assert [o["status"] for o in response.json["Operations"]] == ["201", "201"]
        return [o["location"].rsplit("/", 1)[1] for o in response.json["Operations"]]

    add_receiver("off", enabled=False)
    with statements() as seen:
        create_two("quiet")
    assert deliveries() == []
    fan_outs = [s for s in seen if "INSERT INTO event_deliveries" in s]
    assert len(fan_outs) == (0 if db.engine.dialect.name == "sqlite" else 1)
    on = add_receiver("on")
    ids = create_two("heard")
    assert deliveries() == [(on.id, "pending", user_id) for user_id in ids]


def test_full_receivers_get_the_resource_as_committed(client):
    add_receiver(full=True)
    user = post_user(client)
    group = client.post(
        f"{BASE}/Groups",
        json={"schemas": [GROUP_URN], "displayName": "Eng", "members": [{"value": user["id"]}]},
    ).json
    db.session.remove()
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        user_event, group_event = events_store.since()
    expected_user = {**user, "meta": {**user["meta"], "location": f"/Users/{user['id']}"}}
    assert user_event.data == expected_user
    assert group_event.data["members"] == [
        {
            "value": user["id"],
            "$ref": f"/Users/{user['id']}",
            "display": user["displayName"],
            "type": "User",
        }
    ]
    assert group_event.data["meta"]["version"] == group["meta"]["version"]


@pytest.mark.parametrize(
    "columns",
    [
        pytest.param({"events": ["delete"]}, id="not-subscribed"),
        pytest.param({"enabled": False}, id="disabled"),
    ],
)
def test_no_resource_is_stored_when_no_full_receiver_is_owed_the_event(client, receiver, columns):
    add_receiver("replica", full=True, **columns)
    post_user(client)
    db.session.remove()
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        (event,) = events_store.since()
        assert event.data is None
    assert [receiver_id for receiver_id, _, _ in deliveries()] == [receiver.id]


def test_events_are_the_tenants_own(client, tenant_client, receiver):
    other = tenant_client("acme")
    theirs = post_user(other, userName="ada@example.com")  # acme has no receiver yet
    mine = post_user(client, userName="ada@example.com")
    with tenancy.across_tenants():
        tenant_id = next(
            r.tenant_id for r in db.session.query(AuditEvent) if r.resource_id == theirs["id"]
        )
        assert sorted((e.tenant_id, e.resource_id) for e in events_store.since()) == sorted(
            [(tenancy.DEFAULT_TENANT_ID, mine["id"]), (tenant_id, theirs["id"])]
        )
    acme = db.session.query(EventReceiver).count()  # the default tenant's one, scoped
    assert acme == 1
    with tenancy.entered(tenant_id):
        acme_app = add_receiver("acme-app")
    other.patch(
        f"{BASE}/Users/{theirs['id']}",
        json=patch_payload({"op": "replace", "path": "active", "value": False}),
    )
    assert [e["id"] for e in events(tenant_id)] == [theirs["id"], theirs["id"]]
    assert [e["id"] for e in events()] == [mine["id"]]
    # Each receiver is owed its own tenant's events only, from when it was added.
    assert deliveries(tenant_id) == [(acme_app.id, "pending", theirs["id"])]
    assert deliveries() == [(receiver.id, "pending", mine["id"])]


def test_audit_rows_without_a_change_have_no_txn(client, receiver):
    client.post(f"{BASE}/Users", json={"schemas": ["x"]}).close()
    db.session.remove()
    with tenancy.across_tenants():
        rows = db.session.query(AuditEvent).all()
    assert [r.txn for r in rows] == [None]


# ---------------------------------------------------------------------------------------------
# Retention: `flask purge` deletes old events no receiver waits for (SCIM_EVENTS_RETENTION_DAYS)


def purge(app, *args: str) -> str:
    """`flask purge ARGS` as an operator runs it (no tenant entered); its change events line."""
    db.session.remove()
    with tenancy.entered(None):
        result = app.test_cli_runner().invoke(args=["purge", *args])
    db.session.remove()
    assert result.exit_code == 0, (result.output, result.exception)
    return next(line for line in result.output.splitlines() if "change events" in line.lower())


def backdate_and_settle(tenant_id: int, resource_id: str, days: int, state: str | None) -> None:
    """Make a resource's events `days` old and set its deliveries' state (None: leave them)."""
    db.session.remove()
    with tenancy.entered(tenant_id):
        ids = [e.id for e in events_store.for_resource(resource_id)]
        db.session.execute(
            Event.__table__.update()
            .where(Event.tenant_id == tenant_id, Event.id.in_(ids))
            .values(at=utcnow() - timedelta(days=days))
        )
        if state is not None:
            db.session.execute(
                EventDelivery.__table__.update()
                .where(EventDelivery.tenant_id == tenant_id, EventDelivery.event_id.in_(ids))
                .values(state=state)
            )
        db.session.commit()
    db.session.remove()


def resource_ids(tenant_id: int) -> list[str]:
    return sorted({e["id"] for e in events(tenant_id)})


def test_purge_deletes_old_events_whose_deliveries_are_all_done(app, client, tenant_client):
    other = tenant_client("acme")
    add_receiver("app")
    add_receiver("audit-log", events=["create"])
    delivered = post_user(client, userName="delivered@example.com")
    dead = post_user(client, userName="dead@example.com")
    pending = post_user(client, userName="pending@example.com")
    recent = post_user(client, userName="recent@example.com")
    theirs = post_user(other, userName="theirs@example.com")  # acme: no receiver, no delivery
    with tenancy.across_tenants():
        acme = next(e.tenant_id for e in events_store.since() if e.resource_id == theirs["id"])
    default = tenancy.DEFAULT_TENANT_ID
    backdate_and_settle(default, delivered["id"], 31, "delivered")
    backdate_and_settle(default, dead["id"], 31, "dead")
    backdate_and_settle(default, pending["id"], 31, None)  # never purged while pending
    backdate_and_settle(default, recent["id"], 29, "delivered")
    backdate_and_settle(acme, theirs["id"], 31, None)

    # One tenant: acme's old event (owed to nobody) goes; the default tenant's stay.
    assert purge(app, "--tenant", "acme") == (
        "Purged 1 change events older than 30 days, none of them pending, with 0 deliveries."
    )
    assert resource_ids(acme) == []
    assert len(resource_ids(default)) == 4

    # Every tenant: the delivered and the dead go, with both receivers' deliveries of them.
    assert purge(app) == (
        "Purged 2 change events older than 30 days, none of them pending, with 4 deliveries."
    )
    assert resource_ids(default) == sorted([pending["id"], recent["id"]])
    assert sorted(state for _, state, _ in deliveries()) == sorted(
        ["pending", "pending", "delivered", "delivered"]
    )


def test_purge_with_events_retention_off_keeps_them(app, client, receiver, monkeypatch):
    user = post_user(client)
    backdate_and_settle(tenancy.DEFAULT_TENANT_ID, user["id"], 400, "delivered")
    monkeypatch.setitem(app.config, "SCIM_EVENTS_RETENTION_DAYS", 0)
    assert purge(app) == "Change events are kept (SCIM_EVENTS_RETENTION_DAYS=0)."
    assert resource_ids(tenancy.DEFAULT_TENANT_ID) == [user["id"]]


def test_a_change_of_more_events_than_one_insert_holds_writes_them_all(
    client, receiver, monkeypatch
):
    monkeypatch.setattr(store, "CHUNK", 2)  # SQLite: 4 events in two INSERTs
    user = post_user(client)
    groups = [
        client.post(
            f"{BASE}/Groups",
            json={
                "schemas": [GROUP_URN],
                "displayName": f"g{n}",
                "members": [{"value": user["id"]}],
            },
        ).json["id"]
        for n in range(3)
    ]
    before = len(events())
    assert client.delete(f"{BASE}/Users/{user['id']}").status_code == 204
    written = events()[before:]
    assert sorted((e["id"], e["operation"]) for e in written) == sorted(
        [(user["id"], "delete"), *((group, "patch") for group in groups)]
    )
    owed = [resource for _, _, resource in deliveries()]
    assert sorted(owed[-4:]) == sorted([user["id"], *groups])
    assert len(owed) == before + 4  # one delivery per event, none twice
