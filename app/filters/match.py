"""Filter trees -> predicates over SCIM JSON in memory, with the SQL backend's semantics.

A predicate reads a resource as the service serves it (core attributes at the top, extension
attributes under their schema URN, `id`, `externalId`, `meta`), or, inside a value filter, one
element of a multi-valued attribute. What each term means is decided in app.filters.visitor for
both backends; what is left here agrees with app.filters.sql value for value: strings with
`caseExact: false` compare through the one fold (app.fold), ordering is by code point, `pr` is
false for null, "" and an attribute without elements, dateTimes compare to the millisecond.
PATCH (RFC 7644 §3.5.2) picks the elements a value filter names with `element_matcher`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from app.errors import InvalidFilter
from app.filters.grammar import Filter, as_path_error
from app.filters.visitor import (
    SCHEMAS,
    FilterVisitor,
    element_field,
    folds,
    millisecond,
)
from app.fold import fold
from app.schema import Attribute, Resolved, ResourceType, parse_datetime

Predicate = Callable[[Any], bool]


def predicate(rt: ResourceType, tree: Filter, *, unknown_is_missing: bool = False) -> Predicate:
    """`tree` as a test of one resource document of type `rt` (what GET returns for it)."""
    return _Memory(rt, unknown_is_missing=unknown_is_missing).visit(tree)


def matches(
    rt: ResourceType, tree: Filter, document: Mapping[str, Any], *, unknown_is_missing: bool = False
) -> bool:
    """Whether the resource `document` satisfies the filter, as a search would find it."""
    return predicate(rt, tree, unknown_is_missing=unknown_is_missing)(document)


def element_matcher(rt: ResourceType, parent: Resolved, value_filter: Filter) -> Predicate:
    """A PATCH path's value filter (`emails[type eq "work"]`) as a test of one element of the
    multi-valued attribute `parent`: an object, or a plain value for a simple multi-valued
    attribute. Checked here, before any resource is read: InvalidPath names what is wrong."""
    whole = Resolved(parent.schema, parent.attribute)
    try:
        test = _Memory(rt).element_filter(whole, value_filter)
    except InvalidFilter as e:
        raise as_path_error(e) from None
    if parent.attribute.is_complex:
        return lambda element: isinstance(element, Mapping) and test(element)
    return lambda element: test({"value": element})


class _Memory(FilterVisitor[Predicate]):
    """A filter as a predicate over a resource document (or, in brackets, an element)."""

    def constant(self, value: bool) -> Predicate:
        return lambda _: value

    def both(self, left: Predicate, right: Predicate) -> Predicate:
        return lambda item: left(item) and right(item)

    def either(self, left: Predicate, right: Predicate) -> Predicate:
        return lambda item: left(item) or right(item)

    def negate(self, operand: Predicate) -> Predicate:
        return lambda item: not operand(item)

    def schemas(self, op: str, value: Any) -> Predicate:
        """The core schema and each extension the resource has data for, as serialize lists
        them (and as app.filters.sql reads them), whatever the document's own `schemas` says."""
        rt = self.rt

        def test(document: Mapping[str, Any]) -> bool:
            listed = [rt.schema.id]
            listed += [s.id for s in rt.extensions if document.get(s.id) is not None]
            return any(_holds(SCHEMAS, op, value, urn) for urn in listed)

        return test

    def singular(self, resolved: Resolved, op: str, value: Any) -> Predicate:
        read = self._reader(resolved)
        leaf = resolved.leaf
        return lambda document: _holds(leaf, op, value, read(document))

    def element(self, parent: Resolved, sub: Attribute, op: str, value: Any) -> Predicate:
        key = element_field(sub)

        def test(element: Mapping[str, Any]) -> bool:
            return _holds(sub, op, value, element.get(key))

        return test

    def any_element(self, parent: Resolved, condition: Predicate | None) -> Predicate:
        elements = self._elements(parent)
        if condition is None:
            return lambda document: bool(elements(document))
        return lambda document: any(condition(e) for e in elements(document))

    def no_elements(self, parent: Resolved) -> Predicate:
        elements = self._elements(parent)
        return lambda document: not elements(document)

    def _reader(self, resolved: Resolved) -> Callable[[Mapping[str, Any]], Any]:
        """Reads a singular attribute or sub-attribute from a document: None when missing."""
        container = self._container(resolved)
        name = resolved.attribute.name
        sub = resolved.sub_attribute.name if resolved.sub_attribute is not None else None

        def read(document: Mapping[str, Any]) -> Any:
            value = _get(container(document), name)
            return _get(value, sub) if sub is not None else value

        return read

    def _elements(self, parent: Resolved) -> Callable[[Mapping[str, Any]], list[Mapping]]:
        """A multi-valued attribute's elements, each a mapping (a plain value as {"value": x},
        as app.store keeps it for SQL)."""
        container = self._container(parent)
        name, complex_ = parent.attribute.name, parent.attribute.is_complex

        def elements(document: Mapping[str, Any]) -> list[Mapping]:
            found = _get(container(document), name)
            if not isinstance(found, list):
                return []
            if complex_:
                return [e for e in found if isinstance(e, Mapping)]
            return [{"value": e} for e in found]

        return elements

    def _container(self, resolved: Resolved) -> Callable[[Mapping[str, Any]], Any]:
        """Core and common attributes sit at the top; an extension's under its URN."""
        if resolved.schema is None or resolved.schema is self.rt.schema:
            return lambda document: document
        urn = resolved.schema.id
        return lambda document: _get(document, urn)


