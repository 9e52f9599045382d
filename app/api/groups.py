"""Groups views (RFC 7644 §3.2-3.6), the same shape as Users."""

from flask import Blueprint, Response

from app import audit, etags, patch, protocol
from app.api import render
from app.protocol import ListQuery
from app.requests import request_id
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
    group = groups.create(
        protocol.json_body(), max_members=protocol.limits().members, request_id=request_id() or ""
    )
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
    group = groups.replace(
        group_id,
        protocol.json_body(),
        if_match=protocol.if_match(),
        max_members=protocol.limits().members,
        request_id=request_id() or "",
    )
    return render.group(group, protocol.projection())


@bp.patch("/<group_id>")
def patch_group(group_id: str) -> Response:
    operations = patch.parse(GROUP_RESOURCE, protocol.json_body(), protocol.limits())
    audit.record_operations(operations)
    group = groups.patch(
        group_id,
        operations,
        if_match=protocol.if_match(),
        max_members=protocol.limits().members,
        request_id=request_id() or "",
    )
    if not protocol.answers_patched_group():
        return protocol.no_content(etag=etags.etag(group.version, group.tenant_id))
    return render.group(group, protocol.projection())


@bp.delete("/<group_id>")
def delete_group(group_id: str) -> Response:
    groups.delete(group_id, if_match=protocol.if_match(), request_id=request_id() or "")
    return protocol.no_content()
