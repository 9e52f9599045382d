"""ServiceProviderConfig, ResourceTypes and Schemas (RFC 7644 §4), generated from the registry."""

from flask import Blueprint, Response, current_app

from app import protocol, sets
from app.errors import NotFound

bp = Blueprint("discovery", __name__)

SPC_URN = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


@bp.get("/ServiceProviderConfig")
def service_provider_config() -> Response:
    base_url = protocol.base_url()
    config, limits = current_app.config, protocol.limits()
    return protocol.scim_response(
        {
            "schemas": [SPC_URN],
            "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
            "patch": {"supported": True},
            # RFC 7644 §3.7.4: a Bulk request beyond either is refused with 413.
            "bulk": {
                "supported": True,
                "maxOperations": limits.bulk_operations,
                "maxPayloadSize": limits.bulk_payload_bytes,
            },
            "filter": {"supported": True, "maxResults": config["SCIM_MAX_RESULTS"]},
            "changePassword": {"supported": True},
            "sort": {"supported": True},
            "etag": {"supported": True},
            # RFC 9967 §4: the change events this service emits (as SETs, pushed or polled;
            # receivers are configured by the operator, `flask events receivers`); no
            # asynchronous requests. None at all without the outbox (SCIM_EVENTS=off).
            **(
                {"securityEvents": {"asyncRequest": "none", "eventUris": sets.event_uris()}}
                if config["SCIM_EVENTS"]
                else {}
            ),
            # RFC 9865 §4: both pagination methods, index by default.
            "pagination": {
                "cursor": True,
                "index": True,
                "defaultPaginationMethod": "index",
                "defaultPageSize": config["SCIM_DEFAULT_COUNT"],
                "maxPageSize": config["SCIM_MAX_RESULTS"],
                "cursorTimeout": config["SCIM_CURSOR_TIMEOUT"],
            },
            "authenticationSchemes": [
                {
                    "type": "oauthbearertoken",
                    "name": "OAuth Bearer Token",
                    "description": "A bearer token in the Authorization header (RFC 6750).",
                    "specUri": "https://datatracker.ietf.org/doc/html/rfc6750",
                    "primary": True,
                }
            ],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": f"{base_url}/ServiceProviderConfig",
            },
        }
    )


@bp.get("/ResourceTypes")
def list_resource_types() -> Response:
    base_url = protocol.base_url()
    resources = [rt.to_scim(base_url) for rt in protocol.registry().resource_types]
    return protocol.list_response(resources, len(resources))


@bp.get("/ResourceTypes/<resource_type_id>")
def get_resource_type(resource_type_id: str) -> Response:
    rt = next((rt for rt in protocol.registry().resource_types if rt.id == resource_type_id), None)
    if rt is None:
        raise NotFound(f"ResourceType {resource_type_id} not found")
    return protocol.scim_response(rt.to_scim(protocol.base_url()))


@bp.get("/Schemas")
def list_schemas() -> Response:
    base_url = protocol.base_url()
    resources = [schema.to_scim(base_url) for schema in protocol.registry().schemas]
    return protocol.list_response(resources, len(resources))


@bp.get("/Schemas/<schema_id>")
def get_schema(schema_id: str) -> Response:
    schema = next((s for s in protocol.registry().schemas if s.id == schema_id), None)
    if schema is None:
        raise NotFound(f"Schema {schema_id} not found")
    return protocol.scim_response(schema.to_scim(protocol.base_url()))
