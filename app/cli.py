"""`flask` commands for operators: tenants, named tokens, purging old data, counts.

flask tenants create SLUG [--name NAME]   # a new customer directory; then give it a token:
flask tenants list [--all]                # users, groups, tokens, last request (--all: deleted too)
flask tenants suspend SLUG                # its tokens get 403 until resumed; its data is kept
flask tenants resume SLUG
flask tenants delete SLUG                 # its tokens stop at once; purged after retention
flask tokens create NAME [--tenant SLUG]  # prints the new token once; only its hash is stored
flask tokens list [--tenant SLUG]         # names and dates, never hashes
flask tokens rotate NAME [--keep-old] [--tenant SLUG]
flask tokens revoke NAME [--old] [--tenant SLUG]
flask purge [--tenant SLUG] [--tombstones-older-than DAYS] [--audit-older-than DAYS]
flask stats [--tenant SLUG]
flask events receivers add NAME --tenant SLUG (--url URL | --poll) [--events create,...] [--full]
                               [--alg ES256|RS256|HS256] [--audience AUD]
flask events receivers list [--tenant SLUG]     # every tenant's without --tenant
flask events receivers disable|enable|remove NAME --tenant SLUG
flask events receivers rotate-key NAME --tenant SLUG [--retire-old]
flask events run                                # the push worker (RFC 8935), until SIGTERM
flask events status [--tenant SLUG]             # per receiver: delivered/pending/failing/dead
flask events dead --receiver NAME [--tenant SLUG] [--limit N]
flask events replay --receiver NAME [--tenant SLUG] --since ISO-TIME [--dead-only]

The tokens commands act for the `default` tenant unless --tenant names another. Without
--tenant, `flask stats` counts and `flask purge` purges across every tenant (the deliberate
path, app.tenancy.across_tenants), and `flask purge` also removes the tenants deleted more than
SCIM_TENANT_RETENTION_DAYS ago. Each command enters its tenant scope itself, never one it
inherits. Errors (an unknown or invalid slug, a slug taken, deleting `default`) end the command
with one line and status 1.

Every command of the app, `flask db ...` included, reports a database it cannot use in one line
naming it (host, port, database, user) and the cause, instead of a traceback.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

from app import auth, sets, tenancy, worker
from app.db import describe_failure, describe_outage, is_missing_table, utcnow
from app.models import EventReceiver, Tenant, TenantState
from app.store import audit, maintenance, tenants, tokens
from app.store import deliveries as events_deliveries
from app.store import events as events_store

T = TypeVar("T")

# Names appear in audit lines and rate-limit keys: short, printable, and never "env-N", which
# names the tokens of SCIM_TOKEN_HASHES.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENV_NAME = re.compile(r"env-\d+")


def init_app(app: Flask) -> None:
    """Runs last in create_app, so that it also wraps Flask-Migrate's and the console's commands."""
    app.cli.add_command(tenants_group)
    app.cli.add_command(tokens_group)
    app.cli.add_command(purge)
    app.cli.add_command(stats)
    app.cli.add_command(events_group)
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
            setting = "DATABASE_URL"
            with app.app_context():
                line = describe_outage(e)
                if command.name == "db" and app.config.get("MIGRATION_DATABASE_URL"):
                    # `flask db ...` migrates through the owner's connection (app.db).
                    setting = "MIGRATION_DATABASE_URL"
                    line = describe_failure(e, make_url(app.config["MIGRATION_DATABASE_URL"]))
            hint = " (run `flask db upgrade` first)" if missing_table else ""
            raise click.ClickException(
                f"cannot use the database ({setting}): {line}{hint}"
            ) from None

    wrapped.invoke = invoke  # type: ignore[method-assign]
    return wrapped


@click.group("tenants", cls=AppGroup)  # its commands run in an app context
def tenants_group() -> None:
    """Tenants: one customer's directory each.

    A request's token selects its tenant: give each tenant's IdP a token of its own.
    """


@tenants_group.command("create")
@click.argument("slug")
@click.option("--name", help="A display name (default: the slug).")
def create_tenant(slug: str, name: str | None) -> None:
    """Create a tenant.

    SLUG: 1-63 lower-case letters, digits and hyphens, starting and ending with a letter or
    digit. Its IdP then needs a token: flask tokens create NAME --tenant SLUG
    """
    tenant = _or_fail(lambda: tenants.create(slug, name))
    click.echo(f"Created tenant {tenant.slug} ({tenant.name}), active.")
    click.echo(f"Next, a token for its IdP: flask tokens create NAME --tenant {tenant.slug}")


@tenants_group.command("list")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted tenants.")
def list_tenants(include_deleted: bool) -> None:
    """Every tenant with its counts.

    Its state, live users and groups, valid tokens and last SCIM request.
    """
    rows = tenants.summaries(include_deleted=include_deleted)
    _table(
        ("SLUG", "NAME", "STATE", "USERS", "GROUPS", "TOKENS", "LAST REQUEST"),
        [
            (
                row.tenant.slug,
                row.tenant.name,
                row.tenant.state,
                str(row.users),
                str(row.groups),
                str(row.tokens),
                _date(row.last_request_at),
            )
            for row in rows
        ],
    )


@tenants_group.command("suspend")
@click.argument("slug")
def suspend_tenant(slug: str) -> None:
    """Suspend a tenant: 403 to its requests.

    Its tokens are recognised and refused with a SCIM error naming the tenant; its data is kept.
    """
    tenant = _or_fail(lambda: tenants.set_state(slug, TenantState.SUSPENDED))
    click.echo(
        f"Suspended tenant {tenant.slug}: its requests get 403 and its data is kept, until "
        f"flask tenants resume {tenant.slug}"
    )


@tenants_group.command("resume")
@click.argument("slug")
def resume_tenant(slug: str) -> None:
    """Resume a suspended tenant."""
    tenant = _or_fail(lambda: tenants.set_state(slug, TenantState.ACTIVE))
    click.echo(f"Resumed tenant {tenant.slug}: its tokens are accepted again.")


@tenants_group.command("delete")
@click.argument("slug")
def delete_tenant(slug: str) -> None:
    """Delete a tenant: its tokens stop at once.

    `flask purge` removes its data once SCIM_TENANT_RETENTION_DAYS have passed.
    """
    tenant = _or_fail(lambda: tenants.set_state(slug, TenantState.DELETED))
    click.echo(f"Deleted tenant {tenant.slug}: its tokens are refused from now on (401).")
    days = current_app.config["SCIM_TENANT_RETENTION_DAYS"]
    if not days:
        click.echo(
            "Its data is kept (SCIM_TENANT_RETENTION_DAYS=0): `flask purge` never removes it."
        )
        return
    due = (tenant.deleted_at or utcnow()) + timedelta(days=days)  # set_state sets deleted_at
    click.echo(
        f"`flask purge` removes its data once it has been deleted for {days} days "
        f"(SCIM_TENANT_RETENTION_DAYS): from {_date(due)}."
    )


def _tenant_option(help: str) -> Callable[[Any], Any]:
    return click.option(
        "--tenant",
        "slug",
        default=tenancy.DEFAULT_TENANT_SLUG,
        show_default=True,
        metavar="SLUG",
        help=help,
    )


_TENANT_OPTION = _tenant_option("The tenant the tokens belong to.")
_RECEIVER_TENANT_OPTION = _tenant_option("The receiver's tenant.")


@click.group("tokens", cls=AppGroup)  # its commands run in an app context
def tokens_group() -> None:
    """Named bearer tokens of a tenant.

    Each belongs to one tenant (--tenant, by default `default`) and is stored as its SHA-256
    hash; SCIM_TOKEN_HASHES keeps working too, for the default tenant.
    """


@tokens_group.command("create")
@click.argument("name")
@_TENANT_OPTION
def create_token(name: str, slug: str) -> None:
    """Create a token named NAME for a tenant and print it, once."""
    _check_name(name)
    tenant = _token_tenant(slug)
    token = auth.new_token()
    with tenancy.entered(tenant.id):
        _or_fail(lambda: tokens.create(name, auth.token_hash(token)))
    _print_token(name, token)
    _say_tenant(tenant)


@tokens_group.command("list")
@_TENANT_OPTION
def list_tokens(slug: str) -> None:
    """A tenant's tokens: name, state, created, replaced, revoked, last used (never a hash)."""
    tenant = _token_tenant(slug)
    with tenancy.entered(tenant.id):
        rows = tokens.all_tokens()
    if not rows:
        if tenant.id == tenancy.DEFAULT_TENANT_ID:
            click.echo("No tokens in the database (SCIM_TOKEN_HASHES may still hold some).")
        else:
            click.echo(
                f"Tenant {tenant.slug} has no tokens: flask tokens create NAME{_flag(tenant)}"
            )
        return
    _table(
        ("NAME", "STATE", "CREATED", "REPLACED", "REVOKED", "LAST USED"),
        [
            (
                row.name,
                "revoked" if row.revoked_at else "old (valid)" if row.replaced_at else "current",
                _date(row.created_at),
                _date(row.replaced_at),
                _date(row.revoked_at),
                _date(row.last_used_at),
            )
            for row in rows
        ],
    )


