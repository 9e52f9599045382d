#!/usr/bin/env python3
"""Filters, sorting and paging of /Users at 1,000, 10,000 and 100,000 users (issue 5).

    .venv/bin/python benchmarks/filters.py                      # SQLite in a temp dir
    .venv/bin/python benchmarks/filters.py --database-url postgresql+psycopg://...  # an empty db

Prints, per database, the median latency of each query at every size and the ratio of the
largest size to the smaller ones. Targets: `userName eq` and `externalId eq` at 100k within
1.2x of 1k, each served by an index on PostgreSQL (the EXPLAIN lines are printed); a cursor
page at depth 100,000 within 1.5x of the first page, when the service supports RFC 9865
cursors (detected: a ListResponse with `nextCursor`).

Users are seeded with bulk INSERTs through store/users.py `insert_many`, the rows exactly as a
write makes them (the document as validate.resource returns it, its folded copies via app.fold);
each size adds to the previous one. PostgreSQL gets an ANALYZE
after seeding, as autovacuum would. Requests go through Flask's test client: the numbers are
the service's own time, without network or gunicorn.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flask_migrate  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from sqlalchemy import event, func, select, text  # noqa: E402

from app import create_app, tenancy, validate  # noqa: E402
from app.auth import token_hash  # noqa: E402
from app.db import db, utcnow  # noqa: E402
from app.models import User  # noqa: E402
from app.schema.core import USER_RESOURCE, USER_URN  # noqa: E402
from app.store import users as users_store  # noqa: E402

TOKEN = "benchmark-token"
PAGE = 100

# Common family names, commonest first.
COMMON_FAMILY_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White "
    "Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres "
    "Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts "
    "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Kowalski "
    "Nowak Wiśniewski Rossi Russo Ferrari Esposito Bianchi Dubois Lefèvre Moreau Martín "
    "García Fernández Silva Santos Oliveira Pereira Costa Jensen Nielsen Hansen Andersson "
    "Johansson Karlsson O'Brien Murphy Kelly Sullivan Tanaka Suzuki Watanabe Kim Park Chen "
    "Wang Li Zhang Liu Singh Kumar Patel Shah Cohen Levi Novák Dvořák Øster Çelik Yılmaz"
).split()
GIVEN_NAMES = (
    "James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony "
    "Sandra Mark Ashley Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda "
    "Brian Melissa Lukas Anna Leon Sofia Jonas Emma Mateo Lucía Hugo Chloé Jakub Zofia Ahmed "
    "Fatima Hiroshi Yuki Wei Mei Arjun Priya Björn Ingrid Seán Aoife Søren Åsa Noé Zoë"
).split()
SYLLABLES = (
    "an ber bro car del dor fen gar hal har kin lan ler lin mar mer mon nor ost per ran "
    "ren ros sen son ster tal ton vel wal win zel berg feld man ski ova ez ini sen"
).split()


@dataclass(frozen=True)
class Person:
    user_name: str
    external_id: str
    given_name: str
    family_name: str
    display_name: str
    work_email: str


# Roughly as surnames spread in a large workforce: the commonest about 3% of users, the listed
# ones 60%, and a long tail of rarer names (generated from syllables) for the rest.
COMMON_WEIGHTS = [1 / (rank + 5) for rank in range(1, len(COMMON_FAMILY_NAMES) + 1)]


def family_name(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choices(COMMON_FAMILY_NAMES, weights=COMMON_WEIGHTS)[0]
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def ascii_slug(name: str) -> str:
    return "".join(c for c in name.lower() if c in string.ascii_lowercase) or "x"


def make_person(rng: random.Random, n: int) -> tuple[Person, dict[str, Any]]:
    given, family = rng.choice(GIVEN_NAMES), family_name(rng)
    work = f"{ascii_slug(given)}.{ascii_slug(family)}.{n}@example.com"
    external_id = "00u" + "".join(rng.choices(string.ascii_letters + string.digits, k=17))
    emails = [{"value": work, "type": "work", "primary": True}]
    if rng.random() < 0.4:  # some users also have a personal address
        emails.append({"value": f"{ascii_slug(given)}{n}@mail.example.org", "type": "home"})
    body = {
        "schemas": [USER_URN],
        "userName": work,
        "externalId": external_id,
        "name": {"givenName": given, "familyName": family, "formatted": f"{given} {family}"},
        "displayName": f"{given} {family}",
        "emails": emails,
        "active": True,
    }
    person = Person(work, external_id, given, family, f"{given} {family}", work)
    return person, body


def seed_users(rng: random.Random, first: int, count: int) -> list[Person]:
    """Users first..first+count-1, inserted by the store's own bulk path (users.insert_many)."""
    people = []
    started = utcnow() - timedelta(days=365)
    for chunk in range(first, first + count, 5000):
        documents, created = [], []
        for n in range(chunk, min(chunk + 5000, first + count)):
            person, body = make_person(rng, n)
            documents.append(validate.resource(USER_RESOURCE, body).document)
            created.append(started + timedelta(seconds=n))
            people.append(person)
        users_store.insert_many(USER_RESOURCE, documents, created)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("ANALYZE users"))
        db.session.execute(text("ANALYZE user_values"))
        db.session.commit()
    return people


