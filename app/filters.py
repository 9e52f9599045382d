"""SCIM filter text -> SQLAlchemy WHERE clauses (RFC 7644 §3.4.2.2), via scim2-filter-parser.

Only the lexer and parser come from the library; this module walks the tree itself, because the
library's SQL transpiler neither escapes LIKE patterns nor folds case by schema, and silently
drops terms it cannot map. Gaps of scim2-filter-parser 0.7.0 closed here:
  * `and` binds tighter than `or` (the parser gives both the same precedence, left to right,
    so `a or b and c` came back as `(a or b) and c`): `_reassociate`;
  * string escapes: the lexer ends a string at the first `\\"` and keeps `\\u00e9` verbatim;
    strings are JSON strings (RFC 7644 §3.4.2.2 cites RFC 7159): `_Lexer.COMP_VALUE`;
  * numbers: the lexer takes one digit (`42` is two tokens, `1.5` and `-1` fail): `_Lexer.NUMBER`;
  * "true" (a string) and true (a boolean) both came back as Python strings: literals keep
    their JSON type (`Literal`);
  * `true`, `false` and `null` are case-insensitive in the RFC's ABNF (RFC 5234 §2.3) but the
    lexer knows the lower-case spelling only, and it lexes the head of an attribute named
    `nullable` or `trueName` as a literal: `_Lexer.TRUE/FALSE/NULL`;
  * its errors are a bare "Parsing error at: Token(...)" and a ValueError naming no position:
    `_describe_parser_error` and `_Lexer.error` name the token and its position;
  * `schemas` and `meta.resourceType` are no attribute of any schema, and complex attributes
    (`name pr`, `emails pr`) have no SQL in its transpiler: `_Translator` maps them itself.
  * Entra ID filters with a sub-attribute after a value path (`emails[type eq "work"].value eq
    "x"`), which RFC 7644's ABNF lacks; the parser keeps the sub-attribute on the value path's
    namespace: `_expand_sub_attribute_of_value_path` reads it as `emails[type eq "work" and
    value eq "x"]`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from scim2_filter_parser import ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser, SCIMParserError
from sqlalchemy import (
    ColumnElement,
    String,
    and_,
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

from app.db import UTCDateTime
from app.errors import InvalidFilter, InvalidPath, InvalidValue
from app.intake import text_problem
from app.limits import DEFAULT_LIMITS, Limits
from app.models import Group, GroupMember, User, UserValue
from app.schema import Attribute, Resolved, ResourceType, fold, parse_datetime
from app.schema.core import GROUP_RESOURCE, USER_RESOURCE


@dataclass(frozen=True)
class Literal:
    """A comparison value with its JSON type intact."""

    value: str | bool | int | float | None


class _Lexer(SCIMLexer):
    tokens = SCIMLexer.tokens

    # JSON number (RFC 8259 §6); the library accepts a single digit only.
    @_(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")  # noqa: F821
    def NUMBER(self, t):  # noqa: N802
        t.value = Literal(json.loads(t.value))
        return t

    # JSON string with escapes; the library stops at the first \".
    @_(r'"(?:[^"\\]|\\.)*"')  # noqa: F821
    def COMP_VALUE(self, t):  # noqa: N802
        try:
            t.value = Literal(json.loads(t.value))
        except ValueError as e:
            problem = "control character" if "control character" in str(e) else "escape"
            raise ValueError(f"Invalid {problem} in string {t.value}") from None
        if isinstance(t.value.value, str) and "\x00" in t.value.value:
            # No stored value can hold NUL (PostgreSQL text cannot); refuse it on both databases.
            raise ValueError(f"NUL character (\\u0000) in string at position {t.index + 1}")
        if isinstance(t.value.value, str) and text_problem(t.value.value):
            # "\ud800" is a JSON escape, but of no Unicode character: no driver can send it.
            raise ValueError(f"Lone UTF-16 surrogate in string at position {t.index + 1}")
        return t

    # RFC 5234 §2.3: ABNF strings are case-insensitive, so `True` and `NULL` are literals too;
    # the look-ahead keeps `trueName` or `nullable` an attribute name.
    @_(r"(?i:true)(?![A-Za-z0-9_$-])")  # noqa: F821
    def TRUE(self, t):  # noqa: N802
        t.value = Literal(True)
        return t

    @_(r"(?i:false)(?![A-Za-z0-9_$-])")  # noqa: F821
    def FALSE(self, t):  # noqa: N802
        t.value = Literal(False)
        return t

    @_(r"(?i:null)(?![A-Za-z0-9_$-])")  # noqa: F821
    def NULL(self, t):  # noqa: N802
        t.value = Literal(None)
        return t

    def error(self, t):
        if t.value[0] == '"':  # COMP_VALUE did not match: the closing quote is missing
            raise ValueError(f"Unterminated string starting at position {t.index + 1}")
        raise ValueError(f"Unexpected character {t.value[0]!r} at position {t.index + 1}")


def parse(text: str, limits: Limits = DEFAULT_LIMITS) -> ast.Filter:
    """Parse filter text; every failure is an InvalidFilter naming what went wrong."""
    if len(text) > limits.filter_chars:
        raise InvalidFilter(
            f"Invalid filter: it is {len(text)} characters long; at most {limits.filter_chars} "
            "are accepted (SCIM_MAX_FILTER_CHARS)"
        )
    if problem := text_problem(text):
        raise InvalidFilter(f"Invalid filter: the filter {problem}")
    try:
        tokens = list(_Lexer().tokenize(text))
        _check_size(tokens, limits)
        tree = SCIMParser().parse(iter(tokens))
    except ValueError as e:
        raise InvalidFilter(f"Invalid filter: {e}") from None
    except SCIMParserError as e:
        raise InvalidFilter(f"Invalid filter: {_describe_parser_error(e, text, tokens)}") from None
    if tree is None:
        raise InvalidFilter("Invalid filter: the filter is incomplete")
    return _reassociate(tree)


def parse_path(text: str, limits: Limits = DEFAULT_LIMITS) -> ast.AttrPath:
    """Parse a PATCH path (`emails[type eq "work"].value`) with the same grammar as filters."""
    if len(text) > limits.filter_chars or text_problem(text):
        raise InvalidPath(f"Invalid path {_clip(text)!r}")
    try:
        tokens = list(_Lexer().tokenize(f'{text} eq ""'))
        _check_size(tokens, limits)
        tree = SCIMParser().parse(iter(tokens))
    except InvalidFilter as e:
        raise InvalidPath(e.detail.replace("Invalid filter", "Invalid path")) from None
    except (ValueError, SCIMParserError):
        raise InvalidPath(f"Invalid path {_clip(text)!r}") from None
    if tree is None or not isinstance(tree.expr, ast.AttrExpr):
        raise InvalidPath(f"Invalid path {text!r}")
    path = tree.expr.attr_path
    if isinstance(path.attr_name, ast.Filter):
        path.attr_name.expr = _reassociate(path.attr_name.expr)
    return path


_OPERATOR_NAMES = "eq, ne, co, sw, ew, gt, ge, lt, le or pr"
_COMPARISONS = frozenset({"EQ", "NE", "CO", "SW", "EW", "GT", "GE", "LT", "LE", "PR"})
_OPENING = frozenset({"LPAREN", "LBRACKET"})
_CLOSING = frozenset({"RPAREN", "RBRACKET"})


def _check_size(tokens: list[Any], limits: Limits) -> None:
    """Refuse a filter nested or chained beyond the limits before the parser sees it.

    The parser and the translation to SQL walk the tree recursively; bounded here, they never
    run out of stack, and no filter costs the database more than `filter_terms` comparisons.
    """
    depth = deepest = terms = 0
    for token in tokens:
        if token.type in _OPENING:
            depth += 1
            deepest = max(deepest, depth)
        elif token.type in _CLOSING:
            depth -= 1
        elif token.type in _COMPARISONS:
            terms += 1
    if deepest > limits.filter_depth:
        raise InvalidFilter(
            f"Invalid filter: it nests {deepest} levels of ( ) and [ ] deep; at most "
            f"{limits.filter_depth} are accepted (SCIM_MAX_FILTER_DEPTH)"
        )
    if terms > limits.filter_terms:
        raise InvalidFilter(
            f"Invalid filter: it has {terms} comparisons; at most {limits.filter_terms} are "
            "accepted (SCIM_MAX_FILTER_TERMS)"
        )


def _clip(text: str) -> str:
    return text if len(text) <= 100 else text[:100] + "..."


def _describe_parser_error(error: SCIMParserError, text: str, tokens: list[Any]) -> str:
    token = error.args[0] if error.args else None
    # SCIMParserError carries "Parsing error at: Token(...)" or "...: None" at end of input.
    message = str(token)
    if message.endswith("None"):
        return "the filter ended unexpectedly"
    marker = "index="
    if marker in message:
        index = int(message.split(marker, 1)[1].split(",", 1)[0])
        word = text[index:].split(" ", 1)[0]
        # A word right after an attribute path stands where the operator belongs: `x regex "y"`.
        position = next((i for i, t in enumerate(tokens) if t.index == index), None)
        if (
            position
            and tokens[position].type == "ATTRNAME"
            and tokens[position - 1].type in ("ATTRNAME", "SUBATTR")
        ):
            return f"unknown operator {word!r} at position {index + 1}; use {_OPERATOR_NAMES}"
        return f"unexpected {word!r} at position {index + 1}"
    return message


def _reassociate(node: ast.Filter) -> ast.Filter:
    """Rebuild unparenthesised and/or chains so that `and` binds tighter than `or`."""
    if not isinstance(node, ast.Filter):
        return node
    if isinstance(node.expr, ast.LogExpr) and not node.negated and node.namespace is None:
        operands: list[ast.Filter] = []
        operators: list[str] = []
        _flatten(node, operands, operators)
        operands = [_reassociate_inner(o) for o in operands]
        groups: list[list[ast.Filter]] = [[operands[0]]]
        for operator, operand in zip(operators, operands[1:], strict=True):
            if operator == "or":
                groups.append([operand])
            else:
                groups[-1].append(operand)
        return _chain("or", [_chain("and", g) for g in groups])
    return _reassociate_inner(node)


def _reassociate_inner(node: ast.Filter) -> ast.Filter:
    _expand_sub_attribute_of_value_path(node)  # first, so its bracket filter is seen below
    if isinstance(node.expr, ast.Filter):  # parentheses, not(...) or a value path
        node.expr = _reassociate(node.expr)
    return node


def _expand_sub_attribute_of_value_path(node: ast.Filter) -> None:
    """Entra's `emails[type eq "work"].value eq "x"` -> `emails[(type eq "work") and value eq
    "x"]`, in place: one element must match both, whatever the operator (`ne` too: an element
    of the bracket filter whose value is not "x"). RFC 7644's ABNF has no `valuePath "."
    subAttr` in a filter, but the parser takes it, and Entra ID looks users up with it."""
    if not isinstance(node.expr, ast.AttrExpr):
        return
    value_path = node.expr.attr_path.attr_name
    if not isinstance(value_path, ast.Filter) or value_path.namespace.sub_attr is None:
        return  # `emails[...] eq "x"`, without a sub-attribute, stays an error
    parent = value_path.namespace
    term = ast.AttrExpr(
        node.expr.value, ast.AttrPath(parent.sub_attr.value, None, None), node.expr.comp_value
    )
    # The bracket filter goes in parentheses, so that `_reassociate` keeps its `or` inside.
    bracket = ast.Filter(value_path.expr, False, None)
    both = ast.LogExpr("and", bracket, ast.Filter(term, False, None))
    node.expr = ast.Filter(
        ast.Filter(both, False, None), False, ast.AttrPath(parent.attr_name, None, parent.uri)
    )


def _flatten(node: ast.Filter, operands: list[ast.Filter], operators: list[str]) -> None:
    if isinstance(node.expr, ast.LogExpr) and not node.negated and node.namespace is None:
        _flatten(node.expr.expr1, operands, operators)
        operators.append(node.expr.op.lower())
        _flatten(node.expr.expr2, operands, operators)
    else:
        operands.append(node)


def _chain(op: str, operands: list[ast.Filter]) -> ast.Filter:
    result = operands[0]
    for operand in operands[1:]:
        result = ast.Filter(ast.LogExpr(op, result, operand), False, None)
    return result


# ---------------------------------------------------------------------------------------------
# Translation to SQL


@dataclass(frozen=True)
class Column:
    """Where a value lives in SQL; `folded` columns already hold schema.fold(value)."""

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
    order: tuple[Any, ...] = ()  # the element sortBy uses: the primary one, else the first
    exact_value: Any = None  # `value` as written, for caseExact attributes (columns has it folded)


@dataclass(frozen=True)
class Target:
    """How one resource type maps onto tables, for filters and sorting."""

    rt: ResourceType
    resource_id: Any
    columns: dict[str, Column]  # singular attributes kept in columns
    document: Any  # JSON column with the rest, or None
    elements: Callable[[Resolved], Elements | None]
    version: Any  # meta.version's number, which sortBy orders by


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
                "value": Column(GroupMember.group_id, True),
                "display": Column(display, folded=True),
                "type": Column(literal("direct", String)),  # no nested expansion (yet)
            },
            order=(display, GroupMember.group_id),  # as serialize lists them
        )
    return Elements(
        UserValue.user_id,
        {
            "value": Column(UserValue.value_key, folded=True),
            "type": Column(UserValue.type),
            "display": Column(UserValue.display),
            # `primary` is read from the element: the column says false also when it is absent,
            # and `primary pr` or `primary eq false` must tell the two apart.
        },
        where=(UserValue.attribute == element_key(resolved),),
        data=UserValue.data,
        exact_value=UserValue.value,
        # RFC 7644 §3.4.2.3: sort by the primary value, "or else the first value in the list";
        # rows are written in the list's order, so the first has the lowest id.
        order=(UserValue.primary.desc(), UserValue.id),
    )


def _group_elements(resolved: Resolved) -> Elements | None:
    # A member's display is its current name, as serialize shows it: joined, never stored.
    nested = aliased(Group)
    display = case(
        (
            GroupMember.member_type == "User",
            select(func.coalesce(User.display_name, User.user_name))
            .where(User.id == GroupMember.member_id, User.deleted_at.is_(None))
            .scalar_subquery(),
        ),
        else_=select(nested.display_name)
        .where(nested.id == GroupMember.member_id, nested.deleted_at.is_(None))
        .scalar_subquery(),
    )
    # Member ids are lower-case UUIDs, so the stored id doubles as its folded form.
    return Elements(
        GroupMember.group_id,
        {
            "value": Column(GroupMember.member_id, True),
            "type": Column(GroupMember.member_type),
            "display": Column(display),
        },
        order=(GroupMember.member_id,),  # as serialize lists them
    )


def _etag(version: Any) -> Any:
    """meta.version as serialize writes it (etags.etag): W/"<version>", built in SQL."""
    return literal('W/"', String) + cast(version, String) + literal('"', String)


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
    _group_elements,
    Group.version,
)

# RFC 7643 §3: `schemas` is on every resource but in no schema. A multi-valued URI; compared
# case-insensitively, as resolve() compares schema URNs.
SCHEMAS = Attribute("schemas", type="reference", multi_valued=True)

# meta.location is the base URL, which only the HTTP layer knows, plus the id.
_LOCATION = "meta.location"


def users_where(
    filter: str | ast.Filter, rt: ResourceType = USER_RESOURCE, *, unknown_is_missing: bool = False
) -> ColumnElement[bool]:
    """`filter`: text, or a tree `parse` made; `rt`: the deployment's User resource type."""
    tree = parse(filter) if isinstance(filter, str) else filter
    return _Translator(_users(rt), unknown_is_missing=unknown_is_missing).filter(tree)


@functools.cache
def _users(rt: ResourceType) -> Target:
    return USERS if rt is USER_RESOURCE else dataclasses.replace(USERS, rt=rt)


def groups_where(
    filter: str | ast.Filter, *, unknown_is_missing: bool = False
) -> ColumnElement[bool]:
    tree = parse(filter) if isinstance(filter, str) else filter
    return _Translator(GROUPS, unknown_is_missing=unknown_is_missing).filter(tree)


def members_where(value_filter: ast.Filter) -> ColumnElement[bool]:
    """A PATCH path's `members[...]` filter as a condition on group_members rows."""
    members = GROUP_RESOURCE.schema.attribute("members")
    try:
        return _Translator(GROUPS).element_filter(members, value_filter)
    except InvalidFilter as e:
        raise InvalidPath(e.detail.replace("Invalid filter", "Invalid path")) from None


def users_sort_key(path: str, rt: ResourceType = USER_RESOURCE) -> ColumnElement[Any]:
    """The SQL expression to order users by `sortBy` (RFC 7644 §3.4.2.3)."""
    return _sort_key(_users(rt), path)


def groups_sort_key(path: str) -> ColumnElement[Any]:
    return _sort_key(GROUPS, path)


def _sort_key(target: Target, path: str) -> ColumnElement[Any]:
    try:
        return _sort_expression(target, path)
    except InvalidFilter as e:  # the same reasons, but a sortBy is no filter
        raise InvalidValue(e.detail) from None


def _sort_expression(target: Target, path: str) -> ColumnElement[Any]:
    resolved = _resolve_name(target.rt, path)
    if resolved is None:
        if path.lower() == "schemas":
            # Every resource lists its core schema first (serialize.user): one value for all.
            return literal(target.rt.schema.id, String)
        raise InvalidValue(f"sortBy: unknown attribute {path!r}")
    resolved = _default_value_sub(resolved, "sortBy")
    if resolved.name == _LOCATION:
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
    if not attribute.case_exact and not column.folded:
        return _in_codepoint_order(func.lower(column.expression))
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


def _resolve_name(rt: ResourceType, text: str) -> Resolved | None:
    """Resolve a path; an extension attribute may go without its URN when no other schema
    has an attribute of that name (`department`, `manager.value`), as IdPs write them."""
    resolved = rt.resolve(text)
    if resolved is not None or text.lower().startswith("urn:"):
        return resolved
    found = [r for s in rt.extensions if (r := rt.resolve(f"{s.id}:{text}")) is not None]
    return found[0] if len(found) == 1 else None


def _column(target: Target, resolved: Resolved, where: str = "Invalid filter") -> Column:
    column = target.columns.get(resolved.name)
    if column is not None:
        return column
    if target.document is None or resolved.name == _LOCATION:
        raise InvalidFilter(f"{where}: {resolved.name} cannot be filtered or sorted on")
    return Column(_json_value(target, resolved))


def _column_of_element(elements: Elements, sub: Attribute) -> Column | None:
    # A simple multi-valued attribute (a list of strings, say) is stored as {"value": x}.
    name = "value" if sub.multi_valued else sub.name
    # Binary (base64) is compared as written, never folded (compare): `x509Certificates.value eq
    # "MIIC..."` must meet the value as stored, not its folded copy.
    exact = sub.case_exact or sub.type == "binary"
    if name == "value" and exact and elements.exact_value is not None:
        return Column(elements.exact_value)
    column = elements.columns.get(name)
    if column is not None:
        return column
    if elements.data is None:
        return None
    return Column(_typed(elements.data[name], sub))


