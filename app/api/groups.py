"""Groups views (RFC 7644 §3.2-3.6), the same shape as Users."""

from flask import Blueprint, Response

from app import etags, protocol
from app.api import render, writes
from app.protocol import ListQuery
from app.schema.core import GROUP_RESOURCE
from app.store import groups

bp = Blueprint("groups", __name__, url_prefix="/Groups")


@bp.get("")
def list_groups() -> Response:
    return _list(protocol.list_query(GROUP_RESOURCE.id))


@bp.post("/.search")
def search_groups() -> Response:
    return _list(protocol.search_query(GROUP_RESOURCE.id))


def _list(query: ListQuery) -> Response:
    page = groups.search(
        query.where,
        query.page,
        sort_by=query.sort_by,
        descending=query.descending,
        with_members=render.shows_members(query.projection),
    )
    return render.page(query, page, render.groups(page.rows, query.projection))


@bp.post("")
def create_group() -> Response:
    group = writes.create_group(protocol.json_body())
    return render.group(group, protocol.projection(), 201)


@bp.get("/<group_id>")
def get_group(group_id: str) -> Response:
    projection = protocol.projection()
    group = groups.get(group_id, with_members=render.shows_members(projection))
    if etags.matches(protocol.if_none_match(), group.version, group.tenant_id):
        return protocol.not_modified(etags.etag(group.version, group.tenant_id))
    return render.group(group, projection)


@bp.put("/<group_id>")
def replace_group(group_id: str) -> Response:
    group = writes.replace_group(group_id, protocol.json_body(), if_match=protocol.if_match())
    return render.group(group, protocol.projection())


@bp.patch("/<group_id>")
def patch_group(group_id: str) -> Response:
    group = writes.patch_group(group_id, protocol.json_body(), if_match=protocol.if_match())
    if not protocol.answers_patched_group():
        return protocol.no_content(etag=etags.etag(group.version, group.tenant_id))
    return render.group(group, protocol.projection())


@bp.delete("/<group_id>")
def delete_group(group_id: str) -> Response:
    writes.delete_group(group_id, if_match=protocol.if_match())
    return protocol.no_content()
