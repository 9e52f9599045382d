#!/usr/bin/env python3
"""The outbox's cost on writes (issue 17): the API's write throughput with events off
(SCIM_EVENTS=off: no outbox), with events on and no receiver ("none"), with one push receiver
of notices, and with one of `:full` events.

    .venv/bin/python benchmarks/events_write.py [--writes 600] [--threads 1] [--postgres-url URL]

Each setup is a fresh database (SQLite file; PostgreSQL scratch database, dropped at the end)
written through Flask's test client, the service's own time without network or gunicorn: per
round one POST /Users, one PATCH of `active` (a deactivation: two events in one SET), one
PATCH adding the user to a group. The three setups take turns round by round, so that machine
noise hits all alike. Prints writes/s per setup and the ratio to "off" (the target: >= 0.9).

With --threads N, N threads write at once, each with its own client and group (concurrent
commits: what a PostgreSQL NOTIFY, which serializes the commits that send one, would cost);
the setups take turns by time slices of two seconds instead of rounds.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from app import create_app, tenancy  # noqa: E402
from app.auth import new_token, token_hash  # noqa: E402
from app.db import db  # noqa: E402
from app.models import EventReceiver  # noqa: E402
from app.store import events  # noqa: E402
from app.store.tenants import ensure_default  # noqa: E402

BASE = "/scim/v2"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


SETUPS = ("off", "none", "notice", "full")  # "none": events on, no receiver


def setup(url: str, kind: str):
    token = new_token()
    events_on = "off" if kind == "off" else "on"
    app = create_app({"DATABASE_URL": url, "SCIM_TOKEN_HASHES": token_hash(token),
                      "SCIM_RATE_LIMIT": "", "SCIM_EVENTS": events_on})  # fmt: skip
    with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        db.create_all()
        ensure_default()
        if kind in ("notice", "full"):
            from app import sets

            events.add_receiver(
                EventReceiver(name="app", delivery="push", url="https://app.example/e",
                              events=list(events.EVENT_NAMES), full=kind == "full",
                              enabled=True, audience="https://app.example", alg="ES256"),
                sets.new_key("ES256"),
            )  # fmt: skip
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    group = client.post(
        f"{BASE}/Groups",
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"},
    ).json
    return app, client, group["id"]


def one_round(client, group_id: str) -> int:
    name = uuid.uuid4().hex
    user = client.post(f"{BASE}/Users", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"{name}@x.example",
        "name": {"givenName": "A", "familyName": name}, "emails": [{"value": f"{name}@x.example"}],
        "active": True}).json  # fmt: skip
    client.patch(f"{BASE}/Users/{user['id']}", json={"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "active", "value": False}]})  # fmt: skip
    client.patch(f"{BASE}/Groups/{group_id}", json={"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": user["id"]}]}]})  # fmt: skip
    return 3


def run(kind: str, urls: dict[str, str], writes: int, threads: int) -> None:
    if threads > 1:
        return run_threads(kind, urls, writes, threads)
    setups = {name: setup(url, name) for name, url in urls.items()}
    spent = dict.fromkeys(setups, 0.0)
    done = dict.fromkeys(setups, 0)
    for _ in range(5):  # warm up
        for _app, client, group_id in setups.values():
            one_round(client, group_id)
    while min(done.values()) < writes:
        for name, (_app, client, group_id) in setups.items():
            started = time.perf_counter()
            done[name] += one_round(client, group_id)
            spent[name] += time.perf_counter() - started
    report(kind, setups, done, spent, "")


def run_threads(kind: str, urls: dict[str, str], writes: int, threads: int) -> None:
    setups = {name: setup(url, name) for name, url in urls.items()}
    clients = {}  # per setup: a client and a group of its own for each thread
    for name, (app, client, _group_id) in setups.items():
        clients[name] = []
        for _ in range(threads):
            other = app.test_client()
            other.environ_base.update(client.environ_base)
            group = other.post(f"{BASE}/Groups", json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": uuid.uuid4().hex}).json  # fmt: skip
            clients[name].append((other, group["id"]))
    spent = dict.fromkeys(setups, 0.0)
    done = dict.fromkeys(setups, 0)

    def slice_of(name: str, seconds: float) -> None:
        until = time.perf_counter() + seconds
        counts = [0] * threads

        def writer(n: int) -> None:
            client, group_id = clients[name][n]
            while time.perf_counter() < until:
                counts[n] += one_round(client, group_id)

        workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        spent[name] += time.perf_counter() - started
        done[name] += sum(counts)

    for name in setups:
        slice_of(name, 0.5)  # warm up
    spent = dict.fromkeys(setups, 0.0)
    done = dict.fromkeys(setups, 0)
    while min(done.values()) < writes:
        for name in setups:
            slice_of(name, 2.0)
    report(kind, setups, done, spent, f"  ({threads} threads)")


def report(kind: str, setups: dict, done: dict, spent: dict, suffix: str) -> None:
    """Each setup's writes/s and its ratio to "off"; then the setups' engines are closed."""
    off = done["off"] / spent["off"]
    for name in setups:
        rate = done[name] / spent[name]
        print(f"{kind:10} {name:7} {rate:8.0f} writes/s  x{rate / off:.2f}{suffix}")
    for app, *_ in setups.values():
        with app.app_context():
            db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", {n: f"sqlite:///{tmp}/{n}.sqlite3" for n in SETUPS},
            args.writes, args.threads)  # fmt: skip
    admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    names = {n: f"events_bench_{n}_{uuid.uuid4().hex[:6]}" for n in SETUPS}
    with admin.connect() as connection:
        for name in names.values():
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        base = args.postgres_url.rsplit("/", 1)[0]
        run("postgresql", {n: f"{base}/{d}" for n, d in names.items()}, args.writes, args.threads)
    finally:
        with admin.connect() as connection:
            for name in names.values():
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
