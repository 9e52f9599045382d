"""Valid request bodies to start from, and helpers to compare responses."""

from __future__ import annotations

import copy
from typing import Any

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"


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


def without_volatile(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource minus what differs run to run: id, timestamps, location, version."""
    out = copy.deepcopy(resource)
    out.pop("id", None)
    meta = out.get("meta")
    if isinstance(meta, dict):
        for key in ("created", "lastModified", "location", "version"):
            meta.pop(key, None)
    return out


def found(client: Any, filter_text: str) -> set[str]:
    """The userNames GET /Users?filter= finds, checking that totalResults agrees with the page."""
    response = client.get("/scim/v2/Users", query_string={"filter": filter_text})
    assert response.status_code == 200, (filter_text, response.json)
    names = {resource["userName"] for resource in response.json["Resources"]}
    assert response.json["totalResults"] == len(names)
    return names
