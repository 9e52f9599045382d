#!/usr/bin/env python3
"""POST /Bulk against the same work sent one request at a time (issue 18), on both databases.

    .venv/bin/python benchmarks/bulk_requests.py                      # SQLite, then PostgreSQL
    .venv/bin/python benchmarks/bulk_requests.py --users 200 --repeats 1   # a check of the harness
    .venv/bin/python benchmarks/bulk_requests.py --databases sqlite

For each database kind the service gets a fresh database (a SQLite file in a temp dir; a
PostgreSQL scratch database made on --postgres-url, a superuser's, dropped at the end), `flask db
upgrade`, and runs as shipped: gunicorn with the repository's gunicorn.conf.py (2 workers x 4
threads), the access log to /dev/null, one bearer token, and SCIM_RATE_LIMIT far above the load
(benchmarks/floor.py starts it the same way).

The work: --users users (Okta's create body: userName, name, displayName, emails, externalId,
active) and one group holding all of them.

- one by one: --users POST /Users, then one POST /Groups listing every new id as a member,
  sent in sequence over one keep-alive connection (http.client);
- bulk: one POST /Bulk of the same --users + 1 operations, the group first and its members by
  bulkId (so the service runs each user's POST before it), over the same kind of connection.

Each is timed end to end (request sent to response read), --repeats times, alternating which
goes first, with names of their own each time; the table shows the median and the ratio.

Then, on SQLite only, the largest Bulk the service allows (bulk.maxOperations from
/ServiceProviderConfig: maxOperations - 1 users and the group, checked to fit maxPayloadSize)
runs while two other connections keep sending, one GET /Users/{id} and one a lookup by
userName, back to back, and a third a PATCH of one user now and then: it prints how many of
each answered during the Bulk, their median and slowest times, and whether any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floor import (  # noqa: E402  (benchmarks/floor.py: how the service is started as shipped)
    DEFAULT_POSTGRES,
    TOKEN,
    Server,
    children,
    cpu_seconds,
    migrate_service,
    start_service,
)
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
BULK_URN = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PREFIX = "/scim/v2"


def user(tag: str, n: int) -> dict[str, Any]:
    """What Okta sends to create a user."""
    name = f"user.{tag}.{n}@example.com"
    return {
        "schemas": [USER_URN],
        "userName": name,
        "externalId": f"ext-{tag}-{n}",
        "name": {"givenName": "Ada", "familyName": f"Lovelace{n}"},
        "displayName": f"Ada Lovelace {n}",
        "emails": [{"value": name, "type": "work", "primary": True}],
        "active": True,
    }


class Connection:
    """One keep-alive HTTP/1.1 connection to the service, with the bench token."""

    def __init__(self, origin: str) -> None:
        parsed = urllib.parse.urlsplit(origin)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/scim+json"
        self.connection.request(method, PREFIX + path, body=data, headers=headers)
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw.strip() else None)

    def close(self) -> None:
        self.connection.close()


def expect(status: int, body: Any, wanted: int, what: str) -> Any:
    if status != wanted:
        sys.exit(f"{what}: {status} (expected {wanted}): {json.dumps(body)[:500]}")
    return body


def workers_cpu(server: Server) -> float:
    """utime + stime of the gunicorn workers so far (benchmarks/floor.py reads them alike)."""
    return sum(cpu_seconds(pid) or 0.0 for pid in children(server.process.pid))


def one_by_one(server: Server, users: int, tag: str) -> float:
    connection = Connection(server.origin)
    started = time.perf_counter()
    ids = []
    for n in range(users):
        status, body = connection.call("POST", "/Users", user(tag, n))
        ids.append(expect(status, body, 201, "POST /Users")["id"])
    group = {
        "schemas": [GROUP_URN],
        "displayName": f"Everyone {tag}",
        "members": [{"value": user_id} for user_id in ids],
    }
    expect(*connection.call("POST", "/Groups", group), 201, "POST /Groups")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def bulk_body(users: int, tag: str) -> dict[str, Any]:
    group = {
        "schemas": [GROUP_URN],
        "displayName": f"Everyone {tag}",
        "members": [{"value": f"bulkId:u{n}"} for n in range(users)],
    }
    operations = [{"method": "POST", "path": "/Groups", "bulkId": "everyone", "data": group}]
    operations += [
        {"method": "POST", "path": "/Users", "bulkId": f"u{n}", "data": user(tag, n)}
        for n in range(users)
    ]
    return {"schemas": [BULK_URN], "Operations": operations}


def in_bulk(server: Server, users: int, tag: str) -> float:
    connection = Connection(server.origin)
    body = bulk_body(users, tag)
    started = time.perf_counter()
    status, answer = connection.call("POST", "/Bulk", body)
    elapsed = time.perf_counter() - started
    connection.close()
    results = expect(status, answer, 200, "POST /Bulk")["Operations"]
    failed = [r for r in results if r["status"] != "201"]
    if len(results) != users + 1 or failed:
        sys.exit(f"POST /Bulk: {len(results)} results, failures: {failed[:3]}")
    return elapsed


# --- reads while the largest Bulk runs -----------------------------------------------------------


def largest_bulk_with_readers(server: Server) -> dict[str, Any]:
    connection = Connection(server.origin)
    config = expect(*connection.call("GET", "/ServiceProviderConfig"), 200, "config")["bulk"]
    status, seeded = connection.call("POST", "/Users", user("reader", 0))
    seeded = expect(status, seeded, 201, "POST /Users")
    body = bulk_body(config["maxOperations"] - 1, "largest")
    size = len(json.dumps(body).encode())
    if size > config["maxPayloadSize"]:
        sys.exit(
            f"the largest Bulk is {size} bytes, above maxPayloadSize {config['maxPayloadSize']}"
        )
    running = threading.Event()
    done = threading.Event()
    seen: dict[str, list[float]] = {"GET /Users/{id}": [], "GET /Users?filter": [], "PATCH": []}
    failures: list[str] = []
    lookup = "/Users?filter=" + urllib.parse.quote(f'userName eq "{seeded["userName"]}"')
    patch = {
        "schemas": [PATCH_URN],
        "Operations": [{"op": "replace", "path": "nickName", "value": "reader"}],
    }

    def keep_sending(label: str, method: str, path: str, wanted: int, body: Any, pause: float):
        other = Connection(server.origin)
        running.wait()
        while not done.is_set():
            started = time.perf_counter()
            try:
                status, answer = other.call(method, path, body)
            except OSError as e:
                failures.append(f"{label}: {e}")
                other.close()
                other = Connection(server.origin)
                continue
            took = time.perf_counter() - started
            if status != wanted:
                failures.append(f"{label}: {status} {json.dumps(answer)[:200]}")
            elif not done.is_set():
                seen[label].append(took)
            time.sleep(pause)
        other.close()

    threads = [
        threading.Thread(
            target=keep_sending,
            args=("GET /Users/{id}", "GET", f"/Users/{seeded['id']}", 200, None, 0),
        ),
        threading.Thread(
            target=keep_sending, args=("GET /Users?filter", "GET", lookup, 200, None, 0)
        ),
        threading.Thread(
            target=keep_sending,
            args=("PATCH", "PATCH", f"/Users/{seeded['id']}", 200, patch, 0.05),
        ),
    ]
    for thread in threads:
        thread.start()
    running.set()
    time.sleep(0.2)  # the readers are going before the Bulk begins
    started = time.perf_counter()
    status, answer = connection.call("POST", "/Bulk", body)
    elapsed = time.perf_counter() - started
    done.set()
    for thread in threads:
        thread.join()
    connection.close()
    results = expect(status, answer, 200, "POST /Bulk")["Operations"]
    if any(r["status"] != "201" for r in results):
        failures.append("the largest Bulk had failed operations")
    return {
        "operations": len(results),
        "bytes": size,
        "seconds": elapsed,
        "during": {
            label: {
                "answered": len(times),
                "median_ms": statistics.median(times) * 1000 if times else None,
                "max_ms": max(times) * 1000 if times else None,
            }
            for label, times in seen.items()
        },
        "failures": failures,
    }


# --- databases --------------------------------------------------------------------------------


@contextlib.contextmanager
def database(dialect: str, admin_url: str, work: Path) -> Iterator[str]:
    if dialect == "sqlite":
        yield f"sqlite:///{work}/bulk.sqlite3"
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"bulk_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(dialect, args.postgres_url, Path(tmp)) as url,
    ):
        work = Path(tmp)
        migrate_service(url, work)
        server = start_service(url, work)
        try:
            one: list[tuple[float, float]] = []
            many: list[tuple[float, float]] = []
            one_by_one(server, 20, "warmup-a")  # connections, caches, the planner's statistics
            in_bulk(server, 20, "warmup-b")

            def timed(runs: list[tuple[float, float]], how: Any, tag: str) -> None:
                cpu = workers_cpu(server)
                seconds = how(server, args.users, tag)
                runs.append((seconds, workers_cpu(server) - cpu))

            for repeat in range(args.repeats):
                pair = [
                    lambda tag=f"single-{repeat}": timed(one, one_by_one, tag),
                    lambda tag=f"bulk-{repeat}": timed(many, in_bulk, tag),
                ]
                for step in pair if repeat % 2 == 0 else reversed(pair):
                    step()
            out: dict[str, Any] = {
                "database": dialect,
                "one_by_one": statistics.median(s for s, _ in one),
                "bulk": statistics.median(s for s, _ in many),
                "one_by_one_cpu": statistics.median(c for _, c in one),
                "bulk_cpu": statistics.median(c for _, c in many),
                "runs": {"one_by_one": one, "bulk": many},
                "load": Path("/proc/loadavg").read_text().split()[:3],
            }
            if dialect == "sqlite" and not args.skip_readers:
                out["largest"] = largest_bulk_with_readers(server)
            return out
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--skip-readers", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    found = [run(dialect, args) for dialect in args.databases]
    print(
        f"\n{args.users} users and one group holding them all; median of {args.repeats} "
        "(end to end, one keep-alive connection; gunicorn.conf.py as shipped)\n"
    )
    print(
        f"| database | {args.users + 1} requests one by one | one POST /Bulk | ratio "
        "| workers' CPU, one by one | workers' CPU, Bulk | ratio | load average |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in found:
        single, bulk = row["one_by_one"], row["bulk"]
        single_cpu, bulk_cpu = row["one_by_one_cpu"], row["bulk_cpu"]
        print(
            f"| {row['database']} | {single:.2f} s | {bulk:.2f} s | {single / bulk:.1f}x "
            f"| {single_cpu:.2f} s | {bulk_cpu:.2f} s | {single_cpu / max(bulk_cpu, 0.01):.1f}x "
            f"| {' '.join(row['load'])} |"
        )
    for row in found:
        if "largest" in row:
            largest = row["largest"]
            print(
                f"\n{row['database']}: the largest Bulk ({largest['operations']} operations, "
                f"{largest['bytes']} bytes) took {largest['seconds']:.2f} s; meanwhile:"
            )
            for label, numbers in largest["during"].items():
                if numbers["answered"]:
                    print(
                        f"  {label}: {numbers['answered']} answered, median "
                        f"{numbers['median_ms']:.1f} ms, slowest {numbers['max_ms']:.1f} ms"
                    )
                else:
                    print(f"  {label}: none answered")
            print(f"  failures: {largest['failures'] or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
