"""PATCH (RFC 7644 §3.5.2): PatchOp JSON -> operations, and operations applied to a document.

`parse` is where IdP leniency lives (see `_normalise`): capitalised `op` values, path-less
values whose keys are themselves paths, a value object that repeats the unchanged `id`. After
it, the engine only ever sees RFC-shaped operations. The engine works on one resource's document
in memory; the caller validates the result as a whole, so types are checked in one place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidPath, InvalidSyntax, InvalidValue, Mutability, NoTarget
from app.filters import match
from app.filters.grammar import And, Compare, Filter, parse_path
from app.fold import fold
from app.limits import DEFAULT_LIMITS, Limits
from app.schema import Attribute, Resolved, ResourceType, Schema, complex_

PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
OPS = ("add", "remove", "replace")


@dataclass(frozen=True)
class Target:
    resolved: Resolved
    value_filter: Filter | None = None  # emails[type eq "work"] -> type eq "work"
    extension: str | None = None  # the URN its attribute nests under; None for core attributes
    # value_filter as a test of one element (app.filters.match), checked when parsed
    selects: match.Predicate | None = None

    @property
    def name(self) -> str:
        """What the operation touches, by name only (never a value filter's values):
        `emails.value`, `urn:...:enterprise:2.0:User:department`, or an extension's URN."""
        if self.extension is None:
            return self.resolved.name
        return f"{self.extension}:{self.resolved.name}"


@dataclass(frozen=True)
class Operation:
    op: str
    target: Target
    value: Any = None
    implicit: bool = False  # came from a path-less value object's key, not an explicit path


def parse(
    rt: ResourceType, body: dict[str, Any], limits: Limits = DEFAULT_LIMITS
) -> list[Operation]:
    schemas = body.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or PATCH_URN not in schemas):
        raise InvalidSyntax(f"schemas must be [{PATCH_URN!r}]")
    raw_operations = body.get("Operations", body.get("operations"))
    if not isinstance(raw_operations, list) or not raw_operations:
        raise InvalidSyntax("Operations must be a non-empty list")
    if len(raw_operations) > limits.patch_operations:
        raise InvalidValue(
            f"Operations has {len(raw_operations)} operations; at most {limits.patch_operations} "
            "are accepted in one PATCH (SCIM_MAX_PATCH_OPERATIONS)"
        )
    operations: list[Operation] = []
    for index, raw in enumerate(raw_operations, start=1):
        if not isinstance(raw, dict):
            raise InvalidSyntax(f"Operation {index} must be an object")
        operations.extend(_normalise(rt, raw, index, limits))
    return operations


def _normalise(
    rt: ResourceType, raw: dict[str, Any], index: int, limits: Limits
) -> list[Operation]:
    op = raw.get("op")
    # Entra ID capitalises op values ("Replace"); RFC 7644 spells them in lower case.
    if not isinstance(op, str) or op.lower() not in OPS:
        raise InvalidSyntax(f"Operation {index}: op must be one of add, remove, replace")
    op = op.lower()
    path = raw.get("path")
    value = raw.get("value")
    if path is not None and not isinstance(path, str):
        raise InvalidPath(f"Operation {index}: path must be a string")
    if path:
        if op != "remove" and "value" not in raw:
            raise InvalidValue(f"Operation {index}: {op} requires a value")
        extension = rt.extension(path)
        if extension is not None:
            return _whole_extension(rt, extension, op, value, index, limits)
        return [Operation(op, _target(rt, path, limits), value)]
    if op == "remove":
        raise NoTarget(f"Operation {index}: remove requires a path")
    if not isinstance(value, dict):
        raise InvalidValue(f"Operation {index}: {op} without a path requires an object value")
    # A path-less value is a set of attributes, and Entra ID uses paths as its keys
    # ("name.givenName", URN-qualified names, emails[type eq "work"].value): apply each as a path.
    expanded: list[Operation] = []
    for key, item in value.items():
        if key.lower() == "schemas":
            continue
        extension = rt.extension(key)
        if extension is not None:
            expanded.extend(_extension_attributes(rt, extension, op, item, index, limits))
            continue
        expanded.append(Operation(op, _target(rt, key, limits), item, implicit=True))
    return expanded


def _whole_extension(
    rt: ResourceType, extension: Schema, op: str, value: Any, index: int, limits: Limits
) -> list[Operation]:
    """A path that is an extension's schema URN alone: RFC 7644 §3.5.2 treats the extension as
    one complex attribute. add/replace set the attributes the value names (the others stay, as
    for any complex attribute); remove removes the whole extension, and so its URN in schemas."""
    if op != "remove":
        return _extension_attributes(rt, extension, op, value, index, limits)
    whole = complex_(extension.id, *extension.attributes)
    return [Operation(op, Target(Resolved(extension, whole)), value)]


