"""Users seeded in bulk with the store's own row shapes, for the benchmarks at 1,000,000 users.

Rows built by store/users.py's own `columns` and `value_rows` (the folded key columns, a work
email per user and a home address for 40%: benchmarks/filters.py's people), with COPY on
PostgreSQL and executemany on SQLite, CHUNK users a transaction, then ANALYZE. Through the
session, so that the tenant scope and, on SQLite, the console search's triggers apply as they do
to any write. Used by console_search.py and scale.py.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from filters import make_person  # benchmarks/filters.py (the caller puts benchmarks/ on the path)
from sqlalchemy import insert, text

from app import tenancy, validate
from app.db import db, utcnow
from app.models import User, UserValue
from app.schema.core import USER_RESOURCE
from app.store import users as users_store

CHUNK = 10_000
USER_COLUMNS = (
    "tenant_id id user_name user_name_key external_id display_name given_name family_name "
    "display_name_key given_name_key family_name_key active password_hash document document_key "
    "created_at last_modified deleted_at version"
).split()
VALUE_COLUMNS = "tenant_id user_id attribute value value_key primary data data_key".split()


def rows(rng: random.Random, count: int, first: int = 0) -> Iterator[tuple[list[dict], list[dict]]]:
    """Users first..first+count-1 and their user_values rows, CHUNK users at a time, as
    store/users.py writes them. User n was created n * 30 s after a year ago, as of the call."""
    started = utcnow() - timedelta(days=365)
    for start in range(first, first + count, CHUNK):
        users, values = [], []
        for n in range(start, min(start + CHUNK, first + count)):
            _, body = make_person(rng, n)
            document = {key: value for key, value in body.items() if key != "schemas"}
            if n < 1000:  # what validation would make of it: the body as sent, but schemas
                assert validate.resource(USER_RESOURCE, body).document == document
            user_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            created = started + timedelta(seconds=n * 30)
            user = users_store.columns(USER_RESOURCE, document)
            user |= {
                "tenant_id": tenancy.DEFAULT_TENANT_ID,
                "id": user_id,
                "password_hash": None,
                "created_at": created,
                "last_modified": created,
                "deleted_at": None,
                "version": 1,
            }
            users.append(user)
            for value in users_store.value_rows(USER_RESOURCE, user_id, document):
                values.append(value | {"tenant_id": tenancy.DEFAULT_TENANT_ID})
        yield users, values


def seed(count: int, first: int = 0) -> float:
    """Seed users first..first+count-1 into the default tenant (entered by the caller), then
    ANALYZE; returns the seconds it took."""
    started = time.perf_counter()
    rng = random.Random(5 + first)  # another stream of ids for each batch
    postgres = db.engine.dialect.name == "postgresql"
    for n, (users, values) in enumerate(rows(rng, count, first)):
        if postgres:
            copy_rows("users", USER_COLUMNS, users)
            copy_rows("user_values", VALUE_COLUMNS, values)
        else:
            db.session.execute(insert(User), users)
            db.session.execute(insert(UserValue), values)
        db.session.commit()
        done = min((n + 1) * CHUNK, count)
        if done % 100_000 == 0 or done == count:
            print(f"  {done:>9,} users  {time.perf_counter() - started:6.1f} s", flush=True)
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return time.perf_counter() - started


def copy_rows(table: str, columns: list[str], records: list[dict[str, Any]]) -> None:
    """PostgreSQL's COPY, through the session's connection (and so its transaction)."""
    raw = db.session.connection().connection.driver_connection
    names = ", ".join(f'"{c}"' for c in columns)
    jsons = {"document", "document_key", "data", "data_key"}
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for record in records:
            copy.write_row([json.dumps(record[c]) if c in jsons else record[c] for c in columns])
