"""The bounds of one request (app/limits.py): each refused with a SCIM error naming it, at the
same point on SQLite and PostgreSQL, and configurable; the largest allowed request still works."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask

from app.config import ConfigError, load_config
from app.db import db
from tests.conftest import BASE, TOKEN, make_app, statements
from tests.payloads import GROUP_URN, error, patch_payload, user_payload

SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@contextmanager
def other_app(database_url: str, **settings: str) -> Iterator[Flask]:
    """A second app on the same database (tables made by the session's `app`)."""
    other = make_app(database_url, **settings)
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def authorized(app: Flask):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    return client


def search(client, filter_text: str, path: str = "/Users/.search"):
    return client.post(f"{BASE}{path}", json={"schemas": [SEARCH_URN], "filter": filter_text})


# --- Filters ---------------------------------------------------------------------------------


def test_a_filter_at_every_limit_is_answered(client, create_user):
    create_user(userName="u7")
    terms = " or ".join(f'userName eq "u{n}"' for n in range(256))  # 256 terms, ~6 KB
    deep = "(" * 31 + 'emails[value eq "u7"] or userName eq "u7"' + ")" * 31  # [ ] is level 32
    for text in (terms, deep):
        response = search(client, text)
        assert response.status_code == 200, response.json
        assert response.json["totalResults"] == 1


@pytest.mark.parametrize("path", ["/Users/.search", "/Groups/.search", "/.search"])
@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param(
            " or ".join(f"userName eq {n}" for n in range(257)),
            "Invalid filter: it has 257 comparisons; at most 256 are accepted "
            "(SCIM_MAX_FILTER_TERMS)",
            id="257-terms",
        ),
        pytest.param(
            " and ".join("active pr" for _ in range(1000)),
            "Invalid filter: it has 1000 comparisons; at most 256 are accepted "
            "(SCIM_MAX_FILTER_TERMS)",
            id="1000-term-and-chain",
        ),
        pytest.param(
            "(" * 33 + "active pr" + ")" * 33,
            "Invalid filter: it nests 33 levels of ( ) and [ ] deep; at most 32 are accepted "
            "(SCIM_MAX_FILTER_DEPTH)",
            id="33-parentheses",
        ),
        pytest.param(
            "not (" * 2000 + "active pr" + ")" * 2000,
            "Invalid filter: it nests 2000 levels of ( ) and [ ] deep; at most 32 are accepted "
            "(SCIM_MAX_FILTER_DEPTH)",
            id="2000-nots",
        ),
        pytest.param(
            "emails[" + "(" * 600 + 'value eq "x"' + ")" * 600 + "]",
            "Invalid filter: it nests 601 levels of ( ) and [ ] deep; at most 32 are accepted "
            "(SCIM_MAX_FILTER_DEPTH)",
            id="value-path-then-deep-parentheses",
        ),
        pytest.param(
            'userName eq "' + "x" * 100_000 + '"',
            "Invalid filter: it is 100014 characters long; at most 16384 are accepted "
            "(SCIM_MAX_FILTER_CHARS)",
            id="100-kb",
        ),
    ],
)
def test_a_filter_beyond_a_limit_is_400_naming_it(client, path, text, detail):
    response = search(client, text, path)
    assert response.status_code == 400
    assert response.json == error(400, detail, "invalidFilter")


