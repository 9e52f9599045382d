"""The push delivery worker, `flask events run`: every tenant's events to its push receivers,
as RFC 8935 says (a process apart from gunicorn's; the API only writes rows).

One round: for each enabled push receiver of an active tenant, a thread of the pool claims the
heads of its resources' queues (store/deliveries.py: at most one event per resource, so order
holds), signs each event's SET with the receiver's current key (app/sets.py), POSTs it as
`application/secevent+jwt`, and records the outcomes:

- 2xx (RFC 8935 §2.2 says 202): delivered.
- 400 with an `err` that no retry can fix (RFC 8935 §2.4 and §4: `invalid_request`,
  `invalid_key`, `invalid_issuer`, `invalid_audience`): dead at once.
- anything else (no answer, a timeout, a TLS certificate not trusted, 5xx, 429, 401, 403,
  404, `authentication_failed`, `access_denied`, which credentials or configuration put
  right): pending again after an exponential backoff with jitter, capped
  (SCIM_EVENTS_RETRY_BASE_SECONDS, SCIM_EVENTS_RETRY_MAX_SECONDS; a Retry-After is waited at
  least), and dead once the event is older than SCIM_EVENTS_MAX_AGE_SECONDS. The batch stops
  there and the receiver rests for the same delay: a receiver that is down costs one attempt
  per delay, not one per event.

Rounds run when a write NOTIFYs (PostgreSQL: store.deliveries.CHANNEL), when a batch comes back
full, and every poll interval otherwise (SQLite: 0.2 s). SIGTERM and SIGINT stop it gracefully:
no new batch starts, the batches under way stop before their next POST and record what they
did. On SQLite one worker runs: a second one refuses to start (the lock file beside the
database). On PostgreSQL any number run at once.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import logging
import os
import random
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any
from urllib.parse import urlsplit

import psycopg
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from app import sets, tenancy
from app.db import db, utcnow
from app.models import EventReceiver
from app.store import deliveries, events

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/secevent+jwt"  # RFC 8417 §2.3, RFC 8935 §2
# RFC 8935 §4: "invalid_request indicates a structural error ... likely to remain when
# retransmitting the same SET"; a key, issuer or audience the receiver refuses stays refused
# for this SET. authentication_failed and access_denied may be transient (credentials renewed).
NOT_RETRYABLE = frozenset({"invalid_request", "invalid_key", "invalid_issuer", "invalid_audience"})
BATCH = 100  # deliveries claimed per receiver and round
RECEIVERS_TTL = 5.0  # seconds the list of receivers is reused before it is read again
OUTAGE_PAUSE = 1.0  # seconds a receiver rests after its database work failed


class AlreadyRunning(RuntimeError):
    """Another worker holds the SQLite database's worker lock."""


@dataclass(frozen=True)
class Settings:
    issuer: str  # the SETs' iss
    base_url: str  # the SCIM base URL: `:full` events' links are made absolute with it
    timeout: float  # seconds for one POST: connect, send, answer
    retry_base: float
    retry_max: float
    max_age: timedelta
    poll_interval: float  # seconds between rounds when nothing wakes the worker
    threads: int  # receivers served at once

    @classmethod
    def from_config(cls, config: Any, *, postgresql: bool) -> Settings:
        base_url = config["SCIM_BASE_URL"]
        issuer = config["SCIM_EVENTS_ISSUER"] or base_url
        if not base_url:
            raise ValueError(
                "set SCIM_BASE_URL, the external URL of /scim/v2: the worker has no request to "
                "learn it from, and the SETs' iss and links are made from it"
            )
        return cls(
            issuer=issuer,
            base_url=base_url,
            timeout=config["SCIM_EVENTS_PUSH_TIMEOUT_SECONDS"],
            retry_base=config["SCIM_EVENTS_RETRY_BASE_SECONDS"],
            retry_max=config["SCIM_EVENTS_RETRY_MAX_SECONDS"],
            max_age=timedelta(seconds=config["SCIM_EVENTS_MAX_AGE_SECONDS"]),
            # PostgreSQL wakes the worker on each write: the interval is only a fallback.
            poll_interval=1.0 if postgresql else 0.2,
            threads=config["SCIM_EVENTS_WORKER_THREADS"],
        )


