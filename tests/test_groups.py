"""Groups (RFC 7644 §3): create, read, PUT and DELETE, a user's groups, what deleting or
deactivating a member does, the cost of a listing, and Entra ID's legacy Group schema URN.
PATCH /Groups: test_patch_groups.py."""

from __future__ import annotations

import json
import time
import uuid

from flask import current_app
from sqlalchemy import insert, text, update

from app.db import db, utcnow
from app.models import Group, Member, User
from app.store import users as users_store
from app.store.groups import members_read
from tests.conftest import BASE, statements
from tests.payloads import (
    GROUP_URN,
    USER_URN,
    error,
    fetch,
    member,
    patch_payload,
    without_volatile,
)


def test_create_group_returns_201_with_location_and_meta(client):
    body = {
        "schemas": [GROUP_URN],
        "displayName": "Engineering",
        "externalId": "00g1",
        "members": [],
    }
    response = client.post(f"{BASE}/Groups", json=body)
    assert response.status_code == 201
    group = response.json
    assert without_volatile(group) == {
        "schemas": [GROUP_URN],
        "externalId": "00g1",
        "displayName": "Engineering",
        "meta": {"resourceType": "Group"},
    }
    location = f"http://localhost{BASE}/Groups/{group['id']}"
    assert response.headers["Location"] == location == group["meta"]["location"]
    assert response.headers["ETag"] == group["meta"]["version"] == 'W/"1"'


def test_create_with_members_returns_them(client, create_user, create_group):
    jane = create_user()
    group = create_group(members=[{"value": jane["id"], "display": "jane@example.com"}])
    assert group["members"] == [member(jane)]


def test_display_name_is_unique_case_insensitively(client, create_group):
    create_group("Engineering")
    response = client.post(
        f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "ENGINEERING"}
    )
    assert response.status_code == 409
    assert response.json == error(409, "displayName 'ENGINEERING' is already taken", "uniqueness")


def test_display_name_is_required(client):
    response = client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN]})
    assert response.status_code == 400
    assert response.json == error(400, "displayName is required", "invalidValue")


def test_unknown_member_is_400_and_nothing_is_created(client):
    body = {"schemas": [GROUP_URN], "displayName": "Ghosts", "members": [{"value": "nobody"}]}
    response = client.post(f"{BASE}/Groups", json=body)
    assert response.status_code == 400
    assert response.json == error(
        400, "members: 'nobody' is not an existing user or group", "invalidValue"
    )
    assert client.get(f"{BASE}/Groups").json["totalResults"] == 0


def test_put_replaces_display_name_and_members(client, create_user, create_group):
    jane = create_user()
    bob = create_user(userName="bob@example.com", displayName="Bob")
    group = create_group(members=[{"value": jane["id"]}])
    body = {"schemas": [GROUP_URN], "displayName": "Platform", "members": [{"value": bob["id"]}]}
    response = client.put(f"{BASE}/Groups/{group['id']}", json=body)
    assert response.status_code == 200
    assert response.json["displayName"] == "Platform"
    assert response.json["members"] == [member(bob)]
    assert response.json["meta"]["version"] == 'W/"2"'


def test_delete_group_is_a_tombstone(client, create_user, create_group):
    jane = create_user()
    group = create_group(members=[{"value": jane["id"]}])
    assert client.delete(f"{BASE}/Groups/{group['id']}").status_code == 204
    url = f"{BASE}/Groups/{group['id']}"
    assert client.get(url).json == error(404, f"Group {group['id']} not found")
    assert (
        client.patch(url, json=patch_payload({"op": "remove", "path": "members"})).status_code
        == 404
    )
    assert client.delete(url).status_code == 404
    assert "groups" not in client.get(f"{BASE}/Users/{jane['id']}").json
    # The name is free again.
    assert (
        client.post(
            f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Engineering"}
        ).status_code
        == 201
    )


def test_users_show_their_groups_read_only(client, create_user, create_group):
    jane = create_user(groups=[{"value": "ignored"}])
    group = create_group(members=[{"value": jane["id"]}])
    user = client.get(f"{BASE}/Users/{jane['id']}").json
    assert user["groups"] == [
        {
            "value": group["id"],
            "$ref": f"http://localhost{BASE}/Groups/{group['id']}",
            "display": "Engineering",
            "type": "direct",
        }
    ]
    listed = client.get(f"{BASE}/Users").json["Resources"][0]
    assert listed["groups"] == user["groups"]