@tokens_group.command("rotate")
@click.argument("name")
@click.option(
    "--keep-old",
    is_flag=True,
    help="Keep the old token valid until `flask tokens revoke NAME --old`.",
)
@_TENANT_OPTION
def rotate_token(name: str, keep_old: bool, slug: str) -> None:
    """Issue a new token for NAME; the old one is revoked at once unless --keep-old."""
    tenant = _token_tenant(slug)
    token = auth.new_token()
    with tenancy.entered(tenant.id):
        _or_fail(lambda: tokens.rotate(name, auth.token_hash(token), keep_old=keep_old))
    _print_token(name, token)
    if keep_old:
        click.echo(
            f"The old token stays valid until: flask tokens revoke {name} --old{_flag(tenant)}"
        )
    else:
        click.echo("The old token is revoked.")
    _say_tenant(tenant)


@tokens_group.command("revoke")
@click.argument("name")
@click.option("--old", "old_only", is_flag=True, help="Only the tokens a rotation replaced.")
@_TENANT_OPTION
def revoke_token(name: str, old_only: bool, slug: str) -> None:
    """Revoke every valid token named NAME (with --old: only those replaced by a rotation)."""
    tenant = _token_tenant(slug)
    with tenancy.entered(tenant.id):
        count = _or_fail(lambda: tokens.revoke(name, old_only=old_only))
    click.echo(f"Revoked {count} token{'s' if count != 1 else ''} named {name}{_of(tenant)}.")


