"""How users and groups become responses: the rendering the views share, so no view imports
another (the root /.search lists both types)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Response

from app import etags, protocol, serialize
from app.models import Group, ShownUser, User
from app.projection import Projection
from app.protocol import ListQuery
from app.schema.core import GROUP_RESOURCE
from app.store.groups import members_of, members_read, memberships_of, memberships_read
from app.store.pages import Page


def shows_groups(projection: Projection) -> bool:
    """Whether users in this response show their groups: the store then reads them with the
    users (store.users, with_groups)."""
    return serialize.returns(protocol.registry().user, projection, "groups")


def users(
    rows: Sequence[ShownUser], projection: Projection, *, created: bool = False
) -> list[dict[str, Any]]:
    """Serialize users with their groups, when the response shows them: as read with the users,
    or else loaded in one query.

    A user `created` by this request is in no group: no one else knows its id yet.
    """
    rt = protocol.registry().user
    memberships = {}
    if shows_groups(projection) and not created:
        memberships = {row.id: memberships_read(row) for row in rows}
        unread = [id for id, groups in memberships.items() if groups is None]
        if unread:
            memberships |= memberships_of(unread)
    return [serialize.user(rt, row, projection, memberships.get(row.id)) for row in rows]


def shows_members(projection: Projection) -> bool:
    """Whether groups in this response show their members: the store then reads them with the
    groups (store.groups, with_members)."""
    return serialize.returns(GROUP_RESOURCE, projection, "members")


def groups(rows: list[Group], projection: Projection) -> list[dict[str, Any]]:
    """Serialize groups with their members, when the response shows them: as read with the
    groups, or else loaded in one query."""
    members = {}
    if shows_members(projection):
        members = {row.id: members_read(row) for row in rows}
        unread = [id for id, found in members.items() if found is None]
        if unread:
            members |= members_of(unread)
    return [serialize.group(row, projection, members.get(row.id)) for row in rows]


def user(row: User, projection: Projection, status: int = 200) -> Response:
    """One user, with its ETag; a 201 also carries its Location."""
    body = users([row], projection, created=status == 201)[0]
    return _one(body, etags.etag(row.version, row.tenant_id), row, "Users", projection, status)


# More members than this, and a group's response encodes them as it is sent.
STREAMED_MEMBERS = 1000


def group(row: Group, projection: Projection, status: int = 200) -> Response:
    """One group, with its ETag; a 201 also carries its Location.

    A group of more than STREAMED_MEMBERS members shown whole (no `members.value`-style
    projection) is sent with its members encoded chunk by chunk: a full GET of 100,000 members
    held their dicts and the whole text at once (340 MB of RSS). They were read with the
    group, by the statement that read it, so the body is complete before it starts.
    """
    etag = etags.etag(row.version, row.tenant_id)
    members = members_read(row) if shows_members(projection) else None
    streamed = (
        members is not None
        and len(members) > STREAMED_MEMBERS
        and serialize.shown_whole(GROUP_RESOURCE, projection, "members")
    )
    if not streamed:
        if members is None:
            body = groups([row], projection)[0]
        else:
            body = serialize.group(row, projection, members)
        return _one(body, etag, row, "Groups", projection, status)
    return protocol.resource_streamed(
        serialize.group(row, projection),  # all but the members
        "members",
        serialize.members_in_chunks(members, projection.base_url),
        status,
        etag=etag,
        location=_location(row, "Groups", projection, status),
    )


def page(query: ListQuery, found: Page, resources: list[dict[str, Any]]) -> Response:
    """One page of a list or .search, with the cursors of the pages either side."""
    return protocol.list_response(
        resources, found.total, query, next_cursor=found.next, previous_cursor=found.previous
    )


def _one(
    body: dict[str, Any],
    etag: str,
    row: User | Group,
    endpoint: str,
    projection: Projection,
    status: int,
) -> Response:
    # ETag and Location from the row, not the body, which a projection may have stripped.
    location = _location(row, endpoint, projection, status)
    return protocol.resource(body, status, etag=etag, location=location)


def _location(row: User | Group, endpoint: str, projection: Projection, status: int) -> str | None:
    return f"{projection.base_url}/{endpoint}/{row.id}" if status == 201 else None
