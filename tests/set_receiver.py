"""A push receiver (RFC 8935) the tests control: a threaded HTTP server on a free port that
records every SET it is sent and answers what the test scripts (202 by default)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt


@dataclass(frozen=True)
class Received:
    token: str
    headers: dict[str, str]

    @property
    def claims(self) -> dict[str, Any]:
        """Unverified: for bookkeeping; tests verify signatures against the JWKS apart."""
        return jwt.decode(self.token, options={"verify_signature": False})


@dataclass
class Receiver:
    url: str
    # (status, JSON body or None) for each request; None: 202 with no body.
    answer: Callable[[Received], tuple[int, dict[str, Any] | None]] = lambda _: (202, None)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def jtis(self) -> list[str]:
        with self.lock:
            return [r.claims["jti"] for r in self.received]

    def wait_for(self, done: Callable[[], bool], seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("the receiver did not get what the test waited for")
            time.sleep(0.02)


@contextmanager
def running(path: str = "/events") -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got = Received(body.decode(), {k: v for k, v in self.headers.items()})
            with receiver.lock:
                receiver.received.append(got)
            status, answer = receiver.answer(got)
            data = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_port}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