def test_filter_limits_are_configurable(app, database_url):
    with other_app(
        database_url,
        SCIM_MAX_FILTER_CHARS="300",
        SCIM_MAX_FILTER_DEPTH="2",
        SCIM_MAX_FILTER_TERMS="3",
    ) as other:
        client = authorized(other)
        assert client.get(
            f"{BASE}/Users", query_string={"filter": "(((active pr)))"}
        ).json == error(
            400,
            "Invalid filter: it nests 3 levels of ( ) and [ ] deep; at most 2 are accepted "
            "(SCIM_MAX_FILTER_DEPTH)",
            "invalidFilter",
        )
        four = "active pr or active pr or active pr or active pr"
        assert search(client, four).json["detail"] == (
            "Invalid filter: it has 4 comparisons; at most 3 are accepted (SCIM_MAX_FILTER_TERMS)"
        )
        assert search(client, "x" * 301).json["detail"] == (
            "Invalid filter: it is 301 characters long; at most 300 are accepted "
            "(SCIM_MAX_FILTER_CHARS)"
        )
        assert search(client, "(active pr) and (active pr)").status_code == 200


def test_a_patch_path_is_held_to_the_filter_limits(client, create_user):
    user = create_user()
    path = "emails[" + "(" * 40 + 'type eq "work"' + ")" * 40 + "].value"
    response = client.patch(
        f"{BASE}/Users/{user['id']}", json=patch_payload({"op": "remove", "path": path})
    )
    assert response.status_code == 400
    assert response.json == error(
        400,
        "Invalid path: it nests 41 levels of ( ) and [ ] deep; at most 32 are accepted "
        "(SCIM_MAX_FILTER_DEPTH)",
        "invalidPath",
    )


# --- Strings ---------------------------------------------------------------------------------


INDEXED = [
    pytest.param("POST", "/Users", lambda v: user_payload(userName=v), "userName", id="userName"),
    pytest.param(
        "POST", "/Users", lambda v: user_payload(displayName=v), "displayName", id="displayName"
    ),
    pytest.param(
        "POST",
        "/Users",
        lambda v: user_payload(name={"familyName": v}),
        "name.familyName",
        id="familyName",
    ),
    pytest.param(
        "POST",
        "/Users",
        lambda v: user_payload(emails=[{"value": v, "type": "work"}]),
        "emails[0].value",
        id="emails.value",
    ),
    pytest.param(
        "POST", "/Users", lambda v: user_payload(externalId=v), "externalId", id="externalId"
    ),
    pytest.param(
        "POST",
        "/Groups",
        lambda v: {"schemas": [GROUP_URN], "displayName": v},
        "displayName",
        id="group-displayName",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "where"), INDEXED)
def test_the_longest_accepted_string_is_stored_on_both_databases(client, method, path, body, where):
    # 2,048 bytes: 1,024 two-byte characters; PostgreSQL's index holds it (no 503, no 500).
    value = "é" * 1024
    response = client.open(f"{BASE}{path}", method=method, json=body(value))
    assert response.status_code == 201, response.json
    assert value in json.dumps(response.json, ensure_ascii=False)


@pytest.mark.parametrize(("method", "path", "body", "where"), INDEXED)
def test_a_string_over_the_byte_limit_is_400_naming_attribute_and_limit(
    client, method, path, body, where
):
    response = client.open(f"{BASE}{path}", method=method, json=body("é" * 1024 + "x"))
    assert response.status_code == 400
    assert response.json == error(
        400,
        f"{where} is 2049 bytes long in UTF-8 (or case-folded); at most 2048 are accepted "
        "(SCIM_MAX_STRING_BYTES)",
        "invalidValue",
    )


def test_the_case_folded_length_counts_too(client):
    # "ΐ" (U+0390) is 2 bytes, and 6 once case-folded: 700 of them are 1,400 bytes as sent.
    response = client.post(f"{BASE}/Users", json=user_payload(userName="ΐ" * 700))
    assert response.status_code == 400
    assert response.json == error(
        400,
        "userName is 4200 bytes long in UTF-8 (or case-folded); at most 2048 are accepted "
        "(SCIM_MAX_STRING_BYTES)",
        "invalidValue",
    )


