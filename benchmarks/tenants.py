#!/usr/bin/env python3
"""Tenancy's cost (issue 15): one tenant of 10,000 users beside 100 tenants of 10,000 users each.

    .venv/bin/python benchmarks/tenants.py                       # SQLite, then PostgreSQL
    .venv/bin/python benchmarks/tenants.py --tenants 10 --users 2000 --rounds 50   # quick
    .venv/bin/python benchmarks/tenants.py --databases postgresql --postgres-url URL

Two databases of the same kind side by side: "single" holds one tenant (the default one) with
--users users, "many" holds --tenants tenants with --users users each, and both are measured on
one tenant whose directory is the same row for row (the tenant in the middle of "many"). Each
tenant also has --groups groups of --members members and a bearer token of its own; both setups
authenticate through the tokens table (one indexed lookup by the token's hash).

Per round, each request kind is sent to every setup in turn, the order rotating from round to
round, so that machine noise hits all alike (A, B, A, B...): a lookup by `userName eq` and by
`externalId eq` of a random user, a page of 100 at a random startIndex within the tenant, a POST
of a new user, and a one-member group PATCH (add, then remove). Requests go through Flask's test
client, as the other benchmarks here do: the service's own time, without network or gunicorn.
A write's time includes its audit row, which it writes in its own transaction. The
rate limit is off (its in-process count is the same for both setups, and a run sends more than
its default budget). Prints the median and p95 per request kind, the ratios many/single (the
target: <= 1.1 each), and the SQL statements per request.

On PostgreSQL (two scratch databases on --postgres-url, dropped at the end) it also prints the
EXPLAIN of every statement those requests run on the 100-tenant database, as the service sent
them (captured by a before_cursor_execute listener, explained with their parameters), and says
whether the index used leads with tenant_id and has it in its Index Cond. When
deploy/postgres/app-role.sql and psql are there, both databases are also served as that
script's service role (neither owner, SUPERUSER nor BYPASSRLS), interleaved with the rest, so
that the cost of row-level security is visible; the scratch roles are dropped at the end.
--explain prints SQLite's query plans too.

Seeding goes through store/users.py `insert_many` in each tenant's scope, 5,000 users per INSERT
and one commit per INSERT, in --jobs processes (memory stays bounded: a worker holds one chunk).
The documents are validated once (filters.py's generator), then made each tenant's own: its
domain in userName and emails, its own externalIds. Groups and memberships are inserted as
rows. PostgreSQL gets a VACUUM ANALYZE after seeding, as autovacuum would; SQLite nothing, as
in production.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import multiprocessing
import os
import random
import re
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import flask_migrate  # noqa: E402
from filters import make_person  # noqa: E402  (benchmarks/filters.py)
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy import Engine, create_engine, event, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app import create_app, tenancy, validate  # noqa: E402
from app.auth import token_hash  # noqa: E402
from app.db import db  # noqa: E402
from app.fold import fold  # noqa: E402
from app.models import Group, GroupMember, User  # noqa: E402
from app.schema.core import USER_RESOURCE, USER_URN  # noqa: E402
from app.store import tenants as tenants_store  # noqa: E402
from app.store import tokens as tokens_store  # noqa: E402
from app.store import users as users_store  # noqa: E402

GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ROLE_SCRIPT = ROOT / "deploy" / "postgres" / "app-role.sql"
CHUNK = 5000
PAGE = 100
TEMPLATE_SEED = 5
CREATED = datetime(2025, 1, 1, tzinfo=UTC)  # user n of every tenant was created n seconds later
KINDS = (
    "GET userName eq",
    "GET externalId eq",
    "GET page (random startIndex)",
    "POST /Users",
    "PATCH group: add 1 member",
    "PATCH group: remove 1 member",
)


def settings(url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "SCIM_TOKEN_HASHES": "",
        "SCIM_SECRET_KEY": "benchmark secret key, not for production",
        "SCIM_RATE_LIMIT": "",
        "SCIM_DB_TIMEOUT_SECONDS": "120",  # seeding's INSERTs of 5,000 users; VACUUM
    }


def token_of(ordinal: int) -> str:
    return f"benchmark-token-{ordinal:03d}"


# --- seeding --------------------------------------------------------------------------------


def templates(users: int) -> list[dict[str, Any]]:
    """`users` validated user documents (benchmarks/filters.py's people), made once per process."""
    rng = random.Random(TEMPLATE_SEED)
    return [validate.resource(USER_RESOURCE, make_person(rng, n)[1]).document for n in range(users)]


def tenant_document(template: dict[str, Any], ordinal: int, rng: random.Random) -> dict[str, Any]:
    """The template as tenant `ordinal`'s: its own domain and externalId, the rest alike."""
    domain = f"@t{ordinal:03d}.example.com"
    document = copy.copy(template)
    document["userName"] = template["userName"].replace("@example.com", domain)
    document["externalId"] = "00u" + "".join(
        rng.choices(string.ascii_letters + string.digits, k=17)
    )
    document["emails"] = [
        {**email, "value": email["value"].replace("@", f"@t{ordinal:03d}.", 1)}
        if email["type"] == "home"
        else {**email, "value": email["value"].replace("@example.com", domain)}
        for email in template["emails"]
    ]
    return document


@dataclass(frozen=True)
class Sizes:
    users: int
    groups: int
    members: int


_worker_app: Flask | None = None
_worker_templates: list[dict[str, Any]] = []


def _start_worker(url: str, users: int) -> None:
    global _worker_app, _worker_templates
    logging.getLogger("app").setLevel(logging.ERROR)  # the RLS start-up warning, once per worker
    _worker_app = create_app(settings(url))
    _worker_templates = templates(users)


def _seed_in_worker(job: tuple[int, int, Sizes]) -> tuple[int, int]:
    tenant_id, ordinal, sizes = job
    assert _worker_app is not None
    with _worker_app.app_context():
        return seed_tenant(tenant_id, ordinal, sizes, _worker_templates)


def seed_tenant(
    tenant_id: int, ordinal: int, sizes: Sizes, documents: list[dict[str, Any]]
) -> tuple[int, int]:
    """One tenant's directory, token and groups; returns (users, memberships) inserted."""
    rng = random.Random(ordinal)
    with tenancy.entered(tenant_id):
        tokens_store.create("okta", token_hash(token_of(ordinal)))
        ids: list[str] = []
        for start in range(0, sizes.users, CHUNK):
            end = min(start + CHUNK, sizes.users)
            chunk = [tenant_document(documents[n], ordinal, rng) for n in range(start, end)]
            created = [CREATED + timedelta(seconds=n) for n in range(start, end)]
            ids += users_store.insert_many(USER_RESOURCE, chunk, created)
            db.session.commit()
        groups, members = [], []
        for g in range(sizes.groups):
            group_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            name = f"Team {g:03d}"
            groups.append(
                {
                    "id": group_id,
                    "display_name": name,
                    "display_name_key": fold(name),
                    "external_id": f"group-{ordinal:03d}-{g:03d}",
                    "created_at": CREATED + timedelta(seconds=g),
                    "last_modified": CREATED + timedelta(seconds=g),
                    "version": 1,
                }
            )
            first = g * sizes.members
            members += [
                {"group_id": group_id, "member_id": user_id, "member_type": "User"}
                for user_id in ids[first : first + sizes.members]
            ]
        if groups:
            db.session.execute(insert(Group), groups)
        if members:
            db.session.execute(insert(GroupMember), members)
        db.session.commit()
    return len(ids), len(members)


def seed_database(url: str, tenants: int, measured: int, sizes: Sizes, jobs: int) -> str:
    """Migrate, create the tenants and seed them. tenants=1: the default tenant alone, holding
    the directory of ordinal `measured`. Returns a line saying what was seeded, and how fast."""
    logging.getLogger("app").setLevel(logging.ERROR)
    app = create_app(settings(url))
    started = time.perf_counter()
    with app.app_context():
        flask_migrate.upgrade()
        work = [(tenancy.DEFAULT_TENANT_ID, measured if tenants == 1 else 1, sizes)]
        for ordinal in range(2, tenants + 1):
            tenant = tenants_store.create(f"customer-{ordinal:03d}", f"Customer {ordinal}")
            work.append((tenant.id, ordinal, sizes))
        dialect = db.engine.dialect.name
        db.engine.dispose()
    users = memberships = 0
    if jobs <= 1 or len(work) == 1:
        with app.app_context():
            documents = templates(sizes.users)
            for number, (tenant_id, ordinal, _) in enumerate(work, start=1):
                done = seed_tenant(tenant_id, ordinal, sizes, documents)
                users, memberships = users + done[0], memberships + done[1]
                progress(number, len(work), started)
            db.engine.dispose()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(jobs, _start_worker, (url, sizes.users)) as pool:
            for number, done in enumerate(pool.imap_unordered(_seed_in_worker, work), start=1):
                users, memberships = users + done[0], memberships + done[1]
                progress(number, len(work), started)
    seeded = time.perf_counter() - started
    line = (
        f"{len(work)} tenant(s), {users:,} users, {len(work) * sizes.groups:,} groups, "
        f"{memberships:,} memberships in {seeded:.1f} s "
        f"({users / seeded:,.0f} users/s, {jobs} job(s))"
    )
    if dialect == "postgresql":
        line += f", VACUUM ANALYZE {vacuum_analyze(url):.1f} s"
    return line


def vacuum_analyze(url: str) -> float:
    """VACUUM ANALYZE, as autovacuum would after a bulk load; its seconds."""
    started = time.perf_counter()
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return time.perf_counter() - started


def progress(done: int, total: int, started: float) -> None:
    if done % 10 == 0 or done == total:
        elapsed = time.perf_counter() - started
        print(f"  seeded {done}/{total} tenants ({elapsed:.0f} s)", file=sys.stderr, flush=True)


# --- the setups under test --------------------------------------------------------------------


@dataclass
class Setup:
    label: str
    app: Flask
    client: FlaskClient
    engine: Engine
    tenant_id: int
    users: list[tuple[str, str, str]]  # (id, userName, externalId) in creation order
    group_id: str
    newcomer: str  # a user in no group: the one member PATCHes add and remove
    url: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    statements: dict[str, int] = field(default_factory=dict)
    captured: dict[str, list[tuple[str, Any, bool]]] = field(default_factory=dict)


def open_setup(label: str, url: str, ordinal: int, sizes: Sizes, slot: int = 0) -> Setup:
    """The service on `url`, as tenant `ordinal`'s token. Two setups on one database (as two
    roles) take two slots: each PATCHes its own group with its own newcomer."""
    app = create_app(settings(url))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token_of(ordinal)}"
    with app.app_context():
        caller = tokens_store.caller_for_hash(token_hash(token_of(ordinal)))
        assert caller is not None, f"no token for tenant {ordinal} in {label}"
        with tenancy.entered(caller.tenant_id):
            rows = db.session.execute(
                select(User.id, User.user_name, User.external_id)
                .where(User.deleted_at.is_(None))
                .order_by(User.created_at, User.id)
            ).all()
            group_id = db.session.scalars(
                select(Group.id).where(Group.display_name_key == fold(f"Team {slot:03d}"))
            ).one()
            db.session.commit()
        engine = db.engine
    users = [tuple(row) for row in rows]
    assert len(users) == sizes.users, (label, len(users))
    newcomer = users[-1 - slot][0]
    return Setup(label, app, client, engine, caller.tenant_id, users, group_id, newcomer, url)


