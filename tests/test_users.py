"""Users CRUD as Okta drives it (RFC 7644 §3.3-3.6)."""

from __future__ import annotations

import pytest

from tests.conftest import BASE
from tests.payloads import (
    ENTERPRISE_URN,
    LIST_URN,
    USER_URN,
    error,
    patch_payload,
    user_payload,
    without_volatile,
)

OKTA_USER = {
    "schemas": [USER_URN],
    "externalId": "00u1abcd2EFGH3ijk4l5",
    "userName": "jane@example.com",
    "name": {"givenName": "Jane", "familyName": "Doe"},
    "displayName": "Jane Doe",
    "locale": "en-US",
    "active": True,
    "emails": [{"primary": True, "value": "jane@example.com", "type": "work"}],
    "meta": {"resourceType": "User"},
}


def test_create_returns_201_with_location_meta_and_etag(client):
    response = client.post(f"{BASE}/Users", json=user_payload(password="s3cret!"))
    assert response.status_code == 201
    assert response.mimetype == "application/scim+json"
    body = response.json
    assert without_volatile(body) == OKTA_USER
    location = f"http://localhost{BASE}/Users/{body['id']}"
    assert response.headers["Location"] == location
    assert body["meta"]["location"] == location
    assert body["meta"]["version"] == 'W/"1"'
    assert response.headers["ETag"] == 'W/"1"'
    assert body["meta"]["created"] == body["meta"]["lastModified"]
    assert body["meta"]["created"].endswith("Z")


def test_password_is_never_returned(client, create_user):
    user = create_user(password="s3cret!")
    assert "password" not in user
    assert "password" not in client.get(f"{BASE}/Users/{user['id']}").json
    listed = client.get(f"{BASE}/Users").json["Resources"][0]
    assert "password" not in listed


def test_create_accepts_plain_application_json(client):
    response = client.post(
        f"{BASE}/Users", data='{"userName": "plain@example.com"}', content_type="application/json"
    )
    assert response.status_code == 201
    assert response.json["active"] is True


def test_username_is_unique_case_insensitively(client, create_user):
    create_user(userName="ada@example.com")
    response = client.post(f"{BASE}/Users", json=user_payload(userName="ADA@example.com"))
    assert response.status_code == 409
    assert response.json == error(409, "userName 'ADA@example.com' is already taken", "uniqueness")


def test_get_unknown_user_is_404_with_scim_error(client):
    response = client.get(f"{BASE}/Users/does-not-exist")
    assert response.status_code == 404
    assert response.json == error(404, "User does-not-exist not found")


def test_get_returns_what_create_returned(client, create_user):
    user = create_user()
    response = client.get(f"{BASE}/Users/{user['id']}")
    assert response.status_code == 200
    assert response.json == user
    assert response.headers["ETag"] == user["meta"]["version"]


def test_put_replaces_the_user_and_bumps_version(client, create_user):
    user = create_user()
    body = user_payload(
        displayName="Jane Q. Doe",
        name={"givenName": "Jane", "familyName": "Doe", "middleName": "Q."},
        emails=[{"value": "jane.doe@example.com", "type": "work", "primary": True}],
        locale=None,
        id="ignored-read-only",
        meta={"created": "1999-01-01T00:00:00Z"},
    )
    response = client.put(f"{BASE}/Users/{user['id']}", json=body)
    assert response.status_code == 200
    assert response.json["id"] == user["id"]
    assert response.json["displayName"] == "Jane Q. Doe"
    assert response.json["name"]["middleName"] == "Q."
    assert "locale" not in response.json  # PUT replaces: what is not sent is gone
    assert response.json["meta"]["version"] == 'W/"2"'
    assert response.json["meta"]["created"] == user["meta"]["created"]
    assert client.get(f"{BASE}/Users/{user['id']}").json == response.json


def test_put_without_active_keeps_the_current_state(client, create_user):
    user = create_user()
    client.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload({"op": "replace", "value": {"active": False}}),
    )
    response = client.put(f"{BASE}/Users/{user['id']}", json=user_payload(active=None))
    assert response.status_code == 200
    assert response.json["active"] is False


