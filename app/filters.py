"""SCIM filter text -> SQLAlchemy WHERE clauses (RFC 7644 §3.4.2.2), via scim2-filter-parser.

Only the lexer and parser come from the library; this module walks the tree itself, because the
library's SQL transpiler neither escapes LIKE patterns nor folds case by schema, and silently
drops terms it cannot map. Gaps closed here:
  * `and` binds tighter than `or` (the parser gives both the same precedence): `_reassociate`;
  * string escapes (\\" and \\u) and full JSON numbers: `_Lexer`;
  * "true" (a string) stays distinct from true (a boolean): literals keep their JSON type.
"""

from __future__ import annotations

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
    exists,
    false,
    func,
    literal,
    or_,
    true,
)

from app.errors import InvalidFilter, InvalidPath, InvalidValue
from app.models import Group, GroupMember, User, UserValue
from app.schema import Attribute, Resolved, ResourceType, fold
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
        return t

    @_(r"true")  # noqa: F821
    def TRUE(self, t):  # noqa: N802
        t.value = Literal(True)
        return t

    @_(r"false")  # noqa: F821
    def FALSE(self, t):  # noqa: N802
        t.value = Literal(False)
        return t

    @_(r"null")  # noqa: F821
    def NULL(self, t):  # noqa: N802
        t.value = Literal(None)
        return t

    def error(self, t):
        if t.value[0] == '"':  # COMP_VALUE did not match: the closing quote is missing
            raise ValueError(f"Unterminated string starting at position {t.index + 1}")
        raise ValueError(f"Unexpected character {t.value[0]!r} at position {t.index + 1}")


def parse(text: str) -> ast.Filter:
    """Parse filter text; every failure is an InvalidFilter naming what went wrong."""
    try:
        tokens = list(_Lexer().tokenize(text))
        tree = SCIMParser().parse(iter(tokens))
    except ValueError as e:
        raise InvalidFilter(f"Invalid filter: {e}") from None
    except SCIMParserError as e:
        raise InvalidFilter(f"Invalid filter: {_describe_parser_error(e, text, tokens)}") from None
    if tree is None:
        raise InvalidFilter("Invalid filter: the filter is incomplete")
    return _reassociate(tree)


def parse_path(text: str) -> ast.AttrPath:
    """Parse a PATCH path (`emails[type eq "work"].value`) with the same grammar as filters."""
    try:
        tree = SCIMParser().parse(_Lexer().tokenize(f'{text} eq ""'))
    except (ValueError, SCIMParserError):
        raise InvalidPath(f"Invalid path {text!r}") from None
    if tree is None or not isinstance(tree.expr, ast.AttrExpr):
        raise InvalidPath(f"Invalid path {text!r}")
    path = tree.expr.attr_path
    if isinstance(path.attr_name, ast.Filter):
        path.attr_name.expr = _reassociate(path.attr_name.expr)
    return path


_OPERATOR_NAMES = "eq, ne, co, sw, ew, gt, ge, lt, le or pr"


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
    if isinstance(node.expr, ast.Filter):  # parentheses, not(...) or a value path
        node.expr = _reassociate(node.expr)
    return node


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


@dataclass(frozen=True)
class Target:
    """How one resource type maps onto tables, for filters and sorting."""

    rt: ResourceType
    resource_id: Any
    columns: dict[str, Column]  # singular attributes kept in columns
    document: Any  # JSON column with the rest, or None
    elements: Callable[[Resolved], Elements | None]


def _user_elements(resolved: Resolved) -> Elements | None:
    if resolved.attribute.name == "groups" and resolved.schema is USER_RESOURCE.schema:
        # groups is readOnly and lives in group_members, seen from the member's side.
        return Elements(GroupMember.member_id, {"value": Column(GroupMember.group_id, True)})
    return Elements(
        UserValue.user_id,
        {
            "value": Column(UserValue.value_key, folded=True),
            "type": Column(UserValue.type),
            "primary": Column(UserValue.primary),
            "display": Column(UserValue.display),
        },
        where=(UserValue.attribute == element_key(resolved),),
        data=UserValue.data,
    )


def _group_elements(resolved: Resolved) -> Elements | None:
    # Member ids are lower-case UUIDs, so the stored id doubles as its folded form.
    return Elements(
        GroupMember.group_id,
        {"value": Column(GroupMember.member_id, True), "type": Column(GroupMember.member_type)},
    )


# Where each queried attribute lives. For users, anything singular not listed is read from the
# JSON document; multi-valued sub-attributes are matched per element (see Elements).
USERS = Target(
    USER_RESOURCE,
    User.id,
    {
        "id": Column(User.id),
        "externalId": Column(User.external_id),
        "userName": Column(User.user_name_key, folded=True),
        "displayName": Column(User.display_name),
        "name.givenName": Column(User.given_name),
        "name.familyName": Column(User.family_name),
        "active": Column(User.active),
        "meta.created": Column(User.created_at),
        "meta.lastModified": Column(User.last_modified),
    },
    User.document,
    _user_elements,
)
GROUPS = Target(
    GROUP_RESOURCE,
    Group.id,
    {
        "id": Column(Group.id),
        "externalId": Column(Group.external_id),
        "displayName": Column(Group.display_name_key, folded=True),
        "meta.created": Column(Group.created_at),
        "meta.lastModified": Column(Group.last_modified),
    },
    None,
    _group_elements,
)


