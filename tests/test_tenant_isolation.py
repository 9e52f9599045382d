"""Tenant A's token never returns, changes or reveals anything of tenant B (issue 15, isolation
proof), on SQLite and PostgreSQL.

B's ids, filter values and cursors are used with A's token, and every answer must be the answer
for something that never existed: the same status, headers and body, byte for byte, once B's id
is swapped for the never-existing one. B's view of its own directory is unchanged afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.models import TenantState
from app.store import tenants
from tests.payloads import (
    BASE,
    GROUP_URN,
    LIST_URN,
    SEARCH_URN,
    error,
    member,
    patch_payload,
    user_payload,
)


@pytest.fixture(scope="module")
def app(app_as_deployed: Flask) -> Flask:
    """SQLite, PostgreSQL, and PostgreSQL as deployed: the service's role, bound by row-level
    security, so that both layers of isolation are proven (tests/conftest.py)."""
    return app_as_deployed


# What every answer carries that differs from one request to the next by design.
PER_REQUEST_HEADERS = {"X-Request-ID"}
EMPTY_LIST = {
    "schemas": [LIST_URN],
    "totalResults": 0,
    "startIndex": 1,
    "itemsPerPage": 0,
    "Resources": [],
}
NOT_ISSUED = "The cursor is not one this service issued; start again with cursor="


@dataclass
class Tenants:
    """Tenant A (the caller of every probe) and tenant B (whose data must stay invisible)."""

    a: FlaskClient
    b: FlaskClient
    a_user: dict[str, Any]
    a_group: dict[str, Any]
    b_user: dict[str, Any]  # patched three times: meta.version 4
    b_user2: dict[str, Any]
    b_group: dict[str, Any]  # members: b_user and b_nested
    b_nested: dict[str, Any]  # members: b_user2
    b_deleted: str  # the id of a user B deleted: a tombstone of B's

    @property
    def b_ids(self) -> dict[str, str]:
        return {
            "user": self.b_user["id"],
            "user2": self.b_user2["id"],
            "group": self.b_group["id"],
            "nested": self.b_nested["id"],
            "deleted": self.b_deleted,
        }


def created(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 201, response.json
    return response.json


def post_group(client: FlaskClient, name: str, *members: str, **extra: Any) -> dict[str, Any]:
    body = {
        "schemas": [GROUP_URN],
        "displayName": name,
        "members": [{"value": m} for m in members],
        **extra,
    }
    return created(client.post(f"{BASE}/Groups", json=body))


@pytest.fixture
def two(tenant_client: Callable[[str], FlaskClient]) -> Tenants:
    """A's directory first (one user in one group), then B's, whose every value is B's only."""
    a, b = tenant_client("tenant-a"), tenant_client("tenant-b")
    a_user = created(
        a.post(
            f"{BASE}/Users",
            json=user_payload(
                userName="a-user@a.example",
                displayName="A Person",
                emails=[{"value": "a-mail@a.example", "type": "work"}],
                externalId="ext-a-user",
            ),
        )
    )
    a_group = post_group(a, "A Group", a_user["id"], externalId="ext-a-group")
    b_user = created(
        b.post(
            f"{BASE}/Users",
            json=user_payload(
                userName="b-only@b.example",
                displayName="B Only Person",
                emails=[{"value": "b-mail@b.example", "type": "work"}],
                externalId="ext-b-only",
            ),
        )
    )
    for title in ("one", "two", "three"):  # B's user reaches a version no resource of A has
        patched = b.patch(
            f"{BASE}/Users/{b_user['id']}",
            json=patch_payload({"op": "replace", "path": "title", "value": title}),
        )
        assert patched.status_code == 200, patched.json
    b_user = b.get(f"{BASE}/Users/{b_user['id']}").json
    b_user2 = created(
        b.post(
            f"{BASE}/Users",
            json=user_payload(
                userName="b-second@b.example",
                displayName="B Second",
                emails=[{"value": "b-second@b.example", "type": "home"}],
                externalId="ext-b-second",
            ),
        )
    )
    b_nested = post_group(b, "B Nested", b_user2["id"], externalId="ext-b-nested")
    b_group = post_group(b, "B Only Group", b_user["id"], b_nested["id"], externalId="ext-b-group")
    gone = created(b.post(f"{BASE}/Users", json=user_payload(userName="b-gone@b.example")))
    assert b.delete(f"{BASE}/Users/{gone['id']}").status_code == 204
    return Tenants(a, b, a_user, a_group, b_user, b_user2, b_group, b_nested, gone["id"])


