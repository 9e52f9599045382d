#!/usr/bin/env python3
"""Group Push at scale: membership changes on a 10-member and a 100,000-member group.

    .venv/bin/python benchmarks/group_members.py                      # SQLite in a temp dir
    .venv/bin/python benchmarks/group_members.py --database-url postgresql+psycopg://...

Prints the median time to add and to remove one member on each group and their ratio (target:
big/small <= 1.3), the time and peak Python memory to GET the full big group (target: < 2 s), and
the SQL statements per list request (target: a constant, whatever the number and size of groups).

Users are seeded with bulk INSERTs (creating 100,000 through POST would only time POST); the big
group is filled the way an IdP does it, by PATCHes of 100 members. Requests go through Flask's
test client: the numbers are the service's own time, without network or gunicorn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flask_migrate  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from sqlalchemy import event  # noqa: E402

from app import create_app  # noqa: E402
from app.auth import token_hash  # noqa: E402
from app.db import db, utcnow  # noqa: E402
from app.schema.core import USER_RESOURCE  # noqa: E402
from app.store import users as users_store  # noqa: E402

TOKEN = "benchmark-token"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def seed_users(count: int) -> list[str]:
    """`count` users by the store's own bulk path (users.insert_many), 5,000 per INSERT."""
    ids: list[str] = []
    now = utcnow()
    for start in range(0, count, 5000):
        documents = [
            {"userName": f"user{n:06d}@example.com", "displayName": f"User {n}", "active": True}
            for n in range(start, min(start + 5000, count))
        ]
        ids += users_store.insert_many(USER_RESOURCE, documents, [now] * len(documents))
    db.session.commit()
    return ids


def median_ms(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


@contextmanager
def counting_statements() -> Iterator[list[tuple[int, str]]]:
    """The statements run meanwhile, each with the thread that ran it."""
    statements: list[tuple[int, str]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append((threading.get_ident(), statement))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


class Groups:
    def __init__(self, client: FlaskClient):
        self.client = client

    def create(self, name: str) -> str:
        response = self.client.post(
            "/scim/v2/Groups", json={"schemas": [GROUP_URN], "displayName": name}
        )
        assert response.status_code == 201, response.json
        return response.json["id"]

    def patch(self, gid: str, *operations: dict) -> None:
        body = {"schemas": [PATCH_URN], "Operations": list(operations)}
        response = self.client.patch(f"/scim/v2/Groups/{gid}", json=body)
        assert response.status_code == 204, response.json

    def add(self, gid: str, user_ids: list[str]) -> None:
        self.patch(gid, {"op": "add", "path": "members", "value": [{"value": u} for u in user_ids]})

    def remove(self, gid: str, user_id: str) -> None:
        self.patch(gid, {"op": "remove", "path": f'members[value eq "{user_id}"]'})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=25)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='scim-bench-')}/b.sqlite3"
    app = create_app({"DATABASE_URL": url, "SCIM_TOKEN_HASHES": token_hash(TOKEN)})
    with app.app_context():
        flask_migrate.upgrade()
        print(f"database: {db.engine.dialect.name}   big group: {args.members:,} members")
        started = time.perf_counter()
        ids = seed_users(args.members + 100)
        print(f"seeded {len(ids):,} users in {time.perf_counter() - started:.1f} s")
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        groups = Groups(client)

        small = groups.create("Ten")
        groups.add(small, ids[:10])
        big = groups.create("All Employees")
        started = time.perf_counter()
        members = ids[: args.members]
        for start in range(0, len(members), 100):
            groups.add(big, members[start : start + 100])
        elapsed = time.perf_counter() - started
        batches = -(-len(members) // 100)
        print(
            f"filled the big group with {batches:,} PATCHes of 100 members in {elapsed:.1f} s "
            f"({elapsed / batches * 1000:.1f} ms per PATCH)"
        )

        newcomer = ids[args.members]
        print()
        print(
            f"{'median of ' + str(args.repeat):<34}{'10 members':>14}{'big group':>14}{'ratio':>9}"
        )
        for label, adding in (("PATCH add one member", True), ("PATCH remove one member", False)):
            medians = []
            for gid in (small, big):
                samples = []
                for _ in range(args.repeat):
                    if not adding:
                        groups.add(gid, [newcomer])
                    started = time.perf_counter()
                    if adding:
                        groups.add(gid, [newcomer])
                    else:
                        groups.remove(gid, newcomer)
                    samples.append((time.perf_counter() - started) * 1000)
                    if adding:
                        groups.remove(gid, newcomer)
                medians.append(statistics.median(samples))
            small_ms, big_ms = medians
            print(f"{label:<34}{small_ms:>11.2f} ms{big_ms:>11.2f} ms{big_ms / small_ms:>9.2f}")

        print()
        full = median_ms(lambda: client.get(f"/scim/v2/Groups/{big}"), 3)
        tracemalloc.start()
        response = client.get(f"/scim/v2/Groups/{big}")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"GET the big group with its {len(response.json['members']):,} members: "
            f"median {full:.0f} ms, peak Python memory {peak / 2**20:.0f} MiB "
            f"(response body {len(response.data) / 2**20:.1f} MiB)"
        )
        lean = median_ms(
            lambda: client.get(f"/scim/v2/Groups/{big}?excludedAttributes=members"), args.repeat
        )
        print(f"GET the big group with excludedAttributes=members: median {lean:.2f} ms")

        print()
        print("SQL statements per request (constant = no N+1):")
        for total_groups in (20, 150):
            existing = client.get("/scim/v2/Groups?count=0").json["totalResults"]
            for n in range(existing, total_groups):
                gid = groups.create(f"Team {n:03d}")
                groups.add(gid, ids[n : n + 5])
            for query in ("count=100&excludedAttributes=members", "count=100"):
                with counting_statements() as statements:
                    listed = client.get(f"/scim/v2/Groups?{query}")
                assert listed.status_code == 200
                print(
                    f"  {total_groups:>4} groups  GET /Groups?{query:<38} "
                    f"{len(statements)} statements"
                )


if __name__ == "__main__":
    main()
