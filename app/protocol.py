"""The HTTP edge: media types, request bodies and parameters, response shapes, error rendering."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from app.errors import InvalidSyntax, InvalidValue, ScimError, UnsupportedMediaType

MEDIA_TYPE = "application/scim+json"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ACCEPTED_BODY_TYPES = {"application/scim+json", "application/json"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Projection:
    """What a response should contain: RFC 7644 §3.4.2.5 plus the base URL for links."""

    base_url: str
    attributes: tuple[str, ...] = ()
    excluded_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Page:
    start_index: int
    count: int


def base_url() -> str:
    """Absolute URL of /scim/v2 as the client sees it (SCIM_BASE_URL or the proxied host)."""
    return current_app.config["SCIM_BASE_URL"] or request.host_url.rstrip("/") + "/scim/v2"


def json_body() -> dict[str, Any]:
    """The request's JSON object; anything else is a SCIM error, never a 500."""
    mimetype = request.mimetype
    if mimetype and mimetype not in ACCEPTED_BODY_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type must be application/scim+json or application/json, got {mimetype}"
        )
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a body nested thousands deep ("[[[[..."), which is no SCIM resource.
        raise InvalidSyntax("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidSyntax("The request body must be a JSON object")
    return body


def projection() -> Projection:
    return Projection(
        base_url(),
        _csv(request.args.get("attributes")),
        _csv(request.args.get("excludedAttributes")),
    )


def page() -> Page:
    """startIndex and count per RFC 7644 §3.4.2.4: 1-based, clamped, count=0 allowed."""
    config = current_app.config
    start_index = max(_int_param("startIndex", 1), 1)
    count = _int_param("count", config["SCIM_DEFAULT_COUNT"])
    return Page(start_index, min(max(count, 0), config["SCIM_MAX_RESULTS"]))


def filter_text() -> str | None:
    text = request.args.get("filter")
    return text if text and text.strip() else None


def sort() -> tuple[str | None, str]:
    order = request.args.get("sortOrder", "ascending")
    if order.lower() not in ("ascending", "descending"):
        raise InvalidValue(f"sortOrder must be 'ascending' or 'descending', got {order!r}")
    return request.args.get("sortBy") or None, order.lower()


def if_match() -> str | None:
    return request.headers.get("If-Match")


def if_none_match() -> str | None:
    return request.headers.get("If-None-Match")


def resource(body: dict[str, Any], status: int = 200, *, location: bool = False) -> Response:
    headers = {}
    meta = body.get("meta", {})
    if version := meta.get("version"):
        headers["ETag"] = version
    if location and meta.get("location"):
        headers["Location"] = meta["location"]
    return scim_response(body, status, headers)


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> Response:
    return scim_response(
        {
            "schemas": [LIST_URN],
            "totalResults": total,
            "startIndex": start_index,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }
    )


def no_content(*, etag: str | None = None) -> Response:
    return Response(status=204, headers={"ETag": etag} if etag else None)


def not_modified(version: str) -> Response:
    return Response(status=304, headers={"ETag": version})


def scim_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False) + "\n",  # a newline keeps curl output readable
        status=status,
        headers=headers,
        mimetype=MEDIA_TYPE,
    )


def error_body(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [ERROR_URN], "status": str(status)}
    if scim_type:
        body["scimType"] = scim_type
    body["detail"] = detail
    return body


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ScimError)
    def scim_error(e: ScimError) -> Response:
        return scim_response(error_body(e.status, e.detail, e.scim_type), e.status, e.headers)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        # Routing 404/405, 413 and unhandled errors (a generic 500): keep headers such as Allow.
        if e.code == 500:
            original = getattr(e, "original_exception", None)
            if original is not None:
                log.error("unhandled error", exc_info=original)
            detail = "The server could not complete the request; it has been logged"
        else:
            detail = _HTTP_DETAILS.get(e.code or 500, e.description or "Request failed")
        response = e.get_response()
        response.set_data(json.dumps(error_body(e.code or 500, detail)))
        response.mimetype = MEDIA_TYPE
        return response


_HTTP_DETAILS = {
    404: "No such endpoint",
    405: "Method not allowed on this endpoint",
    413: "The request body is larger than this service accepts",
}


def _not_json(constant: str) -> None:
    # Python's json accepts NaN and Infinity; RFC 8259 §6 does not, and PostgreSQL's JSON neither.
    raise ValueError(f"{constant} is not JSON")


def _csv(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _int_param(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidValue(f"{name} must be an integer, got {raw!r}") from None
