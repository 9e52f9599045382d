"""Filter and PATCH path text -> a typed syntax tree (RFC 7644 §3.4.2.2, §3.5.2), within limits.

Only the lexer and parser come from scim2-filter-parser; its tree never leaves this module. The
tree below is ours: frozen dataclasses the backends (app.filters.sql, app.filters.match) visit.
Gaps of scim2-filter-parser 0.7.0 closed here, once:
  * `and` binds tighter than `or` (the parser gives both the same precedence, left to right,
    so `a or b and c` came back as `(a or b) and c`): `_Converter._chain`;
  * string escapes: the lexer ends a string at the first `\\"` and keeps `\\u00e9` verbatim;
    strings are JSON strings (RFC 7644 §3.4.2.2 cites RFC 7159): `_Lexer.COMP_VALUE`;
  * numbers: the lexer takes one digit (`42` is two tokens, `1.5` and `-1` fail): `_Lexer.NUMBER`;
  * "true" (a string) and true (a boolean) both came back as Python strings: literals keep
    their JSON type (`_Json`, then `Compare.value`);
  * `true`, `false` and `null` are case-insensitive in the RFC's ABNF (RFC 5234 §2.3) but the
    lexer knows the lower-case spelling only, and it lexes the head of an attribute named
    `nullable` or `trueName` as a literal: `_Lexer.TRUE/FALSE/NULL`;
  * its errors are a bare "Parsing error at: Token(...)" and a ValueError naming no position:
    `_describe_parser_error` and `_Lexer.error` name the token and its position;
  * Entra ID filters with a sub-attribute after a value path (`emails[type eq "work"].value eq
    "x"`), which RFC 7644's ABNF lacks; the parser keeps the sub-attribute on the value path's
    namespace: `_Converter._compare` reads it as `emails[type eq "work" and value eq "x"]`.
Whether a path names an attribute, and whether a value suits its type, is the schema's business:
app.filters.visitor checks that, for both backends.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, TypeAlias

from scim2_filter_parser import ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser, SCIMParserError

from app.errors import InvalidFilter, InvalidPath
from app.intake import text_problem
from app.limits import DEFAULT_LIMITS, Limits

# RFC 7644 §3.4.2.2, Table 3; `pr` takes no value.
OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr"})
ORDERING = frozenset({"gt", "ge", "lt", "le"})
SUBSTRING = frozenset({"co", "sw", "ew"})

Value: TypeAlias = str | bool | int | float | None  # a JSON literal, its type kept


@dataclass(frozen=True)
class AttrPath:
    """`name`, `name.sub` or `urn:...:name.sub`, as written (names are matched case-insensitively
    against the schema later, RFC 7643 §2.1)."""

    name: str
    sub: str | None = None
    uri: str | None = None

    def __str__(self) -> str:
        text = self.name if self.sub is None else f"{self.name}.{self.sub}"
        return text if self.uri is None else f"{self.uri}:{text}"


@dataclass(frozen=True)
class Compare:
    """`path op value`; `value` is None for `pr` and for the literal null."""

    path: AttrPath
    op: str  # lower case, one of OPERATORS
    value: Value = None


@dataclass(frozen=True)
class And:
    left: Filter
    right: Filter


@dataclass(frozen=True)
class Or:
    left: Filter
    right: Filter


@dataclass(frozen=True)
class Not:
    operand: Filter


@dataclass(frozen=True)
class ValuePath:
    """`emails[type eq "work" and value co "@x"]`: `filter` must hold for one element of the
    multi-valued attribute `path` (no sub-attribute). Inside, there is never another ValuePath."""

    path: AttrPath
    filter: Filter


Filter: TypeAlias = Compare | And | Or | Not | ValuePath


@dataclass(frozen=True)
class PatchPath:
    """A PATCH path (RFC 7644 §3.5.2): the attribute it touches, and the value filter that picks
    elements of it. `emails[type eq "work"].value` -> path `emails.value`, filter `type eq "work"`.
    """

    path: AttrPath
    filter: Filter | None = None


def parse(text: str, limits: Limits = DEFAULT_LIMITS) -> Filter:
    """Parse filter text; every failure is an InvalidFilter naming what went wrong."""
    if len(text) > limits.filter_chars:
        raise InvalidFilter(
            f"Invalid filter: it is {len(text)} characters long; at most {limits.filter_chars} "
            "are accepted (SCIM_MAX_FILTER_CHARS)"
        )
    if problem := text_problem(text):
        raise InvalidFilter(f"Invalid filter: the filter {problem}")
    tokens: list[Any] = []
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
    return _Converter().filter(tree)


def parse_path(text: str, limits: Limits = DEFAULT_LIMITS) -> PatchPath:
    """Parse a PATCH path (`emails[type eq "work"].value`) with the same grammar as filters.

    Remembered: an IdP sends a few paths over and over (`name.givenName`, `active`,
    `members[value eq "..."]` aside), and each operation's path is read twice, for the change
    and for its audit line; the grammar's parser took 6% of a PATCH. The result is immutable;
    a refused path raises each time (nothing is kept for it)."""
    return _parse_path(text, limits)


@functools.lru_cache(maxsize=1024)
def _parse_path(text: str, limits: Limits) -> PatchPath:
    if len(text) > limits.filter_chars or text_problem(text):
        raise InvalidPath(f"Invalid path {_clip(text)!r}")
    try:
        # The path grammar is a filter's attribute path (RFC 7644 §3.5.2's ABNF reuses
        # attrPath and valFilter): parsed as the left side of a comparison.
        tokens = list(_Lexer().tokenize(f'{text} eq ""'))
        _check_size(tokens, limits)
        tree = SCIMParser().parse(iter(tokens))
    except InvalidFilter as e:
        raise as_path_error(e) from None
    except (ValueError, SCIMParserError):
        raise InvalidPath(f"Invalid path {_clip(text)!r}") from None
    if tree is None or not isinstance(tree.expr, ast.AttrExpr):
        raise InvalidPath(f"Invalid path {text!r}")
    raw = tree.expr.attr_path
    try:
        if isinstance(raw.attr_name, ast.Filter):  # emails[...] or emails[...].value
            namespace = raw.attr_name.namespace
            bracket = _Converter(inside=namespace.attr_name).filter(raw.attr_name.expr)
            return PatchPath(_path(namespace), bracket)
        return PatchPath(_path(raw))
    except InvalidFilter as e:
        raise as_path_error(e) from None


def as_path_error(error: InvalidFilter) -> InvalidPath:
    """A value filter's problem, found in a PATCH path: the same words, scimType invalidPath."""
    return InvalidPath(error.detail.replace("Invalid filter", "Invalid path", 1))


