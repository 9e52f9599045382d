"""`flask console ...`: set the admin passwords that switch the console on; end sessions."""

from __future__ import annotations

import sys
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from app.store import console as store
from app.store import tenants

MIN_PASSWORD_LENGTH = 12
DEFAULT_USERNAME = "admin"

group = AppGroup("console", help="The operator console at /console/.")


@group.command("set-password")
@click.argument("username", required=False)
@click.option(
    "--username", "username_option", metavar="USERNAME", help="The admin to set (as USERNAME)."
)
@click.option(
    "--tenant",
    metavar="SLUG",
    help="Bind the admin to this tenant: it sees that tenant's pages and no other.",
)
@click.option(
    "--global",
    "make_global",
    is_flag=True,
    help="Make the admin global: it sees every tenant. A new admin without --tenant is global.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)
def set_password(
    username: str | None,
    username_option: str | None,
    tenant: str | None,
    make_global: bool,
    password_stdin: bool,
) -> None:
    """Set (or change) a console admin's password; the console is off until one is set.

    USERNAME defaults to "admin". An existing admin keeps the tenant it is bound to (or stays
    global) unless --tenant or --global says otherwise.
    """
    if username and username_option and username != username_option:
        raise click.UsageError("give the username once, as USERNAME or as --username")
    username = username or username_option or DEFAULT_USERNAME
    if tenant is not None and make_global:
        raise click.UsageError("--tenant and --global exclude each other")
    if not username.strip():
        raise click.ClickException("the username must not be empty")
    binding: Any = store.KEEP_TENANT
    if make_global:
        binding = None
    elif tenant is not None:
        try:
            binding = tenants.by_slug(tenant).id
        except tenants.TenantError as e:
            raise click.ClickException(str(e)) from None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(
            f"the password must be at least {MIN_PASSWORD_LENGTH} characters"
        )
    admin = store.set_password(username, password, tenant_id=binding)
    if admin.tenant_id is None:
        scope = "global: every tenant"
    else:
        bound = store.tenant_by_id(admin.tenant_id)
        scope = f"tenant {bound.slug if bound else admin.tenant_id!r} only"
    click.echo(
        f"Console password set for {admin.username!r} ({scope}); its earlier sessions have ended."
    )


@group.command("logout-all")
def logout_all() -> None:
    """End every console session of every admin (a lost laptop, a departing operator)."""
    ended = store.end_sessions(idle=current_app.permanent_session_lifetime)
    click.echo(f"Ended {ended} console session(s); the admins' passwords are unchanged.")
