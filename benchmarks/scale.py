#!/usr/bin/env python3
"""Every request kind at 1,000 users and again at 1,000,000 (issue 16, target 3).

    .venv/bin/python benchmarks/scale.py                        # SQLite, then PostgreSQL
    .venv/bin/python benchmarks/scale.py --users 20000 --big-group 5000 --requests 50   # quick
    .venv/bin/python benchmarks/scale.py --databases postgresql --postgres-url URL

The target: at 1,000,000 users each request of the table stays within 1.2x of its cost at
1,000 users; a cursor page about 1,000,000 deep within 1.5x of the first page; a worker's
memory (RSS) flat; a full GET of a 100,000-member group under 1 s with bounded memory.

Two databases per kind, side by side (SQLite files in a temp dir; PostgreSQL scratch databases
on --postgres-url, dropped at the end): the small one holds --small users (benchmarks/bulk.py:
the store's own row shapes, in bulk), a "big" group holding all of them, and 100 small groups
of 10 members (groups and memberships inserted as rows). The large one is seeded the same way,
then grown to --users users, the big group to --big-group members and the small groups to
10,000. PostgreSQL gets a VACUUM ANALYZE after each seeding, as autovacuum would.

Each size is served by a worker of its own, a fresh process (as gunicorn would start one),
through Flask's test client: the service's own time, without network or gunicorn. The two
workers take turns, one round each, the first of each pair alternating (small then large, then
large then small, ...), never both at once: a drift of the machine's speed during the run
(another VM, a checkpoint) hits both sizes alike, where measuring one size after the other put
it all on one side. Per round, every request kind is sent once, in an order that rotates from
round to round, each at a target drawn at random from the whole directory (users read with
ORDER BY random() up front): `userName eq`, a page of 100 at a random startIndex within the
first --small users, a cursor page of 100 after a random position among them, POST, PUT and two
PATCHes of a user, POST of a group with 3 members, the big group with
excludedAttributes=members, `displayName eq` of a small group. After --warmup rounds, --requests
rounds are timed: median and p95 (nearest rank) per kind. The writes change their targets, and
new users and groups accumulate (a few hundred), as they would in service.

Cursors for a position are minted as the service mints them (app.paging.encode with
protocol.cursor_secret, for the query the service's own first page names), from the sort keys
(created_at, id) of the row at that position, read with SQL: walking 10,000 pages to reach
depth 1,000,000 would take longer than the rest of the run. The script checks that a minted
cursor equals the service's nextCursor for the same row and that a page starts just after it.
The first cursor page and the page after row --users - 100 are interleaved with the rest.

Memory: the worker's RSS (VmRSS) after its warm-up rounds and after the timed rounds, and its
high-water mark (VmHWM); then the full GET of the big group (median of 5 after one warm-up),
one more with tracemalloc for the peak of Python's allocations, and the RSS around them.
--explain prints, for the page reads and the full group GET at --users, each SELECT with
PostgreSQL's EXPLAIN ANALYZE (SQLite: its query plan and the statement's time).

On a 2-core machine the default run takes 5 to 10 minutes on PostgreSQL (the 1,000,000 users
seeded in 4 to 7) and about 7 on SQLite (6.5 to seed, since migration 0018; 8 to 16 before it,
when the console search's triggers wrote its FTS5 tables per batch), depending on the machine's
speed that day; both databases exist at once, so it needs
their disk space together (a few GB at 1,000,000).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import flask_migrate  # noqa: E402
from bulk import copy_rows, seed  # noqa: E402  (benchmarks/bulk.py)
from filters import make_person  # noqa: E402  (benchmarks/filters.py)
from flask.testing import FlaskClient  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from tenants import (  # noqa: E402  (benchmarks/tenants.py)
    DEFAULT_POSTGRES,
    GROUP_URN,
    PATCH_URN,
    capturing,
    postgres_databases,
    settings,
    vacuum_analyze,
)

from app import create_app, paging, protocol, tenancy  # noqa: E402
from app.auth import token_hash  # noqa: E402
from app.db import db  # noqa: E402
from app.fold import fold  # noqa: E402
from app.models import Group, GroupMember, User  # noqa: E402
from app.schema.core import USER_URN  # noqa: E402

TOKEN = "benchmark-token"
PAGE = 100
SMALL_GROUP = 10  # members of each small group
GROUPS = {"small": 100, "large": 10_000}  # small groups at each size
SIZES = ("small", "large")
GROUPS_CREATED = datetime(2025, 1, 1, tzinfo=UTC)
KINDS = (
    "GET userName eq",
    "GET page, random startIndex",
    "GET page, cursor (shallow)",
    "POST /Users",
    "PUT /Users/{id}",
    "PATCH givenName",
    "PATCH active=false",
    "POST /Groups (3 members)",
    "GET big group, no members",
    "GET /Groups displayName eq",
)
CURSOR_KINDS = ("cursor page 1", "cursor page, deep")


def app_settings(url: str) -> dict[str, str]:
    return settings(url) | {"SCIM_TOKEN_HASHES": token_hash(TOKEN)}


# --- seeding (in the main process) ---------------------------------------------------------


def grow(url: str, users: int, big_group: int, groups: int, first: bool) -> str:
    """Users up to `users`, the big group up to `big_group` members, small groups up to
    `groups`; returns a line saying what it took."""
    app = create_app(app_settings(url))
    started = time.perf_counter()
    with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        if first:
            flask_migrate.upgrade()
        present = db.session.scalar(select(func.count()).select_from(User))
        db.session.commit()
        seeded = seed(users - present, first=present) if users > present else 0.0
        ordered = (
            select(User.id).where(User.deleted_at.is_(None)).order_by(User.created_at, User.id)
        )
        big = db.session.scalars(select(Group.id).where(Group.display_name == "Big")).first()
        if big is None:
            big = str(uuid.uuid4())
            db.session.execute(insert(Group), [group_row(big, "Big", -1)])
        had = db.session.scalar(
            select(func.count()).select_from(GroupMember).where(GroupMember.group_id == big)
        )
        joining = db.session.scalars(ordered.offset(had).limit(big_group - had)).all()
        add_members([{"group_id": big, "member_id": m, "member_type": "User"} for m in joining])
        # Small groups: 10 users each, the first 10 x `groups` users (some also in the big one).
        teams = select(func.count()).select_from(Group).where(Group.display_name.like("Team %"))
        small = db.session.scalar(teams)
        pool = db.session.scalars(ordered.limit(SMALL_GROUP * groups)).all()
        new = [(str(uuid.uuid4()), g) for g in range(small, groups)]
        if new:
            db.session.execute(insert(Group), [group_row(i, f"Team {g:05d}", g) for i, g in new])
        memberships = [
            {"group_id": group_id, "member_id": member_id, "member_type": "User"}
            for group_id, g in new
            for member_id in pool[(g * SMALL_GROUP) % len(pool) :][:SMALL_GROUP]
        ]
        add_members(memberships)
        db.session.commit()
        dialect = db.engine.dialect.name
        db.engine.dispose()
    line = (
        f"{users:,} users (users seeded in {seeded:.0f} s), big group {big_group:,} members, "
        f"{groups:,} small groups; {time.perf_counter() - started:.0f} s in all"
    )
    if dialect == "postgresql":
        line += f", VACUUM ANALYZE {vacuum_analyze(url):.0f} s"
    return line


def group_row(group_id: str, name: str, ordinal: int) -> dict[str, Any]:
    created = GROUPS_CREATED + timedelta(seconds=ordinal + 1)
    return {
        "id": group_id,
        "display_name": name,
        "display_name_key": fold(name),
        "external_id": f"group-{ordinal}",
        "created_at": created,
        "last_modified": created,
        "version": 1,
    }


def add_members(rows: list[dict[str, str]]) -> None:
    """Memberships, 10,000 a transaction: COPY on PostgreSQL (its executemany sends a row at a
    time), executemany on SQLite."""
    columns = ["tenant_id", "group_id", "member_id", "member_type"]
    for start in range(0, len(rows), 10_000):
        chunk = [
            row | {"tenant_id": tenancy.DEFAULT_TENANT_ID} for row in rows[start : start + 10_000]
        ]
        if db.engine.dialect.name == "postgresql":
            copy_rows("group_members", columns, chunk)
        else:
            db.session.execute(insert(GroupMember), chunk)
        db.session.commit()


# --- measuring (in a fresh process) --------------------------------------------------------


class Worker:
    """One size's worker (a fresh process, `serve`), driven round by round from the main one."""

    def __init__(self, url: str, phase: str, users: int, args: argparse.Namespace) -> None:
        context = multiprocessing.get_context("spawn")
        self.phase = phase
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=serve, args=(theirs, url, phase, users, args))
        self.process.start()
        self.samples: dict[str, list[float]] = {kind: [] for kind in KINDS + CURSOR_KINDS}

    def ask(self, *message: Any) -> Any:
        self.connection.send(message)
        return self.answer()

    def answer(self) -> Any:
        answer = self.connection.recv()
        if isinstance(answer, SystemExit):  # the worker failed (a request, its set-up): stop
            raise answer
        return answer

    def round(self, round_: int, *, timed: bool) -> None:
        for kind, elapsed in self.ask("round", round_).items():
            if timed:
                self.samples[kind].append(elapsed)

    def finish(self) -> dict[str, Any]:
        result = self.ask("finish") | {"samples": self.samples}
        self.process.join()
        return result


