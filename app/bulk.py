"""Bulk requests (RFC 7644 §3.7) as data: a BulkRequest read into operations, the `bulkId`
references between them, and the order that runs each POST before the operations that refer
to it. No HTTP and no database here: app/api/bulk.py runs the plan, each operation through the
path its single request takes.

What is wrong with the request as a whole (not an object, no `Operations` list, a bad
`failOnErrors`, a `bulkId` given twice) refuses it with a 400; what is wrong with one operation
(an unknown method, a path that names no resource, no `data`) fails that operation alone, with
the status its single request would get, and the others run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidSyntax, InvalidValue, NotFound, ScimError, TooLarge

BULK_REQUEST_URN = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
METHODS = ("POST", "PUT", "PATCH", "DELETE")
ENDPOINTS = {"Users": "User", "Groups": "Group"}  # what a path may name, and its resource type
PREFIX = "bulkId:"  # RFC 7644 §3.7.2: "bulkId:qwerty" stands for the id qwerty's POST creates


class MethodNotAllowed(ScimError):
    """POST to a resource, or PUT, PATCH or DELETE to an endpoint: what the single request
    gets from routing (405)."""

    status = 405


@dataclass
class Operation:
    """One element of `Operations`, as read; `problem` fails it before it runs."""

    index: int  # its place in the request, which the response keeps
    method: str | None
    bulk_id: str | None
    version: str | None  # If-Match of the single request
    path: str | None
    data: Any
    endpoint: str | None = None  # "Users" or "Groups"
    resource_id: str | None = None  # the id in the path, maybe a "bulkId:..." reference
    problem: ScimError | None = None
    # The bulkIds it refers to, in its path and its data, in the order found.
    references: list[str] = field(default_factory=list)

    @property
    def resource_type(self) -> str | None:
        return ENDPOINTS.get(self.endpoint or "")


@dataclass(frozen=True)
class Request:
    operations: list[Operation]
    fail_on_errors: int | None  # stop once this many operations failed; None: run them all


def parse(body: dict[str, Any], *, max_operations: int) -> Request:
    """The BulkRequest body (a JSON object whose strings intake has checked) into operations.

    Attribute names are case-insensitive (RFC 7643 §2.1), as everywhere else in a request.
    """
    fields = {key.lower(): value for key, value in body.items()}
    schemas = fields.get("schemas")
    if schemas is not None and BULK_REQUEST_URN not in (
        schemas if isinstance(schemas, list) else []
    ):
        raise InvalidSyntax(f"schemas must be [{BULK_REQUEST_URN!r}]")
    operations = fields.get("operations")
    if not isinstance(operations, list):
        raise InvalidSyntax("A BulkRequest needs Operations, a list of operations (RFC 7644 §3.7)")
    # RFC 7644 §3.7.4: beyond maxOperations, 413 naming the limit.
    if len(operations) > max_operations:
        raise TooLarge(
            f"The bulk request has {len(operations)} operations, more than the maxOperations "
            f"({max_operations}) this service accepts (SCIM_BULK_MAX_OPERATIONS)"
        )
    fail_on_errors = fields.get("failonerrors")
    if fail_on_errors is not None and (
        isinstance(fail_on_errors, bool)
        or not isinstance(fail_on_errors, int)
        or fail_on_errors < 1
    ):
        raise InvalidValue("failOnErrors must be an integer of at least 1")
    read = [_operation(index, raw) for index, raw in enumerate(operations)]
    defined: dict[str, int] = {}
    for operation in read:
        if operation.bulk_id is None:
            continue
        if operation.bulk_id in defined:
            raise InvalidValue(
                f"bulkId {operation.bulk_id!r} is given to operations {defined[operation.bulk_id]}"
                f" and {operation.index}; each must be unique within the request"
            )
        defined[operation.bulk_id] = operation.index
    return Request(read, fail_on_errors)


def _operation(index: int, raw: Any) -> Operation:
    if not isinstance(raw, dict):
        return Operation(index, None, None, None, None, None, problem=_bad(index, "an object"))
    fields = {key.lower(): value for key, value in raw.items()}
    method, bulk_id, version, path, data = (
        fields.get(name) for name in ("method", "bulkid", "version", "path", "data")
    )
    operation = Operation(
        index,
        method.upper() if isinstance(method, str) else None,
        bulk_id if isinstance(bulk_id, str) else None,
        version if isinstance(version, str) else None,
        path if isinstance(path, str) else None,
        data,
    )
    operation.problem = _problem(operation, raw=fields)
    if operation.problem is None:
        operation.references = list(dict.fromkeys(references_in(operation)))
    return operation


def _bad(index: int, what: str) -> InvalidSyntax:
    return InvalidSyntax(f"Operations[{index}] must be {what}")


def _problem(operation: Operation, *, raw: dict[str, Any]) -> ScimError | None:
    """What fails this operation before it runs, with the status its single request gets."""
    method, index = operation.method, operation.index
    if method not in METHODS:
        return InvalidSyntax(
            f"Operations[{index}].method must be one of POST, PUT, PATCH or DELETE"
        )
    for name, key in (("bulkId", "bulkid"), ("version", "version"), ("path", "path")):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            return InvalidSyntax(f"Operations[{index}].{name} must be a string")
    if raw.get("bulkid") == "":
        return InvalidValue(f"Operations[{index}].bulkId must not be empty")
    if method == "POST" and operation.bulk_id is None:
        # RFC 7644 §3.7: bulkId is REQUIRED when method is POST.
        return InvalidSyntax(f"Operations[{index}].bulkId is required for a POST")
    if operation.path is None:
        return InvalidSyntax(
            f"Operations[{index}].path is required: /Users or /Groups for a POST, "
            "/Users/{id} or /Groups/{id} otherwise"
        )
    if problem := _route(operation):
        return problem
    if method != "DELETE" and not isinstance(operation.data, dict):
        # What the single request answers a body that is no JSON object.
        return InvalidSyntax(f"Operations[{index}].data must be a JSON object for a {method}")
    return None


def _route(operation: Operation) -> ScimError | None:
    """Read the path as routing reads the single request's URL (RFC 7644 §3.7: relative to the
    service's root): an endpoint for a POST, one resource otherwise."""
    path, method, index = operation.path or "", operation.method, operation.index
    if not path.startswith("/") or "?" in path or "#" in path:
        return InvalidValue(
            f"Operations[{index}].path must be a path such as /Users or /Users/{{id}}, without a "
            "query"
        )
    parts = path[1:].split("/")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()  # a trailing slash, as routing allows
    if parts[0] not in ENDPOINTS or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
        return NotFound(f"Operations[{index}].path {path!r}: no such endpoint")
    operation.endpoint = parts[0]
    if len(parts) == 2:
        if parts[1] == ".search":
            return InvalidValue(f"Operations[{index}]: a search cannot be a bulk operation")
        operation.resource_id = parts[1]
    if (method == "POST") != (operation.resource_id is None):
        return MethodNotAllowed(
            f"Operations[{index}]: {method} is not allowed on {path} (POST to /Users or "
            "/Groups; PUT, PATCH and DELETE to /Users/{id} or /Groups/{id})"
        )
    return None


