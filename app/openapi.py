"""The OpenAPI 3.1 document of the SCIM API, generated from the schema registry and the limits.

Every resource schema in it is derived from the registry (app/schema): a declared extension
appears in the document as soon as the service loads it, and no attribute is listed here by
hand. Requests carry only what a client may write (no readOnly attribute); responses carry what
the service returns (no `returned: never` attribute, such as the password). Canonical values are
examples, not enums: validation (app/validate.py) accepts other values, as RFC 7643 §2.3.1 allows.
"""

from __future__ import annotations

import re
from typing import Any

from app.limits import Limits
from app.schema import Attribute, ResourceType, Schema
from app.schema.core import Registry

MEDIA_TYPE = "application/scim+json"
REQUEST_MEDIA_TYPES = (MEDIA_TYPE, "application/json")  # protocol.json_body accepts both

# The protocol's message URNs (RFC 7644 §3.4.2, §3.4.3, §3.5.2, §3.7, §3.12), as protocol.py,
# patch.py and bulk.py send and expect them; protocol.py imports Flask, this one must not.
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_REQUEST_URN = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
SPC_URN = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_URN = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_URN = "urn:ietf:params:scim:schemas:core:2.0:Schema"

# Every scimType an error may carry: RFC 7644 §3.12 (Table 9), then RFC 9865 §6's cursor errors.
SCIM_TYPES = (
    "invalidFilter", "tooMany", "uniqueness", "mutability", "invalidSyntax", "invalidPath",
    "noTarget", "invalidValue", "invalidVers", "sensitive", "invalidCursor", "expiredCursor",
)  # fmt: skip

# What any SCIM request may be answered with before its view runs: no or a wrong token (401),
# plain HTTP where SCIM_REQUIRE_HTTPS is set (403), the rate limit (429), the database
# unreachable (503).
ALWAYS = (401, 403, 429, 503)
WITH_BODY = (400, 413, 415)  # a body that is no JSON object, too large, or of another type

_ERROR_DESCRIPTIONS = {
    400: "The request is malformed or a value is invalid (scimType says which).",
    401: "No bearer token, or not a valid one.",
    403: "Plain HTTP where the service requires HTTPS.",
    404: "No such resource.",
    409: "A uniqueness conflict, or a concurrent change that could not be retried.",
    412: "If-Match does not match the resource's current version.",
    413: "The request body is larger than the service accepts.",
    415: "The request body is neither application/scim+json nor application/json.",
    429: "Too many requests with this token; retry after Retry-After seconds.",
    501: "The operation is not supported by this service.",
    503: "The database is unreachable; retry after Retry-After seconds.",
}

_SCALARS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "reference": {"type": "string"},
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer"},
    "decimal": {"type": "number"},
    "dateTime": {"type": "string", "format": "date-time"},
    # validate.py decodes binary values as strict base64.
    "binary": {
        "type": "string",
        "contentEncoding": "base64",
        "pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
    },
}


def document(
    registry: Registry,
    limits: Limits,
    *,
    server_url: str,
    max_results: int,
    default_count: int,
    cursor_timeout: int,
) -> dict[str, Any]:
    """The whole document for one deployment: its registry, its limits, its paging settings.

    `server_url` is the absolute or relative URL of /scim/v2; every path is relative to it.
    """
    user, group = registry.user, registry.group
    paths: dict[str, Any] = {}
    for rt in registry.resource_types:
        paths.update(_resource_paths(rt))
    paths.update(_service_paths(registry))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SCIM 2.0 service",
            "version": "2.0",
            "description": (
                "Users and Groups provisioning by SCIM 2.0 (RFC 7643, RFC 7644). Every request "
                "needs a bearer token. Attribute names are case-insensitive in requests. "
                f"{_string_limit(limits)} The limits of one request are listed in "
                "x-scim-limits; a request beyond one is refused with a SCIM error naming it."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token issued by the operator (RFC 6750).",
                }
            },
            "parameters": {
                **_parameters(max_results, default_count, cursor_timeout),
                **_named_parameters(user, limits),
                **_named_parameters(group, limits),
            },
            "schemas": {
                **_resource_schemas(user, limits),
                **_resource_schemas(group, limits),
                "AnyResourceList": _list_schema(
                    {"anyOf": [_ref(user.id), _ref(group.id)]}, paged=True
                ),
                "SearchRequest": _search_request(
                    [*_attribute_paths(user), *_attribute_paths(group)], limits
                ),
                "Error": _error_schema(),
                "BulkRequest": _bulk_request(limits),
                "BulkResponse": _bulk_response(),
                "ServiceProviderConfig": _service_provider_config(),
                "ResourceType": _resource_type(),
                "ResourceTypeList": _list_schema(_ref("ResourceType"), paged=False),
                "Schema": _schema_definition(),
                "SchemaList": _list_schema(_ref("Schema"), paged=False),
                "SchemaAttribute": _schema_attribute(),
            },
            "responses": {f"Error{code}": _error_response(code) for code in _ERROR_DESCRIPTIONS},
            "headers": {
                "ETag": {
                    "description": "The resource's version (meta.version), a weak entity tag.",
                    "schema": {"type": "string"},
                },
                "Location": {
                    "description": "The URL of the created resource.",
                    "schema": {"type": "string"},
                },
            },
        },
        "x-scim-limits": limits.to_openapi(),
    }


