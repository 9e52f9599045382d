"""Groups and Group Push (RFC 7644 §3, Okta and Entra ID membership forms)."""

from __future__ import annotations

import json
import time

from tests.conftest import BASE, statements
from tests.payloads import (
    GROUP_URN,
    USER_URN,
    error,
    patch_payload,
    without_volatile,
)


def member(user, kind="User"):
    path = "Users" if kind == "User" else "Groups"
    return {
        "value": user["id"],
        "$ref": f"http://localhost{BASE}/{path}/{user['id']}",
        "type": kind,
        "display": user.get("displayName") or user.get("userName"),
    }


def get_group(client, group):
    response = client.get(f"{BASE}/Groups/{group['id']}")
    assert response.status_code == 200
    return response.json


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


def test_okta_group_push_add_and_remove(client, create_user, create_group):
    jane = create_user()
    bob = create_user(userName="bob@example.com", displayName="Bob", externalId="00u2")
    group = create_group()
    add = patch_payload(
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
    response = client.patch(f"{BASE}/Groups/{group['id']}", json=add)
    assert response.status_code == 204
    assert response.headers["ETag"] == 'W/"2"'
    assert sorted(m["value"] for m in get_group(client, group)["members"]) == sorted(
        [jane["id"], bob["id"]]
    )
    remove = patch_payload({"op": "remove", "path": f'members[value eq "{jane["id"]}"]'})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=remove).status_code == 204
    after = get_group(client, group)
    assert after["members"] == [member(bob)]
    assert after["meta"]["version"] == 'W/"3"'


def test_adding_an_existing_member_is_a_no_op(client, create_user, create_group):
    jane = create_user()
    group = create_group(members=[{"value": jane["id"]}])
    add = patch_payload({"op": "add", "path": "members", "value": [{"value": jane["id"]}]})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=add).status_code == 204
    after = get_group(client, group)
    assert after["members"] == [member(jane)]
    assert after["meta"]["version"] == group["meta"]["version"]  # nothing changed


def test_okta_push_now_rename_with_id_and_empty_members(client, create_user, create_group):
    jane = create_user()
    group = create_group(members=[{"value": jane["id"]}])
    body = patch_payload(
        {
            "op": "replace",
            "value": {"id": group["id"], "displayName": "Engineering (all)", "members": []},
        }
    )
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=body).status_code == 204
    after = get_group(client, group)
    assert after["displayName"] == "Engineering (all)"
    assert "members" not in after


def test_replace_with_a_different_id_is_400_mutability(client, create_group):
    group = create_group()
    body = patch_payload({"op": "replace", "value": {"id": "other", "displayName": "X"}})
    response = client.patch(f"{BASE}/Groups/{group['id']}", json=body)
    assert response.status_code == 400
    assert response.json == error(400, "id is readOnly", "mutability")
    assert get_group(client, group)["displayName"] == "Engineering"


def test_entra_remove_listed_members_only(client, create_user, create_group):
    jane = create_user()
    bob = create_user(userName="bob@example.com", displayName="Bob")
    group = create_group(members=[{"value": jane["id"]}, {"value": bob["id"]}])
    body = patch_payload({"op": "Remove", "path": "members", "value": [{"value": jane["id"]}]})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=body).status_code == 204
    assert get_group(client, group)["members"] == [member(bob)]


def test_remove_all_members_and_replace_members(client, create_user, create_group):
    jane = create_user()
    bob = create_user(userName="bob@example.com", displayName="Bob")
    group = create_group(members=[{"value": jane["id"]}])
    replace = patch_payload({"op": "replace", "path": "members", "value": [{"value": bob["id"]}]})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=replace).status_code == 204
    assert get_group(client, group)["members"] == [member(bob)]
    clear = patch_payload({"op": "remove", "path": "members"})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=clear).status_code == 204
    assert "members" not in get_group(client, group)


def test_patch_is_atomic_when_a_member_is_unknown(client, create_user, create_group):
    jane = create_user()
    group = create_group()
    body = patch_payload(
        {"op": "replace", "path": "displayName", "value": "Renamed"},
        {"op": "add", "path": "members", "value": [{"value": jane["id"]}]},
        {"op": "add", "path": "members", "value": [{"value": "missing-user"}]},
    )
    response = client.patch(f"{BASE}/Groups/{group['id']}", json=body)
    assert response.status_code == 400
    assert response.json == error(
        400, "members: 'missing-user' is not an existing user or group", "invalidValue"
    )
    after = get_group(client, group)
    assert after["displayName"] == "Engineering"
    assert "members" not in after
    assert after["meta"]["version"] == 'W/"1"'