def test_a_long_string_by_put_and_patch_is_400_too(client, create_user, create_group):
    user = create_user()
    long = "x" * 3000
    put = client.put(f"{BASE}/Users/{user['id']}", json=user_payload(userName=long))
    assert put.status_code == 400 and put.json["scimType"] == "invalidValue"
    patched = client.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload({"op": "replace", "path": "name.familyName", "value": long}),
    )
    assert patched.json == error(
        400,
        "Operations[0] (name.familyName) is 3000 bytes long in UTF-8 (or case-folded); at most "
        "2048 are accepted (SCIM_MAX_STRING_BYTES)",
        "invalidValue",
    )
    group = create_group()
    renamed = client.patch(
        f"{BASE}/Groups/{group['id']}",
        json=patch_payload({"op": "replace", "value": {"displayName": long}}),
    )
    assert renamed.json == error(
        400,
        "Operations[0].value.displayName is 3000 bytes long in UTF-8 (or case-folded); at most "
        "2048 are accepted (SCIM_MAX_STRING_BYTES)",
        "invalidValue",
    )
    assert client.get(f"{BASE}/Users/{user['id']}").json["userName"] == user["userName"]


def test_the_string_limit_is_configurable_up_to_what_an_index_holds(app, database_url):
    with other_app(database_url, SCIM_MAX_STRING_BYTES="64") as other:
        response = authorized(other).post(f"{BASE}/Users", json=user_payload(userName="a" * 65))
        assert response.json["detail"] == (
            "userName is 65 bytes long in UTF-8 (or case-folded); at most 64 are accepted "
            "(SCIM_MAX_STRING_BYTES)"
        )
    with pytest.raises(ConfigError, match="SCIM_MAX_STRING_BYTES must be at most 2560"):
        load_config({"SCIM_MAX_STRING_BYTES": "4096"})


def test_a_body_nested_beyond_the_json_depth_is_400(client):
    body = '{"userName": "deep", "name": ' + '{"a": ' * 40 + "1" + "}" * 41
    response = client.post(
        f"{BASE}/Users", data=body, headers={"Content-Type": "application/scim+json"}
    )
    assert response.json == error(
        400, "The request body nests deeper than 32 levels", "invalidSyntax"
    )


# --- PATCH operations and members ------------------------------------------------------------


def test_patch_operations_beyond_the_limit_are_400(client, create_user):
    user = create_user()
    one = {"op": "replace", "path": "title", "value": "Engineer"}
    allowed = client.patch(f"{BASE}/Users/{user['id']}", json=patch_payload(*[one] * 1000))
    assert allowed.status_code == 200
    refused = client.patch(f"{BASE}/Users/{user['id']}", json=patch_payload(*[one] * 1001))
    assert refused.json == error(
        400,
        "Operations has 1001 operations; at most 1000 are accepted in one PATCH "
        "(SCIM_MAX_PATCH_OPERATIONS)",
        "invalidValue",
    )


def test_members_per_request_are_bounded_and_configurable(app, database_url, client):
    users = [
        client.post(f"{BASE}/Users", json=user_payload(userName=f"m{n}")).json["id"]
        for n in range(3)
    ]
    members = [{"value": user_id} for user_id in users]
    with other_app(database_url, SCIM_MAX_MEMBERS_PER_REQUEST="2") as other:
        scim = authorized(other)
        expected = error(
            400,
            "members: the request lists 3 members; at most 2 are accepted in one request "
            "(SCIM_MAX_MEMBERS_PER_REQUEST)",
            "invalidValue",
        )
        body = {"schemas": [GROUP_URN], "displayName": "Three", "members": members}
        assert scim.post(f"{BASE}/Groups", json=body).json == expected
        group = scim.post(f"{BASE}/Groups", json={**body, "members": members[:2]})
        assert group.status_code == 201
        url = f"{BASE}/Groups/{group.json['id']}"
        assert scim.put(url, json=body).json == expected
        # PATCH: all operations of the request together.
        split = patch_payload(
            {"op": "add", "path": "members", "value": members[:2]},
            {"op": "add", "path": "members", "value": members[2:]},
        )
        assert scim.patch(url, json=split).json == expected
    assert load_config({"SCIM_MAX_BODY_BYTES": "4800"})["SCIM_LIMITS"].members == 100


