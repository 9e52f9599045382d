"""Listing and searching (RFC 7644 §3.4.2, §3.4.3): GET /Users as Okta and Entra ID look users
up, the list response, and POST .search on /Users, /Groups and the root.

What a filter selects: test_filters.py; paging and sorting: test_pagination.py; attributes and
excludedAttributes: test_projection.py.
"""

from __future__ import annotations

import sys

import pytest

from app.db import db
from tests.conftest import BASE, TOKEN, create_schema, make_app, statements_run
from tests.payloads import (
    GROUP_URN,
    LIST_URN,
    SEARCH_URN,
    error,
    found,
    patch_payload,
    search,
    user_payload,
)

# ---------------------------------------------------------------------------------------------
# GET /Users: the lookups IdPs send before a create, and the list response


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
# POST .search (RFC 7644 §3.4.3)


def test_users_search_takes_a_search_request(client, create_user):
    create_user()
    create_user(userName="bob@example.com", displayName="Bob", externalId=None)
    body = {
        "schemas": [SEARCH_URN],
        "filter": 'userName sw "bob"',
        "attributes": ["userName", "displayName"],
        "startIndex": 1,
        "count": 10,
    }
    response = client.post(f"{BASE}/Users/.search", json=body)
    assert response.status_code == 200
    found = response.json
    assert (found["totalResults"], found["startIndex"], found["itemsPerPage"]) == (1, 1, 1)
    resource = found["Resources"][0]
    assert set(resource) == {"schemas", "id", "userName", "displayName", "meta"}
    assert resource["meta"] == {"resourceType": "User"}


def test_groups_search(client):
    client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Engineering"})
    body = {
        "schemas": [SEARCH_URN],
        "filter": 'displayName eq "engineering"',
        "excludedAttributes": ["members"],
    }
    response = client.post(f"{BASE}/Groups/.search", json=body)
    assert response.json["totalResults"] == 1


def test_root_search_spans_resource_types(client, create_user):
    create_user()
    client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Engineering"})
    everything = client.post(f"{BASE}/.search", json={"schemas": [SEARCH_URN]}).json
    assert everything["totalResults"] == 2
    assert [r["meta"]["resourceType"] for r in everything["Resources"]] == ["User", "Group"]
    second = client.post(
        f"{BASE}/.search", json={"schemas": [SEARCH_URN], "startIndex": 2, "count": 1}
    ).json
    assert [r["meta"]["resourceType"] for r in second["Resources"]] == ["Group"]
    only_users = client.post(
        f"{BASE}/.search",
        json={"schemas": [SEARCH_URN], "filter": 'userName eq "jane@example.com"'},
    ).json
    assert [r["meta"]["resourceType"] for r in only_users["Resources"]] == ["User"]
    by_name = client.post(
        f"{BASE}/.search", json={"schemas": [SEARCH_URN], "filter": 'displayName sw "Eng"'}
    ).json
    assert [r["meta"]["resourceType"] for r in by_name["Resources"]] == ["Group"]


@pytest.mark.parametrize(
    ("body", "detail", "scim_type"),
    [
        pytest.param(
            {"schemas": ["urn:x"]},
            f"schemas must be [{SEARCH_URN!r}]",
            "invalidSyntax",
            id="schemas",
        ),
        pytest.param(
            {"shoe": 1}, "Unknown SearchRequest parameter 'shoe'", "invalidSyntax", id="unknown"
        ),
        pytest.param({"count": "ten"}, "count must be an integer", "invalidValue", id="count"),
        pytest.param(
            {"attributes": "userName"},
            "attributes must be a list of attribute names",
            "invalidValue",
            id="attrs",
        ),
        pytest.param(
            {"filter": "userName eq"},
            "Invalid filter: the filter ended unexpectedly",
            "invalidFilter",
            id="filter",
        ),
    ],
)
def test_bad_search_requests_are_400(client, body, detail, scim_type):
    response = client.post(f"{BASE}/Users/.search", json=body)
    assert response.status_code == 400
    assert response.json == error(400, detail, scim_type)


def test_root_search_refuses_cursors(client):
    response = client.post(f"{BASE}/.search", json={"schemas": [SEARCH_URN], "cursor": ""})
    assert response.json == error(
        400, "Cursor pagination works per resource type: use /Users/.search", "invalidValue"
    )


def test_root_search_treats_attributes_a_type_lacks_as_missing(client, create_user):
    jane = create_user()
    client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Sales"})
    both = 'displayName eq "Sales" or userName eq "jane@example.com"'
    found = client.post(f"{BASE}/.search", json={"schemas": [SEARCH_URN], "filter": both}).json
    assert [r["meta"]["resourceType"] for r in found["Resources"]] == ["User", "Group"]
    groups_only = client.post(
        f"{BASE}/.search", json={"schemas": [SEARCH_URN], "filter": "not (userName pr)"}
    ).json
    assert [r["displayName"] for r in groups_only["Resources"]] == ["Sales"]
    sorted_all = client.post(
        f"{BASE}/.search", json={"schemas": [SEARCH_URN], "sortBy": "userName"}
    )
    assert sorted_all.json["totalResults"] == 2
    assert sorted_all.json["Resources"][0]["id"] == jane["id"]


def test_sqlite_keeps_the_planners_statistics_so_lookups_use_their_index(tmp_path, monkeypatch):
    """Without statistics SQLite walked the creation-order index for an externalId lookup,
    reading every user; the pool's PRAGMA optimize gives it what it needs to choose."""
    # On every check-in (app.db the module: the package's `db` is the SQLAlchemy handle).
    monkeypatch.setattr(sys.modules["app.db"], "SQLITE_OPTIMIZE_SECONDS", 0.0)
    app = make_app(f"sqlite:///{tmp_path / 'planned.sqlite3'}")
    with app.app_context():
        create_schema()
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        for n in range(300):
            body = user_payload(userName=f"p{n}@example.com", externalId=f"ext-{n}")
            assert client.post(f"{BASE}/Users", json=body).status_code == 201
        lookup = {"filter": 'externalId eq "ext-7"'}
        assert client.get(f"{BASE}/Users", query_string=lookup).json["totalResults"] == 1
        with statements_run("users.external_id") as seen:
            client.get(f"{BASE}/Users", query_string=lookup)
        [(query, parameters)] = seen
        with db.engine.connect() as connection:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}", parameters).all()
        assert any("ix_users_external_id" in row[-1] for row in plan), plan
        db.session.remove()
        db.engine.dispose()
