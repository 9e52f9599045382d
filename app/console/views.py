"""The console's pages. Each is one store call or a few; every one but login needs a session.

A global admin (console_admins.tenant_id None) lands on the tenants page and may open any
tenant's pages under /console/t/<slug>/; an admin bound to one tenant lands on that tenant's
dashboard, and every other tenant's address answers 404, as an address that does not exist
does. Within a tenant's pages every store call runs in that tenant's scope (app.tenancy),
entered by the gate below before the view runs; the tenants page reads across tenants, and
says so. The addresses from before tenants (/console/users...) redirect to the same page of
the admin's own tenant (the default tenant's, for a global admin).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response

from app import db, tenancy
from app.console import chart, sessions
from app.errors import ScimError
from app.models import ConsoleAdmin, TenantState
from app.store import console as store
from app.store import groups, tenants, users

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)
PUBLIC = {"console.login", "console.static"}
MAX_PAGE = 10**6
TENANT_PREFIX = "/t/<tenant>"
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


@bp.url_value_preprocessor
def _take_tenant(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Keep the slug aside: the gate resolves it once the visitor is known to be signed in
    (so that an anonymous visitor learns nothing of which slugs exist)."""
    # g can outlive a request (an app context pushed around several, as in tests).
    g.pop("console_tenant", None)
    g.pop("console_slug", None)
    if values and "tenant" in values:
        g.console_slug = values.pop("tenant")


@bp.url_defaults
def _add_tenant(endpoint: str, values: dict[str, Any]) -> None:
    """Links from a tenant's page stay within that tenant unless they name another."""
    if "tenant" in values or "console_tenant" not in g:
        return
    if current_app.url_map.is_endpoint_expecting(endpoint, "tenant"):
        values["tenant"] = g.console_tenant.slug


@bp.before_request
def _reads_only() -> None:
    """A page (GET) only reads: on SQLite its transactions take no write lock, so the console
    never waits behind an IdP's writes nor makes them wait (app.db). The one write a GET may
    make, marking the session seen, takes the lock in a transaction of its own."""
    if request.method in ("GET", "HEAD"):
        g.console_reading = db.start_reading_only()


@bp.before_request
def _gate() -> Response | tuple[str, int] | None:
    if request.endpoint == "console.static":
        return None  # the stylesheet and script tell nothing, and style the page below
    if not store.admin_exists():
        return not_set_up()
    admin = sessions.current_admin()
    if request.endpoint not in PUBLIC and admin is None:
        # After logging in, the admin goes where they were going, but never to the logout page.
        target = None if request.endpoint == "console.logout" else _here()
        return redirect(url_for("console.login", next=target))
    scope: tenancy.Scope = None  # outside a tenant's pages no tenant's row is read
    if (slug := g.get("console_slug")) is not None:
        assert admin is not None
        tenant = store.visible_tenant(slug, admin)
        if tenant is None:
            abort(404)  # another tenant's, deleted, or no such slug: the same answer
        g.console_tenant = tenant
        scope = tenant.id
    # On PostgreSQL the transaction's row-level security setting follows (app/store/scope.py).
    g.console_scope = tenancy.enter(scope)
    return None


@bp.teardown_request
def _leave_scope(_error: BaseException | None) -> None:
    g.pop("console_tenant", None)
    g.pop("console_slug", None)
    if (entered := g.pop("console_scope", None)) is not None:
        tenancy.leave(entered)
    if (reading := g.pop("console_reading", None)) is not None:
        db.stop_reading_only(reading)


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


