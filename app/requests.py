"""Per-request plumbing outside SCIM itself: the request id, and refusing plain HTTP when asked."""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, current_app, g, has_request_context, request

from app.errors import Forbidden

HEADER = "X-Request-ID"
# Visible ASCII only, so an id taken from a caller is safe in a response header and a log line;
# long enough for a UUID, nginx's $request_id, or a trace header such as AWS's X-Amzn-Trace-Id.
_ACCEPTABLE = re.compile(r"[\x21-\x7e]{1,128}")
_EXEMPT_BLUEPRINTS = {"health"}  # probes from the load balancer or orchestrator may use plain HTTP


def init_app(app: Flask) -> None:
    """Wire the hooks; the request id is assigned first, so even a refusal carries it."""
    app.before_request(_assign_request_id)
    app.before_request(_require_https)
    app.after_request(_echo_request_id)


def request_id() -> str | None:
    """The current request's id, or None outside a request."""
    if not has_request_context():
        return None
    return g.get("request_id")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record logged while a request is handled (None otherwise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id()
        return True


def _assign_request_id() -> None:
    presented = request.headers.get(HEADER, "")
    g.request_id = presented if _ACCEPTABLE.fullmatch(presented) else uuid.uuid4().hex


def _require_https() -> None:
    # request.scheme is what ProxyFix made of X-Forwarded-Proto (SCIM_PROXY_HOPS), or the
    # listener's own scheme; gunicorn.conf.py stops gunicorn from interpreting it by itself.
    if not current_app.config["SCIM_REQUIRE_HTTPS"] or request.scheme == "https":
        return
    if request.blueprint in _EXEMPT_BLUEPRINTS:
        return
    raise Forbidden("HTTPS is required: send SCIM requests to the https:// URL of this service")


def _echo_request_id(response: Response) -> Response:
    if rid := request_id():
        response.headers[HEADER] = rid
    return response
