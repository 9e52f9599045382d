"""`flask` commands for operators: named tokens, purging old data, counts.

flask tokens create NAME          # prints the new token once; only its hash is stored
flask tokens list                 # names and dates, never hashes
flask tokens rotate NAME [--keep-old]
flask tokens revoke NAME [--old]
flask purge [--tombstones-older-than DAYS] [--audit-older-than DAYS]
flask stats

Every command of the app, `flask db ...` included, reports a database it cannot use in one line
naming it (host, port, database, user) and the cause, instead of a traceback.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

from app import auth
from app.db import describe_outage, is_missing_table
from app.store import audit, maintenance, tokens

# Names appear in audit lines and rate-limit keys: short, printable, and never "env-N", which
# names the tokens of SCIM_TOKEN_HASHES.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENV_NAME = re.compile(r"env-\d+")


def init_app(app: Flask) -> None:
    """Runs last in create_app, so that it also wraps Flask-Migrate's and the console's commands."""
    app.cli.add_command(tokens_group)
    app.cli.add_command(purge)
    app.cli.add_command(stats)
    for name, command in list(app.cli.commands.items()):
        app.cli.add_command(_reporting_database_failures(command, app), name)


def _reporting_database_failures(command: click.Command, app: Flask) -> click.Command:
    """The same command (a copy: Flask-Migrate's `db` group is shared by every app), whose
    database failures end it with one line, `Error: cannot use the database ...`, and status 1."""
    wrapped = copy.copy(command)

    def invoke(ctx: click.Context) -> object:
        try:
            return command.invoke(ctx)
        except (OperationalError, InterfaceError, ProgrammingError) as e:
            missing_table = is_missing_table(e)
            if isinstance(e, ProgrammingError) and not missing_table:
                raise  # a bug, not the database: the traceback is what helps
            with app.app_context():
                line = describe_outage(e)
            hint = " (run `flask db upgrade` first)" if missing_table else ""
            raise click.ClickException(
                f"cannot use the database (DATABASE_URL): {line}{hint}"
            ) from None

    wrapped.invoke = invoke  # type: ignore[method-assign]
    return wrapped


@click.group("tokens", cls=AppGroup)  # its commands run in an app context
def tokens_group() -> None:
    """Named bearer tokens, stored as SHA-256 hashes (SCIM_TOKEN_HASHES keeps working too)."""


@tokens_group.command("create")
@click.argument("name")
def create_token(name: str) -> None:
    """Create a token named NAME and print it, once."""
    _check_name(name)
    token = auth.new_token()
    _or_fail(lambda: tokens.create(name, auth.token_hash(token)))
    _print_token(name, token)


@tokens_group.command("list")
def list_tokens() -> None:
    """Every token: name, state, created, replaced, revoked, last used (never a hash)."""
    rows = tokens.all_tokens()
    if not rows:
        click.echo("No tokens in the database (SCIM_TOKEN_HASHES may still hold some).")
        return
    header = ("NAME", "STATE", "CREATED", "REPLACED", "REVOKED", "LAST USED")
    lines = [header] + [
        (
            row.name,
            "revoked" if row.revoked_at else "old (valid)" if row.replaced_at else "current",
            _date(row.created_at),
            _date(row.replaced_at),
            _date(row.revoked_at),
            _date(row.last_used_at),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


@tokens_group.command("rotate")
@click.argument("name")
@click.option(
    "--keep-old",
    is_flag=True,
    help="Keep the old token valid until `flask tokens revoke NAME --old`.",
)
def rotate_token(name: str, keep_old: bool) -> None:
    """Issue a new token for NAME; the old one is revoked at once unless --keep-old."""
    token = auth.new_token()
    _or_fail(lambda: tokens.rotate(name, auth.token_hash(token), keep_old=keep_old))
    _print_token(name, token)
    if keep_old:
        click.echo(f"The old token stays valid until: flask tokens revoke {name} --old")
    else:
        click.echo("The old token is revoked.")


@tokens_group.command("revoke")
@click.argument("name")
@click.option("--old", "old_only", is_flag=True, help="Only the tokens a rotation replaced.")
def revoke_token(name: str, old_only: bool) -> None:
    """Revoke every valid token named NAME (with --old: only those replaced by a rotation)."""
    count = _or_fail(lambda: tokens.revoke(name, old_only=old_only))
    click.echo(f"Revoked {count} token{'s' if count != 1 else ''} named {name}.")


@click.command("purge")
@with_appcontext
@click.option(
    "--tombstones-older-than",
    "tombstone_days",
    type=click.IntRange(min=0),
    help="Hard-delete users and groups deleted more than DAYS days ago.",
)
@click.option(
    "--audit-older-than",
    "audit_days",
    type=click.IntRange(min=1),
    help="Delete audit events older than DAYS days (default: SCIM_AUDIT_RETENTION_DAYS).",
)
def purge(tombstone_days: int | None, audit_days: int | None) -> None:
    """Delete old audit events (always, by the retention setting) and, when asked, tombstones."""
    if tombstone_days is not None:
        purged = maintenance.purge_tombstones(tombstone_days)
        click.echo(
            f"Purged {purged.users} deleted users and {purged.groups} deleted groups "
            f"older than {tombstone_days} days."
        )
    days = audit_days or current_app.config["SCIM_AUDIT_RETENTION_DAYS"]
    if not days:
        click.echo("Audit events are kept (SCIM_AUDIT_RETENTION_DAYS=0).")
        return
    click.echo(f"Purged {audit.purge(days)} audit events older than {days} days.")


@click.command("stats")
@with_appcontext
def stats() -> None:
    """Counts of users, groups, memberships, tombstones and audit events."""
    for name, value in maintenance.counts().items():
        click.echo(f"{name}: {value}")


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or _ENV_NAME.fullmatch(name):
        raise click.BadParameter(
            "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit; "
            "not env-N (the names of SCIM_TOKEN_HASHES)",
            param_hint="NAME",
        )


def _or_fail(action):  # noqa: ANN001, ANN202 - a store call and its result
    try:
        return action()
    except (tokens.NameTaken, tokens.UnknownName) as e:
        raise click.ClickException(str(e)) from None


def _print_token(name: str, token: str) -> None:
    click.echo(f"Token {name} (shown only this once; give it to the IdP as its bearer token):")
    click.echo(token)


def _date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"
