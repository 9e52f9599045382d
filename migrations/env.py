"""Alembic environment: migrates the database of the Flask app it runs in (flask db ...)."""

import logging
from contextlib import contextmanager
from logging.config import fileConfig

from alembic import context
from flask import current_app

from app.db import migration_engine
from app.models import is_search_object

config = context.config
# disable_existing_loggers=False: migrating from inside the app must not silence its loggers.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db
# MIGRATION_DATABASE_URL (the tables' owner) when set, else the app's DATABASE_URL.
engine = migration_engine(current_app.config)
config.set_main_option(
    "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
)


def render_item(type_, obj, autogen_context):
    """Write app.db.UTCDateTime as the type it stores, so revisions import nothing of ours."""
    from app.db import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def include_name(name, type_, parent_names):
    """`flask db migrate` leaves the console search's indexes alone: the models cannot declare
    them (app/models.py); migration 0011 made them."""
    return not is_search_object(name)


def run_migrations_offline():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_db.metadata,
        literal_binds=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def process_revision_directives(context, revision, directives):
        # `flask db migrate` with no model change writes no empty revision.
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args.setdefault("render_item", render_item)
    conf_args.setdefault("include_name", include_name)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        with _sqlite_foreign_keys_off(connection):
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Migrations move rows of every tenant: the row-level security policies
                    # (0009) let the owner see them all only when it says so.
                    connection.exec_driver_sql("SELECT set_config('scim.tenant', '*', true)")
                context.run_migrations()


@contextmanager
def _sqlite_foreign_keys_off(connection):
    """On SQLite, foreign keys off while the migrations run, checked once they have committed.

    Alembic's batch mode changes a SQLite table by copying it and dropping the old one; with
    foreign keys on (app.db turns them on for every connection), that drop deletes the rows of
    every table referencing it through ON DELETE CASCADE: rebuilding `users` would empty
    user_values. SQLite ignores the pragma inside a transaction, so it is set on the driver's
    connection before the migrations' transaction begins (sqlite.org/lang_altertable.html).
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
        violations = raw.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            raise RuntimeError(
                f"the migrations left rows whose foreign key fails: {violations[:5]}"
            )
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
