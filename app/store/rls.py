"""Whether PostgreSQL's row-level security applies to the service's own role, checked at start.

The policies of migration 0009 (app/store/scope.py sets what they compare) are skipped for
superusers and for roles with BYPASSRLS: a service connected as one keeps the store layer's
tenant scope, and loses the second layer without a sign. So the service says so, once, at
start-up, naming the role. The check runs in a thread of its own, on a connection of its own
with short timeouts, and whatever happens to it never delays or fails start-up.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# Seconds to connect, and for the one query: the answer is advice, never worth a wait.
TIMEOUT_SECONDS = 3
DOCS = "docs/tenancy.md"


@dataclass(frozen=True)
class Role:
    """The role a connection runs as, and the attributes that skip row-level security."""

    name: str
    superuser: bool
    bypass_rls: bool

    @property
    def bypasses_rls(self) -> bool:
        return self.superuser or self.bypass_rls


def start_check(app: Flask) -> threading.Thread | None:
    """On PostgreSQL, check the service's role in a background thread (kept in
    app.extensions["scim_rls_check"], which tests join); nothing to check on SQLite."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "postgresql":
        return None
    thread = threading.Thread(target=_warn_if_bypassed, args=(url,), name="rls-check", daemon=True)
    app.extensions["scim_rls_check"] = thread
    thread.start()
    return thread


def role_of(url: URL) -> Role:
    """The role a connection to `url` runs as. Unpooled: the connection is closed on return."""
    engine = create_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={TIMEOUT_SECONDS * 1000}",
        },
    )
    try:
        with engine.connect() as connection:
            name, superuser, bypass_rls = connection.execute(
                text(
                    "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles "
                    "WHERE rolname = current_user"
                )
            ).one()
    finally:
        engine.dispose()
    return Role(name, superuser, bypass_rls)


def warning(role: Role) -> str | None:
    """What the service logs about its role; None when row-level security applies to it."""
    if not role.bypasses_rls:
        return None
    why = "a superuser" if role.superuser else "a role with BYPASSRLS"
    return (
        f'row-level security does not apply: the service connects to PostgreSQL as "{role.name}", '
        f"{why}, so tenant isolation rests on the store layer alone. Connect DATABASE_URL as a "
        "role without SUPERUSER or BYPASSRLS and run migrations as the tables' owner with "
        f"MIGRATION_DATABASE_URL (deploy/postgres/app-role.sql; {DOCS})"
    )


def _warn_if_bypassed(url: URL) -> None:
    try:
        role = role_of(url)
    except SQLAlchemyError as e:
        # The database is down or refuses us: /readyz and the first request will say so.
        log.debug("row-level security check skipped: %s", type(e).__name__)
        return
    if message := warning(role):
        log.warning(message)
