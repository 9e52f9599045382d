"""The root /.search (RFC 7644 §3.4.3): one filter over every resource type, users first."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidValue
from app.filters.grammar import Filter
from app.paging import PageRequest
from app.schema.core import Registry
from app.store import groups, users


@dataclass
class Results:
    users: list[Any] = field(default_factory=list)
    groups: list[Any] = field(default_factory=list)
    total: int = 0


def search_all(
    registry: Registry,
    filter: Filter | None,
    page: PageRequest,
    *,
    sort_by: str | None,
    descending: bool,
) -> Results:
    """Index pagination over Users then Groups, as if they were one list.

    RFC 7644 §3.4.2.1: an attribute one resource type lacks has no value there, so
    `displayName eq "Sales" or userName eq "jane"` finds both a group and a user.
    """
    if page.cursor is not None:
        raise InvalidValue("Cursor pagination works per resource type: use /Users/.search")
    results = Results()
    offset = 0  # resources of the types listed before this one
    searches = (
        ("users", functools.partial(users.search, registry.user)),
        ("groups", groups.search),
    )
    for kind, search in searches:
        start = max(page.start_index - offset, 1)
        wanted = page.count - len(results.users) - len(results.groups)
        part = search(
            filter,
            PageRequest(start, max(wanted, 0)),
            sort_by=sort_by,
            descending=descending,
            across_types=True,
        )
        if page.start_index - offset <= part.total:
            getattr(results, kind).extend(part.rows)
        offset += part.total
        results.total += part.total
    return results
