"""Listing and searching users (RFC 7644 §3.4.2) as Okta and Entra ID query them."""

from __future__ import annotations

import pytest

from tests.conftest import BASE
from tests.payloads import (
    ENTERPRISE_URN,
    LIST_URN,
    USER_URN,
    error,
    found,
    listed_names,
    patch_payload,
    search,
    without_volatile,
)

CORE = USER_URN


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


# ---------------------------------------------------------------------------------------------
# Pagination (RFC 7644 §3.4.2.4)


@pytest.fixture
def numbered(create_user):
    """23 users created in order: u00 ... u22."""
    return [create_user(userName=f"u{i:02d}")["userName"] for i in range(23)]


def page(client, **params):
    response = search(client, **params)
    assert response.status_code == 200, response.json
    body = response.json
    return (body["totalResults"], body["startIndex"], body["itemsPerPage"]), listed_names(response)


def test_start_index_is_one_based(client, numbered):
    assert page(client, startIndex=1, count=3) == ((23, 1, 3), numbered[0:3])
    assert page(client, startIndex=2, count=3) == ((23, 2, 3), numbered[1:4])
    assert page(client, startIndex=22, count=5) == ((23, 22, 2), numbered[21:])
    assert page(client, startIndex=23, count=5) == ((23, 23, 1), numbered[22:])
    assert page(client, startIndex=24, count=5) == ((23, 24, 0), [])
    assert page(client, startIndex=10**20) == ((23, 10**20, 0), [])


@pytest.mark.parametrize("start_index", ["0", "-5", "-99999999999999999999"])
def test_start_index_below_one_is_one(client, numbered, start_index):
    assert page(client, startIndex=start_index, count=2) == ((23, 1, 2), numbered[:2])


def test_count_zero_returns_only_the_total(client, numbered):
    response = search(client, count=0)
    assert response.status_code == 200
    assert response.json == {
        "schemas": [LIST_URN],
        "totalResults": 23,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }
    assert page(client, count=0, filter='userName sw "u1"') == ((10, 1, 0), [])


@pytest.mark.parametrize("count", ["-1", "-100"])
def test_negative_count_is_zero(client, numbered, count):
    assert page(client, count=count) == ((23, 1, 0), [])


def test_default_count_is_100(client, numbered):
    assert page(client) == ((23, 1, 23), numbered)


def test_count_is_clamped_to_the_maximum(client, create_user):
    for i in range(201):
        create_user(userName=f"user{i:03d}")
    assert page(client, count=1000)[0] == (201, 1, 200)
    assert page(client, count=200)[0] == (201, 1, 200)
    assert page(client, count=100)[0] == (201, 1, 100)
    assert page(client, count=1000, startIndex=2)[0] == (201, 2, 200)
    assert page(client, count=1000, startIndex=101)[0] == (201, 101, 101)


def test_total_counts_matches_on_every_page(client, numbered):
    assert page(client, filter='userName sw "u1"', startIndex=4, count=3) == (
        (10, 4, 3),
        ["u13", "u14", "u15"],
    )


def test_crawl_sees_every_user_exactly_once(client, numbered):
    seen: list[str] = []
    start = 1
    while True:
        (total, start_index, items), names = page(client, startIndex=start, count=7)
        assert (total, start_index, items) == (23, start, len(names))
        seen += names
        if start + items > total:  # Okta's stop condition
            break
        start += items
    assert seen == numbered
    assert start == 22


def test_crawl_order_is_stable_with_sort_by(client, create_user):
    # Many equal sort keys: the tiebreak must make pages disjoint.
    for i in range(12):
        create_user(userName=f"u{i:02d}", title=("A", "B")[i % 2])
    seen = []
    for start in (1, 6, 11):
        seen += page(client, sortBy="title", startIndex=start, count=5)[1]
    assert sorted(seen) == [f"u{i:02d}" for i in range(12)]
    assert seen[:6] == ["u00", "u02", "u04", "u06", "u08", "u10"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        pytest.param({"startIndex": "abc"}, "startIndex must be an integer, got 'abc'", id="abc"),
        pytest.param({"startIndex": "1.5"}, "startIndex must be an integer, got '1.5'", id="1.5"),
        pytest.param({"count": "ten"}, "count must be an integer, got 'ten'", id="count-ten"),
    ],
)
def test_non_integer_paging_is_400(client, params, detail):
    response = search(client, **params)
    assert response.status_code == 400
    assert response.json == error(400, detail, "invalidValue")


# ---------------------------------------------------------------------------------------------
# Sorting (RFC 7644 §3.4.2.3)


@pytest.fixture
def mixed_case(create_user):
    for name in ("bob", "Alice", "carol", "Dave", "alfred"):
        create_user(userName=name)


def test_sort_by_username_ascending_is_case_insensitive(client, mixed_case):
    expected = ["alfred", "Alice", "bob", "carol", "Dave"]
    assert listed_names(search(client, sortBy="userName")) == expected
    assert listed_names(search(client, sortBy="userName", sortOrder="ascending")) == expected
    assert listed_names(search(client, sortBy="USERNAME", sortOrder="Ascending")) == expected


def test_sort_by_username_descending(client, mixed_case):
    response = search(client, sortBy="userName", sortOrder="descending")
    assert listed_names(response) == ["Dave", "carol", "bob", "Alice", "alfred"]


def test_sort_then_paginate(client, mixed_case):
    response = search(client, sortBy="userName", startIndex=2, count=2)
    assert listed_names(response) == ["Alice", "bob"]
    assert response.json["totalResults"] == 5


