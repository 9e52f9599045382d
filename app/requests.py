"""Per-request plumbing outside SCIM itself: the request id, refusing plain HTTP when asked, and
holding a body sent without Content-Length to the size limit."""

from __future__ import annotations

import io
import logging
import re
import uuid
from typing import IO

from flask import Flask, Response, current_app, g, has_request_context, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.errors import Forbidden

HEADER = "X-Request-ID"
# Visible ASCII only, so an id taken from a caller is safe in a response header and a log line;
# long enough for a UUID, nginx's $request_id, or a trace header such as AWS's X-Amzn-Trace-Id.
_ACCEPTABLE = re.compile(r"[\x21-\x7e]{1,128}")
# Probes from the load balancer or orchestrator, and Prometheus scraping a worker on the private
# network (GET /metrics, behind its own token), may use plain HTTP.
_EXEMPT_BLUEPRINTS = {"health", "metrics"}


def init_app(app: Flask) -> None:
    """Wire the hooks; the request id is assigned first, so even a refusal carries it."""
    app.before_request(_hold_streamed_body_to_the_limit)  # refuses nothing; before any read
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


class StreamedBody(io.RawIOBase):
    """wsgi.input of a body sent without Content-Length (Transfer-Encoding: chunked) that raises
    413 once the body proves longer than `limit` bytes, instead of ending there.

    gunicorn hands such a body over whole and sets wsgi.input_terminated; Werkzeug 3.1 then reads
    at most MAX_CONTENT_LENGTH bytes of it (LimitedStream with is_max) and stops at that point
    without asking for more, so a longer body was cut at the limit and its rest ignored: a
    valid-JSON prefix was served. Here the byte after the limit is asked for too.
    """

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = b""
        if self._read <= self._limit:  # once refused, nothing more is read
            data = self._stream.read(len(buffer))
            self._read += len(data)
            if self._read == self._limit:
                self._read += len(self._stream.read(1))  # is there a byte after the limit?
        if self._read > self._limit:
            raise RequestEntityTooLarge()  # rendered as the SCIM 413, as for a Content-Length
        buffer[: len(data)] = data
        return len(data)


def _hold_streamed_body_to_the_limit() -> None:
    limit = request.max_content_length
    # With a Content-Length, Werkzeug compares it with the limit before reading; without
    # wsgi.input_terminated, it reads no body at all (the server cannot say where it ends).
    if limit is None or request.content_length is not None:
        return
    if "wsgi.input_terminated" in request.environ:  # as Werkzeug tests it
        request.environ["wsgi.input"] = StreamedBody(request.environ["wsgi.input"], limit)


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
