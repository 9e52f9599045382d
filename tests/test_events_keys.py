"""Rotating a receiver's signing key (`flask events receivers rotate-key`): the new key signs
from then on, the old one stays in the JWKS until retired (and a day more), so SETs signed
before and after the rotation both verify against the published keys."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from app import tenancy
from app.db import db, utcnow
from app.models import EventSigningKey
from tests.conftest import BASE
from tests.payloads import user_payload
from tests.test_events_delivery import add_poller, poll, verify
from tests.test_tenants_cli import fails, ok


def kids(client, receiver: dict) -> list[str]:
    jwks = client.get(f"/events/receivers/{receiver['id']}/jwks.json").json
    return sorted(key["kid"] for key in jwks["keys"])


def next_set(client, receiver: dict, ack: list[str] | None = None) -> tuple[str, str]:
    """Create a user and poll its SET (acknowledging `ack`): (jti, token)."""
    client.post(
        f"{BASE}/Users", json=user_payload(userName=f"{len(ack or [])}-{id(ack)}@x.example")
    )
    sets = poll(client, receiver, {"ack": ack or []}).json["sets"]
    ((jti, token),) = sets.items()
    return jti, token


def age_retirement(days: int) -> None:
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        db.session.execute(
            db.update(EventSigningKey)
            .where(EventSigningKey.retired_at.is_not(None))
            .values(retired_at=utcnow() - timedelta(days=days)),
            execution_options={"synchronize_session": False},
        )
        db.session.commit()
    db.session.remove()


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_sets_signed_before_and_after_a_rotation_verify_against_the_jwks(app, client, alg):
    receiver = add_poller(app, "--alg", alg)
    (old_kid,) = kids(client, receiver)
    before_jti, before = next_set(client, receiver)
    assert jwt.get_unverified_header(before)["kid"] == old_kid

    output = ok(app, "events", "receivers", "rotate-key", "app")
    (new_kid,) = set(kids(client, receiver)) - {old_kid}
    assert output == (
        f"Receiver app: signs with key {new_kid} from now on.\n"
        "The old keys stay in its JWKS until `receivers rotate-key NAME --retire-old`.\n"
    )
    _, after = next_set(client, receiver, ack=[before_jti])
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    assert kids(client, receiver) == sorted([old_kid, new_kid])
    for token in (before, after):
        assert verify(client, receiver, token)["aud"] == "https://app.example"


def test_retire_old_keeps_the_old_key_published_for_a_day(app, client):
    receiver = add_poller(app)
    (old_kid,) = kids(client, receiver)
    before_jti, before = next_set(client, receiver)
    ok(app, "events", "receivers", "rotate-key", "app")
    _, after = next_set(client, receiver, ack=[before_jti])

    assert ok(app, "events", "receivers", "rotate-key", "app", "--retire-old") == (
        "Receiver app: retired 1 old key; they leave its JWKS in 1 day.\n"
    )
    assert len(kids(client, receiver)) == 2  # the grace: SETs in flight still verify
    verify(client, receiver, before)
    age_retirement(2)
    (new_kid,) = kids(client, receiver)
    assert new_kid != old_kid
    verify(client, receiver, after)
    with pytest.raises(ValueError):  # the old SET's kid is no longer published
        verify(client, receiver, before)
    assert ok(app, "events", "receivers", "rotate-key", "app", "--retire-old") == (
        "Receiver app: retired 0 old keys; they leave its JWKS in 1 day.\n"
    )


def test_an_hs256_rotation_changes_the_shared_secret(app, client):
    receiver = add_poller(app, "--alg", "HS256")
    old_secret = ok(app, "events", "receivers", "secret", "app").strip()
    assert ok(app, "events", "receivers", "rotate-key", "app").endswith(
        "Give the receiver the new shared secret (`receivers secret`).\n"
    )
    new_secret = ok(app, "events", "receivers", "secret", "app").strip()
    assert new_secret != old_secret
    _, token = next_set(client, receiver)
    claims = jwt.decode(token, new_secret, algorithms=["HS256"], audience="https://app.example")
    assert claims["aud"] == "https://app.example"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, old_secret, algorithms=["HS256"], audience="https://app.example")


def test_rotate_key_of_an_unknown_receiver_or_tenant_is_one_error_line(app, client):
    assert fails(app, "events", "receivers", "rotate-key", "nobody") == (
        "Error: no receiver named 'nobody'\n"
    )
    add_poller(app)
    assert "nope" in fails(app, "events", "receivers", "rotate-key", "app", "--tenant", "nope")