@click.command("purge")
@with_appcontext
@click.option(
    "--tenant",
    "slug",
    metavar="SLUG",
    help="Purge this tenant's rows only (default: every tenant's, and old deleted tenants).",
)
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
    help="Delete audit events and membership changes older than DAYS days "
    "(default: SCIM_AUDIT_RETENTION_DAYS).",
)
def purge(slug: str | None, tombstone_days: int | None, audit_days: int | None) -> None:
    """Delete old data, of one tenant or of all.

    Always audit events and membership changes older than the audit retention, and change
    events older than SCIM_EVENTS_RETENTION_DAYS that no receiver waits for; when asked,
    tombstones; and without --tenant, the tenants deleted more than SCIM_TENANT_RETENTION_DAYS
    ago with all their rows.
    """
    if slug is not None:
        tenant = _or_fail(lambda: tenants.lookup(slug))
        click.echo(f"Tenant {tenant.slug}:")
        with tenancy.entered(tenant.id):
            _purge_rows(tombstone_days, audit_days)
        return
    with tenancy.across_tenants():
        _purge_rows(tombstone_days, audit_days)
        days = current_app.config["SCIM_TENANT_RETENTION_DAYS"]
        if not days:
            click.echo("Deleted tenants are kept (SCIM_TENANT_RETENTION_DAYS=0).")
            return
        gone = tenants.purge_deleted(days)
    which = f": {', '.join(gone)}" if gone else ""
    click.echo(f"Purged {len(gone)} deleted tenants older than {days} days{which}.")


