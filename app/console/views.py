"""The console's pages. Each is one store call or a few; every one but login needs a session."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response

from app.console import sessions
from app.errors import ScimError
from app.store import console as store
from app.store import groups, users

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)
PUBLIC = {"console.login", "console.static"}
MAX_PAGE = 10**6
# No inline script or style, nothing from another origin, never inside a frame.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@bp.before_request
def _gate() -> Response | tuple[str, int] | None:
    if request.endpoint == "console.static":
        return None  # the stylesheet and script tell nothing, and style the page below
    if not store.admin_exists():
        return not_set_up()
    if request.endpoint in PUBLIC or sessions.current_admin() is not None:
        return None
    # After logging in, the admin goes where they were going, but never to the logout page.
    target = None if request.endpoint == "console.logout" else _here()
    return redirect(url_for("console.login", next=target))


def not_set_up() -> tuple[str, int]:
    """Every console page until an admin password is set: what to run to switch it on.

    404, not 503: nothing is failing and nothing will change by retrying; a 5xx would count
    against the service's error rate and could take it out of a load balancer's rotation.
    """
    return render_template("console/not_set_up.html"), 404


def unrouted(error: HTTPException) -> Response:
    """A /console path that no page answers, or not with that method: HTML like the pages
    (the app's own 404 and 405 are SCIM JSON, for the API)."""
    if not store.admin_exists():
        response = make_response(not_set_up())
    else:
        status = error.code or 404
        page = render_template(
            "console/error.html", status=status, detail=error.description, **_globals()
        )
        response = make_response(page, status)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return _headers(response)


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"  # pages name people: never cached
    return response


@bp.errorhandler(ScimError)
def _scim_error(e: ScimError) -> tuple[str, int]:
    return render_template("console/error.html", status=e.status, detail=e.detail), e.status


@bp.errorhandler(HTTPException)
def _http_error(e: HTTPException) -> tuple[str, int] | HTTPException:
    if e.code is None or e.code < 400:
        return e
    return render_template("console/error.html", status=e.code, detail=e.description), e.code


@bp.app_template_filter("when")
def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


# The query parameters console pages read; nothing else a visitor sends reaches url_for
# (`?endpoint=` or `?_external=` would otherwise be taken as its own arguments).
PAGE_PARAMETERS = ("q", "sort", "order", "page")


@bp.app_template_global()
def console_url(**changes: Any) -> str:
    """This page's URL with some query parameters changed (sorting, paging links)."""
    kept = {k: v for k, v in request.args.items() if k in PAGE_PARAMETERS}
    args = {**kept, **changes}
    return url_for(request.endpoint or "console.dashboard", **(request.view_args or {}), **args)


@bp.context_processor
def _globals() -> dict[str, Any]:
    return {"admin": sessions.current_admin(), "csrf_token": sessions.csrf_token}


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if sessions.current_admin() is not None:
            return redirect(target)
        return render_template("console/login.html", next=target)
    sessions.check_csrf()
    result = store.log_in(
        request.remote_addr or "unknown",
        request.form.get("username", "")[:256],
        request.form.get("password", "")[:1024],
        attempts=current_app.config["SCIM_CONSOLE_LOGIN_ATTEMPTS"],
        lockout_seconds=current_app.config["SCIM_CONSOLE_LOCKOUT_SECONDS"],
    )
    if result.admin is None:
        locked = result.locked_seconds
        message = (
            f"Too many failed attempts. Try again in {-(-locked // 60)} minute(s)."
            if locked
            else "Wrong username or password."
        )
        page = render_template("console/login.html", next=target, error=message)
        return page, 429 if locked else 401
    sessions.log_in(result.admin)
    return redirect(target)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response | str:
    """POST logs out; GET (the address typed, or a bookmark) offers the button, ending nothing:
    a link elsewhere must not be able to log the admin out."""
    if request.method == "GET":
        return render_template("console/logout.html")
    sessions.check_csrf()
    sessions.log_out()
    return redirect(url_for("console.login"))


@bp.get("/")
def dashboard() -> str:
    return render_template(
        "console/dashboard.html",
        counts=store.counts(),
        health=store.health(),
        events=store.recent_events(),
    )


@bp.get("/events")
def events() -> str:
    """The dashboard's event table alone, which console.js reloads every few seconds."""
    return render_template("console/_events.html", events=store.recent_events())


@bp.get("/users")
def users_page() -> str:
    # userName by default: its index serves the first page; last modified needs a sort.
    sort, descending = _sort(store.USER_SORTS, "userName")
    listing = store.users(
        current_app.extensions["scim_registry"].user,
        request.args.get("q", ""),
        sort=sort,
        descending=descending,
        page=_page(),
    )
    return render_template("console/users.html", listing=listing, sort=sort, desc=descending)


@bp.get("/users/<user_id>")
def user_page(user_id: str) -> str:
    user = users.get(user_id)
    return render_template(
        "console/user.html",
        user=user,
        attributes={k: v for k, v in user.document.items() if k != "password"},
        memberships=store.memberships(user.id),
        events=store.timeline("User", user.id),
    )


@bp.get("/groups")
def groups_page() -> str:
    sort, descending = _sort(store.GROUP_SORTS, "displayName")
    listing = store.groups_listing(
        request.args.get("q", ""), sort=sort, descending=descending, page=_page()
    )
    counts = store.member_counts([group.id for group in listing.rows])
    return render_template(
        "console/groups.html", listing=listing, counts=counts, sort=sort, desc=descending
    )


@bp.get("/groups/<group_id>")
def group_page(group_id: str) -> str:
    group = groups.get(group_id)
    return render_template(
        "console/group.html",
        group=group,
        members=store.members(group.id, page=_page()),
        events=store.timeline("Group", group.id),
    )


def _page() -> int:
    return min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)


def _sort(allowed: dict[str, Any], default: str) -> tuple[str, bool]:
    """The column to sort by and whether descending; a column's first click is ascending."""
    sort = request.args.get("sort", default)
    return (sort if sort in allowed else default), request.args.get("order") == "desc"


def _here() -> str:
    return request.full_path.rstrip("?")


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: a login link must not send the admin elsewhere."""
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return url_for("console.dashboard")
