"""The schema registry: characteristics checked when it is built, and /Schemas saying what the
service enforces (RFC 7643 §7)."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from app.config import ConfigError
from app.models import Group, User
from app.schema import Attribute, complex_
from app.schema.core import DEFAULT_REGISTRY
from tests.conftest import BASE, make_app
from tests.payloads import GROUP_URN, USER_URN, error, user_payload

CORE = Path(__file__).parent.parent / "app" / "schema" / "core.py"
ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"

TYPES = "string, boolean, decimal, integer, dateTime, reference, complex, binary"
MUTABILITY = "readOnly, readWrite, immutable, writeOnly"
RETURNED = "always, never, default, request"
UNIQUENESS = "none, server, global"


@pytest.mark.parametrize(
    ("characteristics", "message"),
    [
        pytest.param(
            {"type": "strng"}, f"type must be one of {TYPES}; got 'strng'", id="type-typo"
        ),
        pytest.param(
            {"type": "datetime"}, f"type must be one of {TYPES}; got 'datetime'", id="type-case"
        ),
        pytest.param(
            {"mutability": "readonly"},
            f"mutability must be one of {MUTABILITY}; got 'readonly'",
            id="mutability-case",
        ),
        pytest.param(
            {"mutability": "read-only"},
            f"mutability must be one of {MUTABILITY}; got 'read-only'",
            id="mutability-typo",
        ),
        pytest.param(
            {"returned": "Always"},
            f"returned must be one of {RETURNED}; got 'Always'",
            id="returned",
        ),
        pytest.param(
            {"uniqueness": "unique"},
            f"uniqueness must be one of {UNIQUENESS}; got 'unique'",
            id="uniqueness",
        ),
        pytest.param(
            {"mutability": Attribute.Returned.ALWAYS},
            f"mutability must be one of {MUTABILITY}; got {Attribute.Returned.ALWAYS!r}",
            id="another-characteristics-member",
        ),
        pytest.param(
            {"returned": None}, f"returned must be one of {RETURNED}; got None", id="not-a-string"
        ),
    ],
)
def test_a_misspelt_characteristic_fails_naming_the_attribute_and_the_allowed_values(
    characteristics, message
):
    with pytest.raises(ValueError) as raised:
        Attribute("nickName", **characteristics)
    assert str(raised.value) == f"attribute 'nickName': {message}"


def test_a_typo_in_the_core_schemas_fails_at_import():
    source = CORE.read_text(encoding="utf-8")
    assert source.count('mutability="writeOnly"') == 1  # password's
    module = types.ModuleType("core_with_a_typo")
    with pytest.raises(ValueError) as raised:
        exec(compile(source.replace('"writeOnly"', '"writeonly"'), str(CORE), "exec"), vars(module))
    assert str(raised.value) == (
        f"attribute 'password': mutability must be one of {MUTABILITY}; got 'writeonly'"
    )


def _all_attributes(attributes: tuple[Attribute, ...]) -> list[Attribute]:
    return [x for a in attributes for x in (a, *_all_attributes(a.sub_attributes))]


def test_the_built_registry_holds_members_not_spellings():
    attributes = [a for rt in DEFAULT_REGISTRY.resource_types for a in rt.common]
    attributes += [a for schema in DEFAULT_REGISTRY.schemas for a in schema.attributes]
    for attribute in _all_attributes(tuple(attributes)):
        assert type(attribute.type) is Attribute.Type, attribute.name
        assert type(attribute.mutability) is Attribute.Mutability, attribute.name
        assert type(attribute.returned) is Attribute.Returned, attribute.name
        assert type(attribute.uniqueness) is Attribute.Uniqueness, attribute.name
    # The members still compare equal to RFC 7643 §7's spellings, as code elsewhere writes them.
    password = DEFAULT_REGISTRY.user.schema.attribute("password")
    assert (password.mutability, password.returned) == ("writeOnly", "never")


@pytest.mark.parametrize(
    "characteristics",
    [
        pytest.param({}, id="case-insensitive"),
        pytest.param({"case_exact": True, "uniqueness": "server"}, id="unique"),
    ],
)
def test_a_binary_attribute_is_case_exact_and_not_unique(characteristics):
    with pytest.raises(ValueError) as raised:
        Attribute("certificate", type="binary", **characteristics)
    assert str(raised.value) == (
        "attribute 'certificate': a binary attribute is case exact and has no uniqueness "
        "(RFC 7643 §2.3.6)"
    )
    assert Attribute("certificate", type="binary", case_exact=True).case_exact


def test_only_a_complex_attribute_has_sub_attributes():
    with pytest.raises(ValueError) as raised:
        Attribute("name", sub_attributes=(Attribute("givenName"),))
    assert str(raised.value) == "attribute 'name': only a complex attribute has sub-attributes"
    assert complex_("name", Attribute("givenName")).is_complex


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        pytest.param(
            {"name": "x", "type": "String"},
            f"type must be one of {TYPES}; got 'String'",
            id="type",
        ),
        pytest.param(
            {"name": "x", "mutability": "readonly"},
            f"mutability must be one of {MUTABILITY}; got 'readonly'",
            id="mutability",
        ),
        pytest.param(
            {"name": "x", "returned": "sometimes"},
            f"returned must be one of {RETURNED}; got 'sometimes'",
            id="returned",
        ),
        pytest.param(
            {"name": "x", "uniqueness": "sever"},
            f"uniqueness must be one of {UNIQUENESS}; got 'sever'",
            id="uniqueness",
        ),
        pytest.param(
            {"name": "x", "mutability": ["readOnly"]},
            f"mutability must be one of {MUTABILITY}; got ['readOnly']",
            id="not-a-string",
        ),
    ],
)
def test_a_misspelt_characteristic_in_an_extension_stops_start_up(tmp_path, attribute, message):
    path = tmp_path / "extensions.json"
    path.write_text(json.dumps({"id": ACME, "attributes": [attribute]}))
    with pytest.raises(ConfigError) as raised:
        make_app("sqlite://", SCIM_SCHEMA_EXTENSIONS=str(path))
    assert str(raised.value) == (
        f"SCIM_SCHEMA_EXTENSIONS: {path}: schema 1 ({ACME}): attributes[0] (x): {message}"
    )


GROUP_DISPLAY_NAME = {
    "name": "displayName",
    "type": "string",
    "multiValued": False,
    "description": "A human-readable name for the Group.",
    "required": True,
    "caseExact": False,
    "mutability": "readWrite",
    "returned": "default",
    "uniqueness": "server",
}


def test_schemas_advertise_group_display_name_as_unique_on_the_server(client):
    group = client.get(f"{BASE}/Schemas/{GROUP_URN}").json
    assert group["attributes"][0] == GROUP_DISPLAY_NAME
    listed = client.get(f"{BASE}/Schemas").json["Resources"]
    assert [s["attributes"][0] for s in listed if s["id"] == GROUP_URN] == [GROUP_DISPLAY_NAME]


def _unique_on_the_server() -> set[tuple[str, str]]:
    return {
        (rt.id, a.name)
        for rt in DEFAULT_REGISTRY.resource_types
        for a in rt.schema.attributes
        if a.uniqueness == Attribute.Uniqueness.SERVER
    }


def test_the_unique_attributes_are_the_store_unique_indexes():
    """A unique index added without the registry saying so (or the reverse) fails here."""
    indexes = {i.name for model in (User, Group) for i in model.__table__.indexes if i.unique}
    assert indexes == {"uq_users_live_user_name", "uq_groups_live_display_name"}
    assert _unique_on_the_server() == {("User", "userName"), ("Group", "displayName")}


@pytest.mark.parametrize(
    ("urn", "name", "endpoint", "first", "second"),
    [
        pytest.param(
            USER_URN,
            "userName",
            "Users",
            user_payload(userName="ada@example.com"),
            user_payload(userName="ADA@EXAMPLE.COM"),
            id="User.userName",
        ),
        pytest.param(
            GROUP_URN,
            "displayName",
            "Groups",
            {"schemas": [GROUP_URN], "displayName": "Sales"},
            {"schemas": [GROUP_URN], "displayName": "SALES"},
            id="Group.displayName",
        ),
    ],
)
def test_an_attribute_advertised_unique_and_case_insensitive_is_enforced_so(
    client, urn, name, endpoint, first, second
):
    advertised = _attribute(client.get(f"{BASE}/Schemas/{urn}").json, name)
    assert (advertised["uniqueness"], advertised["caseExact"]) == ("server", False)
    assert client.post(f"{BASE}/{endpoint}", json=first).status_code == 201
    response = client.post(f"{BASE}/{endpoint}", json=second)
    assert response.status_code == 409
    assert response.json == error(409, f"{name} {second[name]!r} is already taken", "uniqueness")


def _attribute(schema: dict[str, Any], path: str) -> dict[str, Any]:
    head, _, sub = path.partition(".")
    attribute = next(a for a in schema["attributes"] if a["name"] == head)
    return next(s for s in attribute["subAttributes"] if s["name"] == sub) if sub else attribute


def test_a_member_value_is_advertised_required_and_enforced_so(client):
    value = _attribute(client.get(f"{BASE}/Schemas/{GROUP_URN}").json, "members.value")
    assert (value["required"], value["mutability"]) == (True, "immutable")
    body = {"schemas": [GROUP_URN], "displayName": "Sales", "members": [{"type": "User"}]}
    response = client.post(f"{BASE}/Groups", json=body)
    assert response.status_code == 400
    assert response.json == error(
        400, "members: every member needs a value (the member's id)", "invalidValue"
    )