def _purge_rows(tombstone_days: int | None, audit_days: int | None) -> None:
    """Purge in the tenant scope the caller entered (one tenant, or across tenants)."""
    if tombstone_days is not None:
        purged = maintenance.purge_tombstones(tombstone_days)
        click.echo(
            f"Purged {purged.users} deleted users and {purged.groups} deleted groups "
            f"older than {tombstone_days} days."
        )
    days = audit_days or current_app.config["SCIM_AUDIT_RETENTION_DAYS"]
    if not days:
        click.echo("Audit events and membership changes are kept (SCIM_AUDIT_RETENTION_DAYS=0).")
    else:
        click.echo(f"Purged {audit.purge(days)} audit events older than {days} days.")
        changes = maintenance.purge_membership_changes(days)
        click.echo(f"Purged {changes} membership changes older than {days} days.")
    days = current_app.config["SCIM_EVENTS_RETENTION_DAYS"]
    if not days:
        click.echo("Change events are kept (SCIM_EVENTS_RETENTION_DAYS=0).")
        return
    purged, deliveries = events_store.purge(days)
    click.echo(
        f"Purged {purged} change events older than {days} days, none of them pending, "
        f"with {deliveries} deliveries."
    )


@click.command("stats")
@with_appcontext
@click.option(
    "--tenant",
    "slug",
    metavar="SLUG",
    help="This tenant's counts (default: the totals of every tenant).",
)
def stats(slug: str | None) -> None:
    """Counts of one tenant, or totals of all.

    Users, groups, memberships, tombstones and audit events; in total, also the tenants.
    """
    if slug is not None:
        tenant = _or_fail(lambda: tenants.lookup(slug))
        with tenancy.entered(tenant.id):
            figures = maintenance.counts()
    else:
        with tenancy.across_tenants():
            figures = maintenance.counts()
            by_state = tenants.count()
        # Deleted tenants wait for `flask purge`; their rows are still in the totals above.
        figures["tenants"] = sum(n for state, n in by_state.items() if state != TenantState.DELETED)
        figures["tombstoned_tenants"] = by_state.get(TenantState.DELETED, 0)
    for name, value in figures.items():
        click.echo(f"{name}: {value}")


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or _ENV_NAME.fullmatch(name):
        raise click.BadParameter(
            "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit; "
            "not env-N (the names of SCIM_TOKEN_HASHES)",
            param_hint="NAME",
        )


def _or_fail(action: Callable[[], T]) -> T:
    """The store call's result; its refusal (a name or slug unknown or taken) as one line."""
    try:
        return action()
    except (tokens.NameTaken, tokens.UnknownName, tenants.TenantError) as e:
        raise click.ClickException(str(e)) from None


def _token_tenant(slug: str) -> Tenant:
    """The tenant a tokens command acts for: any but a deleted one."""
    tenant = _or_fail(lambda: tenants.lookup(slug, include_deleted=True))
    if tenant.state == TenantState.DELETED:
        raise click.ClickException(
            f"the tenant {slug!r} is deleted: its tokens are refused and it gets no new ones"
        )
    return tenant


def _say_tenant(tenant: Tenant) -> None:
    """After a new token: whose it is (when not the default tenant's) and whether it works."""
    if tenant.id != tenancy.DEFAULT_TENANT_ID:
        click.echo(f"It belongs to tenant {tenant.slug} ({tenant.name}).")
    if tenant.state == TenantState.SUSPENDED:
        click.echo(
            f"The tenant {tenant.slug} is suspended: its requests get 403 until "
            f"flask tenants resume {tenant.slug}"
        )


def _flag(tenant: Tenant) -> str:
    """The --tenant option that repeats a command for this tenant ("" for the default)."""
    return "" if tenant.id == tenancy.DEFAULT_TENANT_ID else f" --tenant {tenant.slug}"


def _of(tenant: Tenant) -> str:
    return "" if tenant.id == tenancy.DEFAULT_TENANT_ID else f" in tenant {tenant.slug}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, two spaces apart."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _print_token(name: str, token: str) -> None:
    click.echo(f"Token {name} (shown only this once; give it to the IdP as its bearer token):")
    click.echo(token)


def _date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


# --- Change events (RFC 9967): receivers ------------------------------------------------------


