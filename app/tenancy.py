"""Which tenant the running code acts for: one customer's directory, or deliberately all of them.

A request learns its tenant from its bearer token (app.auth) and enters it here; the store layer
(app/store/scope.py) reads it to scope every ORM statement and, on PostgreSQL, the transaction's
row-level security setting. Code that runs with no tenant entered cannot read or write a
tenant's rows at all: it fails instead of seeing everything. Operators' cross-tenant work
(`flask stats` in total, purge, the global console) says so with `across_tenants()`.

A ContextVar rather than Flask's `g`: the CLI and background threads use it too, and each
gunicorn thread (or asyncio task) has its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Final

# The tenant every install has: fresh databases get it from migration 0009, and the tokens of
# SCIM_TOKEN_HASHES belong to it. Its id is fixed so that those tokens need no lookup.
DEFAULT_TENANT_ID: Final = 1
DEFAULT_TENANT_SLUG: Final = "default"


class _AllTenants:
    """The deliberate cross-tenant scope (operators' commands and the global console)."""

    def __repr__(self) -> str:
        return "ALL_TENANTS"


ALL_TENANTS: Final = _AllTenants()

Scope = int | _AllTenants | None

_current: ContextVar[Scope] = ContextVar("scim_tenant", default=None)


class NoTenantScope(RuntimeError):
    """Tenant-owned rows were touched with no tenant entered: a bug, never a client's doing."""


def current() -> Scope:
    """The tenant id entered, ALL_TENANTS, or None (nothing entered)."""
    return _current.get()


def current_id() -> int:
    """The tenant id new rows belong to; a new row always belongs to exactly one tenant."""
    scope = _current.get()
    if isinstance(scope, int):
        return scope
    raise NoTenantScope(
        "a tenant-owned row was created outside a tenant scope "
        f"(scope: {scope!r}); enter one with app.tenancy.entered(tenant_id)"
    )


@contextmanager
def entered(scope: Scope) -> Iterator[None]:
    """Act for one tenant (its id), for all of them (ALL_TENANTS), or for none (None: what
    code that must not need a tenant runs in), within the block."""
    token = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(token)


def across_tenants() -> Iterator[None]:
    """The deliberate path for operators' work that spans every tenant."""
    return entered(ALL_TENANTS)  # type: ignore[return-value]


def enter(scope: Scope) -> Token[Scope]:
    """Enter `scope` until `leave(token)`: for a request, whose begin and end are two hooks."""
    return _current.set(scope)


def leave(token: Token[Scope]) -> None:
    """Back to the scope that was entered before `enter` returned `token`."""
    _current.reset(token)