class _Json:
    """A comparison value from the lexer with its JSON type intact, until _Converter reads it."""

    __slots__ = ("value",)

    def __init__(self, value: Value):
        self.value = value


class _Lexer(SCIMLexer):
    tokens = SCIMLexer.tokens

    # JSON number (RFC 8259 §6); the library accepts a single digit only.
    @_(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")  # noqa: F821
    def NUMBER(self, t):  # noqa: N802
        t.value = _Json(json.loads(t.value))
        return t

    # JSON string with escapes; the library stops at the first \".
    @_(r'"(?:[^"\\]|\\.)*"')  # noqa: F821
    def COMP_VALUE(self, t):  # noqa: N802
        try:
            value = json.loads(t.value)
        except ValueError as e:
            problem = "control character" if "control character" in str(e) else "escape"
            raise ValueError(f"Invalid {problem} in string {t.value}") from None
        if "\x00" in value:
            # No stored value can hold NUL (PostgreSQL text cannot); refuse it on both databases.
            raise ValueError(f"NUL character (\\u0000) in string at position {t.index + 1}")
        if text_problem(value):
            # "\ud800" is a JSON escape, but of no Unicode character: no driver can send it.
            raise ValueError(f"Lone UTF-16 surrogate in string at position {t.index + 1}")
        t.value = _Json(value)
        return t

    # RFC 5234 §2.3: ABNF strings are case-insensitive, so `True` and `NULL` are literals too;
    # the look-ahead keeps `trueName` or `nullable` an attribute name.
    @_(r"(?i:true)(?![A-Za-z0-9_$-])")  # noqa: F821
    def TRUE(self, t):  # noqa: N802
        t.value = _Json(True)
        return t

    @_(r"(?i:false)(?![A-Za-z0-9_$-])")  # noqa: F821
    def FALSE(self, t):  # noqa: N802
        t.value = _Json(False)
        return t

    @_(r"(?i:null)(?![A-Za-z0-9_$-])")  # noqa: F821
    def NULL(self, t):  # noqa: N802
        t.value = _Json(None)
        return t

    def error(self, t):
        if t.value[0] == '"':  # COMP_VALUE did not match: the closing quote is missing
            raise ValueError(f"Unterminated string starting at position {t.index + 1}")
        raise ValueError(f"Unexpected character {t.value[0]!r} at position {t.index + 1}")


_OPERATOR_NAMES = "eq, ne, co, sw, ew, gt, ge, lt, le or pr"
_COMPARISONS = frozenset(op.upper() for op in OPERATORS)
_OPENING = frozenset({"LPAREN", "LBRACKET"})
_CLOSING = frozenset({"RPAREN", "RBRACKET"})


def _check_size(tokens: list[Any], limits: Limits) -> None:
    """Refuse a filter nested or chained beyond the limits before the parser sees it.

    The parser and both backends walk the tree recursively; bounded here, they never run out
    of stack, and no filter costs the database more than `filter_terms` comparisons.
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


def _path(raw: ast.AttrPath) -> AttrPath:
    sub = raw.sub_attr.value if raw.sub_attr is not None else None
    return AttrPath(raw.attr_name, sub, raw.uri)


class _Converter:
    """The library's tree -> ours, with `and` over `or` and Entra's value-path form expanded.

    `inside`: the attribute whose brackets we are in, where no value path may appear.
    """

    def __init__(self, inside: str | None = None):
        self.inside = inside

    def filter(self, node: ast.Filter) -> Filter:
        if node.namespace is not None:  # emails[...]
            self._refuse_nesting()
            result: Filter = ValuePath(
                _path(node.namespace), _Converter(node.namespace.attr_name).filter(node.expr)
            )
        elif _is_chain(node):
            result = self._chain(node)
        elif isinstance(node.expr, ast.Filter):  # parentheses or not(...)
            result = self.filter(node.expr)
        else:
            result = self._compare(node.expr)
        return Not(result) if node.negated else result

    def _chain(self, node: ast.Filter) -> Filter:
        """An unparenthesised and/or chain, with `and` binding tighter than `or` (RFC 7644
        §3.4.2.2, Table 5's precedence): `a or b and c` is `a or (b and c)`."""
        operands: list[ast.Filter] = []
        operators: list[str] = []
        _flatten(node, operands, operators)
        terms = [self.filter(operand) for operand in operands]
        groups: list[list[Filter]] = [[terms[0]]]
        for operator, term in zip(operators, terms[1:], strict=True):
            if operator == "or":
                groups.append([term])
            else:
                groups[-1].append(term)
        disjuncts = [_fold_left(And, group) for group in groups]
        return _fold_left(Or, disjuncts)

    def _compare(self, expr: ast.AttrExpr) -> Filter:
        op = expr.value.lower()
        value = expr.comp_value.value.value if expr.comp_value is not None else None
        raw = expr.attr_path
        if not isinstance(raw.attr_name, ast.Filter):
            return Compare(_path(raw), op, value)
        # A value path on the left of an operator: only Entra's `emails[type eq "work"].value
        # eq "x"`, which RFC 7644's ABNF lacks. One element must match both, whatever the
        # operator (`ne` too: an element of the bracket filter whose value is not "x").
        namespace = raw.attr_name.namespace
        if namespace.sub_attr is None:
            raise InvalidFilter("Invalid filter: a value path cannot be compared directly")
        self._refuse_nesting()
        bracket = _Converter(namespace.attr_name).filter(raw.attr_name.expr)
        term = Compare(AttrPath(namespace.sub_attr.value), op, value)
        return ValuePath(AttrPath(namespace.attr_name, None, namespace.uri), And(bracket, term))

    def _refuse_nesting(self) -> None:
        # RFC 7644 §3.4.2.2's ABNF: a valFilter holds attrExp and logExp, never a valuePath.
        if self.inside is not None:
            raise InvalidFilter("Invalid filter: value filters cannot be nested")


def _is_chain(node: ast.Filter) -> bool:
    """An and/or the parser built without parentheses around it (those add a Filter level)."""
    return isinstance(node.expr, ast.LogExpr) and not node.negated and node.namespace is None


def _flatten(node: ast.Filter, operands: list[ast.Filter], operators: list[str]) -> None:
    """The chain's operands and operators in the order written, whatever shape the parser gave."""
    if _is_chain(node):
        _flatten(node.expr.expr1, operands, operators)
        operators.append(node.expr.op.lower())
        _flatten(node.expr.expr2, operands, operators)
    else:
        operands.append(node)


def _fold_left(kind: type[And] | type[Or], terms: list[Filter]) -> Filter:
    result = terms[0]
    for term in terms[1:]:
        result = kind(result, term)
    return result


__all__ = [
    "OPERATORS",
    "ORDERING",
    "SUBSTRING",
    "AttrPath",
    "And",
    "Compare",
    "Filter",
    "Not",
    "Or",
    "PatchPath",
    "Value",
    "ValuePath",
    "as_path_error",
    "parse",
    "parse_path",
]