def test_patch_with_excluded_members_returns_the_group_without_members(
    client, create_user, create_group
):
    jane = create_user()
    group = create_group()
    body = patch_payload({"op": "add", "path": "members", "value": [{"value": jane["id"]}]})
    response = client.patch(f"{BASE}/Groups/{group['id']}?excludedAttributes=members", json=body)
    assert response.status_code == 200
    assert without_volatile(response.json) == {
        "schemas": [GROUP_URN],
        "displayName": "Engineering",
        "meta": {"resourceType": "Group"},
    }


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


def test_nested_groups_and_cycles(client, create_group):
    parent = create_group("Parent")
    child = create_group("Child", members=[])
    add_child = patch_payload(
        {"op": "add", "path": "members", "value": [{"value": child["id"], "type": "Group"}]}
    )
    assert client.patch(f"{BASE}/Groups/{parent['id']}", json=add_child).status_code == 204
    assert get_group(client, parent)["members"] == [member(child, "Group")]
    add_parent = patch_payload({"op": "add", "path": "members", "value": [{"value": parent["id"]}]})
    response = client.patch(f"{BASE}/Groups/{child['id']}", json=add_parent)
    assert response.status_code == 400
    assert response.json["scimType"] == "invalidValue"
    itself = patch_payload({"op": "add", "path": "members", "value": [{"value": parent["id"]}]})
    assert client.patch(f"{BASE}/Groups/{parent['id']}", json=itself).status_code == 400


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
    after = get_group(client, group)
    assert after["members"] == [member(bob)]
    assert after["meta"]["version"] == 'W/"2"'


def test_deactivated_user_stays_a_member(client, create_user, create_group):
    jane = create_user()
    group = create_group(members=[{"value": jane["id"]}])
    deactivate = patch_payload({"op": "replace", "value": {"active": False}})
    client.patch(f"{BASE}/Users/{jane['id']}", json=deactivate)
    assert get_group(client, group)["members"] == [member(jane)]


def test_replace_members_with_an_unmatched_filter_is_400_no_target(
    client, create_user, create_group
):
    jane = create_user()
    group = create_group()
    body = patch_payload(
        {"op": "replace", "path": 'members[value eq "absent"]', "value": [{"value": jane["id"]}]}
    )
    response = client.patch(f"{BASE}/Groups/{group['id']}", json=body)
    assert response.json == error(400, "No member matches the filter in the path", "noTarget")
    assert "members" not in get_group(client, group)


def test_a_name_taken_between_check_and_write_is_409_not_500(client, create_group, monkeypatch):
    from app.store import groups

    create_group("Sales")
    other = create_group("Marketing")
    # As if a concurrent request took the name just after this one checked it.
    monkeypatch.setattr(groups, "_check_display_name_free", lambda *args: None)
    response = client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "SALES"})
    assert response.json == error(409, "displayName 'SALES' is already taken", "uniqueness")
    monkeypatch.undo()
    rename = patch_payload({"op": "replace", "path": "displayName", "value": "sales"})
    monkeypatch.setattr(groups, "_check_display_name_free", _free_once())
    response = client.patch(f"{BASE}/Groups/{other['id']}", json=rename)
    assert response.json == error(409, "displayName 'sales' is already taken", "uniqueness")


def _free_once():
    """The uniqueness check passes once (the race), then sees the truth on the retry."""
    from app.store import groups

    real, calls = groups._check_display_name_free, []

    def check(display_name, own_id):
        calls.append(display_name)
        if len(calls) > 1:
            real(display_name, own_id)

    return check


def test_every_membership_change_bumps_last_modified(client, create_user, create_group):
    jane = create_user()
    group = create_group()
    before = group["meta"]["lastModified"]
    time.sleep(0.002)  # timestamps are shown to the millisecond
    add = patch_payload({"op": "add", "path": "members", "value": [{"value": jane["id"]}]})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=add).status_code == 204
    after_add = get_group(client, group)["meta"]
    assert after_add["lastModified"] > before and after_add["version"] == 'W/"2"'
    time.sleep(0.002)
    client.delete(f"{BASE}/Users/{jane['id']}")  # a deleted user leaves the group
    after_delete = get_group(client, group)["meta"]
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
    assert get_group(client, response.json) == response.json


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
    assert get_group(client, group) == response.json


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
    assert get_group(client, group) == response.json
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
