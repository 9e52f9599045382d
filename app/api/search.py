"""POST /.search at the service root (RFC 7644 §3.4.3): users and groups in one list."""

from flask import Blueprint, Response

from app import protocol
from app.api import render
from app.store.search import search_all

bp = Blueprint("search", __name__)


@bp.post("/.search")
def search_everything() -> Response:
    query = protocol.search_query("*")
    found = search_all(
        protocol.registry(),
        query.where,
        query.page,
        sort_by=query.sort_by,
        descending=query.descending,
    )
    resources = render.users(found.users, query.projection)
    resources += render.groups(found.groups, query.projection)
    return protocol.list_response(resources, found.total, query)