def test_deleted_user_leaves_every_group_and_bumps_it(client, create_user, create_group):
    jane = create_user()
    bob = create_user(userName="bob@example.com", displayName="Bob")
    group = create_group(members=[{"value": jane["id"]}, {"value": bob["id"]}])
    assert client.delete(f"{BASE}/Users/{jane['id']}").status_code == 204
    after = fetch(client, group)
    assert after["members"] == [member(bob)]
    assert after["meta"]["version"] == 'W/"2"'


def test_a_membership_row_that_outlived_its_member_is_not_shown(client, create_user, create_group):
    # DELETE takes a user or group out of every group as it tombstones it; should a membership
    # row outlive its member all the same, the group's read still shows live members only,
    # users and nested groups alike, each with its display.
    jane = create_user()
    bob = create_user(userName="bob@example.com", displayName="Bob")
    child, gone = create_group("Child", members=[]), create_group("Gone", members=[])
    everyone = [jane, bob, child, gone]
    group = create_group("Parent", members=[{"value": m["id"]} for m in everyone])
    now = utcnow()
    db.session.execute(update(User).where(User.id == jane["id"]).values(deleted_at=now))
    db.session.execute(update(Group).where(Group.id == gone["id"]).values(deleted_at=now))
    db.session.commit()
    shown = [member(bob), member(child, "Group")]
    assert fetch(client, group)["members"] == sorted(shown, key=lambda m: m["value"])


def test_deactivated_user_stays_a_member(client, create_user, create_group):
    jane = create_user()
    group = create_group(members=[{"value": jane["id"]}])
    deactivate = patch_payload({"op": "replace", "value": {"active": False}})
    client.patch(f"{BASE}/Users/{jane['id']}", json=deactivate)
    assert fetch(client, group)["members"] == [member(jane)]


def test_a_taken_name_is_409_on_create_and_on_rename(client, create_group):
    # The unique index of live names answers: no lookup of the name runs before a write.
    create_group("Sales")
    other = create_group("Marketing")
    response = client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "SALES"})
    assert response.json == error(409, "displayName 'SALES' is already taken", "uniqueness")
    rename = patch_payload({"op": "replace", "path": "displayName", "value": "sales"})
    response = client.patch(f"{BASE}/Groups/{other['id']}", json=rename)
    assert response.json == error(409, "displayName 'sales' is already taken", "uniqueness")
    assert client.get(f"{BASE}/Groups/{other['id']}").json["displayName"] == "Marketing"


def test_a_member_change_reads_no_group_by_its_name(client, create_user, create_group):
    jane = create_user()
    group = create_group("Sales")
    add = patch_payload({"op": "add", "path": "members", "value": [{"value": jane["id"]}]})
    with statements() as seen:
        assert client.patch(f"{BASE}/Groups/{group['id']}", json=add).status_code == 204
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert selects and not [s for s in selects if "display_name_key =" in s]
    assert fetch(client, group)["members"] == [member(jane)]


def test_every_membership_change_bumps_last_modified(client, create_user, create_group):
    jane = create_user()
    group = create_group()
    before = group["meta"]["lastModified"]
    time.sleep(0.002)  # timestamps are shown to the millisecond
    add = patch_payload({"op": "add", "path": "members", "value": [{"value": jane["id"]}]})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=add).status_code == 204
    after_add = fetch(client, group)["meta"]
    assert after_add["lastModified"] > before and after_add["version"] == 'W/"2"'
    time.sleep(0.002)
    client.delete(f"{BASE}/Users/{jane['id']}")  # a deleted user leaves the group
    after_delete = fetch(client, group)["meta"]
    assert after_delete["lastModified"] > after_add["lastModified"]
    assert after_delete["version"] == 'W/"3"'


def test_listing_groups_costs_the_same_statements_whatever_their_number(
    client, create_user, create_group
):
    jane = create_user()
    counts = []
    for batch in range(2):
        for n in range(3 * batch, 3 * batch + 3):
            create_group(f"Team {n}", members=[{"value": jane["id"]}])
        with statements() as seen:
            assert client.get(f"{BASE}/Groups?count=100").status_code == 200
        counts.append(len(seen))
    assert counts[0] == counts[1]  # no query per group: members come in one query for the page


# --- Entra ID's legacy Group schema URN: accepted, never stored or returned -------------------

ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


