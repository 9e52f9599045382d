"""The application factory: configuration, database, blueprints and error handlers."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from dotenv import load_dotenv
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import api, audit, auth, cli, console, metrics, protocol, ratelimit, requests
from app.api import events as events_view
from app.api import health
from app.api import metrics as metrics_view
from app.config import ConfigError, load_config
from app.db import db, end_request, migrate
from app.schema import extensions
from app.schema.core import Registry, build_registry

# scope registers the tenant scope on sessions; search_backlog, SQLite's search fold on commits.
from app.store import rls, scope, search_backlog  # noqa: F401


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """Build the service from environment-style settings; None means os.environ plus .env."""
    if env is None:
        load_dotenv()
        env = os.environ
    app = _Service(__name__, static_folder=None)  # an API serves no static files
    app.config.from_mapping(load_config(env))
    app.extensions["scim_registry"] = _registry(app.config["SCIM_SCHEMA_EXTENSIONS"])
    os.makedirs(app.instance_path, exist_ok=True)  # relative SQLite paths live in instance/
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    metrics.init_app(app)  # first: its clock starts before any other hook, stops after them
    audit.init_app(app)  # its clock starts before anything can refuse the request
    requests.init_app(app)  # request id, then SCIM_REQUIRE_HTTPS: before the bearer check
    auth.init_app(app)  # who is calling (g.token_name), for the rate limit and the audit
    ratelimit.init_app(app)  # per token; refuses before the bearer check
    app.register_blueprint(health.bp)  # /healthz, /readyz: outside /scim/v2, no token
    if app.config["SCIM_METRICS_TOKEN_HASHES"]:
        app.register_blueprint(metrics_view.bp)  # /metrics: outside /scim/v2, its own token
    app.register_blueprint(api.scim)
    app.register_blueprint(events_view.bp)  # /events/receivers/...: receivers' own, no SCIM token
    console.init_app(app)  # /console/ and `flask console`; off until an admin password is set
    # A request that failed part-way must leave nothing behind: store functions commit once, at
    # the end, and whatever a failed request had flushed is discarded here.
    app.teardown_request(lambda _error: end_request(db.session))
    protocol.register_error_handlers(app)
    cli.init_app(app)  # flask tenants ..., flask tokens ..., flask purge, flask stats
    rls.start_check(app)  # PostgreSQL: warns, in the background, if its role skips RLS
    if hops := app.config["SCIM_PROXY_HOPS"]:  # only behind a proxy we know about
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]
    app.remember_hooks()  # last: every hook and view is registered
    return app


class _Service(Flask):
    """Flask, asking once per hook and view whether it is a coroutine function.

    Flask asks it (inspect.iscoroutinefunction, through ensure_sync) of every hook and view it
    calls, on every request: 16 times for a SCIM GET, 2% of a lookup's instructions. The answer
    for a registered function never changes. Only those are remembered (remember_hooks, once
    create_app has registered them all), not what else passes through ensure_sync (a request's
    after_this_request functions, made anew each time), so the memo never grows.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_hooks: dict[Callable[..., Any], Callable[..., Any]] = {}

    def remember_hooks(self) -> None:
        registered: list[Callable[..., Any]] = [*self.view_functions.values()]
        registered += self.teardown_appcontext_funcs
        for by_blueprint in (
            self.before_request_funcs,
            self.after_request_funcs,
            self.teardown_request_funcs,
        ):
            for functions in by_blueprint.values():
                registered += functions
        for by_code in self.error_handler_spec.values():
            for by_class in by_code.values():
                registered += by_class.values()
        self._sync_hooks = {func: Flask.ensure_sync(self, func) for func in registered}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            sync = self._sync_hooks.get(func)
        except TypeError:  # an unhashable callable (after_this_request takes any): not a hook
            sync = None
        return sync if sync is not None else super().ensure_sync(func)


def _registry(extensions_file: str) -> Registry:
    """Core, enterprise and the admin's declared extensions; a bad file stops start-up."""
    if not extensions_file:
        return build_registry()
    reserved = {schema.id for schema in build_registry().schemas}
    try:
        return build_registry(extensions.load(extensions_file, reserved=reserved))
    except extensions.ExtensionError as e:
        raise ConfigError(f"SCIM_SCHEMA_EXTENSIONS: {e}") from None
