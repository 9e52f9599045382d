"""The OpenAPI document at /scim/v2/openapi.json: served, valid, complete, and the deployment's."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import OpenAPIV31SpecValidator

from app import openapi
from tests.conftest import BASE, TOKEN, create_schema, make_app
from tests.payloads import ENTERPRISE_URN, ERROR_URN, USER_URN

SAMPLE = Path(__file__).parent / "samples" / "acme-extension.json"
ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}  # HEAD and OPTIONS are Flask's own


def served(**settings: str) -> dict[str, Any]:
    """The document an app with these settings serves, from an in-memory database whose only
    row is the default tenant (which the token's caller belongs to)."""
    app = make_app("sqlite://", **settings)
    with app.app_context():
        create_schema()
    client = app.test_client()
    response = client.get(f"{BASE}/openapi.json", headers=AUTH)
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return served()


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    return document["components"]["schemas"][name]


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in METHODS
    }


def test_served_as_json_with_a_token(client):
    response = client.get(f"{BASE}/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json["openapi"] == "3.1.0"
    assert response.json["servers"] == [{"url": f"http://localhost{BASE}"}]


def test_without_a_token_is_401(anonymous):
    response = anonymous.get(f"{BASE}/openapi.json")
    assert response.status_code == 401
    assert response.mimetype == "application/scim+json"
    assert response.json == {
        "schemas": [ERROR_URN],
        "status": "401",
        "detail": "Authorization: Bearer <token> is required",
    }


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"SCIM_SCHEMA_EXTENSIONS": str(SAMPLE)}, id="with-extension"),
    ],
)
def test_validates_as_openapi_3_1(settings):
    errors = [error.message for error in OpenAPIV31SpecValidator(served(**settings)).iter_errors()]
    assert errors == []


def test_lists_every_route_under_scim_v2(app: Flask, document):
    routes = set()
    catch_all = {r.endpoint for r in app.url_map.iter_rules() if "<path:" in r.rule}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(f"{BASE}/") or rule.endpoint in catch_all:
            continue
        path = re.sub(r"<(?:\w+:)?\w+>", "{id}", rule.rule.removeprefix(BASE))
        routes |= {(method, path) for method in rule.methods & METHODS}
    assert operations(document) == routes


