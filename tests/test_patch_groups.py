"""PATCH /Groups/{id} (RFC 7644 §3.5.2) as Okta's Group Push and Entra ID send it: members
added, removed and replaced, no-ops, cycles, atomicity, and the 200 a projection asks for."""

from __future__ import annotations

from tests.conftest import BASE
from tests.payloads import GROUP_URN, error, fetch, member, patch_payload, without_volatile


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
    assert sorted(m["value"] for m in fetch(client, group)["members"]) == sorted(
        [jane["id"], bob["id"]]
    )
    remove = patch_payload({"op": "remove", "path": f'members[value eq "{jane["id"]}"]'})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=remove).status_code == 204
    after = fetch(client, group)
    assert after["members"] == [member(bob)]
    assert after["meta"]["version"] == 'W/"3"'


def test_adding_an_existing_member_is_a_no_op(client, create_user, create_group):
    jane = create_user()
    group = create_group(members=[{"value": jane["id"]}])
    add = patch_payload({"op": "add", "path": "members", "value": [{"value": jane["id"]}]})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=add).status_code == 204
    after = fetch(client, group)
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
    after = fetch(client, group)
    assert after["displayName"] == "Engineering (all)"
    assert "members" not in after


def test_replace_with_a_different_id_is_400_mutability(client, create_group):
    group = create_group()
    body = patch_payload({"op": "replace", "value": {"id": "other", "displayName": "X"}})
    response = client.patch(f"{BASE}/Groups/{group['id']}", json=body)
    assert response.status_code == 400
    assert response.json == error(400, "id is readOnly", "mutability")
    assert fetch(client, group)["displayName"] == "Engineering"


def test_entra_remove_listed_members_only(client, create_user, create_group):
    jane = create_user()
    bob = create_user(userName="bob@example.com", displayName="Bob")
    group = create_group(members=[{"value": jane["id"]}, {"value": bob["id"]}])
    body = patch_payload({"op": "Remove", "path": "members", "value": [{"value": jane["id"]}]})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=body).status_code == 204
    assert fetch(client, group)["members"] == [member(bob)]


def test_remove_all_members_and_replace_members(client, create_user, create_group):
    jane = create_user()
    bob = create_user(userName="bob@example.com", displayName="Bob")
    group = create_group(members=[{"value": jane["id"]}])
    replace = patch_payload({"op": "replace", "path": "members", "value": [{"value": bob["id"]}]})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=replace).status_code == 204
    assert fetch(client, group)["members"] == [member(bob)]
    clear = patch_payload({"op": "remove", "path": "members"})
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=clear).status_code == 204
    assert "members" not in fetch(client, group)


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
    assert "members" not in fetch(client, group)


def test_nested_groups_and_cycles(client, create_group):
    parent = create_group("Parent")
    child = create_group("Child", members=[])
    add_child = patch_payload(
        {"op": "add", "path": "members", "value": [{"value": child["id"], "type": "Group"}]}
    )
    assert client.patch(f"{BASE}/Groups/{parent['id']}", json=add_child).status_code == 204
    assert fetch(client, parent)["members"] == [member(child, "Group")]
    add_parent = patch_payload({"op": "add", "path": "members", "value": [{"value": parent["id"]}]})
    response = client.patch(f"{BASE}/Groups/{child['id']}", json=add_parent)
    assert response.status_code == 400
    assert response.json["scimType"] == "invalidValue"
    itself = patch_payload({"op": "add", "path": "members", "value": [{"value": parent["id"]}]})
    assert client.patch(f"{BASE}/Groups/{parent['id']}", json=itself).status_code == 400


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
    after = fetch(client, group)
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
