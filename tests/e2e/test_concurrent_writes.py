"""Several gunicorn workers writing to one group at once lose nothing (SQLite and PostgreSQL), and
two tenants doing so at the same time, with the same userNames and group names, each end with
exactly their own data (issue 15, isolation proof)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import TOKEN
from tests.e2e.service import Reply, gunicorn, migrate, request, tenant_tokens
from tests.payloads import GROUP_URN, PATCH_URN, user_payload

WRITERS = 24


@pytest.fixture
def database(fresh_database_url: str) -> str:
    """A migrated database, as in production."""
    migrate(fresh_database_url)
    return fresh_database_url


@pytest.fixture
def service(database: str, tmp_path: Path) -> Iterator[str]:
    """gunicorn with 3 workers of 4 threads on a migrated database; yields the /scim/v2 URL."""
    with gunicorn(database, tmp_path / "gunicorn.log", workers=3, threads=4) as base:
        yield base


@pytest.fixture(params=["one tenant", "two tenants at once"])
def callers(request: pytest.FixtureRequest, database: str, service: str) -> list[str]:
    """The tokens that run a test's workload, each its own copy at the same time: the default
    tenant's alone, or two new tenants' (the same userNames and group names in both)."""
    if request.param == "one tenant":
        return [TOKEN]
    return tenant_tokens(database, "tenant-a", "tenant-b")


def at_once(callers: list[str], workload: Callable[[str], None]) -> None:
    """Run `workload` for every caller in a thread of its own, started together; re-raise the
    first failure."""
    barrier = threading.Barrier(len(callers))

    def run(token: str) -> None:
        barrier.wait(timeout=30)
        workload(token)

    with ThreadPoolExecutor(max_workers=len(callers)) as pool:
        for done in [pool.submit(run, token) for token in callers]:
            done.result()


def simultaneously(calls: list[tuple[str, str, str, Any]]) -> list[Reply]:
    """Send every (token, method, URL, body) at the same instant, each from a thread of its own."""
    barrier = threading.Barrier(len(calls))

    def send(call: tuple[str, str, str, Any]) -> Reply:
        token, *rest = call
        barrier.wait(timeout=30)
        return request(*rest, token=token)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(send, calls))


def version_number(version: str) -> int:
    """N of W/"N" (the default tenant) or W/"<tenant tag>.N" (app/etags.py)."""
    match = re.fullmatch(r'W/"(?:[0-9a-f]+\.)?(\d+)"', version)
    assert match, version
    return int(match[1])


def listed(service: str, token: str, endpoint: str) -> list[dict[str, Any]]:
    got = request("GET", f"{service}/{endpoint}?count=1000", token=token)
    assert got.status == 200, got.body
    assert got.body["totalResults"] == len(got.body["Resources"])
    return got.body["Resources"]


def test_concurrent_member_adds_to_one_group_lose_none(service, callers):
    made: dict[str, tuple[list[str], str]] = {}

    def workload(token: str) -> None:
        def post_user(n: int) -> str:
            body = user_payload(userName=f"u{n}@example.com", externalId=None)
            created = request("POST", f"{service}/Users", body, token=token)
            assert created.status == 201, created.body
            return created.body["id"]

        with ThreadPoolExecutor(max_workers=4) as pool:
            users = list(pool.map(post_user, range(WRITERS)))
        body = {"schemas": [GROUP_URN], "displayName": "Race"}
        group = request("POST", f"{service}/Groups", body, token=token)
        assert group.status == 201, group.body

        def add(user_id: str) -> int:
            body = {
                "schemas": [PATCH_URN],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
            }
            return request(
                "PATCH", f"{service}/Groups/{group.body['id']}", body, token=token
            ).status

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(add, users))
        assert statuses == [204] * WRITERS
        made[token] = (users, group.body["id"])

    at_once(callers, workload)
    for token, (users, group_id) in made.items():
        after = request("GET", f"{service}/Groups/{group_id}", token=token)
        assert after.status == 200
        assert sorted(m["value"] for m in after.body["members"]) == sorted(users)
        assert version_number(after.body["meta"]["version"]) == WRITERS + 1
        # Each tenant sees its own users and its own group "Race", nothing of the other's.
        assert sorted(u["id"] for u in listed(service, token, "Users")) == sorted(users)
        assert [g["id"] for g in listed(service, token, "Groups")] == [group_id]


def test_concurrent_patches_to_one_user_all_apply(service, callers):
    made: dict[str, str] = {}

    def workload(token: str) -> None:
        user = request("POST", f"{service}/Users", user_payload(), token=token)
        assert user.status == 201, user.body

        def add_email(n: int) -> int:
            body = {
                "schemas": [PATCH_URN],
                "Operations": [
                    {"op": "add", "path": "emails", "value": [{"value": f"alias{n}@example.com"}]}
                ],
            }
            return request("PATCH", f"{service}/Users/{user.body['id']}", body, token=token).status

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(add_email, range(16)))
        assert statuses == [200] * 16
        made[token] = user.body["id"]

    at_once(callers, workload)
    for token, user_id in made.items():
        after = request("GET", f"{service}/Users/{user_id}", token=token).body
        assert len(after["emails"]) == 17
        assert version_number(after["meta"]["version"]) == 17
        assert [u["id"] for u in listed(service, token, "Users")] == [user_id]


def test_the_same_names_raced_within_and_across_tenants(service, database):
    """Each tenant sends the same new userName and group displayName twice at the same instant
    as the other tenant does: in each tenant exactly one of its two wins (201) and the other is
    409, whatever the other tenant does."""
    callers = tenant_tokens(database, "tenant-a", "tenant-b")
    for round_ in range(4):
        user = user_payload(userName=f"same{round_}@example.com", externalId=None)
        group = {"schemas": [GROUP_URN], "displayName": f"Same {round_}"}
        calls = [
            (token, "POST", f"{service}/{endpoint}", body)
            for token in callers
            for endpoint, body in (("Users", user), ("Groups", group))
            for _ in range(2)
        ]
        replies = simultaneously(calls)
        for at in range(0, len(calls), 2):
            token, _, url, _ = calls[at]
            pair = sorted(reply.status for reply in replies[at : at + 2])
            assert pair == [201, 409], (round_, callers.index(token), url, replies[at : at + 2])
            (lost,) = (r for r in replies[at : at + 2] if r.status == 409)
            assert lost.body["scimType"] == "uniqueness", lost.body

    for token in callers:
        names = sorted(u["userName"] for u in listed(service, token, "Users"))
        assert names == [f"same{n}@example.com" for n in range(4)]
        groups = sorted(g["displayName"] for g in listed(service, token, "Groups"))
        assert groups == [f"Same {n}" for n in range(4)]


def test_concurrent_creates_through_sqlites_search_folds_all_succeed(service, database):
    """600 users and 60 groups from 24 threads on 3 workers: 1,260 search notes on SQLite, so
    some write folds the backlog into the FTS5 tables while other workers write and their
    PRAGMA optimize changes the schema (an FTS5 statement in a trigger failed then with "no
    such table", app/models.py). Every create succeeds, and on SQLite each live user, address
    and group is either in its FTS5 table or in the backlog, never in neither."""

    def create(n: int) -> int:
        if n % 11 == 0:
            body: dict[str, Any] = {"schemas": [GROUP_URN], "displayName": f"fold-{n}"}
            return request("POST", f"{service}/Groups", body).status
        body = user_payload(userName=f"fold{n}@example.com", externalId=None)
        return request("POST", f"{service}/Users", body).status

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        statuses = list(pool.map(create, range(660)))
    assert statuses == [201] * 660
    engine = sa.create_engine(database)
    try:
        with engine.connect() as connection:
            if connection.dialect.name != "sqlite":
                return

            def count(table: str, kind: str) -> tuple[int, int]:
                """(rows in the FTS5 table, notes of that kind in the backlog)"""
                backlog = "SELECT count(*) FROM search_backlog WHERE kind = ?"
                return (
                    connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar(),
                    connection.exec_driver_sql(backlog, (kind,)).scalar(),
                )

            found = [count("users_search", "user"), count("user_values_search", "value")]
            found.append(count("groups_search", "group"))
            assert [sum(pair) for pair in found] == [600, 600, 60]
            assert sum(indexed for indexed, _ in found) >= 1000  # folded at least once
    finally:
        engine.dispose()
