"""GET /metrics: Prometheus' scrape, outside /scim/v2, behind a token of its own.

Registered only when SCIM_METRICS_TOKEN_HASHES is set (404 otherwise). Neither rate limited nor
audited: it is no SCIM request (app/ratelimit.py and app/audit.py count /scim/v2 only).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from app import auth, metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    auth.require_metrics_token()
    body, content_type = metrics.of(current_app).exposition(request.headers.get("Accept"))
    response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response
