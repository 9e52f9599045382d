"""The production proof, end to end with the real parts, on PostgreSQL.

nginx runs deploy/nginx/scim.conf with a certificate made here, in front of gunicorn
(gunicorn.conf.py, 2 workers, SCIM_PROXY_HOPS=1, SCIM_REQUIRE_HTTPS=1), whose DATABASE_URL goes
through a TCP forwarder this test controls (tests/tcp_forwarder.py) to a scratch PostgreSQL
database migrated with `flask db upgrade`. The client verifies the certificate. Checked over
HTTPS: Okta's user and group lifecycle and the https:// URLs it returns, the audit lines on
gunicorn's stdout and the rows of `audit_events` (read straight from the database), /readyz, the
per-token rate limit (SCIM_RATE_LIMIT=30 per minute, in each worker's memory), and a database
outage: 503 SCIM errors with Retry-After within SCIM_DB_TIMEOUT_SECONDS, then recovery without a
restart. Skipped with a reason without nginx or PostgreSQL, except in CI.

Each part uses a token of its own (env-1, env-2, env-3), so that each has its own rate budget.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import tenancy
from app.auth import token_hash
from tests.conftest import OTHER_TOKEN, TOKEN
from tests.databases import scratch_postgres_database
from tests.e2e.test_behind_nginx import Stack, _nginx_or_skip, migrate, running_stack
from tests.payloads import GROUP_URN, PATCH_URN, error, patch_payload, user_payload
from tests.tcp_forwarder import Forwarder

BURST_TOKEN = OTHER_TOKEN  # env-2: spends its budget in the rate-limit test
FAULT_TOKEN = "outage-token-5647382910"  # env-3: the outage test's
SECRET = "correct horse battery staple"  # a password Okta sends; never logged or stored
LIMIT = 30  # SCIM_RATE_LIMIT, per token and (memory://) per gunicorn worker
WORKERS = 2  # SCIM_WORKERS in _service_env
TIMEOUT = 2  # SCIM_DB_TIMEOUT_SECONDS
SLACK = 2.5  # seconds on top of it: pre-ping, nginx, a loaded machine
UNAVAILABLE = error(503, "The service cannot reach its database; retry later")
NOT_READY = error(503, "The service cannot reach its database")
TOO_MANY = error(
    429, "Too many requests with this token; retry after the seconds given in Retry-After"
)


@dataclass
class Proof:
    stack: Stack
    forwarder: Forwarder  # between gunicorn's workers and PostgreSQL
    database_url: str  # straight to the scratch database, for reading audit_events

    def scim(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        request_id: str | None = None,
        token: str = TOKEN,
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"X-Request-ID": request_id} if request_id else None
        return self.stack.request(
            method, f"{self.stack.https}/scim/v2{path}", body, headers=headers, token=token
        )

    def audit_lines(self) -> list[dict[str, Any]]:
        """The audit lines gunicorn's workers wrote to stdout, beside the access lines."""
        lines = [json.loads(line) for line in self.stack.access_log.read_text().splitlines()]
        return [line for line in lines if line.get("type") == "audit"]

    def audit_rows(self, where: str = "true", **params: Any) -> list[dict[str, Any]]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                result = connection.execute(
                    text(f"SELECT * FROM audit_events WHERE {where} ORDER BY id"), params
                )
                return [dict(row) for row in result.mappings()]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proof]:
    _nginx_or_skip()
    with scratch_postgres_database() as url:
        migrate(url)
        direct = make_url(url)
        forwarder = Forwarder((direct.host or "127.0.0.1", direct.port or 5432))
        forwarder.start()
        through = direct.set(host="127.0.0.1", port=forwarder.port)
        try:
            with running_stack(
                through.render_as_string(hide_password=False),
                tmp_path_factory.mktemp("proof"),
                SCIM_TOKEN_HASHES=",".join(map(token_hash, (TOKEN, BURST_TOKEN, FAULT_TOKEN))),
                SCIM_RATE_LIMIT=f"{LIMIT} per minute",
                SCIM_RATE_LIMIT_STORAGE_URI="memory://",
                SCIM_DB_TIMEOUT_SECONDS=str(TIMEOUT),
            ) as stack:
                yield Proof(stack, forwarder, url)
        finally:
            forwarder.stop()