# --- paths ---------------------------------------------------------------------------------


def _resource_paths(rt: ResourceType) -> dict[str, Any]:
    """/Users, /Users/{id}, /Users/.search: the same seven operations for every resource type."""
    plural = rt.endpoint.strip("/")
    one = _ref(rt.id)
    request = _ref(f"{rt.id}Request")
    projection = [_param(f"{rt.id}Attributes"), _param(f"{rt.id}ExcludedAttributes")]
    resource_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": f"The {rt.id}'s id.",
        "schema": {"type": "string", "minLength": 1},
    }
    links = {
        f"{verb}{rt.id}": {
            "operationId": f"{verb}{rt.id}",
            "parameters": {"id": "$response.body#/id"},
        }
        for verb in ("get", "replace", "patch", "delete")
    }
    patched = {"200": _resource_response(one, f"The {rt.id} as patched.")}
    if rt.id == "Group":
        # RFC 7644 §3.5.2 allows 204: without attributes or excludedAttributes, a group PATCH
        # answers 204 rather than read back what may be 100,000 members.
        patched["204"] = _no_content("Patched; request attributes to have the group returned.")
    return {
        f"/{plural}": {
            "get": _operation(
                f"list{plural}",
                f"List or filter {plural} (RFC 7644 §3.4.2).",
                parameters=[*_list_parameters(rt), *projection],
                responses={"200": _json_response(_ref(f"{rt.id}List"), f"A page of {plural}.")},
                errors=(400,),
            ),
            "post": _operation(
                f"create{rt.id}",
                f"Create a {rt.id} (RFC 7644 §3.3).",
                parameters=projection,
                body=(request, f"The new {rt.id}."),
                responses={"201": _created_response(one, rt.id, links)},
                errors=(*WITH_BODY, 409),
            ),
        },
        f"/{plural}/.search": {
            "post": _operation(
                f"search{plural}",
                f"Search {plural} with a SearchRequest body (RFC 7644 §3.4.3).",
                body=(_ref(f"{rt.id}SearchRequest"), "Filter, sort, page and projection."),
                responses={"200": _json_response(_ref(f"{rt.id}List"), f"A page of {plural}.")},
                errors=WITH_BODY,
            ),
        },
        f"/{plural}/{{id}}": {
            "parameters": [resource_id],
            "get": _operation(
                f"get{rt.id}",
                f"Retrieve a {rt.id} (RFC 7644 §3.4.1).",
                parameters=[_param("IfNoneMatch"), *projection],
                responses={
                    "200": _resource_response(one, f"The {rt.id}."),
                    "304": {
                        "description": "If-None-Match matched the current version.",
                        "headers": {"ETag": _header("ETag")},
                    },
                },
                errors=(400, 404),
            ),
            "put": _operation(
                f"replace{rt.id}",
                f"Replace a {rt.id} (RFC 7644 §3.5.1).",
                parameters=[_param("IfMatch"), *projection],
                body=(request, f"The {rt.id} as it should be."),
                responses={"200": _resource_response(one, f"The {rt.id} as replaced.")},
                errors=(*WITH_BODY, 404, 409, 412),
            ),
            "patch": _operation(
                f"patch{rt.id}",
                f"Modify a {rt.id} with a PatchOp (RFC 7644 §3.5.2).",
                parameters=[_param("IfMatch"), *projection],
                body=(_ref(f"{rt.id}PatchOp"), "The operations, applied in order, all or none."),
                responses=patched,
                errors=(*WITH_BODY, 404, 409, 412),
            ),
            "delete": _operation(
                f"delete{rt.id}",
                f"Delete a {rt.id} (RFC 7644 §3.6).",
                parameters=[_param("IfMatch")],
                responses={"204": _no_content(f"The {rt.id} is deleted.")},
                errors=(404, 409, 412),
            ),
        },
    }


