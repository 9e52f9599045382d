"""The operator console: a read-only web view of users, groups and provisioning, at /console/.

Its own authentication (an admin password set with `flask console set-password`, a signed
session cookie scoped to /console), separate from the SCIM bearer tokens in both directions.
"""

from __future__ import annotations

from flask import Flask, abort, redirect, url_for
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
    app.register_blueprint(views.bp)
    app.add_url_rule("/", "console_root", _root)
    app.cli.add_command(cli.group)


def _root() -> Response:
    if not views.enabled():
        abort(404)
    return redirect(url_for("console.dashboard"))
