"""No interleaving leaves a membership that points at a tombstoned user or group.

A DELETE of a user (or of a group) races PATCHes that add it to other groups, sent through several
gunicorn workers at the same instant, round after round. After every round, whatever each request
answered: no group_members row points at a deleted user or group, read straight from the database
and through the API (the members.value filter finds no group for the deleted id), and every answer
is one the RFC allows for what happened. SQLite runs one writer at a time; PostgreSQL must hold the
same invariant under its row locks. Two tenants running their rounds at the same time hold it
too, each within its own directory (issue 15).
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.conftest import TOKEN
from tests.e2e.service import Reply, gunicorn, migrate, request, tenant_tokens
from tests.payloads import ERROR_URN, GROUP_URN, PATCH_URN, user_payload

ROUNDS = {"sqlite": 3, "postgresql": 15}
ADDS = 10  # concurrent PATCHes racing each DELETE, one group each
NOT_A_MEMBER = "not an existing user or group"
Call = tuple[str, str, Any]  # method, URL, JSON body

# Memberships that outlive a tombstone, at either end, or point at nothing at all.
DANGLING = text(
    """
    SELECT m.group_id, m.member_id, m.member_type
    FROM group_members m
    JOIN groups parent ON parent.id = m.group_id
    LEFT JOIN users u ON u.id = m.member_id
    LEFT JOIN groups g ON g.id = m.member_id
    WHERE parent.deleted_at IS NOT NULL
       OR u.deleted_at IS NOT NULL
       OR g.deleted_at IS NOT NULL
       OR (u.id IS NULL AND g.id IS NULL)
    ORDER BY m.group_id, m.member_id
    """
)


@dataclass(frozen=True)
class Service:
    base: str  # /scim/v2 of gunicorn
    database: Engine  # straight to the service's database
    rounds: int
    url: str  # the database's URL
    token: str = TOKEN  # whose requests: the default tenant's token, or another tenant's

    def request(self, method: str, url: str, body: Any = None) -> Reply:
        return request(method, url, body, token=self.token)

    def as_tenant(self, token: str) -> Service:
        return dataclasses.replace(self, token=token)

    def post_user(self) -> str:
        name = f"{uuid.uuid4().hex[:12]}@example.com"
        created = self.request("POST", f"{self.base}/Users", user_payload(userName=name))
        assert created.status == 201, created.body
        return created.body["id"]

    def post_groups(self, count: int) -> list[str]:
        def post(_: int) -> str:
            body = {"schemas": [GROUP_URN], "displayName": f"race-{uuid.uuid4().hex[:12]}"}
            created = self.request("POST", f"{self.base}/Groups", body)
            assert created.status == 201, created.body
            return created.body["id"]

        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(post, range(count)))

    def add_member(self, group_id: str, member_id: str) -> Reply:
        return self.request(*self.adding(group_id, member_id))

    def adding(self, group_id: str, member_id: str) -> Call:
        body = {
            "schemas": [PATCH_URN],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": member_id}]}],
        }
        return "PATCH", f"{self.base}/Groups/{group_id}", body

    def members(self, group_id: str) -> set[str]:
        got = self.request("GET", f"{self.base}/Groups/{group_id}")
        assert got.status == 200, got.body
        return {m["value"] for m in got.body.get("members", [])}

    def groups_listing(self, member_id: str) -> dict[str, Any]:
        filter_ = f'members.value eq "{member_id}"'
        got = self.request("GET", f"{self.base}/Groups?filter={quote(filter_)}")
        assert got.status == 200, got.body
        return got.body

    def dangling(self) -> list[tuple[str, str, str]]:
        with self.database.connect() as connection:
            return [tuple(row) for row in connection.execute(DANGLING)]


@pytest.fixture
def service(fresh_database_url: str, tmp_path: Path) -> Iterator[Service]:
    """gunicorn with 4 workers of 4 threads: every racing request finds a thread at once."""
    migrate(fresh_database_url)
    kind = "sqlite" if fresh_database_url.startswith("sqlite") else "postgresql"
    database = create_engine(fresh_database_url)
    try:
        with gunicorn(fresh_database_url, tmp_path / "gunicorn.log", workers=4, threads=4) as base:
            yield Service(base, database, ROUNDS[kind], fresh_database_url)
    finally:
        database.dispose()


def test_deleting_a_user_while_groups_add_it_leaves_no_membership(service: Service):
    race_user_deletes(service)


def test_deleting_a_group_while_groups_nest_it_leaves_no_membership(service: Service):
    race_group_deletes(service)


@pytest.mark.parametrize("race", ["user-deletes", "group-deletes"])
def test_two_tenants_racing_at_once_leave_no_membership(service: Service, race: str):
    """Both tenants run the same race at the same time; each ends with only its own users and
    groups, and no membership of a tombstone anywhere."""
    run_race = {"user-deletes": race_user_deletes, "group-deletes": race_group_deletes}[race]
    tenants = [service.as_tenant(t) for t in tenant_tokens(service.url, "tenant-a", "tenant-b")]
    rounds = max(service.rounds // 2, 2)
    barrier = threading.Barrier(len(tenants))

    def run(tenant: Service) -> None:
        barrier.wait(timeout=30)
        run_race(tenant, rounds)

    with ThreadPoolExecutor(max_workers=len(tenants)) as pool:
        for done in [pool.submit(run, tenant) for tenant in tenants]:
            done.result()
    # What each tenant lists is its own: the other tenant's ids appear nowhere in it.
    seen = [_listed_ids(tenant) for tenant in tenants]
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def _listed_ids(service: Service) -> set[str]:
    ids: set[str] = set()
    for endpoint in ("Users", "Groups"):
        got = service.request("GET", f"{service.base}/{endpoint}?count=1000")
        assert got.status == 200, got.body
        for resource in got.body["Resources"]:
            ids.add(resource["id"])
            ids.update(m["value"] for m in resource.get("members", []))
            ids.update(g["value"] for g in resource.get("groups", []))
    return ids


def race_user_deletes(service: Service, rounds: int | None = None) -> None:
    for round_ in range(rounds or service.rounds):
        user = service.post_user()
        groups = service.post_groups(ADDS + 1)
        raced, bystander = groups[:ADDS], groups[ADDS]
        # Memberships the DELETE must remove while the adds run: one in a raced group, one not.
        for group in (raced[0], bystander):
            assert service.add_member(group, user).status == 204

        deleted, *adds = _at_once(
            service,
            ("DELETE", f"{service.base}/Users/{user}", None),
            *(service.adding(group, user) for group in raced),
        )

        where = f"round {round_}"
        gone = _check_delete(deleted, where)
        for group, added in zip(raced, adds, strict=True):
            _check_add(added, user, gone=gone, where=f"{where}, add to {group}")
        _check_invariant(service, user, gone=gone, where=where)
        if gone:
            assert service.request("GET", f"{service.base}/Users/{user}").status == 404, where
            for group in groups:
                assert user not in service.members(group), f"{where}: {group} lists {user}"
        else:
            for group, added in zip(raced, adds, strict=True):
                if added.status in (200, 204):
                    assert user in service.members(group), f"{where}: add to {group} lost"


def race_group_deletes(service: Service, rounds: int | None = None) -> None:
    for round_ in range(rounds or service.rounds):
        child, bystander, *parents = service.post_groups(ADDS + 2)
        user, newcomer = service.post_user(), service.post_user()
        # Memberships the DELETE must remove both ways: its own member, and its place in a parent.
        assert service.add_member(child, user).status == 204
        assert service.add_member(bystander, child).status == 204

        deleted, *replies = _at_once(
            service,
            ("DELETE", f"{service.base}/Groups/{child}", None),
            *(service.adding(parent, child) for parent in parents),
            # Writes to the group being deleted: done before the DELETE, or 404 after it.
            service.adding(child, newcomer),
            service.adding(child, user),
        )
        nests, (own_add, own_readd) = replies[:ADDS], replies[ADDS:]

        where = f"round {round_}"
        gone = _check_delete(deleted, where)
        for parent, nested in zip(parents, nests, strict=True):
            _check_add(nested, child, gone=gone, where=f"{where}, nest in {parent}")
        for added in (own_add, own_readd):
            _check_write_to(added, gone=gone, where=f"{where}, add to the deleted group")
        _check_invariant(service, child, gone=gone, where=where)
        if gone:
            assert service.request("GET", f"{service.base}/Groups/{child}").status == 404, where
            for group in (bystander, *parents):
                assert child not in service.members(group), f"{where}: {group} lists {child}"
        else:
            for parent, nested in zip(parents, nests, strict=True):
                if nested.status in (200, 204):
                    assert child in service.members(parent), f"{where}: nest in {parent} lost"


def _at_once(service: Service, *calls: Call) -> list[Reply]:
    """Send every request at the same instant (a barrier), each from a thread of its own."""
    barrier = threading.Barrier(len(calls))

    def run(call: Call) -> Reply:
        barrier.wait(timeout=30)
        return service.request(*call)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def _check_delete(deleted: Reply, where: str) -> bool:
    """The racing DELETE: 204, or 409 (retry) with a SCIM body; True when it took effect."""
    if deleted.status == 409:
        _check_error(deleted, 409, where)
        return False
    assert deleted.status == 204, f"{where}: DELETE answered {deleted.status} {deleted.raw!r}"
    return True


def _check_add(added: Reply, member: str, *, gone: bool, where: str) -> None:
    """An add racing the DELETE of its member: done, or 400 once the member is gone."""
    if added.status in (200, 204):
        return
    if added.status == 400 and gone:
        _check_error(added, 400, where)
        assert added.body.get("scimType") == "invalidValue", f"{where}: {added.body}"
        assert NOT_A_MEMBER in added.body["detail"] and member in added.body["detail"], where
        return
    if added.status == 409:
        _check_error(added, 409, where)
        return
    pytest.fail(f"{where}: PATCH answered {added.status} {added.raw!r} (member deleted: {gone})")


def _check_write_to(added: Reply, *, gone: bool, where: str) -> None:
    """A write to the group being deleted: done before it, or 404 after it."""
    if added.status in (200, 204):
        return
    if added.status == 404 and gone:
        _check_error(added, 404, where)
        return
    if added.status == 409:
        _check_error(added, 409, where)
        return
    pytest.fail(f"{where}: PATCH answered {added.status} {added.raw!r} (group deleted: {gone})")


def _check_error(reply: Reply, status: int, where: str) -> None:
    assert reply.media_type == "application/scim+json", f"{where}: {reply.headers} {reply.raw!r}"
    assert reply.body["schemas"] == [ERROR_URN], f"{where}: {reply.body}"
    assert reply.body["status"] == str(status), f"{where}: {reply.body}"
    assert isinstance(reply.body.get("detail"), str), f"{where}: {reply.body}"


def _check_invariant(service: Service, member: str, *, gone: bool, where: str) -> None:
    """No membership of a tombstone: in the database, and as the API's filter sees it."""
    dangling = service.dangling()
    found: list[str] = []
    if gone:
        listing = service.groups_listing(member)
        found = [g["id"] for g in listing["Resources"]]
        assert listing["totalResults"] == len(found), f"{where}: {listing}"
    assert (dangling, found) == ([], []), (
        f"{where}: group_members rows of deleted users or groups (group, member, type): "
        f"{dangling}; groups the filter members.value eq {member!r} finds: {found}"
    )
