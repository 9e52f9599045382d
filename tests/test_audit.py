"""The audit trail: a JSON line on stdout and a row in audit_events for every change requested."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from app import tenancy
from app.db import db
from app.models import AuditEvent
from app.store import audit
from tests.conftest import BASE, OTHER_TOKEN, statements
from tests.payloads import GROUP_URN, patch_payload, user_payload

SECRET = "correct horse battery staple"


def send(client, method: str, path: str, **kwargs):
    """One request, closed as a WSGI server closes it: that is when the row of a refused or
    failed request is written (a granted change's commits with the change)."""
    response = client.open(path, method=method, **kwargs)
    response.close()
    return response


def audit_lines(capsys) -> list[dict]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if '"type": "audit"' in line]


def rows() -> list[AuditEvent]:
    """Every tenant's audit rows, and those of requests no token identified."""
    db.session.remove()
    with tenancy.across_tenants():
        return audit.recent(limit=1000)


def test_create_is_one_line_and_one_row_with_the_new_id_and_attribute_names(client, capsys):
    capsys.readouterr()
    body = user_payload(password=SECRET)
    response = send(
        client, "POST", f"{BASE}/Users", json=body, headers={"X-Request-ID": "okta-create-1"}
    )
    assert response.status_code == 201
    (line,) = audit_lines(capsys)
    new_id = response.json["id"]
    duration = line.pop("duration_ms")
    assert 0 <= duration < 5000
    assert line.pop("time").endswith("Z")
    txn = line.pop("txn")  # the change's events carry it too
    assert re.fullmatch(r"[0-9a-f]{32}", txn)
    assert line == {
        "type": "audit",
        "request_id": "okta-create-1",
        "tenant": "default",
        "token_name": "env-1",
        "method": "POST",
        "resource_type": "User",
        "resource_id": new_id,
        "operation": "create",
        # The body's top-level names (the test client sorts them), "schemas" left out.
        "attributes": [
            "active",
            "displayName",
            "emails",
            "externalId",
            "groups",
            "locale",
            "name",
            "password",
            "userName",
        ],
        "status": 201,
    }
    (row,) = rows()
    assert (row.request_id, row.token_name, row.method, row.resource_type) == (
        "okta-create-1",
        "env-1",
        "POST",
        "User",
    )
    assert (row.resource_id, row.operation, row.status) == (new_id, "create", 201)
    assert row.attributes == line["attributes"]
    assert row.duration_ms == duration
    assert row.txn == txn


def test_passwords_and_tokens_never_reach_the_line_or_the_row(client, capsys, create_user):
    user = create_user()
    capsys.readouterr()
    url = f"{BASE}/Users/{user['id']}"
    send(client, "PUT", url, json=user_payload(password=SECRET))
    send(client, "PATCH", url, json=patch_payload({"op": "replace", "value": {"password": SECRET}}))
    send(
        client,
        "PATCH",
        url,
        json=patch_payload({"op": "replace", "path": "password", "value": SECRET}),
    )
    out = capsys.readouterr().out
    assert out.count('"type": "audit"') == 3
    stored = json.dumps([[r.attributes, r.token_name, r.request_id] for r in rows()])
    for text in (out, stored):
        assert SECRET not in text
        assert "test-token" not in text and "Bearer" not in text


def test_patch_records_paths_without_filter_values_and_pathless_value_keys(
    client, capsys, create_user
):
    user = create_user()
    capsys.readouterr()
    operations = patch_payload(
        {"op": "replace", "path": 'emails[value eq "jane@example.com"].value', "value": "j@x.org"},
        {"op": "add", "path": "name.givenName", "value": "Janet"},
        {"op": "replace", "value": {"active": False, "displayName": "J"}},
    )
    response = send(client, "PATCH", f"{BASE}/Users/{user['id']}", json=operations)
    assert response.status_code == 200
    (line,) = audit_lines(capsys)
    assert line["operation"] == "patch"
    assert line["attributes"] == ["emails.value", "name.givenName", "active", "displayName"]
    assert "jane@example.com" not in json.dumps(line) and "Janet" not in json.dumps(line)