def _eventually(read: Any, done: Any, seconds: float = 5) -> Any:
    """read() until done(value): audit rows are written once the response has been sent."""
    deadline = time.monotonic() + seconds
    while not done(value := read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_okta_user_and_group_lifecycle_over_https_is_audited(proof):
    https = proof.stack.https
    users, groups = f"{https}/scim/v2/Users", f"{https}/scim/v2/Groups"
    lookup = "/Users?filter=userName%20eq%20%22jane%40example.com%22&startIndex=1&count=100"

    # Okta looks the user up, creates it (with a password), finds it, reads it.
    status, _, found = proof.scim("GET", lookup)
    assert (status, found["totalResults"]) == (200, 0)
    status, headers, user = proof.scim(
        "POST", "/Users", user_payload(password=SECRET), request_id="proof-u1"
    )
    assert status == 201, user
    uid = user["id"]
    assert headers["Location"] == user["meta"]["location"] == f"{users}/{uid}"
    assert headers["X-Request-ID"] == "proof-u1"
    assert "password" not in user
    status, _, found = proof.scim("GET", lookup)
    assert [r["meta"]["location"] for r in found["Resources"]] == [f"{users}/{uid}"]
    status, _, read = proof.scim("GET", f"/Users/{uid}")
    assert (status, read["meta"]["location"]) == (200, f"{users}/{uid}")

    # Profile push (PUT), deactivate and reactivate (path-less PATCH, as Okta sends them).
    status, _, replaced = proof.scim(
        "PUT",
        f"/Users/{uid}",
        user_payload(name={"givenName": "Jane", "familyName": "Smith"}, displayName="Jane Smith"),
        request_id="proof-u2",
    )
    assert (status, replaced["name"]["familyName"]) == (200, "Smith")
    assert replaced["meta"]["location"] == f"{users}/{uid}"
    for request_id, active in (("proof-u3", False), ("proof-u4", True)):
        status, _, patched = proof.scim(
            "PATCH",
            f"/Users/{uid}",
            patch_payload({"op": "replace", "value": {"active": active}}),
            request_id=request_id,
        )
        assert (status, patched["active"]) == (200, active)

    # Group Push: create, add the member, see it from both sides with https:// $refs.
    status, headers, group = proof.scim(
        "POST",
        "/Groups",
        {"schemas": [GROUP_URN], "displayName": "Engineering", "members": []},
        request_id="proof-g1",
    )
    assert status == 201, group
    gid = group["id"]
    assert headers["Location"] == group["meta"]["location"] == f"{groups}/{gid}"
    add = patch_payload({"op": "add", "path": "members", "value": [{"value": uid}]})
    assert proof.scim("PATCH", f"/Groups/{gid}", add, request_id="proof-g2")[0] == 204
    status, _, group = proof.scim("GET", f"/Groups/{gid}")
    assert [(m["value"], m["$ref"]) for m in group["members"]] == [(uid, f"{users}/{uid}")]
    status, _, member = proof.scim("GET", f"/Users/{uid}?attributes=groups")
    assert [(g["value"], g["$ref"]) for g in member["groups"]] == [(gid, f"{groups}/{gid}")]

    # Remove the member by filter path, rename path-less, delete the group, then the user.
    remove = patch_payload({"op": "remove", "path": f'members[value eq "{uid}"]'})
    assert proof.scim("PATCH", f"/Groups/{gid}", remove, request_id="proof-g3")[0] == 204
    assert proof.scim("GET", f"/Groups/{gid}")[2].get("members", []) == []
    rename = {
        "schemas": [PATCH_URN],
        "Operations": [{"op": "replace", "value": {"id": gid, "displayName": "Platform"}}],
    }
    status, _, renamed = proof.scim(
        "PATCH", f"/Groups/{gid}?excludedAttributes=members", rename, request_id="proof-g4"
    )
    assert (status, renamed["displayName"]) == (200, "Platform")
    assert renamed["meta"]["location"] == f"{groups}/{gid}"
    assert proof.scim("DELETE", f"/Groups/{gid}", request_id="proof-g5")[0] == 204
    assert proof.scim("GET", f"/Groups/{gid}")[0] == 404
    assert proof.scim("DELETE", f"/Users/{uid}", request_id="proof-u5")[0] == 204
    status, headers, gone = proof.scim("GET", f"/Users/{uid}")
    assert (status, gone["status"]) == (404, "404")
    assert headers["Content-Type"] == "application/scim+json"

    # One audit event per change, on stdout and in audit_events, with the same content.
    expected = [
        ("proof-u1", "POST", "User", uid, "create", 201),
        ("proof-u2", "PUT", "User", uid, "replace", 200),
        ("proof-u3", "PATCH", "User", uid, "patch", 200),
        ("proof-u4", "PATCH", "User", uid, "patch", 200),
        ("proof-g1", "POST", "Group", gid, "create", 201),
        ("proof-g2", "PATCH", "Group", gid, "patch", 204),
        ("proof-g3", "PATCH", "Group", gid, "patch", 204),
        ("proof-g4", "PATCH", "Group", gid, "patch", 200),
        ("proof-g5", "DELETE", "Group", gid, "delete", 204),
        ("proof-u5", "DELETE", "User", uid, "delete", 204),
    ]
    fields = ("request_id", "method", "resource_type", "resource_id", "operation", "status")
    rows = _eventually(
        lambda: proof.audit_rows("resource_id IN (:u, :g)", u=uid, g=gid),
        lambda rows: len(rows) >= len(expected),
    )
    assert [tuple(row[f] for f in fields) for row in rows] == expected
    assert {row["token_name"] for row in rows} == {"env-1"}
    by_request = {row["request_id"]: row for row in rows}
    assert by_request["proof-u1"]["attributes"] == [
        "userName", "name", "emails", "displayName", "locale", "externalId", "groups",
        "active", "password",
    ]  # fmt: skip
    assert by_request["proof-u3"]["attributes"] == ["active"]
    assert by_request["proof-g3"]["attributes"] == ["members"]  # the filter's value dropped
    assert by_request["proof-g4"]["attributes"] == ["id", "displayName"]
    assert by_request["proof-g5"]["attributes"] == []

    assert {(row["tenant_id"], row["scim_type"], row["detail"]) for row in rows} == {
        (tenancy.DEFAULT_TENANT_ID, None, None)  # no request here was refused
    }
    lines = {line["request_id"]: line for line in proof.audit_lines()}
    for row in rows:
        line = lines[row["request_id"]]
        assert line["time"].endswith("Z")
        assert line["tenant"] == tenancy.DEFAULT_TENANT_SLUG  # the line names it by slug
        # The line carries no error detail: a detail may quote what the client sent.
        assert {k: line[k] for k in line if k not in ("time", "type", "tenant")} == {
            k: row[k] for k in row if k not in ("id", "at", "tenant_id", "scim_type", "detail")
        }
    # The whole trail, lines and rows, holds names only: no password, no token.
    trail = json.dumps(rows, default=str) + proof.stack.access_log.read_text()
    for secret in (SECRET, TOKEN):
        assert secret not in trail


def test_readyz_through_nginx_needs_no_token_and_is_not_rate_limited(proof):
    for _ in range(3):
        status, headers, body = proof.stack.request(
            "GET", f"{proof.stack.https}/readyz", token=False
        )
        assert (status, body) == (200, {"status": "ok"})
        assert headers["Cache-Control"] == "no-store"


def test_a_burst_past_the_rate_limit_gets_a_scim_429_with_retry_after(proof):
    # Each of the 2 workers counts on its own (memory://): the first LIMIT requests pass
    # whichever worker gets them, and at the latest the (WORKERS * LIMIT + 1)th is refused.
    statuses: list[int] = []
    refused: tuple[int, dict[str, str], Any] | None = None
    for n in range(WORKERS * LIMIT + 1):
        response = proof.scim("GET", "/Users?count=1", token=BURST_TOKEN, request_id=f"burst-{n}")
        statuses.append(response[0])
        if response[0] != 200:
            refused = response
            break
    assert statuses[:LIMIT] == [200] * LIMIT
    assert refused is not None, f"no 429 after {len(statuses)} requests"
    status, headers, body = refused
    assert (status, body) == (429, TOO_MANY)
    assert headers["Content-Type"] == "application/scim+json"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-Request-ID"] == f"burst-{len(statuses) - 1}"  # the app answered, not nginx
    # The budget is the token's: another token, and the probes, still pass.
    assert proof.scim("GET", "/Users?count=1")[0] == 200
    assert proof.stack.request("GET", f"{proof.stack.https}/readyz", token=False)[0] == 200


def test_a_database_outage_is_503_within_the_timeout_then_recovers_without_a_restart(proof):
    stack, forwarder = proof.stack, proof.forwarder

    def scim(method: str, path: str, body: Any = None, request_id: str | None = None):
        started = time.monotonic()
        response = proof.scim(method, path, body, token=FAULT_TOKEN, request_id=request_id)
        return response, time.monotonic() - started

    def readyz():
        started = time.monotonic()
        response = stack.request("GET", f"{stack.https}/readyz", token=False)
        return response, time.monotonic() - started

    (status, _, user), _ = scim("POST", "/Users", user_payload(userName="outage@example.com"))
    assert status == 201, user
    path = f"/Users/{user['id']}"
    deactivate = patch_payload({"op": "replace", "value": {"active": False}})

    try:
        # Cut: the pooled connections of both workers die and new ones are refused.
        forwarder.stop()
        for method, url, payload, request_id in (
            ("GET", path, None, "outage-1"),
            ("PATCH", path, deactivate, "outage-2"),
            ("POST", "/Users", user_payload(userName="later@example.com"), "outage-3"),
        ):
            (status, headers, body), took = scim(method, url, payload, request_id)
            assert (status, body) == (503, UNAVAILABLE), method
            assert headers["Retry-After"] == "5"
            assert headers["Content-Type"] == "application/scim+json"
            assert headers["X-Request-ID"] == request_id  # gunicorn answered, not nginx's 502
            assert took < TIMEOUT + SLACK, (method, took)
        (status, headers, body), took = readyz()
        assert (status, body, headers["Retry-After"]) == (503, NOT_READY, "5")
        assert took < TIMEOUT + SLACK

        # Blackhole: connections are accepted, nothing ever answers. Still no hang.
        forwarder.mode = "blackhole"
        forwarder.start()
        (status, _, body), took = scim("GET", path)
        assert (status, body) == (503, UNAVAILABLE)
        assert TIMEOUT - 0.5 < took < TIMEOUT + SLACK
        (status, _, _), took = readyz()
        assert status == 503 and took < TIMEOUT + SLACK
    finally:
        # Restored (also when an assertion above failed, for the tests after this one).
        forwarder.stop()
        forwarder.mode = "forward"
        forwarder.start()

    # The same gunicorn answers again, on every worker, without a restart.
    assert readyz()[0][0] == 200
    for _ in range(2 * WORKERS):
        (status, _, read), _ = scim("GET", path)
        assert (status, read["active"]) == (200, True)
    (status, _, patched), _ = scim("PATCH", path, deactivate, "outage-4")
    assert (status, patched["active"]) == (200, False)

    # Refused changes are audited on stdout; only the one that reached the database is stored.
    lines = {line["request_id"]: line for line in proof.audit_lines()}
    assert [lines[r]["status"] for r in ("outage-2", "outage-3", "outage-4")] == [503, 503, 200]
    assert lines["outage-2"]["token_name"] == "env-3"
    # ...and stderr says why the others are not, with their request ids.
    problems = [
        json.loads(line)
        for line in stack.error_log.read_text().splitlines()
        if line.startswith("{")  # gunicorn's and the app's lines (nginx shares the file)
    ]
    assert {
        (p["logger"], p["message"], p.get("request_id"))
        for p in problems
        if p["level"] == "warning"
    } >= {
        ("app.audit", "audit event not stored: the database is unavailable", "outage-2"),
        ("app.audit", "audit event not stored: the database is unavailable", "outage-3"),
    }
    rows = _eventually(
        lambda: proof.audit_rows("request_id LIKE 'outage-%'"), lambda rows: len(rows) >= 1
    )
    assert [(r["request_id"], r["operation"], r["status"]) for r in rows] == [
        ("outage-4", "patch", 200)
    ]


def test_no_log_line_or_audit_event_holds_a_token_or_a_password(proof):
    """Last, over everything this module's gunicorn logged and stored."""
    status, _, user = proof.scim(
        "POST", "/Users", user_payload(userName="pw@example.com", password=SECRET)
    )
    assert status == 201, user
    assert proof.scim("DELETE", f"/Users/{user['id']}")[0] == 204
    rows = _eventually(
        lambda: proof.audit_rows("resource_id = :id", id=user["id"]), lambda rows: len(rows) >= 2
    )
    assert [row["operation"] for row in rows] == ["create", "delete"]
    assert "password" in rows[0]["attributes"]  # its name, never its value
    logs = proof.stack.access_log.read_text() + proof.stack.error_log.read_text()
    events = json.dumps(proof.audit_rows(), default=str)
    for secret in (TOKEN, BURST_TOKEN, FAULT_TOKEN, SECRET, "Bearer"):
        assert secret not in logs
        assert secret not in events
