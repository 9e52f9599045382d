"""One page of a sorted query, by index (RFC 7644 §3.4.2.4) or by keyset cursor (RFC 9865).

Every listing orders by an optional sort key, then creation time and id ascending, so the order
is total and stable. A resource without a value for the sort key sorts as if it were greater
than every value (RFC 7644 §3.4.2.3): last ascending, first descending. Index pages use OFFSET;
cursor pages continue after (or before) the last row seen with a keyset condition, so a page
deep into a crawl costs what the first one does, and rows created or deleted meanwhile never
make a walk repeat or skip a resource.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Row,
    Select,
    and_,
    bindparam,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
)

from app.db import db
from app.models import LiveCount
from app.paging import Cursor, PageRequest
from app.store import scope, shapes

MAX_OFFSET = 2**63 - 1  # the largest OFFSET both databases accept (a signed 64-bit integer)


@dataclass(frozen=True)
class Key:
    expression: Any
    descending: bool = False
    nullable: bool = False  # only the client's sort key can be null; null is the greatest


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    total: int
    next: Cursor | None = None
    previous: Cursor | None = None


# How the matches of a query are counted when its page cannot tell.
Counter = Callable[[Select[Any]], int]
# What a page's statement reads besides its rows' columns (a user's groups as a subquery).
Expansion = Callable[[Select[Any]], Select[Any]]


def fetch(
    query: Select[Any],
    keys: list[Key],
    request: PageRequest,
    *,
    where: ColumnElement[bool] | None = None,
    count: Counter | None = None,
    expand: Expansion | None = None,
    prepared: bool = False,
) -> Page:
    """Read one page of `query` (its matches: `where`, if given) and how many match in all. A
    select of one ORM entity (or one column) gives its page's rows as entities (or values); a
    select of several columns, as Rows, which cost a page of 100 users a quarter less to read
    than entities.

    The page is read first: when it shows where the matches end (a lookup by userName finds
    one user or none), the total follows from it and no second scan counts them. Otherwise
    `count` counts them (from the query and `where`, never expanded): every one by default,
    fewer with count_up_to.

    `expand` adds to the page's statement what its rows show beyond their columns, when that
    costs only the rows returned. Not under an OFFSET: PostgreSQL computes a subquery of the
    select list for every row it skips too (5,000 subqueries for startIndex=5001); such a page
    is read without it, and the caller reads what it lacks for the returned rows.

    `prepared`: `query`, `keys` and `expand` are the same objects on every call (built once),
    so an index page runs a statement made once for them and the shape of `where`
    (store/shapes.py), its values and the page's bounds as parameters. Building, confining to
    the tenant (store/scope.py) and keying a new statement cost a lookup a quarter of its CPU.
    """
    matching = query if where is None else query.where(where)
    if request.cursor is None:
        made = _prepared(query, where, keys, request, expand) if prepared else None
        return _by_index(matching, keys, request, count or _count, expand, made)
    return _by_cursor(matching, keys, request, count or _count, expand)


def count_up_to(limit: int) -> Counter:
    """A Counter that stops at limit + 1 matches: enough to tell "more than `limit`", without
    reading every match of a broad query."""

    def count(query: Select[Any]) -> int:
        capped = query.order_by(None).limit(limit + 1).subquery()
        return db.session.scalar(select(func.count()).select_from(capped))

    return count


_LIVE_COUNT = select(func.coalesce(func.sum(LiveCount.live), 0))


def count_live(resource_type: str) -> int:
    """Every live user or group (`resource_type`) of the entered tenant, summed from its
    counter rows (models.LiveCount), which the database's triggers keep exact: a few rows
    read instead of every live row counted (106 ms on SQLite, 320 on PostgreSQL at 1,000,000
    users)."""
    return scope.read(db.session, _live_count(resource_type), {}).scalar()


@functools.cache
def _live_count(resource_type: str) -> Select[Any]:
    # Built once per type: the same statement every time, as scope.py keeps it.
    return _LIVE_COUNT.where(LiveCount.resource_type == resource_type)


def _count(query: Select[Any]) -> int:
    return db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))


def _by_index(
    query: Select[Any],
    keys: list[Key],
    request: PageRequest,
    count: Counter,
    expand: Expansion | None,
    prepared: tuple[Select[Any], dict[str, Any]] | None,
) -> Page:
    if request.count == 0:
        return Page([], count(query))
    skipped = request.start_index - 1
    # A startIndex past any table (10**20) skips everything, within what SQL's OFFSET takes.
    offset = min(skipped, MAX_OFFSET)
    if prepared is not None:
        statement, values = prepared  # the page's bounds among the values, or in the statement
        fetched = scope.read(db.session, statement, values)
    else:
        read = expand(query) if expand is not None and skipped == 0 else query
        ordered = read.order_by(*(_order(k, reverse=False) for k in keys))
        fetched = db.session.execute(ordered.offset(offset).limit(request.count))
    rows = _taken(list(fetched), 0)
    if rows and len(rows) < request.count:
        return Page(rows, skipped + len(rows))  # the last page: the matches end on it
    if not rows and skipped == 0:
        return Page([], 0)
    return Page(rows, count(query))


# An index page's bounds, as parameters of a prepared statement: required, never a default.
_OFFSET = bindparam("_page_offset", type_=BigInteger, required=True)
_LIMIT = bindparam("_page_limit", type_=BigInteger, required=True)


class _Prepared(NamedTuple):
    query: Select[Any]
    keys: tuple[Key, ...]
    expand: Expansion | None
    ordered: Select[Any]  # without its bounds
    statement: Select[Any]  # with its bounds as parameters
    first_pages: dict[int, Select[Any]]  # PostgreSQL's: by count, its LIMIT written in


def _for_the_page(kept: _Prepared, offset: int, count: int) -> tuple[Select[Any], dict[str, int]]:
    """The statement of one index page. On PostgreSQL a first page (a lookup by userName, a
    group by displayName: the IdPs' commonest reads) has its LIMIT written into the SQL, no
    OFFSET: given `LIMIT $1 OFFSET $2`, PostgreSQL finds no plan for every value as good as
    one for the values given, so it planned such a read afresh every time (0.3 ms of a group
    lookup's 0.35 in the database); given `LIMIT 100` it plans the statement once. A
    statement per count, made once (counts run from 1 to SCIM_MAX_RESULTS). Pages further on
    keep their bounds as parameters: their OFFSETs are too many to make a statement for each.
    SQLite's plans do not depend on the bounds' values, and SQLAlchemy's writing values into
    the SQL at each run (literal_execute) cost a SQLite lookup 0.1 to 0.25 ms."""
    if offset != 0 or db.engine.dialect.name != "postgresql":
        return kept.statement, {_OFFSET.key: offset, _LIMIT.key: count}
    statement = kept.first_pages.get(count)
    if statement is None:
        if len(kept.first_pages) >= _FIRST_PAGES_MOST:
            kept.first_pages.clear()
        statement = kept.ordered.limit(literal_column(str(int(count))))
        kept.first_pages[count] = statement
    return statement, {}


_PREPARED: dict[tuple[Any, ...], _Prepared] = {}
_PREPARED_MOST = 1024  # shapes of filter x queries; all forgotten when full, as scope.py's
_FIRST_PAGES_MOST = 256  # counts of first pages per prepared statement, likewise


def _prepared(
    query: Select[Any],
    where: ColumnElement[bool] | None,
    keys: list[Key],
    request: PageRequest,
    expand: Expansion | None,
) -> tuple[Select[Any], dict[str, Any]] | None:
    """fetch's statement of an index page, made once per query, keys, expansion and shape of
    `where`; with the values of `where` to run it with. None: a condition without a shape."""
    if where is None:
        shape, parameters = shapes.Shape((), {}), []
    else:
        found = shapes.shape_of(where)
        if found is None:
            return None
        shape, parameters = found
    if request.start_index != 1:
        expand = None  # not under an OFFSET (fetch)
    cache_key = (id(query), tuple(map(id, keys)), id(expand), shape.key)
    kept = _PREPARED.get(cache_key)
    # The ids are the objects' own while these are held, which the entry's objects tell.
    if (
        kept is None
        or kept.query is not query
        or kept.expand is not expand
        or any(a is not b for a, b in zip(kept.keys, keys, strict=True))
    ):
        read = query if where is None else query.where(shapes.named(where, parameters))
        if expand is not None:
            read = expand(read)
        ordered = read.order_by(*(_order(k, reverse=False) for k in keys))
        bounded = ordered.offset(_OFFSET).limit(_LIMIT)
        kept = _Prepared(query, tuple(keys), expand, ordered, bounded, {})
        if len(_PREPARED) >= _PREPARED_MOST:
            _PREPARED.clear()
        _PREPARED[cache_key] = kept
    statement, bounds = _for_the_page(kept, min(request.start_index - 1, MAX_OFFSET), request.count)
    return statement, shape.values | bounds


def _by_cursor(
    query: Select[Any],
    keys: list[Key],
    request: PageRequest,
    count: Counter,
    expand: Expansion | None,
) -> Page:
    cursor = request.cursor
    assert cursor is not None
    if request.count == 0:
        return Page([], count(query))
    backwards = cursor.backwards
    first = cursor.keys is None
    read = expand(query) if expand is not None else query  # a keyset: no row is skipped
    beyond = read if first else read.where(_beyond(keys, cursor.keys, before=backwards))
    # The keys labelled apart from the row's columns (created_at is both, for users).
    ordered = beyond.add_columns(
        *(k.expression.label(f"_page_key_{i}") for i, k in enumerate(keys))
    ).order_by(*(_order(k, reverse=backwards) for k in keys))
    # One row more than asked tells whether another page follows in this direction.
    fetched = list(db.session.execute(ordered.limit(request.count + 1)))
    more = len(fetched) > request.count
    fetched = fetched[: request.count]
    # The first page with nothing after it holds every match: no count needed.
    total = len(fetched) if first and not backwards and not more else count(query)
    if backwards:
        fetched.reverse()
    rows = _taken(fetched, len(keys))
    positions = [tuple(row[-len(keys) :]) for row in fetched]
    if not rows:
        return Page([], total)
    has_next = more if not backwards else True
    has_previous = (not first) if not backwards else more
    return Page(
        rows,
        total,
        next=Cursor(positions[-1]) if has_next else None,
        previous=Cursor(positions[0], backwards=True) if has_previous else None,
    )


def _taken(fetched: list[Row[Any]], keys: int) -> list[Any]:
    """The page's rows from what its statement read, `keys` labelled columns at the end of
    each: a single entity or value taken out of its Row, several columns left as the Row.
    Told by the rows themselves: asking the statement (column_descriptions) took 27 µs."""
    if fetched and len(fetched[0]) - keys == 1:
        return [row[0] for row in fetched]
    return fetched


def _order(key: Key, *, reverse: bool) -> Any:
    descending = key.descending != reverse
    ordered = key.expression.desc() if descending else key.expression.asc()
    if not key.nullable:
        return ordered
    # Null is the greatest value. Said explicitly: PostgreSQL's default agrees, SQLite's (nulls
    # smallest) does not.
    return ordered.nulls_first() if descending else ordered.nulls_last()


def _beyond(keys: list[Key], values: tuple[Any, ...], *, before: bool) -> ColumnElement[bool]:
    """Rows strictly after (or before) the row whose sort keys are `values`, in page order."""
    # The tiebreak keys (creation time, id) are never null and ascending: one row-value
    # comparison, which both databases answer with a range scan of their index.
    tail = next(i for i in range(len(keys)) if all(_plain(k) for k in keys[i:]))
    alternatives = []
    for i in range(tail):
        ties = [_equal(k, v) for k, v in zip(keys[:i], values[:i], strict=True)]
        alternatives.append(and_(*ties, _past(keys[i], values[i], before=before)))
    ties = [_equal(k, v) for k, v in zip(keys[:tail], values[:tail], strict=True)]
    row = tuple_(*(k.expression for k in keys[tail:]))
    bound = tuple_(*(_bound(k, v) for k, v in zip(keys[tail:], values[tail:], strict=True)))
    alternatives.append(and_(*ties, row < bound if before else row > bound))
    return or_(*alternatives)


def _plain(key: Key) -> bool:
    return not key.nullable and not key.descending


def _equal(key: Key, value: Any) -> ColumnElement[bool]:
    return key.expression.is_(None) if value is None else key.expression == _bound(key, value)


def _bound(key: Key, value: Any) -> Any:
    # A bound parameter of the key's type: `active > true` must compare, not be refused.
    return literal(value, key.expression.type)


def _past(key: Key, value: Any, *, before: bool) -> ColumnElement[bool]:
    """One key strictly past `value` in the page's direction, null being the greatest value."""
    if before == key.descending:  # towards greater values
        if value is None:
            return false()  # nothing is greater than null
        greater = key.expression > _bound(key, value)
        return or_(greater, key.expression.is_(None)) if key.nullable else greater
    if value is None:
        return key.expression.is_not(None)  # every value is less than null
    return key.expression < _bound(key, value)
