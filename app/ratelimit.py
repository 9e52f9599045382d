"""Rate limits per token: one budget per token across all SCIM routes, and optionally one per
tenant (SCIM_RATE_LIMIT_PER_TENANT) that all its tokens share. Counted by the `limits` library
(moving window), from one before_request hook of ours.

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

Flask-Limiter did this before; its bookkeeping per request (decorated, default and meta
limits, a context per request, none of which we use) cost 0.1 to 0.4 ms of CPU, the check here
under 0.01 ms. The keys in the storage are the ones it made
(LIMITER/<prefix>/<key>/<scope>/<amount>/<multiples>/<unit>), so counts in a
shared Redis carry over.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from app import auth

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Must run after auth.init_app, so that the caller is identified when the limit counts."""
    config = app.config
    budgets = [Budget(item, "global") for item in _items(config["SCIM_RATE_LIMIT"])]
    budgets += [Budget(item, "tenant") for item in _items(config["SCIM_RATE_LIMIT_PER_TENANT"])]
    if not budgets:
        return
    limiter = Limiter(
        storage_from_string(_storage_uri(config["SCIM_RATE_LIMIT_STORAGE_URI"])),
        # The shortest window first (a stable sort: per token before per tenant), as
        # Flask-Limiter checked them; the first refusal stops the count.
        sorted(budgets, key=lambda budget: budget.item.GRANULARITY.seconds),
        config["SCIM_RATE_LIMIT_KEY_PREFIX"],
    )
    app.before_request(limiter.check)
    app.extensions["scim_limiter"] = limiter


@dataclass(frozen=True)
class Budget:
    item: RateLimitItem
    # "global": per caller (token, or address); "tenant": per tenant of the token. Part of the
    # key, as Flask-Limiter's scopes were.
    scope: str


class Limiter:
    """The budgets (shortest window first) and the storage that counts them."""

    def __init__(self, storage: Storage, budgets: list[Budget], prefix: str) -> None:
        self.storage = storage
        # Exactly the last window's requests: no doubled burst at a fixed window's edge, and
        # no refusal once a burst is older than the window (a sliding counter only estimates).
        self._window = MovingWindowRateLimiter(storage)
        self._budgets = budgets
        self._prefix = prefix

    def check(self) -> None:
        """before_request: count a SCIM request; past a budget, a 429 with Retry-After."""
        if auth.is_scim_request():
            self.count(1)

    def count(self, cost: int) -> None:
        """Count `cost` requests of this caller at once, all or none in each budget; past a
        budget, a 429 with Retry-After (nothing of that budget spent)."""
        caller = g.get("caller")
        for budget in self._budgets:
            if budget.scope == "global":
                key = f"token:{caller.tenant_id}:{caller.token_name}" if caller else _address()
            elif caller is not None:
                key = f"tenant:{caller.tenant_id}"
            else:
                continue  # no tenant: the address limit is the one that counts
            identifiers = (self._prefix, key, budget.scope)
            try:
                if self._window.hit(budget.item, *identifiers, cost=cost):
                    continue
                # When the window's oldest request leaves it, and frees a place.
                frees_at = self._window.get_window_stats(budget.item, *identifiers).reset_time
            except self.storage.base_exceptions as e:
                log.warning(
                    "rate limit not counted (storage unreachable), request let through: %s", e
                )
                return
            if budget.scope == "tenant":
                g.rate_limited_tenant = True  # the 429's detail says whose budget ran out
            # protocol.py's handler gives it the SCIM error body.
            raise TooManyRequests(retry_after=max(1, math.ceil(frees_at - time.time())))


def charge(operations: int) -> None:
    """Count a Bulk request's operations as the requests they stand for, before any runs: the
    Bulk request itself was counted as the first (check), so `operations - 1` more. A Bulk whose
    operations exceed what the budget has left is refused whole, with a 429 (README, "Rate
    limits")."""
    limiter: Limiter | None = current_app.extensions.get("scim_limiter")
    if limiter is not None and operations > 1:
        limiter.count(operations - 1)


def _items(limit: str) -> list[RateLimitItem]:
    return parse_many(limit) if limit else []


def _address() -> str:
    return f"address:{request.remote_addr or 'unknown'}"


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
