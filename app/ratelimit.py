"""Rate limits per token (Flask-Limiter): one budget per token across all SCIM routes, and
optionally one per tenant (SCIM_RATE_LIMIT_PER_TENANT) that all its tokens share.

The key is the caller's tenant and token name (`g.caller`, set by auth.identify just before;
two tenants may name their tokens alike), or its remote address when it presents no valid
token, so that guessing tokens is limited too. Only
/scim/v2 counts (its routes, and paths there that match none); the probes never do. A refusal
is a SCIM 429 error with Retry-After. The default (config.DEFAULT_RATE_LIMIT) never refuses an
IdP that behaves: Entra retries a 429 only in its next cycle, some 40 minutes later.

Storage is in-process by default (memory://): each gunicorn worker counts on its own, so a token
may send up to workers x instances x the limit. SCIM_RATE_LIMIT_STORAGE_URI naming a Redis makes
every worker of every instance share one count. If that Redis is unreachable, requests are let
through (and the failure logged): provisioning matters more than the limit.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter, RequestLimit

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
        storage_uri=config["SCIM_RATE_LIMIT_STORAGE_URI"],
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
