"""Security Event Tokens (RFC 8417) for the events outbox, as RFC 9967 profiles them for SCIM:
built from an `events` row for one receiver, signed with that receiver's key (PyJWT).

One SET per event row: its `events` claim holds the provisioning event (create, put or patch,
`:notice` with the changed `attributes` or `:full` with the resource as committed in `data`;
delete has no payload) and, when the user's `active` turned, `activate` or `deactivate` beside
it (RFC 9967 §2.1: several event URIs in one SET arise from one change of one resource), each
kept only when the receiver subscribes to it. `sub_id` names the resource (RFC 9493's "scim"
format); `txn` is the change's; `toe` is when it committed; `sequence` (a claim of ours) is the
outbox id, increasing with each change of one resource, so a receiver can order a resource's
SETs whatever order they arrive in (RFC 8936's `sets` is unordered; push may retry).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from app.etags import etag
from app.models import Event, EventReceiver, EventSigningKey

PROV = "urn:ietf:params:scim:event:prov"
ALGORITHMS = ("ES256", "RS256", "HS256")
TYPE = "secevent+jwt"  # RFC 8417 §2.3


def event_uris() -> list[str]:
    """Every event URI this service emits (RFC 9967 §7.4), for ServiceProviderConfig."""
    return [
        *(
            f"{PROV}:{op}:{mode}"
            for op in ("create", "patch", "put")
            for mode in ("notice", "full")
        ),
        f"{PROV}:delete",
        f"{PROV}:activate",
        f"{PROV}:deactivate",
    ]


def new_key(alg: str) -> EventSigningKey:
    """A fresh signing key for `alg`: its private half (PEM) or HS256 secret, its public JWK."""
    kid = uuid.uuid4().hex
    if alg == "HS256":
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        return EventSigningKey(kid=kid, alg=alg, secret=secret, public_jwk=None)
    if alg == "ES256":
        private: Any = ec.generate_private_key(ec.SECP256R1())
        public = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    else:
        raise ValueError(f"unsupported algorithm {alg!r}; one of {', '.join(ALGORITHMS)}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_jwk = {**public, "kid": kid, "alg": alg, "use": "sig"}
    return EventSigningKey(kid=kid, alg=alg, secret=pem, public_jwk=public_jwk)


def jwks(keys: list[EventSigningKey]) -> dict[str, Any]:
    """The JWK Set (RFC 7517 §5) of the public keys given."""
    return {"keys": [key.public_jwk for key in keys if key.public_jwk is not None]}


def claims(event: Event, receiver: EventReceiver, *, issuer: str, base_url: str) -> dict | None:
    """The SET's claims for this receiver; None when it subscribes to none of the events."""
    payload: dict[str, Any] = {}
    wanted = set(receiver.events)
    if event.operation in wanted:
        if event.operation == "delete":
            payload[f"{PROV}:delete"] = {}
        else:
            body: dict[str, Any] = {}
            if receiver.full and event.data is not None:
                body["data"] = _absolute(event.data, base_url)
                uri = f"{PROV}:{event.operation}:full"
            else:
                body["attributes"] = event.attributes
                uri = f"{PROV}:{event.operation}:notice"
            if event.version is not None:
                body["version"] = etag(event.version, event.tenant_id)
            payload[uri] = body
    if event.activation is not None and event.activation in wanted:
        payload[f"{PROV}:{event.activation}"] = {}
    if not payload:
        return None
    endpoint = "Users" if event.resource_type == "User" else "Groups"
    sub_id: dict[str, Any] = {"format": "scim", "uri": f"/{endpoint}/{event.resource_id}"}
    if event.external_id is not None:
        sub_id["externalId"] = event.external_id
    return {
        "iss": issuer,
        "iat": int(time.time()),
        "jti": event.jti,
        "aud": receiver.audience,
        "txn": event.txn,
        "toe": int(event.at.timestamp()),
        "sequence": event.id,
        "sub_id": sub_id,
        "events": payload,
    }


def sign(claims: dict[str, Any], key: EventSigningKey) -> str:
    """The SET as a compact JWS, `typ: secevent+jwt` (RFC 8417 §2.3)."""
    return jwt.encode(claims, key.secret, algorithm=key.alg, headers={"typ": TYPE, "kid": key.kid})


def build(
    event: Event, receiver: EventReceiver, key: EventSigningKey, *, issuer: str, base_url: str
) -> str | None:
    """The signed SET of one event for one receiver, or None (nothing it subscribes to)."""
    built = claims(event, receiver, issuer=issuer, base_url=base_url)
    return None if built is None else sign(built, key)


def _absolute(data: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The stored resource's links (relative to the SCIM base URL) made absolute."""
    out = dict(data)
    if isinstance(meta := out.get("meta"), dict) and "location" in meta:
        out["meta"] = {**meta, "location": base_url + meta["location"]}
    for name in ("members", "groups"):
        if isinstance(out.get(name), list):
            out[name] = [
                {**e, "$ref": base_url + e["$ref"]} if isinstance(e.get("$ref"), str) else e
                for e in out[name]
            ]
    return out
