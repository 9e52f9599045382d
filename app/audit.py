"""The audit trail: one JSON line on stdout and one `audit_events` row per change requested.

Every POST, PUT, PATCH and DELETE on a user or group is recorded, granted or refused: who (the
token's name, never the token), what (operation and the NAMES of the attributes it touched, never
their values), on which resource, with what outcome and how long it took.

A granted change's row is written by the change's own transaction, just before its COMMIT: the
row exists exactly when the change does, and costs no transaction of its own (a second
transaction per write was a sixth of a write's time, and on SQLite a second wait for the write
lock). Its status is the one the view answers a success with, and its duration runs to the
commit. A request refused or failed before committing anything is recorded once the response
has been sent (on close), in a short transaction of its own, so that the audit neither breaks
nor delays its response. The line is written when the response is ready, from the same event.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from app import protocol
from app.db import reads_only
from app.errors import ScimError
from app.filters.grammar import parse_path
from app.models import AuditEvent
from app.patch import Operation
from app.requests import request_id
from app.store import audit as audit_store
from app.store import events as events_store

LOGGER_NAME = "scim.audit"  # outside "app": its lines go to stdout as they are, not to stderr
OPERATIONS = {"POST": "create", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}
RESOURCE_TYPES = {"scim.users": "User", "scim.groups": "Group"}
MAX_NAMES = 64  # a body with thousands of keys is recorded by its first names only
MAX_NAME_LENGTH = 200
MAX_ID_LENGTH = 64  # ids are UUIDs; a longer one in a URL is a 404 recorded as far as it fits
# A PATCH path's value filter holds values (emails[value eq "jane@..."]): only names are kept.
# An attribute name, optionally URN-qualified, with a sub-attribute (RFC 7644 §3.10).
_PLAIN_NAME = re.compile(
    r"(?:urn:[A-Za-z0-9:._-]+:)?[A-Za-z$][A-Za-z0-9_$-]*(?:\.[A-Za-z$][A-Za-z0-9_$-]*)?"
)
INVALID_NAME = "<invalid path>"

log = logging.getLogger(LOGGER_NAME)
problems = logging.getLogger(__name__)  # under "app": stderr, with the request id


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is when a line is logged (pytest swaps it per test)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def init_app(app: Flask) -> None:
    """Start the clock before anything can refuse the request, then audit its response."""
    if not log.handlers:
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    app.before_request(_start)
    app.after_request(_audit)
    global _attached
    if not _attached:  # the session is the process's, whatever the app
        events_store.identify_requests_with(
            lambda: (request_id() or "") if has_request_context() else ""
        )
        audit_store.record_with_changes(
            to_commit=_with_the_change,
            committed=_committed,
            rolled_back=_rolled_back,
            created=_created,
        )
        _attached = True


_attached = False


@dataclass(eq=False)
class Change:
    """One change asked for: a write request to a user or a group, or one operation of a Bulk
    request (app/api/bulk.py), which is audited exactly as the request it stands for."""

    method: str  # POST, PUT, PATCH or DELETE
    resource_type: str  # User or Group
    resource_id: str | None  # the id in its path; a create's new id comes as created_id
    granted: Callable[[], int]  # the status that answers it once it committed
    body: Callable[[], Any]  # its JSON body (or None), read only when the event is made
    started: float = field(default_factory=time.perf_counter)
    patch_names: list[str] | None = None  # a PATCH's operations as patch.parse read them
    created_id: str | None = None
    in_flight: AuditEvent | None = None  # the event added to its transaction, until it commits
    committed: AuditEvent | None = None  # the event it committed with

    @property
    def operation(self) -> str:
        return OPERATIONS[self.method]


def _start() -> None:
    g.audit_started = time.perf_counter()
    g.audit_operations = []  # a Bulk request's: (event, stored with its change)
    # g can outlive a request (an app context pushed around several): always set afresh.
    g.audit_change = _request_change()


def _request_change() -> Change | None:
    """The change a request asks for, if it writes to a user or a group; else None."""
    operation = OPERATIONS.get(request.method)
    resource_type = RESOURCE_TYPES.get(request.blueprint or "")
    # Writes to a user or a group only: not POST .search, and not URLs that match no route.
    if operation is None or resource_type is None or request.endpoint is None:
        return None
    if request.endpoint.endswith("search_users") or request.endpoint.endswith("search_groups"):
        return None
    view_args = request.view_args or {}
    return Change(
        request.method,
        resource_type,
        view_args.get("user_id") or view_args.get("group_id"),
        granted=_granted_status,
        body=_request_body,
        started=g.audit_started,
    )


def _audit(response: Response) -> Response:
    if operations := g.get("audit_operations"):
        # A Bulk request: a line per operation, in the order they ran; the rows of those
        # refused or failed stored once the response is sent.
        for event, _ in operations:
            _log(event)
        _store_after(response, [event for event, stored in operations if not stored])
    change = g.get("audit_change")
    if change is None:
        return response
    committed = change.committed
    if committed is None and response.status_code < 400:
        # A COMMIT whose answer was lost, then found committed (db.commit): the row went in.
        committed = change.in_flight
    if committed is not None:
        if committed.status != response.status_code:
            problems.warning(
                "audit event %s stored with status %s, answered %s",
                committed.request_id,
                committed.status,
                response.status_code,
            )
        _log(committed)
        return response
    event = _event(change, response.status_code, _resource_id(response), **_scim_error(response))
    _log(event)
    _store_after(response, [event])
    return response


def _store_after(response: Response, events: list[AuditEvent]) -> None:
    """Store refused and failed changes' events once the response is sent."""
    if not events:
        return
    if g.get("database_unavailable"):
        # This very request could not reach the database: do not wait for it a second time.
        problems.warning("audit event not stored: the database is unavailable")
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    response.call_on_close(lambda: _store(app, events))