@dataclass(frozen=True)
class Answer:
    """What a POST came to: delivered, given up (dead), or to be tried again after a delay."""

    state: str  # delivered, dead, retry
    error: str | None = None
    retry_after: float = 0.0  # the receiver's Retry-After, seconds


def classify(status: int, body: bytes, headers: http.client.HTTPMessage) -> Answer:
    """RFC 8935 §2.2-2.4: an HTTP answer to a pushed SET, as an outcome."""
    if 200 <= status < 300:
        return Answer("delivered")
    err, description = _error_body(body)
    text = (
        f"HTTP {status}" + (f" {err}" if err else "") + (f": {description}" if description else "")
    )
    if status == 400 and err in NOT_RETRYABLE:
        return Answer("dead", text)
    retry_after = headers.get("Retry-After", "")
    return Answer("retry", text, float(retry_after) if retry_after.isdigit() else 0.0)


def _error_body(body: bytes) -> tuple[str | None, str | None]:
    """RFC 8935 §2.3's {"err": ..., "description": ...}, when that is what came back."""
    try:
        parsed = json.loads(body[:4096])
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("err"), str):
        return None, None
    description = parsed.get("description")
    return parsed["err"][:64], description[:300] if isinstance(description, str) else None


def failure(e: OSError | http.client.HTTPException) -> str:
    """A POST's failure as the operator reads it in `flask events status`: what to fix, without
    OpenSSL's source locations."""
    if isinstance(e, ssl.SSLCertVerificationError):
        # e.g. "self-signed certificate", "unable to get local issuer certificate" (a CA the
        # worker does not trust: docs/events.md, SSL_CERT_FILE), "Hostname mismatch, ..."
        return f"TLS: certificate verify failed: {(e.verify_message or '').rstrip('.')}"
    if isinstance(e, ssl.SSLError):
        # "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)": an http endpoint
        # behind an https URL, say.
        text = re.sub(r"^\[SSL: \w+\] | \(_ssl\.c:\d+\)$", "", str(e.args[-1]))
        return f"TLS: {text}"
    if isinstance(e, socket.gaierror):
        return f"DNS: the receiver's host name does not resolve ({e.strerror or e})"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused: nothing listens at the receiver's address and port"
    if isinstance(e, TimeoutError):
        return "timed out: no answer within SCIM_EVENTS_PUSH_TIMEOUT_SECONDS"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling from the base, capped,
    with jitter (a random point in the upper half, so that receivers coming back are not hit
    by every worker and event at once)."""
    delay = min(settings.retry_max, settings.retry_base * 2 ** min(attempts - 1, 30))
    return random.uniform(delay / 2, delay)


class Pusher:
    """POSTs SETs to one receiver over a kept-alive connection (used by one thread at a time)."""

    def __init__(self, url: str, authorization: str | None, timeout: float):
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {"Content-Type": MEDIA_TYPE, "Accept": "application/json"}
        if authorization:
            self.headers["Authorization"] = authorization  # RFC 8935 §2: as the receiver asks
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None

    def post(self, token: str) -> Answer:
        reused = self.connection is not None
        try:
            return self._post(token)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            if reused and isinstance(e, http.client.RemoteDisconnected | ConnectionResetError):
                # The receiver closed the kept-alive connection meanwhile: once more, afresh.
                try:
                    return self._post(token)
                except (OSError, http.client.HTTPException) as again:
                    self.close()
                    e = again
            return Answer("retry", failure(e)[:300])

    def _post(self, token: str) -> Answer:
        if self.connection is None:
            if self.https:
                context = ssl.create_default_context()
                self.connection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                self.connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout
                )
        self.connection.request("POST", self.path, body=token.encode(), headers=self.headers)
        response = self.connection.getresponse()
        body = response.read(65536)
        if response.will_close or not response.isclosed():
            self.close()  # closing, or a body larger than we read: no reuse
        return classify(response.status, body, response.headers)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class Worker:
    """The delivery loop (see the module's docstring); `run()` until `stop()`."""

    def __init__(self, app: Flask, settings: Settings):
        self.app = app
        self.settings = settings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pushers: dict[str, Pusher] = {}
        self._resting: dict[str, float] = {}  # receiver id -> monotonic time it may be tried
        self._receivers: list[EventReceiver] = []
        self._receivers_read = -RECEIVERS_TTL
        self._lock_file: IO[str] | None = None
        self.delivered = 0  # counts, for the log line at the end and the tests
        self.failed = 0

    # -- lifecycle --

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Deliver until stopped (SIGTERM, SIGINT, stop(), or `until()` true after a round)."""
        with self.app.app_context():
            postgresql = deliveries.is_postgresql()
            if not postgresql:
                self._lock_sqlite(deliveries.database_file())
        listener = None
        if postgresql:
            listener = threading.Thread(target=self._listen, name="events-listen", daemon=True)
            listener.start()
        pool = ThreadPoolExecutor(self.settings.threads, thread_name_prefix="events-push")
        running: dict[str, Future[bool]] = {}
        try:
            while not self._stop.is_set():
                more = False
                for receiver_id, future in list(running.items()):
                    if future.done():
                        del running[receiver_id]
                        more |= future.result()
                for receiver in self._current_receivers():
                    if receiver.id in running or self._resting.get(receiver.id, 0) > _now():
                        continue
                    future = pool.submit(self._serve, receiver)
                    future.add_done_callback(lambda _: self._wake.set())
                    running[receiver.id] = future
                if until is not None and not running and until():
                    break
                if not more:
                    self._wake.wait(self.settings.poll_interval)
                self._wake.clear()
        finally:
            self._stop.set()
            pool.shutdown(wait=True)  # the batches under way record what they did
            for pusher in self._pushers.values():
                pusher.close()
            if self._lock_file is not None:
                self._lock_file.close()
            log.info("events worker stopped: %d delivered, %d failed", self.delivered, self.failed)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def stop_on_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def _lock_sqlite(self, database: str | None) -> None:
        """One worker per SQLite database: two would claim the same rows (no row locks)."""
        if database is None:
            return
        path = os.path.abspath(database) + ".events-worker.lock"
        lock_file = open(path, "a")  # held for the worker's life
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise AlreadyRunning(
                f"another `flask events run` is delivering this SQLite database's events (it "
                f"holds {os.path.basename(path)}): on SQLite one worker runs at a time; "
                "PostgreSQL takes several"
            ) from None
        self._lock_file = lock_file  # the kernel releases it when the process ends, kill -9 too

    def _listen(self) -> None:
        """PostgreSQL: wake a round on every NOTIFY; reconnect after an outage."""
        while not self._stop.is_set():
            try:
                with self.app.app_context(), deliveries.listening() as connection:
                    self._wake.set()  # anything written while we were not listening
                    while not self._stop.is_set():
                        if deliveries.wait(connection, 1.0):
                            self._wake.set()
            except (SQLAlchemyError, psycopg.Error) as e:  # an outage: poll until it is over
                log.warning("events worker: LISTEN failed (%s); polling meanwhile", e)
                self._stop.wait(OUTAGE_PAUSE)

    def _current_receivers(self) -> list[EventReceiver]:
        if _now() - self._receivers_read < RECEIVERS_TTL:
            return self._receivers
        try:
            with self.app.app_context():
                self._receivers = deliveries.push_receivers()
            self._receivers_read = _now()
        except SQLAlchemyError as e:  # an outage: keep the last list, try again soon
            log.warning("events worker: cannot read the receivers (%s)", e)
            self._receivers_read = _now() - RECEIVERS_TTL + OUTAGE_PAUSE
        return self._receivers

    # -- one receiver's batch --

    def _serve(self, receiver: EventReceiver) -> bool:
        """Deliver one batch to a receiver; whether more may be due at once."""
        try:
            with self.app.app_context(), tenancy.entered(receiver.tenant_id):
                try:
                    return self._batch(receiver)
                finally:
                    db.session.remove()  # this thread's app context's session
        except SQLAlchemyError as e:  # an outage: rest, then try again
            log.warning("events worker: receiver %s: %s", receiver.name, e)
            self._resting[receiver.id] = _now() + OUTAGE_PAUSE
            return False
        except Exception:
            # A bug, never the receiver's doing: logged with its trace, and the worker goes on
            # with the other receivers (this one rests) rather than stopping every delivery.
            log.exception("events worker: receiver %s", receiver.name)
            self._resting[receiver.id] = _now() + OUTAGE_PAUSE
            return False

    def _batch(self, receiver: EventReceiver) -> bool:
        keys = events.signing_keys(receiver.id)  # read first: the claim ends SQLite's read
        claimed = deliveries.claim(receiver, BATCH)
        if not claimed:
            deliveries.release()
            return False
        pusher = self._pushers.get(receiver.id)
        if pusher is None or pusher.timeout != self.settings.timeout:
            pusher = self._pushers[receiver.id] = Pusher(
                receiver.url or "", receiver.push_authorization, self.settings.timeout
            )
        outcomes: list[deliveries.Outcome] = []
        stopped = False
        for item in claimed:
            now = utcnow()
            if stopped or self._stop.is_set():
                outcomes.append(deliveries.Outcome(item.event.id, "pending", now, attempted=False))
                continue
            token = (
                sets.build(
                    item.event,
                    receiver,
                    keys[0],
                    issuer=self.settings.issuer,
                    base_url=self.settings.base_url,
                )
                if keys
                else None
            )
            if token is None:
                error = "not subscribed to any of its events" if keys else "no signing key"
                outcomes.append(deliveries.Outcome(item.event.id, "dead", now, error=error))
                continue
            answer = pusher.post(token)
            outcome = self._outcome(item, answer, utcnow())
            outcomes.append(outcome)
            if outcome.state == "delivered":
                self.delivered += 1
                continue
            self.failed += 1
            log.warning(
                "events worker: %s %s for receiver %s (%s): %s",
                "gave up" if outcome.state == "dead" else "will retry",
                item.event.jti,
                receiver.name,
                receiver.url,
                answer.error,
            )
            if answer.state == "retry":
                # The receiver is unwell: leave the rest of the batch for when it has rested.
                pause = (outcome.next_attempt_at or now) - utcnow()
                self._resting[receiver.id] = _now() + max(0.0, pause.total_seconds())
                stopped = True
        deliveries.settle(receiver, {item.event.id: item.attempts for item in claimed}, outcomes)
        return len(claimed) == BATCH and not stopped

    def _outcome(
        self, item: deliveries.Claimed, answer: Answer, now: datetime
    ) -> deliveries.Outcome:
        event_id = item.event.id
        if answer.state == "delivered":
            return deliveries.Outcome(event_id, "delivered", now)
        if answer.state == "dead":
            return deliveries.Outcome(event_id, "dead", now, error=answer.error)
        given_up_at = item.created_at + self.settings.max_age
        if now >= given_up_at:
            error = f"{answer.error} (gave up after {self.settings.max_age}; last error)"
            return deliveries.Outcome(event_id, "dead", now, error=error)
        delay = max(backoff(item.attempts + 1, self.settings), answer.retry_after)
        next_at = min(now + timedelta(seconds=delay), given_up_at)
        return deliveries.Outcome(
            event_id, "pending", now, next_attempt_at=next_at, error=answer.error
        )


def _now() -> float:
    return time.monotonic()
