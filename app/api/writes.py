"""Every write to a user or a group, given its inputs rather than read from the request: the one
path that a single request's view (users.py, groups.py) and a Bulk operation (bulk.py) both
take, so that an operation is validated, checked against its version, stored and audited
exactly as the request it stands for."""

from __future__ import annotations

from typing import Any

from app import audit, patch, protocol
from app.models import Group, User
from app.requests import request_id
from app.schema.core import GROUP_RESOURCE
from app.store import groups, users


def create_user(body: dict[str, Any]) -> User:
    return users.create(protocol.registry().user, body)


def replace_user(
    user_id: str, body: dict[str, Any], *, if_match: str | None, with_groups: bool = False
) -> User:
    rt = protocol.registry().user
    return users.replace(rt, user_id, body, if_match=if_match, with_groups=with_groups)


def patch_user(
    user_id: str, body: dict[str, Any], *, if_match: str | None, with_groups: bool = False
) -> User:
    rt = protocol.registry().user
    operations = patch.parse(rt, body, protocol.limits())
    audit.record_operations(operations)
    return users.patch(rt, user_id, operations, if_match=if_match, with_groups=with_groups)


def delete_user(user_id: str, *, if_match: str | None) -> None:
    users.delete(user_id, if_match=if_match, request_id=request_id() or "")


def create_group(body: dict[str, Any]) -> Group:
    return groups.create(body, max_members=protocol.limits().members, request_id=request_id() or "")


def replace_group(group_id: str, body: dict[str, Any], *, if_match: str | None) -> Group:
    return groups.replace(
        group_id,
        body,
        if_match=if_match,
        max_members=protocol.limits().members,
        request_id=request_id() or "",
    )


def patch_group(group_id: str, body: dict[str, Any], *, if_match: str | None) -> Group:
    operations = patch.parse(GROUP_RESOURCE, body, protocol.limits())
    audit.record_operations(operations)
    return groups.patch(
        group_id,
        operations,
        if_match=if_match,
        max_members=protocol.limits().members,
        request_id=request_id() or "",
    )


def delete_group(group_id: str, *, if_match: str | None) -> None:
    groups.delete(group_id, if_match=if_match, request_id=request_id() or "")