@click.group("events", cls=AppGroup)
def events_group() -> None:
    """Change events (RFC 9967 SETs) and their receivers."""


@events_group.group("receivers", cls=AppGroup)
def receivers_group() -> None:
    """Where a tenant's events go: a push URL (RFC 8935) or a poller (RFC 8936)."""


def _event_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in events_store.EVENT_NAMES]
    if unknown or not names:
        raise click.ClickException(
            f"--events: {', '.join(unknown) or 'nothing'}: name events among "
            f"{','.join(events_store.EVENT_NAMES)}"
        )
    return names


@receivers_group.command("add")
@click.argument("name")
@_RECEIVER_TENANT_OPTION
@click.option("--url", help="Push: the receiver's endpoint (RFC 8935); https in production.")
@click.option("--poll", is_flag=True, help="Poll: the receiver fetches its SETs (RFC 8936).")
@click.option(
    "--events",
    "event_names",
    default=",".join(events_store.EVENT_NAMES),
    show_default=True,
    help="The events it subscribes to, comma-separated.",
)
@click.option("--full", is_flag=True, help="`:full` events carrying the resource, not notices.")
@click.option("--alg", type=click.Choice(sets.ALGORITHMS), default="ES256", show_default=True)
@click.option("--audience", help="The SETs' `aud` (default: the URL, or the receiver's name).")
@click.option(
    "--authorization",
    help="Push: the Authorization header value the receiver expects (e.g. 'Bearer ...').",
)
def add_receiver(
    name: str,
    slug: str,
    url: str | None,
    poll: bool,
    event_names: str,
    full: bool,
    alg: str,
    audience: str | None,
    authorization: str | None,
) -> None:
    """Add receiver NAME to a tenant; prints its JWKS URL (and, for --poll, its token, once)."""
    _check_name(name)
    if (url is None) == (not poll):
        raise click.ClickException("give exactly one of --url URL (push) and --poll")
    if url is not None and not re.fullmatch(r"https?://\S+", url):
        raise click.ClickException(f"--url: {url!r} is not an http(s) URL")
    tenant = _token_tenant(slug)
    token = auth.new_token() if poll else None
    receiver = EventReceiver(
        name=name,
        delivery="poll" if poll else "push",
        url=url,
        events=_event_names(event_names),
        full=full,
        enabled=True,
        audience=audience or url or name,
        alg=alg,
        poll_token_hash=auth.token_hash(token) if token else None,
        push_authorization=authorization,
    )
    with tenancy.entered(tenant.id):
        if events_store.receiver_named(name) is not None:
            raise click.ClickException(f"a receiver named {name!r} exists{_of(tenant)}")
        events_store.add_receiver(receiver, sets.new_key(alg))
    click.echo(f"Receiver {name} ({receiver.delivery}){_of(tenant)}: {receiver.id}")
    # The endpoints hang off the service's root, beside /scim/v2 (not under it).
    base = current_app.config["SCIM_BASE_URL"]
    root = base.removesuffix("/scim/v2") if base else "https://<this service's host>"
    if alg == "HS256":
        click.echo("Signs with HS256: the shared secret is shown by `receivers secret`.")
    else:
        click.echo(f"Its public keys (JWKS): {root}/events/receivers/{receiver.id}/jwks.json")
    if token is not None:
        click.echo(f"It polls POST {root}/events/receivers/{receiver.id}/poll with this token")
        click.echo("(shown only this once):")
        click.echo(token)


@receivers_group.command("secret")
@click.argument("name")
@_RECEIVER_TENANT_OPTION
def receiver_secret(name: str, slug: str) -> None:
    """Print an HS256 receiver's shared secret (base64url), to configure the receiver."""
    tenant = _token_tenant(slug)
    with tenancy.entered(tenant.id):
        receiver = _receiver(name, tenant)
        keys = events_store.signing_keys(receiver.id)
    if receiver.alg != "HS256":
        raise click.ClickException(f"{name} signs with {receiver.alg}: see its JWKS instead")
    click.echo(keys[0].secret)


