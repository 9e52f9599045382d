"""The operator console: a read-only web view of users, groups and provisioning, at /console/.

Its own authentication (an admin password set with `flask console set-password`, a signed
session cookie scoped to /console naming a session kept in the database), separate from the SCIM
bearer tokens in both directions.

SCIM_CONSOLE_ENABLED=false: no console route exists, so `/` and `/console/...` answer as any
path outside the API does (the SCIM 404); the `flask console` commands remain.
"""

from __future__ import annotations

from flask import Flask, redirect, request, url_for
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Response

from app.console import cli, sessions, views


def init_app(app: Flask) -> None:
    """Mount the blueprint, its session cookie and its `flask console` commands."""
    app.config.update(
        SESSION_COOKIE_NAME="scim_console",
        SESSION_COOKIE_PATH="/console",  # the browser never sends it to /scim/v2
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.session_interface = sessions.ConsoleSessionInterface()
    app.cli.add_command(cli.group)
    if not app.config["SCIM_CONSOLE_ENABLED"]:
        return
    app.register_blueprint(views.bp)
    app.add_url_rule("/", "console_root", _root)
    app.before_request(_unrouted)


def _root() -> Response:
    """To the console: its pages, or, until a password is set, the page that says how."""
    return redirect(url_for("console.home"))


def _unrouted() -> Response | None:
    """A /console path no route matches would get the API's SCIM JSON error: answer as the
    console instead (Flask raises routing errors after the before_request hooks run)."""
    error = request.routing_exception
    if error is None or isinstance(error, RequestRedirect) or not sessions.is_console(request.path):
        return None
    return views.unrouted(error)