def median_ms(action: Callable[[int], object], repeat: int, warmup: int = 5) -> float:
    for i in range(warmup):
        action(i)
    samples = []
    for i in range(repeat):
        started = time.perf_counter()
        action(warmup + i)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


@contextmanager
def capturing_statements() -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


class Users:
    def __init__(self, client: FlaskClient):
        self.client = client

    def list(self, **params: Any) -> dict[str, Any]:
        response = self.client.get("/scim/v2/Users", query_string=params)
        assert response.status_code == 200, response.json
        return response.json

    def supports_cursors(self) -> bool:
        # RFC 9865: an empty `cursor` asks for the first page; the answer carries nextCursor.
        response = self.client.get("/scim/v2/Users", query_string={"cursor": "", "count": 2})
        return response.status_code == 200 and "nextCursor" in (response.json or {})

    def cursor_at(self, page: int) -> str:
        """The cursor of the `page`th page (1-based), following nextCursor from the first."""
        cursor = ""
        for _ in range(page - 1):
            cursor = self.list(cursor=cursor, count=PAGE)["nextCursor"]
        return cursor


def filter_queries(people: list[Person], rng: random.Random) -> dict[str, Callable[[int], str]]:
    """Filter text per query; each repetition looks up a different, existing user."""
    picks = [rng.choice(people) for _ in range(200)]

    def each(make: Callable[[Person], str]) -> Callable[[int], str]:
        return lambda i: make(picks[i % len(picks)])

    return {
        "userName eq": each(lambda p: f'userName eq "{p.user_name.upper()}"'),
        "externalId eq": each(lambda p: f'externalId eq "{p.external_id}"'),
        "emails[type eq work and value eq]": each(
            lambda p: f'emails[type eq "work" and value eq "{p.work_email}"]'
        ),
        "name.familyName sw (4 letters)": each(
            lambda p: f'name.familyName sw "{p.family_name[:4].lower()}"'
        ),
        "displayName eq": each(lambda p: f'displayName eq "{p.display_name}"'),
        # No index: a scan of the users' folded copies (users.document_key), linear by design.
        "name.formatted eq (scan)": each(lambda p: f'name.formatted eq "{p.display_name.upper()}"'),
    }


