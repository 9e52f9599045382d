"""gunicorn settings for the SCIM service: `gunicorn -c gunicorn.conf.py wsgi:app`.

Read by scripts/serve, the Dockerfile and deploy/systemd/scim.service. Tuned by SCIM_BIND,
SCIM_WORKERS and SCIM_THREADS from the environment or .env; any other gunicorn setting can still
be given on the command line or in GUNICORN_CMD_ARGS, which win over this file.

Logs are JSON lines: one access line per request on stdout, everything else on stderr. The
master process never imports the application (so a HUP reload picks up new code); the workers
attach the request id to the application's log records once they have loaded it.

For scripts/serve: `python gunicorn.conf.py` exits with a message naming SCIM_BIND when its address
is taken (gunicorn itself retries for 5 s, then fails without naming the setting), and
SCIM_SERVE_BANNER=1 prints "SCIM service on http://..." once the first worker serves.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import logging
import mmap
import os
import select
import shutil
import socket
import sys
import tempfile
from datetime import UTC, datetime
from typing import Any

from dotenv import dotenv_values
from gunicorn import glogging
from gunicorn.workers.gthread import ThreadWorker

# The environment wins over .env, as in create_app(); read-only, so nothing leaks into os.environ.
_ENV = {
    **dotenv_values(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".env")),
    **os.environ,
}


def _int(name: str, default: int) -> int:
    raw = (_ENV.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


bind = [_ENV.get("SCIM_BIND") or "127.0.0.1:8000"]
# Measured against 4 x 2 (interleaved, 5 repeats, 8 connections; issue 16): as fast or faster
# for reads on both databases, with lower p99s, for half the memory; 4 x 2 wrote faster on
# SQLite only.
workers = _int("SCIM_WORKERS", 2)
threads = _int("SCIM_THREADS", 4)


class KeepAliveThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, answering a kept-alive connection's next request in the
    thread that answered its last one, when that request follows at once and no other
    connection is waiting for a thread.

    Stock gthread hands every request on a kept-alive connection back and forth: the thread
    answers it, wakes the main thread through a pipe, which puts the socket back in its poller,
    sees it readable, and queues it for a thread again. That round trip cost more than Flask
    itself: measured with a one-line Flask app on this repository's 2 x 4 workers, 0.65 ms of
    CPU a request against 0.34 ms here, and 1,520 against 2,810 requests/s on one connection
    (issue 16). IdPs and nginx's upstream pool send request after request on one connection,
    so that is the common case.

    Fair by construction: a thread keeps its connection only while the pool's queue is empty,
    so with more busy connections than threads each still gets its turn; it waits at most
    NEXT_REQUEST_WAIT_MS for the next request (a client on the same machine, nginx or a
    benchmark, sends it within a fraction of that), then leaves the connection to the poller
    as before; and it stops when the worker is stopping (`alive` false: the last answer said
    "Connection: close").
    """

    NEXT_REQUEST_WAIT_MS = 2

    def handle(self, conn: Any) -> Any:
        while True:
            keep_alive = super().handle(conn)
            if keep_alive is not True or not self.alive or self._others_waiting():
                return keep_alive  # to finish_request, on the main thread, as stock gthread
            if not self._next_request_arrives(conn):
                return keep_alive

    def _others_waiting(self) -> bool:
        # ThreadPoolExecutor's queue of submitted connections (a private attribute, stable
        # since Python 3.2; gunicorn is pinned in requirements.txt).
        return not self.tpool._work_queue.empty()

    def _next_request_arrives(self, conn: Any) -> bool:
        if conn.parser.unreader.buf.getvalue():
            return True  # read already, with the last request's body
        pending = getattr(conn.sock, "pending", None)  # TLS: decrypted, not seen by poll()
        if pending is not None and pending():
            return True
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(self.NEXT_REQUEST_WAIT_MS))

    # --- Connections spread evenly over the workers (see _connection_counts below) ----------

    # A worker this many connections above the least loaded other one is crowded.
    CROWDED_LEAD = 2

    @property
    def worker_connections(self) -> int:
        """gthread's loop accepts while nr_conns < worker_connections: a crowded worker says
        it is full, so that the others accept the next connections."""
        return self.nr_conns if self._crowded() else self._configured_connections

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._configured_connections = value

    # How soon a worker that stopped accepting because it was crowded looks again.
    CROWDED_RECHECK_SECONDS = 0.005

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # gthread's loop waits up to 1 s for an event, then decides again whether to accept.
        # The others' counts change without waking this worker: a worker that stopped accepting
        # when it was crowded, and no longer is, would leave a new connection waiting that long
        # (the 99th percentile of a PATCH was 657 ms, its median 23).
        if self.alive and not self._accepting and self.nr_conns < self._configured_connections:
            timeout = min(timeout, self.CROWDED_RECHECK_SECONDS)
        super().wait_for_and_dispatch_events(timeout)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if self._others_waiting() and self._crowded():
            # Answered with "Connection: close": the client connects again, to a worker that
            # accepts. Decided before the answer, which says so (a connection closed after an
            # answer that promised keep-alive races the client's next request on it). Only
            # while connections wait for a thread: otherwise the imbalance costs nothing, and
            # closing on counts alone made connections bounce between workers (257 reconnects
            # in 5 s of eight connections, against 10 so).
            req.must_close = True
        return super().handle_request(req, conn)

    def _crowded(self) -> bool:
        """Publish this worker's connection count; whether it is CROWDED_LEAD or more above the
        least loaded of the other workers. Racy reads of the others' counts are fine: at worst
        one connection too many or too few moves."""
        share = getattr(self, "connection_share", None)  # given by pre_fork, below
        if share is None:
            return False
        counts, slot = share
        counts[slot] = mine = self.nr_conns
        others = [n for i, n in enumerate(counts) if i != slot and n >= 0]
        return bool(others) and mine >= min(others) + self.CROWDED_LEAD


