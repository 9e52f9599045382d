#!/usr/bin/env python3
"""The console's plain-text search at 1,000,000 users (issue 16): the LIKE scan vs the index.

    .venv/bin/python benchmarks/console_search.py                  # SQLite in a temp dir
    .venv/bin/python benchmarks/console_search.py --users 100000   # fewer users
    .venv/bin/python benchmarks/console_search.py --database-url postgresql+psycopg://...

--database-url names an empty database (createdb one); --reuse takes one this script seeded
before, with the same --users, and skips the seeding (1,000,000 users: about 2.5 minutes on
PostgreSQL, 3.5 on SQLite, and a 1.5 GB SQLite file, 2 GB with the index).

Users go into the default tenant in bulk, at the revision before 0011_console_search, by
benchmarks/bulk.py: rows built by store/users.py's own `columns` and `value_rows`, with COPY on
PostgreSQL and executemany on SQLite, then ANALYZE. Seeded names come from benchmarks/filters.py
(common family names for 60%).

"LIKE scan" is timed there, before the index: the console's statements as they were (every
folded column with LIKE '%text%', emails through an IN subquery, then the count). Then 0011
runs (timed: the index built over the rows present), and "index" is the console's search now,
store/console.py's `users` as the users page calls it. Both give the same page (checked). Each
is the median and the 95th percentile (nearest rank) of its runs after one warm-up; "page" is
the users page with the search through Flask's test client (SQL plus template), median.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import flask_migrate  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402
from bulk import seed  # noqa: E402  (benchmarks/bulk.py)
from console import PASSWORD, log_in  # noqa: E402  (benchmarks/console.py)
from filters import COMMON_FAMILY_NAMES  # noqa: E402  (benchmarks/filters.py)
from sqlalchemy import func, or_, select, text  # noqa: E402

from app import create_app, tenancy  # noqa: E402
from app.db import db  # noqa: E402
from app.filters import sql as filters  # noqa: E402
from app.models import User, UserValue  # noqa: E402
from app.schema.core import USER_RESOURCE  # noqa: E402
from app.store import console as console_store  # noqa: E402
from app.store import pages  # noqa: E402
from app.store import users as users_store  # noqa: E402

BEFORE_INDEX = "0010_rls_inline"  # the revision before 0011_console_search


def old_text(search: str) -> Any:
    """The console's text search before the index: every folded column with LIKE, emails
    through an IN subquery (store/console.py's `_text` until migration 0011)."""
    pattern = console_store._contains(search)
    emails = select(UserValue.user_id).where(
        UserValue.attribute == "emails", UserValue.value_key.like(pattern, escape="\\")
    )
    full_name = (
        func.coalesce(User.given_name_key, "") + " " + func.coalesce(User.family_name_key, "")
    )
    columns = (User.user_name_key, User.display_name_key, full_name)
    return or_(*(c.like(pattern, escape="\\") for c in columns), User.id.in_(emails))


def scan_listing(search: str) -> console_store.Listing:
    """The users page's listing as the console made it before the index (sorted by userName)."""
    keys = [
        pages.Key(filters.users_sort_key("userName", USER_RESOURCE), nullable=True),
        pages.Key(User.created_at),
        pages.Key(User.id),
    ]
    query = users_store.live().where(old_text(search))
    return console_store._listing(query, keys, 1, console_store.PER_PAGE, "text", None)


def index_listing(search: str) -> console_store.Listing:
    return console_store.users(USER_RESOURCE, search)


def timed(action: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median and 95th percentile (nearest rank) in ms of `repeat` runs after one warm-up."""
    result = action()
    db.session.rollback()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        samples.append((time.perf_counter() - started) * 1000)
        db.session.rollback()  # each run in a transaction of its own, as a page is
    samples.sort()
    p95 = samples[max(0, math.ceil(0.95 * len(samples)) - 1)]
    return statistics.median(samples), p95, result


def queries(count: int) -> dict[str, str]:
    """Search text of different reach, taken from users seeded at fixed positions."""

    def person(n: int) -> User:
        return db.session.scalars(
            select(User).order_by(User.created_at, User.id).offset(n).limit(1)
        ).one()

    middle = person(count // 2)
    rare = next(
        user
        for n in range(count // 3, count)
        if (user := person(n)).family_name not in COMMON_FAMILY_NAMES
    )
    local = middle.user_name.split("@")[0]
    return {
        "email, 8 characters of one": local[-8:],
        "rare family name, 6 characters": rare.family_name[:6],
        "given and family, with space": f"{rare.given_name} {rare.family_name[:3]}",
        # Chosen from the seeded names: about 0.03% of users have it (name and email).
        "3 characters, a few hundred": "zli",
        "3 characters, thousands": "erg",
        "a common family name": "smith",
        "every user's email domain": "example",
        "2 characters (no index)": "zo",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a tmp dir)")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9, help="runs per query with the index")
    parser.add_argument("--repeat-scan", type=int, default=3, help="runs per query, LIKE scan")
    parser.add_argument("--reuse", action="store_true", help="a database seeded by this script")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='scim-bench-')}/s.sqlite3"
    app = create_app({"DATABASE_URL": url})
    with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        with db.engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
        dialect = db.engine.dialect.name
        if revision is None:
            flask_migrate.upgrade(revision=BEFORE_INDEX)
            print(f"seeding {args.users:,} users into {dialect}", flush=True)
            print(f"seeded in {seed(args.users):.0f} s", flush=True)
        elif not args.reuse:
            sys.exit("the database must be empty (or seeded by this script: --reuse)")
        elif revision != BEFORE_INDEX:
            flask_migrate.downgrade(revision=BEFORE_INDEX)  # "before" is measured without it
        present = db.session.scalar(select(func.count()).select_from(User))
        db.session.commit()
        if present != args.users:
            sys.exit(f"the database holds {present:,} users, not --users {args.users:,}")
        searches = queries(args.users)

        print(f"before migration 0011: the LIKE scan, {args.repeat_scan} runs a query", flush=True)
        before = {
            label: timed(lambda s=s: scan_listing(s), args.repeat_scan)
            for label, s in searches.items()
        }
        started = time.perf_counter()
        flask_migrate.upgrade()
        db.session.execute(text("ANALYZE"))
        db.session.commit()
        print(f"migration 0011 (the search index) took {time.perf_counter() - started:.0f} s")
        console_store.set_password("admin", PASSWORD)
        client = app.test_client()
        log_in(client)

        print()
        print(
            f"{dialect}, {args.users:,} users in one tenant; ms, median and p95 "
            f"(LIKE scan: {args.repeat_scan} runs, index: {args.repeat})"
        )
        header = f"{'query':<32}{'text':<20}{'matches':>12}"
        header += f"{'LIKE scan':>18}{'index':>16}{'faster':>8}{'page':>8}"
        print(header)
        for label, search in searches.items():
            scan_median, scan_p95, scanned = before[label]
            median, p95, listing = timed(lambda s=search: index_listing(s), args.repeat)
            assert [u.id for u in listing.rows] == [u.id for u in scanned.rows], label
            assert listing.more or listing.total == scanned.total, label
            matches = f"> {listing.total:,}" if listing.more else f"{listing.total:,}"
            address = "/console/t/default/users?" + urlencode({"q": search})
            page, _, response = timed(lambda a=address: client.get(a), args.repeat)
            assert response.status_code == 200, address
            print(
                f"{label:<32}{search[:19]:<20}{matches:>12}"
                f"{scan_median:>9.1f}{scan_p95:>9.1f}{median:>8.1f}{p95:>8.1f}"
                f"{scan_median / median:>7.0f}x{page:>8.1f}",
                flush=True,
            )
        print("page: GET of the users page with the search, through Flask's test client (median)")


if __name__ == "__main__":
    main()
