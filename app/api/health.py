"""Liveness and readiness probes, outside /scim/v2 and without a token: they reveal nothing.

`/healthz` says the process answers; `/readyz` says it can also reach its database. Neither names
a version, a host or an error message: an anonymous caller learns only "ok" or "not ready".
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from app.errors import ServiceUnavailable
from app.store import maintenance

RETRY_AFTER_SECONDS = 5

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> Response:
    return _ok()


@bp.get("/readyz")
def readyz() -> Response:
    failure = maintenance.unreachable()
    if failure:
        # The operator gets the cause in the log; the caller only the fact.
        log.warning("readiness check failed: %s", failure)
        raise ServiceUnavailable(
            "The service cannot reach its database",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    return _ok()


def _ok() -> Response:
    response = jsonify(status="ok")
    response.headers["Cache-Control"] = "no-store"  # a cached "ok" would hide an outage
    return response
