"""PostgreSQL backends terminated again and again under concurrent writers (gunicorn, 3 x 4).

Six writers create users and add each new user to a group while another connection runs
pg_terminate_backend on every backend of the service's database every 0.3 s. Every answer is a
success or a SCIM 503 with Retry-After, never a 500 and never HTML; once the terminations stop,
the same processes answer again; every acknowledged write is there, and no write answered 503
happened (an IdP retries a 503: a create that had committed would come back 409).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.databases import postgres_admin_url
from tests.e2e.service import Reply, gunicorn, migrate, request
from tests.payloads import ERROR_URN, GROUP_URN, PATCH_URN, user_payload

WRITERS = 6
GROUPS = 3  # few, so that member adds queue on each other's row locks when a backend dies
KILLING_SECONDS = 12
KILL_EVERY = 0.3
RECOVERY_SECONDS = 15  # generous: pre-ping should make the first request after the faults succeed

TERMINATE = text(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = :database AND pid <> pg_backend_pid()"
)


@dataclass(frozen=True)
class Write:
    kind: str  # "create" (POST /Users) or "add" (PATCH /Groups/{group} adding member)
    user_name: str
    reply: Reply
    group: str | None = None
    member: str | None = None


@pytest.fixture
def service(fresh_database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """gunicorn on a migrated scratch database; yields (/scim/v2 URL, database name)."""
    migrate(fresh_database_url)
    with gunicorn(fresh_database_url, tmp_path / "gunicorn.log", workers=3, threads=4) as base:
        yield base, make_url(fresh_database_url).database or ""


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_terminated_backends_lose_no_acknowledged_write_and_answer_only_503(service):
    base, database = service
    groups = [_create_group(base, f"faults-{n}") for n in range(GROUPS)]

    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=WRITERS + 1) as pool:
        killer = pool.submit(_terminate_backends, database, stop)
        writers = [pool.submit(_write, base, n, groups, stop) for n in range(WRITERS)]
        time.sleep(KILLING_SECONDS)
        stop.set()
        terminated = killer.result()
        writes = [w for writer in writers for w in writer.result()]
    assert terminated > 0, "no backend was terminated: the test proved nothing"

    problems = [p for w in writes if (p := _problem(w))]
    _recover(base)
    problems += _after_the_faults(base, writes, groups)
    summary = Counter((w.kind, w.reply.status) for w in writes)
    assert problems == [], (
        f"{len(problems)} problems in {len(writes)} writes ({dict(summary)}), "
        f"{terminated} backends terminated:\n" + "\n".join(problems[:40])
    )


def _terminate_backends(database: str, stop: threading.Event) -> int:
    """Terminate every backend of the service's database every KILL_EVERY s; how many in all."""
    admin_url = postgres_admin_url()
    assert admin_url is not None
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    terminated = 0
    try:
        with admin.connect() as connection:
            while not stop.wait(KILL_EVERY):
                terminated += len(connection.execute(TERMINATE, {"database": database}).all())
    finally:
        admin.dispose()
    return terminated


def _write(base: str, writer: int, groups: list[str], stop: threading.Event) -> list[Write]:
    """Create users with unique names, adding each one created to a group, until told to stop."""
    writes: list[Write] = []
    n = 0
    while not stop.is_set():
        user_name = f"w{writer}-{n}-{uuid.uuid4().hex[:8]}@example.com"
        created = request("POST", f"{base}/Users", _user(user_name))
        writes.append(Write("create", user_name, created))
        if created.status == 201:
            group = groups[(writer + n) % len(groups)]
            added = request("PATCH", f"{base}/Groups/{group}", _add(created.body["id"]))
            writes.append(Write("add", user_name, added, group, created.body["id"]))
        n += 1
    return writes


