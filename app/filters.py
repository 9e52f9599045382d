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
from datetime import datetime
from typing import Any

from scim2_filter_parser import ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser, SCIMParserError
from sqlalchemy import ColumnElement, and_, exists, func, or_, select

from app.errors import InvalidFilter, InvalidPath, InvalidValue
from app.models import User, UserValue
from app.schema import Attribute, Resolved, ResourceType
from app.schema.core import USER_RESOURCE


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
        except ValueError:
            raise ValueError(f"Invalid escape in string {t.value}") from None
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
        raise ValueError(f"Unexpected character {t.value[0]!r} at position {t.index + 1}")


def parse(text: str) -> ast.Filter:
    """Parse filter text; every failure is an InvalidFilter naming what went wrong."""
    try:
        tree = SCIMParser().parse(_Lexer().tokenize(text))
    except ValueError as e:
        raise InvalidFilter(f"Invalid filter: {e}") from None
    except SCIMParserError as e:
        raise InvalidFilter(f"Invalid filter: {_describe_parser_error(e, text)}") from None
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


def _describe_parser_error(error: SCIMParserError, text: str) -> str:
    token = error.args[0] if error.args else None
    # SCIMParserError carries "Parsing error at: Token(...)" or "...: None" at end of input.
    message = str(token)
    if message.endswith("None"):
        return "the filter ended unexpectedly"
    marker = "index="
    if marker in message:
        index = int(message.split(marker, 1)[1].split(",", 1)[0])
        return f"unexpected {text[index:].split(' ', 1)[0]!r} at position {index + 1}"
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
    """A singular attribute stored in a column; `folded` columns already hold value.lower()."""

    expression: Any
    folded: bool = False


# Where each queried User attribute lives. Anything singular not listed here is read from the
# JSON document; multi-valued sub-attributes are matched per element in user_values.
USER_COLUMNS: dict[str, Column] = {
    "id": Column(User.id),
    "externalId": Column(User.external_id),
    "userName": Column(User.user_name_key, folded=True),
    "displayName": Column(User.display_name),
    "name.givenName": Column(User.given_name),
    "name.familyName": Column(User.family_name),
    "active": Column(User.active),
    "meta.created": Column(User.created_at),
    "meta.lastModified": Column(User.last_modified),
}
ELEMENT_COLUMNS = {
    "value": UserValue.value_key,
    "type": UserValue.type,
    "primary": UserValue.primary,
    "display": UserValue.display,
}


def users_where(text: str) -> ColumnElement[bool]:
    return _UserTranslator(USER_RESOURCE).filter(parse(text))


def users_sort_key(path: str) -> ColumnElement[Any]:
    """The SQL expression to order users by `sortBy` (RFC 7644 §3.4.2.3)."""
    resolved = USER_RESOURCE.resolve(path)
    if resolved is None:
        raise InvalidValue(f"sortBy: unknown attribute {path!r}")
    resolved = _default_value_sub(resolved, "sortBy")
    if resolved.attribute.multi_valued:
        raise InvalidValue(f"sortBy: {resolved.name} is multi-valued; sort on a singular one")
    column = USER_COLUMNS.get(resolved.name)
    if column is not None:
        if resolved.leaf.type == "string" and not resolved.leaf.case_exact and not column.folded:
            return func.lower(column.expression)
        return column.expression
    expression = _json_value(resolved)
    if resolved.leaf.type == "string" and not resolved.leaf.case_exact:
        return func.lower(expression)
    return expression


def _default_value_sub(resolved: Resolved, where: str) -> Resolved:
    # RFC 7644 §3.4.2.2: a complex attribute without a sub-attribute means its "value".
    if resolved.attribute.is_complex and resolved.sub_attribute is None:
        value = resolved.attribute.sub("value")
        if value is None:
            raise InvalidFilter(f"{where}: name a sub-attribute of {resolved.attribute.name}")
        return Resolved(resolved.schema, resolved.attribute, value)
    return resolved


def _json_value(resolved: Resolved) -> Any:
    keys: list[str] = []
    if resolved.schema is not None and resolved.schema.id != USER_RESOURCE.schema.id:
        keys.append(resolved.schema.id)
    keys.append(resolved.attribute.name)
    if resolved.sub_attribute is not None:
        keys.append(resolved.sub_attribute.name)
    element = User.document[tuple(keys)] if len(keys) > 1 else User.document[keys[0]]
    leaf = resolved.leaf
    if leaf.type == "boolean":
        return element.as_boolean()
    if leaf.type in ("integer",):
        return element.as_integer()
    if leaf.type == "decimal":
        return element.as_float()
    return element.as_string()