@receivers_group.command("rotate-key")
@click.argument("name")
@_RECEIVER_TENANT_OPTION
@click.option(
    "--retire-old",
    is_flag=True,
    help="The rotation's second step: retire every key but the current one, no new key.",
)
def rotate_receiver_key(name: str, slug: str, retire_old: bool) -> None:
    """Give receiver NAME a new signing key (a new kid), which signs its SETs from now on; the
    old keys stay in its JWKS until --retire-old, then one more day (SETs in flight verify)."""
    tenant = _token_tenant(slug)
    with tenancy.entered(tenant.id):
        receiver = _receiver(name, tenant)
        if retire_old:
            count = events_store.retire_old_keys(receiver)
            click.echo(
                f"Receiver {name}{_of(tenant)}: retired {count} old key{'s' if count != 1 else ''}"
                f"; they leave its JWKS in {events_store.RETIRED_KEY_GRACE.days} day."
            )
            return
        key = events_store.add_signing_key(receiver, sets.new_key(receiver.alg))
    click.echo(f"Receiver {name}{_of(tenant)}: signs with key {key.kid} from now on.")
    if receiver.alg == "HS256":
        click.echo("Give the receiver the new shared secret (`receivers secret`).")
    else:
        click.echo("The old keys stay in its JWKS until `receivers rotate-key NAME --retire-old`.")


@receivers_group.command("list")
@click.option("--tenant", "slug", metavar="SLUG", help="One tenant's (default: every tenant's).")
def list_receivers(slug: str | None) -> None:
    """Receivers: tenant, name, delivery, where, events, full or notice, alg, state, pending."""
    scope = _token_tenant(slug).id if slug else tenancy.ALL_TENANTS
    with tenancy.entered(scope):
        rows = [
            (
                _slug_of(r.tenant_id),
                r.name,
                r.delivery,
                r.url or f"poll {r.id}",
                ",".join(r.events),
                "full" if r.full else "notice",
                r.alg,
                "enabled" if r.enabled else "disabled",
                str(events_store.pending_count(r)),
            )
            for r in events_store.receivers()
        ]
    if not rows:
        click.echo("No receivers: flask events receivers add NAME --tenant SLUG --url URL")
        return
    _table(
        ("TENANT", "NAME", "DELIVERY", "WHERE", "EVENTS", "MODE", "ALG", "STATE", "PENDING"), rows
    )


def _slug_of(tenant_id: int) -> str:
    tenant = tenants.by_id(tenant_id)
    return tenant.slug if tenant else str(tenant_id)


def _receiver(name: str, tenant: Tenant) -> EventReceiver:
    receiver = events_store.receiver_named(name)
    if receiver is None:
        raise click.ClickException(f"no receiver named {name!r}{_of(tenant)}")
    return receiver


def _receiver_command(verb: str, act: Callable[[EventReceiver], None], help: str) -> None:
    @receivers_group.command(verb, help=help)
    @click.argument("name")
    @_RECEIVER_TENANT_OPTION
    def command(name: str, slug: str) -> None:
        tenant = _token_tenant(slug)
        with tenancy.entered(tenant.id):
            act(_receiver(name, tenant))
        click.echo(f"Receiver {name}{_of(tenant)}: {verb}d.")


_receiver_command(
    "disable",
    lambda r: events_store.set_enabled(r, False),
    "Stop queueing events for receiver NAME (what is queued stays; replay fills the gap).",
)
_receiver_command(
    "enable", lambda r: events_store.set_enabled(r, True), "Queue events for NAME again."
)
_receiver_command(
    "remove",
    events_store.remove_receiver,
    "Delete receiver NAME with its keys and its queued deliveries.",
)


# --- Change events: the push worker, status, dead letters, replay -----------------------------


@events_group.command("run")
def run_worker() -> None:
    """Deliver every tenant's events to its push receivers (RFC 8935) until SIGTERM.

    A process of its own beside gunicorn; on PostgreSQL several may run at once, on SQLite one
    (a second refuses to start). SCIM_BASE_URL must be set: the SETs' iss and links.
    """
    try:
        settings = worker.Settings.from_config(
            current_app.config, postgresql=events_deliveries.is_postgresql()
        )
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    runner = worker.Worker(current_app._get_current_object(), settings)  # type: ignore[attr-defined]
    runner.stop_on_signals()
    click.echo(f"Delivering events (iss {settings.issuer}); SIGTERM or Ctrl-C stops.", err=True)
    try:
        runner.run()
    except worker.AlreadyRunning as e:
        raise click.ClickException(str(e)) from None