def _default_value_sub(resolved: Resolved, where: str) -> Resolved:
    # RFC 7644 §3.4.2.2: a complex attribute without a sub-attribute means its "value".
    if resolved.attribute.is_complex and resolved.sub_attribute is None:
        value = resolved.attribute.sub("value")
        if value is None:
            raise InvalidFilter(f"{where}: name a sub-attribute of {resolved.attribute.name}")
        return Resolved(resolved.schema, resolved.attribute, value)
    return resolved


def _json_value(target: Target, resolved: Resolved) -> Any:
    keys: list[str] = []
    if resolved.schema is not None and resolved.schema is not target.rt.schema:
        keys.append(resolved.schema.id)
    keys.append(resolved.attribute.name)
    if resolved.sub_attribute is not None:
        keys.append(resolved.sub_attribute.name)
    element = target.document[tuple(keys)] if len(keys) > 1 else target.document[keys[0]]
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


def _matches_missing(op: str, value: Any) -> bool:
    """Whether `op value` holds for an attribute that has no value (SQL NULL): `ne "x"`,
    `eq null`. Multi-valued attributes need it said, as no element row exists to test."""
    return (op == "ne" and value is not None) or (op == "eq" and value is None)


class _Missing(Exception):
    """An attribute this resource type lacks, in a search across resource types."""