def _service_paths(registry: Registry) -> dict[str, Any]:
    """The root search, discovery (RFC 7644 §4), this document, and what is not supported."""
    rt_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {
            "type": "string",
            "minLength": 1,
            "examples": [rt.id for rt in registry.resource_types],
        },
    }
    schema_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "examples": [s.id for s in registry.schemas]},
    }
    return {
        "/.search": {
            "post": _operation(
                "searchAll",
                "Search users and groups together (RFC 7644 §3.4.3).",
                body=(_ref("SearchRequest"), "Filter, sort, page and projection."),
                responses={"200": _json_response(_ref("AnyResourceList"), "A page of resources.")},
                errors=WITH_BODY,
            )
        },
        "/ServiceProviderConfig": {
            "get": _operation(
                "getServiceProviderConfig",
                "What this service supports (RFC 7644 §4).",
                responses={"200": _json_response(_ref("ServiceProviderConfig"), "The config.")},
            )
        },
        "/ResourceTypes": {
            "get": _operation(
                "listResourceTypes",
                "The resource types served (RFC 7644 §4).",
                responses={"200": _json_response(_ref("ResourceTypeList"), "Every type.")},
            )
        },
        "/ResourceTypes/{id}": {
            "parameters": [rt_id],
            "get": _operation(
                "getResourceType",
                "One resource type.",
                responses={"200": _json_response(_ref("ResourceType"), "The type.")},
                errors=(404,),
            ),
        },
        "/Schemas": {
            "get": _operation(
                "listSchemas",
                "The schemas served, declared extensions included (RFC 7644 §4).",
                responses={"200": _json_response(_ref("SchemaList"), "Every schema.")},
            )
        },
        "/Schemas/{id}": {
            "parameters": [schema_id],
            "get": _operation(
                "getSchema",
                "One schema, by its URN.",
                responses={"200": _json_response(_ref("Schema"), "The schema.")},
                errors=(404,),
            ),
        },
        "/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "This document.",
                responses={
                    "200": {
                        "description": "The OpenAPI 3.1 document of this deployment.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            )
        },
        "/Bulk": {
            "post": _operation(
                "bulk",
                "Many writes in one request (RFC 7644 §3.7): each operation as its single "
                "request, its result in the response; bulkId references resolved.",
                body=(
                    _ref("BulkRequest"),
                    "The operations, run in order (a POST before the "
                    "operations that refer to its bulkId).",
                ),
                responses={
                    "200": _json_response(
                        _ref("BulkResponse"), "The result of each operation that ran."
                    )
                },
                errors=WITH_BODY,
            )
        },
        "/Me": _not_supported("Me", "a token names no SCIM resource (RFC 7644 §3.11)"),
    }


def _not_supported(name: str, why: str) -> dict[str, Any]:
    """Every method on /Me answers 501, after the bearer check."""
    return {
        method: _operation(f"{method}{name}", f"Not supported: {why}.", responses={}, errors=(501,))
        for method in ("get", "post", "put", "patch", "delete")
    }


def _operation(
    operation_id: str,
    summary: str,
    *,
    responses: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    body: tuple[dict[str, Any], str] | None = None,
    errors: tuple[int, ...] = (),
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        schema, description = body
        operation["requestBody"] = {
            "required": True,
            "description": description,
            "content": {media_type: {"schema": schema} for media_type in REQUEST_MEDIA_TYPES},
        }
    out = dict(responses)
    for code in sorted({*errors, *ALWAYS}):
        out[str(code)] = {"$ref": f"#/components/responses/Error{code}"}
    operation["responses"] = out
    return operation


def _json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {MEDIA_TYPE: {"schema": schema}}}


def _resource_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**_json_response(schema, description), "headers": {"ETag": _header("ETag")}}


def _created_response(schema: dict[str, Any], name: str, links: dict[str, Any]) -> dict[str, Any]:
    return {
        **_json_response(schema, f"The {name} as created."),
        "headers": {"ETag": _header("ETag"), "Location": _header("Location")},
        "links": links,
    }


def _no_content(description: str) -> dict[str, Any]:
    return {"description": description}


