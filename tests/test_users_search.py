"""Listing and searching users (RFC 7644 §3.4.2) as Okta and Entra ID query them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.conftest import BASE
from tests.payloads import (
    ENTERPRISE_URN,
    LIST_URN,
    USER_URN,
    error,
    found,
    patch_payload,
    without_volatile,
)

CORE = USER_URN


def search(client, query_string=None, **params):
    """GET /Users with a raw query string or with parameters (which the client URL-encodes)."""
    return client.get(f"{BASE}/Users", query_string=query_string if query_string else params)


def user_names(response) -> list[str]:
    assert response.status_code == 200, response.json
    return [resource["userName"] for resource in response.json["Resources"]]


@pytest.fixture
def directory(create_user):
    """A handful of users that differ in every attribute the filter tests query."""

    def person(user_name, given, family, email_type="work", **overrides):
        return create_user(
            userName=user_name,
            name={"givenName": given, "familyName": family},
            displayName=f"{given} {family}",
            emails=[{"value": user_name, "type": email_type, "primary": True}],
            externalId=f"ext-{given}",
            **overrides,
        )

    return {
        "ada": person("ada@example.com", "Ada", "Lovelace", title="Engineer"),
        "grace": person("grace@example.org", "Grace", "Hopper", email_type="home"),
        "alan": person("alan@example.com", "Alan", "Turing", title="Engineer", active=False),
        "edsger": person("edsger@example.net", "Edsger", "Dijkstra", title="Professor"),
    }


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
# Attribute operators


@pytest.mark.parametrize(
    "filter_text",
    [
        pytest.param('userName eq "JANE@Example.COM"', id="upper-case"),
        pytest.param('USERNAME eq "jane@example.com"', id="attribute-name-case"),
        pytest.param('userName EQ "jane@example.com"', id="operator-case"),
        pytest.param('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "Jane@example.com"'),
    ],
)
def test_username_eq_is_case_insensitive(client, create_user, filter_text):
    create_user(userName="jane@example.com")
    create_user(userName="jane@example.co")
    assert found(client, filter_text) == {"jane@example.com"}


def test_username_eq_folds_non_ascii_case(client, create_user):
    create_user(userName="müller@x")
    create_user(userName="muller@x")
    assert found(client, 'userName eq "MÜLLER@x"') == {"müller@x"}
    assert found(client, 'userName sw "MÜ"') == {"müller@x"}


def test_display_name_eq_folds_non_ascii_case(client, create_user):
    create_user(userName="a", displayName="Jürgen Müller")
    create_user(userName="b", displayName="Jurgen Muller")
    create_user(userName="c", displayName="İstanbul")
    assert found(client, 'displayName eq "JÜRGEN MÜLLER"') == {"a"}
    assert found(client, 'displayName co "ÜRGEN"') == {"a"}
    # Python's "İ".lower() differs from PostgreSQL's: both sides must fold the same way.
    assert found(client, 'displayName eq "İSTANBUL"') == {"c"}
    assert found(client, 'displayName sw "İst"') == {"c"}
    assert found(client, 'name.givenName eq "JANE" and displayName ew "BUL"') == {"c"}
    assert found(client, 'emails.value eq "JANE@EXAMPLE.COM"') == {"a", "b", "c"}


def test_external_id_eq_is_case_exact(client, directory):
    assert found(client, 'externalId eq "ext-Ada"') == {"ada@example.com"}
    assert found(client, 'externalId eq "EXT-ADA"') == set()
    assert found(client, 'externalId sw "ext-A"') == {"ada@example.com", "alan@example.com"}
    assert found(client, 'externalId sw "ext-a"') == set()


def test_id_eq_is_case_exact(client, directory):
    ada = directory["ada"]["id"]
    assert found(client, f'id eq "{ada}"') == {"ada@example.com"}
    assert found(client, f'id eq "{ada.upper()}"') == set()
    # Entra's Test Connection looks up a random GUID and expects an empty list.
    assert found(client, 'id eq "00000000-0000-4000-8000-000000000000"') == set()


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param('emails.value eq "ADA@example.com"', {"ada"}, id="emails.value-eq"),
        pytest.param('emails eq "grace@EXAMPLE.org"', {"grace"}, id="emails-means-value"),
        pytest.param('emails.value ew ".COM"', {"ada", "alan"}, id="emails.value-ew"),
        pytest.param('emails.type eq "HOME"', {"grace"}, id="emails.type-case-insensitive"),
        pytest.param('displayName eq "ada lovelace"', {"ada"}, id="displayName-eq"),
        pytest.param('displayName ne "Ada Lovelace"', {"grace", "alan", "edsger"}, id="ne"),
        pytest.param('name.familyName eq "HOPPER"', {"grace"}, id="name.familyName"),
        pytest.param('name.givenName sw "a"', {"ada", "alan"}, id="name.givenName-sw"),
        pytest.param('title eq "engineer"', {"ada", "alan"}, id="json-attribute-eq"),
        pytest.param('title co "ESS"', {"edsger"}, id="json-attribute-co"),
        pytest.param("title pr", {"ada", "alan", "edsger"}, id="json-attribute-pr"),
        pytest.param("not (title pr)", {"grace"}, id="not-pr"),
        pytest.param('title ne "Engineer"', {"grace", "edsger"}, id="ne-includes-absent"),
        pytest.param("active eq true", {"ada", "grace", "edsger"}, id="active-true"),
        pytest.param("active eq false", {"alan"}, id="active-false"),
        pytest.param("active ne true", {"alan"}, id="active-ne"),
        pytest.param("active pr", {"ada", "grace", "alan", "edsger"}, id="active-pr"),
        pytest.param("nickName pr", set(), id="absent-pr"),
        pytest.param("nickName eq null", {"ada", "grace", "alan", "edsger"}, id="eq-null"),
        pytest.param('userName gt "b"', {"grace", "edsger"}, id="string-gt"),
        pytest.param('userName le "ALAN@example.com"', {"ada", "alan"}, id="string-le"),
    ],
)
def test_attribute_operators(client, directory, filter_text, expected):
    assert found(client, filter_text) == {directory[key]["userName"] for key in expected}


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param('title eq "Engineer" and active eq true', {"ada"}, id="and"),
        pytest.param(
            'name.givenName eq "Grace" or name.givenName eq "Edsger"', {"grace", "edsger"}, id="or"
        ),
        # RFC 7644 §3.4.2.2: "and" binds tighter, so this is Grace or (Ada and inactive): no Ada.
        pytest.param(
            'name.givenName eq "Grace" or name.givenName eq "Ada" and active eq false',
            {"grace"},
            id="and-binds-tighter-than-or",
        ),
        pytest.param(
            'name.givenName eq "Ada" and active eq false or name.givenName eq "Grace"',
            {"grace"},
            id="and-binds-tighter-on-the-left",
        ),
        pytest.param(
            '(name.givenName eq "Grace" or name.givenName eq "Ada") and active eq true',
            {"grace", "ada"},
            id="parentheses-override",
        ),
        pytest.param(
            'title eq "Engineer" and (active eq false or name.givenName eq "Ada")',
            {"ada", "alan"},
            id="parenthesised-or-inside-and",
        ),
        pytest.param(
            'not (name.givenName eq "Grace" or name.givenName eq "Ada" and active eq false)',
            {"ada", "alan", "edsger"},
            id="precedence-inside-not",
        ),
        pytest.param('not (title eq "Engineer")', {"grace", "edsger"}, id="not"),
        pytest.param(
            'not (title eq "Engineer") and not (userName ew ".net")', {"grace"}, id="two-nots"
        ),
        pytest.param(
            'userName sw "a" and userName ew ".com" and not (active eq false)',
            {"ada"},
            id="and-chain",
        ),
        pytest.param(
            'name.givenName eq "Ada" Or name.givenName eq "Alan" AND active eq false',
            {"ada", "alan"},
            id="logical-operators-any-case",
        ),
    ],
)
def test_logical_operators(client, directory, filter_text, expected):
    assert found(client, filter_text) == {directory[key]["userName"] for key in expected}


def test_value_filter_matches_within_one_element(client, create_user):
    # Both conditions hold, but for different emails: must not match.
    create_user(
        userName="split",
        emails=[
            {"value": "split@other.org", "type": "work"},
            {"value": "split@example.com", "type": "home"},
        ],
    )
    create_user(userName="work", emails=[{"value": "work@EXAMPLE.com", "type": "work"}])
    create_user(userName="none", emails=[])
    assert found(client, 'emails[type eq "work" and value co "@example.com"]') == {"work"}
    assert found(client, 'emails[type eq "work"]') == {"split", "work"}
    assert found(client, 'emails[type eq "home" or value ew "@other.org"]') == {"split"}
    assert found(client, 'emails[not (type eq "work")]') == {"split"}
    assert found(client, 'userName eq "none" or emails[type eq "work"]') == {
        "split",
        "work",
        "none",
    }
    assert found(client, 'not (emails[type eq "work"])') == {"none"}
    assert found(client, "emails pr") == {"split", "work"}


def test_entra_group_style_value_filter_with_primary(client, create_user):
    create_user(
        userName="a",
        emails=[
            {"value": "a@x", "type": "work", "primary": False},
            {"value": "b@x", "primary": True},
        ],
    )
    create_user(userName="b", emails=[{"value": "c@x", "type": "work", "primary": True}])
    assert found(client, 'emails[type eq "work" and primary eq true]') == {"b"}
    assert found(client, "emails.primary eq true") == {"a", "b"}


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        pytest.param("co", "100%", {"100%-off"}, id="co-percent"),
        pytest.param("co", "a_b", {"a_b"}, id="co-underscore"),
        pytest.param("sw", "a_", {"a_b"}, id="sw-underscore"),
        pytest.param("ew", "%-off", {"100%-off"}, id="ew-percent"),
        pytest.param("co", "\\\\", {"back\\slash"}, id="co-backslash"),
        pytest.param("co", "/", {"sl/ash"}, id="co-slash"),
        pytest.param("co", "%", {"100%-off"}, id="co-lone-percent"),
        pytest.param("co", "_", {"a_b"}, id="co-lone-underscore"),
        pytest.param("sw", "", {"100%-off", "a_b", "axb", "1000-off", "back\\slash", "sl/ash"}),
    ],
)
def test_like_wildcards_match_literally(client, create_user, operator, value, expected):
    for name in ("100%-off", "a_b", "axb", "1000-off", "back\\slash", "sl/ash"):
        create_user(userName=name)
    assert found(client, f'userName {operator} "{value}"') == expected


def test_substring_operators_on_display_name_escape_wildcards(client, create_user):
    create_user(userName="a", displayName="50% Off")
    create_user(userName="b", displayName="500 Off")
    assert found(client, 'displayName co "0% o"') == {"a"}
    assert found(client, 'displayName sw "50%"') == {"a"}


def test_last_modified_compares_instants_across_offsets(client, create_user):
    first = create_user(userName="first")
    time.sleep(0.01)
    second = create_user(userName="second")
    cutoff = datetime.fromisoformat(second["meta"]["lastModified"]) - timedelta(microseconds=500)
    in_utc = cutoff.astimezone(UTC).isoformat().replace("+00:00", "Z")
    in_new_york = cutoff.astimezone(timezone(timedelta(hours=-5))).isoformat()
    in_plus_0530 = cutoff.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    for text in (in_utc, in_new_york, in_plus_0530):
        assert found(client, f'meta.lastModified gt "{text}"') == {"second"}, text
        assert found(client, f'meta.lastModified lt "{text}"') == {"first"}, text
    assert found(client, f'meta.lastModified ge "{first["meta"]["lastModified"]}"') == {
        "first",
        "second",
    }


def test_last_modified_matches_the_value_the_service_returned(client, create_user):
    """An IdP filters with the timestamp it was given (milliseconds); that must find the user."""
    first = create_user(userName="first")
    time.sleep(0.01)
    second = create_user(userName="second")
    stamp = first["meta"]["lastModified"]
    assert found(client, f'meta.lastModified eq "{stamp}"') == {"first"}
    assert found(client, f'meta.lastModified le "{stamp}"') == {"first"}
    assert found(client, f'meta.lastModified gt "{stamp}"') == {"second"}
    assert found(client, f'meta.lastModified ge "{second["meta"]["lastModified"]}"') == {"second"}
    assert found(client, f'meta.lastModified lt "{second["meta"]["lastModified"]}"') == {"first"}
    assert found(client, f'meta.created eq "{second["meta"]["created"]}"') == {"second"}
    assert found(client, f'meta.lastModified ne "{stamp}"') == {"second"}


def test_enterprise_attributes_by_urn(client, create_user):
    create_user(
        userName="a",
        **{ENTERPRISE_URN: {"department": "Tour Operations", "manager": {"value": "mgr-1"}}},
    )
    create_user(userName="b", **{ENTERPRISE_URN: {"department": "Finance", "manager": "mgr-2"}})
    create_user(userName="c")
    urn = ENTERPRISE_URN
    assert found(client, f'{urn}:department eq "tour operations"') == {"a"}
    assert found(client, f'{urn}:manager.value eq "mgr-2"') == {"b"}
    assert found(client, f'{urn}:manager eq "mgr-1"') == {"a"}
    assert found(client, f"{urn}:department pr") == {"a", "b"}
    assert found(client, f'{urn.upper()}:DEPARTMENT eq "FINANCE"') == {"b"}
    assert found(client, f'{CORE}:name.givenName eq "jane" and {urn}:department sw "T"') == {"a"}


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
    return (body["totalResults"], body["startIndex"], body["itemsPerPage"]), user_names(response)


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
    assert user_names(search(client, sortBy="userName")) == expected
    assert user_names(search(client, sortBy="userName", sortOrder="ascending")) == expected
    assert user_names(search(client, sortBy="USERNAME", sortOrder="Ascending")) == expected


def test_sort_by_username_descending(client, mixed_case):
    response = search(client, sortBy="userName", sortOrder="descending")
    assert user_names(response) == ["Dave", "carol", "bob", "Alice", "alfred"]


def test_sort_then_paginate(client, mixed_case):
    response = search(client, sortBy="userName", startIndex=2, count=2)
    assert user_names(response) == ["Alice", "bob"]
    assert response.json["totalResults"] == 5


def test_sort_by_other_attributes(client, directory):
    ada, grace, alan, edsger = (
        directory[k]["userName"] for k in ("ada", "grace", "alan", "edsger")
    )
    assert user_names(search(client, sortBy="name.familyName")) == [edsger, grace, ada, alan]
    by_title = user_names(search(client, sortBy="title", sortOrder="descending"))
    assert by_title == [grace, edsger, ada, alan]  # absent values first: greater than any
    assert user_names(search(client, sortBy="meta.created", sortOrder="descending")) == [
        edsger,
        alan,
        grace,
        ada,
    ]
    urn_sorted = user_names(search(client, sortBy=f"{CORE}:displayName"))
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