def _extension_attributes(
    rt: ResourceType, extension: Schema, op: str, value: Any, index: int, limits: Limits
) -> list[Operation]:
    """`{"<extension URN>": {"department": "Sales"}}`: one operation per attribute given, as if
    each had come with its URN-qualified path."""
    if not isinstance(value, dict):
        raise InvalidValue(f"Operation {index}: {extension.id} must be an object")
    return [
        Operation(op, _target(rt, f"{extension.id}:{key}", limits), item, implicit=True)
        for key, item in value.items()
    ]


def _target(rt: ResourceType, path: str, limits: Limits) -> Target:
    parsed = parse_path(path, limits)
    resolved = rt.resolve(str(parsed.path))
    if resolved is None:
        raise InvalidPath(f"Unknown attribute in path {path!r}")
    selects = None
    if parsed.filter is not None:
        if not resolved.attribute.multi_valued:
            raise InvalidPath(f"{resolved.attribute.name} is not multi-valued; it takes no filter")
        # Checked now, before anything is read: a filter naming no sub-attribute of the
        # attribute, or comparing one with the wrong type, is refused even with no elements.
        selects = match.element_matcher(rt, resolved, parsed.filter)
    extension = None
    if resolved.schema is not None and resolved.schema is not rt.schema:
        extension = resolved.schema.id
    return Target(resolved, parsed.filter, extension, selects)


def apply(
    document: dict[str, Any], operations: list[Operation], *, resource_id: str
) -> dict[str, Any]:
    """Apply operations in order to a copy of `document`; the caller validates the result."""
    result = copy.deepcopy(document)
    for operation in operations:
        _apply_one(result, operation, resource_id)
    return result


def _apply_one(document: dict[str, Any], operation: Operation, resource_id: str) -> None:
    resolved = operation.target.resolved
    attribute, sub = resolved.attribute, resolved.sub_attribute
    if not attribute.writable or (sub is not None and not sub.writable):
        # Okta repeats the resource's own id in path-less replaces: unchanged is not a change.
        if operation.implicit and attribute.name == "id" and operation.value == resource_id:
            return
        raise Mutability(f"{resolved.name} is readOnly")
    container = _container(document, operation.target.extension)
    if attribute.multi_valued:
        _apply_multi(container, operation)
    elif sub is not None:
        _apply_sub(container, attribute, sub, operation)
    elif operation.op == "remove":
        container.pop(attribute.name, None)
    elif attribute.is_complex and isinstance(operation.value, dict):
        # RFC 7644 §3.5.2.1/§3.5.2.3: sub-attributes not given are left unchanged.
        current = container.get(attribute.name)
        merged = dict(current) if isinstance(current, dict) else {}
        merged.update(_canonical(attribute, operation.value))
        container[attribute.name] = merged
    else:
        container[attribute.name] = operation.value
    if operation.target.extension and document.get(operation.target.extension) == {}:
        document.pop(operation.target.extension)


def _apply_sub(container: dict, attribute: Attribute, sub: Attribute, operation: Operation) -> None:
    current = container.get(attribute.name)
    if operation.op == "remove":
        if isinstance(current, dict):
            current.pop(sub.name, None)
            if not current:
                container.pop(attribute.name)
        return
    element = dict(current) if isinstance(current, dict) else {}
    element[sub.name] = operation.value
    container[attribute.name] = element


def _apply_multi(container: dict, operation: Operation) -> None:
    target = operation.target
    attribute, sub = target.resolved.attribute, target.resolved.sub_attribute
    elements: list[Any] = list(container.get(attribute.name) or [])
    op, value = operation.op, operation.value
    if target.value_filter is not None:
        elements = _apply_filtered(attribute, sub, elements, operation)
    elif sub is not None:
        if op == "remove":
            for element in elements:
                if isinstance(element, dict):
                    element.pop(sub.name, None)
        elif elements:
            for element in elements:
                if isinstance(element, dict):
                    element[sub.name] = value
        else:
            elements = [{sub.name: value}]
        elements = [e for e in elements if e != {}]
    elif op == "remove":
        if value is None:
            elements = []
        else:
            # Entra ID removes members as {"path":"members","value":[{"value":"<id>"}]}:
            # remove exactly the listed elements, never the whole attribute.
            listed = value if isinstance(value, list) else [value]
            gone = {_identity(attribute, item) for item in listed}
            elements = [e for e in elements if _identity(attribute, e) not in gone]
    else:
        items = value if isinstance(value, list) else [value]
        items = [_canonical(attribute, item) if isinstance(item, dict) else item for item in items]
        written = items
        if op == "replace":
            elements = items
        else:
            # RFC 7644 §3.5.2.1: no duplicates. Adding a value already there updates that
            # element in place, so a re-sent `"primary": true` keeps (or makes) it primary.
            known: dict[Any, Any] = {}
            for element in elements:  # the first element with a value is the one updated
                known.setdefault(_identity(attribute, element), element)
            written = []
            for item in items:
                existing = known.get(_identity(attribute, item))
                if existing is None:
                    elements.append(item)
                    known[_identity(attribute, item)] = existing = item
                elif isinstance(existing, dict) and isinstance(item, dict):
                    existing.update(item)
                written.append(existing)
        if any(_is_primary(element) for element in written):
            _keep_one_primary(elements, chosen=[e for e in written if _is_primary(e)][-1])
    if elements:
        container[attribute.name] = elements
    else:
        container.pop(attribute.name, None)