def _header(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/headers/{name}"}


def _error_response(code: int) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "allOf": [_ref("Error"), {"properties": {"status": {"const": str(code)}}}]
    }
    response: dict[str, Any] = {
        "description": _ERROR_DESCRIPTIONS[code],
        "content": {MEDIA_TYPE: {"schema": schema}},
    }
    if code == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "The Bearer challenge.",
                "schema": {"type": "string"},
            }
        }
    if code in (429, 503):
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}
        }
    return response


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/parameters/{name}"}


def _list_parameters(rt: ResourceType) -> list[dict[str, Any]]:
    return [
        _param(f"{rt.id}Filter"),
        _param(f"{rt.id}SortBy"),
        *(_param(name) for name in ("sortOrder", "startIndex", "count", "cursor")),
    ]


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _named_parameters(rt: ResourceType, limits: Limits) -> dict[str, Any]:
    """filter, sortBy, attributes and excludedAttributes, steered to this type's attributes."""
    paths = _attribute_paths(rt)
    return {
        f"{rt.id}Filter": _query("filter", _filter_description(limits), _filter(paths, limits)),
        f"{rt.id}SortBy": _query("sortBy", "The attribute to sort by.", _names(paths)),
        f"{rt.id}Attributes": _query(
            "attributes",
            "Comma-separated attribute names to return (RFC 7644 §3.4.2.5).",
            _names(paths, separated=True),
        ),
        f"{rt.id}ExcludedAttributes": _query(
            "excludedAttributes",
            "Comma-separated attribute names not to return (RFC 7644 §3.4.2.5).",
            _names(paths, separated=True),
        ),
    }


def _parameters(max_results: int, default_count: int, cursor_timeout: int) -> dict[str, Any]:
    query = _query

    def header(name: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "description": description,
            "schema": {"type": "string"},
        }

    return {
        "sortOrder": query(
            "sortOrder",
            "ascending (the default) or descending.",
            {"type": "string", "enum": ["ascending", "descending"]},
        ),
        "startIndex": query(
            "startIndex",
            "1-based index of the first result; values below 1 mean 1. Not with cursor.",
            {"type": "integer"},
        ),
        "count": query(
            "count",
            f"Results per page: {default_count} by default, at most {max_results} "
            "(larger values are reduced to it).",
            {"type": "integer"},
        ),
        "cursor": query(
            "cursor",
            "A cursor from nextCursor or previousCursor (RFC 9865), or empty for the first "
            f"page; valid for {cursor_timeout} seconds. Not with startIndex.",
            {"type": "string"},
        ),
        "IfMatch": header("If-Match", "Apply only if the resource's version matches (412 else)."),
        "IfNoneMatch": header("If-None-Match", "Answer 304 if the version still matches."),
    }


# --- schemas -------------------------------------------------------------------------------


def _resource_schemas(rt: ResourceType, limits: Limits) -> dict[str, Any]:
    """`User`, `UserRequest`, `UserList`, `UserPatchOp`, `UserSearchRequest` (and Group's)."""
    return {
        rt.id: _resource(rt, limits, request=False),
        f"{rt.id}Request": _resource(rt, limits, request=True),
        f"{rt.id}List": _list_schema(_ref(rt.id), paged=True),
        f"{rt.id}PatchOp": _patch_op(rt, limits),
        f"{rt.id}SearchRequest": _search_request(_attribute_paths(rt), limits),
    }


def _attribute_paths(rt: ResourceType) -> list[str]:
    """Every attribute path of a type: `userName`, `name.givenName`, `urn:...:User:department`."""
    groups = [("", rt.common), ("", rt.schema.attributes)]
    groups += [(f"{extension.id}:", extension.attributes) for extension in rt.extensions]
    paths = []
    for prefix, attributes in groups:
        for attribute in attributes:
            paths.append(prefix + attribute.name)
            paths += [f"{prefix}{attribute.name}.{sub.name}" for sub in attribute.sub_attributes]
    return paths


# Generated requests should reach past the parsers, so the text parameters below offer the
# registry's attribute names first. Each such schema still accepts any string ({} in anyOf):
# the names steer generation and tell a reader what is known, they restrict nothing.


def _names(paths: list[str], *, separated: bool = False) -> dict[str, Any]:
    if not separated:
        return {"type": "string", "anyOf": [{"enum": paths}, {}]}
    name = _alternatives(paths)
    return {"type": "string", "anyOf": [{"pattern": f"^{name}(?:,{name})*$"}, {}]}


def _filter(paths: list[str], limits: Limits) -> dict[str, Any]:
    value = r'(?:"[^"\\]*"|true|false|null|-?[0-9]{1,12})'
    comparison = f"{_alternatives(paths)} (?:pr|(?:eq|ne|co|sw|ew|gt|ge|lt|le) {value})"
    return {
        "type": "string",
        "maxLength": limits.filter_chars,
        "anyOf": [{"pattern": f"^{comparison}(?: (?:and|or) {comparison})*$"}, {}],
    }


