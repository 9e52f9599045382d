"""The console's session: a signed cookie under /console only, its admin, and CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets

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
        if not _is_console(request.path):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SecureCookieSession, response: Response) -> None:
        if _is_console(request.path):
            super().save_session(app, session, response)

    def get_cookie_secure(self, app: Flask) -> bool:
        # Secure whenever the request came over HTTPS (after ProxyFix, with SCIM_PROXY_HOPS).
        return request.is_secure


def _is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def log_in(admin: ConsoleAdmin) -> None:
    """A fresh session for the admin: nothing from before the login survives (no fixation)."""
    session.clear()
    session.permanent = True  # expires after SCIM_CONSOLE_SESSION_MINUTES without a request
    session["admin"] = admin.username
    session["stamp"] = _stamp(admin)
    session["csrf"] = secrets.token_urlsafe(32)


def log_out() -> None:
    session.clear()


def current_admin() -> ConsoleAdmin | None:
    """The signed-in admin, if the session names one whose password has not changed since."""
    if CACHE in request.environ:  # per request (an app context may outlive one, as in tests)
        return request.environ[CACHE]
    admin = None
    if name := session.get("admin"):
        admin = store.get_admin(name)
        if admin is None or not hmac.compare_digest(session.get("stamp", ""), _stamp(admin)):
            session.clear()
            admin = None
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


def _stamp(admin: ConsoleAdmin) -> str:
    """Ties a session to the password it was opened with: a new password ends every session,
    and a forged cookie would need the stored hash as well as the signing key."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, admin.password_hash.encode(), hashlib.sha256).hexdigest()[:32]
