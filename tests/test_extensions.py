"""Admin-declared schema extensions (SCIM_SCHEMA_EXTENSIONS): declared once, used everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.config import ConfigError
from app.db import db
from app.schema import extensions
from tests.conftest import BASE, TOKEN, create_schema, empty_tables, make_app
from tests.payloads import ENTERPRISE_URN, USER_URN, error, patch_payload, user_payload

SAMPLE = Path(__file__).parent / "samples" / "acme-extension.json"
ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


@pytest.fixture(scope="module")
def acme_app(database_url):
    app = make_app(database_url, SCIM_SCHEMA_EXTENSIONS=str(SAMPLE))
    with app.app_context():
        create_schema()
    yield app
    with app.app_context():
        db.engine.dispose()  # this app has its own pool: close it, not the garbage collector


@pytest.fixture
def acme(acme_app):
    client = acme_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    yield client
    with acme_app.app_context():
        empty_tables()


def create(client, **acme_values):
    body = user_payload(
        schemas=[USER_URN, ACME],
        userName=acme_values.pop("userName", "jane@example.com"),
        externalId=None,
        **{ACME: acme_values},
    )
    response = client.post(f"{BASE}/Users", json=body)
    assert response.status_code == 201, response.json
    return response.json


def test_discovery_lists_the_extension(acme):
    user_type = acme.get(f"{BASE}/ResourceTypes/User").json
    assert user_type["schemaExtensions"] == [
        {"schema": ENTERPRISE_URN, "required": False},
        {"schema": ACME, "required": False},
    ]
    schema = acme.get(f"{BASE}/Schemas/{ACME}").json
    assert schema["name"] == "AcmeUser"
    names = [a["name"] for a in schema["attributes"]]
    assert names == [
        "badgeNumber", "costCenterCode", "skills", "contractor", "hiredOn", "laptops",
        "employeeId", "riskScore",
    ]  # fmt: skip
    skills = next(a for a in schema["attributes"] if a["name"] == "skills")
    assert (skills["type"], skills["multiValued"], skills["mutability"]) == (
        "string",
        True,
        "readWrite",
    )
    assert ACME in [s["id"] for s in acme.get(f"{BASE}/Schemas").json["Resources"]]


def test_extension_attributes_round_trip(acme):
    user = create(
        acme,
        badgeNumber="B-1042",
        costCenterCode=4130,
        skills=["python", "SQL"],
        contractor=False,
        hiredOn="2024-03-01T09:00:00Z",
        laptops=[{"value": "SN-123", "type": "mac", "primary": True}],
        employeeId="E-7",
        riskScore=3.5,  # readOnly: ignored
    )
    assert user["schemas"] == [USER_URN, ACME]
    assert user[ACME] == {
        "badgeNumber": "B-1042",
        "costCenterCode": 4130,
        "skills": ["python", "SQL"],
        "contractor": False,
        "hiredOn": "2024-03-01T09:00:00Z",
        "laptops": [{"value": "SN-123", "type": "mac", "primary": True}],
        "employeeId": "E-7",
    }
    assert acme.get(f"{BASE}/Users/{user['id']}").json == user


def test_an_integer_beyond_64_bits_is_answered_as_sent(acme):
    # JSON has no integer limit and the validator none; orjson, which writes the bodies, refuses
    # one that does not fit in 64 bits, and json writes the same text in its place.
    big = 2**70 + 1
    user = create(acme, costCenterCode=big)
    assert user[ACME] == {"costCenterCode": big}
    response = acme.get(f"{BASE}/Users/{user['id']}")
    assert response.status_code == 200
    assert f'"costCenterCode":{big}}}'.encode() in response.data
    assert response.json == user


def test_extension_attributes_sent_without_the_urn_in_schemas_are_accepted(acme):
    body = user_payload(externalId=None, **{ACME: {"badgeNumber": "B-1"}})
    response = acme.post(f"{BASE}/Users", json=body)
    assert response.status_code == 201
    assert response.json["schemas"] == [USER_URN, ACME]


@pytest.mark.parametrize(
    ("acme_values", "detail"),
    [
        pytest.param(
            {"costCenterCode": "4130"}, f"{ACME}:costCenterCode must be an integer", id="type"
        ),
        pytest.param({"skills": "python"}, f"{ACME}:skills must be a list", id="multi"),
        pytest.param(
            {"hiredOn": "yesterday"},
            f"{ACME}:hiredOn must be an RFC 3339 date-time with a time zone offset, "
            "got 'yesterday'",
            id="date",
        ),
        pytest.param(
            {"laptops": [{"value": "x", "colour": "red"}]},
            f"Unknown attribute '{ACME}:laptops.colour'",
            id="sub",
        ),
    ],
)
def test_extension_values_are_validated(acme, acme_values, detail):
    body = user_payload(externalId=None, **{ACME: acme_values})
    response = acme.post(f"{BASE}/Users", json=body)
    assert response.status_code == 400
    assert response.json["detail"] == detail


def test_unknown_schema_urn_is_400_invalid_value(acme):
    other = "urn:ietf:params:scim:schemas:extension:other:2.0:User"
    response = acme.post(f"{BASE}/Users", json=user_payload(schemas=[USER_URN, other]))
    assert response.json == error(
        400,
        f"Unknown schema {other!r}: declare it in SCIM_SCHEMA_EXTENSIONS to use it",
        "invalidValue",
    )
    response = acme.post(f"{BASE}/Users", json=user_payload(**{other: {"x": 1}}))
    assert response.status_code == 400
    assert response.json["scimType"] == "invalidValue"


def test_extension_attributes_patch(acme):
    user = create(acme, badgeNumber="B-1", skills=["python"], employeeId="E-7")
    url = f"{BASE}/Users/{user['id']}"
    body = patch_payload(
        {"op": "replace", "path": f"{ACME}:badgeNumber", "value": "B-2"},
        {"op": "add", "path": f"{ACME}:skills", "value": ["go"]},
        {"op": "Add", "value": {f"{ACME}:costCenterCode": 7}},
        {"op": "add", "path": f'{ACME}:laptops[type eq "linux"].value', "value": "SN-9"},
    )
    patched = acme.patch(url, json=body).json
    assert patched[ACME] == {
        "badgeNumber": "B-2",
        "skills": ["python", "go"],
        "employeeId": "E-7",
        "costCenterCode": 7,
        "laptops": [{"type": "linux", "value": "SN-9"}],
    }
    immutable = patch_payload({"op": "replace", "path": f"{ACME}:employeeId", "value": "E-8"})
    assert acme.patch(url, json=immutable).json == error(
        400, "employeeId is immutable and already set", "mutability"
    )
    read_only = patch_payload({"op": "replace", "path": f"{ACME}:riskScore", "value": 1})
    assert acme.patch(url, json=read_only).json == error(400, "riskScore is readOnly", "mutability")
    removed = acme.patch(url, json=patch_payload({"op": "remove", "path": f"{ACME}:skills"})).json
    assert "skills" not in removed[ACME]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(f'{ACME}:badgeNumber eq "b-1"', ["a"], id="eq-folds-case"),
        pytest.param(f'{ACME}:badgeNumber sw "B"', ["a", "b"], id="sw"),
        pytest.param(f"{ACME}:costCenterCode gt 5", ["b"], id="integer-gt"),
        pytest.param(f'{ACME}:skills eq "SQL"', ["a"], id="simple-multi-valued"),
        pytest.param(
            f'{ACME}:laptops[type eq "mac" and value eq "SN-1"]', ["a"], id="value-filter"
        ),
        pytest.param(f'{ACME}:laptops.value eq "sn-1"', [], id="case-exact-sub"),
        pytest.param(f"{ACME}:contractor eq true", ["b"], id="boolean"),
        pytest.param(f'{ACME}:hiredOn gt "2024-01-01T00:00:00Z"', ["b"], id="datetime"),
        pytest.param(f"{ACME}:badgeNumber pr", ["a", "b"], id="pr"),
    ],
)
def test_extension_attributes_filter(acme, query, expected):
    a_laptops = [{"value": "SN-1", "type": "mac"}]
    b_laptops = [{"value": "SN-2", "type": "linux"}]
    create(acme, userName="a", badgeNumber="B-1", costCenterCode=1, skills=["sql"],
           laptops=a_laptops, contractor=False, hiredOn="2023-05-01T00:00:00Z")  # fmt: skip
    create(acme, userName="b", badgeNumber="B-2", costCenterCode=9, skills=["go"],
           laptops=b_laptops, contractor=True, hiredOn="2025-01-01T00:00:00+02:00")  # fmt: skip
    create(acme, userName="c")
    response = acme.get(f"{BASE}/Users", query_string={"filter": query, "sortBy": "userName"})
    assert response.status_code == 200, response.json
    assert [u["userName"] for u in response.json["Resources"]] == expected


def test_extension_attributes_sort(acme):
    for name, code in (("a", 30), ("b", 4), ("c", None)):
        create(acme, userName=name, **({"costCenterCode": code} if code is not None else {}))
    query = {"sortBy": f"{ACME}:costCenterCode"}
    assert [
        u["userName"] for u in acme.get(f"{BASE}/Users", query_string=query).json["Resources"]
    ] == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("{not json", "not valid JSON", id="json"),
        pytest.param(
            json.dumps({"id": "acme", "attributes": []}), "id must be a schema URN", id="urn"
        ),
        pytest.param(
            json.dumps({"id": ACME, "attributes": [{"name": "x", "type": "strng"}]}),
            "attributes[0] (x): type must be one of",
            id="type",
        ),
        pytest.param(
            json.dumps({"id": ACME, "attributes": [{"name": "x", "uniqueness": "server"}]}),
            'uniqueness must be "none"',
            id="uniqueness",
        ),
        pytest.param(
            json.dumps(
                {"id": ACME, "attributes": [{"name": "x", "type": "binary", "caseExact": False}]}
            ),
            "attributes[0] (x): a binary attribute is case exact (RFC 7643 §2.3.6)",
            id="binary-case-insensitive",
        ),
        pytest.param(
            json.dumps({"id": ENTERPRISE_URN, "attributes": [{"name": "x"}]}),
            "is declared twice",
            id="clash-with-enterprise",
        ),
        pytest.param(
            json.dumps({"id": ACME, "attributes": [{"name": "x", "type": "complex"}]}),
            "a complex attribute needs subAttributes",
            id="complex",
        ),
    ],
)
def test_malformed_declarations_stop_start_up(tmp_path, content, message):
    path = tmp_path / "extensions.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as raised:
        make_app("sqlite://", SCIM_SCHEMA_EXTENSIONS=str(path))
    assert str(raised.value).startswith(f"SCIM_SCHEMA_EXTENSIONS: {path}")
    assert message in str(raised.value)


def test_a_binary_attribute_is_case_exact_unless_declared_otherwise(tmp_path):
    path = tmp_path / "extensions.json"
    path.write_text(json.dumps({"id": ACME, "attributes": [{"name": "badge", "type": "binary"}]}))
    (schema,) = extensions.load(path, reserved=set())
    assert schema.attributes[0].to_scim() == {
        "name": "badge",
        "type": "binary",
        "multiValued": False,
        "description": "",
        "required": False,
        "caseExact": True,  # RFC 7643 §2.3.6: "A binary is case exact"
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    }


def test_missing_declaration_file_stops_start_up(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        make_app("sqlite://", SCIM_SCHEMA_EXTENSIONS=str(tmp_path / "nope.json"))


def test_bare_schema_urn_selects_or_excludes_the_whole_extension(acme):
    user = create(acme, badgeNumber="B-1", skills=["go"])
    url = f"{BASE}/Users/{user['id']}"
    only = acme.get(url, query_string={"attributes": ACME}).json
    assert only == {
        "schemas": [USER_URN, ACME],
        "id": user["id"],
        ACME: {"badgeNumber": "B-1", "skills": ["go"]},
        "meta": {"resourceType": "User"},
    }
    without = acme.get(url, query_string={"excludedAttributes": ACME}).json
    assert ACME not in without and without["schemas"] == [USER_URN]
    assert without["userName"] == "jane@example.com"


def test_simple_multi_valued_value_filters(acme):
    user = create(acme, skills=["Go", "python", "sql"])
    url = f"{BASE}/Users/{user['id']}"
    found = acme.get(f"{BASE}/Users", query_string={"filter": f'{ACME}:skills[value eq "go"]'})
    assert found.json["totalResults"] == 1
    remove = patch_payload({"op": "remove", "path": f'{ACME}:skills[value eq "go"]'})
    assert acme.patch(url, json=remove).json[ACME]["skills"] == ["python", "sql"]
    replace = patch_payload(
        {"op": "replace", "path": f'{ACME}:skills[value sw "py"]', "value": "rust"}
    )
    assert acme.patch(url, json=replace).json[ACME]["skills"] == ["sql", "rust"]
    missing = patch_payload(
        {"op": "replace", "path": f'{ACME}:skills[value eq "cobol"]', "value": "x"}
    )
    assert acme.patch(url, json=missing).json["scimType"] == "noTarget"


def test_patch_by_the_extension_urn_sets_its_attributes(acme):
    user = create(acme, badgeNumber="B-1", skills=["python"], employeeId="E-7")
    url = f"{BASE}/Users/{user['id']}"
    # add: a multi-valued attribute gets the values appended; the others not given stay.
    add = patch_payload(
        {"op": "add", "path": ACME.lower(), "value": {"skills": ["go"], "costCenterCode": 7}}
    )
    response = acme.patch(url, json=add)
    assert response.status_code == 200, response.json
    assert response.json[ACME] == {
        "badgeNumber": "B-1",
        "skills": ["python", "go"],
        "employeeId": "E-7",
        "costCenterCode": 7,
    }
    # replace: the values given replace those there, multi-valued ones whole.
    replace = patch_payload(
        {"op": "Replace", "path": ACME, "value": {"skills": ["rust"], "contractor": "True"}}
    )
    response = acme.patch(url, json=replace)
    assert response.status_code == 200, response.json
    assert response.json[ACME] == {
        "badgeNumber": "B-1",
        "skills": ["rust"],
        "employeeId": "E-7",
        "costCenterCode": 7,
        "contractor": True,
    }
    assert acme.get(url).json == response.json


@pytest.mark.parametrize(
    ("value", "detail", "scim_type"),
    [
        pytest.param(
            {"colour": "red"},
            f"Unknown attribute in path '{ACME}:colour'",
            "invalidPath",
            id="unknown",
        ),
        pytest.param({"riskScore": 1}, "riskScore is readOnly", "mutability", id="readOnly"),
        pytest.param(
            {"employeeId": "E-8"},
            "employeeId is immutable and already set",
            "mutability",
            id="immutable",
        ),
        pytest.param(
            {"costCenterCode": "7"},
            f"{ACME}:costCenterCode must be an integer",
            "invalidValue",
            id="type",
        ),
    ],
)
def test_patch_by_the_extension_urn_validates_the_values(acme, value, detail, scim_type):
    user = create(acme, badgeNumber="B-1", employeeId="E-7")
    url = f"{BASE}/Users/{user['id']}"
    for op in ("add", "replace"):
        body = patch_payload({"op": op, "path": ACME, "value": value})
        response = acme.patch(url, json=body)
        assert response.status_code == 400
        assert response.json == error(400, detail, scim_type)
    assert acme.get(url).json == user


def test_remove_by_the_extension_urn_removes_it_and_its_schema(acme):
    user = create(acme, badgeNumber="B-1", skills=["go"], laptops=[{"value": "SN-1"}])
    url = f"{BASE}/Users/{user['id']}"
    response = acme.patch(url, json=patch_payload({"op": "remove", "path": ACME}))
    assert response.status_code == 200, response.json
    assert ACME not in response.json
    assert response.json["schemas"] == [USER_URN]
    assert acme.get(url).json == response.json
    query = {"filter": f"schemas eq {json.dumps(ACME)}"}
    assert acme.get(f"{BASE}/Users", query_string=query).json["totalResults"] == 0


def test_remove_by_the_extension_urn_keeps_an_immutable_attribute(acme):
    user = create(acme, badgeNumber="B-1", employeeId="E-7")
    url = f"{BASE}/Users/{user['id']}"
    response = acme.patch(url, json=patch_payload({"op": "remove", "path": ACME}))
    assert response.json == error(400, "employeeId is immutable and already set", "mutability")
    assert acme.get(url).json == user
