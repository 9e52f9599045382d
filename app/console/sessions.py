"""The console's session: a signed cookie under /console only naming a session the database
keeps (app/store/console.py), its admin, and CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import Flask, abort, current_app, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.wrappers import Request, Response

from app.models import ConsoleAdmin
from app.store import console as store

PREFIX = "/console"
CACHE = "scim.console.admin"


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, for console requests only.

    Anything else (/scim/v2, the probes) gets a null session that cannot be written, and its
    response never carries a Set-Cookie: SCIM clients never get a cookie, and a console cookie
    means nothing to the API.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not is_console(request.path):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SecureCookieSession, response: Response) -> None:
        if is_console(request.path):
            super().save_session(app, session, response)

    def get_cookie_secure(self, app: Flask) -> bool:
        # Secure whenever the request came over HTTPS (after ProxyFix, with SCIM_PROXY_HOPS).
        return request.is_secure


def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def log_in(admin: ConsoleAdmin) -> None:
    """A fresh session for the admin: nothing from before the login survives (no fixation)."""
    session.clear()
    session.permanent = True  # expires after SCIM_CONSOLE_SESSION_MINUTES without a request
    session_id = secrets.token_urlsafe(32)
    store.start_session(admin.username, _hash(session_id), idle=_lifetime())
    session["id"] = session_id
    session["csrf"] = secrets.token_urlsafe(32)


def log_out() -> None:
    """End the session in the database, so a copy of the cookie opens nothing either."""
    if session_id := session.get("id"):
        store.end_session(_hash(session_id))
    session.clear()


def current_admin() -> ConsoleAdmin | None:
    """The signed-in admin, if the session's record says it is still open.

    The cookie only names the session; whether it is open is in the database, where a logout,
    a new password or `flask console logout-all` ends it for every worker and instance.
    """
    if CACHE in request.environ:  # per request (an app context may outlive one, as in tests)
        return request.environ[CACHE]
    admin = None
    if session_id := session.get("id"):
        admin = store.session_admin(_hash(session_id), idle=_lifetime())
        if admin is None:
            session.clear()
    request.environ[CACHE] = admin
    return admin


def csrf_token() -> str:
    """The session's token for the hidden field of every form that POSTs."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    expected, sent = session.get("csrf"), request.form.get("csrf", "")
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        abort(400, "The form has expired or did not come from this console: reload and retry.")


def _hash(session_id: str) -> str:
    """What the database keeps: reading the table gives no cookie's session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _lifetime() -> timedelta:
    return current_app.permanent_session_lifetime
