"""The console across tenants, through Flask's test client on both databases: the tenants page
(counts, last request, error rate, suspend and resume), every page scoped to one tenant under
/console/t/<slug>/, admins bound to one tenant (everything else 404), the old addresses
redirecting to the default tenant, failed requests with their SCIM error, the failures page,
the hourly chart, and the membership changes group requests made to a user.

Console requests here run with no tenant entered beforehand, as under gunicorn: each page
enters its own scope (no tenant is entered around the tests of this module).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import tenancy
from app.auth import new_token, token_hash
from app.db import db, utcnow
from app.models import AuditEvent, MembershipChange, TenantState
from app.store import console as store
from app.store import tenants, tokens
from tests import test_row_level_security as rls
from tests.conftest import TOKEN, make_app, statements
from tests.payloads import BASE, GROUP_URN, patch_payload, user_payload
from tests.test_console import csrf_of

PASSWORD = "correct horse battery staple"
# PostgreSQL set up as deploy/ sets it up (two roles, migrations as the owner), for one test.
deployment = rls.deployment
_drop_roles = rls._drop_roles
BOUND_PASSWORD = "the acme admin's password"


@pytest.fixture(autouse=True)
def no_tenant_entered(request: pytest.FixtureRequest) -> Iterator[None]:
    """Nothing is entered around a test's body here (conftest's `default_tenant` enters the
    default tenant), so a console page that forgot to enter its tenant fails as it would in
    production. After `client`, so that its teardown empties the tables as usual."""
    if "client" in request.fixturenames:
        request.getfixturevalue("client")
    with tenancy.entered(None):
        yield


# --- helpers -----------------------------------------------------------------------------------


def sign_in(app: Flask, username: str = "admin", password: str = PASSWORD) -> FlaskClient:
    visitor = app.test_client()
    page = visitor.get("/console/login")
    response = visitor.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "username": username, "password": password},
    )
    assert response.status_code == 302, response.text
    return visitor


def scim(client: FlaskClient, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    """A SCIM request whose response is closed, so that its audit row is stored now."""
    with client.open(f"{BASE}{path}", method=method, json=body, **kw) as response:
        return response.status_code, response.json


def created(client: FlaskClient, path: str, body: Any) -> dict[str, Any]:
    status, resource = scim(client, "POST", path, body)
    assert status == 201, resource
    return resource


def group_body(name: str, *member_ids: str) -> dict[str, Any]:
    return {
        "schemas": [GROUP_URN],
        "displayName": name,
        "members": [{"value": i} for i in member_ids],
    }


def row_of(html: str, slug: str) -> str:
    match = re.search(rf'<tr data-slug="{slug}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {slug}"
    return match.group(1)


def cells(row: str) -> list[str]:
    """The text of each cell of a table row, tags dropped and spaces squeezed."""
    found = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    return [html.unescape(" ".join(re.sub(r"<[^>]+>", " ", cell).split())) for cell in found]


def names_listed(html: str) -> list[str]:
    return re.findall(r'<a href="/console/t/[a-z0-9-]+/users/[0-9a-f-]{36}">([^<]+)</a>', html)


def tenant_id(slug: str) -> int:
    return tenants.by_slug(slug, include_deleted=True).id


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def two(client: FlaskClient, tenant_client: Callable[[str], FlaskClient]) -> dict[str, FlaskClient]:
    """Two tenants, acme and globex, both with a user ada@example.com in a group; acme has a
    second user and one refused request. A global admin and one bound to acme."""
    acme, globex = tenant_client("acme"), tenant_client("globex")
    for api, given in ((acme, "Acme Ada"), (globex, "Globex Ada")):
        ada = created(
            api,
            "/Users",
            user_payload(userName="ada@example.com", name={"givenName": given}),
        )
        created(api, "/Groups", group_body(f"{given} team", ada["id"]))
    created(acme, "/Users", user_payload(userName="grace@example.com"))
    status, _ = scim(acme, "POST", "/Users", user_payload(userName="ADA@example.com"))
    assert status == 409
    store.set_password("admin", PASSWORD)
    store.set_password("acme-it", BOUND_PASSWORD, tenant_id=tenant_id("acme"))
    return {"acme": acme, "globex": globex, "default": client}


@pytest.fixture
def operator(app: Flask, two: dict[str, FlaskClient]) -> FlaskClient:
    """The global admin, signed in."""
    return sign_in(app)


@pytest.fixture
def acme_it(app: Flask, two: dict[str, FlaskClient]) -> FlaskClient:
    """The admin bound to acme, signed in."""
    return sign_in(app, "acme-it", BOUND_PASSWORD)


# --- the tenants page --------------------------------------------------------------------------


def test_a_global_admin_lands_on_the_tenants_page_listing_every_tenant(operator):
    landing = operator.get("/console/")
    assert (landing.status_code, landing.headers["Location"]) == (302, "/console/tenants")
    page = operator.get("/console/tenants")
    assert page.status_code == 200
    slugs = re.findall(r'<tr data-slug="([^"]+)">', page.text)
    assert slugs == ["acme", "default", "globex"]
    acme = cells(row_of(page.text, "acme"))
    # Tenant, state, users, groups, tokens, last request, error rate, the button.
    assert acme[:5] == ["acme acme", "active", "2", "1", "1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", acme[5])
    assert acme[6] == "25.0% (1 of 4)"  # three creates and the 409, over the last 7 days
    assert acme[7] == "Suspend"
    globex = cells(row_of(page.text, "globex"))
    assert globex[2:5] == ["1", "1", "1"] and globex[6] == "0.0% (0 of 2)"
    default = cells(row_of(page.text, "default"))
    assert default[2:7] == ["0", "0", "0", "—", "—"]  # no request yet: no rate
    assert 'href="/console/t/acme/"' in page.text


def test_a_deleted_tenant_is_not_listed_and_its_pages_are_404(operator):
    tenants.set_state("globex", TenantState.DELETED)
    page = operator.get("/console/tenants")
    assert re.findall(r'<tr data-slug="([^"]+)">', page.text) == ["acme", "default"]
    assert operator.get("/console/t/globex/").status_code == 404


def test_suspend_and_resume_need_the_csrf_token(operator, two):
    assert operator.post("/console/tenants/acme/suspend").status_code == 400
    assert (
        operator.post("/console/tenants/acme/suspend", data={"csrf": "forged"}).status_code == 400
    )
    assert scim(two["acme"], "GET", "/Users")[0] == 200  # nothing changed

    token = csrf_of(operator.get("/console/tenants").text)
    done = operator.post("/console/tenants/acme/suspend", data={"csrf": token})
    assert (done.status_code, done.headers["Location"]) == (303, "/console/tenants")
    status, body = scim(two["acme"], "GET", "/Users")
    assert status == 403 and "'acme' is suspended" in body["detail"]
    assert scim(two["globex"], "GET", "/Users")[0] == 200
    row = cells(row_of(operator.get("/console/tenants").text, "acme"))
    assert (row[1], row[7]) == ("suspended", "Resume")
    # A suspended tenant's pages still open: that is where an operator looks for why.
    dashboard = operator.get("/console/t/acme/")
    assert dashboard.status_code == 200 and "This tenant is suspended" in dashboard.text

    assert operator.post("/console/tenants/acme/resume").status_code == 400
    done = operator.post("/console/tenants/acme/resume", data={"csrf": token})
    assert (done.status_code, done.headers["Location"]) == (303, "/console/tenants")
    assert scim(two["acme"], "GET", "/Users")[0] == 200
    assert cells(row_of(operator.get("/console/tenants").text, "acme"))[1] == "active"
    assert operator.post("/console/tenants/nope/suspend", data={"csrf": token}).status_code == 404


def test_the_state_buttons_only_post(operator):
    for path in ("/console/tenants/acme/suspend", "/console/tenants/acme/resume"):
        response = operator.get(path)
        assert response.status_code == 405
        assert response.headers["Allow"] == "OPTIONS, POST"


# --- a tenant's pages ----------------------------------------------------------------------


def test_every_page_of_a_tenant_shows_that_tenant_only(operator, two):
    acme_users = operator.get("/console/t/acme/users")
    assert names_listed(acme_users.text) == ["ada@example.com", "grace@example.com"]
    globex_users = operator.get("/console/t/globex/users")
    assert names_listed(globex_users.text) == ["ada@example.com"]
    # The same userName in two tenants: each page links to its own tenant's user.
    acme_ada = re.search(r'href="/console/t/acme/users/([0-9a-f-]{36})">ada@', acme_users.text)
    globex_ada = re.search(
        r'href="/console/t/globex/users/([0-9a-f-]{36})">ada@', globex_users.text
    )
    assert acme_ada and globex_ada
    acme_page = operator.get(f"/console/t/acme/users/{acme_ada.group(1)}").text
    assert "Acme Ada" in acme_page and "Globex Ada" not in acme_page
    assert ">Acme Ada team</a>" in acme_page
    # Another tenant's id under this tenant's address is unknown here.
    crossed = operator.get(f"/console/t/acme/users/{globex_ada.group(1)}")
    assert crossed.status_code == 404
    assert "Globex" not in crossed.text

    filtered = operator.get('/console/t/acme/users?q=userName sw "ada"')
    assert names_listed(filtered.text) == ["ada@example.com"]
    assert "Searched with the SCIM filter" in filtered.text
    groups = operator.get("/console/t/globex/groups").text
    assert re.findall(r'href="/console/t/globex/groups/[0-9a-f-]{36}">([^<]+)</a>', groups) == [
        "Globex Ada team"
    ]
    dashboard = operator.get("/console/t/acme/").text
    assert '<span class="n">2</span> active users' in dashboard
    assert '<span class="n">1</span> groups' in dashboard
    assert 'href="/console/t/acme/users"' in dashboard  # the navigation stays in the tenant
    events = operator.get("/console/t/globex/events").text
    assert len(re.findall(r"<td>create</td>", events)) == 2  # globex's user and group only
    assert "/console/t/acme/" not in events


def test_old_addresses_redirect_to_the_default_tenants_pages(operator, two):
    user = created(two["default"], "/Users", user_payload())
    group = created(two["default"], "/Groups", group_body("Eng", user["id"]))
    for old, new in (
        ("/console/users", "/console/t/default/users"),
        (
            "/console/users?q=jane&sort=userName&page=2",
            "/console/t/default/users?q=jane&sort=userName&page=2",
        ),
        (f"/console/users/{user['id']}", f"/console/t/default/users/{user['id']}"),
        ("/console/groups", "/console/t/default/groups"),
        (
            f"/console/groups/{group['id']}?page=1",
            f"/console/t/default/groups/{group['id']}?page=1",
        ),
        ("/console/events", "/console/t/default/events"),
    ):
        response = operator.get(old)
        assert (response.status_code, response.headers["Location"]) == (302, new), old
        assert operator.get(new).status_code == 200, new
    followed = operator.get("/console/users", follow_redirects=True)
    assert names_listed(followed.text) == ["jane@example.com"]


# --- an admin bound to one tenant --------------------------------------------------------


def test_a_bound_admin_lands_on_their_tenants_dashboard(acme_it):
    landing = acme_it.get("/console/")
    assert (landing.status_code, landing.headers["Location"]) == (302, "/console/t/acme/")
    dashboard = acme_it.get("/console/t/acme/")
    assert dashboard.status_code == 200
    assert "/console/tenants" not in dashboard.text  # no tenants link
    assert names_listed(acme_it.get("/console/t/acme/users").text) == [
        "ada@example.com",
        "grace@example.com",
    ]


def test_a_bound_admin_gets_404_for_every_other_tenants_page_as_for_no_page(acme_it, two):
    globex_ada = scim(two["globex"], "GET", '/Users?filter=userName eq "ada@example.com"')[1]
    globex_id = globex_ada["Resources"][0]["id"]
    never = acme_it.get("/console/no-such-page")
    assert never.status_code == 404
    token = csrf_of(acme_it.get("/console/t/acme/").text)
    for method, path in (
        ("GET", "/console/t/globex/"),
        ("GET", "/console/t/globex/users"),
        ("GET", f"/console/t/globex/users/{globex_id}"),
        ("GET", "/console/t/globex/groups"),
        ("GET", "/console/t/globex/failures"),
        ("GET", "/console/t/globex/receivers"),
        ("GET", "/console/t/globex/events"),
        ("GET", "/console/t/default/users"),
        ("GET", "/console/t/no-such-tenant/users"),
        ("GET", "/console/tenants"),
        ("POST", "/console/tenants/globex/suspend"),
        ("POST", "/console/tenants/acme/suspend"),
        ("POST", "/console/tenants/no-such-tenant/resume"),
    ):
        response = acme_it.open(path, method=method, data={"csrf": token})
        assert response.status_code == 404, path
        assert response.text == never.text, path  # nothing tells which of them exist
        assert "globex" not in response.text.lower()
    # The old addresses mean the admin's own tenant's pages.
    moved = acme_it.get("/console/users?q=ada")
    assert moved.status_code == 302
    assert moved.headers["Location"] == "/console/t/acme/users?q=ada"
    # Another tenant's user id under the admin's own tenant: as unknown as any other id.
    crossed = acme_it.get(f"/console/t/acme/users/{globex_id}")
    assert crossed.status_code == 404
    assert "Globex" not in crossed.text
    assert tenants.by_slug("acme").state == TenantState.ACTIVE  # the POSTs changed nothing


def test_an_anonymous_visitor_learns_nothing_of_which_tenants_exist(app, two):
    anonymous = app.test_client()
    for path in ("/console/t/acme/users", "/console/t/no-such-tenant/users"):
        response = anonymous.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == f"/console/login?next={path}"
    for path in ("/console/tenants/acme/suspend", "/console/tenants/nope/suspend"):
        assert anonymous.post(path).status_code == 302


# --- failures, errors and the chart ---------------------------------------------------------


def test_a_failed_request_shows_its_scim_error_and_the_failures_page_lists_failures_alone(
    operator, two
):
    acme, globex = two["acme"], two["globex"]
    grace = scim(acme, "GET", '/Users?filter=userName eq "grace@example.com"')[1]["Resources"][0]
    status, _ = scim(
        acme,
        "PATCH",
        f"/Users/{grace['id']}",
        patch_payload({"op": "replace", "path": "nickName[value eq 1].x", "value": "y"}),
    )
    assert status == 400
    assert scim(globex, "POST", "/Users", user_payload(userName="ada@example.com"))[0] == 409

    page = operator.get("/console/t/acme/failures")
    assert page.status_code == 200
    rows = re.findall(r'<tr class="failed">(.*?)</tr>', page.text, re.S)
    assert len(rows) == 2  # acme's two, newest first; none of globex, no success
    patch_row, conflict_row = cells(rows[0]), cells(rows[1])
    assert patch_row[4] == "patch"
    assert patch_row[6].startswith("400 invalidPath ")
    assert conflict_row[4] == "create"
    assert conflict_row[6] == "409 uniqueness userName 'ADA@example.com' is already taken"
    assert "2 failed requests" in page.text
    # The user's own timeline shows the error of the request on it.
    timeline = operator.get(f"/console/t/acme/users/{grace['id']}").text
    assert '<code class="scim-type">invalidPath</code>' in timeline
    # And the dashboard's event list.
    events = operator.get("/console/t/acme/events").text
    assert "userName &#39;ADA@example.com&#39; is already taken" in events
    globex_failures = operator.get("/console/t/globex/failures").text
    assert len(re.findall(r'<tr class="failed">', globex_failures)) == 1


def test_the_failures_page_pages_newest_first(operator, two):
    now = utcnow()
    acme = tenant_id("acme")
    with tenancy.entered(acme):
        db.session.add_all(
            AuditEvent(
                tenant_id=acme,
                at=now - timedelta(minutes=n),
                request_id=f"req-{n:03d}",
                token_name="acme-idp",
                method="POST",
                resource_type="User",
                operation="create",
                attributes=[],
                status=400,
                scim_type="invalidValue",
                detail=f"failure number {n}",
                duration_ms=1.0,
            )
            for n in range(1, 61)
        )
        db.session.commit()
    first = operator.get("/console/t/acme/failures").text
    assert "61 failed requests" in first and "page 1 of 2" in first
    details = re.findall(r"failure number (\d+)", first)
    assert details == [str(n) for n in range(1, 50)]  # and the 409 older than the 49 newest
    second = operator.get("/console/t/acme/failures?page=2").text
    assert re.findall(r"failure number (\d+)", second) == [str(n) for n in range(50, 61)]


def test_the_chart_draws_requests_and_failures_per_hour_for_that_tenant_only(operator, monkeypatch):
    # The chart's current hour is that of the fixture's requests, even when the hour turns
    # while the test runs (it failed at 02:59:59).
    with tenancy.entered(tenant_id("acme")):
        latest = db.session.scalar(select(func.max(AuditEvent.at)))
    hour = latest.replace(minute=0, second=0, microsecond=0)
    monkeypatch.setattr(store, "utcnow", lambda: hour + timedelta(minutes=59))

    def event(at: Any, status: int) -> AuditEvent:
        return AuditEvent(
            tenant_id=tenancy.current_id(),
            at=at,
            request_id="r",
            method="PATCH",
            resource_type="User",
            operation="patch",
            attributes=[],
            status=status,
            duration_ms=1.0,
        )

    with tenancy.entered(tenant_id("globex")):
        db.session.add_all(event(hour - timedelta(hours=2, minutes=-5), 200) for _ in range(9))
        db.session.commit()
    with tenancy.entered(tenant_id("acme")):
        two_hours_ago = hour - timedelta(hours=2) + timedelta(minutes=5)
        db.session.add_all(
            [event(two_hours_ago + timedelta(minutes=n), 200) for n in range(3)]
            + [event(two_hours_ago + timedelta(minutes=30), 500)]
            + [event(hour - timedelta(hours=30, minutes=-59), 404)]
            + [event(hour - timedelta(hours=80), 200)]  # older than the chart's 72 hours
        )
        db.session.commit()
    page = operator.get("/console/t/acme/")
    svg = re.search(r"<svg .*?</svg>", page.text, re.S)
    assert svg, "no inline SVG"
    chart = svg.group(0)
    assert "style=" not in chart and "<script" not in chart and "http" not in chart
    labels = re.findall(r"<g class=\"hour\"><title>([^<]+)</title>", chart)
    thirty = hour - timedelta(hours=30)
    two_before = hour - timedelta(hours=2)
    assert f"{thirty:%Y-%m-%d %H}:00 UTC: 1 request, 1 failed" in labels
    assert f"{two_before:%Y-%m-%d %H}:00 UTC: 4 requests, 1 failed" in labels
    # The fixture's requests (acme's three creates and the 409) fall in this hour.
    assert labels[-1] == f"{hour:%Y-%m-%d %H}:00 UTC: 4 requests, 1 failed"
    assert len(labels) == 3
    assert len(re.findall(r'<rect class="failures"', chart)) == 3
    assert len(re.findall(r'<rect class="requests"', chart)) == 3  # none of globex's nine
    assert "9 requests, 3 failed in the last 72 hours (UTC)" in page.text
    failures = operator.get("/console/t/acme/failures").text
    assert "9 requests, 3 failed in the last 72 hours (UTC)" in failures


def test_the_chart_of_a_tenant_without_requests_is_empty_but_drawn(operator):
    page = operator.get("/console/t/default/").text
    assert "0 requests, 0 failed in the last 72 hours (UTC)" in page
    assert '<svg viewBox="0 0 760 180"' in page
    assert '<g class="hour">' not in page


# --- membership changes on a user's timeline ------------------------------------------------


def membership_rows(html: str) -> list[list[str]]:
    table = html.split('id="membership-changes"')[1].split("</table>")[0]
    return [cells(row) for row in re.findall(r"<tr class=\"[a-z]+\">(.*?)</tr>", table, re.S)]


def test_a_users_timeline_shows_the_membership_changes_group_requests_made(operator, two):
    acme = two["acme"]
    users = [created(acme, "/Users", user_payload(userName=f"u{n}@example.com")) for n in range(3)]
    ids = [user["id"] for user in users]
    engineering = created(acme, "/Groups", group_body("Engineering", ids[0]))
    ops = created(acme, "/Groups", group_body("Ops"))
    patched = patch_payload(
        {"op": "add", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]}
    )
    assert scim(acme, "PATCH", f"/Groups/{ops['id']}", patched)[0] == 204
    removal = patch_payload({"op": "remove", "path": f'members[value eq "{ids[0]}"]'})
    assert scim(acme, "PATCH", f"/Groups/{engineering['id']}", removal)[0] == 204
    # A PUT that keeps u1 and adds u2 changes nothing for u1.
    put = group_body("Ops", ids[1], ids[2])
    assert scim(acme, "PUT", f"/Groups/{ops['id']}", put)[0] == 200
    assert scim(acme, "DELETE", f"/Groups/{ops['id']}")[0] == 204

    u0 = membership_rows(operator.get(f"/console/t/acme/users/{ids[0]}").text)
    assert [row[1:3] for row in u0] == [
        ["Removed from", "Ops (deleted)"],  # the PUT left it out
        ["Removed from", "Engineering"],
        ["Added to", "Ops (deleted)"],
        ["Added to", "Engineering"],
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row[0]) for row in u0)
    u1 = membership_rows(operator.get(f"/console/t/acme/users/{ids[1]}").text)
    assert [row[1:3] for row in u1] == [
        ["Removed from", "Ops (deleted)"],
        ["Added to", "Ops (deleted)"],
    ]
    u2 = membership_rows(operator.get(f"/console/t/acme/users/{ids[2]}").text)
    assert [row[1:3] for row in u2] == [
        ["Removed from", "Ops (deleted)"],
        ["Added to", "Ops (deleted)"],
    ]
    page = operator.get(f"/console/t/acme/users/{ids[0]}").text
    assert f'href="/console/t/acme/groups/{engineering["id"]}">Engineering</a>' in page
    # Nothing of it in another tenant: globex has only the change its own group POST made.
    with tenancy.entered(tenant_id("globex")):
        assert db.session.scalars(select(MembershipChange.change)).all() == ["added"]
        db.session.commit()


def test_a_user_without_membership_changes_says_so(operator, two):
    grace = scim(two["acme"], "GET", '/Users?filter=userName eq "grace@example.com"')[1]
    page = operator.get(f"/console/t/acme/users/{grace['Resources'][0]['id']}").text
    assert "No group request has changed its memberships." in page


def test_a_membership_change_names_the_request_that_made_it(operator, two):
    acme = two["acme"]
    grace = scim(acme, "GET", '/Users?filter=userName eq "grace@example.com"')[1]["Resources"][0]
    group = created(acme, "/Groups", group_body("Design"))
    adding = patch_payload({"op": "add", "path": "members", "value": [{"value": grace["id"]}]})
    status, _ = scim(
        acme,
        "PATCH",
        f"/Groups/{group['id']}",
        adding,
        headers={"X-Request-ID": "okta-req-0042"},
    )
    assert status == 204
    rows = membership_rows(operator.get(f"/console/t/acme/users/{grace['id']}").text)
    assert rows[0][1:] == ["Added to", "Design", "okta-req-0042"]


def test_membership_changes_are_recorded_net_and_in_one_insert_per_write(client, create_user):
    """Store-level: what the rows say, and what recording them costs."""
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        ids = [create_user(userName=f"m{n}@example.com")["id"] for n in range(5)]
        group = created(client, "/Groups", group_body("Big", *ids[:2]))
        added = patch_payload(
            *({"op": "add", "path": "members", "value": [{"value": i}]} for i in ids[2:]),
        )
        with statements() as seen:
            assert scim(client, "PATCH", f"/Groups/{group['id']}", added)[0] == 204
        inserts = [s for s in seen if s.lstrip().upper().startswith("INSERT INTO MEMBERSHIP")]
        assert len(inserts) == 1  # three members added by three operations: one statement
        # Removed and added back in one request: no change at all.
        flip = patch_payload(
            {"op": "remove", "path": f'members[value eq "{ids[0]}"]'},
            {"op": "add", "path": "members", "value": [{"value": ids[0]}]},
        )
        with statements() as seen:
            assert scim(client, "PATCH", f"/Groups/{group['id']}", flip)[0] == 204
        assert not [s for s in seen if "INSERT INTO membership_changes" in s]
        # Adding a member already there changes nothing, and records nothing.
        again = patch_payload({"op": "add", "path": "members", "value": [{"value": ids[1]}]})
        assert scim(client, "PATCH", f"/Groups/{group['id']}", again)[0] == 204
        # Deleting a user removes it from its groups: recorded as such.
        assert scim(client, "DELETE", f"/Users/{ids[4]}")[0] == 204
        rows = db.session.execute(
            select(MembershipChange.member_id, MembershipChange.change).order_by(
                MembershipChange.id
            )
        ).all()
        db.session.commit()
    assert sorted(tuple(row) for row in rows[:5]) == sorted((i, "added") for i in ids)
    assert tuple(rows[5]) == (ids[4], "removed")
    assert len(rows) == 6


# --- `flask console set-password USERNAME [--tenant SLUG]` ---------------------------------


def test_set_password_makes_global_and_tenant_bound_admins(app, two):
    runner = app.test_cli_runner()

    def run(*args: str, password: str = "a long enough password") -> Any:
        return runner.invoke(
            args=["console", "set-password", *args, "--password-stdin"], input=f"{password}\n"
        )

    result = run("globex-it", "--tenant", "globex")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Console password set for 'globex-it' (tenant 'globex' only); "
        "its earlier sessions have ended.\n"
    )
    assert store.get_admin("globex-it").tenant_id == tenant_id("globex")
    result = run("globex-it")  # a new password keeps the binding
    assert "(tenant 'globex' only)" in result.output
    assert store.get_admin("globex-it").tenant_id == tenant_id("globex")
    result = run("ops")
    assert "Console password set for 'ops' (global: every tenant)" in result.output
    assert store.get_admin("ops").tenant_id is None
    result = run("--username", "globex-it", "--global")
    assert "(global: every tenant)" in result.output
    assert store.get_admin("globex-it").tenant_id is None

    refused = run("x", "--tenant", "no-such-tenant")
    assert refused.exit_code == 1
    assert "no tenant has the slug 'no-such-tenant'" in refused.output
    assert store.get_admin("x") is None
    assert run("x", "--tenant", "acme", "--global").exit_code == 2
    assert run("x", "--username", "y").exit_code == 2

    visitor = sign_in(app, "ops", "a long enough password")
    assert visitor.get("/console/").headers["Location"] == "/console/tenants"


def test_a_bound_admin_whose_tenant_is_deleted_sees_nothing(app, two):
    tenants.set_state("acme", TenantState.DELETED)
    visitor = sign_in(app, "acme-it", BOUND_PASSWORD)
    assert visitor.get("/console/").status_code == 404
    assert visitor.get("/console/t/acme/").status_code == 404


# --- PostgreSQL's row-level security, as production runs it ---------------------------------


def test_console_pages_read_their_tenant_under_row_level_security(deployment):
    """The service connected as the role deploy/postgres/app-role.sql makes, neither owner nor
    BYPASSRLS (tests/test_row_level_security.py sets it up): every page's statements run under
    the setting of the scope it entered, the tenants page's across tenants."""
    service = make_app(deployment.app_url)
    rls._join_check(service)
    try:
        with service.app_context():
            acme_id = tenants.create("acme").id
            token = new_token()
            with tenancy.entered(acme_id):
                tokens.create("acme-idp", token_hash(token))
            acme, default = service.test_client(), service.test_client()
            acme.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            default.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
            ada = created(acme, "/Users", user_payload(userName="ada@example.com"))
            created(acme, "/Groups", group_body("Engineering", ada["id"]))
            status, _ = scim(acme, "POST", "/Users", user_payload(userName="ADA@example.com"))
            assert status == 409
            created(default, "/Users", user_payload(userName="grace@example.com"))
            store.set_password("admin", PASSWORD)
            store.set_password("acme-it", BOUND_PASSWORD, tenant_id=acme_id)
            db.session.remove()

            operator = sign_in(service)
            page = operator.get("/console/tenants").text
            assert cells(row_of(page, "acme"))[2:4] == ["1", "1"]
            assert cells(row_of(page, "acme"))[6] == "33.3% (1 of 3)"
            assert cells(row_of(page, "default"))[2] == "1"
            assert names_listed(operator.get("/console/t/acme/users").text) == ["ada@example.com"]
            default_users = operator.get("/console/t/default/users").text
            assert names_listed(default_users) == ["grace@example.com"]
            dashboard = operator.get("/console/t/acme/").text
            assert '<span class="n">1</span> active users' in dashboard
            assert "3 requests, 1 failed in the last 72 hours" in dashboard
            failures = operator.get("/console/t/acme/failures").text
            assert len(re.findall(r'<tr class="failed">', failures)) == 1
            user = operator.get(f"/console/t/acme/users/{ada['id']}").text
            assert [row[1:3] for row in membership_rows(user)] == [["Added to", "Engineering"]]

            bound = sign_in(service, "acme-it", BOUND_PASSWORD)
            assert names_listed(bound.get("/console/t/acme/users").text) == ["ada@example.com"]
            assert bound.get("/console/t/default/users").status_code == 404
    finally:
        with service.app_context():
            db.session.remove()
            db.engine.dispose()
