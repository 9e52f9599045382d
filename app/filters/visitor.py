"""What both filter backends share: dispatch over the tree, and the meaning of every term.

A backend (app.filters.sql, app.filters.match) supplies the leaves: how to read one attribute,
how to test the elements of a multi-valued one, how to combine results. This base decides, once
for both, what a term means (RFC 7644 §3.4.2.2): which attribute a path names, that a complex
attribute alone means its `value`, that a missing attribute satisfies `ne` and `eq null`, that
`pr` on a complex attribute asks for any present sub-attribute, and which values suit which
attribute types, with the error texts clients see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from app.errors import InvalidFilter
from app.filters.grammar import (
    SUBSTRING,
    And,
    AttrPath,
    Compare,
    Filter,
    Not,
    Or,
    Value,
    ValuePath,
)
from app.schema import Attribute, Resolved, ResourceType, parse_datetime

T = TypeVar("T")

# RFC 7643 §3: `schemas` is on every resource but in no schema. A multi-valued URI; compared
# case-insensitively, as resolve() compares schema URNs.
SCHEMAS = Attribute("schemas", type="reference", multi_valued=True)

# meta.location is the base URL, which only the HTTP layer knows, plus the id: always present,
# never compared.
LOCATION = "meta.location"


class FilterVisitor(Generic[T]):
    """Walks a filter tree for one resource type; subclasses turn terms into their own T."""

    def __init__(self, rt: ResourceType, *, unknown_is_missing: bool = False):
        self.rt = rt
        # RFC 7644 §3.4.2.1: searching several resource types, an attribute one of them
        # lacks is treated as having no value there, not as an error.
        self.unknown_is_missing = unknown_is_missing

    # -- the walk --------------------------------------------------------------------------

    def visit(self, node: Filter) -> T:
        """The whole filter, over one resource."""
        if isinstance(node, And):
            return self.both(self.visit(node.left), self.visit(node.right))
        if isinstance(node, Or):
            return self.either(self.visit(node.left), self.visit(node.right))
        if isinstance(node, Not):
            return self.negate(self.visit(node.operand))
        if isinstance(node, ValuePath):
            return self._value_path(node)
        return self._compare(node)

    def element_filter(self, parent: Resolved, node: Filter) -> T:
        """The filter inside `parent[...]`, over one element of the multi-valued `parent`."""
        if isinstance(node, And | Or):
            left = self.element_filter(parent, node.left)
            right = self.element_filter(parent, node.right)
            return self.both(left, right) if isinstance(node, And) else self.either(left, right)
        if isinstance(node, Not):
            return self.negate(self.element_filter(parent, node.operand))
        if isinstance(node, ValuePath):  # the grammar refuses these; a tree built by hand may not
            raise InvalidFilter("Invalid filter: value filters cannot be nested")
        attribute = parent.attribute
        path = node.path
        if path.uri or path.sub:
            raise InvalidFilter(
                f"Invalid filter: inside {attribute.name}[...] name a sub-attribute"
            )
        sub = element_sub(attribute, path.name)
        if sub is None:
            raise InvalidFilter(f"Invalid filter: unknown attribute {attribute.name}.{path.name}")
        value = check_value(sub, node.op, node.value, f"{attribute.name}.{sub.name}")
        return self.element(parent, sub, node.op, value)

    def _value_path(self, node: ValuePath) -> T:
        """`emails[type eq "work" and value co "@x"]`: all terms must hold for one element."""
        # Looked up as is: `addresses[...]` has no "value" sub-attribute to default to.
        parent = self._lookup(AttrPath(node.path.name, None, node.path.uri))
        if parent is None:
            return self.constant(False)
        if not parent.attribute.multi_valued:
            raise InvalidFilter(f"Invalid filter: {parent.attribute.name} is not multi-valued")
        return self.any_element(parent, self.element_filter(parent, node.filter))

    def _compare(self, node: Compare) -> T:
        op = node.op
        if _is_schemas(node.path):
            return self.schemas(op, check_value(SCHEMAS, op, node.value, "schemas"))
        resolved = self._lookup(node.path)
        if resolved is None:
            return self.constant(matches_missing(op, node.value))
        if op == "pr" and resolved.attribute.is_complex and resolved.sub_attribute is None:
            return self._complex_present(resolved)
        resolved = default_value_sub(resolved, "Invalid filter")
        if resolved.name == LOCATION:
            if op == "pr":
                return self.constant(True)  # every resource has a location
            raise InvalidFilter(f"Invalid filter: {LOCATION} cannot be filtered or sorted on")
        value = check_value(resolved.leaf, op, node.value, resolved.name)
        if not resolved.attribute.multi_valued:
            return self.singular(resolved, op, value)
        found = self.any_element(resolved, self.element(resolved, resolved.leaf, op, value))
        if matches_missing(op, value):
            # `emails.value ne "x"` holds for a user without emails, as for a missing
            # singular attribute.
            return self.either(found, self.no_elements(resolved))
        return found

    def _complex_present(self, resolved: Resolved) -> T:
        """RFC 7644 §3.4.2.2: pr holds for a complex attribute that "contains a non-empty
        node": a sub-attribute that is present (`name pr`), or, multi-valued, an element
        that has one (`emails pr`)."""
        attribute = resolved.attribute
        if attribute.multi_valued:
            present = [
                self.element(resolved, sub, "pr", None)
                for sub in attribute.sub_attributes
                if self.can_filter_element(resolved, sub)
            ]
            return self.any_element(resolved, self.any_of(present))
        terms = []
        for sub in attribute.sub_attributes:
            part = Resolved(resolved.schema, attribute, sub)
            if part.name != LOCATION:  # always there, like meta.resourceType
                terms.append(self.singular(part, "pr", None))
        return self.any_of(terms)

    def _lookup(self, path: AttrPath) -> Resolved | None:
        """The attribute `path` names; None: this resource type lacks it in a cross-type search."""
        text = str(path)
        resolved = resolve_name(self.rt, text)
        if resolved is None and not self.unknown_is_missing:
            raise InvalidFilter(f"Invalid filter: unknown attribute {text!r}")
        return resolved

    def any_of(self, terms: list[T]) -> T:
        if not terms:
            return self.constant(False)
        result = terms[0]
        for term in terms[1:]:
            result = self.either(result, term)
        return result

    # -- what a backend supplies ------------------------------------------------------------

    def constant(self, value: bool) -> T:
        raise NotImplementedError

    def both(self, left: T, right: T) -> T:
        raise NotImplementedError

    def either(self, left: T, right: T) -> T:
        raise NotImplementedError

    def negate(self, operand: T) -> T:
        """SCIM's two-valued `not`: a term about a missing attribute is false, its negation true."""
        raise NotImplementedError

    def schemas(self, op: str, value: Any) -> T:
        """`schemas op value`: the core schema and each extension the resource has data for."""
        raise NotImplementedError

    def singular(self, resolved: Resolved, op: str, value: Any) -> T:
        """`op value` (checked by check_value) on a singular attribute or sub-attribute."""
        raise NotImplementedError

    def element(self, parent: Resolved, sub: Attribute, op: str, value: Any) -> T:
        """`op value` on one element of `parent`; `sub` is parent itself for a simple
        multi-valued attribute, whose elements are their own value (RFC 7644 §3.10)."""
        raise NotImplementedError

    def any_element(self, parent: Resolved, condition: T | None) -> T:
        """Some element of `parent` satisfies `condition` (None: some element exists)."""
        raise NotImplementedError

    def no_elements(self, parent: Resolved) -> T:
        raise NotImplementedError

    def can_filter_element(self, parent: Resolved, sub: Attribute) -> bool:
        """Whether `sub` of parent's elements can be tested (`pr` on the whole attribute skips
        those that cannot)."""
        return True