def measure(users: Users, people: list[Person], repeat: int, cursors: bool) -> dict[str, float]:
    rng = random.Random(7)
    results: dict[str, float] = {}
    for label, make in filter_queries(people, rng).items():
        results[label] = median_ms(lambda i, make=make: users.list(filter=make(i)), repeat)
    results["sortBy=name.familyName count=100"] = median_ms(
        lambda i: users.list(sortBy="name.familyName", count=PAGE), repeat
    )
    deep = min(1000, len(people) // PAGE)
    results["startIndex page 1"] = median_ms(lambda i: users.list(count=PAGE), repeat)
    results["startIndex deep page"] = median_ms(
        lambda i: users.list(startIndex=(deep - 1) * PAGE + 1, count=PAGE), repeat
    )
    if cursors:
        results["cursor page 1"] = median_ms(lambda i: users.list(cursor="", count=PAGE), repeat)
        cursor = users.cursor_at(deep)
        results["cursor deep page"] = median_ms(
            lambda i: users.list(cursor=cursor, count=PAGE), repeat
        )
    return results


def explain(users: Users, filter_text: str) -> list[str]:
    """PostgreSQL's plan for each statement one request runs, as the service sent it."""
    with capturing_statements() as statements:
        users.list(filter=filter_text)
    lines = []
    with db.engine.connect() as connection:
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("SELECT") or "users" not in statement:
                continue
            plan = connection.exec_driver_sql("EXPLAIN " + statement, parameters).scalars()
            kind = "count" if "count(*)" in statement.lower() else "page"
            lines += [f"{kind}: {line.strip(' ->')}" for line in plan if "Scan" in line]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a tmp dir)")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='scim-bench-')}/b.sqlite3"
    app = create_app({"DATABASE_URL": url, "SCIM_TOKEN_HASHES": token_hash(TOKEN)})
    # The seeding and the checks read and write the default tenant, as the requests' token does.
    with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        flask_migrate.upgrade()
        if db.session.scalar(select(func.count()).select_from(User)):
            sys.exit("the database must be empty: the benchmark seeds its own users")
        dialect = db.engine.dialect.name
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        users = Users(client)
        print(f"database: {dialect}   median of {args.repeat} requests after 5 warm-up requests")

        rng = random.Random(5)
        people: list[Person] = []
        table: dict[int, dict[str, float]] = {}
        plans: list[tuple[str, list[str]]] = []
        for size in sizes:
            started = time.perf_counter()
            people += seed_users(rng, len(people), size - len(people))
            seeded = time.perf_counter() - started
            print(f"seeded up to {size:,} users ({seeded:.1f} s)")
            if size == sizes[0]:  # a next page exists only once there are users
                cursors = users.supports_cursors()
                if not cursors:
                    print("cursors (RFC 9865): not supported by the service yet; not measured")
            table[size] = measure(users, people, args.repeat, cursors)
        if dialect == "postgresql":
            sample = people[len(people) // 2]
            for label, filter_text in filter_queries([sample], rng).items():
                plans.append((f"{label}: {filter_text(0)}", explain(users, filter_text(0))))

        largest = sizes[-1]
        print()
        header = f"{'GET /Users ... (count=100)':<36}" + "".join(f"{s:>11,}" for s in sizes)
        header += "".join(f"{f'{largest // 1000}k/{s // 1000}k':>10}" for s in sizes[:-1])
        print(header + "   (ms)")
        for label in table[largest]:
            row = f"{label:<36}" + "".join(f"{table[s][label]:>11.2f}" for s in sizes)
            row += "".join(f"{table[largest][label] / table[s][label]:>10.2f}" for s in sizes[:-1])
            print(row)
        deep = {s: min(1000, s // PAGE) for s in sizes}
        print(f"(deep page = page {', '.join(f'{deep[s]:,} at {s:,}' for s in sizes)})")
        for name in ("startIndex", "cursor"):
            if f"{name} page 1" in table[largest]:
                first, last = (table[largest][f"{name} {p}"] for p in ("page 1", "deep page"))
                print(f"{name}: deep page / page 1 at {largest:,} users = {last / first:.2f}")
        for label, lines in plans:
            print()
            print(f"EXPLAIN {label}")
            for line in lines:
                print(f"  {line}")


if __name__ == "__main__":
    main()