worker_class = KeepAliveThreadWorker

# A worker silent for `timeout` seconds is killed and replaced; on SIGTERM or a HUP reload, workers
# get `graceful_timeout` seconds to finish their requests (systemd's TimeoutStopSec is above it).
timeout = 30
graceful_timeout = 30
# Idle keep-alive connections (nginx's upstream pool) stay open longer than nginx keeps them
# (keepalive_timeout 60s in deploy/nginx/scim.conf), so it is always nginx that closes first.
keepalive = 75

# gunicorn 25+ otherwise opens a control socket in $XDG_RUNTIME_DIR or $HOME/.gunicorn.
control_socket_disable = True

# Only SCIM_PROXY_HOPS (Werkzeug's ProxyFix in create_app) decides whom to believe about the
# scheme; gunicorn would otherwise trust X-Forwarded-Proto from any local peer by itself.
secure_scheme_headers: dict[str, str] = {}

# The request line and header fields. gunicorn refuses what is over its limits with an HTML
# page, so behind a proxy (SCIM_PROXY_HOPS; gunicorn is then reachable by the proxy only) it
# takes whatever the proxy passes on, and the proxy refuses what is larger with a SCIM error:
# deploy/nginx/scim.conf's large_client_header_buffers 4 32k (a request line or a header line
# of up to 32 KiB, some 128 KiB in all). gunicorn has no request-line limit between 8,190 bytes
# and none (0); headers go up to 32,768 lines, 64 KiB a line leaving room for what nginx adds
# (X-Forwarded-For). Reached directly, gunicorn keeps bounds of its own, since unbounded a single
# connection could grow a worker's memory at will: its largest bounded request line, and its
# default 100 header lines of 8,190 bytes.
_HOPS = (_ENV.get("SCIM_PROXY_HOPS") or "").strip()  # app/config.py refuses a bad value
_BEHIND_PROXY = _HOPS.isdigit() and int(_HOPS) > 0
limit_request_line = 0 if _BEHIND_PROXY else 8190
limit_request_fields = 32768 if _BEHIND_PROXY else 100
limit_request_field_size = 65536 if _BEHIND_PROXY else 8190

