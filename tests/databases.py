"""Where the test databases come from: a SQLite file, and a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str | None:
    """TEST_DATABASE_URL, or the local server; None when neither answers (skip, unless CI)."""
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES)
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return url
    except OperationalError as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but PostgreSQL is not reachable at {url}: {e}")
        return None


@contextmanager
def scratch_postgres_database(*, locale: str | None = None) -> Iterator[str]:
    """A fresh database for one test session, dropped afterwards: parallel runs never collide.

    `locale` (such as "C") sets the new database's LC_CTYPE and LC_COLLATE instead of the
    server's defaults, copying template0 as PostgreSQL requires for a different locale.
    """
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip(
            "PostgreSQL not reachable at TEST_DATABASE_URL or 127.0.0.1:5432; "
            "PostgreSQL tests skipped (they run in CI)"
        )
    name = f"scim_test_{uuid.uuid4().hex[:12]}"
    create = f'CREATE DATABASE "{name}"'
    if locale is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.@-]+", locale):
            raise ValueError(f"not a locale name: {locale!r}")
        create += f" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE '{locale}' LC_CTYPE '{locale}'"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(create))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
