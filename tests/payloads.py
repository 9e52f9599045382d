"""Valid request bodies to start from, and the helpers tests share to read responses."""

from __future__ import annotations

import copy
from typing import Any

BASE = "/scim/v2"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"

# What names a listed resource in found() and listed_names().
NAME_OF = {"Users": "userName", "Groups": "displayName"}


def user_payload(**overrides: Any) -> dict[str, Any]:
    """What Okta's SCIM 2.0 connector sends to create a user."""
    body: dict[str, Any] = {
        "schemas": [USER_URN],
        "userName": "jane@example.com",
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"primary": True, "value": "jane@example.com", "type": "work"}],
        "displayName": "Jane Doe",
        "locale": "en-US",
        "externalId": "00u1abcd2EFGH3ijk4l5",
        "groups": [],
        "active": True,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def patch_payload(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_URN], "Operations": list(operations)}


def error(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [ERROR_URN], "status": str(status)}
    if scim_type:
        body["scimType"] = scim_type
    body["detail"] = detail
    return body


def member(resource: dict[str, Any], kind: str = "User") -> dict[str, Any]:
    """A group's members element for `resource` as the service returns it."""
    path = "Users" if kind == "User" else "Groups"
    return {
        "value": resource["id"],
        "$ref": f"http://localhost{BASE}/{path}/{resource['id']}",
        "type": kind,
        "display": resource.get("displayName") or resource.get("userName"),
    }


def without_volatile(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource minus what differs run to run: id, timestamps, location, version."""
    out = copy.deepcopy(resource)
    out.pop("id", None)
    meta = out.get("meta")
    if isinstance(meta, dict):
        for key in ("created", "lastModified", "location", "version"):
            meta.pop(key, None)
    return out


def fetch(client: Any, resource: dict[str, Any]) -> dict[str, Any]:
    """The user or group as GET returns it now; `resource` is any body the service returned."""
    response = client.get(f"{BASE}/{resource['meta']['resourceType']}s/{resource['id']}")
    assert response.status_code == 200, response.json
    return response.json


def search(client: Any, query_string: str | None = None, **params: Any) -> Any:
    """GET /Users with a raw query string or with parameters (which the client URL-encodes)."""
    return client.get(f"{BASE}/Users", query_string=query_string if query_string else params)


def listed_names(response: Any) -> list[str]:
    """The userName (Users) or displayName (Groups) of each listed resource, in order."""
    assert response.status_code == 200, response.json
    return [r.get("userName", r.get("displayName")) for r in response.json["Resources"]]


def found(
    client: Any, filter_text: str, *, resource: str = "Users", by: str = "", **params: Any
) -> set[str]:
    """What GET /{resource}?filter= selects: each resource's `by` (its userName or displayName
    unless told), as a set, since a filter does not order (sorting has its own tests). Checks
    the answer is 200, lists nothing twice and that totalResults agrees with the page."""
    query = {"filter": filter_text, **params}
    response = client.get(f"{BASE}/{resource}", query_string=query)
    assert response.status_code == 200, (filter_text, response.json)
    values = [r[by or NAME_OF[resource]] for r in response.json["Resources"]]
    assert response.json["totalResults"] == len(values) == len(set(values)), response.json
    return set(values)
