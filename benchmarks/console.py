#!/usr/bin/env python3
"""The operator console at 100,000 users (issue 8): render time of its users page and searches.

    .venv/bin/python benchmarks/console.py                      # SQLite in a temp dir
    .venv/bin/python benchmarks/console.py --database-url postgresql+psycopg://...  # an empty db

Users are seeded with the bulk INSERTs of benchmarks/filters.py (rows as store/users.py writes
them); a group holding every user is added for the group page. Each page is requested through
Flask's test client by a logged-in admin: the numbers are the service's own time (SQL plus
template), without network or browser. Prints the median of --repeat requests per page.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import flask_migrate  # noqa: E402
from filters import seed_users  # noqa: E402  (benchmarks/filters.py)
from flask.testing import FlaskClient  # noqa: E402
from sqlalchemy import func, insert, select, text  # noqa: E402

from app import create_app  # noqa: E402
from app.db import db, utcnow  # noqa: E402
from app.models import Group, GroupMember, User  # noqa: E402
from app.store import console as console_store  # noqa: E402

PASSWORD = "benchmark console password"


def log_in(client: FlaskClient) -> None:
    page = client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    response = client.post(
        "/console/login",
        data={"csrf": csrf.group(1), "username": "admin", "password": PASSWORD},
    )
    assert response.status_code == 302, response.status_code


def seed_group(user_ids: list[str]) -> str:
    group_id = str(uuid.uuid4())
    now = utcnow()
    db.session.execute(
        insert(Group),
        [
            {
                "id": group_id,
                "display_name": "Everyone",
                "display_name_key": "everyone",
                "created_at": now,
                "last_modified": now,
                "version": 1,
            }
        ],
    )
    for start in range(0, len(user_ids), 10_000):
        db.session.execute(
            insert(GroupMember),
            [
                {"group_id": group_id, "member_id": user_id, "member_type": "User"}
                for user_id in user_ids[start : start + 10_000]
            ],
        )
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("ANALYZE groups"))
        db.session.execute(text("ANALYZE group_members"))
        db.session.commit()
    return group_id


def median_ms(client: FlaskClient, url: str, repeat: int) -> float:
    for _ in range(3):
        assert client.get(url).status_code == 200, url
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a tmp dir)")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='scim-bench-')}/c.sqlite3"
    app = create_app({"DATABASE_URL": url})
    with app.app_context():
        flask_migrate.upgrade()
        if db.session.scalar(select(func.count()).select_from(User)):
            sys.exit("the database must be empty: the benchmark seeds its own users")
        started = time.perf_counter()
        people = seed_users(random.Random(5), 0, args.users)
        user_ids = list(db.session.scalars(select(User.id)))
        group_id = seed_group(user_ids)
        print(
            f"database: {db.engine.dialect.name}   {args.users:,} users and a group of them all "
            f"seeded in {time.perf_counter() - started:.1f} s   median of {args.repeat} requests"
        )
        console_store.set_password("admin", PASSWORD)
        client = app.test_client()
        log_in(client)
        someone = people[len(people) // 2]
        deep = max(1, min(1000, args.users // console_store.PER_PAGE))
        pages = {
            "users page (by userName)": "/console/users",
            "users page, last modified first": "/console/users?sort=lastModified&order=desc",
            "users page sorted by name": "/console/users?sort=name",
            f"users page {deep:,} (by userName)": f"/console/users?sort=userName&page={deep}",
            "search text: a family name": f"/console/users?q={someone.family_name}",
            "search text: part of an email": f"/console/users?q={someone.work_email[:12]}",
            "search filter: userName eq": f'/console/users?q=userName eq "{someone.user_name}"',
            "search filter: familyName sw + active": (
                f'/console/users?q=name.familyName sw "{someone.family_name[:3]}" '
                "and active eq true"
            ),
            f"group page, {args.users:,} members": f"/console/groups/{group_id}",
            f"group page {deep:,} of its members": f"/console/groups/{group_id}?page={deep}",
            "dashboard": "/console/",
        }
        print()
        print(f"{'GET /console/...':<44}{'ms':>10}")
        for label, page in pages.items():
            print(f"{label:<44}{median_ms(client, page, args.repeat):>10.1f}")


if __name__ == "__main__":
    main()
