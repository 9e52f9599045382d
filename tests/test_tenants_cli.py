"""The operators' tenant commands (`flask tenants ...`), and `flask tokens`, `flask stats` and
`flask purge` per tenant and across tenants.

Every command runs inside `tenancy.entered(None)`: the suite's autouse `default_tenant` scope
must not be what makes it work, since a real `flask` process starts with none entered.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient

from app import tenancy
from app.config import ConfigError, load_config
from app.db import db, utcnow
from app.models import (
    AuditEvent,
    ConsoleAdmin,
    ConsoleSession,
    Group,
    GroupMember,
    LiveCount,
    MembershipChange,
    Tenant,
    Token,
    User,
    UserValue,
)
from tests.payloads import BASE, GROUP_URN, error, user_payload
from tests.test_row_level_security import deployment, service  # noqa: F401  (fixtures)

SUSPENDED = (
    "The tenant {!r} is suspended: its data is kept but no request is served until the "
    "service operator resumes it"
)
TENANT_ROWS = (User, UserValue, Group, GroupMember, MembershipChange, Token, AuditEvent, LiveCount)


def run(app: Flask, *args: str) -> Result:
    """`flask ARGS` as an operator's shell runs it: no tenant entered, a fresh session."""
    db.session.remove()
    with tenancy.entered(None):
        result = app.test_cli_runner().invoke(args=list(args))
    db.session.remove()
    return result


