"""Rows -> SCIM JSON, honouring each attribute's `returned` and the request's projection."""

from __future__ import annotations

import json.encoder
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.etags import etag
from app.models import Group, Member, Members, Membership, ShownUser
from app.projection import Projection
from app.schema import Attribute, ResourceType
from app.schema.core import GROUP_RESOURCE

# How json.dumps(..., ensure_ascii=False) writes a string, quotes included (its C function,
# where json has it), which is also how orjson writes it (protocol.json_text): the streamed
# members are written with it (members_in_chunks).
_json_string = json.encoder.encode_basestring


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: 2026-11-23T09:51:49.123Z.

    The first 23 characters of isoformat, whatever offset it appends (the columns read back in
    UTC), cost half of strftime's time: a page of 100 writes 200. strftime writes a year
    before 1000 unpadded (999-01-02T...), which that shape would not; such a year keeps it."""
    if value.year < 1000:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.isoformat(timespec="milliseconds")[:23] + "Z"


def returns(rt: ResourceType, projection: Projection, name: str) -> bool:
    """Whether a response would include attribute `name`: lets callers skip loading it."""
    attribute = rt.schema.attribute(name)
    if attribute is None or attribute.returned == "never":
        return False
    path = (rt.schema.id.lower(), attribute.name.lower())
    if _excluded(path, _paths(rt, projection.excluded_attributes)):
        return False
    if attribute.returned == "always":
        return True
    if projection.attributes or attribute.returned == "request":
        return _selected(path, _paths(rt, projection.attributes))
    return True


def user(
    rt: ResourceType,
    row: ShownUser,
    projection: Projection,
    memberships: list[Membership] | None = None,
) -> dict[str, Any]:
    """A user (a User, or a row of its shown columns); `memberships` (its direct groups) only
    when the caller loaded them."""
    document = row.document
    body: dict[str, Any] = {
        "schemas": [rt.schema.id] + [s.id for s in rt.extensions if s.id in document],
        "id": row.id,
    }
    if row.external_id is not None:
        body["externalId"] = row.external_id
    for attribute in rt.schema.attributes:
        if attribute.name in document:
            body[attribute.name] = document[attribute.name]
    if memberships:
        body["groups"] = [
            {
                "value": m.group_id,
                "$ref": f"{projection.base_url}/Groups/{m.group_id}",
                "display": m.display,
                "type": "direct",
            }
            for m in memberships
        ]
    for extension in rt.extensions:
        if extension.id in document:
            body[extension.id] = document[extension.id]
    body["meta"] = {
        "resourceType": rt.id,
        "created": timestamp(row.created_at),
        "lastModified": timestamp(row.last_modified),
        "location": f"{projection.base_url}/Users/{row.id}",
        "version": etag(row.version, row.tenant_id),
    }
    return project(rt, body, projection)


def group(
    row: Group, projection: Projection, members: Sequence[Member] | None = None
) -> dict[str, Any]:
    """A group; `members` only when the caller loaded them (not for excludedAttributes=members)."""
    body: dict[str, Any] = {"schemas": [GROUP_RESOURCE.schema.id], "id": row.id}
    if row.external_id is not None:
        body["externalId"] = row.external_id
    body["displayName"] = row.display_name
    if members:
        body["members"] = [_member(m, projection.base_url) for m in members]
    body["meta"] = {
        "resourceType": GROUP_RESOURCE.id,
        "created": timestamp(row.created_at),
        "lastModified": timestamp(row.last_modified),
        "location": f"{projection.base_url}/Groups/{row.id}",
        "version": etag(row.version, row.tenant_id),
    }
    return project(GROUP_RESOURCE, body, projection)


def members_in_chunks(members: Members, base_url: str, size: int = 1000) -> Iterator[str]:
    """A group's `members` as group() shows them, `size` at a time, as JSON text: the elements
    joined by ",", without brackets, exactly as protocol.json_text writes them in a list. For a
    response that encodes a long list as it is sent (api/render.py).

    Written from a template with json's own string encoder, not as dicts given to json.dumps:
    building and encoding a dict per member took 40% of a full GET of 100,000 members, this a
    fifth as long. A test checks the text equals what group() gives for hostile strings.
    """
    string = _json_string
    # JSON escapes character by character: a "$ref" is its prefix's text, open, then the id's.
    users, groups = string(f"{base_url}/Users/")[:-1], string(f"{base_url}/Groups/")[:-1]
    typed = {"User": (users, ',"type":"User"'), "Group": (groups, ',"type":"Group"')}
    for start in range(0, len(members), size):
        parts = []
        for value, type, display in members.rows(slice(start, start + size)):
            # _member's keys, in its order.
            quoted = string(value)
            ref, rest = typed.get(type) or (groups, f',"type":{string(type)}')
            head = f'{{"value":{quoted},"$ref":{ref}{quoted[1:]}{rest}'
            if display is None:
                parts.append(f"{head}}}")
            else:
                parts.append(f'{head},"display":{string(display)}}}')
        yield ",".join(parts)


def shown_whole(rt: ResourceType, projection: Projection, name: str) -> bool:
    """Whether a response shows attribute `name` exactly as serialized: returned, and neither
    selected nor excluded by a sub-attribute (`members.value`), which would trim its elements."""
    if not returns(rt, projection, name):
        return False
    path = (rt.schema.id.lower(), name.lower())
    named = _paths(rt, projection.attributes) | _paths(rt, projection.excluded_attributes)
    return not any(len(p) == 3 and p[:2] == path for p in named)


def _member(member: Member, base_url: str) -> dict[str, Any]:
    endpoint = "Users" if member.type == "User" else "Groups"
    out = {
        "value": member.value,
        "$ref": f"{base_url}/{endpoint}/{member.value}",
        "type": member.type,
    }
    if member.display is not None:
        out["display"] = member.display
    return out


def project(rt: ResourceType, body: dict[str, Any], projection: Projection) -> dict[str, Any]:
    """Apply attributes/excludedAttributes (RFC 7644 §3.4.2.5) and the `returned` rules."""
    if not projection.attributes and not projection.excluded_attributes and _as_is(rt, body):
        return body
    wanted = _paths(rt, projection.attributes)
    excluded = _paths(rt, projection.excluded_attributes)
    # `attributes` naming only unknown names still selects: nothing beyond what is always returned.
    selecting = bool(projection.attributes)
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "schemas":
            out[key] = value
            continue
        extension = rt.extension(key)
        if extension is not None:
            kept = {}
            for sub_key, sub_value in value.items():
                attribute = extension.attribute(sub_key)
                path = (extension.id.lower(), sub_key.lower())
                if attribute is not None:
                    projected = _project_attribute(
                        attribute, path, sub_value, wanted, excluded, selecting
                    )
                    if projected is not _DROP:
                        kept[sub_key] = projected
            if kept:
                out[key] = kept
            continue
        attribute = rt.common_attribute(key) or rt.schema.attribute(key)
        if attribute is None:
            continue
        path = (rt.schema.id.lower(), key.lower())
        projected = _project_attribute(attribute, path, value, wanted, excluded, selecting)
        if attribute.name == "meta":
            # meta.resourceType is always returned, whatever attributes/excludedAttributes say.
            rest = {} if projected is _DROP else projected
            out[key] = {"resourceType": value["resourceType"], **rest}
            continue
        if projected is not _DROP:
            out[key] = projected
    # `schemas` names the extensions the response still carries.
    out["schemas"] = [urn for urn in body["schemas"] if urn == rt.schema.id or urn in out]
    return out


_DROP = object()
Path = tuple[str, ...]


@dataclass(frozen=True)
class _Returned:
    """The names a response without attributes/excludedAttributes shows as they are."""

    core: frozenset[str]  # top-level keys: returned always or default, `schemas` and `meta`
    extensions: dict[str, frozenset[str]]  # per extension URN, its attributes shown so


_RETURNED: dict[int, tuple[ResourceType, _Returned]] = {}  # by id(rt); holds rt, so ids stay


def _as_is(rt: ResourceType, body: dict[str, Any]) -> bool:
    """Whether the default projection would return `body` unchanged: every key a known
    attribute returned by default, no extension left empty. The common case of every list
    page and read, answered without walking each attribute (a page of 100 users spent half
    its time in project)."""
    held = _RETURNED.get(id(rt))
    if held is None:
        held = _RETURNED[id(rt)] = (rt, _returned_by_default(rt))
    returned = held[1]
    for key, value in body.items():
        if key in returned.core:
            continue
        allowed = returned.extensions.get(key)
        if allowed is None or not value or not value.keys() <= allowed:
            return False
    return True


def _returned_by_default(rt: ResourceType) -> _Returned:
    def shown(attributes: Iterable[Attribute]) -> frozenset[str]:
        return frozenset(a.name for a in attributes if a.returned in ("always", "default"))

    return _Returned(
        core=shown(rt.schema.attributes) | shown(rt.common) | {"schemas"},
        extensions={e.id: shown(e.attributes) for e in rt.extensions},
    )


def _project_attribute(
    attribute: Attribute,
    path: Path,
    value: Any,
    wanted: set[Path],
    excluded: set[Path],
    selecting: bool,
) -> Any:
    if attribute.returned == "never":
        return _DROP
    if attribute.returned == "always":
        return value
    if attribute.returned == "request" and not _selected(path, wanted):
        return _DROP
    if selecting and not _selected(path, wanted):
        return _DROP
    if _excluded(path, excluded):
        return _DROP
    if not attribute.is_complex:
        return value
    # Sub-attribute selection: attributes=name.givenName, excludedAttributes=emails.display
    sub_wanted = {p for p in wanted if len(p) == 3 and p[:2] == path}
    sub_excluded = {p for p in excluded if len(p) == 3 and p[:2] == path}
    if not sub_wanted and not sub_excluded:
        return value
    elements = value if attribute.multi_valued else [value]
    trimmed = [
        {
            k: v
            for k, v in element.items()
            if (not sub_wanted or (*path, k.lower()) in sub_wanted)
            and (*path, k.lower()) not in sub_excluded
        }
        for element in elements
    ]
    trimmed = [element for element in trimmed if element]
    if not trimmed:
        return _DROP
    return trimmed if attribute.multi_valued else trimmed[0]


def _selected(path: Path, wanted: set[Path]) -> bool:
    """True when the attribute, one of its sub-attributes, or its whole schema was asked for."""
    return any(p[: len(path)] == path or path[: len(p)] == p for p in wanted)


def _excluded(path: Path, excluded: set[Path]) -> bool:
    """True when the attribute itself or what contains it (its schema URN) was excluded."""
    return any(path[: len(p)] == p for p in excluded)


def _paths(rt: ResourceType, names: tuple[str, ...]) -> set[Path]:
    """Normalise short or URN-qualified names to (schema urn, attribute[, sub]) in lower case."""
    out: set[Path] = set()
    for name in names:
        # A bare schema URN names all of that schema's attributes (RFC 7644 §3.10).
        schema = next((s for s in rt.schemas if s.id.lower() == name.lower()), None)
        if schema is not None:
            out.add((schema.id.lower(),))
            continue
        resolved = rt.resolve(name)
        if resolved is None:
            continue  # unknown names select nothing, as most providers do
        schema_id = (resolved.schema or rt.schema).id.lower()
        path: Path = (schema_id, resolved.attribute.name.lower())
        if resolved.sub_attribute is not None:
            path = (*path, resolved.sub_attribute.name.lower())
        out.add(path)
    return out
