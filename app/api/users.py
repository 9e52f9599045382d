"""Users views (RFC 7644 §3.2-3.6), thin: parse through protocol, one store call, serialize."""

from flask import Blueprint, Response

from app import etags, protocol
from app.api import render, writes
from app.protocol import ListQuery
from app.store import users

bp = Blueprint("users", __name__, url_prefix="/Users")


@bp.get("")
def list_users() -> Response:
    return _list(protocol.list_query("User"))


@bp.post("/.search")
def search_users() -> Response:
    return _list(protocol.search_query("User"))


def _list(query: ListQuery) -> Response:
    page = users.search(
        protocol.registry().user,
        query.where,
        query.page,
        sort_by=query.sort_by,
        descending=query.descending,
        with_groups=render.shows_groups(query.projection),
    )
    return render.page(query, page, render.users(page.rows, query.projection))


@bp.post("")
def create_user() -> Response:
    user = writes.create_user(protocol.json_body())
    return render.user(user, protocol.projection(), 201)


@bp.get("/<user_id>")
def get_user(user_id: str) -> Response:
    projection = protocol.projection()
    user = users.get(user_id, with_groups=render.shows_groups(projection))
    if etags.matches(protocol.if_none_match(), user.version, user.tenant_id):
        return protocol.not_modified(etags.etag(user.version, user.tenant_id))
    return render.user(user, projection)


@bp.put("/<user_id>")
def replace_user(user_id: str) -> Response:
    projection = protocol.projection()
    user = writes.replace_user(
        user_id,
        protocol.json_body(),
        if_match=protocol.if_match(),
        with_groups=render.shows_groups(projection),
    )
    return render.user(user, projection)


@bp.patch("/<user_id>")
def patch_user(user_id: str) -> Response:
    projection = protocol.projection()
    user = writes.patch_user(
        user_id,
        protocol.json_body(),
        if_match=protocol.if_match(),
        with_groups=render.shows_groups(projection),
    )
    return render.user(user, projection)


@bp.delete("/<user_id>")
def delete_user(user_id: str) -> Response:
    writes.delete_user(user_id, if_match=protocol.if_match())
    return protocol.no_content()