def ok(app: Flask, *args: str) -> str:
    result = run(app, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def fails(app: Flask, *args: str) -> str:
    """The output of a command that must end with one error line and status 1."""
    result = run(app, *args)
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # a ClickException, not a traceback
    assert "Traceback" not in result.output
    return result.output


def issued(output: str) -> str:
    """The token a create or rotate printed (the line after the announcement)."""
    lines = output.splitlines()
    return lines[lines.index(next(x for x in lines if x.startswith("Token "))) + 1]


def client_for(app: Flask, token: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def tenant_with_token(app: Flask, slug: str, token_name: str = "okta") -> FlaskClient:
    """A tenant made by `flask tenants create`, and a client holding its new token."""
    ok(app, "tenants", "create", slug)
    return client_for(app, issued(ok(app, "tokens", "create", token_name, "--tenant", slug)))


def get_users(client: FlaskClient) -> tuple[int, Any]:
    db.session.remove()
    response = client.get(f"{BASE}/Users")
    response.close()
    db.session.remove()
    return response.status_code, response.json


def user_names(client: FlaskClient) -> list[str]:
    status, body = get_users(client)
    assert status == 200, body
    return sorted(resource["userName"] for resource in body["Resources"])


def post_user(client: FlaskClient, user_name: str) -> dict[str, Any]:
    response = client.post(f"{BASE}/Users", json=user_payload(userName=user_name))
    response.close()  # closed: audited
    assert response.status_code == 201, response.json
    return response.json


def post_group(client: FlaskClient, name: str, *members: dict[str, Any]) -> dict[str, Any]:
    body = {
        "schemas": [GROUP_URN],
        "displayName": name,
        "members": [{"value": m["id"]} for m in members],
    }
    response = client.post(f"{BASE}/Groups", json=body)
    response.close()
    assert response.status_code == 201, response.json
    return response.json


def delete(client: FlaskClient, resource: dict[str, Any]) -> None:
    response = client.delete(f"{BASE}/{resource['meta']['resourceType']}s/{resource['id']}")
    response.close()
    assert response.status_code == 204


def tenant_id(slug: str) -> int:
    with tenancy.entered(None):
        found = db.session.scalars(db.select(Tenant.id).where(Tenant.slug == slug)).one()
    db.session.remove()
    return found


def rows_of(tenant: int) -> dict[str, int]:
    """How many rows of each tenant-owned table belong to this tenant (read across tenants)."""
    db.session.remove()
    with tenancy.across_tenants():
        counts = {
            model.__tablename__: db.session.scalar(
                db.select(db.func.count()).select_from(model).where(model.tenant_id == tenant)
            )
            for model in TENANT_ROWS
        }
    db.session.remove()
    return counts


def backdate_deletion(slug: str, days: int) -> None:
    with tenancy.entered(None):
        db.session.execute(
            db.update(Tenant)
            .where(Tenant.slug == slug)
            .values(deleted_at=utcnow() - timedelta(days=days))
        )
        db.session.commit()
    db.session.remove()


def table(output: str) -> list[list[str]]:
    """The cells of a printed table, split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line) for line in output.splitlines()]


# ---------------------------------------------------------------------------------------------
# flask tenants ...


def test_create_prints_the_tenant_and_the_next_step(app, client):
    assert ok(app, "tenants", "create", "acme", "--name", "Acme Corp") == (
        "Created tenant acme (Acme Corp), active.\n"
        "Next, a token for its IdP: flask tokens create NAME --tenant acme\n"
    )
    assert ok(app, "tenants", "create", "globex") == (
        "Created tenant globex (globex), active.\n"
        "Next, a token for its IdP: flask tokens create NAME --tenant globex\n"
    )


@pytest.mark.parametrize(
    "slug",
    [
        pytest.param("Acme", id="upper-case"),
        pytest.param("acme_corp", id="underscore"),
        pytest.param("-acme", id="leading-hyphen"),
        pytest.param("acme-", id="trailing-hyphen"),
        pytest.param("a" * 64, id="too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_create_refuses_an_invalid_slug_in_one_line(app, client, slug):
    assert fails(app, "tenants", "create", "--", slug) == (
        f"Error: {slug!r} is not a valid tenant slug: use 1-63 lower-case letters, digits and "
        "hyphens, starting and ending with a letter or digit\n"
    )


def test_create_refuses_a_slug_taken_even_by_a_deleted_tenant(app, client):
    ok(app, "tenants", "create", "acme")
    taken = "Error: a tenant with the slug 'acme' exists already\n"
    assert fails(app, "tenants", "create", "acme") == taken
    assert fails(app, "tenants", "create", "default") == taken.replace("acme", "default")
    ok(app, "tenants", "delete", "acme")
    assert fails(app, "tenants", "create", "acme") == taken


def test_list_shows_each_tenants_counts_and_last_request(app, client):
    acme = tenant_with_token(app, "acme")
    ok(app, "tokens", "create", "entra", "--tenant", "acme")
    ada = post_user(acme, "ada@example.com")
    post_user(acme, "grace@example.com")
    post_group(acme, "Engineering", ada)
    ok(app, "tenants", "create", "globex", "--name", "Globex Inc")
    ok(app, "tenants", "create", "gone")
    ok(app, "tokens", "create", "okta", "--tenant", "gone")
    ok(app, "tenants", "delete", "gone")  # its token, unrevoked, is no longer valid

    rows = table(ok(app, "tenants", "list"))
    assert rows[0] == ["SLUG", "NAME", "STATE", "USERS", "GROUPS", "TOKENS", "LAST REQUEST"]
    assert [row[:6] for row in rows[1:]] == [
        ["acme", "acme", "active", "2", "1", "2"],
        ["default", "Default", "active", "0", "0", "0"],
        ["globex", "Globex Inc", "active", "0", "0", "0"],
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", rows[1][6])  # acme's POSTs
    assert [row[6] for row in rows[2:]] == ["-", "-"]

    every = table(ok(app, "tenants", "list", "--all"))
    assert [row[:6] for row in every[1:]] == [
        ["acme", "acme", "active", "2", "1", "2"],
        ["default", "Default", "active", "0", "0", "0"],
        ["globex", "Globex Inc", "active", "0", "0", "0"],
        ["gone", "gone", "deleted", "0", "0", "0"],
    ]


def test_suspend_refuses_the_tenants_requests_with_403_and_resume_serves_them(app, client):
    acme = tenant_with_token(app, "acme")
    post_user(acme, "ada@example.com")
    assert ok(app, "tenants", "suspend", "acme") == (
        "Suspended tenant acme: its requests get 403 and its data is kept, until "
        "flask tenants resume acme\n"
    )
    assert get_users(acme) == (403, error(403, SUSPENDED.format("acme")))
    assert get_users(client)[0] == 200  # the default tenant is served as before
    assert table(ok(app, "tenants", "list"))[1][:3] == ["acme", "acme", "suspended"]

    assert ok(app, "tenants", "resume", "acme") == (
        "Resumed tenant acme: its tokens are accepted again.\n"
    )
    assert user_names(acme) == ["ada@example.com"]  # its data kept


def test_delete_stops_the_tenants_tokens_at_once_and_says_when_purge_removes_it(app, client):
    acme = tenant_with_token(app, "acme")
    assert get_users(acme)[0] == 200
    output = ok(app, "tenants", "delete", "acme")
    with tenancy.entered(None):
        deleted_at = db.session.scalars(db.select(Tenant.deleted_at)).all()
    db.session.remove()
    due = [at + timedelta(days=30) for at in deleted_at if at is not None]
    assert output == (
        "Deleted tenant acme: its tokens are refused from now on (401).\n"
        "`flask purge` removes its data once it has been deleted for 30 days "
        f"(SCIM_TENANT_RETENTION_DAYS): from {due[0]:%Y-%m-%d %H:%M} UTC.\n"
    )
    assert get_users(acme) == (401, error(401, "The bearer token is not valid"))
    assert [row[0] for row in table(ok(app, "tenants", "list"))[1:]] == ["default"]


def test_delete_with_retention_off_says_the_data_is_kept(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "SCIM_TENANT_RETENTION_DAYS", 0)
    ok(app, "tenants", "create", "acme")
    assert ok(app, "tenants", "delete", "acme") == (
        "Deleted tenant acme: its tokens are refused from now on (401).\n"
        "Its data is kept (SCIM_TENANT_RETENTION_DAYS=0): `flask purge` never removes it.\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("tenants", "suspend", "nobody"), id="suspend"),
        pytest.param(("tenants", "resume", "nobody"), id="resume"),
        pytest.param(("tenants", "delete", "nobody"), id="delete"),
        pytest.param(("tokens", "create", "okta", "--tenant", "nobody"), id="tokens-create"),
        pytest.param(("tokens", "list", "--tenant", "nobody"), id="tokens-list"),
        pytest.param(("tokens", "rotate", "okta", "--tenant", "nobody"), id="tokens-rotate"),
        pytest.param(("tokens", "revoke", "okta", "--tenant", "nobody"), id="tokens-revoke"),
        pytest.param(("stats", "--tenant", "nobody"), id="stats"),
        pytest.param(("purge", "--tenant", "nobody"), id="purge"),
    ],
)
def test_an_unknown_slug_is_one_error_line(app, client, args):
    assert fails(app, *args) == (
        "Error: no tenant has the slug 'nobody' (`flask tenants list` shows them)\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("tenants", "suspend", "gone"), id="suspend"),
        pytest.param(("tenants", "resume", "gone"), id="resume"),
        pytest.param(("tenants", "delete", "gone"), id="delete"),
        pytest.param(("stats", "--tenant", "gone"), id="stats"),
        pytest.param(("purge", "--tenant", "gone"), id="purge"),
    ],
)
def test_a_deleted_tenant_is_refused_by_the_tenant_commands(app, client, args):
    ok(app, "tenants", "create", "gone")
    ok(app, "tenants", "delete", "gone")
    assert fails(app, *args) == (
        "Error: the tenant 'gone' is deleted: it cannot be changed or used, and `flask purge` "
        "removes its data after SCIM_TENANT_RETENTION_DAYS\n"
    )


def test_the_default_tenant_cannot_be_deleted(app, client):
    assert fails(app, "tenants", "delete", "default") == (
        "Error: the default tenant cannot be deleted (suspend it instead)\n"
    )
    assert get_users(client)[0] == 200


# ---------------------------------------------------------------------------------------------
# flask tokens ... --tenant


def test_a_tenants_token_sees_only_that_tenants_users(app, client):
    acme = tenant_with_token(app, "acme")
    globex = tenant_with_token(app, "globex")
    post_user(acme, "ada@example.com")
    post_user(globex, "grace@example.com")
    post_user(globex, "ada@example.com")  # the same userName in another tenant
    post_user(client, "alan@example.com")  # the default tenant's
    assert user_names(acme) == ["ada@example.com"]
    assert user_names(globex) == ["ada@example.com", "grace@example.com"]
    assert user_names(client) == ["alan@example.com"]


def test_create_prints_the_token_as_before_and_names_the_tenant(app, client):
    default = ok(app, "tokens", "create", "okta")
    token = issued(default)
    assert default == (
        f"Token okta (shown only this once; give it to the IdP as its bearer token):\n{token}\n"
    )
    ok(app, "tenants", "create", "acme", "--name", "Acme Corp")
    output = ok(app, "tokens", "create", "okta", "--tenant", "acme")
    assert output == (
        "Token okta (shown only this once; give it to the IdP as its bearer token):\n"
        f"{issued(output)}\n"
        "It belongs to tenant acme (Acme Corp).\n"
    )
    db.session.remove()
    with tenancy.across_tenants():
        owners = db.session.execute(db.select(Token.name, Token.tenant_id)).all()
    assert sorted(owners) == [("okta", tenancy.DEFAULT_TENANT_ID), ("okta", tenant_id("acme"))]


def test_two_tenants_may_each_have_a_token_of_the_same_name(app, client):
    acme = tenant_with_token(app, "acme", "okta")
    globex = tenant_with_token(app, "globex", "okta")
    assert fails(app, "tokens", "create", "okta", "--tenant", "acme") == (
        "Error: a valid token is already named 'okta'\n"
    )
    assert [row[:2] for row in table(ok(app, "tokens", "list", "--tenant", "acme"))] == [
        ["NAME", "STATE"],
        ["okta", "current"],
    ]
    assert ok(app, "tokens", "revoke", "okta", "--tenant", "acme") == (
        "Revoked 1 token named okta in tenant acme.\n"
    )
    assert get_users(acme)[0] == 401
    assert get_users(globex)[0] == 200  # the other tenant's "okta" is untouched
    assert [row[:2] for row in table(ok(app, "tokens", "list", "--tenant", "globex"))] == [
        ["NAME", "STATE"],
        ["okta", "current"],
    ]


def test_list_shows_only_the_tenants_tokens(app, client):
    ok(app, "tokens", "create", "default-okta")
    ok(app, "tenants", "create", "acme")
    assert ok(app, "tokens", "list", "--tenant", "acme") == (
        "Tenant acme has no tokens: flask tokens create NAME --tenant acme\n"
    )
    ok(app, "tokens", "create", "entra", "--tenant", "acme")
    ok(app, "tokens", "create", "okta", "--tenant", "acme")
    acme = table(ok(app, "tokens", "list", "--tenant", "acme"))
    assert [row[0] for row in acme] == ["NAME", "entra", "okta"]
    assert [row[0] for row in table(ok(app, "tokens", "list"))] == ["NAME", "default-okta"]
    assert [row[0] for row in table(ok(app, "tokens", "list", "--tenant", "default"))] == [
        "NAME",
        "default-okta",
    ]


def test_rotate_and_revoke_act_on_the_named_tenants_token(app, client):
    ok(app, "tenants", "create", "acme")
    old = issued(ok(app, "tokens", "create", "okta", "--tenant", "acme"))
    default_okta = issued(ok(app, "tokens", "create", "okta"))
    rotated = ok(app, "tokens", "rotate", "okta", "--keep-old", "--tenant", "acme")
    new = issued(rotated)
    assert rotated.splitlines()[2:] == [
        "The old token stays valid until: flask tokens revoke okta --old --tenant acme",
        "It belongs to tenant acme (acme).",
    ]
    old_client, new_client = client_for(app, old), client_for(app, new)
    post_user(new_client, "ada@example.com")
    assert user_names(old_client) == user_names(new_client) == ["ada@example.com"]
    assert ok(app, "tokens", "revoke", "okta", "--old", "--tenant", "acme") == (
        "Revoked 1 token named okta in tenant acme.\n"
    )
    assert (get_users(old_client)[0], get_users(new_client)[0]) == (401, 200)
    assert get_users(client_for(app, default_okta)) == (
        200,
        get_users(client)[1],
    )  # the default tenant's okta: untouched, and sees the default tenant's (no) users
    assert fails(app, "tokens", "rotate", "nobody", "--tenant", "acme") == (
        "Error: no valid token is named 'nobody'\n"
    )
    assert fails(app, "tokens", "revoke", "okta", "--old", "--tenant", "acme") == (
        "Error: no replaced token is named 'okta'\n"
    )
    rotated = ok(app, "tokens", "rotate", "okta", "--tenant", "acme")
    assert rotated.splitlines()[2:] == [
        "The old token is revoked.",
        "It belongs to tenant acme (acme).",
    ]
    assert (get_users(new_client)[0], get_users(client_for(app, issued(rotated)))[0]) == (401, 200)


def test_a_suspended_tenant_gets_tokens_and_a_deleted_one_does_not(app, client):
    ok(app, "tenants", "create", "acme")
    ok(app, "tenants", "suspend", "acme")
    output = ok(app, "tokens", "create", "okta", "--tenant", "acme")
    assert output.splitlines()[2:] == [
        "It belongs to tenant acme (acme).",
        "The tenant acme is suspended: its requests get 403 until flask tenants resume acme",
    ]
    acme = client_for(app, issued(output))
    assert get_users(acme) == (403, error(403, SUSPENDED.format("acme")))
    ok(app, "tenants", "resume", "acme")
    assert get_users(acme)[0] == 200

    ok(app, "tenants", "delete", "acme")
    refused = (
        "Error: the tenant 'acme' is deleted: its tokens are refused and it gets no new ones\n"
    )
    assert fails(app, "tokens", "create", "entra", "--tenant", "acme") == refused
    assert fails(app, "tokens", "list", "--tenant", "acme") == refused
    assert fails(app, "tokens", "rotate", "okta", "--tenant", "acme") == refused
    assert get_users(acme)[0] == 401


# ---------------------------------------------------------------------------------------------
# flask stats


def stats_of(output: str) -> dict[str, int]:
    return {name: int(value) for name, value in (line.split(": ") for line in output.splitlines())}


def test_stats_per_tenant_and_in_total(app, client):
    acme = tenant_with_token(app, "acme")
    ada = post_user(acme, "ada@example.com")
    grace = post_user(acme, "grace@example.com")
    post_group(acme, "Engineering", ada, grace)
    delete(acme, grace)
    post_user(client, "alan@example.com")
    ok(app, "tenants", "create", "globex")
    ok(app, "tenants", "create", "gone")
    ok(app, "tenants", "delete", "gone")

    assert ok(app, "stats", "--tenant", "acme") == (
        "users_active: 1\nusers_inactive: 0\nusers_unassigned: 0\ngroups: 1\nmemberships: 1\n"
        "tombstoned_users: 1\ntombstoned_groups: 0\naudit_events: 4\n"
    )
    assert stats_of(ok(app, "stats", "--tenant", "default")) == {
        "users_active": 1,
        "users_inactive": 0,
        "users_unassigned": 0,
        "groups": 0,
        "memberships": 0,
        "tombstoned_users": 0,
        "tombstoned_groups": 0,
        "audit_events": 1,
    }
    assert stats_of(ok(app, "stats", "--tenant", "globex"))["audit_events"] == 0
    assert ok(app, "stats") == (
        "users_active: 2\nusers_inactive: 0\nusers_unassigned: 0\ngroups: 1\nmemberships: 1\n"
        "tombstoned_users: 1\ntombstoned_groups: 0\naudit_events: 5\n"
        "tenants: 3\ntombstoned_tenants: 1\n"
    )


# ---------------------------------------------------------------------------------------------
# flask purge


def populate(app: Flask, slug: str) -> dict[str, Any]:
    """A tenant with users, a group with members (membership changes), tokens, audit rows and
    a tombstoned user."""
    tenant = tenant_with_token(app, slug)
    ada = post_user(tenant, f"ada@{slug}.example")
    grace = post_user(tenant, f"grace@{slug}.example")
    gone = post_user(tenant, f"gone@{slug}.example")
    group = post_group(tenant, "Engineering", ada, grace)
    delete(tenant, gone)
    db.session.remove()
    return {"client": tenant, "id": tenant_id(slug), "group": group, "gone": gone}


def age(model: type[Any], tenant: int, days: int) -> None:
    """Make a tenant's audit events or membership changes look `days` old."""
    with tenancy.entered(tenant):
        db.session.execute(
            db.update(model).values(at=utcnow() - timedelta(days=days)),
            execution_options={"synchronize_session": False},
        )
        db.session.commit()
    db.session.remove()


def test_purge_removes_every_row_of_a_tenant_deleted_before_the_retention(app, client):
    acme = populate(app, "acme")
    globex = populate(app, "globex")
    recent = populate(app, "recent")
    default_user = post_user(client, "alan@example.com")
    refused = app.test_client().post(f"{BASE}/Users", json=user_payload())
    refused.close()  # audited with no tenant: no tenant's purge removes it
    assert refused.status_code == 401
    with tenancy.entered(None):
        # Console admins bound to a tenant go with it (with their sessions); global ones stay.
        for username, tenant in (
            ("acme-it", acme["id"]),
            ("globex-it", globex["id"]),
            ("ops", None),
        ):
            db.session.add(ConsoleAdmin(username=username, tenant_id=tenant, password_hash="-"))
            db.session.add(ConsoleSession(id_hash=f"session-of-{username}", username=username))
        db.session.commit()
    db.session.remove()
    assert all(rows_of(acme["id"]).values())  # something in every table
    globex_rows, recent_rows = rows_of(globex["id"]), rows_of(recent["id"])
    default_rows = rows_of(tenancy.DEFAULT_TENANT_ID)
    ok(app, "tenants", "delete", "acme")
    ok(app, "tenants", "delete", "recent")
    backdate_deletion("acme", 31)
    backdate_deletion("recent", 29)

    assert ok(app, "purge") == (
        "Purged 0 audit events older than 90 days.\n"
        "Purged 0 membership changes older than 90 days.\n"
        "Purged 0 change events older than 30 days, none of them pending, with 0 deliveries.\n"
        "Purged 1 deleted tenants older than 30 days: acme.\n"
    )
    assert rows_of(acme["id"]) == dict.fromkeys(rows_of(acme["id"]), 0)
    assert rows_of(globex["id"]) == globex_rows
    assert rows_of(recent["id"]) == recent_rows  # deleted 29 days ago: kept for now
    assert rows_of(tenancy.DEFAULT_TENANT_ID) == default_rows
    with tenancy.across_tenants():
        no_tenant = db.session.scalars(
            db.select(AuditEvent.status).where(AuditEvent.tenant_id.is_(None))
        ).all()
        admins = db.session.scalars(db.select(ConsoleAdmin.username)).all()
        sessions = db.session.scalars(db.select(ConsoleSession.username)).all()
    db.session.remove()
    assert no_tenant == [401]
    assert sorted(admins) == sorted(sessions) == ["globex-it", "ops"]
    slugs = [row[0] for row in table(ok(app, "tenants", "list", "--all"))[1:]]
    assert slugs == ["default", "globex", "recent"]
    assert user_names(globex["client"]) == ["ada@globex.example", "grace@globex.example"]
    assert user_names(client) == [default_user["userName"]]
    # The slug is free again.
    assert ok(app, "tenants", "create", "acme").startswith("Created tenant acme")


def test_the_retention_is_30_days_unless_set_and_0_keeps_deleted_tenants():
    assert load_config({})["SCIM_TENANT_RETENTION_DAYS"] == 30
    assert load_config({"SCIM_TENANT_RETENTION_DAYS": "0"})["SCIM_TENANT_RETENTION_DAYS"] == 0
    assert load_config({"SCIM_TENANT_RETENTION_DAYS": "365"})["SCIM_TENANT_RETENTION_DAYS"] == 365
    with pytest.raises(
        ConfigError, match=r"^SCIM_TENANT_RETENTION_DAYS must be at least 0, got -1$"
    ):
        load_config({"SCIM_TENANT_RETENTION_DAYS": "-1"})


def test_purge_keeps_deleted_tenants_when_retention_is_off(app, client, monkeypatch):
    acme = populate(app, "acme")
    before = rows_of(acme["id"])
    ok(app, "tenants", "delete", "acme")
    backdate_deletion("acme", 3650)
    monkeypatch.setitem(app.config, "SCIM_TENANT_RETENTION_DAYS", 0)
    assert ok(app, "purge") == (
        "Purged 0 audit events older than 90 days.\n"
        "Purged 0 membership changes older than 90 days.\n"
        "Purged 0 change events older than 30 days, none of them pending, with 0 deliveries.\n"
        "Deleted tenants are kept (SCIM_TENANT_RETENTION_DAYS=0).\n"
    )
    assert rows_of(acme["id"]) == before


def test_purge_of_one_tenant_leaves_the_others_rows(app, client):
    acme = populate(app, "acme")
    globex = populate(app, "globex")
    for tenant in (acme, globex):
        with tenancy.entered(tenant["id"]):
            db.session.execute(
                db.update(User)
                .where(User.id == tenant["gone"]["id"])
                .values(deleted_at=utcnow() - timedelta(days=40)),
                execution_options={"synchronize_session": False},
            )
            db.session.commit()
        db.session.remove()
        age(AuditEvent, tenant["id"], 10)
        age(MembershipChange, tenant["id"], 10)
    globex_before = rows_of(globex["id"])

    assert ok(
        app, "purge", "--tenant", "acme", "--tombstones-older-than", "30", "--audit-older-than", "7"
    ) == (
        "Tenant acme:\n"
        "Purged 1 deleted users and 0 deleted groups older than 30 days.\n"
        "Purged 5 audit events older than 7 days.\n"
        "Purged 2 membership changes older than 7 days.\n"
        "Purged 0 change events older than 30 days, none of them pending, with 0 deliveries.\n"
    )
    after = rows_of(acme["id"])
    assert (after["users"], after["audit_events"], after["membership_changes"]) == (2, 0, 0)
    assert after["group_members"] == 2 and after["tokens"] == 1
    assert rows_of(globex["id"]) == globex_before
    assert user_names(acme["client"]) == ["ada@acme.example", "grace@acme.example"]

    # Across every tenant: globex's turn (acme has nothing older left).
    assert ok(app, "purge", "--tombstones-older-than", "30", "--audit-older-than", "7") == (
        "Purged 1 deleted users and 0 deleted groups older than 30 days.\n"
        "Purged 5 audit events older than 7 days.\n"
        "Purged 2 membership changes older than 7 days.\n"
        "Purged 0 change events older than 30 days, none of them pending, with 0 deliveries.\n"
        "Purged 0 deleted tenants older than 30 days.\n"
    )
    assert rows_of(globex["id"])["audit_events"] == 0


def test_purge_takes_membership_changes_with_the_audit_retention(app, client):
    acme = populate(app, "acme")
    age(MembershipChange, acme["id"], 100)
    assert acme["client"].patch(
        f"{BASE}/Groups/{acme['group']['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": "members"}],
        },
    ).status_code in (200, 204)
    assert rows_of(acme["id"])["membership_changes"] == 4
    output = ok(app, "purge", "--tenant", "acme")
    assert output == (
        "Tenant acme:\n"
        "Purged 0 audit events older than 90 days.\n"
        "Purged 2 membership changes older than 90 days.\n"
        "Purged 0 change events older than 30 days, none of them pending, with 0 deliveries.\n"
    )
    assert rows_of(acme["id"])["membership_changes"] == 2  # the recent removals stay


