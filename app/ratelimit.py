"""Rate limits per token (Flask-Limiter): one budget per token across all SCIM routes, and
optionally one per tenant (SCIM_RATE_LIMIT_PER_TENANT) that all its tokens share.

The key is the caller's tenant and token name (`g.caller`, set by auth.identify just before;
two tenants may name their tokens alike), or its remote address when it presents no valid
token, so that guessing tokens is limited too. Only
/scim/v2 counts (its routes, and paths there that match none); the probes never do. A refusal
is a SCIM 429 error with Retry-After. The default (config.DEFAULT_RATE_LIMIT) never refuses an
IdP that behaves: Entra retries a 429 only in its next cycle, some 40 minutes later.

Storage is in-process by default (memory://, counted by WindowStorage below): each gunicorn
worker counts on its own, so a token may send up to workers x instances x the limit.
SCIM_RATE_LIMIT_STORAGE_URI naming a Redis makes every worker of every instance share one
count. If that Redis is unreachable, requests are let through (and the failure logged):
provisioning matters more than the limit.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter, RequestLimit
from limits.storage import MemoryStorage

from app import auth


def init_app(app: Flask) -> None:
    """Must run after auth.init_app, so that the caller is identified when the limit counts."""
    config = app.config
    limits = []
    if config["SCIM_RATE_LIMIT"]:
        limits.append(ApplicationLimit(config["SCIM_RATE_LIMIT"], key_function=_key))
    if config["SCIM_RATE_LIMIT_PER_TENANT"]:
        limits.append(
            ApplicationLimit(
                config["SCIM_RATE_LIMIT_PER_TENANT"],
                key_function=_tenant_key,
                exempt_when=lambda: g.get("caller") is None,  # no tenant: the address limit
                scope="tenant",
                on_breach=_too_many_for_tenant,
            )
        )
    if not limits:
        return
    limiter = Limiter(
        key_func=_key,
        request_identifier=_endpoint,
        application_limits=limits,
        storage_uri=_storage_uri(config["SCIM_RATE_LIMIT_STORAGE_URI"]),
        key_prefix=config["SCIM_RATE_LIMIT_KEY_PREFIX"],
        # Exactly the last window's requests: no doubled burst at a fixed window's edge, and
        # no refusal once a burst is older than the window (a sliding counter only estimates).
        strategy="moving-window",
        headers_enabled=False,  # Retry-After on 429s only (on_breach), not on every response
        swallow_errors=True,
        on_breach=_too_many,
    )
    limiter.request_filter(_exempt)
    limiter.init_app(app)
    app.extensions["scim_limiter"] = limiter


def _storage_uri(configured: str) -> str:
    """memory:// counts in WindowStorage below; a Redis URI as given."""
    return f"{WindowStorage.STORAGE_SCHEME[0]}://" if configured == "memory://" else configured


class WindowStorage(MemoryStorage):
    """limits' in-process storage, with the moving window kept as a deque of times per key.

    limits' own keeps each key's window as a list it grows at the front (a copy of the whole
    window per request) and prunes from a timer thread it starts again every 10 ms while
    requests come: at a few hundred requests a second that cost more than a user lookup. Here
    a request appends its time and drops the times that left the window, both at the ends of
    a deque; keys idle for a window are swept inline, at most once a minute, without a thread.
    Same answers: a request is allowed while fewer than `limit` others came within `expiry`
    seconds. Registered with limits by its scheme (limits' storage registry).
    """

    STORAGE_SCHEME = ["scim-memory"]  # limits finds the class by this scheme
    SWEEP_SECONDS = 60.0

    def __init__(self, uri: str | None = None, **options: str) -> None:
        super().__init__(uri, **options)
        self._windows: dict[str, deque[float]] = {}
        self._expiries: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.time() + self.SWEEP_SECONDS

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = deque()
                self._expiries[key] = expiry
            _drop_before(window, now - expiry)
            if len(window) + amount > limit:
                return False
            window.extend([now] * amount)
            if now >= self._next_sweep:
                self._sweep(now)
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(when the oldest request still in the window came, how many are in it)."""
        now = time.time()
        with self._lock:
            window = self._windows.get(key)
            if not window:
                return now, 0
            _drop_before(window, now - expiry)
            return (window[0], len(window)) if window else (now, 0)

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)
            self._expiries.pop(key, None)
        super().clear(key)

    def reset(self) -> int | None:
        with self._lock:
            held = len(self._windows)
            self._windows.clear()
            self._expiries.clear()
        return max(held, super().reset() or 0)

    def _sweep(self, now: float) -> None:
        """Forget keys whose every request left the window (addresses that guessed once)."""
        for key, window in list(self._windows.items()):
            _drop_before(window, now - self._expiries[key])
            if not window:
                del self._windows[key], self._expiries[key]
        self._next_sweep = now + self.SWEEP_SECONDS


def _drop_before(window: deque[float], cutoff: float) -> None:
    while window and window[0] <= cutoff:
        window.popleft()


def _key() -> str:
    if caller := g.get("caller"):
        return f"token:{caller.tenant_id}:{caller.token_name}"
    return f"address:{request.remote_addr or 'unknown'}"


def _tenant_key() -> str:
    return f"tenant:{g.caller.tenant_id}"


def _endpoint() -> str:
    # Flask-Limiter counts no request without an endpoint; a /scim/v2 path that matches no route
    # has none, and must count all the same (a caller could guess tokens there).
    if request.endpoint is None and auth.is_scim_request():
        return "scim.no_route"
    return request.endpoint or ""


def _exempt() -> bool:
    return not auth.is_scim_request()


def _too_many_for_tenant(limit: RequestLimit) -> Response:
    g.rate_limited_tenant = True  # the 429's detail says whose budget ran out
    return _too_many(limit)


def _too_many(limit: RequestLimit) -> Response:
    """The 429 response; protocol.py's handler gives it the SCIM error body."""
    retry_after = max(1, int(limit.reset_at - time.time()))  # reset_at is rounded up already
    return Response(status=429, headers={"Retry-After": str(retry_after)})
