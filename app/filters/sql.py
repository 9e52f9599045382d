"""Filter trees -> SQLAlchemy WHERE clauses, and sortBy -> ORDER BY keys (RFC 7644 §3.4.2).

What a term means is decided in app.filters.visitor; this module only knows where each attribute
lives (`Target`, `Elements`, `Column`) and how to say the comparison in SQL: LIKE with escaping,
timestamps to the millisecond, strings in code-point order on both databases. The library's own
SQL transpiler is not used: it neither escapes LIKE patterns nor folds case by schema, and it
silently drops terms it cannot map.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from app import etags, tenancy
from app.db import UTCDateTime
from app.errors import InvalidFilter, InvalidValue
from app.filters.grammar import ORDERING, SUBSTRING, Filter, as_path_error
from app.filters.visitor import (
    LOCATION,
    SCHEMAS,
    FilterVisitor,
    default_value_sub,
    element_field,
    folds,
    millisecond,
    resolve_name,
)
from app.fold import fold
from app.models import Group, GroupMember, User, UserValue
from app.schema import Attribute, Resolved, ResourceType
from app.schema.core import GROUP_RESOURCE, USER_RESOURCE

Clause = ColumnElement[bool]


@dataclass(frozen=True)
class Column:
    """Where a value lives in SQL; `folded` columns hold app.fold.fold(value), as every column
    compared for a `caseExact: false` attribute must (_compare refuses others)."""

    expression: Any
    folded: bool = False


@dataclass(frozen=True)
class Elements:
    """Where a multi-valued attribute's elements live: one row per element, so that a value
    filter (`emails[type eq "work" and value co "@x"]`) holds for one element, never across two."""

    owner: Any  # the column that names the resource the element belongs to
    columns: dict[str, Column]  # sub-attribute -> column
    where: tuple[Any, ...] = ()  # narrows a shared table to this attribute
    data: Any = None  # a JSON column with the whole element, for the other sub-attributes
    data_key: Any = None  # the same element folded (app.fold.folded_copy), for caseExact=false
    order: tuple[Any, ...] = ()  # the element sortBy uses: the primary one, else the first
    exact_value: Any = None  # `value` as written, for caseExact attributes (columns has it folded)


@dataclass(frozen=True)
class Target:
    """How one resource type maps onto tables, for filters and sorting."""

    rt: ResourceType
    resource_id: Any
    columns: dict[str, Column]  # singular attributes kept in columns
    document: Any  # JSON column with the rest, or None
    document_key: Any  # the same document folded (app.fold.folded_copy), for caseExact=false
    elements: Callable[[Resolved], Elements | None]
    version: Any  # meta.version's number, which sortBy orders by


def element_key(resolved: Resolved) -> str:
    """How user_values names an attribute: `emails`, or URN-qualified for extensions."""
    if resolved.schema is None or resolved.schema.id == USER_RESOURCE.schema.id:
        return resolved.attribute.name
    return f"{resolved.schema.id}:{resolved.attribute.name}"


def _user_elements(resolved: Resolved) -> Elements | None:
    if resolved.attribute.name == "groups" and resolved.schema is USER_RESOURCE.schema:
        # groups is readOnly and lives in group_members, seen from the member's side; its
        # display is the group's displayName, read by joining to groups.
        display = (
            select(Group.display_name_key)
            .where(Group.id == GroupMember.group_id, Group.deleted_at.is_(None))
            .scalar_subquery()
        )
        return Elements(
            GroupMember.member_id,
            {
                "value": Column(GroupMember.group_id, folded=True),  # lower-case UUIDs
                "display": Column(display, folded=True),
                "type": Column(literal("direct", String), folded=True),  # no nested expansion
            },
            order=(display, GroupMember.group_id),  # as serialize lists them
        )
    return Elements(
        UserValue.user_id,
        # The other sub-attributes (type, display, primary...) are read from the element, as
        # written or folded: the `primary` column says false also when it is absent, and
        # `primary pr` or `primary eq false` must tell the two apart.
        {"value": Column(UserValue.value_key, folded=True)},
        where=(UserValue.attribute == element_key(resolved),),
        data=UserValue.data,
        data_key=UserValue.data_key,
        exact_value=UserValue.value,
        # RFC 7644 §3.4.2.3: sort by the primary value, "or else the first value in the list";
        # rows are written in the list's order, so the first has the lowest id.
        order=(UserValue.primary.desc(), UserValue.id),
    )


def _group_elements(resolved: Resolved) -> Elements | None:
    # A member's display is its current name, as serialize shows it: joined, never stored, and
    # compared through the member's folded copies.
    nested = aliased(Group)
    is_user = GroupMember.member_type == "User"
    display = case(
        (
            is_user,
            select(func.coalesce(User.display_name_key, User.user_name_key))
            .where(User.id == GroupMember.member_id, User.deleted_at.is_(None))
            .scalar_subquery(),
        ),
        else_=select(nested.display_name_key)
        .where(nested.id == GroupMember.member_id, nested.deleted_at.is_(None))
        .scalar_subquery(),
    )
    member_type = case((is_user, literal(fold("User"))), else_=literal(fold("Group")))
    return Elements(
        GroupMember.group_id,
        {
            # Member ids are lower-case UUIDs, so the stored id doubles as its folded form.
            "value": Column(GroupMember.member_id, folded=True),
            "type": Column(member_type, folded=True),
            "display": Column(display, folded=True),
        },
        order=(GroupMember.member_id,),  # as serialize lists them
    )


def _etag(version: Any) -> Any:
    """meta.version as serialize writes it (etags.etag), built in SQL: the tenant's tag, bound
    when the statement runs (a filter always runs in its tenant's scope), then the version."""
    tag = bindparam("etag_tenant_tag", type_=String, callable_=_current_tenant_tag, unique=True)
    return literal('W/"', String) + tag + cast(version, String) + literal('"', String)


def _current_tenant_tag() -> str:
    return etags.tenant_tag(tenancy.current_id())


# Where each queried attribute lives. For users, anything singular not listed is read from the
# JSON document; multi-valued sub-attributes are matched per element (see Elements).
USERS = Target(
    USER_RESOURCE,
    User.id,
    {
        "id": Column(User.id),
        "externalId": Column(User.external_id),
        "userName": Column(User.user_name_key, folded=True),
        "displayName": Column(User.display_name_key, folded=True),
        "name.givenName": Column(User.given_name_key, folded=True),
        "name.familyName": Column(User.family_name_key, folded=True),
        "active": Column(User.active),
        "meta.resourceType": Column(literal(USER_RESOURCE.id, String)),
        "meta.created": Column(User.created_at),
        "meta.lastModified": Column(User.last_modified),
        "meta.version": Column(_etag(User.version)),
    },
    User.document,
    User.document_key,
    _user_elements,
    User.version,
)
GROUPS = Target(
    GROUP_RESOURCE,
    Group.id,
    {
        "id": Column(Group.id),
        "externalId": Column(Group.external_id),
        "displayName": Column(Group.display_name_key, folded=True),
        "meta.resourceType": Column(literal(GROUP_RESOURCE.id, String)),
        "meta.created": Column(Group.created_at),
        "meta.lastModified": Column(Group.last_modified),
        "meta.version": Column(_etag(Group.version)),
    },
    None,
    None,
    _group_elements,
    Group.version,
)


def users_where(
    tree: Filter, rt: ResourceType = USER_RESOURCE, *, unknown_is_missing: bool = False
) -> Clause:
    """`tree`: a filter grammar.parse made; `rt`: the deployment's User resource type."""
    return _Sql(_users(rt), unknown_is_missing=unknown_is_missing).visit(tree)


def _users(rt: ResourceType) -> Target:
    """USERS for the deployment's User resource type (with its extensions), made once per type.

    Kept by id(rt), the entry holding rt so that the id stays its own: a cache keyed by the
    type itself hashed the whole frozen schema on every call, half of a `userName eq` filter's
    translation."""
    if rt is USER_RESOURCE:
        return USERS
    held = _USERS_OF.get(id(rt))
    if held is None or held[0] is not rt:
        if len(_USERS_OF) >= 64:  # an app per test: types come and go
            _USERS_OF.clear()
        held = _USERS_OF[id(rt)] = (rt, dataclasses.replace(USERS, rt=rt))
    return held[1]


_USERS_OF: dict[int, tuple[ResourceType, Target]] = {}


def groups_where(tree: Filter, *, unknown_is_missing: bool = False) -> Clause:
    return _Sql(GROUPS, unknown_is_missing=unknown_is_missing).visit(tree)


def members_where(value_filter: Filter) -> Clause:
    """A PATCH path's `members[...]` filter as a condition on group_members rows."""
    members = Resolved(GROUP_RESOURCE.schema, GROUP_RESOURCE.schema.attribute("members"))
    try:
        return _Sql(GROUPS).element_filter(members, value_filter)
    except InvalidFilter as e:
        raise as_path_error(e) from None


def users_sort_key(path: str, rt: ResourceType = USER_RESOURCE) -> ColumnElement[Any]:
    """The SQL expression to order users by `sortBy` (RFC 7644 §3.4.2.3)."""
    return _sort_key(_users(rt), path)


def groups_sort_key(path: str) -> ColumnElement[Any]:
    return _sort_key(GROUPS, path)


class _Sql(FilterVisitor[Clause]):
    """A filter as one WHERE clause over the target's tables."""

    def __init__(self, target: Target, *, unknown_is_missing: bool = False):
        super().__init__(target.rt, unknown_is_missing=unknown_is_missing)
        self.target = target

    def constant(self, value: bool) -> Clause:
        return true() if value else false()

    def both(self, left: Clause, right: Clause) -> Clause:
        return and_(left, right)

    def either(self, left: Clause, right: Clause) -> Clause:
        return or_(left, right)

    def negate(self, operand: Clause) -> Clause:
        # NOT over SQL NULL would be NULL (no match); "x IS NOT TRUE" gives SCIM's two-valued NOT.
        return operand.is_not(True)

    def schemas(self, op: str, value: Any) -> Clause:
        """`schemas eq "urn:...:enterprise:2.0:User"` (RFC 7644 §3.4.2.2 Figure 2's example
        filters on schemas): the core schema, and each extension the resource has data for, as
        serialize lists them."""
        matches = []
        for schema in self.rt.schemas:
            condition = _compare(Column(literal(fold(schema.id), String), True), SCHEMAS, op, value)
            if schema is not self.rt.schema:
                if self.target.document is None:
                    continue
                has_data = self.target.document[schema.id].as_string().is_not(None)
                condition = and_(has_data, condition)
            matches.append(condition)
        return or_(*matches)

    def singular(self, resolved: Resolved, op: str, value: Any) -> Clause:
        return _compare(_column(self.target, resolved), resolved.leaf, op, value)

    def element(self, parent: Resolved, sub: Attribute, op: str, value: Any) -> Clause:
        column = _column_of_element(self._elements(parent), sub)
        if column is None:
            name = parent.attribute.name
            raise InvalidFilter(f"Invalid filter: {name}.{sub.name} cannot be filtered on")
        return _compare(column, sub, op, value)

    def can_filter_element(self, parent: Resolved, sub: Attribute) -> bool:
        return _column_of_element(self._elements(parent), sub) is not None

    def any_element(self, parent: Resolved, condition: Clause | None) -> Clause:
        elements = self._elements(parent)
        conditions = (condition,) if condition is not None else ()
        # IN (SELECT owner ...) rather than a correlated EXISTS: SQLite then starts from the
        # element index instead of probing every resource (824 ms -> ms at 100k users).
        owners = select(elements.owner).where(*elements.where, *conditions)
        return self.target.resource_id.in_(owners)

    def no_elements(self, parent: Resolved) -> Clause:
        return ~self.any_element(parent, None)

    def _elements(self, resolved: Resolved) -> Elements:
        elements = self.target.elements(resolved)
        if elements is None:
            raise InvalidFilter(f"Invalid filter: {resolved.attribute.name} cannot be filtered")
        return elements


def _compare(column: Column, attribute: Attribute, op: str, value: Any) -> Clause:
    """One operator on one column; `value` already checked against the attribute's type
    (visitor.check_value), so only the SQL is decided here."""
    expression = column.expression
    if op == "pr":
        present = expression.is_not(None)
        if attribute.type in ("string", "reference", "binary"):
            present = and_(present, expression != "")  # RFC 7644 §3.4.2.2: "" is not present
        return present
    if value is None:  # eq null, ne null
        return expression.is_(None) if op == "eq" else expression.is_not(None)
    if attribute.type == "dateTime":
        return _compare_instant(expression, op, value)
    if attribute.type not in ("string", "reference"):
        return _OPERATIONS[op](expression, value)  # booleans, numbers; binary as written
    fold_value: Callable[[str], str] = _same
    if folds(attribute):
        fold_value = fold
        _require_folded(column, attribute)
    if op in SUBSTRING:
        return _like(expression, value, op, fold_value)
    if op in ORDERING:
        expression = _in_codepoint_order(expression)  # "lexicographical", identically everywhere
    return _OPERATIONS[op](expression, fold_value(value))


def _require_folded(column: Column, attribute: Attribute) -> None:
    """A `caseExact: false` attribute is only ever compared through a folded copy: SQL's
    lower() would make the answer depend on the database and its locale (app.fold)."""
    if not column.folded:
        raise TypeError(f"{attribute.name} is mapped to a column without a folded copy")


def _same(text: str) -> str:
    return text


def _like(expression: Any, value: str, op: str, fold_pattern: Callable[[str], str]) -> Clause:
    """LIKE with `%`, `_` and the escape character in the value matching themselves."""
    escaped = value.replace("/", "//").replace("%", "/%").replace("_", "/_")
    pattern = {"co": "%{}%", "sw": "{}%", "ew": "%{}"}[op].replace("{}", escaped)
    # Escaped before folding, which leaves "/", "%" and "_" as they are.
    return expression.like(fold_pattern(pattern), escape="/")


def _compare_instant(column: Any, op: str, value: datetime) -> Clause:
    """Compare a timestamp as clients see it: to the millisecond (visitor.Millisecond)."""
    bounds = millisecond(value)
    if op == "eq":
        return and_(column >= bounds.floor, column < bounds.after) if bounds.exact else false()
    if op == "ne":
        if not bounds.exact:
            return true()
        return or_(column.is_(None), column < bounds.floor, column >= bounds.after)
    return {
        "gt": lambda: column >= bounds.after,
        "ge": lambda: column >= bounds.ceiling,
        "lt": lambda: column < bounds.ceiling,
        "le": lambda: column < bounds.after,
    }[op]()


_OPERATIONS: dict[str, Callable[[Any, Any], Clause]] = {
    "eq": lambda c, v: c == v,
    "ne": lambda c, v: or_(c.is_(None), c != v),
    "gt": lambda c, v: c > v,
    "ge": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
}


# ---------------------------------------------------------------------------------------------
# Sorting


def _sort_key(target: Target, path: str) -> ColumnElement[Any]:
    try:
        return _sort_expression(target, path)
    except InvalidFilter as e:  # the same reasons, but a sortBy is no filter
        raise InvalidValue(e.detail) from None


def _sort_expression(target: Target, path: str) -> ColumnElement[Any]:
    resolved = resolve_name(target.rt, path)
    if resolved is None:
        if path.lower() == "schemas":
            # Every resource lists its core schema first (serialize.user): one value for all.
            return literal(target.rt.schema.id, String)
        raise InvalidValue(f"sortBy: unknown attribute {path!r}")
    resolved = default_value_sub(resolved, "sortBy")
    if resolved.name == LOCATION:
        # The base URL is the same for every resource: this is the order of the ids.
        return _in_codepoint_order(target.resource_id)
    if resolved.name == "meta.version":
        return target.version  # by number: W/"10" comes after W/"9"
    if resolved.attribute.multi_valued:
        return _element_sort_key(target, resolved)
    return _sortable(_column(target, resolved, "sortBy"), resolved.leaf)


def _element_sort_key(target: Target, resolved: Resolved) -> ColumnElement[Any]:
    """RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary (else first) element."""
    elements = target.elements(resolved)
    column = elements and _column_of_element(elements, resolved.leaf)
    if column is None:
        raise InvalidFilter(f"sortBy: {resolved.name} cannot be sorted on")
    return (
        select(_sortable(column, resolved.leaf))
        .where(elements.owner == target.resource_id, *elements.where)
        .order_by(*elements.order)
        .limit(1)
        .correlate(target.resource_id.table)
        .scalar_subquery()
    )


def _sortable(column: Column, attribute: Attribute) -> Any:
    if attribute.type not in ("string", "reference"):
        return column.expression
    if folds(attribute):
        _require_folded(column, attribute)
    return _in_codepoint_order(column.expression)


class _in_codepoint_order(FunctionElement):  # noqa: N801 - used like a SQL function
    """A string ordered by code point, as Python and SQLite order it, whatever collation the
    PostgreSQL database has (en_US.UTF-8 ignores punctuation at first: "a-c" < "ab" there)."""

    type = String()
    inherit_cache = True


@compiles(_in_codepoint_order)
def _codepoint_order_default(element: _in_codepoint_order, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)  # SQLite's BINARY collation already is


@compiles(_in_codepoint_order, "postgresql")
def _codepoint_order_postgresql(element: _in_codepoint_order, compiler: Any, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)} COLLATE "C")'


