"""SCIM errors (RFC 7644 §3.12): raised where a problem is found, rendered once in protocol.py."""

from __future__ import annotations


class ScimError(Exception):
    status = 400
    scim_type: str | None = None

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class InvalidFilter(ScimError):
    scim_type = "invalidFilter"


class InvalidSyntax(ScimError):
    scim_type = "invalidSyntax"


class InvalidPath(ScimError):
    scim_type = "invalidPath"


class NoTarget(ScimError):
    scim_type = "noTarget"


class InvalidValue(ScimError):
    scim_type = "invalidValue"


class Mutability(ScimError):
    scim_type = "mutability"


class Uniqueness(ScimError):
    status = 409
    scim_type = "uniqueness"


class Unauthorized(ScimError):
    status = 401


class Forbidden(ScimError):
    status = 403


class NotFound(ScimError):
    status = 404


class PreconditionFailed(ScimError):
    status = 412


class TooLarge(ScimError):
    """A request beyond a size the service declares (RFC 7644 §3.7.4: a Bulk request's
    maxOperations or maxPayloadSize); the detail names the limit."""

    status = 413


class UnsupportedMediaType(ScimError):
    status = 415


class Conflict(ScimError):
    """A write lost a race it could not retry its way out of."""

    status = 409


class NotSupported(ScimError):
    """A SCIM feature this service provider does not offer (RFC 7644 §3.12: 501 Not Implemented)."""

    status = 501


class ServiceUnavailable(ScimError):
    """A dependency (the database) is unreachable; callers should retry after Retry-After."""

    status = 503
