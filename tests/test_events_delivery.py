"""Event receivers (`flask events receivers ...`), SETs signed and verified against the JWKS,
and the RFC 8936 poll endpoint (issue 17)."""

from __future__ import annotations

import re
from typing import Any

import jwt
import pytest
from flask import Flask

from app import tenancy
from app.db import db
from app.models import EventDelivery
from app.store import events as events_store
from tests.conftest import BASE, make_app
from tests.payloads import GROUP_URN, patch_payload, user_payload
from tests.test_tenants_cli import fails, ok

PROV = "urn:ietf:params:scim:event:prov"


def add_poller(app: Flask, *extra: str, name: str = "app", tenant: str = "default") -> dict:
    out = ok(
        app, "events", "receivers", "add", name, "--tenant", tenant, "--poll",
        "--audience", "https://app.example", *extra,
    )  # fmt: skip
    receiver_id = re.search(r": ([0-9a-f-]{36})\n", out).group(1)
    token = out.strip().splitlines()[-1]
    return {"id": receiver_id, "token": token, "output": out}


def poll(app_client, receiver: dict, body: dict[str, Any] | None = None, token: str | None = None):
    return app_client.post(
        f"/events/receivers/{receiver['id']}/poll",
        json={"returnImmediately": True} | (body or {}),
        headers={"Authorization": f"Bearer {token or receiver['token']}"},
    )


def verify(app_client, receiver: dict, token: str, audience: str = "https://app.example") -> dict:
    """The SET's claims, its signature checked against the receiver's JWKS with PyJWT."""
    jwks = app_client.get(f"/events/receivers/{receiver['id']}/jwks.json")
    assert jwks.status_code == 200
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "secevent+jwt"
    (key,) = [k for k in jwks.json["keys"] if k["kid"] == header["kid"]]
    public = jwt.PyJWK(key)
    return jwt.decode(token, public.key, algorithms=[key["alg"]], audience=audience)


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_a_polled_set_verifies_against_the_jwks(app, client, alg):
    receiver = add_poller(app, "--alg", alg)
    user = client.post(f"{BASE}/Users", json=user_payload(externalId="ada")).json
    response = poll(client, receiver)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    ((jti, token),) = response.json["sets"].items()
    assert "moreAvailable" not in response.json
    claims = verify(client, receiver, token)
    assert claims["jti"] == jti
    assert claims["iss"] == f"http://localhost{BASE}"
    assert claims["sub_id"] == {
        "format": "scim",
        "uri": f"/Users/{user['id']}",
        "externalId": "ada",
    }
    assert claims["events"] == {
        f"{PROV}:create:notice": {
            "attributes": [
                "id", "externalId", "userName", "name", "displayName", "locale", "active",
                "emails",
            ],
            "version": user["meta"]["version"],
        },
        f"{PROV}:activate": {},
    }  # fmt: skip
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        (event,) = events_store.since()
    assert (claims["txn"], claims["sequence"]) == (event.txn, event.id)
    assert "sub" not in claims  # RFC 9967 §2.1


def test_hs256_signs_with_the_shared_secret(app, client):
    receiver = add_poller(app, "--alg", "HS256")
    secret = ok(app, "events", "receivers", "secret", "app").strip()
    client.post(f"{BASE}/Users", json=user_payload())
    (token,) = poll(client, receiver).json["sets"].values()
    assert client.get(f"/events/receivers/{receiver['id']}/jwks.json").json == {"keys": []}
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience="https://app.example")
    assert f"{PROV}:create:notice" in claims["events"]