def test_put_to_a_taken_username_is_409(client, create_user):
    create_user(userName="taken@example.com")
    other = create_user(userName="other@example.com")
    response = client.put(
        f"{BASE}/Users/{other['id']}", json=user_payload(userName="Taken@Example.com")
    )
    assert response.status_code == 409
    assert response.json["scimType"] == "uniqueness"


def test_okta_deactivate_and_reactivate(client, create_user):
    user = create_user()
    deactivate = patch_payload({"op": "replace", "value": {"active": False}})
    response = client.patch(f"{BASE}/Users/{user['id']}", json=deactivate)
    assert response.status_code == 200
    assert response.json["active"] is False
    assert response.json["meta"]["version"] == 'W/"2"'
    # Okta's lookup must still find a deactivated user, to reactivate instead of duplicating.
    lookup = client.get(f"{BASE}/Users", query_string={"filter": 'userName eq "jane@example.com"'})
    assert lookup.json["totalResults"] == 1
    reactivate = patch_payload({"op": "replace", "value": {"active": True}})
    response = client.patch(f"{BASE}/Users/{user['id']}", json=reactivate)
    assert response.json["active"] is True
    assert response.json["meta"]["version"] == 'W/"3"'


def test_delete_leaves_a_tombstone_that_answers_404(client, create_user):
    user = create_user()
    response = client.delete(f"{BASE}/Users/{user['id']}")
    assert response.status_code == 204
    assert response.data == b""
    url = f"{BASE}/Users/{user['id']}"
    not_found = error(404, f"User {user['id']} not found")
    assert client.get(url).json == not_found
    assert client.put(url, json=user_payload()).status_code == 404
    assert (
        client.patch(
            url, json=patch_payload({"op": "replace", "value": {"active": True}})
        ).status_code
        == 404
    )
    assert client.delete(url).status_code == 404
    listed = client.get(f"{BASE}/Users").json
    assert listed["totalResults"] == 0


def test_delete_frees_the_username_for_a_new_user(client, create_user):
    first = create_user()
    client.delete(f"{BASE}/Users/{first['id']}")
    second = create_user()
    assert second["id"] != first["id"]
    assert client.get(f"{BASE}/Users/{first['id']}").status_code == 404


def test_enterprise_extension_round_trips(client, create_user):
    enterprise = {
        "employeeNumber": "701984",
        "costCenter": "4130",
        "organization": "Universal Studios",
        "division": "Theme Park",
        "department": "Tour Operations",
        "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "ignored"},
    }
    user = create_user(schemas=[USER_URN, ENTERPRISE_URN], **{ENTERPRISE_URN: enterprise})
    assert user["schemas"] == [USER_URN, ENTERPRISE_URN]
    expected = dict(enterprise, manager={"value": "26118915-6090-4610-87e4-49d8ca9f808d"})
    assert user[ENTERPRISE_URN] == expected


def test_entra_manager_as_bare_id_is_stored_in_rfc_form(client, create_user):
    user = create_user(**{ENTERPRISE_URN: {"manager": "mgr-1"}})
    assert user[ENTERPRISE_URN] == {"manager": {"value": "mgr-1"}}