# ---------------------------------------------------------------------------------------------
# Where values live


def _column(target: Target, resolved: Resolved, where: str = "Invalid filter") -> Column:
    column = target.columns.get(resolved.name)
    if column is not None:
        return column
    if target.document is None or resolved.name == LOCATION:
        raise InvalidFilter(f"{where}: {resolved.name} cannot be filtered or sorted on")
    if folds(resolved.leaf):
        return Column(_json_value(target.document_key, target, resolved), folded=True)
    return Column(_json_value(target.document, target, resolved))


def _column_of_element(elements: Elements, sub: Attribute) -> Column | None:
    # A simple multi-valued attribute (a list of strings, say) is stored as {"value": x}.
    name = element_field(sub)
    # Binary (base64) is compared as written, never folded: `x509Certificates.value eq
    # "MIIC..."` must meet the value as stored, not its folded copy.
    exact = sub.case_exact or sub.type == "binary"
    if name == "value" and exact and elements.exact_value is not None:
        return Column(elements.exact_value)
    column = elements.columns.get(name)
    if column is not None:
        return column
    if elements.data is None:
        return None
    if folds(sub):
        return Column(_typed(elements.data_key[name], sub), folded=True)
    return Column(_typed(elements.data[name], sub))


def _json_value(document: Any, target: Target, resolved: Resolved) -> Any:
    keys: list[str] = []
    if resolved.schema is not None and resolved.schema is not target.rt.schema:
        keys.append(resolved.schema.id)
    keys.append(resolved.attribute.name)
    if resolved.sub_attribute is not None:
        keys.append(resolved.sub_attribute.name)
    element = document[tuple(keys)] if len(keys) > 1 else document[keys[0]]
    return _typed(element, resolved.leaf)