def _event(change: Change, status: int, resource_id: str | None, **error: str | None) -> AuditEvent:
    return AuditEvent(
        at=datetime.now(UTC),
        request_id=request_id() or "",
        tenant_id=caller.tenant_id if (caller := g.get("caller")) else None,
        token_name=g.get("token_name"),
        method=change.method,
        resource_type=change.resource_type,
        resource_id=_storable_id(resource_id),
        operation=change.operation,
        # A caller that was refused before authenticating said nothing worth reading.
        attributes=_attribute_names(change) if g.get("token_name") else [],
        status=status,
        duration_ms=round((time.perf_counter() - change.started) * 1000, 1),
        **error,
    )


def _log(event: AuditEvent) -> None:
    caller = g.get("caller")
    log.info(json.dumps(_line(event, caller.tenant_slug if caller else None), ensure_ascii=False))


# --- A granted change's row, in the change's transaction --------------------------------------


def _current() -> Change | None:
    """The change under way, if one is: its commit writes its event."""
    if not has_request_context():
        return None
    change: Change | None = g.get("audit_change")
    if change is None or change.committed is not None or change.in_flight is not None:
        return None  # none, or its event written already (a circular bulkId's second write)
    return None if reads_only() else change


def _with_the_change() -> AuditEvent | None:
    """The change is about to commit (or, in a Bulk request, to release its savepoint): the
    row that commits with it."""
    if (change := _current()) is None:
        return None
    change.in_flight = _event(change, change.granted(), change.resource_id or change.created_id)
    return change.in_flight


def _granted_status() -> int:
    """What the view answers a change that committed (app/api/users.py, groups.py)."""
    if request.method == "POST":
        return 201
    if request.method == "DELETE":
        return 204
    if request.method == "PATCH" and request.blueprint == "scim.groups":
        return 200 if protocol.answers_patched_group() else 204
    return 200


def _committed() -> None:
    if has_request_context() and (change := g.get("audit_change")) is not None:
        if change.in_flight is not None:
            change.committed, change.in_flight = change.in_flight, None


def _rolled_back() -> None:
    # The event, a pending object, went with the rollback; a retried change adds a new one.
    if has_request_context() and (change := g.get("audit_change")) is not None:
        if change.committed is None:
            change.in_flight = None


def _created(resource_id: str) -> None:
    """The id of the user or group a POST creates, for its row."""
    if has_request_context() and (change := g.get("audit_change")) is not None:
        change.created_id = change.created_id or resource_id


# --- The operations of a Bulk request ---------------------------------------------------------


@contextmanager
def acting_for(change: Change | None) -> Iterator[Change | None]:
    """Within the block, `change` is the one under way: a Bulk operation, audited as its single
    request would be (its row with its commit, its PATCH's names, its new id)."""
    outer = g.get("audit_change")
    g.audit_change = change
    try:
        yield change
    finally:
        g.audit_change = outer


def operation(
    method: str, resource_type: str, resource_id: str | None, body: Any, granted: int
) -> Change:
    """A Bulk operation's change, to act for (acting_for) while it runs."""
    return Change(method, resource_type, resource_id, granted=lambda: granted, body=lambda: body)


