"""The HTTP edge: media types, request bodies and parameters, response shapes, error rendering."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.sansio.utils import get_current_url

from app import db, intake, paging, tenancy
from app.errors import (
    InvalidSyntax,
    InvalidValue,
    ScimError,
    ServiceUnavailable,
    TooLarge,
    UnsupportedMediaType,
)
from app.filters import grammar
from app.limits import Limits
from app.paging import Cursor, PageRequest
from app.projection import Projection
from app.schema.core import Registry

MEDIA_TYPE = "application/scim+json"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ACCEPTED_BODY_TYPES = {"application/scim+json", "application/json"}
DATABASE_RETRY_AFTER_SECONDS = 5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListQuery:
    """A list or .search request: filter, sort, page and projection (RFC 7644 §3.4.2-3.4.3)."""

    resource_type: str
    filter: str | None
    where: grammar.Filter | None  # the filter parsed, within this deployment's limits
    sort_by: str | None
    descending: bool
    page: PageRequest
    projection: Projection

    @property
    def fingerprint(self) -> str:
        return paging.fingerprint(self.resource_type, self.filter, self.sort_by, self.descending)


def registry() -> Registry:
    """The schema registry of this deployment (core, enterprise and declared extensions)."""
    return current_app.extensions["scim_registry"]


def limits() -> Limits:
    """The bounds of one request in this deployment (SCIM_MAX_*, app/limits.py)."""
    return current_app.config["SCIM_LIMITS"]


def base_url() -> str:
    """Absolute URL of /scim/v2 as the client sees it (SCIM_BASE_URL or the proxied host)."""
    return current_app.config["SCIM_BASE_URL"] or _base_url_at(request.scheme, request.host)


@functools.lru_cache(maxsize=256)  # hosts come from a header: bounded
def _base_url_at(scheme: str, host: str) -> str:
    """What request.host_url makes of the scheme and host (an IRI: a punycode host decoded),
    made once per host: its decoding cost two thirds of it (10 µs of 15), on every request."""
    return get_current_url(scheme, host).rstrip("/") + "/scim/v2"


def json_body(
    *,
    checked_elsewhere: frozenset[str] = frozenset(),
    max_bytes: int | None = None,
    too_large: str = "",
) -> dict[str, Any]:
    """The request's JSON object, every string in it storable and within the limits.

    Anything else is a SCIM error, never a 500. `checked_elsewhere`: top-level keys with rules
    of their own (a SearchRequest's filter is held to the filter limits instead). `max_bytes`:
    a limit of the endpoint's own, at most MAX_CONTENT_LENGTH, whose 413 says `too_large`
    (formatted with {limit}) rather than name the service's.
    """
    mimetype = request.mimetype
    if mimetype and mimetype not in ACCEPTED_BODY_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type must be application/scim+json or application/json, got {mimetype}"
        )
    if max_bytes is None:
        raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    else:
        raw = _body_within(max_bytes, too_large)
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a body nested thousands deep ("[[[[..."), which is no SCIM resource.
        raise InvalidSyntax("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidSyntax("The request body must be a JSON object")
    intake.check_body(body, limits(), skip=checked_elsewhere)
    return body


def _body_within(max_bytes: int, too_large: str) -> bytes:
    refused = TooLarge(too_large.format(limit=max_bytes))
    if request.content_length is not None and request.content_length > max_bytes:
        raise refused
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:  # a streamed body past MAX_CONTENT_LENGTH (app.requests)
        raise refused from None
    if len(raw) > max_bytes:
        raise refused
    return raw


def projection() -> Projection:
    return Projection(
        base_url(),
        _csv(request.args.get("attributes")),
        _csv(request.args.get("excludedAttributes")),
    )


def list_query(resource_type: str) -> ListQuery:
    """GET /Users, /Groups: the query-string parameters."""
    return _list_query(resource_type, request.args, _csv)


def search_query(resource_type: str) -> ListQuery:
    """POST .../.search (RFC 7644 §3.4.3): the same parameters in a SearchRequest body."""
    body = json_body(checked_elsewhere=frozenset({"filter"}))
    schemas = body.get("schemas")
    if schemas is not None and SEARCH_URN not in (schemas if isinstance(schemas, list) else []):
        raise InvalidSyntax(f"schemas must be [{SEARCH_URN!r}]")
    params = {k: v for k, v in body.items() if k != "schemas"}
    for name, value in params.items():
        if name in ("attributes", "excludedAttributes"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidValue(f"{name} must be a list of attribute names")
        elif name in ("startIndex", "count"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidValue(f"{name} must be an integer")
        elif name in ("filter", "sortBy", "sortOrder", "cursor"):
            if not isinstance(value, str):
                raise InvalidValue(f"{name} must be a string")
        else:
            raise InvalidSyntax(f"Unknown SearchRequest parameter {name!r}")
    return _list_query(resource_type, params, lambda names: tuple(names or ()))


def _list_query(resource_type: str, params: Any, names: Any) -> ListQuery:
    config = current_app.config
    order = params.get("sortOrder") or "ascending"
    if order.lower() not in ("ascending", "descending"):
        raise InvalidValue(f"sortOrder must be 'ascending' or 'descending', got {order!r}")
    filter_text = params.get("filter")
    if not (filter_text and filter_text.strip()):
        filter_text = None
    query = ListQuery(
        resource_type,
        filter_text,
        grammar.parse(filter_text, limits()) if filter_text is not None else None,
        params.get("sortBy") or None,
        order.lower() == "descending",
        PageRequest(),
        Projection(
            base_url(), names(params.get("attributes")), names(params.get("excludedAttributes"))
        ),
    )
    # RFC 7644 §3.4.2.4: 1-based startIndex, values below 1 mean 1; count clamped, 0 allowed.
    count = _int_param(params, "count", config["SCIM_DEFAULT_COUNT"])
    count = min(max(count, 0), config["SCIM_MAX_RESULTS"])
    if "cursor" not in params:
        start_index = max(_int_param(params, "startIndex", 1), 1)
        return replace(query, page=PageRequest(start_index, count))
    if "startIndex" in params:
        raise InvalidValue("Use either startIndex or cursor, not both (RFC 9865 §2)")
    cursor = paging.decode(
        str(params["cursor"]),
        query=query.fingerprint,
        secret=cursor_secret(),
        timeout=config["SCIM_CURSOR_TIMEOUT"],
    )
    return replace(query, page=PageRequest(1, count, cursor))


def answers_patched_group() -> bool:
    """Whether a group PATCH answers with the group: only when it asks for attributes or
    excludedAttributes. Otherwise 204, as RFC 7644 §3.5.2 allows: it spares reading 100,000
    members to answer a PATCH."""
    asked = projection()
    return bool(asked.attributes or asked.excluded_attributes)


def if_match() -> str | None:
    return request.headers.get("If-Match")


def if_none_match() -> str | None:
    return request.headers.get("If-None-Match")


def resource(
    body: dict[str, Any], status: int = 200, *, etag: str, location: str | None = None
) -> Response:
    """One resource. ETag and Location come from the caller, not the body, which a projection
    (attributes=userName) may have stripped of meta.version and meta.location."""
    headers = {"ETag": etag}
    if location:
        headers["Location"] = location
    return scim_response(body, status, headers)


def resource_streamed(
    body: dict[str, Any],
    name: str,
    chunks: Iterable[str],
    status: int = 200,
    *,
    etag: str,
    location: str | None = None,
) -> Response:
    """One resource whose attribute `name`, a long list (a group's 100,000 members), is encoded
    chunk by chunk as the body is sent, in place of holding the whole text and every element
    encoded at once. The attribute goes before `meta` (where serialize puts it); `body` lacks it.
    Each chunk is JSON text of consecutive elements, joined by "," without brackets
    (serialize.members_in_chunks): as json_text would write them in the list.

    `chunks` must hold what was read already: once the 200 and its headers are sent, a failure
    could only cut the body short, so nothing may touch the database from here on.
    """
    headers = {"ETag": etag}
    if location:
        headers["Location"] = location
    keys = list(body)
    split = keys.index("meta") if "meta" in keys else len(keys)
    head = json_text({k: body[k] for k in keys[:split]})[:-2]  # without "}\n"
    tail = json_text({k: body[k] for k in keys[split:]})[1:]
    opening = head + (b"," if split else b"") + json_text(name)[:-1] + b":["
    closing = b"]" + (b"," if len(keys) > split else b"") + tail

    def encoded() -> Iterator[bytes]:
        yield opening
        separator = ""
        for chunk in chunks:
            if chunk:
                yield (separator + chunk).encode()
                separator = ","
        yield closing

    return Response(encoded(), status=status, headers=headers, mimetype=MEDIA_TYPE)


def list_response(
    resources: list[dict[str, Any]],
    total: int,
    query: ListQuery | None = None,
    *,
    next_cursor: Cursor | None = None,
    previous_cursor: Cursor | None = None,
) -> Response:
    """A ListResponse; `query` is None for lists that are not paged (discovery)."""
    cursor_mode = query is not None and query.page.cursor is not None
    body: dict[str, Any] = {"schemas": [LIST_URN], "totalResults": total}
    if not cursor_mode:
        body["startIndex"] = query.page.start_index if query is not None else 1
    body["itemsPerPage"] = len(resources)
    # RFC 9865 §3: the cursors of the neighbouring pages, where there are any.
    for name, cursor in (("nextCursor", next_cursor), ("previousCursor", previous_cursor)):
        if cursor_mode and cursor is not None:
            body[name] = paging.encode(cursor, query=query.fingerprint, secret=cursor_secret())
    body["Resources"] = resources
    return scim_response(body)


def no_content(*, etag: str | None = None) -> Response:
    response = Response(status=204, headers={"ETag": etag} if etag else None)
    # RFC 9110 §8.3: Content-Type describes content, and a 204 has none (Werkzeug adds
    # text/html to every response; a 304 is stripped of it by Werkzeug itself).
    del response.headers["Content-Type"]
    return response


def not_modified(version: str) -> Response:
    return Response(status=304, headers={"ETag": version})


def scim_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(json_text(body), status=status, headers=headers, mimetype=MEDIA_TYPE)


def json_text(body: object) -> bytes:
    """A response body: compact JSON in UTF-8 and a newline (which keeps curl output readable).

    orjson writes it ten times faster than json (a page of 100 users: 0.1 ms instead of 1), the
    same text json.dumps(body, ensure_ascii=False, separators=(",", ":")) gives but for a
    float's exponent (1e-7, not 1e-07); tests/test_json_text.py holds them to it. What orjson
    refuses (an integer beyond 64 bits, which an extension's attribute may hold) json writes.
    """
    try:
        return orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


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

    def database_error(e: Exception) -> Response:
        fault = db.fault(e)
        if fault is db.Fault.REFUSED_DATA:
            # A value the limits let through but the database cannot hold: a retry cannot
            # succeed, so no 503. The cause goes to the log, never SQL to the client.
            log.warning("database refused a value: %s", db.error_class(e))
            return scim_error(
                InvalidValue("A value in the request is too large or malformed to be stored")
            )
        if fault is None:
            raise e  # a bug, not an outage: the 500 path
        # The database is down, unreachable, or did not answer within SCIM_DB_TIMEOUT_SECONDS
        # (connect, pool or statement timeout; a lock held too long): the caller should retry,
        # and the pool's pre-ping reconnects by itself once the database is back.
        # One line naming the database (host, port, name) and the cause; never the password.
        log.warning("database unavailable: %s", db.describe_outage(e))
        g.database_unavailable = True
        return scim_error(
            ServiceUnavailable(
                "The service cannot reach its database; retry later",
                headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
            )
        )

    for error in db.REQUEST_ERRORS:
        app.register_error_handler(error, database_error)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        # Routing 404/405, 413 and unhandled errors (a generic 500): keep headers such as Allow.
        if e.code == 500:
            original = getattr(e, "original_exception", None)
            if original is not None:
                log.error("unhandled error", exc_info=original)
            detail = "The server could not complete the request; it has been logged"
        elif e.code == 429 and g.get("rate_limited_tenant"):
            detail = (
                "Too many requests for this tenant (all its tokens together); retry after the "
                "seconds given in Retry-After"
            )
        else:
            detail = _HTTP_DETAILS.get(e.code or 500, e.description or "Request failed")
        response = e.get_response()
        response.set_data(json_text(error_body(e.code or 500, detail)))
        response.mimetype = MEDIA_TYPE
        return response


_HTTP_DETAILS = {
    404: "No such endpoint",
    405: "Method not allowed on this endpoint",
    413: "The request body is larger than this service accepts",
    429: "Too many requests with this token; retry after the seconds given in Retry-After",
}


def _not_json(constant: str) -> None:
    # Python's json accepts NaN and Infinity; RFC 8259 §6 does not, and PostgreSQL's JSON neither.
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    # Python's json reads 1e999 as infinity, which JSON cannot write: SQLite's column then held
    # `Infinity` (no JSON) and responses showed null (orjson writes infinity so); PostgreSQL's
    # refused the row with a 400 that named no number. A ScimError passes json.loads unchanged.
    number = float(text)
    if math.isinf(number):
        shown = text if len(text) <= 40 else f"{text[:37]}..."
        raise InvalidValue(
            f"The number {shown} is beyond the range this service stores (an IEEE 754 double, "
            "at most about 1.8e308 either side of zero)"
        )
    return number


def _csv(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _int_param(params: Any, name: str, default: int) -> int:
    raw = params.get(name)
    if isinstance(raw, int):
        return raw
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidValue(f"{name} must be an integer, got {raw!r}") from None


def cursor_secret() -> bytes:
    """The key a cursor is signed with: the service's secret bound to the caller's tenant, so
    that another tenant's cursor reads as one this service never issued (nothing revealed)."""
    secret = current_app.config["SCIM_SECRET_KEY"]
    secret = secret if isinstance(secret, bytes) else secret.encode("utf-8")
    return secret + f"\x00tenant:{tenancy.current()}".encode()
