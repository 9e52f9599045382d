"""Every SQL statement about named bearer tokens (stored as SHA-256 hashes, never in clear)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import db, utcnow
from app.models import Token

# last_used_at is a hint for operators, not a log: refreshed at most this often per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class NameTaken(ValueError):
    """There already is a current token with this name."""


class UnknownName(LookupError):
    """No token (of the kind asked for) has this name."""


def name_for_hash(digest: str) -> str | None:
    """The name of the valid token with this hash, or None; marks it used.

    Runs on a connection of its own: the request's session stays untouched (and SQLite's
    write lock untaken) however the request then goes.
    """
    with Session(db.engine) as session, session.begin():
        token = session.scalars(
            select(Token).where(Token.hash == digest, Token.revoked_at.is_(None))
        ).one_or_none()
        if token is None:
            return None
        now = utcnow()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            session.execute(
                update(Token).where(Token.id == token.id).values(last_used_at=now),
                execution_options={"synchronize_session": False},
            )
        return token.name


def create(name: str, digest: str) -> Token:
    token = Token(name=name, hash=digest)
    db.session.add(token)
    _commit(name)
    return token


def all_tokens() -> list[Token]:
    """Every token, revoked ones included, by name and age."""
    return list(db.session.scalars(select(Token).order_by(Token.name, Token.created_at)))


def rotate(name: str, digest: str, *, keep_old: bool) -> Token:
    """A new current token for `name`; the old one is revoked, or only marked replaced."""
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
    return token


def revoke(name: str, *, old_only: bool = False) -> int:
    """Revoke every valid token of `name` (`old_only`: those a rotation replaced); how many."""
    query = update(Token).where(Token.name == name, Token.revoked_at.is_(None))
    if old_only:
        query = query.where(Token.replaced_at.is_not(None))
    revoked = db.session.execute(query.values(revoked_at=utcnow())).rowcount
    if revoked == 0:
        db.session.rollback()
        kind = "replaced token" if old_only else "valid token"
        raise UnknownName(f"no {kind} is named {name!r}")
    db.session.commit()
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
