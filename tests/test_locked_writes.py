"""Writes to one user or group (store/locked.py): a write that lost an optimistic race is retried
from a fresh read, then answered 409; a change that changes nothing writes nothing; a unique index
is answered by its name (app.db.violated_constraint), and no other constraint as a taken name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from app.db import db, violated_constraint
from app.models import Group, GroupMember, Token, User
from app.store import locked
from tests.conftest import BASE, statements
from tests.payloads import GROUP_URN, error, patch_payload, user_payload

RENAME = patch_payload({"op": "replace", "path": "displayName", "value": "Renamed"})


@pytest.fixture
def rivals(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str, int], None]:
    """Make the next `count` writes to a row find that another writer changed it after it was read.

    With the row locked, a real rival waits; the same transaction bumping the version just
    before the row's UPDATE is what its `WHERE version = <read>` then sees (StaleDataError):
    before the commit for a row the ORM writes (its flush), before `locked.write` for one
    written by statement (a user's PUT and PATCH). One bump per attempt, whichever comes first.
    """

    def arrange(table: str, row_id: str, count: int) -> None:
        left = [count]
        commit, write = locked.commit, locked.write

        def rival() -> None:
            if left[0]:
                left[0] -= 1
                db.session.connection().execute(
                    text(f"UPDATE {table} SET version = version + 1 WHERE id = :id"), {"id": row_id}
                )

        def commit_after_a_rival(session: Any) -> None:
            rival()
            commit(session)

        def write_after_a_rival(statement: Any, parameters: dict[str, Any]) -> None:
            rival()
            write(statement, parameters)

        monkeypatch.setattr(locked, "commit", commit_after_a_rival)
        monkeypatch.setattr(locked, "write", write_after_a_rival)

    return arrange


def _write(client: Any, kind: str, method: str, item: dict[str, Any], member_id: str) -> Any:
    url = f"{BASE}/{kind}/{item['id']}"
    if method == "delete":
        return client.delete(url)
    if kind == "Users":
        body = user_payload(displayName="Renamed") if method == "put" else RENAME
    elif method == "put":
        body = {"schemas": [GROUP_URN], "displayName": "Renamed", "members": [{"value": member_id}]}
    else:  # a membership change only: the group's row is updated for the version alone
        body = patch_payload({"op": "add", "path": "members", "value": [{"value": member_id}]})
    return client.open(url, method=method.upper(), json=body)


@pytest.mark.parametrize("kind", ["Users", "Groups"])
@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_write_that_lost_a_race_is_applied_again_from_a_fresh_read(
    client, create_user, create_group, rivals, kind, method
):
    member = create_user(userName="member@example.com")
    item = create_user() if kind == "Users" else create_group()
    rivals(kind.lower(), item["id"], 4)  # one fewer than the attempts
    response = _write(client, kind, method, item, member["id"])
    assert response.status_code in (200, 204), response.json
    after = client.get(f"{BASE}/{kind}/{item['id']}")
    if method == "delete":
        assert after.status_code == 404
        return
    # Applied once, on the version the lost attempts left as they found it.
    assert after.headers["ETag"] == 'W/"2"'
    if kind == "Users":
        assert after.json["displayName"] == "Renamed"
    else:
        assert [m["value"] for m in after.json["members"]] == [member["id"]]


@pytest.mark.parametrize("kind", ["Users", "Groups"])
@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_write_that_loses_every_attempt_is_409_and_changes_nothing(
    client, create_user, create_group, rivals, kind, method
):
    member = create_user(userName="member@example.com")
    item = create_user() if kind == "Users" else create_group()
    rivals(kind.lower(), item["id"], locked.WRITE_ATTEMPTS)
    response = _write(client, kind, method, item, member["id"])
    noun = kind.removesuffix("s")
    assert response.status_code == 409
    assert response.json == error(
        409, f"{noun} {item['id']} is being changed concurrently; retry the request"
    )
    after = client.get(f"{BASE}/{kind}/{item['id']}")
    assert (after.status_code, after.headers["ETag"]) == (200, 'W/"1"')
    assert after.json["displayName"] == item["displayName"]
    assert after.json.get("members", []) == []


def test_if_match_is_checked_against_the_version_read_again_after_a_lost_race(
    client, create_user, rivals
):
    user = create_user()
    url = f"{BASE}/Users/{user['id']}"
    rivals("users", user["id"], 1)
    response = client.patch(url, json=RENAME, headers={"If-Match": 'W/"1"'})
    assert (response.status_code, response.headers["ETag"]) == (200, 'W/"2"')
    stale = client.patch(url, json=RENAME, headers={"If-Match": 'W/"1"'})
    assert stale.json == error(
        412, f'User {user["id"]} has changed: its ETag is now W/"2"; read it again'
    )


# --- A change that changes nothing ---------------------------------------------------------


def test_writes_that_change_nothing_keep_the_version_and_run_no_update(
    client, create_user, create_group
):
    user = create_user(displayName="Same")
    member = create_user(userName="member@example.com")
    group = create_group(members=[{"value": member["id"]}])
    user_url, group_url = f"{BASE}/Users/{user['id']}", f"{BASE}/Groups/{group['id']}"
    same_name = patch_payload({"op": "replace", "path": "displayName", "value": "Same"})
    add_again = patch_payload({"op": "add", "path": "members", "value": [{"value": member["id"]}]})
    with statements() as seen:
        responses = [
            client.put(user_url, json=user_payload(displayName="Same")),
            client.patch(user_url, json=same_name),
            client.patch(group_url, json=add_again),
        ]
    assert [r.headers["ETag"] for r in responses] == ['W/"1"'] * 3
    assert not [s for s in seen if s.lstrip().upper().startswith("UPDATE")]


# --- Unique indexes, by name ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_a_display_name_taken_is_409_uniqueness(client, create_group, method):
    # The unique index of live names is the only check: no lookup of the name runs first.
    create_group("Sales")
    other = create_group("Support")
    url = f"{BASE}/Groups" if method == "post" else f"{BASE}/Groups/{other['id']}"
    body = {
        "post": {"schemas": [GROUP_URN], "displayName": "SALES"},
        "put": {"schemas": [GROUP_URN], "displayName": "SALES"},
        "patch": patch_payload({"op": "replace", "path": "displayName", "value": "SALES"}),
    }[method]
    response = client.open(url, method=method.upper(), json=body)
    assert response.json == error(409, "displayName 'SALES' is already taken", "uniqueness")
    assert client.get(f"{BASE}/Groups/{other['id']}").json["displayName"] == "Support"


@pytest.fixture
def unique_external_id(app: Any) -> Iterator[None]:
    """A unique index the service does not know: as a DBA might add one."""
    _fresh_connections()
    with db.engine.begin() as connection:
        connection.execute(text("CREATE UNIQUE INDEX uq_test_external_id ON users (external_id)"))
    yield
    db.session.remove()  # its open transaction would keep PostgreSQL's DROP INDEX waiting
    _fresh_connections()
    with db.engine.begin() as connection:
        connection.execute(text("DROP INDEX uq_test_external_id"))


def _fresh_connections() -> None:
    """DDL on a connection that read the schema now: closes the pooled ones (SQLite).

    A SQLite connection caches the schema, and checks a CREATE or DROP against that cache when
    preparing it, before anything notices another connection changed the schema since: with two
    pooled connections (left by any test that wrote from threads), the DROP INDEX of one test
    ran on one, and the next test's CREATE INDEX on the other failed with "index
    uq_test_external_id already exists". Statements that read or write rows check the schema
    as they run, so the service, which runs no DDL while it serves, is not affected.
    """
    if db.engine.dialect.name == "sqlite":
        db.engine.dispose()


@pytest.mark.usefixtures("unique_external_id")
@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_another_unique_index_is_not_answered_as_a_taken_username(client, create_user, method):
    create_user(userName="first@example.com", externalId="ext-1")
    other = create_user(userName="second@example.com", externalId="ext-2")
    url = f"{BASE}/Users" if method == "post" else f"{BASE}/Users/{other['id']}"
    body = {
        "post": user_payload(userName="third@example.com", externalId="ext-1"),
        "put": user_payload(userName="second@example.com", externalId="ext-1"),
        "patch": patch_payload({"op": "replace", "path": "externalId", "value": "ext-1"}),
    }[method]
    # Not the client's doing: raised as it is, which the service answers 500 and logs.
    with pytest.raises(IntegrityError) as raised:
        client.open(url, method=method.upper(), json=body)
    name = violated_constraint(raised.value)
    assert name == ("uq_test_external_id" if db.engine.dialect.name == "postgresql" else None)
    listed = client.get(f"{BASE}/Users", query_string={"filter": 'externalId eq "ext-1"'}).json
    assert [u["userName"] for u in listed["Resources"]] == ["first@example.com"]


def _violation(rows: list[tuple[type, dict[str, Any]]]) -> IntegrityError:
    """The IntegrityError the database raises for inserting `rows` in turn; nothing is kept."""
    with db.engine.connect() as connection:
        transaction = connection.begin()
        try:
            for model, values in rows:
                connection.execute(insert(model), values)
        except IntegrityError as e:
            return e
        finally:
            transaction.rollback()
    raise AssertionError("no constraint was violated")


def _user(user_id: str, name: str | None) -> tuple[type, dict[str, Any]]:
    key = name.casefold() if name else "x"
    return User, {
        "id": user_id,
        "user_name": name,
        "user_name_key": key,
        "document": {},
        "document_key": {},
        "version": 1,
    }


def _group(group_id: str, name: str) -> tuple[type, dict[str, Any]]:
    values = {"id": group_id, "display_name": name, "display_name_key": name.casefold()}
    return Group, values


def _member(group_id: str) -> tuple[type, dict[str, Any]]:
    return GroupMember, {"group_id": group_id, "member_id": "m", "member_type": "User"}


def _token(name: str) -> tuple[type, dict[str, Any]]:
    return Token, {"name": name, "hash": "same"}


@pytest.mark.parametrize(
    "rows, sqlite_name, postgresql_name",
    [
        pytest.param(
            [_user("u1", "ada"), _user("u2", "ADA")],
            "uq_users_live_user_name",
            "uq_users_live_user_name",
            id="username",
        ),
        pytest.param(
            [_group("g1", "Sales"), _group("g2", "sales")],
            "uq_groups_live_display_name",
            "uq_groups_live_display_name",
            id="group-display-name",
        ),
        pytest.param(
            [_token("a"), _token("b")], "uq_tokens_hash", "uq_tokens_hash", id="token-hash"
        ),
        pytest.param(
            [_user("u1", "a"), _user("u1", "b")], "pk_users", "pk_users", id="primary-key"
        ),
        pytest.param(
            [_group("g1", "A"), _member("g1"), _member("g1")],
            "pk_group_members",
            "pk_group_members",
            id="primary-key-of-two-columns",
        ),
        pytest.param(
            [_member("missing")],
            None,  # SQLite says "FOREIGN KEY constraint failed", naming none
            "fk_group_members_tenant_id_groups",
            id="foreign-key",
        ),
        pytest.param([_user("u1", None)], None, None, id="not-null"),
    ],
)
def test_violated_constraint_names_the_index_on_both_databases(
    client, rows, sqlite_name, postgresql_name
):
    expected = postgresql_name if db.engine.dialect.name == "postgresql" else sqlite_name
    assert violated_constraint(_violation(rows)) == expected