def _filter_description(limits: Limits) -> str:
    return (
        f"A filter (RFC 7644 §3.4.2.2); at most {limits.filter_chars} characters, "
        f"{limits.filter_depth} levels of nesting and {limits.filter_terms} comparisons."
    )


def _alternatives(paths: list[str]) -> str:
    return "(?:" + "|".join(re.escape(path) for path in paths) + ")"


def _resource(rt: ResourceType, limits: Limits, *, request: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {"schemas": _schemas_property(rt, request=request)}
    required: list[str] = []
    for attribute in (*rt.common, *rt.schema.attributes):
        if _included(attribute, request=request):
            properties[attribute.name] = _attribute(rt, attribute, limits, request=request)
            if request and attribute.required:
                required.append(attribute.name)
    for extension in rt.extensions:
        properties[extension.id] = _extension(rt, extension, limits, request=request)
    schema: dict[str, Any] = {
        "type": "object",
        "description": rt.schema.description,
        "properties": properties,
        "additionalProperties": False,
    }
    if request:
        schema["description"] = (
            f"{rt.schema.description}: the attributes a client may write. {_string_limit(limits)}"
        )
        schema["required"] = required
    else:
        # What every response carries, whatever attributes/excludedAttributes ask for.
        schema["required"] = ["schemas", "id", "meta"]
    return schema


def _schemas_property(rt: ResourceType, *, request: bool) -> dict[str, Any]:
    urns = [schema.id for schema in rt.schemas]
    items = {"type": "string", "enum": urns}
    if request:
        # validate.py: optional, but when sent it names the core schema and only known ones.
        return {"type": "array", "items": items, "contains": {"const": rt.schema.id}}
    return {"type": "array", "items": items, "minItems": 1}


def _extension(rt: ResourceType, extension: Schema, limits: Limits, *, request: bool) -> dict:
    properties = {
        attribute.name: _attribute(rt, attribute, limits, request=request)
        for attribute in extension.attributes
        if _included(attribute, request=request)
    }
    schema: dict[str, Any] = {
        "type": "object",
        "description": extension.description or extension.name,
        "properties": properties,
        "additionalProperties": False,
    }
    required = [a.name for a in extension.attributes if request and a.required and a.writable]
    if required:
        schema["required"] = required
    return schema


def _included(attribute: Attribute, *, request: bool) -> bool:
    if request:
        return attribute.writable  # RFC 7643 §2.2: readOnly values are the service's to set
    return attribute.returned != "never"


def _attribute(rt: ResourceType, attribute: Attribute, limits: Limits, *, request: bool) -> dict:
    if attribute.is_complex:
        item: dict[str, Any] = {
            "type": "object",
            "properties": {
                sub.name: _attribute(rt, sub, limits, request=request)
                for sub in attribute.sub_attributes
                if _included(sub, request=request)
            },
            "additionalProperties": False,
        }
    else:
        item = dict(_SCALARS[attribute.type])
        if request and attribute.required and item["type"] == "string":
            item["minLength"] = 1  # validate.py: a required attribute may not be ""
        if attribute.canonical_values:
            item["examples"] = list(attribute.canonical_values)
    description = _describe(attribute)
    if not attribute.multi_valued:
        if description:
            item["description"] = description
        return item
    out: dict[str, Any] = {"type": "array", "items": item}
    if description:
        out["description"] = description
    if request and rt.id == "Group" and attribute.name == "members":
        out["maxItems"] = limits.members
    return out


def _describe(attribute: Attribute) -> str:
    notes = []
    if attribute.mutability == "immutable":
        notes.append("Immutable: may be set once, never changed.")
    if attribute.mutability == "writeOnly":
        notes.append("Write-only: never returned.")
    if attribute.canonical_values:
        notes.append("Canonical values: " + ", ".join(attribute.canonical_values) + ".")
    return " ".join([attribute.description, *notes]).strip()


def _string_limit(limits: Limits) -> str:
    return (
        f"Each string value is limited to {limits.string_bytes} UTF-8 bytes, as sent and "
        "case-folded, and may not contain NUL characters."
    )


def _list_schema(item: dict[str, Any], *, paged: bool) -> dict[str, Any]:
    """A ListResponse (RFC 7644 §3.4.2); cursor pages (RFC 9865) carry no startIndex."""
    properties: dict[str, Any] = {
        "schemas": {"type": "array", "items": {"const": LIST_URN}, "minItems": 1},
        "totalResults": {"type": "integer", "minimum": 0},
        "startIndex": {"type": "integer", "minimum": 1},
        "itemsPerPage": {"type": "integer", "minimum": 0},
        "Resources": {"type": "array", "items": item},
    }
    if paged:
        properties["nextCursor"] = {"type": "string"}
        properties["previousCursor"] = {"type": "string"}
    return {
        "type": "object",
        "properties": properties,
        "required": ["schemas", "totalResults", "itemsPerPage", "Resources"],
        "additionalProperties": False,
    }


def _patch_op(rt: ResourceType, limits: Limits) -> dict[str, Any]:
    """RFC 7644 §3.5.2. One operation shape per writable attribute, typed by the registry, then
    the general shape: the typed ones steer generated requests and show what each path takes."""
    set_ops = {"enum": ["add", "replace", "Add", "Replace"]}
    typed: list[dict[str, Any]] = []
    targets = [("", a) for a in rt.schema.attributes]
    targets += [(f"{e.id}:", a) for e in rt.extensions for a in e.attributes]
    for prefix, attribute in targets:
        if not attribute.writable:
            continue
        path = prefix + attribute.name
        value = _attribute(rt, attribute, limits, request=True)
        typed.append(_object({"op": set_ops, "path": {"const": path}, "value": value}))
    partial = _resource(rt, limits, request=True)
    partial["properties"].pop("schemas")
    partial.pop("required")
    typed.append(_object({"op": set_ops, "value": partial}))  # path-less: value names the paths
    general = {
        "type": "object",
        "properties": {
            "op": {"enum": ["add", "remove", "replace", "Add", "Remove", "Replace"]},
            "path": {"type": "string", "description": "An attribute path (RFC 7644 §3.5.2)."},
            "value": {"description": "Any JSON, checked against the path's attribute."},
        },
        "required": ["op"],
    }
    return {
        "type": "object",
        "description": "RFC 7644 §3.5.2; op names are case-insensitive (Entra ID capitalises).",
        "properties": {
            "schemas": {
                "type": "array",
                "items": {"type": "string"},
                "contains": {"const": PATCH_URN},
            },
            "Operations": {
                "type": "array",
                "minItems": 1,
                "maxItems": limits.patch_operations,
                "items": {"anyOf": [*typed, general]},
            },
        },
        "required": ["Operations"],
    }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _search_request(paths: list[str], limits: Limits) -> dict[str, Any]:
    names = {"type": "array", "items": _names(paths)}
    return {
        "type": "object",
        "description": "RFC 7644 §3.4.3: list parameters in a body (not startIndex with cursor).",
        "properties": {
            "schemas": {
                "type": "array",
                "items": {"type": "string"},
                "contains": {"const": SEARCH_URN},
            },
            "attributes": names,
            "excludedAttributes": names,
            "filter": {**_filter(paths, limits), "description": _filter_description(limits)},
            "sortBy": _names(paths),
            "sortOrder": {"type": "string", "enum": ["ascending", "descending"]},
            "startIndex": {"type": "integer"},
            "count": {"type": "integer"},
            "cursor": {"type": "string"},
        },
        "additionalProperties": False,
    }


def _bulk_request(limits: Limits) -> dict[str, Any]:
    operation = {
        "type": "object",
        "properties": {
            "method": {"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]},
            "bulkId": {
                "type": "string",
                "minLength": 1,
                "description": "Required for a POST; `bulkId:<it>` in another operation's path "
                "or data stands for the id the POST creates.",
            },
            "version": {"type": "string", "description": "If-Match of the single request."},
            "path": {
                "type": "string",
                "description": "/Users or /Groups for a POST; /Users/{id} or /Groups/{id} "
                "(the id may be bulkId:<it>) otherwise.",
            },
            "data": {
                "type": "object",
                "description": "The body of the single request: a resource or a PatchOp.",
            },
        },
        "required": ["method", "path"],
    }
    return {
        "type": "object",
        "description": "RFC 7644 §3.7. Beyond maxOperations or maxPayloadSize "
        "(/ServiceProviderConfig), a 413.",
        "properties": {
            "schemas": {
                "type": "array",
                "items": {"type": "string"},
                "contains": {"const": BULK_REQUEST_URN},
            },
            "failOnErrors": {"type": "integer", "minimum": 1},
            "Operations": {
                "type": "array",
                "items": operation,
                "maxItems": limits.bulk_operations,
            },
        },
        "required": ["Operations"],
    }


def _bulk_response() -> dict[str, Any]:
    status = {"type": "string", "pattern": "^[1-5][0-9][0-9]$"}
    result = {
        "type": "object",
        "properties": {
            "method": {"type": "string"},
            "bulkId": {"type": "string"},
            "version": {"type": "string"},
            "location": {"type": "string"},
            "status": status,
            "response": _ref("Error"),
        },
        "required": ["status"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "description": "RFC 7644 §3.7.3: the operations that ran, in request order; a failed "
        "one carries its SCIM error in response.",
        "properties": {
            "schemas": {"type": "array", "items": {"const": BULK_RESPONSE_URN}, "minItems": 1},
            "Operations": {"type": "array", "items": result},
        },
        "required": ["schemas", "Operations"],
        "additionalProperties": False,
    }


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 7644 §3.12: status is the HTTP status code as a string.",
        "properties": {
            "schemas": {"type": "array", "items": {"const": ERROR_URN}, "minItems": 1},
            "status": {"type": "string", "pattern": "^[1-5][0-9][0-9]$"},
            "scimType": {"type": "string", "enum": list(SCIM_TYPES)},
            "detail": {"type": "string"},
        },
        "required": ["schemas", "status", "detail"],
        "additionalProperties": False,
    }


def _meta(resource_type: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "resourceType": {"const": resource_type},
            "location": {"type": "string"},
        },
        "required": ["resourceType", "location"],
    }


def _service_provider_config() -> dict[str, Any]:
    supported = {
        "type": "object",
        "properties": {"supported": {"type": "boolean"}},
        "required": ["supported"],
    }
    return {
        "type": "object",
        "description": "RFC 7643 §5.",
        "properties": {
            "schemas": {"type": "array", "items": {"const": SPC_URN}, "minItems": 1},
            "documentationUri": {"type": "string"},
            "patch": supported,
            "bulk": {
                "allOf": [supported],
                "properties": {
                    "maxOperations": {"type": "integer"},
                    "maxPayloadSize": {"type": "integer"},
                },
            },
            "filter": {
                "allOf": [supported],
                "properties": {"maxResults": {"type": "integer"}},
            },
            "changePassword": supported,
            "sort": supported,
            "etag": supported,
            "pagination": {"type": "object"},
            "authenticationSchemes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                    },
                    "required": ["type", "name", "description"],
                },
            },
            "meta": _meta("ServiceProviderConfig"),
        },
        "required": [
            "schemas",
            "patch",
            "bulk",
            "filter",
            "changePassword",
            "sort",
            "etag",
            "authenticationSchemes",
        ],
    }


