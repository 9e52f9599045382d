"""ServiceProviderConfig, ResourceTypes and Schemas (RFC 7644 §4, RFC 7643 §5-§7)."""

from __future__ import annotations

from typing import Any

import pytest

from app.db import db
from tests.conftest import BASE, TOKEN, make_app
from tests.payloads import ENTERPRISE_URN, GROUP_URN, LIST_URN, USER_URN, error

ORIGIN = "http://localhost"
RESOURCE_TYPE_URN = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_URN = "urn:ietf:params:scim:schemas:core:2.0:Schema"
SPC_URN = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"

USER_TYPE = {
    "schemas": [RESOURCE_TYPE_URN],
    "id": "User",
    "name": "User",
    "endpoint": "/Users",
    "description": "User Account",
    "schema": USER_URN,
    "schemaExtensions": [{"schema": ENTERPRISE_URN, "required": False}],
    "meta": {"resourceType": "ResourceType", "location": f"{ORIGIN}{BASE}/ResourceTypes/User"},
}
GROUP_TYPE = {
    "schemas": [RESOURCE_TYPE_URN],
    "id": "Group",
    "name": "Group",
    "endpoint": "/Groups",
    "description": "Group",
    "schema": GROUP_URN,
    "schemaExtensions": [],
    "meta": {"resourceType": "ResourceType", "location": f"{ORIGIN}{BASE}/ResourceTypes/Group"},
}

# RFC 7643 §4.1, in its order.
USER_ATTRIBUTES = [
    "userName",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "password",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
]


def get_ok(client, path: str) -> dict[str, Any]:
    response = client.get(f"{BASE}{path}")
    assert response.status_code == 200, response.json
    assert response.mimetype == "application/scim+json"
    return response.json


def attributes_by_name(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in schema["attributes"]}


def test_service_provider_config(client):
    assert get_ok(client, "/ServiceProviderConfig") == {
        "schemas": [SPC_URN],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": True},
        "bulk": {"supported": True, "maxOperations": 2000, "maxPayloadSize": 1048576},
        # At least 100: Okta imports pages of count=100.
        "filter": {"supported": True, "maxResults": 200},
        "changePassword": {"supported": True},
        "sort": {"supported": True},
        "etag": {"supported": True},
        # RFC 9967 §4: the SCIM event URIs emitted (§7.4's registry, but feed and misc ones).
        "securityEvents": {
            "asyncRequest": "none",
            "eventUris": [
                "urn:ietf:params:scim:event:prov:create:notice",
                "urn:ietf:params:scim:event:prov:create:full",
                "urn:ietf:params:scim:event:prov:patch:notice",
                "urn:ietf:params:scim:event:prov:patch:full",
                "urn:ietf:params:scim:event:prov:put:notice",
                "urn:ietf:params:scim:event:prov:put:full",
                "urn:ietf:params:scim:event:prov:delete",
                "urn:ietf:params:scim:event:prov:activate",
                "urn:ietf:params:scim:event:prov:deactivate",
            ],
        },
        "pagination": {
            "cursor": True,
            "index": True,
            "defaultPaginationMethod": "index",
            "defaultPageSize": 100,
            "maxPageSize": 200,
            "cursorTimeout": 3600,
        },
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "A bearer token in the Authorization header (RFC 6750).",
                "specUri": "https://datatracker.ietf.org/doc/html/rfc6750",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{ORIGIN}{BASE}/ServiceProviderConfig",
        },
    }


def test_resource_types_list(client):
    assert get_ok(client, "/ResourceTypes") == {
        "schemas": [LIST_URN],
        "totalResults": 2,
        "startIndex": 1,
        "itemsPerPage": 2,
        "Resources": [USER_TYPE, GROUP_TYPE],
    }


@pytest.mark.parametrize(
    ("type_id", "expected"),
    [pytest.param("User", USER_TYPE, id="User"), pytest.param("Group", GROUP_TYPE, id="Group")],
)
def test_resource_type_by_id(client, type_id, expected):
    assert get_ok(client, f"/ResourceTypes/{type_id}") == expected