def serve(connection: Any, url: str, phase: str, users: int, args: argparse.Namespace) -> None:
    """A worker's life: answer "round" (the kinds' times, ms), "memory" (the RSS now) and, last,
    "finish" (its memory, the full group GET, the plans), each by one message."""
    try:
        logging.getLogger("scim.audit").addFilter(lambda record: False)
        app = create_app(app_settings(url))
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        rng = random.Random(f"{phase}:{args.requests}")
        targets = Targets.read(app, client, users, args)
        send = Sender(client, targets, phase, rng)
        memory: dict[str, int] = {}
        connection.send("ready")
        while True:
            message = connection.recv()
            if message[0] == "round":
                round_ = message[1]
                shift = round_ % len(KINDS)
                kinds = KINDS[shift:] + KINDS[:shift] + CURSOR_KINDS
                connection.send({kind: send.timed(kind, round_) for kind in kinds})
            elif message[0] == "memory":
                memory["RSS after warm-up"] = status_kb("VmRSS")
                connection.send(None)
            else:
                memory["RSS after the rounds"] = status_kb("VmRSS")
                memory["RSS high-water mark"] = status_kb("VmHWM")
                full = full_group(client, targets.big_group, targets.big_members)
                plans = explain(app, send, EXPLAINED) if args.explain and phase == "large" else []
                connection.send({"memory": memory, "full": full, "plans": plans})
                return
    except SystemExit as stop:  # Sender.timed: an unexpected answer
        connection.send(stop)
    except Exception as error:  # noqa: BLE001  (any other failure, named in the main process)
        connection.send(SystemExit(f"the {phase} worker failed: {error!r}"))