def _apply_filtered(
    attribute: Attribute, sub: Attribute | None, elements: list[Any], operation: Operation
) -> list[Any]:
    op, value, value_filter = operation.op, operation.value, operation.target.value_filter
    if not attribute.is_complex:
        return _apply_filtered_simple(attribute, elements, operation)
    selects = operation.target.selects
    assert selects is not None  # set with value_filter
    matched = [e for e in elements if isinstance(e, dict) and selects(e)]
    if op == "remove":
        if sub is None:
            return [e for e in elements if not any(e is m for m in matched)]
        for element in matched:
            element.pop(sub.name, None)
        return [e for e in elements if e != {}]
    if not matched:
        seed = _seed(attribute, value_filter)
        if op == "replace" or seed is None:
            raise NoTarget(f"No {attribute.name} value matches the filter in the path")
        # Entra ID adds emails[type eq "work"].value to a user without a work email: create it.
        element = dict(seed)
        if sub is not None:
            element[sub.name] = value
        elif isinstance(value, dict):
            element.update(_canonical(attribute, value))
        else:
            raise InvalidValue(f"{attribute.name}[...] needs an object value")
        elements.append(element)
        matched = [element]
    else:
        for element in matched:
            if sub is not None:
                element[sub.name] = value
            elif isinstance(value, dict):
                if op == "replace":
                    element.clear()
                element.update(_canonical(attribute, value))
            else:
                raise InvalidValue(f"{attribute.name}[...] needs an object value")
    chosen = next((e for e in matched if _is_primary(e)), None)
    if chosen is not None:
        _keep_one_primary(elements, chosen)
    return elements


def _apply_filtered_simple(
    attribute: Attribute, elements: list[Any], operation: Operation
) -> list[Any]:
    """`skills[value eq "go"]`: a list of plain values, each matched as its own `value`."""
    selects = operation.target.selects
    assert selects is not None  # set with value_filter
    hit = [selects(e) for e in elements]
    kept = [e for e, h in zip(elements, hit, strict=True) if not h]
    if operation.op == "remove":
        return kept
    if not any(hit) and operation.op == "replace":
        raise NoTarget(f"No {attribute.name} value matches the filter in the path")
    added = operation.value if isinstance(operation.value, list) else [operation.value]
    if operation.op == "add":
        kept = elements  # add never drops what matched
    return kept + [v for v in added if v not in kept]


def _seed(attribute: Attribute, node: Filter | None) -> dict[str, Any] | None:
    """The element a filter of `eq` terms joined by `and` describes, or None."""
    if isinstance(node, And):
        left, right = _seed(attribute, node.left), _seed(attribute, node.right)
        return None if left is None or right is None else {**left, **right}
    if not isinstance(node, Compare) or node.op != "eq":
        return None
    sub = attribute.sub(node.path.name)
    return None if sub is None else {sub.name: node.value}


def _container(document: dict[str, Any], extension: str | None) -> dict[str, Any]:
    """Core attributes sit at the top level; extension attributes nest under their URN."""
    if extension is None:
        return document
    nested = document.get(extension)
    if not isinstance(nested, dict):
        nested = document[extension] = {}
    return nested


def _canonical(attribute: Attribute, value: dict[str, Any]) -> dict[str, Any]:
    """Sub-attribute keys in their declared spelling, so merges never duplicate a key."""
    out = {}
    for key, item in value.items():
        sub = attribute.sub(key)
        out[sub.name if sub else key] = item
    return out


def _identity(attribute: Attribute, element: Any) -> Any:
    """What makes two elements the same: their `value` when they have one, else all of them."""
    if isinstance(element, dict) and "value" in element:
        value = element["value"]
        sub = attribute.sub("value")
        folds = isinstance(value, str) and sub is not None and not sub.case_exact
        if isinstance(value, list | dict):
            return repr(value)  # not a value a client may send; validation refuses it after
        return fold(value) if folds else value
    return repr(element)


def _is_primary(element: Any) -> bool:
    return isinstance(element, dict) and element.get("primary") in (True, "True", "true")


def _keep_one_primary(elements: list[Any], chosen: Any) -> None:
    # RFC 7643 §2.4: at most one primary; the one just written wins.
    for element in elements:
        if isinstance(element, dict) and element is not chosen and _is_primary(element):
            element["primary"] = False