def send(setup: Setup, kind: str, pick: int, start_index: int, round_: int) -> Any:
    """One request of `kind`; returns its response and the check that it did what was asked."""
    client = setup.client
    user_id, user_name, external_id = setup.users[pick]
    if kind == "GET userName eq":
        query = {"filter": f'userName eq "{user_name}"'}
        return client.get("/scim/v2/Users", query_string=query), 200, lambda r: found(r, user_id)
    if kind == "GET externalId eq":
        query = {"filter": f'externalId eq "{external_id}"'}
        return client.get("/scim/v2/Users", query_string=query), 200, lambda r: found(r, user_id)
    if kind == "GET page (random startIndex)":
        query = {"startIndex": start_index, "count": PAGE}
        response = client.get("/scim/v2/Users", query_string=query)
        return response, 200, lambda r: len(r.json["Resources"]) == PAGE
    if kind == "POST /Users":
        name = f"new.{setup.label}.{round_:05d}@bench.example.com"
        body = {"schemas": [USER_URN], "userName": name, "externalId": f"new-{round_}"}
        return client.post("/scim/v2/Users", json=body), 201, lambda r: True
    member = setup.newcomer
    operation = (
        {"op": "add", "path": "members", "value": [{"value": member}]}
        if kind.endswith("add 1 member")
        else {"op": "remove", "path": f'members[value eq "{member}"]'}
    )
    body = {"schemas": [PATCH_URN], "Operations": [operation]}
    return client.patch(f"/scim/v2/Groups/{setup.group_id}", json=body), 204, lambda r: True


