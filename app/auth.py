"""Bearer tokens: how they are generated and hashed, and the check every SCIM request passes.

Tokens come from two places: SCIM_TOKEN_HASHES (named "env-1", "env-2"... by position) and the
`tokens` table that `flask tokens ...` manages. Either way only SHA-256 hashes are stored, and
`g.token_name` tells the audit and the rate limit who is calling, never the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import Flask, current_app, g, request

from app.errors import Unauthorized
from app.store import tokens

TOKEN_BYTES = 32
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="scim"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="scim", error="invalid_token"'}
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


def identify() -> None:
    """before_request: set `g.token_name` for a SCIM request (None: no valid token); no refusal.

    Refusing is left to require_bearer, after the rate limit, so that guessing tokens is
    limited too (per remote address).
    """
    if is_scim_request():
        g.token_name = _token_name()


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
    """before_request hook for every SCIM route (RFC 6750 §3: 401 with a Bearer challenge)."""
    name = g.get("token_name", _UNSET)
    if name is _UNSET:
        name = g.token_name = _token_name()
    if name is not None:
        return
    if not _presented():
        raise Unauthorized("Authorization: Bearer <token> is required", headers=_CHALLENGE)
    raise Unauthorized("The bearer token is not valid", headers=_INVALID)


def _presented() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _token_name() -> str | None:
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
        return matched
    # The table is searched by its unique index on the hash: a lookup by a SHA-256 of 256
    # random bits tells a guesser nothing about how close a guess came.
    return tokens.name_for_hash(presented)
