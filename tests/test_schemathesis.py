"""Schemathesis drives the app in-process from its own OpenAPI document, on both databases.

Every operation in /scim/v2/openapi.json gets generated requests, valid and invalid ones; each
response must be no server error and must conform to the document (status code, media type,
body schema). The run is seeded and derandomized: the same code gives the same requests.
SCIM_FUZZ_EXAMPLES sets the example budget per operation (small here; scripts/fuzz runs a
campaign with a large one). A failure here is a finding about the server or the document: fix
that, never loosen the check.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app import openapi
from app.limits import Limits
from app.schema.core import build_registry
from tests.conftest import BASE, TOKEN
from tests.payloads import ERROR_URN, GROUP_URN, user_payload

EXAMPLES = int(os.environ.get("SCIM_FUZZ_EXAMPLES", "10"))
SEED = int(os.environ.get("SCIM_FUZZ_SEED", "7643"))  # another seed, other requests
STATS_FILE = os.environ.get("SCIM_FUZZ_STATS")  # scripts/fuzz: where to add up the requests
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "ignored_auth",
)


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": f"http://localhost{BASE}",
            # Requests carry the valid token; test_every_operation_needs_a_valid_token and the
            # ignored_auth probes try the others, so the budget goes to the rest of the request.
            "generation": {
                "mode": "all",
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,
            },
            # Inputs must not depend on the ids the service mints, which differ run to run:
            # Seeded.aim points requests at existing resources instead.
            "phases": {
                "fuzzing": {"extra-data-sources": {"responses": False}},
                "coverage": {"extra-data-sources": {"responses": False}},
                "stateful": {"enabled": False},
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
        }
    )


# The document a test app serves (make_app's defaults): built here, before any app exists, so
# that pytest can collect one test per operation; a test below checks it is the served one.
DOCUMENT = openapi.document(
    build_registry(),
    Limits(),
    server_url=BASE,
    max_results=200,
    default_count=100,
    cursor_timeout=3600,
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=_config())


@dataclass
class Seeded:
    """Users and groups that exist, so that generated requests on /{id} sometimes find one."""

    client: FlaskClient
    ids: dict[str, list[str]] = field(default_factory=dict)
    operation: str = ""
    created: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def create(self, endpoint: str) -> str:
        self.created += 1
        if endpoint == "Users":
            body = user_payload(userName=f"seeded-{self.created}@example.com", externalId=None)
        else:
            members = [{"value": user_id} for user_id in self.ids.get("Users", [])[:2]]
            name = f"seeded {self.created}"
            body = {"schemas": [GROUP_URN], "displayName": name, "members": members}
        response = self.client.post(f"{BASE}/{endpoint}", json=body)
        assert response.status_code == 201, response.json
        return response.json["id"]

    def aim(self, case: schemathesis.Case) -> tuple[schemathesis.Case, tuple[str, int] | None]:
        """Point two in three requests on /Users/{id} or /Groups/{id} at a seeded resource.

        The generated case is left as it is (a copy is aimed): Schemathesis replays the same
        case objects on the next database, and their ids must stay the generated ones.
        """
        endpoint = case.path.strip("/").split("/")[0]
        generated = (case.path_parameters or {}).get("id")
        if endpoint not in self.ids or generated is None or case.path.count("/") < 2:
            return case, None
        digest = int.from_bytes(hashlib.sha256(str(generated).encode()).digest()[:4], "big")
        if digest % 3 == 0:
            return case, None
        index = digest % len(self.ids[endpoint])
        aimed = case.derive(keep_auth=True)
        aimed.path_parameters["id"] = self.ids[endpoint][index]
        return aimed, (endpoint, index)

    def restore(self, aimed: tuple[str, int] | None, status: int) -> None:
        """A seeded resource that a request deleted is created again, in the same place."""
        if aimed is not None and status == 204:
            endpoint, index = aimed
            if self.client.get(f"{BASE}/{endpoint}/{self.ids[endpoint][index]}").status_code == 404:
                self.ids[endpoint][index] = self.create(endpoint)


@pytest.fixture
def seeded(client: FlaskClient) -> Iterator[Seeded]:
    pool = Seeded(client)
    pool.ids["Users"] = [pool.create("Users") for _ in range(3)]
    pool.ids["Groups"] = [pool.create("Groups") for _ in range(2)]
    yield pool
    if STATS_FILE and pool.operation:
        database = client.application.config["SQLALCHEMY_DATABASE_URI"].split(":")[0]
        record = {"database": database, "operation": pool.operation, "statuses": pool.statuses}
        with open(STATS_FILE, "a", encoding="utf-8") as stats:
            stats.write(json.dumps(record) + "\n")


@pytest.fixture
def served(app: Flask) -> Iterator[Flask]:
    """The app with unhandled errors answered as 500s, which not_a_server_error reports."""
    before = app.config["PROPAGATE_EXCEPTIONS"]
    app.config["PROPAGATE_EXCEPTIONS"] = False
    yield app
    app.config["PROPAGATE_EXCEPTIONS"] = before


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_conform(case: schemathesis.Case, served: Flask, seeded: Seeded) -> None:
    # This database's app, for the request and for the probes of ignored_auth.
    case.operation.app = case.operation.schema.app = served
    seeded.operation = case.operation.label
    sent, aimed = seeded.aim(case)
    # /Me and /Bulk answer 501 by design: there the status-code check alone rules out a 500.
    unsupported = "501" in case.operation.definition.raw["responses"]
    response = sent.call_and_validate(excluded_checks=[not_a_server_error] if unsupported else [])
    seeded.statuses[response.status_code] += 1
    seeded.restore(aimed, response.status_code)


def test_the_fuzzed_document_is_the_served_one(client: FlaskClient) -> None:
    """So the operations fuzzed and checked for auth here are every one the app documents."""
    served = client.get(f"{BASE}/openapi.json").json
    assert served["servers"] == [{"url": f"http://localhost{BASE}"}]
    assert {**served, "servers": DOCUMENT["servers"]} == DOCUMENT


# --- no route without a valid token ---------------------------------------------------------


def _operations() -> list[tuple[str, str]]:
    methods = ("get", "post", "put", "patch", "delete")
    return [
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in methods
        if method in item
    ]


OPERATIONS = _operations()


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-token"),
        pytest.param("Bearer not-the-token", id="wrong-token"),
        pytest.param(f"Basic {TOKEN}", id="other-scheme"),
    ],
)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_needs_a_valid_token(
    app: Flask, method: str, path: str, authorization: str | None
) -> None:
    # The token is checked before anything is looked up: whether the id exists does not matter.
    anonymous = app.test_client()
    url = BASE + path.replace("{id}", GROUP_URN if path.startswith("/Schemas") else "x")
    headers = {"Authorization": authorization} if authorization else {}
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    response = anonymous.open(url, method=method, headers=headers, **body)
    assert response.status_code == 401, (method, url, response.status_code)
    assert response.mimetype == "application/scim+json"
    assert response.json["schemas"] == [ERROR_URN]
    assert response.json["status"] == "401"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="scim"')
