"""Schemathesis drives the change events' endpoints (/events/openapi.json: a receiver's JWKS
and its RFC 8936 poll) from their own OpenAPI document, on both databases, as
test_schemathesis.py does the SCIM API: no server error, and every response as documented.

The poll takes its receiver's own token, not a SCIM token: the receiver is made here with a
token the configuration knows. Two in three requests are aimed at it (the others name a
receiver that does not exist); some events wait for it, so polls hand out and acknowledge SETs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings

from app import openapi, sets, tenancy
from app.api.events import MAX_ACKS, MAX_EVENTS
from app.auth import token_hash
from app.db import db
from app.models import EventReceiver
from app.store import events as events_store
from tests.conftest import BASE
from tests.payloads import user_payload
from tests.test_schemathesis import CHECKS, EXAMPLES, SEED

POLL_TOKEN = "poll-token-of-the-fuzzed-receiver"
RECEIVER_ID = "6f1c2d4e-0000-4000-8000-00000000fa22"

DOCUMENT = openapi.events_document(
    server_url="http://localhost", max_events=MAX_EVENTS, max_acks=MAX_ACKS
)
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": "http://localhost",
            "generation": {
                "mode": "all",
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,
            },
            "phases": {
                "fuzzing": {"extra-data-sources": {"responses": False}},
                "coverage": {"extra-data-sources": {"responses": False}},
                "stateful": {"enabled": False},
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "auth": {"openapi": {"pollToken": {"bearer": POLL_TOKEN}}},
        }
    ),
)


@pytest.fixture
def served(app: Flask, client, monkeypatch) -> Iterator[Flask]:
    """The app with a poll receiver and a few events for it; a poll never waits; unhandled
    errors answered as 500s, which not_a_server_error reports."""
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    monkeypatch.setitem(app.config, "SCIM_EVENTS_POLL_WAIT_SECONDS", 0)
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        events_store.add_receiver(
            EventReceiver(
                id=RECEIVER_ID,
                name="fuzzed",
                delivery="poll",
                events=list(events_store.EVENT_NAMES),
                full=False,
                enabled=True,
                audience="https://app.example",
                alg="ES256",
                poll_token_hash=token_hash(POLL_TOKEN),
            ),
            sets.new_key("ES256"),
        )
    for n in range(3):
        response = client.post(f"{BASE}/Users", json=user_payload(userName=f"u{n}@example.com"))
        assert response.status_code == 201
    db.session.remove()
    yield app


def aim(case: schemathesis.Case) -> schemathesis.Case:
    """Two in three requests name the receiver that exists (a copy: the generated case is
    replayed on the next database unchanged)."""
    generated = str((case.path_parameters or {}).get("receiver_id"))
    if int.from_bytes(hashlib.sha256(generated.encode()).digest()[:4], "big") % 3 == 0:
        return case
    aimed = case.derive(keep_auth=True)
    aimed.path_parameters["receiver_id"] = RECEIVER_ID
    return aimed


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_conform(case: schemathesis.Case, served: Flask) -> None:
    case.operation.app = case.operation.schema.app = served
    aim(case).call_and_validate()
