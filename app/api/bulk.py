"""POST /Bulk (RFC 7644 §3.7): many writes in one request, each exactly as its single request.

The BulkRequest is read and planned by app.bulk (413 beyond maxPayloadSize or maxOperations);
its operations are counted by the rate limit before any runs (a 429 refuses them all); then
each runs through app/api/writes.py, the path its single request's view takes, so it is
validated, checked against its `version` (If-Match), stored and audited as that request. Each
runs in a savepoint of its own, within transactions committed in chunks (app/store/batch.py):
an operation is atomic, the request as a whole is not (RFC 7644 §3.7 does not ask it to be).
The BulkResponse lists the operations that ran, in request order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g

from app import audit, bulk, db, etags, protocol, ratelimit, tenancy
from app.api import writes
from app.bulk import PREFIX, Operation
from app.errors import Conflict, InvalidValue, ScimError, ServiceUnavailable
from app.models import Group, User
from app.store.batch import Batch, Replay

bp = Blueprint("bulk", __name__)

# What each operation's single request answers once it is done (app/api/users.py, groups.py);
# a group's PATCH answers 204 unless it asks for attributes, which an operation cannot.
GRANTED = {"POST": 201, "PUT": 200, "PATCH": 200, "DELETE": 204}
GRANTED_GROUP_PATCH = 204
UNAVAILABLE = ServiceUnavailable("The service cannot reach its database; retry later")


@bp.post("/Bulk")
def bulk_request() -> Response:
    config, limits = current_app.config, protocol.limits()
    body = protocol.json_body(
        max_bytes=limits.bulk_payload_bytes,
        too_large="The bulk request is larger than the maxPayloadSize ({limit} bytes) this "
        "service accepts (SCIM_BULK_MAX_PAYLOAD_BYTES)",
    )
    request = bulk.parse(body, max_operations=limits.bulk_operations)
    ratelimit.charge(len(request.operations))
    results = _Run(request, protocol.base_url(), config["SCIM_BULK_CHUNK_SECONDS"]).run()
    return protocol.scim_response({"schemas": [bulk.BULK_RESPONSE_URN], "Operations": results})


def _deferrable(op: Operation) -> bool:
    """A user's POST: it adds rows and reads none, so that it can be written with the ones
    after it (Batch.defer)."""
    return op.method == "POST" and op.endpoint == "Users" and op.problem is None


@dataclass
class _Result:
    operation: Operation
    status: int
    error: ScimError | None = None
    resource_id: str | None = None  # the resource it acted on, as resolved
    version: str | None = None
    change: audit.Change | None = None

    def body(self, base_url: str) -> dict[str, Any]:
        op = self.operation
        out: dict[str, Any] = {}
        if op.method is not None:
            out["method"] = op.method
        if op.bulk_id is not None:
            out["bulkId"] = op.bulk_id
        if self.version is not None:
            out["version"] = self.version
        # RFC 7644 §3.7.3: a location for every operation but a failed POST; and none for a
        # path whose bulkId never resolved, which names no resource.
        location = None
        if op.endpoint is not None and self.resource_id is not None:
            location = f"{base_url}/{op.endpoint}/{self.resource_id}"
        elif op.method != "POST" and op.path is not None and op.path.startswith("/"):
            location = f"{base_url}{op.path}"
        if location is not None and "bulkId:" not in location:
            out["location"] = location
        out["status"] = str(self.status)
        if self.error is not None:
            error = self.error
            out["response"] = protocol.error_body(error.status, error.detail, error.scim_type)
        return out


class _Run:
    """One Bulk request's operations run in plan order; its results in request order."""

    def __init__(self, request: bulk.Request, base_url: str, chunk_seconds: float) -> None:
        self.request = request
        self.base_url = base_url
        self.batch = Batch(max_seconds=chunk_seconds)
        # bulkId -> what its POST created; POSTs define bulkIds, whatever became of them.
        self.ids: dict[str, str] = {}
        self.defined = {
            op.bulk_id for op in request.operations if op.method == "POST" and op.bulk_id
        }
        self.results: dict[int, _Result] = {}
        self.ran: list[int] = []  # in the order run, for the audit lines
        self.uncommitted: list[int] = []  # succeeded in the open chunk: not committed yet
        self.deferred: list[Operation] = []  # creates whose rows are not written yet
        self.errors = 0

    def run(self) -> list[dict[str, Any]]:
        limit = self.request.fail_on_errors
        try:
            self._run_all(limit)
        except db.REQUEST_ERRORS as e:
            if db.fault(e) is not db.Fault.UNAVAILABLE:
                raise
            self._lost()
        for index in self.ran:
            result = self.results[index]
            if result.change is not None:
                kept = result.error is None
                audit.settle(result.change, result.status, result.error, kept=kept)
        return [self.results[i].body(self.base_url) for i in sorted(self.results)]

    def _run_all(self, limit: int | None) -> None:
        for unit in bulk.plan(self.request):
            deferrable = not bulk.cyclic(unit) and _deferrable(unit[0])
            if not deferrable:
                # The creates deferred so far are written first: their errors count below.
                self._write_deferred()
            if limit is not None and self.errors >= limit:
                break  # failOnErrors: the operations not run are not in the response
            if deferrable:
                self._deferred_create(unit[0])
            elif bulk.cyclic(unit):
                self._circle(unit)
            else:
                self._strict(unit[0])
            if self.batch.due():
                self._commit()
        self._commit()

    # --- one operation ------------------------------------------------------------------------

    def _strict(self, op: Operation) -> None:
        """One operation in a savepoint of its own."""
        result = self._result(op)
        if result.error is None:
            try:
                self._unresolvable(op.index, op.references)
                data = bulk.resolved(op.data, self.ids)
                with audit.acting_for(result.change):
                    row = self._run(lambda: self._write(op, result.resource_id, data))
                self._succeeded(result, row)
            except ScimError as e:
                result.status, result.error = e.status, e
            except db.REQUEST_ERRORS:
                result.status, result.error = 503, UNAVAILABLE
                self._record(result)
                raise
        self._record(result)

    def _deferred_create(self, op: Operation) -> None:
        """A user's POST adds rows and reads none: written with the next ones (Batch.defer)."""
        result = self._result(op)
        try:
            self._unresolvable(op.index, op.references)
            data = bulk.resolved(op.data, self.ids)
            with audit.acting_for(result.change):
                row = self.batch.defer(lambda: self._write(op, None, data))
        except ScimError as e:
            result.status, result.error = e.status, e
        except Replay:
            self._replay(extra=[op])
            return
        except db.REQUEST_ERRORS:
            result.status, result.error = 503, UNAVAILABLE
            self._record(result)
            raise
        else:
            self._succeeded(result, row)
            self.deferred.append(op)
        self._record(result)

    def _write_deferred(self) -> None:
        try:
            self.batch.write_deferred()
        except Replay:
            self._replay()
        self.deferred = []

    def _replay(self, extra: list[Operation] | None = None) -> None:
        """The deferred creates failed together: forget their answers, and run them (and
        `extra`) again one at a time, in savepoints, as long as failOnErrors allows."""
        ops, self.deferred = [*self.deferred, *(extra or [])], []
        for op in ops:
            if self.results.pop(op.index, None) is not None:
                self.ran.remove(op.index)
                self.uncommitted.remove(op.index)
            self.ids.pop(op.bulk_id or "", None)
        limit = self.request.fail_on_errors
        for op in ops:
            if limit is not None and self.errors >= limit:
                break
            self._strict(op)

    def _result(self, op: Operation) -> _Result:
        """The operation's result as it starts: failed already if it is malformed."""
        result = _Result(op, 0)
        if op.resource_id is not None:
            target = op.resource_id
            if target.startswith(PREFIX):
                target = self.ids.get(target[len(PREFIX) :], target)
            result.resource_id = target
        # Audited as its single request would be: a write to a user or a group that routing
        # found (not a path that names no resource, nor a method the path does not allow).
        if (
            op.method in GRANTED
            and op.resource_type is not None
            and not isinstance(op.problem, bulk.MethodNotAllowed)
        ):
            granted = GRANTED[op.method]
            if op.method == "PATCH" and op.resource_type == "Group":
                granted = GRANTED_GROUP_PATCH
            result.status = granted
            result.change = audit.operation(
                op.method, op.resource_type, result.resource_id, op.data, granted
            )
        if op.problem is not None:
            result.status, result.error = op.problem.status, op.problem
        return result

    def _unresolvable(self, index: int, references: list[str]) -> None:
        """RFC 7644 §3.7.2: each bulkId it refers to must be one a POST of this request created."""
        for reference in references:
            if reference not in self.defined:
                raise InvalidValue(
                    f"Operations[{index}] refers to bulkId:{reference}, which no POST "
                    "operation of this request defines"
                )
            if reference not in self.ids:
                raise Conflict(
                    f"Operations[{index}] refers to bulkId:{reference}, whose POST failed"
                )

    def _run(self, write: Callable[[], User | Group | None]) -> User | Group | None:
        try:
            return self.batch.run(write)
        except db.REQUEST_ERRORS as e:
            if db.fault(e) is not db.Fault.REFUSED_DATA:
                raise
            # As protocol.py answers the single request: the value is the client's to fix.
            raise InvalidValue(
                "A value in the operation is too large or malformed to be stored"
            ) from None

    def _write(self, op: Operation, resource_id: str | None, data: Any) -> User | Group | None:
        """The operation's write, exactly as its single request's view calls it."""
        version, method = op.version, op.method
        if op.endpoint == "Users":
            if method == "POST":
                return writes.create_user(data)
            assert resource_id is not None
            if method == "PUT":
                return writes.replace_user(resource_id, data, if_match=version)
            if method == "PATCH":
                return writes.patch_user(resource_id, data, if_match=version)
            writes.delete_user(resource_id, if_match=version)
            return None
        if method == "POST":
            return writes.create_group(data)
        assert resource_id is not None
        if method == "PUT":
            return writes.replace_group(resource_id, data, if_match=version)
        if method == "PATCH":
            return writes.patch_group(resource_id, data, if_match=version)
        writes.delete_group(resource_id, if_match=version)
        return None

    def _succeeded(self, result: _Result, row: User | Group | None) -> None:
        if row is not None:
            result.resource_id = row.id
            # A deferred create's row is not written yet: its tenant is the default's to come.
            tenant_id = tenancy.current_id() if row.tenant_id is None else row.tenant_id
            result.version = etags.etag(row.version, tenant_id)
            if result.operation.method == "POST":
                assert result.operation.bulk_id is not None
                self.ids[result.operation.bulk_id] = row.id
        self.uncommitted.append(result.operation.index)

    def _record(self, result: _Result) -> None:
        self.results[result.operation.index] = result
        self.ran.append(result.operation.index)
        if result.error is not None:
            self.errors += 1

    # --- a circular reference -----------------------------------------------------------------

    def _circle(self, unit: list[Operation]) -> None:
        """POSTs that refer to each other (RFC 7644 §3.7.1), resolved as the RFC describes: the
        first created without its references to the others, the others created with theirs, then
        the first given its references by replacing it with its data, now resolved. All of them
        succeed together, or each fails with 409 and none is kept."""
        results = [self._result(op) for op in unit]
        circle = {op.bulk_id for op in unit}
        try:
            for op in unit:
                outside = [reference for reference in op.references if reference not in circle]
                self._unresolvable(op.index, outside)
            self._run(lambda: self._create_circle(unit, results, circle))
        except db.REQUEST_ERRORS:
            for result in results:
                result.status, result.error = 503, UNAVAILABLE
                self._record(result)
            raise
        except ScimError as e:
            for op in unit:
                self.ids.pop(op.bulk_id or "", None)
            indexes = ", ".join(str(op.index) for op in unit)
            for result in results:
                result.resource_id, result.version = None, None
                result.status = 409
                result.error = Conflict(
                    f"Operations {indexes} refer to each other by bulkId in a circle that could "
                    f"not be resolved: {e.detail}"
                )
        for result in results:
            if result.error is None:
                self.uncommitted.append(result.operation.index)
            self._record(result)

    def _create_circle(
        self, unit: list[Operation], results: list[_Result], circle: set[str | None]
    ) -> None:
        deferred = []
        for op, result in zip(unit, results, strict=True):
            missing = frozenset(r for r in op.references if r in circle and r not in self.ids)
            data = bulk.resolved(op.data, self.ids, drop=missing)
            with audit.acting_for(result.change):
                row = self.batch.run(lambda op=op, data=data: self._write(op, None, data))
            self._succeeded_in_circle(result, row)
            if missing:
                deferred.append((op, result))
        for op, result in deferred:
            data = bulk.resolved(op.data, self.ids)
            replace = writes.replace_user if op.endpoint == "Users" else writes.replace_group
            with audit.acting_for(result.change):
                row = self.batch.run(
                    lambda id=result.resource_id, data=data, replace=replace: replace(
                        id, data, if_match=None
                    )
                )
            self._succeeded_in_circle(result, row)

    def _succeeded_in_circle(self, result: _Result, row: User | Group | None) -> None:
        assert row is not None and result.operation.bulk_id is not None
        result.resource_id = row.id
        result.version = etags.etag(row.version, row.tenant_id)
        self.ids[result.operation.bulk_id] = row.id

    # --- commits ------------------------------------------------------------------------------

    def _commit(self) -> None:
        self._write_deferred()
        self.batch.commit()
        self.uncommitted = []

    def _lost(self) -> None:
        """The database became unreachable: what the open chunk did is lost (503, as each
        operation's single request would be answered), and nothing more runs."""
        g.database_unavailable = True  # the audit then does not wait for it again
        with contextlib.suppress(*db.REQUEST_ERRORS):
            db.end_request(db.db.session)
        for index in self.uncommitted:
            result = self.results[index]
            result.status, result.error, result.version = 503, UNAVAILABLE, None
            if result.operation.method == "POST":
                result.resource_id = None
        self.uncommitted = []