def _get(container: Any, key: str) -> Any:
    return container.get(key) if isinstance(container, Mapping) else None


def _holds(attribute: Attribute, op: str, value: Any, actual: Any) -> bool:
    """`actual op value` for one attribute, as app.filters.sql._compare says it in SQL; `value`
    already checked against the attribute's type (visitor.check_value)."""
    if op == "pr":
        if actual is None:
            return False
        # RFC 7644 §3.4.2.2: "" is not present
        return actual != "" or attribute.type not in ("string", "reference", "binary")
    if value is None:  # eq null, ne null
        return (actual is None) == (op == "eq")
    kind = attribute.type
    if kind == "dateTime":
        return _holds_instant(op, value, _instant(actual))
    if actual is None:
        return op == "ne"  # a missing value is "not equal" to any value, and nothing else
    if kind in ("string", "reference"):
        if not isinstance(actual, str):
            return op == "ne"
        if folds(attribute):
            actual, value = fold(actual), fold(value)
        if op == "co":
            return value in actual
        if op == "sw":
            return actual.startswith(value)
        if op == "ew":
            return actual.endswith(value)
    elif kind in ("integer", "decimal"):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return op == "ne"
    elif kind == "boolean" and not isinstance(actual, bool):
        return op == "ne"
    return _ORDER[op](actual, value)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    # Strings compare by code point, as app.filters.sql orders them on both databases.
    "eq": lambda a, v: a == v,
    "ne": lambda a, v: a != v,
    "gt": lambda a, v: a > v,
    "ge": lambda a, v: a >= v,
    "lt": lambda a, v: a < v,
    "le": lambda a, v: a <= v,
}


def _instant(actual: Any) -> datetime | None:
    """A dateTime as read from a document (a datetime, or RFC 3339 text); None if neither."""
    if isinstance(actual, datetime):
        return actual
    if not isinstance(actual, str):
        return None
    try:
        return parse_datetime(actual)
    except ValueError:
        return None


def _holds_instant(op: str, value: datetime, actual: datetime | None) -> bool:
    """To the millisecond, as app.filters.sql._compare_instant (visitor.Millisecond)."""
    bounds = millisecond(value)
    if op == "eq":
        return bounds.exact and actual is not None and bounds.floor <= actual < bounds.after
    if op == "ne":
        return not bounds.exact or actual is None or not bounds.floor <= actual < bounds.after
    if actual is None:
        return False
    return {
        "gt": lambda: actual >= bounds.after,
        "ge": lambda: actual >= bounds.ceiling,
        "lt": lambda: actual < bounds.ceiling,
        "le": lambda: actual < bounds.after,
    }[op]()


__all__ = ["Predicate", "element_matcher", "matches", "predicate"]