def test_schemas_list_holds_each_schema_as_served_by_id(client):
    body = get_ok(client, "/Schemas")
    assert [body[k] for k in ("schemas", "totalResults", "startIndex", "itemsPerPage")] == [
        [LIST_URN],
        3,
        1,
        3,
    ]
    assert [s["id"] for s in body["Resources"]] == [USER_URN, ENTERPRISE_URN, GROUP_URN]
    for schema in body["Resources"]:
        assert get_ok(client, f"/Schemas/{schema['id']}") == schema


@pytest.mark.parametrize(
    ("urn", "name", "description"),
    [
        pytest.param(USER_URN, "User", "User Account", id="User"),
        pytest.param(ENTERPRISE_URN, "EnterpriseUser", "Enterprise User", id="EnterpriseUser"),
        pytest.param(GROUP_URN, "Group", "Group", id="Group"),
    ],
)
def test_schema_by_id_envelope(client, urn, name, description):
    schema = get_ok(client, f"/Schemas/{urn}")
    assert {k: v for k, v in schema.items() if k != "attributes"} == {
        "schemas": [SCHEMA_URN],
        "id": urn,
        "name": name,
        "description": description,
        "meta": {"resourceType": "Schema", "location": f"{ORIGIN}{BASE}/Schemas/{urn}"},
    }


def test_user_schema_lists_every_rfc7643_attribute(client):
    schema = get_ok(client, f"/Schemas/{USER_URN}")
    assert [a["name"] for a in schema["attributes"]] == USER_ATTRIBUTES


def characteristics(attribute: dict[str, Any]) -> dict[str, Any]:
    keys = ("type", "multiValued", "required", "caseExact", "mutability", "returned", "uniqueness")
    return {k: attribute[k] for k in keys if k in attribute}


def string(**overrides: Any) -> dict[str, Any]:
    """RFC 7643 §2.2's defaults for a singular string, with overrides."""
    base = {
        "type": "string",
        "multiValued": False,
        "required": False,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    }
    return base | overrides


def complex_(**overrides: Any) -> dict[str, Any]:
    out = string(type="complex", **overrides)
    del out["caseExact"]  # RFC 7643 §7: caseExact applies to strings, not complex attributes
    return out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "userName", string(required=True, uniqueness="server"), id="userName"
        ),  # §4.1.1
        pytest.param("name", complex_(), id="name"),
        pytest.param("displayName", string(), id="displayName"),
        pytest.param("profileUrl", string(type="reference"), id="profileUrl"),
        pytest.param("active", string(type="boolean"), id="active"),
        pytest.param("password", string(mutability="writeOnly", returned="never"), id="password"),
        pytest.param("emails", complex_(multiValued=True), id="emails"),
        pytest.param("phoneNumbers", complex_(multiValued=True), id="phoneNumbers"),
        pytest.param("addresses", complex_(multiValued=True), id="addresses"),
        pytest.param("groups", complex_(multiValued=True, mutability="readOnly"), id="groups"),
        pytest.param("x509Certificates", complex_(multiValued=True), id="x509Certificates"),
    ],
)
def test_user_attribute_characteristics(client, name, expected):
    attributes = attributes_by_name(get_ok(client, f"/Schemas/{USER_URN}"))
    assert characteristics(attributes[name]) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("name.givenName", string(), id="name.givenName"),
        pytest.param("emails.value", string(), id="emails.value"),
        pytest.param("emails.primary", string(type="boolean"), id="emails.primary"),
        pytest.param("groups.value", string(mutability="readOnly"), id="groups.value"),
        pytest.param(
            "groups.$ref", string(type="reference", mutability="readOnly"), id="groups.$ref"
        ),
        pytest.param("photos.value", string(type="reference"), id="photos.value"),
        # RFC 7643 §2.3.6: "A binary is case exact" (filters compare the base64 as written).
        pytest.param(
            "x509Certificates.value",
            string(type="binary", caseExact=True),
            id="x509Certificates.value",
        ),
    ],
)
def test_user_sub_attribute_characteristics(client, path, expected):
    attributes = attributes_by_name(get_ok(client, f"/Schemas/{USER_URN}"))
    parent, sub = path.split(".")
    subs = {a["name"]: a for a in attributes[parent]["subAttributes"]}
    assert characteristics(subs[sub]) == expected