accesslog = "-"
errorlog = "-"
loglevel = (_ENV.get("SCIM_LOG_LEVEL") or "info").lower()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _now(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (request_id := getattr(record, "request_id", None)) is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class JsonLogger(glogging.Logger):
    """gunicorn's logger with JSON lines: the access line carries no header but the user agent."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        response_headers = {name.lower(): value for name, value in resp.headers}
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        line = {
            "time": _now(),
            # Set by the app (app/requests.py): the caller's X-Request-ID, nginx's, or a new one.
            "request_id": response_headers.get("x-request-id"),
            # After ProxyFix, when SCIM_PROXY_HOPS trusts a proxy: the client, not the proxy.
            "remote_addr": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            # The path only: query strings carry filters, and filters carry user names.
            "path": environ.get("PATH_INFO"),
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        self.access_log.info(json.dumps(line, ensure_ascii=False))


logger_class = JsonLogger


def post_worker_init(worker: Any) -> None:
    """The application's log records, as JSON lines on stderr, with the request id; then the
    loaded application's objects kept out of the garbage collector's full passes."""
    from app.requests import RequestIdFilter  # loaded by this worker already

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    app_log = logging.getLogger("app")
    app_log.handlers[:] = [handler]
    app_log.setLevel(worker.cfg.loglevel.upper())  # SCIM_LOG_LEVEL, as for gunicorn
    app_log.propagate = False
    # scripts/serve's banner: the socket is bound and this, the first worker, has the app loaded.
    if os.environ.get("SCIM_SERVE_BANNER") and worker.age == 1:
        print(f"SCIM service on {worker.sockets[0]}/scim/v2 (Ctrl-C stops it)", flush=True)
    _freeze_loaded_objects()


def _freeze_loaded_objects() -> None:
    """Move every object alive now (the modules, the app, its schemas and statements: some
    135,000, none of them ever garbage) to the collector's permanent generation. Otherwise each
    full collection walks them all again: a pause of about 100 ms that stalls the worker's
    every thread, once every couple of thousand requests. The requests' own objects are
    collected as before."""
    gc.collect()  # what is garbage already goes now, not into the frozen set
    gc.freeze()


# Metrics (README, "Metrics"): with SCIM_METRICS_TOKEN_HASHES set, every worker writes its
# numbers to files in PROMETHEUS_MULTIPROC_DIR and a scrape answered by any worker sums them all.
# prometheus_client reads that variable when a worker imports it, so the master sets it before
# the first worker starts: a fresh directory for each run (or the one given, emptied), never one
# with a previous run's numbers in it. A dead worker's gauges go with it; its counts stay.
_METRICS_ON = bool((_ENV.get("SCIM_METRICS_TOKEN_HASHES") or "").strip())
_METRICS_DIR_PREFIX = "scim-metrics-"


def on_starting(server: Any) -> None:
    """Once, as the master starts (not on a HUP reload, whose workers keep adding to it)."""
    if not _METRICS_ON:
        return
    given = (_ENV.get("PROMETHEUS_MULTIPROC_DIR") or "").strip()
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):  # prometheus_client's files only
                os.remove(os.path.join(given, name))
    else:
        given = tempfile.mkdtemp(prefix=_METRICS_DIR_PREFIX)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = given  # inherited by every worker


# Connections spread evenly over the workers. A kept-alive connection stays with the worker that
# accepted it, and the workers accept in a race: eight connections opened at once to two workers
# landed 8/0, 7/1 or 6/2 in the e2e test (tests/e2e/test_keep_alive.py), and under wrk 5/3, 6/2
# or 7/1 in 5 of 9 runs, where the 99th percentile of a cheap read went from 2.3 times its
# median (4/4) to 4.6: one worker's threads queue for its GIL while the other's idle (issue 16).
# So each worker keeps its count of open connections in a slot of this shared memory (made here,
# in the master, and inherited by every worker it forks); a crowded worker
# (KeepAliveThreadWorker._crowded) stops accepting, and while connections wait for its threads it
# closes connections after their next answer, until it is crowded no more.
_CONNECTION_SLOTS = 64
_connection_memory = mmap.mmap(-1, ctypes.sizeof(ctypes.c_int) * _CONNECTION_SLOTS)
_connection_counts = (ctypes.c_int * _CONNECTION_SLOTS).from_buffer(_connection_memory)
_FREE, _BOOTING = -1, -2  # slot markers: no worker; a worker not yet serving, counted by none
_connection_counts[:] = [_FREE] * _CONNECTION_SLOTS


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, about to fork `worker`: give it a free slot for its connection count (a
    worker beyond the slots, none: it neither counts nor defers to the others). The slot counts
    once the worker serves: while it loads the application, the others must not stop accepting
    for it."""
    counts = _connection_counts
    slot = next((i for i in range(_CONNECTION_SLOTS) if counts[i] == _FREE), None)
    if slot is not None:
        counts[slot] = _BOOTING
        worker.connection_share = (counts, slot)  # this module's, even after a HUP reload


def child_exit(server: Any, worker: Any) -> None:
    """A worker ended (stopped, crashed or replaced): its slot is free again, and its
    connection-pool gauges no longer count."""
    if share := getattr(worker, "connection_share", None):
        counts, slot = share
        counts[slot] = _FREE
    if path := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)


def on_exit(server: Any) -> None:
    """Remove the directory on_starting made (one given is left, emptied at the next start)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    made = os.path.join(tempfile.gettempdir(), _METRICS_DIR_PREFIX)
    if path.startswith(made):
        shutil.rmtree(path, ignore_errors=True)


def bind_problem(address: str) -> str | None:
    """Why gunicorn could not listen on `address` now, naming SCIM_BIND; None when it can."""
    if address.startswith(("unix:", "fd://")):
        return None
    shown, _, port = address.rpartition(":")
    shown = shown or "0.0.0.0"
    host = shown.strip("[]")  # [::1]:8000
    if not port.isdigit():
        return f"SCIM_BIND must be host:port (127.0.0.1:8000), got {address!r}"
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            probe.bind(sockaddr)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return (
                f"Port {port} on {host} is already in use (another scripts/serve, or another "
                f"service). Stop that, or listen elsewhere: SCIM_BIND={shown}:{int(port) + 1} "
                "./scripts/serve (or set SCIM_BIND in .env)."
            )
        return f"Cannot listen on {address} (SCIM_BIND): {e.strerror or e}"
    return None


if __name__ == "__main__":
    if problem := bind_problem(bind[0]):
        raise SystemExit(problem)
