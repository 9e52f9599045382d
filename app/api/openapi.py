"""GET /scim/v2/openapi.json: the OpenAPI document of this deployment, behind the bearer check."""

from flask import Blueprint, Response, current_app

from app import openapi, protocol

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def get_openapi() -> Response:
    config = current_app.config
    document = openapi.document(
        protocol.registry(),
        protocol.limits(),
        server_url=protocol.base_url(),
        max_results=config["SCIM_MAX_RESULTS"],
        default_count=config["SCIM_DEFAULT_COUNT"],
        cursor_timeout=config["SCIM_CURSOR_TIMEOUT"],
    )
    response = protocol.scim_response(document)
    response.mimetype = "application/json"  # what OpenAPI tools expect; not a SCIM message
    return response