def found(response: Any, user_id: str) -> bool:
    return [user["id"] for user in response.json["Resources"]] == [user_id]


def timed(setup: Setup, kind: str, pick: int, start_index: int, round_: int) -> float:
    """Milliseconds for one request, its body read and the response closed (a refused write's
    audit row is written on close). An unexpected answer stops the run: a benchmark of errors
    is worthless."""
    started = time.perf_counter()
    response, expected, check = send(setup, kind, pick, start_index, round_)
    response.get_data()
    response.close()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != expected or not check(response):
        sys.exit(f"{setup.label}: {kind}: {response.status_code} {response.get_data(as_text=True)}")
    return elapsed


@contextmanager
def capturing(engine: Engine) -> Iterator[list[tuple[str, Any, bool]]]:
    statements: list[tuple[str, Any, bool]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append((statement, parameters, executemany))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def is_sql(statement: str) -> bool:
    """A statement about rows, not transaction control or the RLS setting."""
    head = statement.lstrip().upper()
    return head.startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")) and (
        "SET_CONFIG(" not in head
    )


def measure(setups: list[Setup], rounds: int, warmup: int, users: int) -> None:
    rng = random.Random(11)
    for setup in setups:
        setup.samples = {kind: [] for kind in KINDS}
    for round_ in range(warmup + rounds):
        pick = rng.randrange(users - 2)  # the last two are the PATCHes' newcomers
        start_index = rng.randint(1, users - PAGE + 1)
        shift = round_ % len(setups)
        order = setups[shift:] + setups[:shift]
        for kind in KINDS:
            for setup in order:
                elapsed = timed(setup, kind, pick, start_index, round_)
                if round_ >= warmup:
                    setup.samples[kind].append(elapsed)
    # One more round, its statements counted (and kept for EXPLAIN).
    pick, start_index = users // 2, users // 2
    for setup in setups:
        for kind in KINDS:
            with capturing(setup.engine) as statements:
                timed(setup, kind, pick, start_index, warmup + rounds)
            setup.statements[kind] = len(statements)
            setup.captured[kind] = statements


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def print_tables(setups: list[Setup], ratios: list[tuple[str, Setup, Setup]]) -> None:
    width = 30
    print()
    print(f"{'(ms)':<{width}}" + "".join(f"{s.label + ' median':>18}{'p95':>8}" for s in setups))
    for kind in KINDS:
        row = f"{kind:<{width}}"
        for s in setups:
            row += f"{statistics.median(s.samples[kind]):>18.2f}{p95(s.samples[kind]):>8.2f}"
        print(row)
    print()
    print(
        f"{'ratio':<{width}}"
        + "".join(f"{label + ' median':>24}{'p95':>8}" for label, _, _ in ratios)
    )
    for kind in KINDS:
        row = f"{kind:<{width}}"
        for _, a, b in ratios:
            median = statistics.median(a.samples[kind]) / statistics.median(b.samples[kind])
            row += f"{median:>24.2f}{p95(a.samples[kind]) / p95(b.samples[kind]):>8.2f}"
        print(row)
    print()
    print(f"{'SQL statements per request':<{width}}" + "".join(f"{s.label:>18}" for s in setups))
    for kind in KINDS:
        print(f"{kind:<{width}}" + "".join(f"{s.statements[kind]:>18}" for s in setups))