def element_sub(parent: Attribute, name: str) -> Attribute | None:
    """The sub-attribute `name` of parent's elements; a simple multi-valued attribute's element
    is its own `value` (RFC 7644 §3.10), so `skills[value eq "go"]` names the attribute."""
    if parent.is_complex:
        return parent.sub(name)
    return parent if name.lower() == "value" else None


def element_field(sub: Attribute) -> str:
    """The key of `sub` in an element; a simple multi-valued attribute's is `value`."""
    return "value" if sub.multi_valued else sub.name


def _is_schemas(path: AttrPath) -> bool:
    return path.uri is None and path.sub is None and path.name.lower() == "schemas"


def resolve_name(rt: ResourceType, text: str) -> Resolved | None:
    """Resolve a path; an extension attribute may go without its URN when no other schema
    has an attribute of that name (`department`, `manager.value`), as IdPs write them."""
    resolved = rt.resolve(text)
    if resolved is not None or text.lower().startswith("urn:"):
        return resolved
    found = [r for s in rt.extensions if (r := rt.resolve(f"{s.id}:{text}")) is not None]
    return found[0] if len(found) == 1 else None


def default_value_sub(resolved: Resolved, where: str) -> Resolved:
    """RFC 7644 §3.4.2.2: a complex attribute without a sub-attribute means its "value"."""
    if resolved.attribute.is_complex and resolved.sub_attribute is None:
        value = resolved.attribute.sub("value")
        if value is None:
            raise InvalidFilter(f"{where}: name a sub-attribute of {resolved.attribute.name}")
        return Resolved(resolved.schema, resolved.attribute, value)
    return resolved


