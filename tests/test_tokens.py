"""Named tokens in the database beside SCIM_TOKEN_HASHES, and the operators' `flask` commands."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from app import tenancy
from app.auth import new_token, token_hash
from app.db import db, utcnow
from app.models import Group, Token, User
from app.store import audit, tokens
from app.tenancy import DEFAULT_TENANT_ID
from tests.conftest import BASE, OTHER_TOKEN, TOKEN, statements
from tests.payloads import GROUP_URN, patch_payload


def run(app, *args: str):
    """`flask ARGS` as a shell runs it: no tenant entered (the commands enter their own)."""
    db.session.remove()
    with tenancy.entered(None):
        result = app.test_cli_runner().invoke(args=list(args))
    db.session.remove()
    return result


def issued(output: str) -> str:
    """The token a create or rotate printed (the line after the announcement)."""
    lines = output.splitlines()
    return lines[lines.index(next(x for x in lines if x.startswith("Token "))) + 1]


def status(anonymous, token: str) -> int:
    db.session.remove()  # the test's reads end their transaction, as a request's would
    return anonymous.get(f"{BASE}/Users", headers={"Authorization": f"Bearer {token}"}).status_code


def audited_token_name(anonymous, token: str) -> str | None:
    db.session.remove()
    response = anonymous.post(
        f"{BASE}/Groups",
        json={"schemas": [GROUP_URN], "displayName": f"g-{token[:8]}"},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.close()
    db.session.remove()
    return audit.recent(limit=1)[0].token_name


def test_created_token_is_printed_once_stored_hashed_and_accepted(app, client, anonymous):
    result = run(app, "tokens", "create", "okta-prod")
    assert result.exit_code == 0, result.output
    token = issued(result.output)
    assert len(token) >= 43
    stored = db.session.scalars(db.select(Token)).one()
    assert stored.name == "okta-prod" and stored.hash != token and token not in stored.hash
    assert status(anonymous, token) == 200
    assert audited_token_name(anonymous, token) == "okta-prod"
    db.session.remove()
    assert db.session.get(Token, stored.id).last_used_at is not None


def test_environment_tokens_are_named_by_position(client, anonymous):
    assert audited_token_name(anonymous, TOKEN) == "env-1"
    assert audited_token_name(anonymous, OTHER_TOKEN) == "env-2"


def test_list_shows_names_and_dates_never_hashes(app, client):
    token = issued(run(app, "tokens", "create", "entra").output)
    run(app, "tokens", "create", "okta")
    run(app, "tokens", "revoke", "okta")
    output = run(app, "tokens", "list").output
    assert re.search(r"^entra\s+current\s+\d{4}-", output, re.M)
    assert re.search(r"^okta\s+revoked\s+\d{4}-", output, re.M)
    hashes = db.session.scalars(db.select(Token.hash)).all()
    assert token not in output and not any(h in output for h in hashes)


def test_names_are_unique_among_valid_tokens_and_env_names_are_reserved(app, client):
    assert run(app, "tokens", "create", "okta").exit_code == 0
    taken = run(app, "tokens", "create", "okta")
    assert taken.exit_code == 1 and "already named 'okta'" in taken.output
    for bad in ("env-1", "has space", "-dash", "x" * 65):
        assert run(app, "tokens", "create", bad).exit_code == 2
    run(app, "tokens", "revoke", "okta")
    assert run(app, "tokens", "create", "okta").exit_code == 0  # a revoked name is free again


def test_rotate_revokes_the_old_token_at_once(app, client, anonymous):
    old = issued(run(app, "tokens", "create", "okta").output)
    result = run(app, "tokens", "rotate", "okta")
    assert result.exit_code == 0 and "old token is revoked" in result.output
    new = issued(result.output)
    assert (status(anonymous, old), status(anonymous, new)) == (401, 200)


def test_rotate_keep_old_keeps_both_until_the_old_is_revoked(app, client, anonymous):
    old = issued(run(app, "tokens", "create", "okta").output)
    new = issued(run(app, "tokens", "rotate", "okta", "--keep-old").output)
    assert (status(anonymous, old), status(anonymous, new)) == (200, 200)
    assert "old (valid)" in run(app, "tokens", "list").output
    assert run(app, "tokens", "revoke", "okta", "--old").output == "Revoked 1 token named okta.\n"
    assert (status(anonymous, old), status(anonymous, new)) == (401, 200)
    assert run(app, "tokens", "revoke", "okta").exit_code == 0
    assert status(anonymous, new) == 401
    assert run(app, "tokens", "revoke", "okta").exit_code == 1  # nothing valid left
    assert run(app, "tokens", "rotate", "nobody").exit_code == 1


def test_purge_tombstones_and_audit_and_stats(app, client, create_user):
    kept, gone, active = create_user(userName="kept"), create_user(userName="gone"), create_user()
    group = client.post(
        f"{BASE}/Groups",
        json={"schemas": [GROUP_URN], "displayName": "Eng", "members": [{"value": active["id"]}]},
    ).json
    old_group = client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Old"})
    client.patch(
        f"{BASE}/Users/{active['id']}",
        json=patch_payload({"op": "replace", "value": {"active": False}}),
    )
    for path in (f"Users/{kept['id']}", f"Users/{gone['id']}", f"Groups/{old_group.json['id']}"):
        client.delete(f"{BASE}/{path}")
    long_ago = utcnow() - timedelta(days=40)
    db.session.execute(db.update(User).where(User.id == gone["id"]).values(deleted_at=long_ago))
    db.session.execute(
        db.update(Group).where(Group.id == old_group.json["id"]).values(deleted_at=long_ago)
    )
    db.session.commit()

    stats = run(app, "stats").output
    # Nine changes, each committed with its audit row (5 creates, 1 PATCH, 3 DELETEs).
    assert stats == (
        "users_active: 0\nusers_inactive: 1\nusers_unassigned: 0\ngroups: 1\nmemberships: 1\n"
        "tombstoned_users: 2\ntombstoned_groups: 1\naudit_events: 9\n"
        "tenants: 1\ntombstoned_tenants: 0\n"
    )
    assert run(app, "stats", "--tenant", "default").output == stats.split("tenants: 1")[0]
    result = run(app, "purge", "--tombstones-older-than", "30", "--audit-older-than", "1")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Purged 1 deleted users and 1 deleted groups older than 30 days.\n"
        "Purged 0 audit events older than 1 days.\n"
        "Purged 0 membership changes older than 1 days.\n"
        "Purged 0 change events older than 30 days, none of them pending, with 0 deliveries.\n"
        "Purged 0 deleted tenants older than 30 days.\n"
    )
    assert db.session.get(User, (DEFAULT_TENANT_ID, gone["id"])) is None
    assert (
        db.session.get(User, (DEFAULT_TENANT_ID, kept["id"])) is not None
    )  # deleted, but recently
    db.session.remove()  # SQLite: the reads' transaction holds the write lock (BEGIN IMMEDIATE)
    assert client.get(f"{BASE}/Groups/{group['id']}").json["members"][0]["value"] == active["id"]
    assert "tombstoned_users: 1\ntombstoned_groups: 0" in run(app, "stats").output
    # Without options: audit events older than SCIM_AUDIT_RETENTION_DAYS (90), and tenants
    # deleted before SCIM_TENANT_RETENTION_DAYS (30), nothing else.
    assert run(app, "purge").output == (
        "Purged 0 audit events older than 90 days.\n"
        "Purged 0 membership changes older than 90 days.\n"
        "Purged 0 change events older than 30 days, none of them pending, with 0 deliveries.\n"
        "Purged 0 deleted tenants older than 30 days.\n"
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unknown_token_is_looked_up_and_refused(client, anonymous):
    assert status(anonymous, "not-a-token") == 401
    assert db.session.scalars(db.select(Token)).all() == []


# --- A worker remembers valid tokens for a second (store/tokens.py CALLER_TTL_SECONDS) ----------


def _token_reads(anonymous, token: str, requests: int) -> int:
    with statements() as seen:
        for _ in range(requests):
            assert status(anonymous, token) == 200
    return sum(1 for s in seen if "FROM tokens" in s or "FROM tenants" in s)


def test_a_valid_token_is_read_from_the_database_once_a_second(app, client, anonymous, clock):
    named = issued(run(app, "tokens", "create", "okta").output)
    assert _token_reads(anonymous, named, 20) == 1
    assert _token_reads(anonymous, TOKEN, 20) == 1  # SCIM_TOKEN_HASHES: the tenant's state
    clock[0] += tokens.CALLER_TTL_SECONDS
    assert _token_reads(anonymous, named, 5) == 1
    assert _token_reads(anonymous, TOKEN, 5) == 1


def test_unknown_tokens_are_never_remembered(app, client, anonymous, clock):
    """A token another process creates works at once, and guesses cost a lookup each."""
    with statements() as seen:
        for _ in range(3):
            assert status(anonymous, "not-a-token") == 401
    assert sum(1 for s in seen if "FROM tokens" in s) == 3
    token = new_token()
    with tenancy.entered(DEFAULT_TENANT_ID):
        db.session.add(Token(name="made-elsewhere", hash=token_hash(token)))
        db.session.commit()
    assert status(anonymous, token) == 200


def test_a_revocation_in_this_process_takes_effect_at_once(app, client, anonymous, clock):
    token = issued(run(app, "tokens", "create", "okta").output)
    assert status(anonymous, token) == 200
    assert run(app, "tokens", "revoke", "okta").exit_code == 0
    assert status(anonymous, token) == 401


def test_a_revocation_by_another_process_takes_effect_within_a_second(
    app, client, anonymous, clock
):
    token = issued(run(app, "tokens", "create", "okta").output)
    assert status(anonymous, token) == 200
    with tenancy.entered(DEFAULT_TENANT_ID):  # as another worker's `flask tokens revoke` would
        db.session.execute(db.update(Token).values(revoked_at=utcnow()))
        db.session.commit()
    clock[0] += tokens.CALLER_TTL_SECONDS / 2
    assert status(anonymous, token) == 200  # this worker still remembers it
    clock[0] += tokens.CALLER_TTL_SECONDS / 2
    assert status(anonymous, token) == 401


def test_a_suspension_in_this_process_takes_effect_at_once(app, client, anonymous, clock):
    assert status(anonymous, TOKEN) == 200
    assert run(app, "tenants", "suspend", "default").exit_code == 0
    assert status(anonymous, TOKEN) == 403
    assert run(app, "tenants", "resume", "default").exit_code == 0
    assert status(anonymous, TOKEN) == 200