def measure_side_by_side(
    small_url: str, large_url: str, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sizes' workers, one round each in turn, the first of each pair alternating."""
    small = Worker(small_url, "small", args.small, args)
    large = Worker(large_url, "large", args.users, args)
    for worker in (small, large):
        worker.answer()  # "ready", once its targets are read
    for round_ in range(args.warmup + args.requests):
        if round_ == args.warmup:
            small.ask("memory")
            large.ask("memory")
        pair = (small, large) if round_ % 2 == 0 else (large, small)
        for worker in pair:
            worker.round(round_, timed=round_ >= args.warmup)
    return small.finish(), large.finish()


EXPLAINED = (
    "GET page, random startIndex",
    "GET page, cursor (shallow)",
    "cursor page, deep",
    "full GET of the big group",
)


def explain(app: Any, send: Sender, kinds: tuple[str, ...]) -> list[str]:
    """Each SELECT one request of each kind runs, with its own time: PostgreSQL's EXPLAIN
    ANALYZE, or SQLite's query plan and the time to run the statement again."""
    lines = []
    with app.app_context():
        engine = db.engine
    for kind in kinds:
        with capturing(engine) as statements:
            if kind == "full GET of the big group":
                send.client.get(f"/scim/v2/Groups/{send.targets.big_group}").close()
            else:
                send.timed(kind, 0)
        lines.append(f"{kind}:")
        with engine.connect() as connection:
            for statement, parameters, _ in statements:
                if not statement.lstrip().upper().startswith("SELECT") or "set_config" in statement:
                    continue
                lines.append(f"  {' '.join(statement.split())[:300]}")
                if engine.dialect.name == "postgresql":
                    plan = connection.exec_driver_sql(
                        "EXPLAIN (ANALYZE, COSTS OFF) " + statement, parameters
                    ).scalars()
                    lines += [f"    {line}" for line in plan]
                else:
                    plan = connection.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + statement, parameters
                    ).all()
                    lines += [f"    {row[-1]}" for row in plan]
                    started = time.perf_counter()
                    connection.exec_driver_sql(statement, parameters).all()
                    lines.append(f"    ran in {(time.perf_counter() - started) * 1000:.1f} ms")
                connection.rollback()
    return lines


