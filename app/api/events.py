"""Change events for receivers (RFC 9967), outside /scim/v2: a receiver is an application, not
the IdP, and holds no SCIM token.

GET  /events/openapi.json              the OpenAPI document of these endpoints, no token
GET  /events/receivers/<id>/jwks.json  the receiver's public keys (RFC 7517), no token: public
                                       keys, under an id nobody can guess; [] for HS256
POST /events/receivers/<id>/poll       RFC 8936 poll, with the receiver's own bearer token
                                       (printed once by `flask events receivers add --poll`)

Errors of the poll endpoint are RFC 8935 §2.3's JSON ({"err", "description"}), as RFC 8936
§2.4.4 says; an unknown receiver, a push receiver and a wrong token all get the same 401.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from app import auth, openapi, protocol, sets, tenancy
from app.models import Event, EventReceiver, EventSigningKey, TenantState
from app.store import events, tenants

bp = Blueprint("events", __name__, url_prefix="/events")

DEFAULT_MAX_EVENTS = 100  # when the poll does not say (RFC 8936 leaves it to the transmitter)
MAX_EVENTS = 1000
# Acknowledgements and errors one poll may carry: ten polls' worth of the most it hands out.
MAX_ACKS = 10 * MAX_EVENTS


@bp.get("/openapi.json")
def get_openapi() -> Response:
    """The OpenAPI document of these endpoints; no token (it describes public endpoints)."""
    root = protocol.base_url().removesuffix("/scim/v2")
    document = openapi.events_document(server_url=root, max_events=MAX_EVENTS, max_acks=MAX_ACKS)
    return _json(document, 200)


@bp.get("/receivers/<receiver_id>/jwks.json")
def jwks(receiver_id: str) -> Response:
    receiver = events.receiver(receiver_id)
    if receiver is None:
        return _json({"err": "not_found", "description": "no such receiver"}, 404)
    with tenancy.entered(receiver.tenant_id):
        keys = events.signing_keys(receiver.id, published=True)
    response = _json(sets.jwks(keys), 200)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.post("/receivers/<receiver_id>/poll")
def poll(receiver_id: str) -> Response:
    receiver = events.receiver(receiver_id)
    if (
        receiver is None
        or receiver.delivery != "poll"
        or not auth.presents(receiver.poll_token_hash)
    ):
        response = _error(
            "authentication_failed", "a valid bearer token of this receiver is required", 401
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="events"'
        return response
    if _tenant_state(receiver) != TenantState.ACTIVE:
        return _error("access_denied", "the receiver's tenant is not active", 403)
    try:
        body = _poll_body()
    except ValueError as e:
        return _error("invalid_request", str(e), 400)
    except RequestEntityTooLarge:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return _error("invalid_request", f"the body is larger than {limit} bytes", 413)
    config = current_app.config
    issuer = config["SCIM_EVENTS_ISSUER"] or protocol.base_url()
    base_url = protocol.base_url()

    def build(event: Event, key: EventSigningKey) -> str | None:
        return sets.build(event, receiver, key, issuer=issuer, base_url=base_url)

    polled = events.poll(
        receiver,
        ack=body["ack"],
        errors=body["setErrs"],
        max_events=body["maxEvents"],
        wait_seconds=0 if body["returnImmediately"] else config["SCIM_EVENTS_POLL_WAIT_SECONDS"],
        redeliver_after=timedelta(seconds=config["SCIM_EVENTS_REDELIVER_SECONDS"]),
        build=build,
    )
    answer: dict[str, Any] = {"sets": polled.sets}
    if polled.more_available:
        answer["moreAvailable"] = True
    return _json(answer, 200)


def _poll_body() -> dict[str, Any]:
    """RFC 8936 §2.4's request members, checked; ValueError says what is wrong (a 400).

    Hostile input is a 400 too, never a 500: a body nested thousands deep, NaN, a number of
    thousands of digits, invalid UTF-8. Strings are kept to what the database can store (no
    NUL, no lone surrogate): a jti that is not storable, or longer than ours, is no jti of ours
    and acknowledges nothing, as an unknown jti does.
    """
    raw = request.get_data(cache=True)  # 413 past MAX_CONTENT_LENGTH (see poll)
    try:
        body = json.loads(raw or b"{}", parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ValueError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    ack = body.get("ack", [])
    if not isinstance(ack, list) or not all(isinstance(jti, str) for jti in ack):
        raise ValueError("ack must be an array of jti strings")
    errors = body.get("setErrs", {})
    if not isinstance(errors, dict) or not all(
        isinstance(e, dict)
        and isinstance(e.get("err"), str)
        and isinstance(e.get("description", ""), str)
        for e in errors.values()
    ):
        raise ValueError('setErrs must map each jti to {"err": ..., "description": ...}')
    if len(ack) + len(errors) > MAX_ACKS:
        raise ValueError(f"ack and setErrs may name at most {MAX_ACKS} jtis together per poll")
    max_events = body.get("maxEvents", DEFAULT_MAX_EVENTS)
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 0:
        raise ValueError("maxEvents must be a non-negative integer")
    immediately = body.get("returnImmediately", False)
    if not isinstance(immediately, bool):
        raise ValueError("returnImmediately must be true or false")
    return {
        "ack": [jti for jti in ack if _could_be_jti(jti)],
        "setErrs": {
            jti: _storable(f"{e['err']}: {e.get('description', '')}".rstrip(": "))
            for jti, e in errors.items()
            if _could_be_jti(jti)
        },
        "maxEvents": min(max_events, MAX_EVENTS),
        "returnImmediately": immediately,
    }


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads takes NaN and Infinity otherwise


def _could_be_jti(text: str) -> bool:
    """Ours are 32 hex digits (models.Event.jti holds 36 characters)."""
    return len(text) <= 36 and _storable(text) == text


def _storable(text: str) -> str:
    """The text without what neither database stores: NUL, and lone surrogates (as '?')."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _tenant_state(receiver: EventReceiver) -> str | None:
    with tenancy.entered(receiver.tenant_id):
        tenant = tenants.by_id(receiver.tenant_id)
    return tenant.state if tenant else None


def _error(err: str, description: str, status: int) -> Response:
    return _json({"err": err, "description": description}, status)


def _json(body: dict[str, Any], status: int) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