def test_entra_tutorial_group_with_the_legacy_schema_urn_is_created_without_it(client):
    # Microsoft's "Develop a SCIM endpoint" tutorial, Create Group, as sent.
    body = {
        "schemas": [GROUP_URN, ADSCIM_GROUP],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "displayName",
        "meta": {"resourceType": "Group"},
    }
    response = client.post(f"{BASE}/Groups", json=body)
    assert response.status_code == 201, response.json
    expected = {
        "schemas": [GROUP_URN],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "displayName",
        "meta": {"resourceType": "Group"},
    }
    assert without_volatile(response.json) == expected
    assert fetch(client, response.json) == response.json


def test_put_with_the_legacy_schema_urn_replaces_the_group_without_it(
    client, create_user, create_group
):
    jane = create_user()
    group = create_group()
    body = {
        "schemas": [ADSCIM_GROUP.lower(), GROUP_URN],
        "displayName": "Engineering (all)",
        "members": [{"value": jane["id"]}],
    }
    response = client.put(f"{BASE}/Groups/{group['id']}", json=body)
    assert response.status_code == 200, response.json
    assert response.json["schemas"] == [GROUP_URN]
    assert response.json["displayName"] == "Engineering (all)"
    assert response.json["members"] == [member(jane)]
    assert fetch(client, group) == response.json


def test_patch_with_the_legacy_schema_urn_in_a_pathless_value_ignores_it(client, create_group):
    group = create_group()
    body = patch_payload(
        {
            "op": "Replace",
            "value": {"schemas": [GROUP_URN, ADSCIM_GROUP], "displayName": "Retail"},
        }
    )
    url = f"{BASE}/Groups/{group['id']}"
    response = client.patch(url, json=body, query_string={"excludedAttributes": "members"})
    assert response.status_code == 200, response.json
    assert response.json["schemas"] == [GROUP_URN]
    assert response.json["displayName"] == "Retail"
    assert fetch(client, group) == response.json
    assert ADSCIM_GROUP.lower() not in json.dumps(response.json).lower()


def test_the_legacy_group_schema_urn_is_no_user_schema(client):
    body = {"schemas": [USER_URN, ADSCIM_GROUP], "userName": "jane@example.com"}
    response = client.post(f"{BASE}/Users", json=body)
    assert response.status_code == 400
    assert response.json == error(
        400,
        f"Unknown schema {ADSCIM_GROUP!r}: declare it in SCIM_SCHEMA_EXTENSIONS to use it",
        "invalidValue",
    )


# --- A big group: its members encoded as the response is sent -------------------------------


def _seed_users(count: int) -> list[str]:
    """`count` users inserted in bulk with the store's own row shapes (as benchmarks/bulk.py
    does): setting up 5,000 through POST would take most of this test's time. Their ids."""
    rt = current_app.extensions["scim_registry"].user
    rows = []
    for n in range(count):
        # Every third without displayName: its member `display` falls back to userName.
        document = {"userName": f"big{n:05d}@example.com", "active": True}
        if n % 3:
            document["displayName"] = f"Big Ö {n}"  # not ASCII: encoded as it is
        created = utcnow()
        rows.append(
            users_store.columns(rt, document)
            | {"id": str(uuid.uuid4()), "password_hash": None, "document": document}
            | {"created_at": created, "last_modified": created, "version": 1}
        )
    db.session.execute(insert(User), rows)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        # As autovacuum would, soon: planned as for an empty table, each member's lookup read
        # every user (the GET ran into the statement timeout).
        db.session.execute(text("ANALYZE users"))
        db.session.commit()
    return [row["id"] for row in rows]


# What each projection leaves of every member, and whether the members are sent as encoded
# (a projection that trims each member takes the path of small groups).
BIG_GROUP_QUERIES = {
    "": (None, True),
    "?attributes=members": (None, True),
    "?excludedAttributes=displayName,externalId": (None, True),
    "?attributes=members.value": ({"value"}, False),
    "?excludedAttributes=members.display": ({"value", "$ref", "type"}, False),
}