def test_sort_by_other_attributes(client, directory):
    ada, grace, alan, edsger = (
        directory[k]["userName"] for k in ("ada", "grace", "alan", "edsger")
    )
    assert listed_names(search(client, sortBy="name.familyName")) == [edsger, grace, ada, alan]
    by_title = listed_names(search(client, sortBy="title", sortOrder="descending"))
    assert by_title == [grace, edsger, ada, alan]  # absent values first: greater than any
    assert listed_names(search(client, sortBy="meta.created", sortOrder="descending")) == [
        edsger,
        alan,
        grace,
        ada,
    ]
    urn_sorted = listed_names(search(client, sortBy=f"{CORE}:displayName"))
    assert urn_sorted == [ada, alan, edsger, grace]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        pytest.param({"sortBy": "shoeSize"}, "sortBy: unknown attribute 'shoeSize'", id="unknown"),
        pytest.param(
            {"sortBy": "name.nick"}, "sortBy: unknown attribute 'name.nick'", id="unknown-sub"
        ),
        pytest.param(
            {"sortBy": "userName", "sortOrder": "up"},
            "sortOrder must be 'ascending' or 'descending', got 'up'",
            id="bad-order",
        ),
    ],
)
def test_bad_sort_is_400(client, create_user, params, detail):
    create_user()
    response = search(client, **params)
    assert response.status_code == 400
    assert response.json == error(400, detail, "invalidValue")


# ---------------------------------------------------------------------------------------------
# attributes / excludedAttributes (RFC 7644 §3.4.2.5)


@pytest.fixture
def jane(create_user):
    return create_user(
        schemas=[USER_URN, ENTERPRISE_URN],
        **{ENTERPRISE_URN: {"department": "Tour Operations", "employeeNumber": "42"}},
    )


def only_resource(response) -> dict:
    assert response.status_code == 200, response.json
    assert response.json["totalResults"] == 1
    return response.json["Resources"][0]


def test_attributes_username_returns_only_the_minimum(client, jane):
    resource = only_resource(search(client, attributes="userName"))
    assert resource == {
        "schemas": [USER_URN],  # the extension is not in the response
        "id": jane["id"],
        "userName": "jane@example.com",
        "meta": {"resourceType": "User"},
    }


def test_attributes_with_a_filter_and_paging(client, jane):
    response = search(
        client, filter='userName eq "jane@example.com"', attributes="userName", count=1
    )
    assert response.json["Resources"] == [
        {
            "schemas": [USER_URN],  # the extension is not in the response
            "id": jane["id"],
            "userName": "jane@example.com",
            "meta": {"resourceType": "User"},
        }
    ]


def test_excluded_attributes_emails(client, jane):
    resource = only_resource(search(client, excludedAttributes="emails"))
    expected = dict(jane)
    del expected["emails"]
    assert resource == expected


def test_excluded_attributes_several_and_sub_attribute(client, jane):
    resource = only_resource(search(client, excludedAttributes="emails, name.familyName,locale"))
    expected = dict(jane, name={"givenName": "Jane"})
    del expected["emails"], expected["locale"]
    assert resource == expected


def test_excluded_attributes_cannot_remove_always_returned(client, jane):
    resource = only_resource(search(client, excludedAttributes="id,schemas,userName"))
    assert resource["id"] == jane["id"]
    assert resource["schemas"] == [USER_URN, ENTERPRISE_URN]
    assert "userName" not in resource


def test_attributes_sub_attribute(client, jane):
    resource = only_resource(search(client, attributes="name.givenName"))
    assert without_volatile(resource) == {
        "schemas": [USER_URN],  # the extension is not in the response
        "name": {"givenName": "Jane"},
        "meta": {"resourceType": "User"},
    }


def test_attributes_multi_valued_sub_attribute(client, jane):
    resource = only_resource(search(client, attributes="emails.value,displayName"))
    assert without_volatile(resource) == {
        "schemas": [USER_URN],  # the extension is not in the response
        "displayName": "Jane Doe",
        "emails": [{"value": "jane@example.com"}],
        "meta": {"resourceType": "User"},
    }


def test_attributes_urn_qualified(client, jane):
    attributes = f"{USER_URN}:userName,{ENTERPRISE_URN}:department,{USER_URN}:name.familyName"
    resource = only_resource(search(client, attributes=attributes))
    assert without_volatile(resource) == {
        "schemas": [USER_URN, ENTERPRISE_URN],
        "userName": "jane@example.com",
        "name": {"familyName": "Doe"},
        ENTERPRISE_URN: {"department": "Tour Operations"},
        "meta": {"resourceType": "User"},
    }


def test_excluded_attributes_urn_qualified(client, jane):
    resource = only_resource(search(client, excludedAttributes=f"{ENTERPRISE_URN}:department"))
    assert resource[ENTERPRISE_URN] == {"employeeNumber": "42"}


def test_attributes_meta_sub_attribute_keeps_resource_type(client, jane):
    resource = only_resource(search(client, attributes="meta.lastModified"))
    assert resource == {
        "schemas": [USER_URN],  # the extension is not in the response
        "id": jane["id"],
        "meta": {"resourceType": "User", "lastModified": jane["meta"]["lastModified"]},
    }


def test_excluded_meta_keeps_resource_type(client, jane):
    resource = only_resource(search(client, excludedAttributes="meta"))
    assert resource["meta"] == {"resourceType": "User"}


def test_attributes_unknown_name_selects_nothing(client, jane):
    resource = only_resource(search(client, attributes="shoeSize,urn:example:x:y"))
    assert resource == {
        "schemas": [USER_URN],  # the extension is not in the response
        "id": jane["id"],
        "meta": {"resourceType": "User"},
    }


def test_password_is_never_returned_even_when_asked_for(client, create_user):
    create_user(password="s3cret!")
    resource = only_resource(search(client, attributes="password,userName"))
    assert "password" not in resource