def users_where(text: str) -> ColumnElement[bool]:
    return _Translator(USERS).filter(parse(text))


def groups_where(text: str) -> ColumnElement[bool]:
    return _Translator(GROUPS).filter(parse(text))


def members_where(value_filter: ast.Filter) -> ColumnElement[bool]:
    """A PATCH path's `members[...]` filter as a condition on group_members rows."""
    members = GROUP_RESOURCE.schema.attribute("members")
    try:
        return _Translator(GROUPS).element_filter(members, value_filter)
    except InvalidFilter as e:
        raise InvalidPath(e.detail.replace("Invalid filter", "Invalid path")) from None


def users_sort_key(path: str) -> ColumnElement[Any]:
    """The SQL expression to order users by `sortBy` (RFC 7644 §3.4.2.3)."""
    return _sort_key(USERS, path)


def groups_sort_key(path: str) -> ColumnElement[Any]:
    return _sort_key(GROUPS, path)


def _sort_key(target: Target, path: str) -> ColumnElement[Any]:
    resolved = target.rt.resolve(path)
    if resolved is None:
        raise InvalidValue(f"sortBy: unknown attribute {path!r}")
    resolved = _default_value_sub(resolved, "sortBy")
    if resolved.attribute.multi_valued:
        raise InvalidValue(f"sortBy: {resolved.name} is multi-valued; sort on a singular one")
    column = _column(target, resolved)
    case_insensitive = resolved.leaf.type == "string" and not resolved.leaf.case_exact
    if case_insensitive and not column.folded:
        return func.lower(column.expression)
    return column.expression


def _column(target: Target, resolved: Resolved) -> Column:
    column = target.columns.get(resolved.name)
    if column is not None:
        return column
    if target.document is None:
        raise InvalidFilter(f"Invalid filter: {resolved.name} cannot be filtered or sorted on")
    return Column(_json_value(target, resolved))


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


def _typed(element: Any, attribute: Attribute) -> Any:
    if attribute.type == "boolean":
        return element.as_boolean()
    if attribute.type == "integer":
        return element.as_integer()
    if attribute.type == "decimal":
        return element.as_float()
    return element.as_string()


class _Translator:
    def __init__(self, target: Target):
        self.target = target
        self.rt = target.rt

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

    def _resolve(self, path: ast.AttrPath) -> Resolved:
        return _default_value_sub(self._lookup(path), "Invalid filter")

    def _lookup(self, path: ast.AttrPath) -> Resolved:
        if isinstance(path.attr_name, ast.Filter):
            raise InvalidFilter("Invalid filter: a value path cannot be compared directly")
        text = path.attr_name
        if path.sub_attr is not None:
            text += "." + path.sub_attr.value
        if path.uri:
            text = f"{path.uri}:{text}"
        resolved = self.rt.resolve(text)
        if resolved is None:
            raise InvalidFilter(f"Invalid filter: unknown attribute {text!r}")
        return resolved

    def _attr_expr(self, expr: ast.AttrExpr) -> ColumnElement[bool]:
        resolved = self._resolve(expr.attr_path)
        op = expr.value.lower()
        value = expr.comp_value.value.value if expr.comp_value is not None else None
        if resolved.attribute.multi_valued:
            elements = self._elements(resolved)
            column = self._element_column(elements, resolved.attribute, resolved.leaf)
            condition = compare(
                column.expression, column.folded, resolved.leaf, op, value, resolved.name
            )
            return self._element_exists(elements, condition)
        column = _column(self.target, resolved)
        return compare(column.expression, column.folded, resolved.leaf, op, value, resolved.name)

    def _value_path(self, namespace: ast.AttrPath, inner: ast.Filter) -> ColumnElement[bool]:
        """`emails[type eq "work" and value co "@x"]`: all terms must hold for one element."""
        # Looked up as is: `addresses[...]` has no "value" sub-attribute to default to.
        parent = self._lookup(ast.AttrPath(namespace.attr_name, None, namespace.uri))
        if not parent.attribute.multi_valued or not parent.attribute.is_complex:
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
            sub = parent.sub(path.attr_name)
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
        column = elements.columns.get(sub.name)
        if column is not None:
            return column
        if elements.data is None:
            raise InvalidFilter(f"Invalid filter: {parent.name}.{sub.name} cannot be filtered on")
        return Column(_typed(elements.data[sub.name], sub))

    def _element_exists(
        self, elements: Elements, condition: ColumnElement[bool]
    ) -> ColumnElement[bool]:
        return exists().where(elements.owner == self.target.resource_id, *elements.where, condition)


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
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidFilter(f"Invalid filter: {value!r} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise InvalidFilter(f"Invalid filter: {value!r} needs a time zone offset")
    return parsed


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