class instant(FunctionElement[datetime]):  # noqa: N801 (reads as the SQL it becomes)
    """An RFC 3339 string from a JSON document, as a comparable point in time.

    PostgreSQL casts it to timestamptz. SQLite renders it in UTC in the text form its DATETIME
    columns use, so it compares with bound timestamps (and sorts) chronologically whatever
    offset the client wrote.
    """

    type = UTCDateTime()
    name = "instant"
    inherit_cache = True


@compiles(instant)
def _instant_sqlite(element: instant, compiler: Any, **kw: Any) -> str:
    inner = compiler.process(element.clauses, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%f', {inner}) || '000')"


@compiles(instant, "postgresql")
def _instant_postgresql(element: instant, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TIMESTAMP WITH TIME ZONE)"


def _typed(element: Any, attribute: Attribute) -> Any:
    if attribute.type == "dateTime":
        return instant(element.as_string())
    if attribute.type == "boolean":
        return element.as_boolean()
    if attribute.type == "integer":
        return element.as_integer()
    if attribute.type == "decimal":
        return element.as_float()
    return element.as_string()


__all__ = [
    "GROUPS",
    "USERS",
    "Column",
    "Elements",
    "Target",
    "element_key",
    "groups_sort_key",
    "groups_where",
    "instant",
    "members_where",
    "users_sort_key",
    "users_where",
]