@pytest.mark.parametrize(
    ("path", "recorded"),
    [
        pytest.param('emails[value eq "a]TOPSECRET"].value', "emails.value", id="bracket-in-value"),
        pytest.param('userName eq "TOPSECRET"', "<invalid path>", id="not-a-path"),
    ],
)
def test_a_path_never_carries_a_value_into_the_audit(client, capsys, create_user, path, recorded):
    user = create_user()
    capsys.readouterr()
    operations = patch_payload({"op": "replace", "path": path, "value": "x"})
    send(client, "PATCH", f"{BASE}/Users/{user['id']}", json=operations)
    (line,) = audit_lines(capsys)
    assert line["attributes"] == [recorded]
    assert "TOPSECRET" not in json.dumps(line)


def test_refused_and_failed_changes_are_audited_too(client, anonymous, capsys, create_user):
    user = create_user()
    capsys.readouterr()
    missing = "00000000-0000-0000-0000-000000000000"
    assert send(anonymous, "POST", f"{BASE}/Users", json=user_payload()).status_code == 401
    assert send(client, "PUT", f"{BASE}/Users/{missing}", json=user_payload()).status_code == 404
    assert send(client, "POST", f"{BASE}/Users", json=user_payload()).status_code == 409
    bad = send(
        client, "PATCH", f"{BASE}/Users/{user['id']}", data="{", content_type="application/json"
    )
    assert bad.status_code == 400
    lines = audit_lines(capsys)
    assert [(x["token_name"], x["operation"], x["resource_id"], x["status"]) for x in lines] == [
        (None, "create", None, 401),
        ("env-1", "replace", missing, 404),
        ("env-1", "create", None, 409),
        ("env-1", "patch", user["id"], 400),
    ]
    assert lines[0]["attributes"] == []  # a stranger's body is not read
    assert "userName" in lines[2]["attributes"]
    assert [(r.operation, r.status) for r in rows()][:4] == [
        ("patch", 400),
        ("create", 409),
        ("replace", 404),
        ("create", 401),
    ]


def test_a_granted_change_commits_its_row_in_its_own_transaction(client, create_user, database_url):
    """Each granted write, users and groups alike, writes its row before its COMMIT: one
    transaction (on SQLite one BEGIN IMMEDIATE), and the row says what the response said."""
    user = create_user(userName="ada@example.com")
    group_body = {"schemas": [GROUP_URN], "displayName": "Eng"}
    rename = patch_payload({"op": "replace", "path": "displayName", "value": "Platform"})
    writes = [
        ("POST", "/Users", user_payload(userName="bob@example.com"), 201),
        ("PUT", f"/Users/{user['id']}", user_payload(userName="ada@example.com"), 200),
        ("PATCH", f"/Users/{user['id']}", rename, 200),
        ("POST", "/Groups", group_body, 201),
    ]
    seen_rows = []
    for method, path, body, status in writes:
        with statements() as seen:
            response = send(client, method, f"{BASE}{path}", json=body)
        assert response.status_code == status, response.json
        assert sum("INSERT INTO audit_events" in s for s in seen) == 1, seen
        if database_url.startswith("sqlite"):
            assert sum(s.startswith("BEGIN") for s in seen) == 1, seen
        seen_rows.append((method, response.json["id"], status))
    group_url = f"{BASE}/Groups/{seen_rows[-1][1]}"
    for method, query, body, status in [
        ("PATCH", "", rename, 204),  # no attributes asked for: 204, and the row says so
        ("PATCH", "?excludedAttributes=members", rename, 200),
        ("DELETE", "", None, 204),
    ]:
        with statements() as seen:
            response = send(client, method, f"{group_url}{query}", json=body)
        assert response.status_code == status
        assert sum("INSERT INTO audit_events" in s for s in seen) == 1, seen
        seen_rows.append((method, seen_rows[3][1], status))
    stored = [(r.method, r.resource_id, r.status) for r in reversed(rows())]
    assert stored[1:] == seen_rows  # the first: create_user's