class _Translator:
    def __init__(self, target: Target, *, unknown_is_missing: bool = False):
        self.target = target
        self.rt = target.rt
        # RFC 7644 §3.4.2.1: searching several resource types, an attribute one of them
        # lacks is treated as having no value there, not as an error.
        self.unknown_is_missing = unknown_is_missing

    def filter(self, node: ast.Filter) -> ColumnElement[bool]:
        if node.namespace is not None:
            clause = self._value_path(node.namespace, node.expr)
        elif isinstance(node.expr, ast.LogExpr):
            left, right = self.filter(node.expr.expr1), self.filter(node.expr.expr2)
            clause = and_(left, right) if node.expr.op.lower() == "and" else or_(left, right)
        elif isinstance(node.expr, ast.Filter):
            clause = self.filter(node.expr)
        else:
            clause = self._attr_expr(node.expr)
        # NOT over SQL NULL would be NULL (no match); "x IS NOT TRUE" gives SCIM's two-valued NOT.
        return clause.is_not(True) if node.negated else clause

    def _path_text(self, path: ast.AttrPath) -> str:
        if isinstance(path.attr_name, ast.Filter):
            raise InvalidFilter("Invalid filter: a value path cannot be compared directly")
        text = path.attr_name
        if path.sub_attr is not None:
            text += "." + path.sub_attr.value
        if path.uri:
            text = f"{path.uri}:{text}"
        return text

    def _lookup(self, path: ast.AttrPath) -> Resolved:
        text = self._path_text(path)
        resolved = _resolve_name(self.rt, text)
        if resolved is None:
            if self.unknown_is_missing:
                raise _Missing(text)
            raise InvalidFilter(f"Invalid filter: unknown attribute {text!r}")
        return resolved

    def _attr_expr(self, expr: ast.AttrExpr) -> ColumnElement[bool]:
        op = expr.value.lower()
        value = expr.comp_value.value.value if expr.comp_value is not None else None
        if self._path_text(expr.attr_path).lower() == "schemas":
            return self._schemas(op, value)
        try:
            resolved = self._lookup(expr.attr_path)
        except _Missing:
            return true() if _matches_missing(op, value) else false()
        if op == "pr" and resolved.attribute.is_complex and resolved.sub_attribute is None:
            return self._complex_present(resolved)
        resolved = _default_value_sub(resolved, "Invalid filter")
        if resolved.name == _LOCATION and op == "pr":
            return true()  # every resource has a location
        if resolved.attribute.multi_valued:
            elements = self._elements(resolved)
            column = self._element_column(elements, resolved.attribute, resolved.leaf)
            condition = compare(
                column.expression, column.folded, resolved.leaf, op, value, resolved.name
            )
            found = self._element_exists(elements, condition)
            if _matches_missing(op, value):
                # `emails.value ne "x"` holds for a user without emails, as for a missing
                # singular attribute.
                return or_(found, ~self._element_exists(elements))
            return found
        column = _column(self.target, resolved)
        return compare(column.expression, column.folded, resolved.leaf, op, value, resolved.name)

    def _complex_present(self, resolved: Resolved) -> ColumnElement[bool]:
        """RFC 7644 §3.4.2.2: pr holds for a complex attribute that "contains a non-empty
        node": a sub-attribute that is present (`name pr`), or, multi-valued, an element
        that has one (`emails pr`)."""
        attribute = resolved.attribute
        if attribute.multi_valued:
            elements = self._elements(resolved)
            present = [
                compare(column.expression, column.folded, sub, "pr", None, attribute.name)
                for sub in attribute.sub_attributes
                if (column := _column_of_element(elements, sub)) is not None
            ]
            return self._element_exists(elements, or_(*present))
        present = []
        for sub in attribute.sub_attributes:
            sub_resolved = Resolved(resolved.schema, attribute, sub)
            if sub_resolved.name == _LOCATION:
                continue  # always there, like meta.resourceType
            column = _column(self.target, sub_resolved)
            present.append(compare(column.expression, column.folded, sub, "pr", None, ""))
        return or_(*present)

    def _schemas(self, op: str, value: Any) -> ColumnElement[bool]:
        """`schemas eq "urn:...:enterprise:2.0:User"` (RFC 7644 §3.4.2.2 Figure 2's example
        filters on schemas): the core schema, and each extension the resource has data for, as
        serialize lists them."""
        matches = []
        for schema in self.rt.schemas:
            condition = compare(literal(schema.id, String), False, SCHEMAS, op, value, "schemas")
            if schema is not self.rt.schema:
                if self.target.document is None:
                    continue
                has_data = self.target.document[schema.id].as_string().is_not(None)
                condition = and_(has_data, condition)
            matches.append(condition)
        return or_(*matches)

    def _value_path(self, namespace: ast.AttrPath, inner: ast.Filter) -> ColumnElement[bool]:
        """`emails[type eq "work" and value co "@x"]`: all terms must hold for one element."""
        # Looked up as is: `addresses[...]` has no "value" sub-attribute to default to.
        try:
            parent = self._lookup(ast.AttrPath(namespace.attr_name, None, namespace.uri))
        except _Missing:
            return false()
        if not parent.attribute.multi_valued:
            raise InvalidFilter(f"Invalid filter: {parent.attribute.name} is not multi-valued")
        condition = self.element_filter(parent.attribute, inner, parent)
        return self._element_exists(self._elements(parent), condition)

    def element_filter(
        self, parent: Attribute, node: ast.Filter, resolved: Resolved | None = None
    ) -> ColumnElement[bool]:
        """The condition inside `parent[...]`, on the columns of one element's row."""
        resolved = resolved or Resolved(self.rt.schema, parent)
        if node.namespace is not None:
            raise InvalidFilter("Invalid filter: value filters cannot be nested")
        if isinstance(node.expr, ast.LogExpr):
            left = self.element_filter(parent, node.expr.expr1, resolved)
            right = self.element_filter(parent, node.expr.expr2, resolved)
            clause = and_(left, right) if node.expr.op.lower() == "and" else or_(left, right)
        elif isinstance(node.expr, ast.Filter):
            clause = self.element_filter(parent, node.expr, resolved)
        else:
            path = node.expr.attr_path
            if isinstance(path.attr_name, ast.Filter) or path.uri or path.sub_attr:
                raise InvalidFilter(
                    f"Invalid filter: inside {parent.name}[...] name a sub-attribute"
                )
            # A simple multi-valued attribute's elements are their own "value" (RFC 7644 §3.10).
            sub = parent.sub(path.attr_name) if parent.is_complex else None
            if sub is None and not parent.is_complex and path.attr_name.lower() == "value":
                sub = parent
            if sub is None:
                raise InvalidFilter(
                    f"Invalid filter: unknown attribute {parent.name}.{path.attr_name}"
                )
            column = self._element_column(self._elements(resolved), parent, sub)
            value = node.expr.comp_value.value.value if node.expr.comp_value is not None else None
            clause = compare(
                column.expression,
                column.folded,
                sub,
                node.expr.value.lower(),
                value,
                f"{parent.name}.{sub.name}",
            )
        return clause.is_not(True) if node.negated else clause

    def _elements(self, resolved: Resolved) -> Elements:
        elements = self.target.elements(resolved)
        if elements is None:
            raise InvalidFilter(f"Invalid filter: {resolved.attribute.name} cannot be filtered")
        return elements

    @staticmethod
    def _element_column(elements: Elements, parent: Attribute, sub: Attribute) -> Column:
        column = _column_of_element(elements, sub)
        if column is None:
            raise InvalidFilter(f"Invalid filter: {parent.name}.{sub.name} cannot be filtered on")
        return column

    def _element_exists(
        self, elements: Elements, condition: ColumnElement[bool] | None = None
    ) -> ColumnElement[bool]:
        conditions = (condition,) if condition is not None else ()
        # IN (SELECT owner ...) rather than a correlated EXISTS: SQLite then starts from the
        # element index instead of probing every resource (824 ms -> ms at 100k users).
        owners = select(elements.owner).where(*elements.where, *conditions)
        return self.target.resource_id.in_(owners)