def view(client: FlaskClient) -> dict[str, Any]:
    """Everything a tenant's token can read of its directory, as bytes: lists and each resource."""
    out: dict[str, Any] = {}
    for endpoint in ("Users", "Groups"):
        listing = client.get(f"{BASE}/{endpoint}", query_string={"count": 1000})
        assert listing.status_code == 200, listing.json
        out[endpoint] = listing.data
        for resource in listing.json["Resources"]:
            one = client.get(f"{BASE}/{endpoint}/{resource['id']}")
            assert one.status_code == 200, one.json
            out[resource["id"]] = (one.data, one.headers.get("ETag"))
    return out


def answer(response: TestResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    """An answer as the client gets it: status, headers (but the request id) and body bytes."""
    headers = sorted((k, v) for k, v in response.headers.items() if k not in PER_REQUEST_HEADERS)
    return response.status_code, headers, response.get_data()


def swapped(
    reply: tuple[int, list[tuple[str, str]], bytes], old: str, new: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    status, headers, body = reply
    return (
        status,
        sorted((k, v.replace(old, new)) for k, v in headers),
        body.replace(old.encode(), new.encode()),
    )


# ---------------------------------------------------------------------------------------------
# (a) Every route and method of /scim/v2, with B's ids


def scim_routes(app: Flask) -> list[tuple[str, str, tuple[str, ...]]]:
    """(rule, method, URL parameters) for every route under /scim/v2 and every method it allows,
    read from the URL map, so that a route added later is probed without anyone listing it."""
    prefix = app.blueprints["scim"].url_prefix
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule == prefix or rule.rule.startswith(f"{prefix}/"):
            for method in sorted(rule.methods or ()):
                found.append((rule.rule, method, tuple(sorted(rule.arguments))))
    return sorted(found)


def probe_body(rule: str, method: str, x: str) -> Any:
    """A request body that names `x` wherever the route could look it up: a member, a filter,
    a reference. Chosen by the path, so a new route under /Users or /Groups gets a real one."""
    if method not in ("POST", "PUT", "PATCH"):
        return None
    if rule.endswith("/.search"):
        return {"schemas": [SEARCH_URN], "filter": f'id eq "{x}" or externalId eq "{x}"'}
    kind = "Groups" if "/Groups" in rule else "Users" if "/Users" in rule else None
    if kind == "Groups":
        if method == "PATCH":
            return patch_payload(
                {"op": "add", "path": "members", "value": [{"value": x}]},
                {"op": "remove", "path": f'members[value eq "{x}"]'},
            )
        return {"schemas": [GROUP_URN], "displayName": f"probe {x}", "members": [{"value": x}]}
    if kind == "Users":
        if method == "PATCH":
            return patch_payload({"op": "replace", "path": "displayName", "value": x})
        # `groups` is readOnly: a create or replace naming B's group must not join it.
        return user_payload(userName=f"{x}@probe.example", externalId=x, groups=[{"value": x}])
    if rule.endswith("/Bulk"):
        # Every operation on the id: none may find B's resource, nor take it as a member.
        group = {"schemas": [GROUP_URN], "displayName": f"probe {x}", "members": [{"value": x}]}
        return {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "DELETE", "path": f"/Users/{x}"},
                {"method": "DELETE", "path": f"/Groups/{x}", "version": 'W/"1"'},
                {"method": "PUT", "path": f"/Users/{x}", "data": user_payload(userName=x)},
                {
                    "method": "PATCH",
                    "path": f"/Groups/{x}",
                    "data": probe_body("/Groups", "PATCH", x),
                },
                {"method": "POST", "path": "/Groups", "bulkId": "g", "data": group},
                {
                    "method": "PATCH",
                    "path": "/Groups/bulkId:g",
                    "data": probe_body("/Groups", "PATCH", x),
                },
            ],
        }
    # Anything else (/Me, whatever comes): a generic body full of the id.
    return {
        "schemas": [SEARCH_URN],
        "id": x,
        "value": x,
        "members": [{"value": x}],
        "Operations": [{"method": "DELETE", "path": f"/Users/{x}", "data": {"id": x}}],
    }


