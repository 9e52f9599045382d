#!/usr/bin/env python3
"""The largest requests the limits allow, on a 100,000-member group (app/limits.py).

    .venv/bin/python benchmarks/hostile_patch.py                      # SQLite in a temp dir
    .venv/bin/python benchmarks/hostile_patch.py --database-url postgresql+psycopg://...

Target: each finishes in under 1 s, and a GET /Users sent while it runs is not held up for
longer than that. Prints, per request, the median time over --repeat runs, the SQL statements it
ran, and the slowest of the GETs a second thread sent meanwhile. Requests go through Flask's
test client: the service's own time, without network or gunicorn.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flask_migrate  # noqa: E402
from flask import Flask  # noqa: E402

from app import create_app  # noqa: E402
from app.auth import token_hash  # noqa: E402
from app.db import db  # noqa: E402
from benchmarks.group_members import (  # noqa: E402
    GROUP_URN,
    PATCH_URN,
    TOKEN,
    Groups,
    counting_statements,
    seed_users,
)


def compact(body: dict) -> str:
    return json.dumps(body, separators=(",", ":"))


def own_statements(seen: list[tuple[int, str]]) -> int:
    return sum(1 for thread, _ in seen if thread == threading.get_ident())


def client_of(app: Flask):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    return client


def reader(url: str, ready: Event, done: Event, slowest: Queue) -> None:
    """Another process (as another gunicorn worker is): GET /Users until told to stop."""
    app = create_app(
        {"DATABASE_URL": url, "SCIM_TOKEN_HASHES": token_hash(TOKEN), "SCIM_RATE_LIMIT": ""}
    )
    worst = 0.0
    with app.app_context():
        client = client_of(app)
        ready.set()
        while not done.is_set():
            started = time.perf_counter()
            assert client.get("/scim/v2/Users?count=1").status_code == 200
            worst = max(worst, (time.perf_counter() - started) * 1000)
            # A pause, as between an IdP's requests: on SQLite, where every transaction takes the
            # write lock today, reads sent back to back can starve a writer past its timeout.
            time.sleep(0.01)
    slowest.put(worst)


def while_reading(url: str, action: Callable[[], None]) -> tuple[float, float]:
    """Run `action` while another process reads. Returns (action ms, slowest GET ms)."""
    context = multiprocessing.get_context("spawn")
    ready, done, slowest = context.Event(), context.Event(), context.Queue()
    process = context.Process(target=reader, args=(url, ready, done, slowest))
    process.start()
    ready.wait()
    time.sleep(0.05)
    started = time.perf_counter()
    try:
        action()
        elapsed = (time.perf_counter() - started) * 1000
    finally:
        done.set()
        worst = slowest.get()
        process.join()
    return elapsed, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='scim-bench-')}/b.sqlite3"
    app = create_app(
        {"DATABASE_URL": url, "SCIM_TOKEN_HASHES": token_hash(TOKEN), "SCIM_RATE_LIMIT": ""}
    )
    limits = app.config["SCIM_LIMITS"]
    with app.app_context():
        flask_migrate.upgrade()
        print(f"database: {db.engine.dialect.name}   big group: {args.members:,} members")
        ids = seed_users(args.members + limits.members + limits.patch_operations)
        client = client_of(app)
        groups = Groups(client)
        big = groups.create("All Employees")
        for start in range(0, args.members, 5000):
            groups.add(big, ids[start : start + 5000])
        spare = ids[args.members :]
        newcomers = spare[: limits.patch_operations]
        # As many members as fit in the body-size limit, in the most compact JSON there is.
        many = spare[: min(limits.members, (limits.body_bytes - 200) // 49)]
        url_big = f"/scim/v2/Groups/{big}"

        def patch(*operations: dict) -> None:
            body = {"schemas": [PATCH_URN], "Operations": list(operations)}
            response = client.patch(url_big, data=compact(body), content_type="application/json")
            assert response.status_code == 204, response.json

        def put(members: list[str]) -> None:
            body = {
                "schemas": [GROUP_URN],
                "displayName": "All Employees",
                "members": [{"value": m} for m in members],
            }
            response = client.put(
                f"{url_big}?excludedAttributes=members",
                data=compact(body),
                content_type="application/json",
            )
            assert response.status_code == 200, response.json

        one_by_one = [{"op": "add", "path": "members", "value": [{"value": n}]} for n in newcomers]
        okta_removes = [{"op": "remove", "path": f'members[value eq "{n}"]'} for n in newcomers]
        entra_removes = [
            {"op": "Remove", "path": "members", "value": [{"value": n}]} for n in newcomers
        ]
        whole = [{"op": "add", "path": "members", "value": [{"value": m} for m in many]}]
        whole_removed = [{"op": "remove", "path": "members", "value": [{"value": m} for m in many]}]
        cases: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
            (
                f"PATCH {len(one_by_one):,} add operations",
                lambda: patch(*one_by_one),
                lambda: patch(*okta_removes),
            ),
            (
                f"PATCH {len(okta_removes):,} Okta removes",
                lambda: patch(*okta_removes),
                lambda: patch(*one_by_one),
            ),
            (
                f"PATCH {len(entra_removes):,} Entra removes",
                lambda: patch(*entra_removes),
                lambda: patch(*one_by_one),
            ),
            (
                f"PATCH one add of {len(many):,} members",
                lambda: patch(*whole),
                lambda: patch(*whole_removed),
            ),
        ]
        print(f"limits: {limits.patch_operations:,} operations, {limits.members:,} members\n")
        heading = f"median of {args.repeat}"
        print(f"{heading:<40}{'time':>10}{'statements':>12}{'slowest GET':>14}")
        patch(*okta_removes)  # the first case adds them
        for label, action, undo in cases:
            samples, reads = [], []
            statements = 0
            for _ in range(args.repeat):
                with counting_statements() as seen:
                    elapsed, slowest = while_reading(url, action)
                statements = own_statements(seen)
                samples.append(elapsed)
                reads.append(slowest)
                undo()
            print(
                f"{label:<40}{statistics.median(samples):>7.0f} ms{statements:>12}"
                f"{statistics.median(reads):>11.0f} ms"
            )
        # PUT: the whole member list replaced, 100,000 out and the body's limit in.
        elapsed, slowest = while_reading(url, lambda: put(many))
        print(
            f"{f'PUT {len(many):,} members over {args.members:,}':<40}{elapsed:>7.0f} ms"
            f"{'':>12}{slowest:>11.0f} ms"
        )


if __name__ == "__main__":
    main()
