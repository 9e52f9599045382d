"""The bearer check in front of every SCIM route (RFC 6750), token rotation and token_gen.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from app.auth import token_hash
from app.config import ConfigError, load_config
from tests.conftest import BASE, OTHER_TOKEN, TOKEN
from tests.payloads import ENTERPRISE_URN, GROUP_URN, USER_URN, error, patch_payload, user_payload

ROOT = Path(__file__).resolve().parent.parent
TOKEN_GEN = ROOT / "scripts" / "token_gen.py"
MISSING = error(401, "Authorization: Bearer <token> is required")
INVALID = error(401, "The bearer token is not valid")

# Every SCIM endpoint, as (method, path, body). A user id that does not exist is fine: the check
# must answer before the view looks anything up.
ENDPOINTS = [
    pytest.param("GET", "/Users", None, id="list-users"),
    pytest.param("GET", "/Users/some-id", None, id="get-user"),
    pytest.param("POST", "/Users", user_payload(), id="post-user"),
    pytest.param("PUT", "/Users/some-id", user_payload(), id="put-user"),
    pytest.param(
        "PATCH",
        "/Users/some-id",
        patch_payload({"op": "replace", "value": {"active": False}}),
        id="patch-user",
    ),
    pytest.param("DELETE", "/Users/some-id", None, id="delete-user"),
    pytest.param("GET", "/Groups", None, id="list-groups"),
    pytest.param(
        "POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Eng"}, id="post-group"
    ),
    pytest.param(
        "PATCH",
        "/Groups/some-id",
        patch_payload({"op": "remove", "path": 'members[value eq "u"]'}),
        id="patch-group",
    ),
    pytest.param("DELETE", "/Groups/some-id", None, id="delete-group"),
    pytest.param("GET", "/ServiceProviderConfig", None, id="service-provider-config"),
    pytest.param("GET", "/ResourceTypes", None, id="resource-types"),
    pytest.param("GET", "/ResourceTypes/User", None, id="resource-type-user"),
    pytest.param("GET", "/Schemas", None, id="schemas"),
    pytest.param("GET", f"/Schemas/{USER_URN}", None, id="schema-user"),
    pytest.param("GET", f"/Schemas/{ENTERPRISE_URN}", None, id="schema-enterprise"),
    pytest.param("POST", "/.search", {}, id="search-everything"),
    # What is not supported, does not exist or takes another method says so only to a caller
    # with a valid token (and is rate limited like the rest, so that guessing tokens is too).
    pytest.param("GET", "/Me", None, id="me"),
    pytest.param("POST", "/Bulk", {}, id="bulk"),
    pytest.param("GET", "/Nope", None, id="unknown-resource"),
    pytest.param("DELETE", "/Users/some-id/extra", None, id="below-a-user"),
    pytest.param("GET", "", None, id="root"),
    pytest.param("DELETE", "/Users", None, id="wrong-method"),
    pytest.param("PROPFIND", "/Users", None, id="unknown-method"),
]


def call(client, method: str, path: str, body: object, headers: dict[str, str]):
    return client.open(f"{BASE}{path}", method=method, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize(
    ("headers", "expected", "challenge"),
    [
        pytest.param({}, MISSING, 'Bearer realm="scim"', id="no-token"),
        pytest.param(
            {"Authorization": "Bearer wrong-token"},
            INVALID,
            'Bearer realm="scim", error="invalid_token"',
            id="wrong-token",
        ),
        pytest.param(
            {"Authorization": f"Basic {TOKEN}"}, MISSING, 'Bearer realm="scim"', id="basic-scheme"
        ),
        pytest.param(
            {"Authorization": TOKEN}, MISSING, 'Bearer realm="scim"', id="token-without-scheme"
        ),
        pytest.param({"Authorization": "Bearer "}, MISSING, 'Bearer realm="scim"', id="empty"),
        pytest.param(
            {"Authorization": f"Bearer {TOKEN}x"},
            INVALID,
            'Bearer realm="scim", error="invalid_token"',
            id="token-with-suffix",
        ),
    ],
)
def test_unauthenticated_request_is_401_with_scim_error_and_challenge(
    anonymous, method, path, body, headers, expected, challenge
):
    response = call(anonymous, method, path, body, headers)
    assert response.status_code == 401
    assert response.mimetype == "application/scim+json"
    assert response.json == expected
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["WWW-Authenticate"] == challenge


def test_rejected_request_changes_nothing(client, anonymous, create_user):
    user = create_user()
    deactivate = patch_payload({"op": "replace", "value": {"active": False}})
    response = anonymous.patch(
        f"{BASE}/Users/{user['id']}", json=deactivate, headers={"Authorization": "Bearer x"}
    )
    assert response.status_code == 401
    assert client.get(f"{BASE}/Users/{user['id']}").json == user


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN], ids=["current", "rotated"])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"], ids=["Bearer", "lower", "upper"])
def test_every_configured_token_is_accepted(anonymous, app, token, scheme):
    headers = {"Authorization": f"{scheme} {token}"}
    response = anonymous.get(f"{BASE}/ServiceProviderConfig", headers=headers)
    assert response.status_code == 200
    response = anonymous.get(f"{BASE}/Users", headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN], ids=["current", "rotated"])
def test_both_tokens_reach_every_users_endpoint(client, token):
    headers = {"Authorization": f"Bearer {token}"}
    created = client.post(f"{BASE}/Users", json=user_payload(), headers=headers)
    assert created.status_code == 201
    url = f"{BASE}/Users/{created.json['id']}"
    assert client.get(url, headers=headers).status_code == 200
    assert client.put(url, json=user_payload(), headers=headers).status_code == 200
    deactivate = patch_payload({"op": "replace", "value": {"active": False}})
    assert client.patch(url, json=deactivate, headers=headers).status_code == 200
    assert client.delete(url, headers=headers).status_code == 204


# --- scripts/token_gen.py -------------------------------------------------------------------


def run_token_gen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOKEN_GEN), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
        check=False,
    )


def test_token_gen_prints_a_token_and_the_hash_auth_accepts(tmp_path):
    result = run_token_gen(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    token = lines[0].rsplit(": ", 1)[1]
    assert len(token) >= 43  # 32 random bytes, base64url
    hash_lines = [line for line in lines if line.startswith("SCIM_TOKEN_HASHES=")]
    assert hash_lines == [f"SCIM_TOKEN_HASHES={token_hash(token)}"]
    # The line works as configuration.
    config = load_config({"SCIM_TOKEN_HASHES": hash_lines[0].split("=", 1)[1]})
    assert config["SCIM_TOKEN_HASHES"] == (token_hash(token),)
    assert run_token_gen(cwd=tmp_path).stdout != result.stdout  # a fresh token every time


def test_token_gen_env_creates_a_file_that_accepts_the_token(tmp_path):
    env_file = tmp_path / ".env"
    result = run_token_gen("--env", str(env_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    token = next(line.strip() for line in result.stdout.splitlines()[1:] if line.strip())
    settings = {k: v or "" for k, v in dotenv_values(env_file).items()}  # as the service reads it
    assert settings["SCIM_TOKEN_HASHES"] == token_hash(token)
    assert env_file.stat().st_mode & 0o777 == 0o600  # it guards the service
    assert load_config(settings)["SCIM_TOKEN_HASHES"] == (token_hash(token),)


def test_token_gen_env_refuses_to_overwrite(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("KEEP=me\n", encoding="utf-8")
    result = run_token_gen("--env", str(env_file), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "already exists" in result.stderr
    assert env_file.read_text(encoding="utf-8") == "KEEP=me\n"


# --- Configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("not-a-hash", id="word"),
        pytest.param(TOKEN, id="plaintext-token"),
        pytest.param(token_hash(TOKEN)[:-1], id="too-short"),
        pytest.param(token_hash(TOKEN) + "0", id="too-long"),
        pytest.param(f"{token_hash(TOKEN)};{token_hash(OTHER_TOKEN)}", id="wrong-separator"),
        pytest.param("g" * 64, id="not-hex"),
    ],
)
def test_malformed_token_hashes_stop_start_up_naming_the_variable(raw):
    with pytest.raises(ConfigError, match="SCIM_TOKEN_HASHES") as caught:
        load_config({"SCIM_TOKEN_HASHES": raw})
    assert raw not in str(caught.value)  # never echo what may be a secret


def test_token_hashes_accept_spaces_and_upper_case():
    raw = f" {token_hash(TOKEN).upper()} , {token_hash(OTHER_TOKEN)} ,"
    hashes = load_config({"SCIM_TOKEN_HASHES": raw})["SCIM_TOKEN_HASHES"]
    assert hashes == (token_hash(TOKEN), token_hash(OTHER_TOKEN))


def test_without_secret_key_or_env_tokens_the_key_is_random_not_a_constant():
    first = load_config({})["SCIM_SECRET_KEY"]
    second = load_config({})["SCIM_SECRET_KEY"]
    assert first != second and len(first) == 32
    same_tokens = {"SCIM_TOKEN_HASHES": "a" * 64}
    assert (
        load_config(same_tokens)["SCIM_SECRET_KEY"] == load_config(same_tokens)["SCIM_SECRET_KEY"]
    )
