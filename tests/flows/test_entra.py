"""Microsoft Entra ID's provisioning service, request by request (../shared/SCIM.md)."""

from __future__ import annotations

import uuid

from tests.conftest import BASE
from tests.payloads import ENTERPRISE_URN, GROUP_URN, LIST_URN, USER_URN, patch_payload

ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
EMPTY = {
    "schemas": [LIST_URN],
    "totalResults": 0,
    "startIndex": 1,
    "itemsPerPage": 0,
    "Resources": [],
}


def test_test_connection_queries_random_ids_and_gets_empty_lists(client):
    for path, attribute in (
        ("/Users", "userName"),
        ("/Users", "externalId"),
        ("/Groups", "displayName"),
    ):
        query = {"filter": f'{attribute} eq "{uuid.uuid4()}"'}
        assert client.get(f"{BASE}{path}", query_string=query).json == EMPTY


def test_user_and_group_sequence(client):
    # Entra looks a user up by its matching attribute, then creates it with the extension.
    lookup = {"filter": 'externalId eq "8b1d5a3e-entra"'}
    assert client.get(f"{BASE}/Users", query_string=lookup).json == EMPTY
    body = {
        "schemas": [USER_URN, ENTERPRISE_URN],
        "externalId": "8b1d5a3e-entra",
        "userName": "Adele.Vance@contoso.example",
        "active": True,
        "displayName": "Adele Vance",
        "name": {"formatted": "Adele Vance", "familyName": "Vance", "givenName": "Adele"},
        "emails": [{"primary": True, "type": "work", "value": "Adele.Vance@contoso.example"}],
        "title": "Retail Manager",
        ENTERPRISE_URN: {"employeeNumber": "1001", "department": "Retail"},
    }
    created = client.post(f"{BASE}/Users", json=body)
    assert created.status_code == 201
    uid = created.json["id"]
    found = client.get(f"{BASE}/Users", query_string=lookup).json
    assert [u["id"] for u in found["Resources"]] == [uid]

    manager = client.post(
        f"{BASE}/Users", json={"schemas": [USER_URN], "userName": "boss@contoso.example"}
    ).json
    # Older tenants: capitalised ops, one attribute per operation, booleans as strings.
    update = patch_payload(
        {"op": "Replace", "path": "displayName", "value": "Adele V."},
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "path": 'emails[type eq "home"].value', "value": "adele@home.example"},
        {"op": "Add", "path": 'addresses[type eq "work"].formatted', "value": "1 Main St"},
        {"op": "Add", "path": f"{ENTERPRISE_URN}:manager", "value": manager["id"]},
        {"op": "Replace", "path": f"{ENTERPRISE_URN}:department", "value": "Sales"},
    )
    response = client.patch(f"{BASE}/Users/{uid}", json=update)
    assert response.status_code == 200, response.json
    user = response.json
    assert user["displayName"] == "Adele V."
    assert user["active"] is False
    assert {"type": "home", "value": "adele@home.example"} in user["emails"]
    assert user["addresses"] == [{"type": "work", "formatted": "1 Main St"}]
    assert user[ENTERPRISE_URN] == {
        "employeeNumber": "1001",
        "department": "Sales",
        "manager": {"value": manager["id"]},
    }
    # Newer tenants (aadOptscim062020): path-less values whose keys are paths.
    newer = patch_payload(
        {
            "op": "replace",
            "value": {
                "active": True,
                "name.givenName": "Adèle",
                f"{ENTERPRISE_URN}:employeeNumber": "1002",
                'emails[type eq "work"].value': "adele.vance@contoso.example",
            },
        }
    )
    user = client.patch(f"{BASE}/Users/{uid}", json=newer).json
    assert (user["active"], user["name"]["givenName"], user[ENTERPRISE_URN]["employeeNumber"]) == (
        True,
        "Adèle",
        "1002",
    )
    assert {"primary": True, "type": "work", "value": "adele.vance@contoso.example"} in user[
        "emails"
    ]
    remove_manager = patch_payload({"op": "Remove", "path": f"{ENTERPRISE_URN}:manager"})
    assert (
        "manager"
        not in client.patch(f"{BASE}/Users/{uid}", json=remove_manager).json[ENTERPRISE_URN]
    )

    # Groups: lookup by displayName without members, create, add, membership check, remove.
    group_lookup = {"filter": 'displayName eq "Retail"', "excludedAttributes": "members"}
    assert client.get(f"{BASE}/Groups", query_string=group_lookup).json == EMPTY
    # Microsoft's tutorial body: a second, legacy schema URN, and meta.resourceType.
    group = client.post(
        f"{BASE}/Groups",
        json={
            "schemas": [GROUP_URN, ADSCIM_GROUP],
            "displayName": "Retail",
            "externalId": "g-1",
            "meta": {"resourceType": "Group"},
        },
    )
    assert group.status_code == 201, group.json
    assert group.json["schemas"] == [GROUP_URN]
    gid = group.json["id"]
    add = patch_payload({"op": "Add", "path": "members", "value": [{"value": uid}]})
    assert client.patch(f"{BASE}/Groups/{gid}", json=add).status_code == 204
    check = {
        "filter": f'id eq "{gid}" and members[value eq "{uid}"]',
        "excludedAttributes": "members",
    }
    assert client.get(f"{BASE}/Groups", query_string=check).json["totalResults"] == 1
    remove = patch_payload({"op": "Remove", "path": "members", "value": [{"value": uid}]})
    assert client.patch(f"{BASE}/Groups/{gid}", json=remove).status_code == 204
    assert client.get(f"{BASE}/Groups", query_string=check).json["totalResults"] == 0

    # Disable, then delete: the user is gone from every read.
    disable = patch_payload({"op": "Replace", "path": "active", "value": "False"})
    assert client.patch(f"{BASE}/Users/{uid}", json=disable).json["active"] is False
    assert client.get(f"{BASE}/Users", query_string=lookup).json["totalResults"] == 1
    assert client.delete(f"{BASE}/Users/{uid}").status_code == 204
    assert client.get(f"{BASE}/Users/{uid}").status_code == 404
    assert client.get(f"{BASE}/Users", query_string=lookup).json == EMPTY