def references_in(operation: Operation) -> Iterator[str]:
    """The bulkIds an operation refers to: in its path, and as any whole string of its data."""
    if operation.resource_id is not None and operation.resource_id.startswith(PREFIX):
        yield operation.resource_id[len(PREFIX) :]
    pending = [operation.data]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if value.startswith(PREFIX):
                yield value[len(PREFIX) :]
        elif isinstance(value, dict):
            pending.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            pending.extend(reversed(value))


def resolved(value: Any, ids: dict[str, str], *, drop: frozenset[str] = frozenset()) -> Any:
    """`value` with every "bulkId:x" string replaced by the id x's POST created.

    References to the bulkIds in `drop` are left out instead: the element of a list (a member),
    or the attribute of an object, that holds one. That is how the first resource of a
    circular reference is created (RFC 7644 §3.7.1), before the others exist.
    """
    if isinstance(value, str):
        if value.startswith(PREFIX):
            return ids.get(value[len(PREFIX) :], value)
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if _refers_to(item, drop):
                continue
            out[key] = resolved(item, ids, drop=drop)
        return out
    if isinstance(value, list):
        return [resolved(item, ids, drop=drop) for item in value if not _refers_to(item, drop)]
    return value


def _refers_to(value: Any, drop: frozenset[str]) -> bool:
    """Whether a value is, or is an object directly holding, a reference to a dropped bulkId."""
    if not drop:
        return False
    if isinstance(value, str):
        return value.startswith(PREFIX) and value[len(PREFIX) :] in drop
    if isinstance(value, dict):
        return any(
            isinstance(item, str) and item.startswith(PREFIX) and item[len(PREFIX) :] in drop
            for item in value.values()
        )
    return False


def plan(request: Request) -> list[list[Operation]]:
    """The order to run the operations in: units of one operation, or of the POSTs of one
    circular reference (RFC 7644 §3.7.1), which run together.

    Request order, but a POST runs before the first operation that refers to its bulkId
    (RFC 7644 §3.7.2: whatever the order in the request). Only POSTs define bulkIds, so only
    POSTs can form a cycle: their strongly connected components (Tarjan's, without recursion,
    so that a chain of thousands of references cannot exhaust the stack) are the units.
    """
    operations = request.operations
    defines = {op.bulk_id: op.index for op in operations if op.bulk_id and op.problem is None}
    edges = {
        op.index: [defines[ref] for ref in op.references if ref in defines] for op in operations
    }
    component = _components(
        [op.index for op in operations if op.method == "POST" and op.problem is None], edges
    )
    units: dict[int, list[int]] = {}
    for index, root in component.items():
        units.setdefault(root, []).append(index)
    order: list[list[Operation]] = []
    done: set[int] = set()  # unit roots (or lone operations) planned
    for op in operations:
        # Depth first through what the operation refers to, without recursion.
        stack = [(component.get(op.index, op.index), False)]
        while stack:
            unit, expanded = stack.pop()
            if unit in done:
                continue
            members = units.get(unit, [unit])
            if expanded:
                done.add(unit)
                order.append([operations[i] for i in sorted(members)])
                continue
            stack.append((unit, True))
            for member in members:
                for target in edges[member]:
                    target_unit = component.get(target, target)
                    if target_unit != unit and target_unit not in done:
                        stack.append((target_unit, False))
    return order


def _components(nodes: list[int], edges: dict[int, list[int]]) -> dict[int, int]:
    """node -> the root of its strongly connected component (Tarjan), among `nodes`."""
    among = set(nodes)
    out = {node: [t for t in edges[node] if t in among] for node in nodes}
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    root_of: dict[int, int] = {}
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = out[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            for target in targets:  # the children explored: their lowest links
                if target in on_stack:
                    low[node] = min(low[node], low[target])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    root_of[member] = node
                    if member == node:
                        break
    return root_of


def cyclic(unit: list[Operation]) -> bool:
    """Whether a unit is a circular reference: several POSTs, or one referring to itself."""
    return len(unit) > 1 or (unit[0].bulk_id is not None and unit[0].bulk_id in unit[0].references)