# --- EXPLAIN --------------------------------------------------------------------------------


def short_sql(statement: str) -> str:
    one_line = " ".join(statement.split())
    one_line = re.sub(r"^SELECT (?!count\().*? FROM ", "SELECT … FROM ", one_line)
    one_line = re.sub(r"^(INSERT INTO \w+) \(.*?\) VALUES .*?( RETURNING|$)", r"\1 …\2", one_line)
    return clip(one_line, 150)


def clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def distinct_statements(setup: Setup) -> dict[str, tuple[Any, list[str]]]:
    """Each statement about rows that the requests ran, once, with the kinds that ran it."""
    seen: dict[str, tuple[Any, list[str]]] = {}
    for kind in KINDS:
        for statement, parameters, executemany in setup.captured[kind]:
            if not is_sql(statement):
                continue
            if statement not in seen:
                seen[statement] = (parameters[0] if executemany else parameters, [])
            if kind not in seen[statement][1]:
                seen[statement][1].append(kind)
    return seen


INDEX_USED = re.compile(
    r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)"
)
SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")
NODE = re.compile(r"^\s*(?:->\s*)?([A-Z][A-Za-z ]+?)(?: using (\w+))?(?: on (\w+))?(?:\s|$)")


def explain_postgres(setup: Setup, url: str, tenant_setting: str | None) -> None:
    """PostgreSQL's plan for each statement the requests ran (custom, with the parameters the
    service sent), the verdict on its index, and the generic plan where its shape differs: once
    psycopg has prepared a statement (its 5th run), PostgreSQL may switch to that one."""
    engine = create_engine(url)
    with engine.connect() as connection:
        leading = dict(
            connection.exec_driver_sql(
                "SELECT c.relname, a.attname FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            ).all()
        )
        rows = dict(
            connection.exec_driver_sql(
                "SELECT relname, reltuples::bigint FROM pg_class WHERE relkind = 'r'"
            ).all()
        )
        raw = connection.connection.driver_connection
        for statement, (parameters, kinds) in distinct_statements(setup).items():
            custom = plan_of(connection, statement, parameters, tenant_setting, generic=False)
            print(f"\n  {short_sql(statement)}")
            print(f"    run by: {', '.join(kinds)}")
            for line in custom:
                print(f"      {clip(line, 160)}")
            print(f"    => {verdict(custom, leading, rows)}")
            if isinstance(parameters, dict) and parameters:
                generic = plan_of(
                    connection, statement, parameters, tenant_setting, generic=True, raw=raw
                )
                if shape(generic) != shape(custom):
                    print("    generic plan (differs):")
                    for line in generic:
                        print(f"      {clip(line, 160)}")
                    print(f"    => {verdict(generic, leading, rows)}")
    engine.dispose()


def plan_of(
    connection: Any,
    statement: str,
    parameters: Any,
    tenant_setting: str | None,
    *,
    generic: bool,
    raw: Any = None,
) -> list[str]:
    try:
        if tenant_setting is not None:  # the service's role: the transaction's tenant
            connection.exec_driver_sql(
                "SELECT set_config('scim.tenant', %(t)s, true)", {"t": tenant_setting}
            )
        if not generic:
            return list(
                connection.exec_driver_sql("EXPLAIN (COSTS OFF) " + statement, parameters).scalars()
            )
        # PREPARE with $n, then EXPLAIN EXECUTE with the values as literals, generic forced.
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        prepared = re.sub(r"%\((\w+)\)s", number, statement)
        connection.exec_driver_sql("PREPARE scim_bench_plan AS " + prepared)
        connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        values = ", ".join(sql.Literal(parameters[name]).as_string(raw) for name in names)
        execute = f"EXPLAIN (COSTS OFF) EXECUTE scim_bench_plan({values})".replace("%", "%%")
        return list(connection.exec_driver_sql(execute).scalars())
    finally:
        connection.rollback()
        if generic:
            connection.exec_driver_sql("DEALLOCATE scim_bench_plan")
            connection.rollback()


def shape(plan: list[str]) -> list[tuple[str, ...]]:
    """The plan's nodes (kind, index, table), without the values in its conditions."""
    return [found.groups() for line in plan if (found := NODE.match(line))]


def verdict(plan: list[str], leading: dict[str, str], rows: dict[str, int]) -> str:
    found = []
    for position, line in enumerate(plan):
        if scan := SEQ_SCAN.search(line):
            table = scan.group(1)
            found.append(f"SEQUENTIAL SCAN of {table} ({rows.get(table, '?')} rows in the table)")
            continue
        used = INDEX_USED.search(line)
        if not used:
            continue
        name = used.group(1)
        condition = next(
            (
                later.strip()
                for later in plan[position + 1 :]
                if "Index Cond:" in later or INDEX_USED.search(later) or SEQ_SCAN.search(later)
            ),
            "",
        )
        has_tenant = "Index Cond:" in condition and "tenant_id" in condition
        found.append(
            f"{name} (leads with {leading.get(name, '?')}; "
            f"Index Cond {'has' if has_tenant else 'LACKS'} tenant_id)"
        )
    return "; ".join(found) if found else f"no scan ({plan[0].strip()})"


def analyze_page(setup: Setup) -> None:
    """The page request's statements on users, run with EXPLAIN ANALYZE as the setup's role in
    its tenant: the plan's nodes, their filters and the execution time."""
    engine = create_engine(setup.url)
    print(f"\n  {setup.label}:")
    with engine.connect() as connection:
        for statement, parameters, _ in setup.captured["GET page (random startIndex)"]:
            if not statement.startswith("SELECT") or "FROM users" not in statement:
                continue
            connection.exec_driver_sql(
                "SELECT set_config('scim.tenant', %(t)s, true)", {"t": str(setup.tenant_id)}
            )
            plan = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, COSTS OFF) " + statement, parameters
            ).scalars()
            connection.rollback()
            print(f"    {short_sql(statement)[:100]}")
            for line in plan:
                if re.search(r"Scan|Sort|Gather|Aggregate|Limit|Filter|Cond|Execution", line):
                    print(f"      {clip(line, 140)}")
    engine.dispose()