def test_a_change_refused_at_its_commit_is_recorded_as_refused(client, capsys, create_user):
    """A userName taken is found by the unique index when the change commits: the row that was
    to commit with it goes with the rollback, and the 409 is recorded once."""
    create_user(userName="taken@example.com")
    user = create_user(userName="free@example.com")
    capsys.readouterr()
    taken = patch_payload({"op": "replace", "path": "userName", "value": "TAKEN@example.com"})
    response = send(client, "PATCH", f"{BASE}/Users/{user['id']}", json=taken)
    assert response.status_code == 409
    (line,) = audit_lines(capsys)
    assert line["status"] == 409
    patches = [r for r in rows() if r.method == "PATCH"]
    assert [(r.status, r.scim_type, r.resource_id) for r in patches] == [
        (409, "uniqueness", user["id"])
    ]


def test_reads_and_searches_are_not_audited(client, capsys, create_user):
    user = create_user()
    capsys.readouterr()
    send(client, "GET", f"{BASE}/Users/{user['id']}")
    send(client, "GET", f"{BASE}/Users")
    send(client, "POST", f"{BASE}/Users/.search", json={"filter": 'userName eq "x"'})
    send(client, "GET", "/healthz")
    assert audit_lines(capsys) == []


def test_group_lifecycle_answers_what_was_done_to_it_newest_first(client, create_user):
    user = create_user()
    other = client.application.test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {OTHER_TOKEN}"
    created = send(
        client, "POST", f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Eng"}
    )
    url = f"{BASE}/Groups/{created.json['id']}"
    add = patch_payload({"op": "add", "path": "members", "value": [{"value": user["id"]}]})
    assert send(other, "PATCH", url, json=add).status_code == 204
    assert send(client, "DELETE", url).status_code == 204
    db.session.remove()
    history = audit.for_resource("Group", created.json["id"])
    assert [(e.operation, e.token_name, e.attributes, e.status) for e in history] == [
        ("delete", "env-1", [], 204),
        ("patch", "env-2", ["members"], 204),
        ("create", "env-1", ["displayName"], 201),
    ]
    assert audit.for_resource("Group", created.json["id"], limit=1) == history[:1]
    # A granted change's row commits with it, whether or not its response is ever closed.
    [(created_user,)] = [(e.operation,) for e in audit.for_resource("User", user["id"])]
    assert created_user == "create"


def test_purge_deletes_only_events_older_than_the_cutoff(client, create_user):
    user = create_user()
    for _ in range(3):
        send(client, "DELETE", f"{BASE}/Users/{user['id']}")
    old, *recent = [(e.id, e.at) for e in rows()[::-1]]
    db.session.execute(
        AuditEvent.__table__.update()
        .where(AuditEvent.id == old[0])
        .values(at=old[1] - timedelta(days=91))
    )
    db.session.commit()
    assert audit.purge(90) == 1
    assert [e.id for e in rows()] == [event_id for event_id, _ in recent][::-1]
    assert audit.purge(90) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_audit_store_failure_never_breaks_the_response(client, capsys, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def broken(_event):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(audit, "record", broken)
    capsys.readouterr()
    missing = f"{BASE}/Users/00000000-0000-0000-0000-000000000000"
    response = send(client, "PUT", missing, json=user_payload())
    assert response.status_code == 404  # a refused change: its row is written after the response
    assert len(audit_lines(capsys)) == 1  # the line is the record when the row cannot be


def test_a_change_to_an_id_holding_nul_is_audited_without_it(client, capsys):
    """PUT /Users/%00 is a 404, recorded as such; PostgreSQL's text cannot hold the NUL."""
    response = send(client, "PUT", f"{BASE}/Users/%00", json=user_payload())
    assert response.status_code == 404
    assert [(r.operation, r.status, r.resource_id) for r in rows()] == [("replace", 404, None)]
    assert audit_lines(capsys)[-1]["resource_id"] is None


def test_lower_case_operations_are_audited_by_what_they_touched(client, capsys, create_user):
    """patch.parse accepts "operations" in lower case: the audit records what it applied."""
    user = create_user()
    capsys.readouterr()
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "operations": [
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "j@x.org"},
            {"op": "Add", "value": {"name.givenName": "Janet", "active": "False"}},
        ],
    }
    response = send(client, "PATCH", f"{BASE}/Users/{user['id']}", json=body)
    assert response.status_code == 200
    assert response.json["active"] is False
    (line,) = audit_lines(capsys)
    assert line["attributes"] == ["emails.value", "active", "name.givenName"]  # keys sorted
    assert [r.attributes for r in rows() if r.method == "PATCH"] == [line["attributes"]]
    assert "j@x.org" not in json.dumps(line) and "Janet" not in json.dumps(line)