def settle(change: Change, status: int, error: ScimError | None, *, kept: bool) -> None:
    """A Bulk operation's outcome, known: `kept` when its row committed with it, else the
    event of its refusal or failure, stored after the response as a refused request's is."""
    if kept and change.committed is not None:
        g.audit_operations.append((change.committed, True))
        return
    fields = {} if error is None else {"scim_type": error.scim_type, "detail": error.detail[:500]}
    # A POST that failed created nothing: its row names no resource, as a refused POST's.
    event = _event(change, status, change.resource_id, **fields)
    g.audit_operations.append((event, False))


# --- Refused and failed requests: a row once the response is sent ----------------------------


def _scim_error(response: Response) -> dict[str, str | None]:
    """The scimType and detail of a SCIM error response, for the console's failure list."""
    if response.status_code < 400 or response.direct_passthrough:
        return {}
    body = response.get_json(silent=True)
    if not isinstance(body, dict):
        return {}
    detail, scim_type = body.get("detail"), body.get("scimType")
    return {
        "scim_type": scim_type[:32] if isinstance(scim_type, str) else None,
        "detail": detail[:500] if isinstance(detail, str) else None,
    }


def _store(app: Flask, events: list[AuditEvent]) -> None:
    with app.app_context():
        try:
            audit_store.record(events)
        except SQLAlchemyError as e:
            # The response is gone already; the stdout lines remain the record of these changes.
            problems.warning(
                "audit event %s not stored: %s", events[0].request_id, e.__class__.__name__
            )


def _line(event: AuditEvent, tenant: str | None) -> dict[str, Any]:
    return {
        "time": event.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "type": "audit",
        "request_id": event.request_id,
        "tenant": tenant,  # the slug: what an operator greps for
        "token_name": event.token_name,
        "method": event.method,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "operation": event.operation,
        "attributes": event.attributes,
        "status": event.status,
        "duration_ms": event.duration_ms,
        # The change's events carry the same txn (RFC 8417): a receiver's event finds its line.
        "txn": event.txn,
    }


def _resource_id(response: Response) -> str | None:
    view_args = request.view_args or {}
    resource_id = view_args.get("user_id") or view_args.get("group_id")
    if resource_id is None and response.status_code == 201 and response.is_json:
        body = response.get_json(silent=True)
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            resource_id = body["id"]
    return resource_id


def _storable_id(resource_id: str | None) -> str | None:
    if resource_id is None:
        return None
    # PostgreSQL's text cannot hold NUL (`PUT /Users/%00`): the row is kept, without that id.
    return resource_id[:MAX_ID_LENGTH] if "\x00" not in resource_id else None


def record_operations(operations: Iterable[Operation]) -> None:
    """A PATCH's operations as patch.parse understood them: the names this request's event
    records, whatever spelling or shape the body had (lower-case "operations", keys as paths)."""
    if (change := g.get("audit_change")) is not None:
        change.patch_names = [operation.target.name for operation in operations]


def _attribute_names(change: Change) -> list[str]:
    """POST/PUT: the body's top-level attributes; PATCH: what its parsed operations touch, or,
    for a body patch.parse refused, each operation's path or the keys of its path-less value.
    Names only: never a value, never a password."""
    parsed = change.patch_names if change.method == "PATCH" else None
    names: list[str] = parsed if parsed is not None else _names_in_body(change)
    unique = [_clip(name) for name in dict.fromkeys(names) if isinstance(name, str)]
    return unique[:MAX_NAMES]


def _request_body() -> Any:
    try:
        return json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError, HTTPException):
        return None  # not JSON, or too large to read: the response said so already


def _names_in_body(change: Change) -> list[str]:
    body, method = change.body(), change.method
    if not isinstance(body, dict):
        return []
    names: list[str] = []
    if method == "PATCH":
        operations = body.get("Operations", body.get("operations"))  # as patch.parse reads it
        for operation in operations if isinstance(operations, list) else []:
            if not isinstance(operation, dict):
                continue
            path = next((v for k, v in operation.items() if k.lower() == "path"), None)
            value = next((v for k, v in operation.items() if k.lower() == "value"), None)
            if isinstance(path, str) and path.strip():
                names.append(_path_name(path))
            elif isinstance(value, dict):
                names.extend(_path_name(key) for key in value if isinstance(key, str))
    else:
        names.extend(_path_name(key) for key in body if isinstance(key, str) and key != "schemas")
    return names


def _path_name(path: str) -> str:
    """The attribute a path or key names (`emails.value`), through the filter grammar.

    Only what parses as a path is kept, without its value filter: the filter's values, or a
    "path" that is really some other text, could be anything a client sent.
    """
    if _PLAIN_NAME.fullmatch(path):
        return path
    try:
        parsed = parse_path(path)
    except ScimError:
        return INVALID_NAME
    return str(parsed.path)


def _clip(text: str) -> str:
    return text[:MAX_NAME_LENGTH]
