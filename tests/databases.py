"""Where the test databases come from: a SQLite file, and a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# The script production runs to make the service's PostgreSQL roles (docs/tenancy.md).
APP_ROLE_SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "postgres" / "app-role.sql"


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


@dataclass(frozen=True)
class Deployment:
    """A PostgreSQL database with the two roles of deploy/postgres/app-role.sql."""

    admin_url: str  # a superuser: what the test suite's other databases are used as
    owner_url: str  # owns the tables; the migrations run as it
    app_url: str  # the service's role, neither owner, SUPERUSER nor BYPASSRLS
    owner_role: str
    app_role: str


@contextmanager
def two_roles(admin_url: str) -> Iterator[Deployment]:
    """Run deploy/postgres/app-role.sql on the database, as a superuser, for two roles of unique
    names; `drop_roles_later()` drops them once the database is gone (they hold its objects)."""
    psql = shutil.which("psql")
    if psql is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but psql is not installed: deploy/postgres/app-role.sql needs it")
        pytest.skip("psql is not installed: deploy/postgres/app-role.sql cannot be run")
    suffix = uuid.uuid4().hex[:10]
    owner_role, app_role = f"scim_owner_{suffix}", f"scim_app_{suffix}"
    url = make_url(admin_url)
    try:
        done = subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"owner_role={owner_role}"]
            + ["-v", f"app_role={app_role}", "-v", "owner_password=owner-secret-1"]
            + ["-v", "app_password=app-secret-1", "-f", str(APP_ROLE_SCRIPT)]
            + ["-d", url.set(drivername="postgresql").render_as_string(hide_password=False)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        owner_url = url.set(username=owner_role, password="owner-secret-1")
        app_url = url.set(username=app_role, password="app-secret-1")
        yield Deployment(
            admin_url,
            owner_url.render_as_string(hide_password=False),
            app_url.render_as_string(hide_password=False),
            owner_role,
            app_role,
        )
    finally:
        _roles_to_drop.extend((app_role, owner_role))


_roles_to_drop: list[str] = []


def drop_roles_later() -> None:
    """Drop the roles two_roles made, after the scratch databases holding their objects."""
    if _roles_to_drop and (admin_url := postgres_admin_url()) is not None:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for role in _roles_to_drop:
                connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
    _roles_to_drop.clear()