def test_full_receivers_get_data_with_absolute_links(app, client):
    receiver = add_poller(app, "--full")
    user = client.post(f"{BASE}/Users", json=user_payload()).json
    group = client.post(
        f"{BASE}/Groups",
        json={"schemas": [GROUP_URN], "displayName": "Eng", "members": [{"value": user["id"]}]},
    ).json
    tokens = poll(client, receiver).json["sets"].values()
    by_uri = {}
    for token in tokens:
        claims = verify(client, receiver, token)
        by_uri[claims["sub_id"]["uri"]] = claims["events"]
    assert by_uri[f"/Users/{user['id']}"][f"{PROV}:create:full"]["data"] == user
    group_data = by_uri[f"/Groups/{group['id']}"][f"{PROV}:create:full"]["data"]
    assert group_data == {**group, "members": group_data["members"]}
    assert group_data["members"][0]["$ref"] == f"http://localhost{BASE}/Users/{user['id']}"


def test_poll_acks_redelivery_and_per_resource_order(app, client):
    receiver = add_poller(app)
    user = client.post(f"{BASE}/Users", json=user_payload()).json
    client.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload({"op": "replace", "path": "active", "value": False}),
    )
    first = poll(client, receiver).json
    # One resource: its second event waits for the first's acknowledgement.
    assert len(first["sets"]) == 1
    (jti,) = first["sets"]
    # Not acknowledged yet and not due again: nothing to hand out.
    assert poll(client, receiver).json == {"sets": {}}
    second = poll(client, receiver, {"ack": [jti]}).json
    ((jti2, token),) = second["sets"].items()
    claims = verify(client, receiver, token)
    assert claims["events"][f"{PROV}:deactivate"] == {}
    assert claims["sequence"] > verify(client, receiver, first["sets"][jti])["sequence"]
    # An error report settles it too: it is not sent again.
    assert poll(
        client, receiver, {"setErrs": {jti2: {"err": "invalid_key", "description": "x"}}}
    ).json == {"sets": {}}
    db.session.remove()
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        states = [(d.state, d.last_error) for d in db.session.query(EventDelivery)]
    assert sorted(states, key=str) == sorted(
        [("delivered", None), ("dead", "invalid_key: x")], key=str
    )


def test_an_unacknowledged_set_is_handed_out_again(app, client):
    app.config["SCIM_EVENTS_REDELIVER_SECONDS"] = 0
    try:
        receiver = add_poller(app)
        client.post(f"{BASE}/Users", json=user_payload())
        once = poll(client, receiver).json["sets"]
        assert poll(client, receiver).json["sets"].keys() == once.keys()
    finally:
        app.config["SCIM_EVENTS_REDELIVER_SECONDS"] = 60


def test_max_events_and_more_available(app, client):
    receiver = add_poller(app)
    for n in range(3):
        client.post(f"{BASE}/Users", json=user_payload(userName=f"u{n}@example.com"))
    assert poll(client, receiver, {"maxEvents": 0}).json == {"sets": {}}
    page = poll(client, receiver, {"maxEvents": 2}).json
    assert (len(page["sets"]), page["moreAvailable"]) == (2, True)
    rest = poll(client, receiver, {"ack": list(page["sets"])}).json
    assert len(rest["sets"]) == 1 and "moreAvailable" not in rest


@pytest.mark.parametrize(
    ("body", "description"),
    [
        pytest.param({"ack": "x"}, "ack must be an array of jti strings", id="ack"),
        pytest.param({"maxEvents": -1}, "maxEvents must be a non-negative integer", id="max"),
        pytest.param(
            {"returnImmediately": "yes"}, "returnImmediately must be true or false", id="immediate"
        ),
        pytest.param(
            {"setErrs": {"a": "b"}},
            'setErrs must map each jti to {"err": ..., "description": ...}',
            id="seterrs",
        ),
    ],
)
def test_a_bad_poll_is_400_invalid_request(app, client, body, description):
    receiver = add_poller(app)
    response = poll(client, receiver, body)
    assert response.status_code == 400
    assert response.json == {"err": "invalid_request", "description": description}


