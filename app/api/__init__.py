"""The /scim/v2 parent blueprint: the bearer check in front of every SCIM route, and which
requests only read."""

from flask import Blueprint, g, request

from app import auth, db
from app.api import bulk, discovery, groups, openapi, search, unsupported, users

scim = Blueprint("scim", __name__, url_prefix="/scim/v2")
scim.before_request(auth.require_bearer)  # every SCIM route, discovery included
for child in (users.bp, groups.bp, bulk.bp, search.bp, discovery.bp, openapi.bp, unsupported.bp):
    scim.register_blueprint(child)


@scim.before_request
def _reads_only() -> None:
    """A GET or a .search changes nothing: on SQLite its transactions take no write lock, so a
    read never waits behind a write (app.db)."""
    if request.method in ("GET", "HEAD") or request.path.endswith("/.search"):
        g.reading_only = db.start_reading_only()


@scim.teardown_request
def _done_reading(_error: BaseException | None) -> None:
    if (token := g.pop("reading_only", None)) is not None:
        db.stop_reading_only(token)