def element_key(resolved: Resolved) -> str:
    """How user_values names an attribute: `emails`, or URN-qualified for extensions."""
    if resolved.schema is None or resolved.schema.id == USER_RESOURCE.schema.id:
        return resolved.attribute.name
    return f"{resolved.schema.id}:{resolved.attribute.name}"


_ORDERING = {"gt", "ge", "lt", "le"}
_SUBSTRING = {"co", "sw", "ew"}
_OPERATORS = {"eq", "ne", "pr"} | _ORDERING | _SUBSTRING


def compare(
    column: Any, folded: bool, attribute: Attribute, op: str, value: Any, name: str
) -> ColumnElement[bool]:
    """One attribute operator, by the attribute's type and caseExact (RFC 7644 §3.4.2.2)."""
    if op not in _OPERATORS:
        raise InvalidFilter(f"Invalid filter: the operator {op!r} is not supported")
    if op == "pr":
        present = column.is_not(None)
        if attribute.type in ("string", "reference", "binary"):
            present = and_(present, column != "")  # RFC 7644 §3.4.2.2: "" is not present
        return present
    if value is None:
        if op == "eq":
            return column.is_(None)
        if op == "ne":
            return column.is_not(None)
        raise InvalidFilter(f"Invalid filter: {name} {op} null is not a valid comparison")
    kind = attribute.type
    if kind == "boolean":
        if op not in ("eq", "ne"):
            raise InvalidFilter(f"Invalid filter: {name} is a boolean; only eq and ne apply")
        if not isinstance(value, bool):
            raise InvalidFilter(f"Invalid filter: {name} is a boolean; compare it with true/false")
    elif kind == "dateTime":
        value = _datetime_literal(value, name)
        if op in _SUBSTRING:
            raise InvalidFilter(f"Invalid filter: {name} is a dateTime; {op} does not apply")
        return _compare_instant(column, op, value)
    elif kind in ("integer", "decimal"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFilter(f"Invalid filter: {name} is a number; compare it with a number")
        if op in _SUBSTRING:
            raise InvalidFilter(f"Invalid filter: {name} is a number; {op} does not apply")
    elif kind == "binary":
        if op not in ("eq", "ne"):
            raise InvalidFilter(f"Invalid filter: {name} is binary; only eq, ne and pr apply")
        if not isinstance(value, str):
            raise InvalidFilter(f"Invalid filter: {name} is binary; quote the base64 value")
    else:  # string, reference
        if not isinstance(value, str):
            raise InvalidFilter(f"Invalid filter: {name} is a string; quote the value")
        if not attribute.case_exact:
            if folded:
                value = fold(value)  # as the store folded the column
            else:
                # Fold both sides with the database's lower(): PostgreSQL's and Python's differ
                # on some letters (lower('İ')), so a value folded in Python could never match.
                column, value = func.lower(column), _SqlFolded(value)
        if op in _ORDERING:
            column = _in_codepoint_order(column)  # "lexicographical", identically everywhere
    return _OPERATIONS[op](column, value)


@dataclass(frozen=True)
class _SqlFolded:
    """A string to be folded by the database's lower(), as the column it is compared with."""

    text: str


def _folded_sql(value: Any) -> Any:
    return func.lower(literal(value.text, String)) if isinstance(value, _SqlFolded) else value


def _like(column: Any, value: Any, pattern: str) -> ColumnElement[bool]:
    """LIKE with `%`, `_` and the escape character in the value matching themselves."""
    fold_in_sql = isinstance(value, _SqlFolded)
    text = value.text if fold_in_sql else value
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    full = pattern.replace("{}", escaped)
    # Escaped before lower(), which leaves "/", "%" and "_" as they are.
    return column.like(_folded_sql(_SqlFolded(full)) if fold_in_sql else full, escape="/")


def _datetime_literal(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidFilter(f"Invalid filter: {name} is a dateTime; quote an RFC 3339 value")
    try:
        return parse_datetime(value)
    except ValueError as e:
        raise InvalidFilter(f"Invalid filter: {value!r} {e}") from None


_MILLISECOND = timedelta(milliseconds=1)


def _compare_instant(column: Any, op: str, value: datetime) -> ColumnElement[bool]:
    """Compare a timestamp as clients see it: to the millisecond, as serialize.timestamp writes.

    Rows keep microseconds; compared raw, `meta.lastModified eq "<the value we returned>"`
    would never match and an IdP's `gt "<last seen>"` would fetch the same user again.
    """
    value = value.astimezone(UTC)
    floor = value - timedelta(microseconds=value.microsecond % 1000)
    after = _plus_millisecond(floor)  # the first shown instant past the value's millisecond
    on_boundary = floor == value
    ceiling = floor if on_boundary else after
    if op == "eq":
        return and_(column >= floor, column < after) if on_boundary else false()
    if op == "ne":
        return or_(column.is_(None), column < floor, column >= after) if on_boundary else true()
    return {
        "gt": lambda: column >= after,
        "ge": lambda: column >= ceiling,
        "lt": lambda: column < ceiling,
        "le": lambda: column < after,
    }[op]()


def _plus_millisecond(value: datetime) -> datetime:
    try:
        return value + _MILLISECOND
    except OverflowError:  # 9999-12-31T23:59:59.999Z: nothing stored is later
        return datetime.max.replace(tzinfo=UTC)


_OPERATIONS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda c, v: c == _folded_sql(v),
    "ne": lambda c, v: or_(c.is_(None), c != _folded_sql(v)),
    "gt": lambda c, v: c > _folded_sql(v),
    "ge": lambda c, v: c >= _folded_sql(v),
    "lt": lambda c, v: c < _folded_sql(v),
    "le": lambda c, v: c <= _folded_sql(v),
    "co": lambda c, v: _like(c, v, "%{}%"),
    "sw": lambda c, v: _like(c, v, "{}%"),
    "ew": lambda c, v: _like(c, v, "%{}"),
}

__all__ = ["Literal", "parse", "parse_path", "users_where", "users_sort_key", "compare"]
