"""What a page request asks for, and the opaque, signed cursors of RFC 9865.

A cursor names a position in one query's sorted result set: the sort keys of the row a page
ended (or started) at. It is signed, so a client cannot forge a position, and carries the
query's fingerprint and its issue time, so it is refused for another query or once expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.errors import ScimError


class InvalidCursor(ScimError):
    scim_type = "invalidCursor"  # RFC 9865 §6


class ExpiredCursor(ScimError):
    scim_type = "expiredCursor"  # RFC 9865 §6


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after `keys` (forwards) or before them (`backwards`).

    `keys` is None for the first page (the empty `cursor=` of RFC 9865).
    """

    keys: tuple[Any, ...] | None = None
    backwards: bool = False


@dataclass(frozen=True)
class PageRequest:
    """Index pagination (startIndex, count) or, when `cursor` is set, cursor pagination."""

    start_index: int = 1
    count: int = 100
    cursor: Cursor | None = None


def fingerprint(*parts: object) -> str:
    """Identifies a query (resource type, filter, sort) so its cursors fit no other."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def encode(cursor: Cursor, *, query: str, secret: bytes, now: float | None = None) -> str:
    payload = {
        "k": [_encode_value(v) for v in cursor.keys or ()],
        "b": cursor.backwards,
        "q": query,
        "t": int(now if now is not None else time.time()),
    }
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_b64(_sign(body, secret))}"


def decode(
    token: str, *, query: str, secret: bytes, timeout: int, now: float | None = None
) -> Cursor:
    """The cursor a token names, or InvalidCursor / ExpiredCursor."""
    if token == "":
        return Cursor()
    body, _, signature = token.partition(".")
    try:
        valid = hmac.compare_digest(_unb64(signature), _sign(body, secret))
        payload = json.loads(_unb64(body)) if valid else None
    except (ValueError, UnicodeDecodeError):
        valid, payload = False, None
    if not valid or not isinstance(payload, dict):
        raise InvalidCursor("The cursor is not one this service issued; start again with cursor=")
    if payload.get("q") != query:
        raise InvalidCursor(
            "The cursor belongs to a different query; keep filter and sorting unchanged"
        )
    age = (now if now is not None else time.time()) - payload["t"]
    if age > timeout:
        raise ExpiredCursor(f"The cursor expired after {timeout} seconds; start again with cursor=")
    keys = tuple(_decode_value(v) for v in payload["k"])
    return Cursor(keys or None, bool(payload["b"]))


def _sign(body: str, secret: bytes) -> bytes:
    return hmac.new(secret, body.encode(), hashlib.sha256).digest()[:16]


def _encode_value(value: Any) -> Any:
    # Timestamps travel tagged, so the keyset compares them as timestamps again.
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "dt" in value:
        return datetime.fromisoformat(value["dt"])
    return value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