def _problem(write: Write) -> str | None:
    """What is wrong with one answer given during the faults; None when it is allowed."""
    reply = write.reply
    what = f"{write.kind} {write.user_name}: {reply.status}"
    if write.kind == "create" and reply.status == 201:
        body_name = reply.body.get("userName") if isinstance(reply.body, dict) else None
        return None if body_name == write.user_name else f"{what} with body {reply.raw[:200]!r}"
    if write.kind == "add" and reply.status in (200, 204):
        return None
    if reply.status == 0:
        return f"{what} (no answer: {reply.raw.decode()})"
    if reply.media_type != "application/scim+json":
        return f"{what} as {reply.media_type!r}: {reply.raw[:200]!r}"
    if reply.status != 503:
        return f"{what} {reply.body}"
    body = reply.body
    if not (
        isinstance(body, dict)
        and set(body) == {"schemas", "status", "detail"}
        and body["schemas"] == [ERROR_URN]
        and body["status"] == "503"
        and isinstance(body["detail"], str)
        and body["detail"]
    ):
        return f"{what} with body {reply.raw[:200]!r}"
    if not reply.headers.get("Retry-After", "").isdigit():
        return f"{what} without a Retry-After in seconds: {reply.headers}"
    return None


def _recover(base: str) -> None:
    """The same processes answer again, by themselves; then every request succeeds."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while (probe := request("GET", f"{base}/Users?count=1")).status != 200:
        assert time.monotonic() < deadline, f"no recovery: {probe.status} {probe.raw!r}"
        time.sleep(0.2)

    def create(n: int) -> Reply:
        return request("POST", f"{base}/Users", _user(f"after-{n}-{uuid.uuid4().hex[:8]}@x.org"))

    with ThreadPoolExecutor(max_workers=12) as pool:  # as many as gunicorn's threads
        replies = list(pool.map(create, range(24)))
    assert [r.status for r in replies] == [201] * len(replies), [r.raw for r in replies]


def _after_the_faults(base: str, writes: list[Write], groups: list[str]) -> list[str]:
    """Acknowledged writes are all there; writes answered 503 are not."""
    problems = []
    users = _all_users(base)
    for write in writes:
        if write.kind != "create":
            continue
        if write.reply.status == 201 and users.get(write.user_name) != write.reply.body["id"]:
            problems.append(
                f"create {write.user_name} answered 201 with id {write.reply.body['id']}, "
                f"but afterwards the user is {users.get(write.user_name)}"
            )
        if write.reply.status == 503:
            filter_ = quote(f'userName eq "{write.user_name}"')
            found = request("GET", f"{base}/Users?filter={filter_}")
            assert found.status == 200, found.raw
            if found.body["totalResults"] != 0:
                ids = [u["id"] for u in found.body["Resources"]]
                problems.append(f"create {write.user_name} answered 503, but it was created: {ids}")
    for group in groups:
        got = request("GET", f"{base}/Groups/{group}")
        assert got.status == 200, got.raw
        members = {m["value"] for m in got.body.get("members", [])}
        for write in writes:
            if write.kind != "add" or write.group != group:
                continue
            if write.reply.status in (200, 204) and write.member not in members:
                problems.append(f"add {write.member} to {group} answered 204, but it is lost")
            if write.reply.status == 503 and write.member in members:
                problems.append(f"add {write.member} to {group} answered 503, but it happened")
    return problems


def _all_users(base: str) -> dict[str, str]:
    """userName -> id of every live user, page by page through the API."""
    users: dict[str, str] = {}
    start = 1
    while True:
        page = request("GET", f"{base}/Users?attributes=userName&count=200&startIndex={start}")
        assert page.status == 200, page.raw
        users.update((u["userName"], u["id"]) for u in page.body["Resources"])
        start += page.body["itemsPerPage"]
        if not page.body["Resources"] or start > page.body["totalResults"]:
            return users


def _create_group(base: str, display_name: str) -> str:
    created = request(
        "POST", f"{base}/Groups", {"schemas": [GROUP_URN], "displayName": display_name}
    )
    assert created.status == 201, created.raw
    return created.body["id"]


def _user(user_name: str) -> dict:
    return user_payload(userName=user_name, externalId=None)


def _add(member: str) -> dict:
    return {
        "schemas": [PATCH_URN],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}],
    }