class Targets:
    """What the requests aim at, read once before they start."""

    def __init__(self) -> None:
        self.users: list[tuple[str, str, dict[str, Any]]] = []  # (id, userName, document)
        self.small_groups: list[str] = []
        self.big_group = ""
        self.big_members = 0
        self.shallow: list[tuple[str, str]] = []  # (cursor after row n, id of row n + 1)
        self.deep = ("", "")

    @classmethod
    def read(cls, app: Any, client: FlaskClient, users: int, args: argparse.Namespace) -> Targets:
        targets = cls()
        picks = 4 * (args.warmup + args.requests)
        with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):
            live = User.deleted_at.is_(None)
            rows = db.session.execute(
                select(User.id, User.user_name, User.document)
                .where(live)
                .order_by(func.random())
                .limit(picks)
            ).all()
            targets.users = [tuple(row) for row in rows]
            targets.small_groups = list(
                db.session.scalars(
                    select(Group.display_name)
                    .where(Group.display_name.like("Team %"))
                    .order_by(func.random())
                    .limit(picks)
                )
            )
            targets.big_group = db.session.scalars(
                select(Group.id).where(Group.display_name == "Big")
            ).one()
            targets.big_members = db.session.scalar(
                select(func.count())
                .select_from(GroupMember)
                .where(GroupMember.group_id == targets.big_group)
            )
            order = select(User.created_at, User.id).where(live).order_by(User.created_at, User.id)
            first = db.session.execute(order.limit(args.small)).all()
            deep = db.session.execute(order.offset(users - PAGE - 1).limit(2)).all()
            db.session.commit()
        # The service's own first cursor page: the query it names, and a check of minting.
        answer = client.get("/scim/v2/Users", query_string={"cursor": "", "count": PAGE})
        issued = payload(answer.json["nextCursor"])
        with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):

            def mint(keys: Any) -> str:
                return paging.encode(
                    paging.Cursor(tuple(keys)), query=issued["q"], secret=protocol.cursor_secret()
                )

            assert payload(mint(first[PAGE - 1]))["k"] == issued["k"], "minted != issued"
            targets.shallow = [
                (mint(first[n]), first[n + 1][1]) for n in range(args.small - PAGE - 1)
            ]
            targets.deep = (mint(deep[0]), deep[1][1])
        return targets