def test_every_operation_lists_the_statuses_it_can_answer(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            statuses = set(operation["responses"])
            where = f"{method.upper()} {path}"
            assert {"401", "403", "429", "503"} <= statuses, where
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= statuses, where
            if "{id}" in path:
                assert "404" in statuses, where
            if method in ("put", "patch", "delete") and "{id}" in path:
                assert "412" in statuses, where
    users = document["paths"]["/Users/{id}"]
    assert "304" in users["get"]["responses"]
    assert "204" in users["delete"]["responses"]
    assert set(document["paths"]["/Groups/{id}"]["patch"]["responses"]) >= {"200", "204"}
    assert set(document["paths"]["/Users"]["post"]["responses"]) >= {"201", "409"}
    for method in ("get", "post", "put", "patch", "delete"):
        assert "501" in document["paths"]["/Me"][method]["responses"]
    assert list(document["paths"]["/Bulk"]) == ["post"]
    assert set(document["paths"]["/Bulk"]["post"]["responses"]) >= {"200", "400", "413", "429"}


def test_errors_are_scim_errors_with_status_as_a_string(document):
    error = schema(document, "Error")
    assert error["properties"]["status"]["type"] == "string"
    assert error["properties"]["schemas"]["items"] == {"const": ERROR_URN}
    not_found = document["components"]["responses"]["Error404"]["content"]
    assert list(not_found) == ["application/scim+json"]
    assert not_found["application/scim+json"]["schema"]["allOf"][1] == {
        "properties": {"status": {"const": "404"}}
    }


def test_responses_are_scim_json_and_requests_also_accept_json(document):
    create = document["paths"]["/Users"]["post"]
    assert list(create["requestBody"]["content"]) == ["application/scim+json", "application/json"]
    assert list(create["responses"]["201"]["content"]) == ["application/scim+json"]


def test_bearer_auth_applies_to_every_operation(document):
    assert document["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token issued by the operator (RFC 6750).",
    }
    for item in document["paths"].values():
        for operation in item.values():
            assert "security" not in operation  # nothing opts out of the global requirement


def test_requests_carry_only_writable_attributes(document):
    request = schema(document, "UserRequest")["properties"]
    response = schema(document, "User")["properties"]
    assert {"id", "meta", "groups"}.isdisjoint(request)  # readOnly
    assert {"userName", "password", "externalId", "emails", ENTERPRISE_URN} <= set(request)
    assert "password" not in response  # returned: never
    assert {"id", "meta", "groups", "userName"} <= set(response)
    assert schema(document, "UserRequest")["required"] == ["userName"]
    assert schema(document, "GroupRequest")["required"] == ["displayName"]
    manager = request[ENTERPRISE_URN]["properties"]["manager"]["properties"]
    assert set(manager) == {"value", "$ref"}  # displayName is readOnly
    members = schema(document, "GroupRequest")["properties"]["members"]
    assert set(members["items"]["properties"]) == {"value", "$ref", "type"}


def test_canonical_values_are_examples_not_enums(document):
    # validate.py accepts any type value (RFC 7643 §2.3.1: canonical values are a suggestion).
    emails = schema(document, "UserRequest")["properties"]["emails"]
    email_type = emails["items"]["properties"]["type"]
    assert email_type == {
        "type": "string",
        "examples": ["work", "home", "other"],
        "description": "A label indicating the function. Canonical values: work, home, other.",
    }


def test_attribute_types_follow_the_registry(document):
    user = schema(document, "User")["properties"]
    assert user["active"]["type"] == "boolean"
    assert user["meta"]["properties"]["created"] == {"type": "string", "format": "date-time"}
    assert user["emails"]["type"] == "array"
    assert user["name"]["type"] == "object"
    assert user["name"]["additionalProperties"] is False
    assert user["x509Certificates"]["items"]["properties"]["value"]["contentEncoding"] == "base64"


def test_declared_extension_attributes_appear():
    document = served(SCIM_SCHEMA_EXTENSIONS=str(SAMPLE))
    request = schema(document, "UserRequest")["properties"]
    response = schema(document, "User")["properties"]
    acme = request[ACME]["properties"]
    assert set(acme) == {
        "badgeNumber", "costCenterCode", "skills", "contractor", "hiredOn", "laptops", "employeeId",
    }  # fmt: skip
    assert "riskScore" not in acme  # readOnly
    assert response[ACME]["properties"]["riskScore"]["type"] == "number"
    assert acme["costCenterCode"]["type"] == "integer"
    assert acme["skills"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "Self-declared skills",
    }
    assert acme["hiredOn"]["format"] == "date-time"
    assert acme["employeeId"]["description"] == "Immutable: may be set once, never changed."
    laptops = acme["laptops"]["items"]["properties"]
    assert laptops["type"]["examples"] == ["mac", "windows", "linux"]
    assert ACME in request["schemas"]["items"]["enum"]
    assert request["schemas"]["contains"] == {"const": USER_URN}
    # The extension's attributes can be filtered on, sorted by and patched.
    patch_paths = [
        op["properties"]["path"]["const"]
        for op in schema(document, "UserPatchOp")["properties"]["Operations"]["items"]["anyOf"]
        if "const" in op["properties"].get("path", {})
    ]
    assert f"{ACME}:badgeNumber" in patch_paths
    assert f"{ACME}:riskScore" not in patch_paths
    sort_by = document["components"]["parameters"]["UserSortBy"]["schema"]["anyOf"][0]["enum"]
    assert f"{ACME}:laptops.type" in sort_by


def test_without_extensions_no_acme(document):
    assert ACME not in schema(document, "UserRequest")["properties"]


def test_carries_the_configured_limits():
    document = served(
        SCIM_MAX_FILTER_CHARS="1000",
        SCIM_MAX_PATCH_OPERATIONS="50",
        SCIM_MAX_STRING_BYTES="512",
        SCIM_MAX_MEMBERS_PER_REQUEST="300",
    )
    limits = document["x-scim-limits"]
    assert limits["maxFilterCharacters"] == 1000
    assert limits["maxPatchOperations"] == 50
    assert limits["maxStringBytes"] == 512
    assert limits["maxMembersPerRequest"] == 300
    parameters = document["components"]["parameters"]
    assert parameters["UserFilter"]["schema"]["maxLength"] == 1000
    assert parameters["GroupFilter"]["schema"]["maxLength"] == 1000
    assert schema(document, "SearchRequest")["properties"]["filter"]["maxLength"] == 1000
    for name in ("UserPatchOp", "GroupPatchOp"):
        assert schema(document, name)["properties"]["Operations"]["maxItems"] == 50
    assert schema(document, "GroupRequest")["properties"]["members"]["maxItems"] == 300
    assert "512 UTF-8 bytes" in document["info"]["description"]
    assert "512 UTF-8 bytes" in schema(document, "UserRequest")["description"]


def test_default_limits(document):
    assert document["x-scim-limits"] == {
        "maxBodyBytes": 1_048_576,
        "maxFilterCharacters": 16_384,
        "maxFilterDepth": 32,
        "maxFilterTerms": 256,
        "maxStringBytes": 2_048,
        "maxPatchOperations": 1_000,
        "maxMembersPerRequest": 1_048_576 // 48,
        "maxJsonDepth": 32,
        "maxBulkOperations": 2_000,
        "maxBulkPayloadBytes": 1_048_576,
    }


def test_server_url_follows_scim_base_url():
    document = served(SCIM_BASE_URL="https://scim.example.com/scim/v2/")
    assert document["servers"] == [{"url": "https://scim.example.com/scim/v2"}]


def test_created_resources_link_to_their_operations(document):
    links = document["paths"]["/Users"]["post"]["responses"]["201"]["links"]
    assert links["getUser"] == {
        "operationId": "getUser",
        "parameters": {"id": "$response.body#/id"},
    }
    operation_ids = {
        operation["operationId"]
        for item in document["paths"].values()
        for method, operation in item.items()
        if method != "parameters"
    }
    assert {link["operationId"] for link in links.values()} <= operation_ids


def test_the_generator_is_pure():
    # app/openapi.py takes the registry, limits and settings as arguments: no request, no app.
    tree = ast.parse(Path(openapi.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= {"__future__", "re", "typing", "app"}
    assert {name for name in imported if name.startswith("app")} == {
        "app.limits", "app.schema", "app.schema.core",
    }  # fmt: skip


# --- the change events' endpoints: a document of their own, at /events/openapi.json ----------


def test_events_document_is_served_without_a_token_and_validates(anonymous):
    response = anonymous.get("/events/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.json
    assert document["servers"] == [{"url": "http://localhost"}]
    assert [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()] == []
    assert document == openapi.events_document(
        server_url="http://localhost", max_events=1000, max_acks=10_000
    )


def test_events_document_lists_every_events_route(app: Flask, anonymous):
    document = anonymous.get("/events/openapi.json").json
    routes = {
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/events/") and rule.rule != "/events/openapi.json"
        for method in rule.methods & METHODS
    }
    assert operations(document) == routes


def test_events_document_follows_scim_base_url():
    app = make_app("sqlite://", SCIM_BASE_URL="https://scim.example.com/scim/v2")
    with app.app_context():
        create_schema()
    document = app.test_client().get("/events/openapi.json").json
    assert document["servers"] == [{"url": "https://scim.example.com"}]
    poll = document["paths"]["/events/receivers/{receiver_id}/poll"]["post"]
    assert poll["security"] == [{"pollToken": []}]  # its own token, not a SCIM one
    jwks = document["paths"]["/events/receivers/{receiver_id}/jwks.json"]["get"]
    assert jwks["security"] == []