@bp.app_template_filter("age")
def _age(value: datetime) -> str:
    """How long ago, roughly: what an operator reads at a glance."""
    seconds = max(0, int((db.utcnow() - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


@bp.app_template_filter("percent")
def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


# The query parameters console pages read; nothing else a visitor sends reaches url_for
# (`?endpoint=` or `?_external=` would otherwise be taken as its own arguments).
PAGE_PARAMETERS = ("q", "sort", "order", "page")


@bp.app_template_global()
def console_url(**changes: Any) -> str:
    """This page's URL with some query parameters changed (sorting, paging links)."""
    kept = {k: v for k, v in request.args.items() if k in PAGE_PARAMETERS}
    args = {**kept, **changes}
    return url_for(request.endpoint or "console.home", **(request.view_args or {}), **args)


@bp.context_processor
def _globals() -> dict[str, Any]:
    admin = sessions.current_admin()
    return {
        "admin": admin,
        "is_global": admin is not None and admin.tenant_id is None,
        "current_tenant": g.get("console_tenant"),
        "csrf_token": sessions.csrf_token,
    }


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
def home() -> Response:
    """Where an admin lands: the tenants page (global), or their tenant's dashboard."""
    admin = _admin()
    if admin.tenant_id is None:
        return redirect(url_for("console.tenants_page"))
    tenant = store.tenant_by_id(admin.tenant_id)
    if tenant is None or tenant.state == TenantState.DELETED:
        abort(404)
    return redirect(url_for("console.dashboard", tenant=tenant.slug))


# --- The tenants (global admins only) --------------------------------------------------------


@bp.get("/tenants")
def tenants_page() -> str:
    _global_admin_only()
    with tenancy.across_tenants():  # deliberately: one line per tenant, from every tenant's rows
        rows = store.tenant_rows()
    return render_template("console/tenants.html", rows=rows, days=store.ERROR_RATE_DAYS)


@bp.post("/tenants/<slug>/suspend")
def suspend_tenant(slug: str) -> Response:
    return _set_state(slug, TenantState.SUSPENDED)


@bp.post("/tenants/<slug>/resume")
def resume_tenant(slug: str) -> Response:
    return _set_state(slug, TenantState.ACTIVE)


def _set_state(slug: str, state: TenantState) -> Response:
    _global_admin_only()
    sessions.check_csrf()
    try:
        tenants.set_state(slug, state)
    except tenants.TenantError:
        abort(404)
    return redirect(url_for("console.tenants_page"), 303)


def _admin() -> ConsoleAdmin:
    admin = sessions.current_admin()
    assert admin is not None  # the gate let only signed-in admins through
    return admin


def _global_admin_only() -> None:
    """A tenant-bound admin gets the answer of an address that does not exist."""
    if _admin().tenant_id is not None:
        abort(404)


# --- One tenant's pages: /console/t/<slug>/... -----------------------------------------------


@bp.get(f"{TENANT_PREFIX}/")
def dashboard() -> str:
    return render_template(
        "console/dashboard.html",
        counts=store.counts(),
        health=store.health(),
        events=store.recent_events(),
        chart=chart.build(store.hourly()),
    )


@bp.get(f"{TENANT_PREFIX}/events")
def events() -> str:
    """The dashboard's event table alone, which console.js reloads every few seconds."""
    return render_template("console/_events.html", events=store.recent_events())


@bp.get(f"{TENANT_PREFIX}/failures")
def failures_page() -> str:
    """The tenant's refused requests alone, newest first, each with the SCIM error it got."""
    return render_template(
        "console/failures.html",
        listing=store.failures(page=_page()),
        chart=chart.build(store.hourly()),
    )


@bp.get(f"{TENANT_PREFIX}/users")
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


@bp.get(f"{TENANT_PREFIX}/users/<user_id>")
def user_page(user_id: str) -> str:
    user = users.get(user_id)
    return render_template(
        "console/user.html",
        user=user,
        attributes={k: v for k, v in user.document.items() if k != "password"},
        memberships=store.memberships(user.id),
        events=(timeline := store.timeline("User", user.id)),
        emitted=store.emitted(user.id, (e.txn for e in timeline)),
        membership_changes=store.membership_changes(user.id),
    )


@bp.get(f"{TENANT_PREFIX}/groups")
def groups_page() -> str:
    sort, descending = _sort(store.GROUP_SORTS, "displayName")
    listing = store.groups_listing(
        request.args.get("q", ""), sort=sort, descending=descending, page=_page()
    )
    counts = store.member_counts([group.id for group in listing.rows])
    return render_template(
        "console/groups.html", listing=listing, counts=counts, sort=sort, desc=descending
    )


@bp.get(f"{TENANT_PREFIX}/groups/<group_id>")
def group_page(group_id: str) -> str:
    group = groups.get(group_id)
    return render_template(
        "console/group.html",
        group=group,
        members=store.members(group.id, page=_page()),
        events=(timeline := store.timeline("Group", group.id)),
        emitted=store.emitted(group.id, (e.txn for e in timeline)),
    )


@bp.get(f"{TENANT_PREFIX}/receivers")
def receivers_page() -> str:
    """The tenant's change-event receivers: is the application hearing about changes?"""
    return render_template(
        "console/receivers.html", statuses=store.receivers(), every_event=store.EVENT_NAMES
    )


# --- The addresses from before tenants: the admin's own tenant's pages ----------------------

LEGACY = {
    "/events": "events",
    "/users": "users_page",
    "/users/<user_id>": "user_page",
    "/groups": "groups_page",
    "/groups/<group_id>": "group_page",
}


def _legacy(endpoint: str) -> Any:
    def view(**ids: str) -> Response:
        target = url_for(f"console.{endpoint}", tenant=_home_tenant_slug(), **ids)
        if request.query_string:
            target += "?" + request.query_string.decode("ascii", "replace")
        return redirect(target)

    view.__name__ = f"legacy_{endpoint}"
    view.__doc__ = "A bookmark from before tenants: the same page of the admin's own tenant."
    return view


for _rule, _endpoint in LEGACY.items():
    bp.add_url_rule(_rule, f"legacy_{_endpoint}", _legacy(_endpoint), methods=["GET"])


def _home_tenant_slug() -> str:
    """The tenant an old address means: a bound admin's own, else the default tenant (the only
    one a console had before tenants)."""
    admin = _admin()
    if admin.tenant_id is None:
        return tenancy.DEFAULT_TENANT_SLUG
    tenant = store.tenant_by_id(admin.tenant_id)
    if tenant is None or tenant.state == TenantState.DELETED:
        abort(404)
    return tenant.slug


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
    return url_for("console.home")