def test_user_multi_valued_attributes_have_the_rfc_sub_attributes(client):
    attributes = attributes_by_name(get_ok(client, f"/Schemas/{USER_URN}"))
    subs = {
        name: [s["name"] for s in attribute.get("subAttributes", [])]
        for name, attribute in attributes.items()
        if attribute["multiValued"]
    }
    plural = ["value", "display", "type", "primary"]
    assert subs == {
        "emails": plural,
        "phoneNumbers": plural,
        "ims": plural,
        "photos": plural,
        "addresses": [
            "formatted",
            "streetAddress",
            "locality",
            "region",
            "postalCode",
            "country",
            "type",
            "primary",
        ],
        "groups": ["value", "$ref", "display", "type"],
        "entitlements": plural,
        "roles": plural,
        "x509Certificates": plural,
    }
    assert attributes["emails"]["subAttributes"][2]["canonicalValues"] == ["work", "home", "other"]
    assert attributes["profileUrl"]["referenceTypes"] == ["external"]


def test_enterprise_schema_attributes(client):
    schema = get_ok(client, f"/Schemas/{ENTERPRISE_URN}")
    attributes = attributes_by_name(schema)
    assert list(attributes) == [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
    ]
    manager = attributes["manager"]
    assert characteristics(manager) == complex_()
    assert {s["name"]: characteristics(s) for s in manager["subAttributes"]} == {
        "value": string(),
        "$ref": string(type="reference"),
        "displayName": string(mutability="readOnly"),
    }


def test_group_schema_attributes(client):
    attributes = attributes_by_name(get_ok(client, f"/Schemas/{GROUP_URN}"))
    # What the service enforces: displayName unique among live groups, case-insensitively.
    assert characteristics(attributes["displayName"]) == string(required=True, uniqueness="server")
    members = attributes["members"]
    assert characteristics(members) == complex_(multiValued=True)
    assert {s["name"]: characteristics(s) for s in members["subAttributes"]} == {
        # The store refuses a member without a value (the member's id).
        "value": string(required=True, mutability="immutable"),
        "$ref": string(type="reference", mutability="immutable"),
        "display": string(mutability="readOnly"),
        "type": string(mutability="immutable"),
    }


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        pytest.param("/ResourceTypes/Device", "ResourceType Device not found", id="resource-type"),
        pytest.param(
            "/Schemas/urn:example:schemas:Device",
            "Schema urn:example:schemas:Device not found",
            id="schema",
        ),
        pytest.param(
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig",
            "Schema urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig not found",
            id="schema-not-served",
        ),
    ],
)
def test_unknown_discovery_id_is_404_scim_error(client, path, detail):
    response = client.get(f"{BASE}{path}")
    assert response.status_code == 404
    assert response.mimetype == "application/scim+json"
    assert response.json == error(404, detail)


def test_locations_follow_the_configured_base_url(app, database_url):
    other = make_app(database_url, SCIM_BASE_URL="https://idp-facing.example.com/scim/v2/")
    client = other.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    try:
        base = "https://idp-facing.example.com/scim/v2"
        spc = client.get(f"{BASE}/ServiceProviderConfig").json
        assert spc["meta"]["location"] == f"{base}/ServiceProviderConfig"
        types = client.get(f"{BASE}/ResourceTypes").json["Resources"]
        assert [t["meta"]["location"] for t in types] == [
            f"{base}/ResourceTypes/User",
            f"{base}/ResourceTypes/Group",
        ]
        schemas = client.get(f"{BASE}/Schemas").json["Resources"]
        assert [s["meta"]["location"] for s in schemas] == [
            f"{base}/Schemas/{USER_URN}",
            f"{base}/Schemas/{ENTERPRISE_URN}",
            f"{base}/Schemas/{GROUP_URN}",
        ]
    finally:
        with other.app_context():
            db.engine.dispose()


def test_locations_use_the_request_host(client):
    response = client.get(f"{BASE}/ResourceTypes/User", base_url="https://scim.example.org")
    location = response.json["meta"]["location"]
    assert location == "https://scim.example.org/scim/v2/ResourceTypes/User"


def test_without_the_events_outbox_no_security_events_are_advertised(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "SCIM_EVENTS", False)
    assert "securityEvents" not in get_ok(client, "/ServiceProviderConfig")
