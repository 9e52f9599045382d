"""Bearer tokens: how they are generated and hashed, and the check every SCIM request passes.

Tokens come from two places: SCIM_TOKEN_HASHES (named "env-1", "env-2"... by position, all of
the default tenant) and the `tokens` table that `flask tokens ...` manages, where each token
belongs to one tenant. Either way only SHA-256 hashes are stored. `g.caller` tells the audit and
the rate limit who is calling (token name and tenant), never the token itself, and the request
acts for the token's tenant only (app.tenancy): a token is the only thing that selects a tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import Flask, current_app, g, request

from app import tenancy
from app.errors import Forbidden, Unauthorized
from app.models import TenantState
from app.store import tokens
from app.store.tokens import Caller

TOKEN_BYTES = 32
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="scim"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="scim", error="invalid_token"'}
_METRICS_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}
_METRICS_INVALID = {"WWW-Authenticate": 'Bearer realm="metrics", error="invalid_token"'}
_UNSET = object()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """SHA-256 hex of a token: what configuration holds instead of the token itself.

    A salted slow hash is unnecessary here: tokens are 256 random bits, not passwords.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def init_app(app: Flask) -> None:
    """Identify the caller of a SCIM request before the rate limit, which counts per token."""
    app.before_request(identify)
    app.teardown_request(_leave_tenant)


def identify() -> None:
    """before_request: set `g.caller` for a SCIM request (None: no valid token); no refusal.

    A valid token of an active tenant enters that tenant for the rest of the request.
    Refusing is left to require_bearer, after the rate limit, so that guessing tokens is
    limited too (per remote address).
    """
    if is_scim_request():
        _identify()


def _identify() -> Caller | None:
    caller = g.caller = _caller()
    g.token_name = caller.token_name if caller else None  # for the audit line and rate limit
    if caller is not None and caller.tenant_state == TenantState.ACTIVE:
        g.tenant_scope = tenancy.enter(caller.tenant_id)
    return caller


def _leave_tenant(_error: BaseException | None) -> None:
    if (entered := g.pop("tenant_scope", None)) is not None:
        tenancy.leave(entered)


def is_scim_request() -> bool:
    """A request for a SCIM route, or for a path under /scim/v2 that matches no route: that one
    is refused (401) and rate limited like the routes, before its 404 or 405."""
    if "scim" in request.blueprints:
        return True
    if request.url_rule is not None:
        return False
    prefix = current_app.blueprints["scim"].url_prefix  # app/api/__init__.py: /scim/v2
    return request.path == prefix or request.path.startswith(f"{prefix}/")


def require_bearer() -> None:
    """before_request hook for every SCIM route (RFC 6750 §3: 401 with a Bearer challenge).

    A suspended tenant's token is recognised but refused with 403, so that its IdP admin
    reads why in the provisioning log; a deleted tenant's tokens are simply not valid (401).
    """
    caller = g.get("caller", _UNSET)
    if caller is _UNSET:
        caller = _identify()
    if caller is not None and caller.tenant_state == TenantState.ACTIVE:
        return
    if caller is not None and caller.tenant_state == TenantState.SUSPENDED:
        raise Forbidden(
            f"The tenant {caller.tenant_slug!r} is suspended: its data is kept but no request "
            "is served until the service operator resumes it"
        )
    if not _presented():
        raise Unauthorized("Authorization: Bearer <token> is required", headers=_CHALLENGE)
    raise Unauthorized("The bearer token is not valid", headers=_INVALID)


def require_metrics_token() -> None:
    """GET /metrics: the scraper's token, one of SCIM_METRICS_TOKEN_HASHES (not a SCIM token,
    whose tenant's IdP has no business reading every tenant's numbers), in constant time."""
    token = _presented()
    presented = token_hash(token) if token is not None else ""
    valid = False
    for known in current_app.config["SCIM_METRICS_TOKEN_HASHES"]:
        valid |= hmac.compare_digest(presented, known)  # every hash, without stopping early
    if valid:
        return
    if token is None:
        raise Unauthorized("Authorization: Bearer <token> is required", headers=_METRICS_CHALLENGE)
    raise Unauthorized("The bearer token is not valid", headers=_METRICS_INVALID)


def presents(stored_hash: str | None) -> bool:
    """Whether the request's bearer token is the one whose hash is stored (an event receiver's
    poll token, app/api/events.py), in constant time."""
    token = _presented()
    presented = token_hash(token) if token is not None else ""
    return stored_hash is not None and hmac.compare_digest(presented, stored_hash)


def _presented() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _caller() -> Caller | None:
    token = _presented()
    if token is None:
        return None
    presented = token_hash(token)
    # Compare against every configured hash, without stopping early, in constant time.
    matched = None
    for position, known in enumerate(current_app.config["SCIM_TOKEN_HASHES"], start=1):
        if hmac.compare_digest(presented, known) and matched is None:
            matched = f"env-{position}"
    if matched is not None:
        # Named before the tenant's state is read: a request that then finds the database
        # down is audited (and rate limited) as this token's, not as a stranger's.
        g.token_name = matched
        return tokens.default_tenant_caller(matched)
    # The table is searched by its unique index on the hash: a lookup by a SHA-256 of 256
    # random bits tells a guesser nothing about how close a guess came.
    return tokens.caller_for_hash(presented)
