"""`flask console ...`: set the admin password that switches the console on; end sessions."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from app.store import console as store

MIN_PASSWORD_LENGTH = 12

group = AppGroup("console", help="The operator console at /console/.")


@group.command("set-password")
@click.option("--username", default="admin", show_default=True, help="The admin to set.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)
def set_password(username: str, password_stdin: bool) -> None:
    """Set (or change) the console admin's password; the console is off until one is set."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(
            f"the password must be at least {MIN_PASSWORD_LENGTH} characters"
        )
    if not username.strip():
        raise click.ClickException("the username must not be empty")
    admin = store.set_password(username, password)
    click.echo(f"Console password set for {admin.username!r}; its earlier sessions have ended.")


@group.command("logout-all")
def logout_all() -> None:
    """End every console session of every admin (a lost laptop, a departing operator)."""
    ended = store.end_sessions(idle=current_app.permanent_session_lifetime)
    click.echo(f"Ended {ended} console session(s); the admins' passwords are unchanged.")
