"""Listing and searching users (RFC 7644 §3.4.2) as Okta and Entra ID query them."""

from __future__ import annotations

from tests.conftest import BASE
from tests.payloads import (
    LIST_URN,
    found,
    patch_payload,
    search,
)

# ---------------------------------------------------------------------------------------------
# Okta's lookup before create


def test_okta_form_encoded_lookup_finds_the_user(client, create_user):
    user = create_user(userName="jane@example.com")
    response = search(
        client, query_string="filter=userName+eq+%22jane%40example.com%22&startIndex=1&count=100"
    )
    assert response.status_code == 200
    assert response.mimetype == "application/scim+json"
    assert response.json == {
        "schemas": [LIST_URN],
        "totalResults": 1,
        "startIndex": 1,
        "itemsPerPage": 1,
        "Resources": [user],
    }


def test_okta_lookup_of_an_unknown_user_is_an_empty_200(client, create_user):
    create_user(userName="someone.else@example.com")
    response = search(
        client, query_string="filter=userName+eq+%22jane%40example.com%22&startIndex=1&count=100"
    )
    assert response.status_code == 200
    assert response.json == {
        "schemas": [LIST_URN],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }


def test_empty_directory_lists_nothing(client):
    response = search(client)
    assert response.status_code == 200
    assert response.json == {
        "schemas": [LIST_URN],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }


def test_list_response_for_a_filter_with_no_match(client, create_user):
    create_user()
    response = search(client, filter='userName eq "nobody"')
    assert response.status_code == 200
    assert response.json == {
        "schemas": [LIST_URN],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }


def test_lookup_finds_a_deactivated_user(client, create_user):
    user = create_user(userName="jane@example.com")
    client.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload({"op": "replace", "value": {"active": False}}),
    )
    response = search(client, filter='userName eq "jane@example.com"')
    assert response.json["totalResults"] == 1
    assert response.json["Resources"][0]["active"] is False
    assert found(client, "active eq false") == {"jane@example.com"}


def test_deleted_users_are_not_found(client, create_user):
    user = create_user(userName="gone@example.com")
    create_user(userName="kept@example.com")
    assert client.delete(f"{BASE}/Users/{user['id']}").status_code == 204
    assert found(client, 'userName eq "gone@example.com"') == set()
    assert found(client, 'userName co "@example.com"') == {"kept@example.com"}
