"""Every SQL statement about named bearer tokens (stored as SHA-256 hashes, never in clear)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app import tenancy
from app.db import db, reading_only, utcnow
from app.models import Tenant, Token

log = logging.getLogger(__name__)

# last_used_at is a hint for operators, not a log: refreshed at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)

# How long a worker answers a valid token from memory before asking the database again. A
# revocation, a rotation or a tenant's suspension or deletion made in this process takes effect
# at once (they call forget_callers); made in another worker or instance, within this time.
# Re-reading the token on every request cost a transaction of its own, a sixth of a lookup.
CALLER_TTL_SECONDS = 1.0
_CALLERS_HELD = 10_000  # tokens remembered at most; beyond, the memory starts afresh


class NameTaken(ValueError):
    """There already is a current token with this name."""


class UnknownName(LookupError):
    """No token (of the kind asked for) has this name."""


@dataclass(frozen=True)
class Caller:
    """Who a valid token speaks for: its name (never the token) and its tenant."""

    token_name: str
    tenant_id: int
    tenant_slug: str
    tenant_state: str


def _clock() -> float:
    return time.monotonic()


class _Callers:
    """Valid tokens' callers, each for CALLER_TTL_SECONDS. Unknown tokens are never remembered:
    a token made a moment ago by another process works at once, and guesses take no memory."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, look_up: Callable[[], Caller | None]) -> Caller | None:
        now = _clock()
        held = self._held.get(key)
        if held is not None and now - held[0] < CALLER_TTL_SECONDS:
            return held[1]
        caller = look_up()
        with self._lock:
            if caller is None:
                self._held.pop(key, None)
            else:
                if len(self._held) >= _CALLERS_HELD:
                    self._held.clear()
                self._held[key] = (now, caller)
        return caller

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


def _callers() -> _Callers:
    """This app's memory of callers: one per app, since one process may serve several apps, each
    with its own database (the tests do)."""
    return current_app.extensions.setdefault("scim_callers", _Callers())


def forget_callers() -> None:
    """Forget every remembered caller: a token or a tenant changed in this process."""
    _callers().clear()


def caller_for_hash(digest: str) -> Caller | None:
    """The caller of the valid token with this hash, or None (remembered for a second)."""
    return _callers().get(f"hash:{digest}", lambda: _caller_for_hash(digest))


def default_tenant_caller(token_name: str) -> Caller:
    """The caller of a SCIM_TOKEN_HASHES token: they belong to the default tenant."""
    caller = _callers().get(f"env:{token_name}", lambda: _default_tenant_caller(token_name))
    assert caller is not None
    return caller


def _caller_for_hash(digest: str) -> Caller | None:
    """The caller of the valid token with this hash, or None; marks the token used.

    The one lookup across tenants on the request path: the token is what names the tenant.
    Runs on a connection of its own: the request's session stays untouched (and SQLite's
    write lock untaken) however the request then goes.
    """
    with tenancy.across_tenants():
        with reading_only(), Session(db.engine) as session:
            found = session.execute(
                select(
                    Token.id,
                    Token.name,
                    Token.tenant_id,
                    Token.last_used_at,
                    Tenant.slug,
                    Tenant.state,
                )
                .join(Tenant, Tenant.id == Token.tenant_id)
                .where(Token.hash == digest, Token.revoked_at.is_(None))
            ).one_or_none()
        if found is None:
            return None
        token_id, name, tenant_id, last_used_at, slug, state = found
        now = utcnow()
        if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
            _mark_used(token_id, now)
        return Caller(name, tenant_id, slug, state)


def _mark_used(token_id: int, now: datetime) -> None:
    """A write of its own, about once a minute per token (the lookup takes no write lock on
    SQLite). A hint for operators: when the database cannot take it now, the request goes on
    and a later one marks the token."""
    try:
        with Session(db.engine) as session, session.begin():
            session.execute(
                update(Token).where(Token.id == token_id).values(last_used_at=now),
                execution_options={"synchronize_session": False},
            )
    except OperationalError as e:
        log.info("token %s not marked used: %s", token_id, type(e).__name__)


def _default_tenant_caller(token_name: str) -> Caller:
    with reading_only(), Session(db.engine) as session:
        found = session.execute(
            select(Tenant.slug, Tenant.state).where(Tenant.id == tenancy.DEFAULT_TENANT_ID)
        ).one_or_none()
    if found is None:  # only on a database made without migrations and never given the row
        return Caller(token_name, tenancy.DEFAULT_TENANT_ID, tenancy.DEFAULT_TENANT_SLUG, "active")
    return Caller(token_name, tenancy.DEFAULT_TENANT_ID, *found)


def create(name: str, digest: str) -> Token:
    """A new current token named `name` for the entered tenant (names are unique per tenant)."""
    token = Token(name=name, hash=digest)
    db.session.add(token)
    _commit(name)
    return token


def all_tokens() -> list[Token]:
    """Every token of the entered tenant, revoked ones included, by name and age."""
    return list(db.session.scalars(select(Token).order_by(Token.name, Token.created_at)))


def rotate(name: str, digest: str, *, keep_old: bool) -> Token:
    """A new current token for `name` in the entered tenant; the old one is revoked, or only
    marked replaced."""
    old = _current(name)
    now = utcnow()
    if keep_old:
        old.replaced_at = now
    else:
        old.revoked_at = now
    db.session.flush()  # the old row leaves the one-current-per-name index first
    token = Token(name=name, hash=digest)
    db.session.add(token)
    _commit(name)
    forget_callers()
    return token


def revoke(name: str, *, old_only: bool = False) -> int:
    """Revoke every valid token of `name` in the entered tenant (`old_only`: those a rotation
    replaced); how many."""
    query = update(Token).where(Token.name == name, Token.revoked_at.is_(None))
    if old_only:
        query = query.where(Token.replaced_at.is_not(None))
    revoked = db.session.execute(query.values(revoked_at=utcnow())).rowcount
    if revoked == 0:
        db.session.rollback()
        kind = "replaced token" if old_only else "valid token"
        raise UnknownName(f"no {kind} is named {name!r}")
    db.session.commit()
    forget_callers()
    return revoked


def _current(name: str) -> Token:
    token = db.session.scalars(
        select(Token)
        .where(Token.name == name, Token.revoked_at.is_(None), Token.replaced_at.is_(None))
        .with_for_update()
    ).one_or_none()
    if token is None:
        raise UnknownName(f"no valid token is named {name!r}")
    return token


def _commit(name: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise NameTaken(f"a valid token is already named {name!r}") from None