def test_lower_case_group_operations_are_audited_by_what_they_touched(
    client, capsys, create_user, create_group
):
    user, group = create_user(), create_group()
    capsys.readouterr()
    body = {
        "operations": [
            {"op": "add", "path": "members", "value": [{"value": user["id"]}]},
            {"op": "replace", "path": "displayName", "value": "Retail"},
        ]
    }
    assert send(client, "PATCH", f"{BASE}/Groups/{group['id']}", json=body).status_code == 204
    (line,) = audit_lines(capsys)
    assert line["attributes"] == ["members", "displayName"]


def test_extension_attributes_are_audited_by_their_urn_qualified_names(client, capsys, create_user):
    urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    user = create_user()
    capsys.readouterr()
    url = f"{BASE}/Users/{user['id']}"
    add = patch_payload(
        {"op": "add", "path": urn, "value": {"department": "Sales", "manager": "mgr-1"}},
        {"op": "Add", "value": {urn: {"costCenter": "4130"}}},
        {"op": "replace", "path": f"{urn.lower()}:Division", "value": "EMEA"},
    )
    assert send(client, "PATCH", url, json=add).status_code == 200
    assert (
        send(client, "PATCH", url, json=patch_payload({"op": "remove", "path": urn})).status_code
        == 200
    )
    first, second = audit_lines(capsys)
    assert first["attributes"] == [
        f"{urn}:department",
        f"{urn}:manager",
        f"{urn}:costCenter",
        f"{urn}:division",
    ]
    assert second["attributes"] == [urn]  # the whole extension
    assert "Sales" not in json.dumps(first) and "mgr-1" not in json.dumps(first)


def test_an_operation_refused_after_parsing_is_audited_by_its_parsed_names(
    client, capsys, create_user
):
    user = create_user()
    capsys.readouterr()
    body = {
        "operations": [
            {"op": "replace", "path": "displayName", "value": "J"},
            {"op": "replace", "path": "meta.created", "value": "2001-01-01T00:00:00Z"},
        ]
    }
    assert send(client, "PATCH", f"{BASE}/Users/{user['id']}", json=body).status_code == 400
    (line,) = audit_lines(capsys)
    assert line["attributes"] == ["displayName", "meta.created"]


def test_a_lower_case_body_refused_by_the_parser_is_audited_from_its_paths(
    client, capsys, create_user
):
    user = create_user()
    capsys.readouterr()
    body = {
        "operations": [
            {"op": "replace", "path": "displayName", "value": "J"},
            {"op": "replace", "path": "shoeSize", "value": 9},
        ]
    }
    assert send(client, "PATCH", f"{BASE}/Users/{user['id']}", json=body).status_code == 400
    (line,) = audit_lines(capsys)
    assert line["attributes"] == ["displayName", "shoeSize"]