def probe(
    client: FlaskClient, rule: str, method: str, arguments: tuple[str, ...], x: str
) -> TestResponse:
    url = rule
    for name in arguments:
        url = url.replace(f"<{name}>", x)
    assert "<" not in url, f"{rule}: a converter this test does not fill in"
    body = probe_body(rule, method, x)
    return client.open(
        url,
        method=method,
        query_string={"filter": f'id eq "{x}"', "attributes": "id"} if method == "GET" else None,
        data=json.dumps(body) if body is not None else None,
        content_type="application/scim+json" if body is not None else None,
    )


def created_normalized(
    reply: tuple[int, list[tuple[str, str]], bytes],
) -> tuple[int, list[tuple[str, str]], Any]:
    """A 201's answer minus what any new resource has of its own: id, timestamps, Location."""
    status, headers, body = reply
    document = json.loads(body)
    document.pop("id")
    for key in ("created", "lastModified", "location"):
        document["meta"].pop(key)
    return status, [(k, v) for k, v in headers if k != "Location"], document


def test_every_route_answers_b_ids_as_ids_that_never_existed(app, two):
    routes = scim_routes(app)
    # The enumeration is not vacuous: it reaches the routes that look ids up.
    probed = {(rule, method) for rule, method, _ in routes}
    for kind in ("Users", "Groups"):
        param = "<user_id>" if kind == "Users" else "<group_id>"
        for method in ("GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"):
            assert (f"{BASE}/{kind}/{param}", method) in probed
        assert (f"{BASE}/{kind}", "POST") in probed
        assert (f"{BASE}/{kind}/.search", "POST") in probed
    assert (f"{BASE}/.search", "POST") in probed

    before = view(two.b)
    for rule, method, arguments in routes:
        for name, b_id in two.b_ids.items():
            ghost = str(uuid.uuid4())  # fresh each time: a create with it must not collide
            never = answer(probe(two.a, rule, method, arguments, ghost))
            with_b = answer(probe(two.a, rule, method, arguments, b_id))
            where = f"{method} {rule} with B's {name} {b_id}"
            if never[0] == 201:  # a create: equal but for the new resource's own id and times
                assert created_normalized(swapped(with_b, b_id, ghost)) == created_normalized(
                    never
                ), where
                for reply in (with_b, never):  # so that no later probe finds what this made
                    location = dict(reply[1])["Location"]
                    assert two.a.delete(location).status_code == 204
            else:
                assert swapped(with_b, b_id, ghost) == never, where
    assert view(two.b) == before  # nothing of B changed, not even a version


def test_every_route_probed_is_answered_without_revealing_b_ids(app, two):
    """The answers that echo an id echo the one asked for, and never one of B's others."""
    for rule, method, arguments in scim_routes(app):
        ghost = str(uuid.uuid4())
        reply = probe(two.a, rule, method, arguments, ghost).get_data()
        for b_id in two.b_ids.values():
            assert b_id.encode() not in reply, (method, rule)
        for value in (b"b-only@b.example", b"B Only", b"ext-b-", b"b-mail@b.example"):
            assert value not in reply, (method, rule)


# ---------------------------------------------------------------------------------------------
# (b) Filters that match only B's data


def user_filters(two: Tenants) -> dict[str, str]:
    b = two.b_ids
    return {
        "id": f'id eq "{b["user"]}"',
        "id-or": f'id eq "{b["user"]}" or id eq "{b["user2"]}"',
        "externalId": 'externalId eq "ext-b-only"',
        "externalId-sw": 'externalId sw "ext-b-"',
        "userName": 'userName eq "b-only@b.example"',
        "userName-case": 'userName eq "B-ONLY@B.EXAMPLE"',
        "userName-sw": 'userName sw "b-"',
        "displayName": 'displayName eq "B Only Person"',
        "displayName-co": 'displayName co "Only"',
        "emails.value": 'emails.value eq "b-mail@b.example"',
        "emails-value-filter": 'emails[value eq "b-mail@b.example"]',
        "emails-type": 'emails[type eq "home"]',
        "groups.value": f'groups.value eq "{b["group"]}"',
        "groups-value-filter": f'groups[value eq "{b["nested"]}"]',
        "groups.display": 'groups.display eq "B Only Group"',
        "meta.version": f"meta.version eq {json.dumps(two.b_user['meta']['version'])}",
        "meta.created": f'meta.created ge "{two.b_user["meta"]["created"]}"',
        "meta.lastModified": f'meta.lastModified ge "{two.b_user["meta"]["lastModified"]}"',
        # Everything but A's own: at the root, `userName pr` keeps A's group out too.
        "not-a": 'not (userName eq "a-user@a.example") and userName pr',
        "title": "title pr and userName pr",
    }