def test_poll_needs_the_receivers_own_token(app, client, tenant_client):
    receiver = add_poller(app)
    push = ok(app, "events", "receivers", "add", "hook", "--url", "https://h.example/e")
    push_id = re.search(r": ([0-9a-f-]{36})\n", push).group(1)
    anonymous = app.test_client()
    for target, token in [
        (receiver, "wrong"),
        ({"id": push_id}, receiver["token"]),
        ({"id": "00000000-0000-0000-0000-000000000000"}, receiver["token"]),
    ]:
        response = poll(anonymous, target, token=token)
        assert response.status_code == 401
        assert response.json == {
            "err": "authentication_failed",
            "description": "a valid bearer token of this receiver is required",
        }
    # The SCIM token is not a receiver's token.
    assert poll(anonymous, receiver, token="scim").status_code == 401


def test_receivers_see_only_their_tenants_events(app, client, tenant_client):
    acme = tenant_client("acme")
    mine = add_poller(app)
    theirs = add_poller(app, tenant="acme")
    client.post(f"{BASE}/Users", json=user_payload(userName="ada@example.com"))
    acme_user = acme.post(f"{BASE}/Users", json=user_payload(userName="ada@example.com")).json
    (token,) = poll(client, theirs).json["sets"].values()
    assert verify(client, theirs, token)["sub_id"]["uri"] == f"/Users/{acme_user['id']}"
    assert len(poll(client, mine).json["sets"]) == 1


def test_receivers_cli_prints_the_endpoints_under_the_services_root(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "SCIM_BASE_URL", "https://scim.example/scim/v2")
    out = ok(app, "events", "receivers", "add", "portal", "--poll")
    receiver_id = re.search(r": ([0-9a-f-]{36})\n", out).group(1)
    root = f"https://scim.example/events/receivers/{receiver_id}"
    assert f"Its public keys (JWKS): {root}/jwks.json\n" in out
    assert f"It polls POST {root}/poll with this token\n" in out


def test_receivers_cli_list_disable_enable_remove(app, client):
    out = ok(
        app, "events", "receivers", "add", "hook", "--url", "https://h.example/e",
        "--events", "deactivate,delete", "--alg", "RS256",
    )  # fmt: skip
    receiver_id = re.search(r": ([0-9a-f-]{36})\n", out).group(1)
    # A placeholder for the host while SCIM_BASE_URL does not name it (the tests' setting).
    assert not app.config["SCIM_BASE_URL"]
    root = "https://<this service's host>"
    assert f"Its public keys (JWKS): {root}/events/receivers/{receiver_id}/jwks.json" in out
    listing = ok(app, "events", "receivers", "list")
    assert re.search(
        r"default +hook +push +https://h.example/e +deactivate,delete +notice +RS256 +enabled +0",
        listing,
    )
    assert "disabled" in ok(app, "events", "receivers", "disable", "hook")
    client.post(f"{BASE}/Users", json=user_payload())
    assert re.search(r"disabled +0", ok(app, "events", "receivers", "list"))
    ok(app, "events", "receivers", "enable", "hook")
    ok(app, "events", "receivers", "remove", "hook")
    assert "No receivers" in ok(app, "events", "receivers", "list")
    assert "no receiver named 'hook'" in fails(app, "events", "receivers", "remove", "hook")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("x",), "give exactly one of --url URL (push) and --poll", id="neither"),
        pytest.param(("x", "--poll", "--url", "https://a.example"), "exactly one", id="both"),
        pytest.param(("x", "--poll", "--events", "create,nope"), "nope", id="event"),
        pytest.param(("x", "--url", "ftp://a"), "is not an http(s) URL", id="url"),
        pytest.param(("x", "--poll", "--tenant", "nope"), "nope", id="tenant"),
    ],
)
def test_receivers_add_refuses(app, client, args, message):
    assert message in fails(app, "events", "receivers", "add", *args)


def test_a_taken_name_is_refused(app, client):
    add_poller(app)
    assert "a receiver named 'app' exists" in fails(
        app, "events", "receivers", "add", "app", "--poll"
    )


def test_issuer_is_configurable(database_url):
    app = make_app(database_url, SCIM_EVENTS_ISSUER="https://issuer.example")
    assert app.config["SCIM_EVENTS_ISSUER"] == "https://issuer.example"