def test_every_core_attribute_round_trips(client, create_user):
    full = user_payload(
        name={
            "formatted": "Ms. Barbara J Jensen, III",
            "familyName": "Jensen",
            "givenName": "Barbara",
            "middleName": "Jane",
            "honorificPrefix": "Ms.",
            "honorificSuffix": "III",
        },
        nickName="Babs",
        profileUrl="https://login.example.com/bjensen",
        title="Tour Guide",
        userType="Employee",
        preferredLanguage="en-US",
        timezone="America/Los_Angeles",
        phoneNumbers=[{"value": "555-555-5555", "type": "work"}],
        ims=[{"value": "someaimhandle", "type": "aim"}],
        photos=[
            {"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"}
        ],
        addresses=[
            {
                "type": "work",
                "streetAddress": "100 Universal City Plaza",
                "locality": "Hollywood",
                "region": "CA",
                "postalCode": "91608",
                "country": "USA",
                "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA",
                "primary": True,
            }
        ],
        entitlements=[{"value": "pro"}],
        roles=[{"value": "admin", "primary": True}],
        x509Certificates=[{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjEL"}],
    )
    user = create_user(**{k: v for k, v in full.items() if k != "schemas"})
    for key, value in full.items():
        if key not in ("schemas", "groups"):
            assert user[key] == value, key


@pytest.mark.parametrize(
    ("body", "detail", "scim_type"),
    [
        pytest.param(
            {"schemas": [USER_URN]}, "userName is required", "invalidValue", id="missing-username"
        ),
        pytest.param(
            {"userName": 42}, "userName must be a string", "invalidValue", id="username-not-string"
        ),
        pytest.param(
            {"userName": "a", "active": "maybe"},
            "active must be a boolean",
            "invalidValue",
            id="bad-boolean",
        ),
        pytest.param(
            {"userName": "a", "emails": {"value": "x"}},
            "emails must be a list",
            "invalidValue",
            id="emails-not-list",
        ),
        pytest.param(
            {"userName": "a", "name": "Jane"},
            "name must be an object",
            "invalidValue",
            id="name-not-object",
        ),
        pytest.param(
            {"userName": "a", "shoeSize": 9},
            "Unknown attribute 'shoeSize' for resource type User",
            "invalidSyntax",
            id="unknown-attribute",
        ),
        pytest.param(
            {"userName": "a", "name": {"nick": "x"}},
            "Unknown attribute 'name.nick'",
            "invalidSyntax",
            id="unknown-sub-attribute",
        ),
        pytest.param(
            {"schemas": ["urn:example:Other"], "userName": "a"},
            f"schemas must include {USER_URN}",
            "invalidSyntax",
            id="wrong-schema",
        ),
        pytest.param(
            {
                "userName": "a",
                "emails": [{"value": "a@x", "primary": True}, {"value": "b@x", "primary": True}],
            },
            "emails may have at most one primary value (RFC 7643 §2.4)",
            "invalidValue",
            id="two-primaries",
        ),
        pytest.param(
            {"userName": "a", "password": ""},
            "password must be a non-empty string",
            "invalidValue",
            id="empty-password",
        ),
        pytest.param(
            {"userName": "a", "x509Certificates": [{"value": "not base64!"}]},
            "x509Certificates.value must be valid base64",
            "invalidValue",
            id="bad-binary",
        ),
    ],
)
def test_invalid_create_is_400_and_writes_nothing(client, body, detail, scim_type):
    response = client.post(f"{BASE}/Users", json=body)
    assert response.status_code == 400
    assert response.json == error(400, detail, scim_type)
    assert client.get(f"{BASE}/Users").json["totalResults"] == 0


def test_list_response_shape(client, create_user):
    create_user()
    response = client.get(f"{BASE}/Users")
    assert response.status_code == 200
    body = response.json
    assert body["schemas"] == [LIST_URN]
    assert (body["totalResults"], body["startIndex"], body["itemsPerPage"]) == (1, 1, 1)
    assert without_volatile(body["Resources"][0]) == OKTA_USER


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("ΟΔΟΣ@example.com", "οδοσ@example.com", id="greek-final-sigma"),
        pytest.param("MÜLLER@example.com", "müller@example.com", id="umlaut"),
        pytest.param("STRASSE@example.com", "straße@example.com", id="sharp-s"),
    ],
)
def test_username_uniqueness_folds_all_of_unicode(client, create_user, first, second):
    create_user(userName=first)
    response = client.post(f"{BASE}/Users", json=user_payload(userName=second))
    assert response.status_code == 409
    query = {"filter": f'userName eq "{second}"'}
    assert client.get(f"{BASE}/Users", query_string=query).json["totalResults"] == 1


def test_nul_character_in_a_string_is_400(client):
    response = client.post(f"{BASE}/Users", json=user_payload(userName="bad\u0000name"))
    assert response.status_code == 400
    assert response.json == error(400, "userName must not contain NUL characters", "invalidValue")