def group_filters(two: Tenants) -> dict[str, str]:
    b = two.b_ids
    return {
        "id": f'id eq "{b["group"]}"',
        "id-or": f'id eq "{b["group"]}" or id eq "{b["nested"]}"',
        "externalId": 'externalId eq "ext-b-group"',
        "externalId-sw": 'externalId sw "ext-b-"',
        "displayName": 'displayName eq "B Only Group"',
        "displayName-case": 'displayName eq "b only group"',
        "displayName-sw": 'displayName sw "B "',
        "members.value": f'members.value eq "{b["user"]}"',
        "members.value-group": f'members.value eq "{b["nested"]}"',
        "members-value-filter": f'members[value eq "{b["user2"]}"]',
        "members.type": 'members.type eq "Group"',
        "members.display": 'members.display eq "B Only Person"',
        "meta.version": f"meta.version eq {json.dumps(two.b_group['meta']['version'])}",
        "meta.created": f'meta.created ge "{two.b_nested["meta"]["created"]}"',
        "not-a": 'not (displayName eq "A Group") and not (displayName eq "A Person")',
    }


def listings(client: FlaskClient, endpoint: str, filter_text: str) -> Iterator[TestResponse]:
    """The filter on GET /{endpoint}, POST /{endpoint}/.search and the root POST /.search."""
    yield client.get(f"{BASE}/{endpoint}", query_string={"filter": filter_text})
    body = {"schemas": [SEARCH_URN], "filter": filter_text}
    yield client.post(f"{BASE}/{endpoint}/.search", json=body)
    yield client.post(f"{BASE}/.search", json=body)


@pytest.mark.parametrize("endpoint", ["Users", "Groups"])
def test_filters_matching_only_b_find_nothing_for_a(two, endpoint):
    filters = user_filters(two) if endpoint == "Users" else group_filters(two)
    for name, filter_text in filters.items():
        for b_sees, a_sees in zip(
            listings(two.b, endpoint, filter_text),
            listings(two.a, endpoint, filter_text),
            strict=True,
        ):
            where = f"{name}: {filter_text} on {a_sees.request.method} {a_sees.request.path}"
            # The filter is valid and does match B's data, for B...
            assert b_sees.status_code == 200, (where, b_sees.json)
            assert b_sees.json["totalResults"] >= 1, where
            # ...and A gets exactly the answer to a filter that matches nothing at all.
            assert a_sees.status_code == 200, (where, a_sees.json)
            assert a_sees.json == EMPTY_LIST, where


def test_a_unfiltered_lists_hold_only_a(two):
    users = two.a.get(f"{BASE}/Users").json
    assert [u["id"] for u in users["Resources"]] == [two.a_user["id"]]
    assert users["totalResults"] == 1
    groups = two.a.get(f"{BASE}/Groups").json
    assert [g["id"] for g in groups["Resources"]] == [two.a_group["id"]]
    assert groups["Resources"][0]["members"] == [member(two.a_user)]
    everything = two.a.post(f"{BASE}/.search", json={"schemas": [SEARCH_URN]}).json
    assert {r["id"] for r in everything["Resources"]} == {two.a_user["id"], two.a_group["id"]}
    assert everything["totalResults"] == 2
    # The user's groups name A's group only.
    assert two.a.get(f"{BASE}/Users/{two.a_user['id']}").json["groups"] == [
        {
            "value": two.a_group["id"],
            "$ref": f"http://localhost{BASE}/Groups/{two.a_group['id']}",
            "display": "A Group",
            "type": "direct",
        }
    ]


