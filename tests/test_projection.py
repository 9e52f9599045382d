"""attributes and excludedAttributes (RFC 7644 §3.4.2.5, §3.9): what a listing or a GET
returns when asked for less; returned=always attributes stay, returned=never ones never come,
and members excluded from a group are never read."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from app.db import UTCDateTime
from app.projection import Projection
from app.schema.core import USER_RESOURCE
from app.serialize import project, timestamp
from tests.conftest import BASE, statements
from tests.payloads import ENTERPRISE_URN, GROUP_URN, USER_URN, search, without_volatile


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


def test_excluded_members_are_never_read(client, create_user, create_group):
    jane = create_user()
    group = create_group(members=[{"value": jane["id"]}])
    for url in (f"/Groups/{group['id']}", "/Groups", '/Groups?filter=displayName eq "Engineering"'):
        separator = "&" if "?" in url else "?"
        with statements() as seen:
            response = client.get(f"{BASE}{url}{separator}excludedAttributes=members")
        assert response.status_code == 200
        assert not [s for s in seen if "group_members" in s], url


def test_a_users_groups_are_read_by_the_statement_that_reads_the_user(client, jane, create_group):
    """GET, lookups, pages, PUT and PATCH read a user's live groups with its row, in one
    statement, ordered by folded name then id; excluded, they are not read at all."""
    url = f"{BASE}/Users/{jane['id']}"
    made = {
        name: create_group(name, members=[{"value": jane["id"]}])["id"]
        for name in ("b-team", "A-Team", "Gone")
    }
    assert client.delete(f"{BASE}/Groups/{made['Gone']}").status_code == 204
    expected = [
        {
            "value": made[name],
            "$ref": f"http://localhost{BASE}/Groups/{made[name]}",
            "display": name,
            "type": "direct",
        }
        for name in ("A-Team", "b-team")
    ]
    put_body = {k: v for k, v in jane.items() if k not in ("id", "meta", "groups")}
    patch_body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Jane D."}],
    }
    requests = {
        "GET": lambda query: client.get(f"{url}{query}"),
        "lookup": lambda query: client.get(
            f'{BASE}/Users{query or "?"}&filter=userName eq "jane@example.com"'
        ),
        "page": lambda query: client.get(f"{BASE}/Users{query}"),
        "PUT": lambda query: client.put(f"{url}{query}", json=put_body),
        "PATCH": lambda query: client.patch(f"{url}{query}", json=patch_body),
    }
    for name, send in requests.items():
        with statements() as seen:
            response = send("")
        assert response.status_code == 200, (name, response.json)
        user = response.json["Resources"][0] if "Resources" in response.json else response.json
        assert user["groups"] == expected, name
        reads = [s for s in seen if "group_members" in s]
        assert len(reads) == 1 and "FROM users" in reads[0], (name, seen)
        with statements() as seen:
            response = send("?excludedAttributes=groups")
        assert response.status_code == 200, (name, response.json)
        assert not [s for s in seen if "group_members" in s], (name, seen)


@pytest.mark.parametrize("query", ["startIndex=2&count=1", "sortBy=userName&count=1"])
def test_a_page_past_the_first_reads_its_rows_groups_apart(
    client, create_user, create_group, query
):
    """Under an OFFSET, PostgreSQL computes a select list's subquery for every row it skips
    (5,000 of them for startIndex=5001), and under a sortBy for every match it sorts: such a
    page reads its users without their groups, then the groups of the users it returns, in a
    second statement."""
    users = [create_user(userName=f"p{n}@example.com") for n in range(3)]
    group = create_group("Crew", members=[{"value": u["id"]} for u in users])
    membership = [
        {
            "value": group["id"],
            "$ref": f"http://localhost{BASE}/Groups/{group['id']}",
            "display": "Crew",
            "type": "direct",
        }
    ]
    with statements() as seen:
        response = client.get(f"{BASE}/Users?{query}")
    assert response.status_code == 200
    expected = users[1] if "startIndex=2" in query else users[0]  # p0 sorts first
    assert [u["id"] for u in response.json["Resources"]] == [expected["id"]]
    assert response.json["Resources"][0]["groups"] == membership
    [page] = [s for s in seen if "FROM users" in s and "LIMIT" in s.upper()]
    assert "group_members" not in page
    assert len([s for s in seen if "group_members" in s]) == 1
    groups_page = client.get(f"{BASE}/Groups?startIndex=1&count=1")
    assert [m["value"] for m in groups_page.json["Resources"][0]["members"]] == sorted(
        u["id"] for u in users
    )


def test_a_groups_members_are_read_by_the_statement_that_reads_the_group(
    client, create_user, create_group
):
    """GET, lookups and pages read a group's live members with its row, in one statement:
    users and nested groups with their display, by id; deleted members are not shown. A group
    created without members reads nothing back for its 201."""
    users = [create_user(userName=f"m{n}@example.com", displayName=f"M {n}") for n in range(3)]
    nested = create_group("Nested")
    with statements() as seen:
        empty = client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Empty"})
    assert empty.status_code == 201 and "members" not in empty.json
    assert not [s for s in seen if "group_members" in s], seen
    members = [{"value": u["id"]} for u in users] + [{"value": nested["id"]}]
    group = create_group("Parent", members=members)
    assert client.delete(f"{BASE}/Users/{users[0]['id']}").status_code == 204
    live = [(u["id"], "User", u["displayName"]) for u in users[1:]]
    expected = sorted([*live, (nested["id"], "Group", "Nested")])
    url = f"{BASE}/Groups/{group['id']}"
    requests = {
        "GET": lambda query: client.get(f"{url}{query}"),
        "lookup": lambda query: client.get(
            f'{BASE}/Groups{query or "?"}&filter=displayName eq "Parent"'
        ),
        "page": lambda query: client.get(f"{BASE}/Groups{query}"),
    }
    for name, send in requests.items():
        with statements() as seen:
            response = send("")
        assert response.status_code == 200, (name, response.json)
        found = [
            r for r in response.json.get("Resources", [response.json]) if r["id"] == group["id"]
        ]
        assert [(m["value"], m["type"], m["display"]) for m in found[0]["members"]] == expected
        reads = [s for s in seen if "group_members" in s]
        assert len(reads) == 1 and "FROM groups" in reads[0], (name, seen)


# --- The default projection returns what the walk over every attribute would ----------------


def test_a_response_without_a_projection_is_the_walks_answer(client, jane, create_group):
    """serialize.project answers the common case (no attributes, no excludedAttributes) without
    walking the attributes; excluding a name no resource has makes it walk, and the two must
    agree for users (with an extension, and groups) and groups (with members)."""
    group = create_group(displayName="Tour", members=[{"value": jane["id"]}])
    for path in (f"{BASE}/Users/{jane['id']}", f"{BASE}/Groups/{group['id']}"):
        plain = client.get(path)
        walked = client.get(path, query_string={"excludedAttributes": "noSuchAttribute"})
        assert plain.status_code == walked.status_code == 200
        assert list(plain.json.items()) == list(walked.json.items())  # the order too
    plain = client.get(f"{BASE}/Users")
    walked = client.get(f"{BASE}/Users", query_string={"excludedAttributes": "noSuchAttribute"})
    assert plain.json == walked.json


ATTRIBUTE_NAMES = st.sampled_from(
    ["userName", "name", "emails", "active", "groups", "password", "nickName", "Username"]
)
EXTENSION_KEYS = st.sampled_from(["department", "employeeNumber", "manager", "noSuch"])


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    core=st.dictionaries(ATTRIBUTE_NAMES, st.just("x"), max_size=5),
    extension=st.one_of(st.none(), st.dictionaries(EXTENSION_KEYS, st.just("y"), max_size=3)),
    stray=st.booleans(),
)
def test_the_shortcut_agrees_with_the_walk_for_any_document(core, extension, stray):
    rt = USER_RESOURCE
    body = {"schemas": [rt.schema.id], "id": "1", **core}
    if extension is not None:
        body["schemas"].append(ENTERPRISE_URN)
        body[ENTERPRISE_URN] = extension
    if stray:
        body["notAnAttribute"] = 1
    body["meta"] = {"resourceType": "User", "location": "x"}
    plain = project(rt, copy.deepcopy(body), Projection("https://x"))
    walked = project(
        rt, copy.deepcopy(body), Projection("https://x", excluded_attributes=("noSuchAttribute",))
    )
    assert list(plain.items()) == list(walked.items())


# --- meta.created and meta.lastModified -----------------------------------------------------


@settings(max_examples=500, derandomize=True, deadline=None)
@given(
    value=st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(0))])
    )
    | st.datetimes()
)
def test_timestamps_read_as_strftime_wrote_them(value):
    """serialize.timestamp writes what strftime did, for any year (before 1000 too, which
    strftime leaves unpadded), offset or none, and microseconds or none: cut to milliseconds."""
    wrote = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    assert timestamp(value) == wrote


def test_a_timestamp_in_utc_to_the_millisecond():
    assert timestamp(datetime(2026, 11, 23, 9, 51, 49, 123999, UTC)) == "2026-11-23T09:51:49.123Z"
    assert timestamp(datetime(2026, 11, 23, 9, 51, 49, tzinfo=UTC)) == "2026-11-23T09:51:49.000Z"


@settings(max_examples=500, derandomize=True, deadline=None)
@given(value=st.datetimes(timezones=st.just(UTC)))
def test_sqlite_reads_back_the_timestamp_written(value):
    """db.UTCDateTime reads SQLite's text with datetime.fromisoformat where SQLAlchemy wrote it
    (and through SQLAlchemy's parser otherwise): the same aware UTC datetime either way."""
    dialect = sqlite.dialect()
    written = UTCDateTime()._cached_bind_processor(dialect)(value)
    read = UTCDateTime()._cached_result_processor(dialect, None)
    assert read(written) == value and read(written).tzinfo is UTC
    assert read(written[:19]) == value.replace(microsecond=0)  # no fraction: the parser's
    assert read(None) is None
