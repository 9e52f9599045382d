"""Bearer tokens: how they are generated and hashed, and the check every SCIM request passes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import current_app, request

from app.errors import Unauthorized

TOKEN_BYTES = 32
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="scim"'}


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """SHA-256 hex of a token: what configuration holds instead of the token itself.

    A salted slow hash is unnecessary here: tokens are 256 random bits, not passwords.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def require_bearer() -> None:
    """before_request hook for every SCIM route (RFC 6750 §3: 401 with a Bearer challenge)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization: Bearer <token> is required", headers=_CHALLENGE)
    presented = token_hash(token.strip())
    # Compare against every configured hash, without stopping early, in constant time.
    matched = False
    for known in current_app.config["SCIM_TOKEN_HASHES"]:
        matched |= hmac.compare_digest(presented, known)
    if not matched:
        raise Unauthorized(
            "The bearer token is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="scim", error="invalid_token"'},
        )