def _resource_type() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 7643 §6.",
        "properties": {
            "schemas": {"type": "array", "items": {"const": RESOURCE_TYPE_URN}, "minItems": 1},
            "id": {"type": "string"},
            "name": {"type": "string"},
            "endpoint": {"type": "string"},
            "description": {"type": "string"},
            "schema": {"type": "string"},
            "schemaExtensions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"schema": {"type": "string"}, "required": {"type": "boolean"}},
                    "required": ["schema", "required"],
                },
            },
            "meta": _meta("ResourceType"),
        },
        "required": ["schemas", "id", "name", "endpoint", "schema"],
    }


def _schema_definition() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 7643 §7.",
        "properties": {
            "schemas": {"type": "array", "items": {"const": SCHEMA_URN}, "minItems": 1},
            "id": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "attributes": {"type": "array", "items": _ref("SchemaAttribute")},
            "meta": _meta("Schema"),
        },
        "required": ["schemas", "id", "attributes"],
    }


def _schema_attribute() -> dict[str, Any]:
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            # RFC 7643 §7's spellings, from the registry's own lists.
            "type": {"type": "string", "enum": [t.value for t in Attribute.Type]},
            "multiValued": {"type": "boolean"},
            "description": {"type": "string"},
            "required": {"type": "boolean"},
            "caseExact": {"type": "boolean"},
            "canonicalValues": strings,
            "referenceTypes": strings,
            "mutability": {"enum": [m.value for m in Attribute.Mutability]},
            "returned": {"enum": [r.value for r in Attribute.Returned]},
            "uniqueness": {"enum": [u.value for u in Attribute.Uniqueness]},
            "subAttributes": {"type": "array", "items": _ref("SchemaAttribute")},
        },
        "required": ["name", "type", "multiValued", "required", "mutability", "returned"],
    }