@events_group.command("status")
@click.option("--tenant", "slug", metavar="SLUG", help="One tenant's (default: every tenant's).")
def events_status(slug: str | None) -> None:
    """Per receiver: delivered, pending, failing (pending, tried), dead, oldest pending, last
    error."""
    scope = _token_tenant(slug).id if slug else tenancy.ALL_TENANTS
    with tenancy.entered(scope):
        receivers = events_store.receivers()
        slugs = {r.tenant_id: _slug_of(r.tenant_id) for r in receivers}
    if not receivers:
        click.echo("No receivers: flask events receivers add NAME --tenant SLUG --url URL")
        return
    now = utcnow()
    rows = [
        (
            slugs[s.receiver.tenant_id],
            s.receiver.name,
            s.receiver.delivery,
            "enabled" if s.receiver.enabled else "disabled",
            str(s.delivered),
            str(s.pending),
            str(s.failing),
            str(s.dead),
            _age(now - s.oldest_pending) if s.oldest_pending else "-",
            f"{_date(s.last_error_at)} {s.last_error}" if s.last_error else "-",
        )
        for s in events_deliveries.status(receivers)
    ]
    _table(
        ("TENANT", "RECEIVER", "DELIVERY", "STATE", "DELIVERED", "PENDING", "FAILING", "DEAD")
        + ("OLDEST PENDING", "LAST ERROR"),
        rows,
    )


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h" if seconds < 172800 else f"{seconds // 86400}d"


@events_group.command("dead")
@click.option("--receiver", "name", required=True, metavar="NAME")
@_RECEIVER_TENANT_OPTION
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
def dead_letters(name: str, slug: str, limit: int) -> None:
    """A receiver's dead letters, newest first: events given up, and why."""
    tenant = _token_tenant(slug)
    with tenancy.entered(tenant.id):
        receiver = _receiver(name, tenant)
        rows = events_deliveries.dead_letters(receiver, limit)
    if not rows:
        click.echo(f"No dead letters for {name}{_of(tenant)}.")
        return
    _table(
        ("EVENT", "JTI", "RESOURCE", "EVENTS", "AT", "ATTEMPTS", "ERROR"),
        [
            (
                str(event.id),
                event.jti,
                f"{event.resource_type} {event.resource_id}",
                event.operation + (f",{event.activation}" if event.activation else ""),
                _date(event.at),
                str(delivery.attempts),
                delivery.last_error or "-",
            )
            for delivery, event in rows
        ],
    )
    click.echo(
        f"Send them again: flask events replay --receiver {name}{_flag(tenant)} "
        "--since <AT> --dead-only"
    )


@events_group.command("replay")
@click.option("--receiver", "name", required=True, metavar="NAME")
@_RECEIVER_TENANT_OPTION
@click.option(
    "--since",
    required=True,
    metavar="ISO-TIME",
    help="Events at or after this time (ISO 8601; UTC when no offset is given).",
)
@click.option("--dead-only", is_flag=True, help="Only the dead letters, not delivered events.")
def replay(name: str, slug: str, since: str, dead_only: bool) -> None:
    """Queue a receiver's events since a time again (delivered and dead ones, and those stored
    while it was disabled); the worker or the next poll sends them, a resource's in order."""
    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        raise click.BadParameter(
            f"{since!r} is not an ISO 8601 time (2026-12-06T17:02:00Z)", param_hint="--since"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    tenant = _token_tenant(slug)
    with tenancy.entered(tenant.id):
        receiver = _receiver(name, tenant)
        done = events_deliveries.replay(receiver, when, dead_only=dead_only)
    click.echo(
        f"Receiver {name}{_of(tenant)}: {done.requeued} events queued again, "
        f"{done.added} queued for the first time, since {_date(when)}."
    )
