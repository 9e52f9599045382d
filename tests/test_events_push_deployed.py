"""The push worker, `flask events status` and `replay` where the service's PostgreSQL role is
bound by row-level security (deploy/postgres/app-role.sql), besides SQLite and PostgreSQL: each
receiver gets its own tenant's events only (issue 17)."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from tests.payloads import BASE, user_payload
from tests.set_receiver import running
from tests.test_events_push import add_pusher, deactivate, rows, wait_until, worker
from tests.test_tenants_cli import ok


@pytest.fixture(scope="module")
def app(app_as_deployed: Flask) -> Flask:
    return app_as_deployed


def test_the_worker_serves_every_tenant_each_its_own_events(app, client, tenant_client):
    acme = tenant_client("acme")
    with running() as ours, running() as theirs:
        add_pusher(app, ours.url)
        add_pusher(app, theirs.url, tenant="acme")
        mine = client.post(f"{BASE}/Users", json=user_payload(userName="ada@example.com")).json
        other = acme.post(f"{BASE}/Users", json=user_payload(userName="ada@example.com")).json
        deactivate(acme, other["id"])
        with worker(app):
            ours.wait_for(lambda: len(ours.received) == 1)
            theirs.wait_for(lambda: len(theirs.received) == 2)
            wait_until(lambda: [r.state for r in rows()] == ["delivered"])
        status = ok(app, "events", "status")
        assert re.search(r"default +hook +push +enabled +1 +0 +0 +0", status), status
        assert re.search(r"acme +hook +push +enabled +2 +0 +0 +0", status), status
        out = ok(
            app,
            "events",
            "replay",
            "--receiver",
            "hook",
            "--tenant",
            "acme",
            "--since",
            "2000-01-01",
        )
        assert "2 events queued again, 0 queued for the first time" in out
        with worker(app):
            theirs.wait_for(lambda: len(theirs.received) == 4)
    assert [r.claims["sub_id"]["uri"] for r in ours.received] == [f"/Users/{mine['id']}"]
    assert {r.claims["sub_id"]["uri"] for r in theirs.received} == {f"/Users/{other['id']}"}