# --- the change events' endpoints (RFC 9967 SETs), outside /scim/v2 -----------------------------

EVENT_MEDIA_TYPE = "application/json"


def events_document(*, server_url: str, max_events: int, max_acks: int) -> dict[str, Any]:
    """The OpenAPI document of a receiver's endpoints (app/api/events.py): its JWKS and the RFC
    8936 poll. `server_url` is the service's root (the SCIM base URL without /scim/v2). Their
    errors are RFC 8935 §2.3's {"err", "description"}, not SCIM errors."""
    receiver_id = {
        "name": "receiver_id",
        "in": "path",
        "required": True,
        "description": "The receiver's id, as `flask events receivers add` printed it.",
        "schema": {"type": "string"},
    }

    def error(description: str, **headers: str) -> dict[str, Any]:
        response: dict[str, Any] = {
            "description": description,
            "content": {EVENT_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/SetError"}}},
        }
        if headers:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in headers.items()
            }
        return response

    unavailable = {"description": "The database is unreachable; retry after Retry-After seconds."}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SCIM change events: receivers' endpoints",
            "version": "1.0",
            "description": (
                "What an application receiving this service's change events (RFC 9967 Security "
                "Event Tokens) calls: its receiver's public keys, and the poll of RFC 8936. "
                "SETs pushed to it (RFC 8935) are verified against the same keys."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": {
            "/events/receivers/{receiver_id}/jwks.json": {
                "get": {
                    "operationId": "getReceiverJwks",
                    "summary": "The receiver's public signing keys (RFC 7517 JWK Set); no token. "
                    "Empty for an HS256 receiver.",
                    "security": [],
                    "parameters": [receiver_id],
                    "responses": {
                        "200": {
                            "description": "The JWK Set: the current key and those not retired.",
                            "content": {EVENT_MEDIA_TYPE: {"schema": _ref("Jwks")}},
                        },
                        "404": error("No such receiver."),
                        "503": unavailable,
                    },
                }
            },
            "/events/receivers/{receiver_id}/poll": {
                "post": {
                    "operationId": "pollReceiverSets",
                    "summary": "RFC 8936 poll: acknowledge SETs, report errors, receive due SETs.",
                    "security": [{"pollToken": []}],
                    "parameters": [receiver_id],
                    "requestBody": {
                        "required": False,
                        "content": {EVENT_MEDIA_TYPE: {"schema": _ref("PollRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": "The SETs due, by jti (unordered: each SET's `sequence` "
                            "orders one resource's events).",
                            "content": {EVENT_MEDIA_TYPE: {"schema": _ref("PollResponse")}},
                        },
                        "400": error("The poll request is malformed (err: invalid_request)."),
                        "401": error(
                            "No bearer token, not the receiver's, or no such poll receiver.",
                            **{"WWW-Authenticate": "The Bearer challenge."},
                        ),
                        "403": error("The receiver's tenant is not active."),
                        "413": error("The request body is larger than the service accepts."),
                        "503": unavailable,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "pollToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The receiver's own token, printed once by "
                    "`flask events receivers add --poll` (not a SCIM token).",
                }
            },
            "schemas": {
                "Jwks": _object({"keys": {"type": "array", "items": {"type": "object"}}}),
                "PollRequest": {
                    "type": "object",
                    "properties": {
                        "ack": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": f"jtis received: no longer due. At most {max_acks} "
                            "jtis in ack and setErrs together; unknown ones are ignored.",
                        },
                        "setErrs": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {
                                    "err": {"type": "string"},
                                    "description": {"type": "string"},
                                },
                                "required": ["err"],
                            },
                            "description": "jti -> the receiver's error: not sent again.",
                        },
                        "maxEvents": {
                            "type": "integer",
                            "minimum": 0,
                            "description": f"At most this many SETs (capped at {max_events}); "
                            "0 only acknowledges.",
                        },
                        "returnImmediately": {
                            "type": "boolean",
                            "description": "false: wait a while for a SET when none is due.",
                        },
                    },
                },
                "PollResponse": {
                    "type": "object",
                    "properties": {
                        "sets": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": "jti -> the SET, a compact JWS.",
                        },
                        "moreAvailable": {"type": "boolean"},
                    },
                    "required": ["sets"],
                    "additionalProperties": False,
                },
                "SetError": {
                    "type": "object",
                    "properties": {"err": {"type": "string"}, "description": {"type": "string"}},
                    "required": ["err", "description"],
                    "additionalProperties": False,
                },
            },
        },
    }
