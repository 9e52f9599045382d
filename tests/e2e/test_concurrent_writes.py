"""Several gunicorn workers writing to one group at once lose nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.service import gunicorn, migrate, request
from tests.payloads import GROUP_URN, PATCH_URN, user_payload

WRITERS = 24


@pytest.fixture
def service(fresh_database_url: str, tmp_path: Path) -> Iterator[str]:
    """gunicorn with 3 workers of 4 threads on a migrated database; yields the /scim/v2 URL."""
    migrate(fresh_database_url)
    with gunicorn(fresh_database_url, tmp_path / "gunicorn.log", workers=3, threads=4) as base:
        yield base


def test_concurrent_member_adds_to_one_group_lose_none(service):
    users = []
    for n in range(WRITERS):
        created = request(
            "POST", f"{service}/Users", user_payload(userName=f"u{n}@example.com", externalId=None)
        )
        assert created.status == 201, created.body
        users.append(created.body["id"])
    group = request("POST", f"{service}/Groups", {"schemas": [GROUP_URN], "displayName": "Race"})
    assert group.status == 201

    def add(user_id: str) -> int:
        body = {
            "schemas": [PATCH_URN],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
        }
        return request("PATCH", f"{service}/Groups/{group.body['id']}", body).status

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(add, users))
    assert statuses == [204] * WRITERS
    after = request("GET", f"{service}/Groups/{group.body['id']}")
    assert after.status == 200
    assert sorted(m["value"] for m in after.body["members"]) == sorted(users)
    assert after.body["meta"]["version"] == f'W/"{WRITERS + 1}"'


def test_concurrent_patches_to_one_user_all_apply(service):
    user = request("POST", f"{service}/Users", user_payload())
    assert user.status == 201

    def add_email(n: int) -> int:
        body = {
            "schemas": [PATCH_URN],
            "Operations": [
                {"op": "add", "path": "emails", "value": [{"value": f"alias{n}@example.com"}]}
            ],
        }
        return request("PATCH", f"{service}/Users/{user.body['id']}", body).status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(add_email, range(16)))
    assert statuses == [200] * 16
    after = request("GET", f"{service}/Users/{user.body['id']}").body
    assert len(after["emails"]) == 17
    assert after["meta"]["version"] == 'W/"17"'