# ---------------------------------------------------------------------------------------------
# (c) B's cursors


def forged(cursor: str) -> str:
    """The same payload with a signature this service never made."""
    body, _, signature = cursor.partition(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{body}.{flipped}"


def page(client: FlaskClient, endpoint: str, how: str, cursor: str) -> TestResponse:
    if how == "GET":
        return client.get(f"{BASE}/{endpoint}", query_string={"count": 1, "cursor": cursor})
    body = {"schemas": [SEARCH_URN], "count": 1, "cursor": cursor}
    return client.post(f"{BASE}/{endpoint}/.search", json=body)


@pytest.mark.parametrize("how", ["GET", "POST .search"])
@pytest.mark.parametrize("endpoint", ["Users", "Groups"])
def test_b_cursors_are_refused_for_a_as_forged_ones_are(two, endpoint, how):
    first = page(two.b, endpoint, how, "")
    assert first.status_code == 200, first.json
    next_cursor = first.json["nextCursor"]
    second = page(two.b, endpoint, how, next_cursor)
    assert second.status_code == 200, second.json  # B's cursors work for B
    assert len(second.json["Resources"]) == 1
    previous_cursor = second.json["previousCursor"]

    refused = error(400, NOT_ISSUED, "invalidCursor")
    for cursor in (next_cursor, previous_cursor):
        by_a = page(two.a, endpoint, how, cursor)
        forged_by_a = page(two.a, endpoint, how, forged(cursor))
        assert (by_a.status_code, by_a.json) == (400, refused)
        assert answer(by_a) == answer(forged_by_a)
        garbage = page(two.a, endpoint, how, "not-a-cursor")
        assert answer(by_a) == answer(garbage)


# ---------------------------------------------------------------------------------------------
# (d) B's users and groups as members of A's group


def adds(a_group: dict[str, Any], a_user: dict[str, Any], element: dict[str, Any]) -> list:
    """Every way of making `element` a member of A's group: (method, URL, body)."""
    url = f"{BASE}/Groups/{a_group['id']}"
    a_member = f'members[value eq "{a_user["id"]}"]'
    return [
        ("PATCH", url, patch_payload({"op": "add", "path": "members", "value": [element]})),
        ("PATCH", url, patch_payload({"op": "Add", "value": {"members": [element]}})),  # pathless
        ("PATCH", url, patch_payload({"op": "replace", "path": "members", "value": [element]})),
        ("PATCH", url, patch_payload({"op": "replace", "path": a_member, "value": [element]})),
        ("PUT", url, {"schemas": [GROUP_URN], "displayName": "A Group", "members": [element]}),
        (
            "POST",
            f"{BASE}/Groups",
            {"schemas": [GROUP_URN], "displayName": "A New Group", "members": [element]},
        ),
    ]


@pytest.mark.parametrize("declared", [None, "User", "Group"])
@pytest.mark.parametrize("which", ["user", "user2", "group", "nested", "deleted"])
def test_adding_b_members_to_a_group_is_400_as_for_unknown_ids(two, which, declared):
    b_id, ghost = two.b_ids[which], str(uuid.uuid4())
    b_before, a_before = view(two.b), view(two.a)
    type_ = {"type": declared} if declared else {}
    for (method, url, body), (_, _, never_body) in zip(
        adds(two.a_group, two.a_user, {"value": b_id, **type_}),
        adds(two.a_group, two.a_user, {"value": ghost, **type_}),
        strict=True,
    ):
        with_b = two.a.open(url, method=method, json=body)
        never = two.a.open(url, method=method, json=never_body)
        assert (with_b.status_code, with_b.json) == (
            400,
            error(400, f"members: {b_id!r} is not an existing user or group", "invalidValue"),
        ), (method, body)
        assert swapped(answer(with_b), b_id, ghost) == answer(never), (method, body)
    assert view(two.b) == b_before
    assert view(two.a) == a_before  # not even a new version of A's group


def removals(member_id: str) -> list[dict[str, Any]]:
    """Okta's and Entra ID's ways of removing `member_id` from a group."""
    return [
        patch_payload({"op": "remove", "path": f'members[value eq "{member_id}"]'}),
        patch_payload({"op": "Remove", "path": "members", "value": [{"value": member_id}]}),
    ]


def test_removing_b_members_from_a_group_is_a_no_op_as_for_unknown_ids(two):
    url = f"{BASE}/Groups/{two.a_group['id']}"
    b_before, a_before = view(two.b), view(two.a)
    for b_id in two.b_ids.values():
        ghost = str(uuid.uuid4())
        for body, never_body in zip(removals(b_id), removals(ghost), strict=True):
            with_b, never = two.a.patch(url, json=body), two.a.patch(url, json=never_body)
            assert with_b.status_code == 204, with_b.json
            assert swapped(answer(with_b), b_id, ghost) == answer(never)
    assert view(two.b) == b_before
    assert view(two.a) == a_before  # not even a new version


# ---------------------------------------------------------------------------------------------
# (e) The same names in two tenants


def test_same_user_name_and_group_name_in_two_tenants_both_created(tenant_client):
    a, b = tenant_client("tenant-a"), tenant_client("tenant-b")
    body = user_payload(userName="ada@example.com", externalId="same-external-id")
    a_ada = a.post(f"{BASE}/Users", json=body)
    b_ada = b.post(f"{BASE}/Users", json=user_payload(userName="ADA@example.com"))
    assert (a_ada.status_code, b_ada.status_code) == (201, 201)
    assert a_ada.json["id"] != b_ada.json["id"]
    group = {"schemas": [GROUP_URN], "displayName": "Engineering"}
    a_eng = a.post(f"{BASE}/Groups", json=group)
    b_eng = b.post(f"{BASE}/Groups", json={**group, "displayName": "ENGINEERING"})
    assert (a_eng.status_code, b_eng.status_code) == (201, 201)

    # Within a tenant the names stay unique, case-insensitively.
    again = a.post(f"{BASE}/Users", json=user_payload(userName="Ada@Example.com"))
    assert (again.status_code, again.json) == (
        409,
        error(409, "userName 'Ada@Example.com' is already taken", "uniqueness"),
    )
    again = b.post(f"{BASE}/Groups", json={**group, "displayName": "engineering"})
    assert (again.status_code, again.json) == (
        409,
        error(409, "displayName 'engineering' is already taken", "uniqueness"),
    )
    # Each tenant finds its own by name, and only its own.
    for client, ada, eng in ((a, a_ada, a_eng), (b, b_ada, b_eng)):
        users = client.get(
            f"{BASE}/Users", query_string={"filter": 'userName eq "ada@example.com"'}
        )
        assert [u["id"] for u in users.json["Resources"]] == [ada.json["id"]]
        groups = client.get(
            f"{BASE}/Groups", query_string={"filter": 'displayName eq "engineering"'}
        )
        assert [g["id"] for g in groups.json["Resources"]] == [eng.json["id"]]


def test_renaming_to_a_name_another_tenant_uses_succeeds(tenant_client):
    a, b = tenant_client("tenant-a"), tenant_client("tenant-b")
    a_user = created(a.post(f"{BASE}/Users", json=user_payload(userName="a@example.com")))
    created(b.post(f"{BASE}/Users", json=user_payload(userName="taken@example.com")))
    created(a.post(f"{BASE}/Users", json=user_payload(userName="mine@example.com")))
    a_group = post_group(a, "A Team")
    post_group(b, "Shared Name")
    post_group(a, "A Other")

    rename = patch_payload({"op": "replace", "path": "userName", "value": "taken@example.com"})
    renamed = a.patch(f"{BASE}/Users/{a_user['id']}", json=rename)
    assert renamed.status_code == 200, renamed.json
    assert renamed.json["userName"] == "taken@example.com"
    put = a.put(
        f"{BASE}/Groups/{a_group['id']}",
        json={"schemas": [GROUP_URN], "displayName": "Shared Name"},
    )
    assert put.status_code == 200, put.json
    # Within A, a name A uses is still refused.
    clash = patch_payload({"op": "replace", "path": "userName", "value": "MINE@example.com"})
    refused = a.patch(f"{BASE}/Users/{a_user['id']}", json=clash)
    assert (refused.status_code, refused.json) == (
        409,
        error(409, "userName 'MINE@example.com' is already taken", "uniqueness"),
    )
    clash = patch_payload({"op": "replace", "path": "displayName", "value": "a other"})
    refused = a.patch(f"{BASE}/Groups/{a_group['id']}", json=clash)
    assert (refused.status_code, refused.json) == (
        409,
        error(409, "displayName 'a other' is already taken", "uniqueness"),
    )


# ---------------------------------------------------------------------------------------------
# (f) DELETE of B's ids


def test_deleting_b_resources_with_a_token_is_404_and_b_keeps_them(two):
    before = view(two.b)
    for kind, b_id in (
        ("Users", two.b_ids["user"]),
        ("Users", two.b_ids["user2"]),
        ("Groups", two.b_ids["group"]),
        ("Groups", two.b_ids["nested"]),
    ):
        ghost = str(uuid.uuid4())
        deleted = two.a.delete(f"{BASE}/{kind}/{b_id}")
        never = two.a.delete(f"{BASE}/{kind}/{ghost}")
        name = kind[:-1]
        assert (deleted.status_code, deleted.json) == (404, error(404, f"{name} {b_id} not found"))
        assert swapped(answer(deleted), b_id, ghost) == answer(never)
        # With the If-Match B would send, too.
        version = two.b.get(f"{BASE}/{kind}/{b_id}").headers["ETag"]
        deleted = two.a.delete(f"{BASE}/{kind}/{b_id}", headers={"If-Match": version})
        assert deleted.status_code == 404
    assert view(two.b) == before
    # B can still delete its own.
    assert two.b.delete(f"{BASE}/Users/{two.b_ids['user']}").status_code == 204


# ---------------------------------------------------------------------------------------------
# (g) Suspended and deleted tenants


def suspended_detail(slug: str) -> str:
    return (
        f"The tenant {slug!r} is suspended: its data is kept but no request is served until the "
        "service operator resumes it"
    )


def test_suspended_tenant_gets_403_with_a_scim_detail_on_every_route(app, two):
    a_before = view(two.a)
    b_before = view(two.b)
    tenants.set_state("tenant-a", TenantState.SUSPENDED)
    routes = scim_routes(app)
    for rule, method, arguments in routes:
        reply = probe(two.a, rule, method, arguments, two.a_user["id"])
        assert reply.status_code == 403, (method, rule, reply.status_code)
        if method != "HEAD":
            assert reply.mimetype == "application/scim+json"
            assert reply.json == error(403, suspended_detail("tenant-a")), (method, rule)
    unrouted = two.a.get(f"{BASE}/NoSuchEndpoint")
    assert (unrouted.status_code, unrouted.json) == (403, error(403, suspended_detail("tenant-a")))
    assert view(two.b) == b_before  # the other tenant is served as before

    tenants.set_state("tenant-a", TenantState.ACTIVE)
    assert view(two.a) == a_before  # resumed, with its data as it was


def test_deleted_tenant_tokens_are_401_as_unknown_tokens(app, two, anonymous):
    b_before = view(two.b)
    tenants.set_state("tenant-a", TenantState.DELETED)
    unknown = app.test_client()
    unknown.environ_base["HTTP_AUTHORIZATION"] = "Bearer never-issued-token-0123456789"
    for rule, method, arguments in scim_routes(app):
        reply = probe(two.a, rule, method, arguments, two.a_user["id"])
        never = probe(unknown, rule, method, arguments, two.a_user["id"])
        assert reply.status_code == 401, (method, rule)
        assert answer(reply) == answer(never), (method, rule)
        if method != "HEAD":
            assert reply.json == error(401, "The bearer token is not valid")
            assert reply.headers["WWW-Authenticate"] == 'Bearer realm="scim", error="invalid_token"'
    assert view(two.b) == b_before


# ---------------------------------------------------------------------------------------------
# (h) Probes


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_the_same_for_every_caller(two, anonymous, path):
    expected = anonymous.get(path)
    assert (expected.status_code, expected.json) == (200, {"status": "ok"})
    assert expected.headers["Cache-Control"] == "no-store"
    tenants.set_state("tenant-b", TenantState.SUSPENDED)
    for client in (two.a, two.b):
        assert answer(client.get(path)) == answer(expected)
    tenants.set_state("tenant-b", TenantState.DELETED)
    assert answer(two.b.get(path)) == answer(expected)