def test_a_5000_member_group_returns_exactly_every_member(client, create_group):
    ids = _seed_users(5000)
    nested = create_group("Nested")
    members = [{"value": i} for i in ids] + [{"value": nested["id"]}]
    group = create_group("Everyone", externalId="all", members=members)
    gone = ids[17]
    assert client.delete(f"{BASE}/Users/{gone}").status_code == 204
    every = []
    for n, user_id in enumerate(ids):
        if user_id != gone:
            display = f"Big Ö {n}" if n % 3 else f"big{n:05d}@example.com"
            every.append(
                {"value": user_id, "$ref": f"http://localhost{BASE}/Users/{user_id}"}
                | {"type": "User", "display": display}
            )
    every.append(member(nested, "Group"))
    every.sort(key=lambda m: m["value"])
    fresh = client.get(f"{BASE}/Groups/{group['id']}?excludedAttributes=members")

    for query, (kept, streamed) in BIG_GROUP_QUERIES.items():
        with statements() as seen:
            response = client.get(f"{BASE}/Groups/{group['id']}{query}")
        assert response.status_code == 200, (query, response.get_data())
        assert response.headers["ETag"] == fresh.headers["ETag"] == 'W/"2"'
        assert ("Content-Length" not in response.headers) == streamed, query
        assert len([s for s in seen if "group_members" in s]) == 1  # one read, before sending
        body = json.loads(response.get_data())
        expected = every if kept is None else [{k: m[k] for k in kept} for m in every]
        assert body["members"] == expected, query
        selecting = query.startswith("?attributes")
        meta = {"resourceType": "Group"} | (
            {} if selecting else {k: fresh.json["meta"][k] for k in META}
        )
        rest = {"schemas": [GROUP_URN], "id": group["id"], "meta": meta}
        if not selecting and "displayName" not in query:
            rest |= {"externalId": "all", "displayName": "Everyone"}
        assert {k: v for k, v in body.items() if k != "members"} == rest, query
        assert list(body)[-2:] == ["members", "meta"], query


META = ("created", "lastModified", "location", "version")

# Display names JSON must escape, or must not: quotes, backslashes, control characters, the
# separators the streamed text is joined with, non-ASCII from the BMP and beyond it. (A lone
# surrogate or a NUL is refused when sent: no database stores them, app/intake.py.)
HOSTILE = (
    'say "hi"',
    "back\\slash \\u0041 \\",
    "tab\there\nnewline\r\x01\x1f\x7f",
    '", "display": "forged", "x": "',
    "}, {",
    "Öß 中文 \u2028\u2029 \U0001f600",
    "</script><script>",
)


def test_a_streamed_group_writes_hostile_names_exactly_as_a_small_group(
    client, create_user, create_group
):
    hostile = [
        create_user(userName=f"hostile{n}@example.com", displayName=name, externalId=None)
        for n, name in enumerate(HOSTILE)
    ]
    # Without displayName: the member's display is its userName, as hostile.
    hostile.append(create_user(userName='no "display" \\ \x02 Ü', displayName=None))
    nested = create_group('Nested "\\ \n Ö \U0001f600')
    elements = [{"value": u["id"]} for u in hostile] + [{"value": nested["id"]}]
    small = create_group("Small", members=elements)
    big = create_group("Big", members=elements + [{"value": i} for i in _seed_users(1000)])

    texts = {}
    for group in (small, big):
        response = client.get(f"{BASE}/Groups/{group['id']}")
        assert response.status_code == 200
        texts[group["id"]] = response.get_data(as_text=True)
    assert "Content-Length" not in response.headers  # the big group's: streamed
    small_members = json.loads(texts[small["id"]])["members"]
    big_members = json.loads(texts[big["id"]])["members"]
    expected = [member(u) for u in hostile] + [member(nested, "Group")]
    assert small_members == sorted(expected, key=lambda m: m["value"])
    assert [m for m in big_members if m["value"] in {u["value"] for u in expected}] == small_members
    assert len(big_members) == 1000 + len(expected)
    for body in texts.values():
        # Each is the text json_text writes for its body, as every other response is.
        compact = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))
        assert body == compact + "\n"


def test_members_read_out_of_code_point_order_are_put_in_it():
    # The database aggregates members in its collation; ids that collate otherwise than by code
    # point (never the service's own UUIDs) are sorted again, each keeping its type and display.
    group = Group()
    group.members_read = [["b", "B", "a"], ["User", "Group", "User"], ["Bea", None, "Al"]]
    assert list(members_read(group)) == [
        Member("B", "Group", None),
        Member("a", "User", "Al"),
        Member("b", "User", "Bea"),
    ]
    group.members_read = [None, None, None]  # PostgreSQL's json_agg of no rows
    assert list(members_read(group)) == []