# ---------------------------------------------------------------------------------------------
# As production runs it: PostgreSQL's row-level security on, the service's role not the owner.


def test_the_commands_work_under_row_level_security(service: Flask) -> None:  # noqa: F811
    """Each transaction's `scim.tenant` is set when it begins: a command that looked its tenant
    up in a transaction of no tenant, and wrote in it, would be refused by the policies."""
    with service.app_context():
        assert ok(service, "tenants", "create", "acme").startswith("Created tenant acme")
        acme = client_for(
            service, issued(ok(service, "tokens", "create", "okta", "--tenant", "acme"))
        )
        other = client_for(service, issued(ok(service, "tokens", "create", "okta")))
        post_user(acme, "ada@example.com")
        post_user(other, "grace@example.com")
        assert user_names(acme) == ["ada@example.com"]
        assert [row[0] for row in table(ok(service, "tokens", "list", "--tenant", "acme"))] == [
            "NAME",
            "okta",
        ]
        assert stats_of(ok(service, "stats", "--tenant", "acme"))["users_active"] == 1
        totals = stats_of(ok(service, "stats"))
        assert (totals["users_active"], totals["tenants"]) == (2, 2)
        listed = table(ok(service, "tenants", "list"))
        assert [row[:4] for row in listed[1:]] == [
            ["acme", "acme", "active", "1"],
            ["default", "Default", "active", "1"],
        ]
        ok(service, "tokens", "rotate", "okta", "--tenant", "acme")
        assert get_users(acme)[0] == 401
        ok(service, "tenants", "delete", "acme")
        backdate_deletion("acme", 31)
        assert ok(service, "purge", "--audit-older-than", "1").endswith(
            "Purged 1 deleted tenants older than 30 days: acme.\n"
        )
        assert rows_of(tenant_id("default"))["users"] == 1
        assert stats_of(ok(service, "stats"))["tenants"] == 1
        assert user_names(other) == ["grace@example.com"]