class Sender:
    def __init__(self, client: FlaskClient, targets: Targets, phase: str, rng: random.Random):
        self.client, self.targets, self.phase, self.rng = client, targets, phase, rng
        self.small = len(targets.shallow) + PAGE + 1

    def user(self) -> tuple[str, str, dict[str, Any]]:
        return self.rng.choice(self.targets.users)

    def timed(self, kind: str, round_: int) -> float:
        """Milliseconds for one request, its body read and the response closed. An unexpected
        answer stops the run: a benchmark of errors is worthless."""
        request, expected, check = self.request(kind, round_)
        started = time.perf_counter()
        response = request()
        response.get_data()
        response.close()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != expected or not check(response):
            sys.exit(f"{kind}: {response.status_code} {response.get_data(as_text=True)[:500]}")
        return elapsed

    def request(self, kind: str, round_: int) -> tuple[Callable[[], Any], int, Callable]:
        """The request of `kind` (not yet sent), its status and a check of its body."""
        client, users = self.client, "/scim/v2/Users"
        user_id, user_name, document = self.user()
        if kind == "GET userName eq":
            query = {"filter": f'userName eq "{user_name}"'}
            return lambda: client.get(users, query_string=query), 200, ids_are([user_id])
        if kind == "GET page, random startIndex":
            query = {"startIndex": self.rng.randint(1, self.small - PAGE + 1), "count": PAGE}
            return lambda: client.get(users, query_string=query), 200, full_page
        if kind.startswith(("GET page, cursor", "cursor page")):
            if kind == "cursor page 1":
                cursor, first_id = "", None
            elif kind == "cursor page, deep":
                cursor, first_id = self.targets.deep
            else:
                cursor, first_id = self.rng.choice(self.targets.shallow)
            query = {"cursor": cursor, "count": PAGE}
            return lambda: client.get(users, query_string=query), 200, starts_with(first_id)
        if kind == "POST /Users":
            _, body = make_person(self.rng, 2_000_000 + 100_000 * (self.phase == "large") + round_)
            return lambda: client.post(users, json=body), 201, lambda r: True
        if kind == "PUT /Users/{id}":
            body = document | {"schemas": [USER_URN], "displayName": f"Renamed {round_}"}
            return lambda: client.put(f"{users}/{user_id}", json=body), 200, lambda r: True
        if kind.startswith("PATCH"):
            path, value = (
                ("active", False) if "active" in kind else ("name.givenName", f"G{round_}")
            )
            operation = {"op": "replace", "path": path, "value": value}
            body = {"schemas": [PATCH_URN], "Operations": [operation]}
            return lambda: client.patch(f"{users}/{user_id}", json=body), 200, lambda r: True
        if kind == "POST /Groups (3 members)":
            members = [{"value": self.user()[0]} for _ in range(3)]
            name = f"New group {self.phase} {round_}"
            body = {"schemas": [GROUP_URN], "displayName": name, "members": members}
            return lambda: client.post("/scim/v2/Groups", json=body), 201, lambda r: True
        if kind == "GET big group, no members":
            address = f"/scim/v2/Groups/{self.targets.big_group}"
            query = {"excludedAttributes": "members"}
            return (
                lambda: client.get(address, query_string=query),
                200,
                lambda r: "members" not in r.json,
            )
        assert kind == "GET /Groups displayName eq", kind
        name = self.rng.choice(self.targets.small_groups)
        query = {"filter": f'displayName eq "{name}"'}
        return (
            lambda: client.get("/scim/v2/Groups", query_string=query),
            200,
            lambda r: r.json["totalResults"] == 1,
        )


def payload(cursor: str) -> dict[str, Any]:
    """What a cursor carries (app/paging.py's format), read without checking its signature."""
    body = cursor.partition(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def ids_are(expected: list[str]) -> Callable[[Any], bool]:
    return lambda response: [r["id"] for r in response.json["Resources"]] == expected


def full_page(response: Any) -> bool:
    return len(response.json["Resources"]) == PAGE


def starts_with(first_id: str | None) -> Callable[[Any], bool]:
    def check(response: Any) -> bool:
        resources = response.json["Resources"]
        return len(resources) == PAGE and first_id in (None, resources[0]["id"])

    return check


def full_group(client: FlaskClient, group_id: str, members: int) -> dict[str, float]:
    """The full GET of the big group: time, Python's peak allocation, RSS around it."""
    address = f"/scim/v2/Groups/{group_id}"

    def get() -> tuple[float, int]:
        started = time.perf_counter()
        response = client.get(address)
        size = len(response.get_data())
        response.close()
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.status_code
        assert len(response.json["members"]) == members, len(response.json["members"])
        return elapsed, size

    before = status_kb("VmRSS")
    get()
    runs = [get() for _ in range(5)]
    after = status_kb("VmRSS")
    tracemalloc.start()
    get()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "members": members,
        "ms median": statistics.median(ms for ms, _ in runs),
        "ms max": max(ms for ms, _ in runs),
        "body MB": runs[0][1] / 1e6,
        "peak MB (tracemalloc)": peak / 1e6,
        "RSS before MB": before / 1024,
        "RSS after 6 GETs MB": after / 1024,
        "RSS high-water mark MB": status_kb("VmHWM") / 1024,
    }