def matches_missing(op: str, value: Any) -> bool:
    """Whether `op value` holds for an attribute that has no value: `ne "x"`, `eq null`."""
    return (op == "ne" and value is not None) or (op == "eq" and value is None)


def check_value(attribute: Attribute, op: str, value: Value, name: str) -> Any:
    """The value `attribute op value` compares with, by the attribute's type (RFC 7644
    §3.4.2.2); a datetime for dateTime. InvalidFilter when the two do not go together."""
    if op == "pr":
        return None
    if value is None:
        if op in ("eq", "ne"):
            return None
        raise InvalidFilter(f"Invalid filter: {name} {op} null is not a valid comparison")
    kind = attribute.type
    if kind == "boolean":
        if op not in ("eq", "ne"):
            raise InvalidFilter(f"Invalid filter: {name} is a boolean; only eq and ne apply")
        if not isinstance(value, bool):
            raise InvalidFilter(f"Invalid filter: {name} is a boolean; compare it with true/false")
    elif kind == "dateTime":
        instant = _datetime_literal(value, name)
        if op in SUBSTRING:
            raise InvalidFilter(f"Invalid filter: {name} is a dateTime; {op} does not apply")
        return instant
    elif kind in ("integer", "decimal"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFilter(f"Invalid filter: {name} is a number; compare it with a number")
        if op in SUBSTRING:
            raise InvalidFilter(f"Invalid filter: {name} is a number; {op} does not apply")
    elif kind == "binary":
        if op not in ("eq", "ne"):
            raise InvalidFilter(f"Invalid filter: {name} is binary; only eq, ne and pr apply")
        if not isinstance(value, str):
            raise InvalidFilter(f"Invalid filter: {name} is binary; quote the base64 value")
    elif not isinstance(value, str):  # string, reference
        raise InvalidFilter(f"Invalid filter: {name} is a string; quote the value")
    return value


def folds(attribute: Attribute) -> bool:
    """Whether values of `attribute` compare case-insensitively (through app.fold). Binary
    (base64) is compared as written: case is part of its value."""
    return attribute.type in ("string", "reference") and not attribute.case_exact


def _datetime_literal(value: Value, name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidFilter(f"Invalid filter: {name} is a dateTime; quote an RFC 3339 value")
    try:
        return parse_datetime(value)
    except ValueError as e:
        raise InvalidFilter(f"Invalid filter: {value!r} {e}") from None


@dataclass(frozen=True)
class Millisecond:
    """A dateTime literal as clients see timestamps: to the millisecond, as serialize writes
    them. Stored values keep microseconds; compared raw, `meta.lastModified eq "<the value we
    returned>"` would never match and an IdP's `gt "<last seen>"` would fetch the same user
    again. Both backends compare with these bounds."""

    floor: datetime  # the start of the literal's millisecond
    after: datetime  # the first instant past it
    exact: bool  # the literal names a whole millisecond (no finer digits)

    @property
    def ceiling(self) -> datetime:
        """The first instant at or after the literal that a client could see."""
        return self.floor if self.exact else self.after


def millisecond(value: datetime) -> Millisecond:
    value = value.astimezone(UTC)
    floor = value - timedelta(microseconds=value.microsecond % 1000)
    try:
        after = floor + timedelta(milliseconds=1)
    except OverflowError:  # 9999-12-31T23:59:59.999Z: nothing stored is later
        after = datetime.max.replace(tzinfo=UTC)
    return Millisecond(floor, after, floor == value)
