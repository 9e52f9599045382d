"""Okta's SCIM 2.0 connector, request by request, as ../shared/SCIM.md records it."""

from __future__ import annotations

from tests.conftest import BASE
from tests.payloads import GROUP_URN, LIST_URN, USER_URN, error, patch_payload

OKTA_HEADERS = {
    # Okta sends these on every request, bodiless GETs and DELETEs included.
    "Content-Type": "application/json; charset=utf-8",
    "Accept": "application/scim+json",
    "Accept-Charset": "utf-8",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": "Okta SCIM Client 1.0.0",
}
EMPTY_LIST = {
    "schemas": [LIST_URN],
    "totalResults": 0,
    "startIndex": 1,
    "itemsPerPage": 0,
    "Resources": [],
}


def okta(client, method, path, body=None, query=""):
    url = f"{BASE}{path}{query}"
    return client.open(url, method=method, json=body, headers=OKTA_HEADERS)


def test_user_lifecycle(client):
    lookup = "?filter=userName+eq+%22jane%40example.com%22&startIndex=1&count=100"
    assert okta(client, "GET", "/Users", query=lookup).json == EMPTY_LIST

    create = {
        "schemas": [USER_URN],
        "userName": "jane@example.com",
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"primary": True, "value": "jane@example.com", "type": "work"}],
        "displayName": "Jane Doe",
        "locale": "en-US",
        "externalId": "00u1abcd2EFGH3ijk4l5",
        "groups": [],
        "password": "1mP0ssible!",
        "active": True,
    }
    created = okta(client, "POST", "/Users", create)
    assert created.status_code == 201
    user_id = created.json["id"]
    assert okta(client, "POST", "/Users", create).json == error(
        409, "userName 'jane@example.com' is already taken", "uniqueness"
    )

    found = okta(client, "GET", "/Users", query=lookup).json
    assert (found["totalResults"], found["Resources"][0]["id"]) == (1, user_id)
    assert okta(client, "GET", f"/Users/{user_id}").json == created.json

    put = dict(create, name={"givenName": "Jane", "familyName": "Smith"}, displayName="Jane Smith")
    del put["password"]
    updated = okta(client, "PUT", f"/Users/{user_id}", put)
    assert (updated.status_code, updated.json["name"]["familyName"]) == (200, "Smith")

    rename = patch_payload({"op": "replace", "value": {"name.givenName": "Janet"}})
    assert okta(client, "PATCH", f"/Users/{user_id}", rename).json["name"]["givenName"] == "Janet"
    password = patch_payload({"op": "replace", "value": {"password": "n3w-Passw0rd"}})
    assert "password" not in okta(client, "PATCH", f"/Users/{user_id}", password).json

    deactivate = patch_payload({"op": "replace", "value": {"active": False}})
    assert okta(client, "PATCH", f"/Users/{user_id}", deactivate).json["active"] is False
    # A deactivated user is still found by the lookup, so Okta reactivates instead of duplicating.
    assert okta(client, "GET", "/Users", query=lookup).json["Resources"][0]["active"] is False
    reactivate = patch_payload({"op": "replace", "value": {"active": True}})
    assert okta(client, "PATCH", f"/Users/{user_id}", reactivate).json["active"] is True

    assert okta(client, "DELETE", f"/Users/{user_id}").status_code == 204
    assert okta(client, "GET", f"/Users/{user_id}").json == error(404, f"User {user_id} not found")
    assert okta(client, "GET", "/Users", query=lookup).json == EMPTY_LIST


def test_group_push(client, create_user):
    jane = create_user()
    bob = create_user(userName="bob@example.com", displayName="Bob", externalId="00u2")
    lookup = "?filter=displayName+eq+%22Engineering%22&startIndex=1&count=100"
    assert okta(client, "GET", "/Groups", query=lookup).json == EMPTY_LIST

    created = okta(
        client,
        "POST",
        "/Groups",
        {"schemas": [GROUP_URN], "displayName": "Engineering", "members": []},
    )
    assert created.status_code == 201
    group_id = created.json["id"]
    assert okta(client, "GET", "/Groups", query=lookup).json["Resources"][0]["id"] == group_id

    add = patch_payload(
        {"op": "replace", "value": {"id": group_id, "displayName": "Engineering"}},
        {
            "op": "add",
            "path": "members",
            "value": [{"value": jane["id"], "display": "jane@example.com"}],
        },
        {
            "op": "add",
            "path": "members",
            "value": [{"value": bob["id"], "display": "bob@example.com"}],
        },
    )
    assert okta(client, "PATCH", f"/Groups/{group_id}", add).status_code == 204
    members = okta(client, "GET", f"/Groups/{group_id}").json["members"]
    assert sorted(m["value"] for m in members) == sorted([jane["id"], bob["id"]])
    assert okta(client, "GET", f"/Users/{jane['id']}").json["groups"][0]["value"] == group_id

    remove = patch_payload({"op": "remove", "path": f'members[value eq "{jane["id"]}"]'})
    assert okta(client, "PATCH", f"/Groups/{group_id}", remove).status_code == 204
    assert [m["value"] for m in okta(client, "GET", f"/Groups/{group_id}").json["members"]] == [
        bob["id"]
    ]
    assert "groups" not in okta(client, "GET", f"/Users/{jane['id']}").json

    rename = patch_payload({"op": "replace", "value": {"id": group_id, "displayName": "Platform"}})
    assert okta(client, "PATCH", f"/Groups/{group_id}", rename).status_code == 204
    push_empty = patch_payload(
        {"op": "replace", "value": {"id": group_id, "displayName": "Platform", "members": []}}
    )
    assert okta(client, "PATCH", f"/Groups/{group_id}", push_empty).status_code == 204
    group = okta(client, "GET", f"/Groups/{group_id}").json
    assert (group["displayName"], "members" in group, group["meta"]["version"]) == (
        "Platform",
        False,
        'W/"5"',
    )

    # Apps built with the App Integration Wizard send membership as a PUT of the whole list.
    put = {"schemas": [GROUP_URN], "displayName": "Platform", "members": [{"value": jane["id"]}]}
    assert [
        m["value"] for m in okta(client, "PUT", f"/Groups/{group_id}", put).json["members"]
    ] == [jane["id"]]

    assert okta(client, "DELETE", f"/Groups/{group_id}").status_code == 204
    assert okta(client, "GET", f"/Groups/{group_id}").status_code == 404
    assert "groups" not in okta(client, "GET", f"/Users/{jane['id']}").json


def test_import_pages_through_every_user_and_group(client, create_user):
    for n in range(250):
        create_user(userName=f"user{n:03d}@example.com", externalId=None, active=n % 3 != 0)
    seen = []
    start = 1
    while True:
        page = okta(client, "GET", "/Users", query=f"?startIndex={start}&count=100").json
        assert page["totalResults"] == 250
        seen += [u["userName"] for u in page["Resources"]]
        if start + page["itemsPerPage"] > page["totalResults"]:
            break
        assert page["itemsPerPage"] == 100  # Okta stops importing on a short page
        start += page["itemsPerPage"]
    assert sorted(seen) == [f"user{n:03d}@example.com" for n in range(250)]