def test_by_default_any_member_list_that_fits_in_the_body_is_accepted():
    limits = load_config({})["SCIM_LIMITS"]
    # The shortest member elements there are: one more than the limit no longer fits the body.
    beyond = json.dumps([{"value": "0" * 36}] * (limits.members + 1), separators=(",", ":"))
    assert len(beyond) > limits.body_bytes


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(
            lambda uid: {"op": "add", "path": "members", "value": [{"value": uid}]}, id="add"
        ),
        pytest.param(
            lambda uid: {"op": "remove", "path": f'members[value eq "{uid}"]'}, id="okta-remove"
        ),
        pytest.param(
            lambda uid: {"op": "Remove", "path": "members", "value": [{"value": uid}]},
            id="entra-remove",
        ),
    ],
)
def test_member_operations_cost_the_same_statements_whatever_their_number(
    client, create_group, operation
):
    ids = [
        client.post(f"{BASE}/Users", json=user_payload(userName=f"p{n}")).json["id"]
        for n in range(40)
    ]
    counts = []
    for batch in (ids[:4], ids[4:]):
        group = create_group(f"Group of {len(batch)}")
        url = f"{BASE}/Groups/{group['id']}"
        if "remove" in str(operation(ids[0])).lower():
            seeded = {"op": "add", "path": "members", "value": [{"value": u} for u in batch]}
            assert client.patch(url, json=patch_payload(seeded)).status_code == 204
        with statements() as seen:
            response = client.patch(url, json=patch_payload(*[operation(u) for u in batch]))
        assert response.status_code == 204, response.json
        counts.append(len(seen))
        members = client.get(url).json.get("members", [])
        expected = set() if "remove" in str(operation(ids[0])).lower() else set(batch)
        assert {m["value"] for m in members} == expected
    assert counts[0] == counts[1]  # 4 operations or 36: one set operation


def test_a_run_of_adds_and_removes_ends_as_its_last_operation_says(client, create_group):
    a, b, c = (
        client.post(f"{BASE}/Users", json=user_payload(userName=n)).json["id"] for n in "abc"
    )
    group = create_group(members=[{"value": c}])
    url = f"{BASE}/Groups/{group['id']}"
    operations = patch_payload(
        {"op": "add", "path": "members", "value": [{"value": a}, {"value": b}]},
        {"op": "remove", "path": f'members[value eq "{a}"]'},
        {"op": "remove", "path": "members", "value": [{"value": c}]},
        {"op": "add", "path": "members", "value": [{"value": c}]},
        {"op": "replace", "path": "displayName", "value": "Renamed"},
        {"op": "remove", "path": f'members[value eq "{b}"]'},
        {"op": "add", "path": "members", "value": [{"value": a}]},
    )
    assert client.patch(url, json=operations).status_code == 204
    after = client.get(url).json
    assert after["displayName"] == "Renamed"
    assert sorted(m["value"] for m in after["members"]) == sorted([a, c])


def test_an_unknown_member_anywhere_in_a_run_fails_the_whole_patch(
    client, create_group, create_user
):
    jane = create_user()
    group = create_group()
    url = f"{BASE}/Groups/{group['id']}"
    ghost = "00000000-0000-4000-8000-000000000000"
    operations = patch_payload(
        {"op": "add", "path": "members", "value": [{"value": jane["id"]}]},
        {"op": "add", "path": "members", "value": [{"value": ghost}]},
        {"op": "remove", "path": f'members[value eq "{ghost}"]'},
    )
    response = client.patch(url, json=operations)
    assert response.json == error(
        400, f"members: {ghost!r} is not an existing user or group", "invalidValue"
    )
    assert "members" not in client.get(url).json  # nothing was written