def explain_sqlite(setup: Setup) -> None:
    with setup.engine.connect() as connection:
        for statement, (parameters, kinds) in distinct_statements(setup).items():
            if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
                continue
            plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            print(f"\n  {short_sql(statement)}")
            print(f"    run by: {', '.join(kinds)}")
            for row in plan:
                print(f"      {row[-1]}")
        connection.rollback()


# --- databases ------------------------------------------------------------------------------


@contextmanager
def postgres_databases(admin_url: str, count: int) -> Iterator[list[str]]:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    names = [f"scim_bench_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield [
            make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            for name in names
        ]
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def service_roles(admin_url: str, database_urls: list[str]) -> Iterator[list[str] | None]:
    """deploy/postgres/app-role.sql run on each database (scratch role names): the URLs of its
    service role, or None when the script or psql is missing. The roles are dropped after."""
    psql = shutil.which("psql")
    if not ROLE_SCRIPT.exists() or psql is None:
        why = "deploy/postgres/app-role.sql is absent" if psql else "psql is not installed"
        print(f"row-level security: not measured ({why})")
        yield None
        return
    suffix = uuid.uuid4().hex[:10]
    owner, app_role = f"scim_bench_owner_{suffix}", f"scim_bench_app_{suffix}"
    try:
        urls = []
        for url in database_urls:
            parsed = make_url(url)
            done = subprocess.run(
                [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"owner_role={owner}"]
                + ["-v", f"app_role={app_role}", "-v", "app_password=bench-app-password"]
                + ["-f", str(ROLE_SCRIPT)]
                + ["-d", parsed.set(drivername="postgresql").render_as_string(hide_password=False)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0:
                sys.exit(f"deploy/postgres/app-role.sql failed: {done.stderr}")
            urls.append(
                parsed.set(username=app_role, password="bench-app-password").render_as_string(
                    hide_password=False
                )
            )
        yield urls
    finally:
        roles_to_drop.extend((app_role, owner))


roles_to_drop: list[str] = []


def drop_roles(admin_url: str) -> None:
    """After the databases that hold their privileges are gone."""
    if not roles_to_drop:
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for role in roles_to_drop:
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()
    roles_to_drop.clear()


def run(dialect: str, args: argparse.Namespace) -> None:
    sizes = Sizes(args.users, args.groups, args.members)
    measured = max(1, (args.tenants + 1) // 2)
    with contextlib.ExitStack() as stack:
        if dialect == "sqlite":
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scim-bench-")))
            single_url, many_url = (
                f"sqlite:///{folder}/{name}.sqlite3" for name in ("single", "many")
            )
            jobs = args.jobs or 1  # SQLite has one writer: more processes only queue on it
        else:
            stack.callback(drop_roles, args.postgres_url)
            single_url, many_url = stack.enter_context(postgres_databases(args.postgres_url, 2))
            jobs = args.jobs or os.cpu_count() or 1
        print(
            f"\n=== {dialect}: single = 1 tenant x {args.users:,} users; "
            f"many = {args.tenants} tenants x {args.users:,} users, "
            f"measured on customer-{measured:03d}"
        )
        print(f"seeded single: {seed_database(single_url, 1, measured, sizes, 1)}")
        print(f"seeded many:   {seed_database(many_url, args.tenants, measured, sizes, jobs)}")
        setups = [
            open_setup("single", single_url, measured, sizes),
            open_setup("many", many_url, measured, sizes),
        ]
        ratios = [("many/single", setups[1], setups[0])]
        role_urls = None
        if dialect == "postgresql":
            role_urls = stack.enter_context(
                service_roles(args.postgres_url, [single_url, many_url])
            )
            if role_urls:
                setups += [
                    open_setup("single-rls", role_urls[0], measured, sizes, slot=1),
                    open_setup("many-rls", role_urls[1], measured, sizes, slot=1),
                ]
                ratios += [
                    ("many/single RLS", setups[3], setups[2]),
                    ("many RLS/owner", setups[3], setups[1]),
                ]
        with setups[1].app.app_context():
            version = db.session.execute(
                text(
                    "SELECT version()"
                    if dialect == "postgresql"
                    else "SELECT 'SQLite ' || sqlite_version()"
                )
            ).scalar()
            db.session.rollback()
        print(f"{version}")
        if role_urls:
            print(
                "single, many: as the superuser that owns the tables (row-level security skipped); "
                "-rls: as app-role.sql's service role (row-level security applied)"
            )
        print(f"{args.rounds} rounds after {args.warmup} warm-up rounds, setups interleaved")
        started = time.perf_counter()
        measure(setups, args.rounds, args.warmup, args.users)
        print(f"measured in {time.perf_counter() - started:.0f} s")
        print_tables(setups, ratios)
        many = setups[1]
        if dialect == "postgresql":
            print(
                f"\nEXPLAIN on the {args.tenants}-tenant database (tenant id {many.tenant_id}), "
                "each statement the requests ran, as the tables' owner:"
            )
            explain_postgres(many, many_url, None)
            if role_urls:
                print(f"\nEXPLAIN as the service role (scim.tenant = {many.tenant_id}):")
                explain_postgres(setups[3], role_urls[1], str(many.tenant_id))
                print(
                    "\nEXPLAIN ANALYZE of the page's statements on users (startIndex "
                    f"{args.users // 2}), on every setup: where row-level security costs"
                )
                for setup in setups:
                    analyze_page(setup)
        elif args.explain:
            print(f"\nEXPLAIN QUERY PLAN on the {args.tenants}-tenant database:")
            explain_sqlite(many)
        for setup in setups:
            setup.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES),
        help="a superuser's URL: the scratch databases and roles are made there",
    )
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--users", type=int, default=10_000, help="per tenant")
    parser.add_argument("--groups", type=int, default=10, help="per tenant")
    parser.add_argument("--members", type=int, default=100, help="per group")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--jobs",
        type=int,
        help="seeding processes (default: 1 on SQLite, one per CPU on PostgreSQL)",
    )
    parser.add_argument("--explain", action="store_true", help="SQLite's plans too")
    args = parser.parse_args()
    if args.groups < 2 or args.users < max(PAGE + 2, args.groups * args.members + 2):
        parser.error("--groups >= 2, and --users above --groups x --members + 1 and a page")
    # Its stdout lines, not its rows: a filter, which survives the logging set-up of migrations.
    logging.getLogger("scim.audit").addFilter(lambda record: False)
    for dialect in args.databases.split(","):
        run(dialect.strip(), args)


if __name__ == "__main__":
    main()