class _UserTranslator:
    def __init__(self, rt: ResourceType):
        self.rt = rt

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
        return _default_value_sub(resolved, "Invalid filter")

    def _attr_expr(self, expr: ast.AttrExpr) -> ColumnElement[bool]:
        resolved = self._resolve(expr.attr_path)
        op = expr.value.lower()
        value = expr.comp_value.value.value if expr.comp_value is not None else None
        if resolved.attribute.multi_valued:
            column = ELEMENT_COLUMNS.get(resolved.leaf.name)
            folded = resolved.leaf.name == "value"
            if column is None:
                column = _element_json(resolved.leaf)
            condition = compare(column, folded, resolved.leaf, op, value, resolved.name)
            return self._element_exists(resolved, condition)
        column_spec = USER_COLUMNS.get(resolved.name)
        if column_spec is not None:
            column, folded = column_spec.expression, column_spec.folded
        else:
            column, folded = _json_value(resolved), False
        return compare(column, folded, resolved.leaf, op, value, resolved.name)

    def _value_path(self, namespace: ast.AttrPath, inner: ast.Filter) -> ColumnElement[bool]:
        """`emails[type eq "work" and value co "@x"]`: all terms must hold for one element."""
        parent = self._resolve(ast.AttrPath(namespace.attr_name, None, namespace.uri))
        if not parent.attribute.multi_valued or not parent.attribute.is_complex:
            raise InvalidFilter(f"Invalid filter: {parent.attribute.name} is not multi-valued")
        condition = self._element_filter(parent.attribute, inner)
        return self._element_exists(parent, condition)

    def _element_filter(self, parent: Attribute, node: ast.Filter) -> ColumnElement[bool]:
        if node.namespace is not None:
            raise InvalidFilter("Invalid filter: value filters cannot be nested")
        if isinstance(node.expr, ast.LogExpr):
            left = self._element_filter(parent, node.expr.expr1)
            right = self._element_filter(parent, node.expr.expr2)
            clause = and_(left, right) if node.expr.op.lower() == "and" else or_(left, right)
        elif isinstance(node.expr, ast.Filter):
            clause = self._element_filter(parent, node.expr)
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
            column = ELEMENT_COLUMNS.get(sub.name)
            if column is None:
                column = _element_json(sub)
            value = node.expr.comp_value.value.value if node.expr.comp_value is not None else None
            clause = compare(
                column,
                sub.name == "value",
                sub,
                node.expr.value.lower(),
                value,
                f"{parent.name}.{sub.name}",
            )
        return clause.is_not(True) if node.negated else clause

    def _element_exists(
        self, resolved: Resolved, condition: ColumnElement[bool]
    ) -> ColumnElement[bool]:
        return exists(
            select(UserValue.id).where(
                UserValue.user_id == User.id,
                UserValue.attribute == element_key(resolved),
                condition,
            )
        )


def element_key(resolved: Resolved) -> str:
    """How user_values names an attribute: `emails`, or URN-qualified for extensions."""
    if resolved.schema is None or resolved.schema.id == USER_RESOURCE.schema.id:
        return resolved.attribute.name
    return f"{resolved.schema.id}:{resolved.attribute.name}"


def _element_json(sub: Attribute) -> Any:
    element = UserValue.data[sub.name]
    if sub.type == "boolean":
        return element.as_boolean()
    return element.as_string()


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
            value = value.lower()
            if not folded:
                column = func.lower(column)
    return _OPERATIONS[op](column, value)


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


_OPERATIONS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda c, v: c == v,
    "ne": lambda c, v: or_(c.is_(None), c != v),
    "gt": lambda c, v: c > v,
    "ge": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
    # autoescape: % and _ in the value match themselves, on both databases.
    "co": lambda c, v: c.contains(v, autoescape=True),
    "sw": lambda c, v: c.startswith(v, autoescape=True),
    "ew": lambda c, v: c.endswith(v, autoescape=True),
}

__all__ = ["Literal", "parse", "parse_path", "users_where", "users_sort_key", "compare"]