def status_kb(field: str) -> int:
    """A figure of /proc/self/status (VmRSS: resident now; VmHWM: its peak), in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


# --- report --------------------------------------------------------------------------------


def nearest_rank(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def report(args: argparse.Namespace, small: dict[str, Any], large: dict[str, Any]) -> None:
    a, b = f"{args.small:,}", f"{args.users:,}"
    width = 32
    print()
    print(
        f"{'(ms)':<{width}}{a + ' median':>16}{'p95':>8}{b + ' median':>18}{'p95':>8}"
        f"{'ratio':>8}{'p95 ratio':>10}  target 1.2x"
    )
    for kind in KINDS + CURSOR_KINDS:
        one, two = small["samples"][kind], large["samples"][kind]
        m1, m2 = statistics.median(one), statistics.median(two)
        p1, p2 = nearest_rank(one, 0.95), nearest_rank(two, 0.95)
        verdict = "PASS" if m2 <= 1.2 * m1 else "FAIL"
        if kind in CURSOR_KINDS:
            verdict = "(see below)"
        print(
            f"{kind:<{width}}{m1:>16.2f}{p1:>8.2f}{m2:>18.2f}{p2:>8.2f}"
            f"{m2 / m1:>8.2f}{p2 / p1:>10.2f}  {verdict}"
        )
    print(
        f"(page, random startIndex: 1 to {args.small - PAGE + 1}; cursor (shallow): after a "
        f"random row of the first {args.small:,}; cursor page, deep: after row "
        f"{args.users - PAGE:,} at {b}, {args.small - PAGE:,} at {a})"
    )
    for label, run in ((a, small), (b, large)):
        first = statistics.median(run["samples"]["cursor page 1"])
        deep = statistics.median(run["samples"]["cursor page, deep"])
        verdict = "PASS" if deep <= 1.5 * first else "FAIL"
        verdict = verdict if run is large else "(not the target)"
        print(
            f"cursor at {label} users: deep page {deep:.2f} ms / first page {first:.2f} ms "
            f"= {deep / first:.2f}  target 1.5x: {verdict}"
        )
    print()
    print(f"worker memory (kB){'':<14}{a + ' users':>16}{b + ' users':>18}")
    for name in small["memory"]:
        print(f"{name:<32}{small['memory'][name]:>16,}{large['memory'][name]:>18,}")
    print()
    print(f"full GET of the big group{'':<7}{a + ' users':>16}{b + ' users':>18}")
    for name in small["full"]:
        one, two = small["full"][name], large["full"][name]
        print(f"{name:<32}{one:>16,.1f}{two:>18,.1f}")
    ms = large["full"]["ms median"]
    print(
        f"full GET at {large['full']['members']:,.0f} members under 1 s: "
        f"{'PASS' if ms < 1000 else 'FAIL'} ({ms:.0f} ms)"
    )


def run(dialect: str, args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        if dialect == "sqlite":
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="scim-bench-"))
            small_url, large_url = (f"sqlite:///{folder}/{size}.sqlite3" for size in SIZES)
        else:
            small_url, large_url = stack.enter_context(postgres_databases(args.postgres_url, 2))
        started = time.perf_counter()
        print(f"\n=== {dialect}", flush=True)
        for url in (small_url, large_url):
            print(f"seeded: {grow(url, args.small, args.small, GROUPS['small'], True)}", flush=True)
        line = grow(large_url, args.users, args.big_group, GROUPS["large"], False)
        print(f"grown: {line} ({time.perf_counter() - started:.0f} s so far)", flush=True)
        small, large = measure_side_by_side(small_url, large_url, args)
        print(f"measured ({time.perf_counter() - started:.0f} s so far)")
        print(
            f"{dialect}: {args.requests} rounds after {args.warmup} warm-up rounds at each size, "
            "the sizes' workers (fresh processes) taking turns, request kinds interleaved"
        )
        report(args, small, large)
        if large["plans"]:
            print(f"\nthe statements of one request each at {args.users:,} users:")
            print("\n".join(large["plans"]))
        print(f"{dialect}: {time.perf_counter() - started:.0f} s in all", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES),
        help="a superuser's URL: the scratch database is made there",
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big-group", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--explain", action="store_true", help="plans of the page and group reads at --users"
    )
    args = parser.parse_args()
    if not PAGE * 3 <= args.small <= args.big_group <= args.users:
        parser.error("300 <= --small <= --big-group <= --users")
    # Its stdout lines, not its rows: a filter, which survives the logging set-up of migrations.
    logging.getLogger("scim.audit").addFilter(lambda record: False)
    for dialect in args.databases.split(","):
        run(dialect.strip(), args)


if __name__ == "__main__":
    main()
