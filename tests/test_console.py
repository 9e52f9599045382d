"""The operator console through Flask's test client, on both databases: switched on and off,
authentication (password, session cookie, CSRF, lockout), separation from the SCIM API, and
what each page shows. tests/e2e/test_console_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from app import models
from app.config import load_config
from app.db import db, utcnow
from app.models import ConsoleAdmin, GroupMember
from app.schema.core import USER_RESOURCE
from app.store import console as store
from app.store import users as users_store
from tests.conftest import BASE, TOKEN, make_app, statements
from tests.payloads import GROUP_URN, error, patch_payload, user_payload

PASSWORD = "correct horse battery staple"
DEFAULT = "/console/t/default"  # the default tenant's pages; /console/users... redirect there
CSRF_PAGE = "/console/tenants"  # a global admin's page with a form, for its CSRF token


# --- helpers, also used by tests/e2e/test_console_browser.py ------------------------------


def seed_users(count: int, *, prefix: str = "user", start: int = 0) -> list[str]:
    """`count` users in two bulk INSERTs, with the rows store/users.py writes; returns ids."""
    now = utcnow()
    documents, created = [], []
    for n in range(start, start + count):
        user_name = f"{prefix}{n:05d}@example.com"
        given, family = f"Given{n:05d}", f"Family{n:05d}"
        documents.append(
            {
                "userName": user_name,
                "name": {"givenName": given, "familyName": family},
                "displayName": f"{given} {family}",
                "emails": [{"value": user_name, "type": "work", "primary": True}],
                "active": n % 4 != 0,
            }
        )
        created.append(now - timedelta(seconds=count - n))
    ids = users_store.insert_many(USER_RESOURCE, documents, created)
    db.session.commit()
    return ids


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def log_in(browser: FlaskClient, password: str = PASSWORD, **environ: Any) -> Any:
    page = browser.get("/console/login", environ_overrides=environ)
    return browser.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "username": "admin", "password": password},
        environ_overrides=environ,
    )


def user_names(html: str) -> list[str]:
    return re.findall(r'<a href="/console/t/[a-z0-9-]+/users/[0-9a-f-]{36}">([^<]+)</a>', html)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def admin(client: FlaskClient) -> ConsoleAdmin:
    """The admin password is set (the `client` fixture empties every table afterwards)."""
    return store.set_password("admin", PASSWORD)


@pytest.fixture
def browser(app: Flask, admin: ConsoleAdmin) -> FlaskClient:
    """A logged-in console visitor: cookies, no bearer token."""
    browser = app.test_client()
    assert log_in(browser).status_code == 302
    return browser


@pytest.fixture
def switched_off(database_url: str, app: Flask) -> Iterator[Flask]:
    other = make_app(database_url, SCIM_CONSOLE_ENABLED="false")
    yield other
    with other.app_context():
        db.engine.dispose()


def scim(client: FlaskClient, method: str, path: str, body: Any = None) -> Any:
    """A SCIM request whose response is closed, so that its audit event is stored now."""
    with client.open(f"{BASE}{path}", method=method, json=body) as response:
        assert response.status_code < 300, response.json
        return response.json


# --- switched on and off -------------------------------------------------------------------

ENABLE_COMMAND = "flask --app wsgi console set-password"
NOT_SET_UP_PATHS = [
    "/console/",
    "/console/login",
    "/console/users",
    "/console/users/no-such-user",
    "/console/logout",
    "/console/no-such-page",
]


def not_found_in_scim_json(response: Any) -> None:
    """What any path outside the console and the API answers: the app's SCIM 404."""
    assert response.status_code == 404
    assert response.mimetype == "application/scim+json"
    assert response.json == error(404, "No such endpoint")
    assert "Set-Cookie" not in response.headers


def test_before_a_password_is_set_console_pages_are_an_html_404_naming_the_command(
    client, anonymous
):
    for path in NOT_SET_UP_PATHS:
        for method in ("GET", "POST"):
            response = anonymous.open(path, method=method)
            assert response.status_code == 404, (method, path)
            assert response.mimetype == "text/html", (method, path)
            assert "The console is not switched on" in response.text, (method, path)
            assert ENABLE_COMMAND in response.text, (method, path)
            assert "Set-Cookie" not in response.headers, (method, path)
    assert anonymous.get("/console/").headers["Cache-Control"] == "no-store"
    # `/` sends a person to the console, which says what to do; the API is still SCIM JSON.
    root = anonymous.get("/")
    assert (root.status_code, root.headers["Location"]) == (302, "/console/")
    assert client.get(f"{BASE}/NoSuchResource").json == error(404, "No such endpoint")
    with anonymous.get("/console/static/console.css") as stylesheet:
        assert stylesheet.status_code == 200  # the page is styled; the stylesheet tells nothing

    store.set_password("admin", PASSWORD)
    root = anonymous.get("/")
    assert (root.status_code, root.headers["Location"]) == (302, "/console/")
    login = anonymous.get("/console/login")
    assert login.status_code == 200
    assert "The console is not switched on" not in login.text


def test_console_switched_off_does_not_exist_even_with_a_password(switched_off, admin):
    visitor = switched_off.test_client()
    for path in ("/", "/console", "/console/", "/console/login", "/console/users"):
        not_found_in_scim_json(visitor.get(path))
    not_found_in_scim_json(visitor.get("/console/static/console.css"))
    not_found_in_scim_json(visitor.post("/console/login", data={"password": PASSWORD}))
    # Its commands still work, so a password can be set before the console is switched on.
    result = switched_off.test_cli_runner().invoke(args=["console", "logout-all"])
    assert result.exit_code == 0, result.output


def test_an_unknown_console_path_is_an_html_404_and_a_wrong_method_an_html_405(anonymous, browser):
    for visitor in (anonymous, browser):
        missing = visitor.get("/console/no-such-page")
        assert (missing.status_code, missing.mimetype) == (404, "text/html")
        assert missing.headers["X-Frame-Options"] == "DENY"
        wrong = visitor.post("/console/users")
        assert (wrong.status_code, wrong.mimetype) == (405, "text/html")
        assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS"


ANONYMOUS_PAGES = [
    "/console/",
    "/console/events",
    "/console/users",
    "/console/users?q=jane&sort=userName&page=2",
    "/console/users/{user_id}",
    "/console/groups",
    "/console/groups/{group_id}",
    "/console/users/no-such-user",
    "/console/t/default/receivers",
]


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_every_console_page_redirects_an_anonymous_visitor_to_login(
    path, client, anonymous, admin, create_user
):
    user = create_user()
    group = scim(
        client,
        "POST",
        "/Groups",
        {"schemas": [GROUP_URN], "displayName": "Eng", "members": [{"value": user["id"]}]},
    )
    path = path.format(user_id=user["id"], group_id=group["id"])
    response = anonymous.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/login?next=")
    assert user["userName"] not in response.text
    # Logging out needs a session too: without one it is the same redirect, nothing else.
    assert anonymous.post("/console/logout").status_code == 302


# --- authentication ------------------------------------------------------------------------


def test_wrong_password_is_refused_and_opens_no_session(anonymous, admin):
    response = log_in(anonymous, password="not the password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    assert anonymous.get("/console/users").status_code == 302


def test_unknown_username_is_refused_the_same_way(anonymous, admin):
    page = anonymous.get("/console/login")
    response = anonymous.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "username": "root", "password": PASSWORD},
    )
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


def test_login_cookie_is_signed_httponly_lax_and_scoped_to_the_console(anonymous, admin):
    response = log_in(anonymous)
    assert (response.status_code, response.headers["Location"]) == (302, "/console/")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("scim_console=")
    assert "; HttpOnly" in cookie
    assert "; SameSite=Lax" in cookie
    assert "; Path=/console" in cookie
    assert "Expires=" in cookie  # SCIM_CONSOLE_SESSION_MINUTES
    assert "Secure" not in cookie  # plain HTTP here
    assert PASSWORD not in cookie
    assert anonymous.get(f"{DEFAULT}/users").status_code == 200


def test_login_cookie_is_secure_over_https(app, admin):
    browser = app.test_client()
    page = browser.get("/console/login", base_url="https://localhost")
    response = browser.post(
        "/console/login",
        base_url="https://localhost",
        data={"csrf": csrf_of(page.text), "username": "admin", "password": PASSWORD},
    )
    assert response.status_code == 302
    assert "; Secure" in response.headers["Set-Cookie"]


def test_login_redirects_back_to_the_page_asked_for_but_never_out_of_the_console(anonymous, admin):
    first = anonymous.get("/console/groups?q=eng")
    assert first.headers["Location"] == "/console/login?next=/console/groups?q%3Deng"
    page = anonymous.get(first.headers["Location"])
    response = anonymous.post(
        "/console/login",
        data={
            "csrf": csrf_of(page.text),
            "username": "admin",
            "password": PASSWORD,
            "next": "/console/groups?q=eng",
        },
    )
    assert response.headers["Location"] == "/console/groups?q=eng"
    anonymous.post("/console/logout", data={"csrf": csrf_of(anonymous.get(CSRF_PAGE).text)})
    page = anonymous.get("/console/login")
    response = anonymous.post(
        "/console/login",
        data={
            "csrf": csrf_of(page.text),
            "username": "admin",
            "password": PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert response.headers["Location"] == "/console/"


def test_login_and_logout_need_the_sessions_csrf_token(anonymous, browser, admin):
    anonymous.get("/console/login")
    refused = anonymous.post(
        "/console/login", data={"csrf": "forged", "username": "admin", "password": PASSWORD}
    )
    assert refused.status_code == 400
    assert anonymous.get("/console/users").status_code == 302

    assert browser.post("/console/logout").status_code == 400
    assert browser.get(f"{DEFAULT}/users").status_code == 200
    token = csrf_of(browser.get(CSRF_PAGE).text)
    assert browser.post("/console/logout", data={"csrf": token}).status_code == 302
    assert browser.get(f"{DEFAULT}/users").status_code == 302


def test_repeated_failures_lock_out_that_address_and_username(app, admin):
    attacker = app.test_client()
    for _ in range(app.config["SCIM_CONSOLE_LOGIN_ATTEMPTS"]):
        assert log_in(attacker, "guess", REMOTE_ADDR="198.51.100.7").status_code == 401
    locked = log_in(attacker, PASSWORD, REMOTE_ADDR="198.51.100.7")
    assert locked.status_code == 429
    assert "Too many failed attempts. Try again in 15 minute(s)." in locked.text
    assert attacker.get("/console/users").status_code == 302
    # The admin at another address is not locked out by it.
    assert log_in(app.test_client(), PASSWORD, REMOTE_ADDR="203.0.113.9").status_code == 302


def cookie_of(browser: FlaskClient) -> str:
    cookie = browser.get_cookie("scim_console", path="/console")
    assert cookie is not None
    return cookie.value


def holding(app: Flask, cookie: str) -> FlaskClient:
    """Another client that sends a copy of a session cookie (as a thief, or a second tab)."""
    copy = app.test_client()
    copy.set_cookie("scim_console", cookie, path="/console")
    return copy


def signed_in(visitor: FlaskClient) -> bool:
    response = visitor.get(f"{DEFAULT}/users")
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert response.headers["Location"] == "/console/login?next=/console/t/default/users"
    return response.status_code == 200


def log_out(browser: FlaskClient) -> Any:
    return browser.post("/console/logout", data={"csrf": csrf_of(browser.get(CSRF_PAGE).text)})


def test_logout_ends_the_session_for_every_copy_of_its_cookie(app, browser, create_user):
    user = create_user()
    copy = cookie_of(browser)
    assert signed_in(holding(app, copy))  # the copy works while the session lives...
    token = csrf_of(browser.get(CSRF_PAGE).text)
    response = browser.post("/console/logout", data={"csrf": token})
    assert (response.status_code, response.headers["Location"]) == (302, "/console/login")
    stale = holding(app, copy)
    for path in ANONYMOUS_PAGES:  # ...and opens nothing once it has ended
        path = path.format(user_id=user["id"], group_id="no-such-group")
        response = stale.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/console/login?next="), path
        stale = holding(app, copy)  # the refusal cleared the cookie: send the copy again
    assert stale.post("/console/logout", data={"csrf": token}).status_code == 302
    assert not signed_in(holding(app, copy))
    assert log_in(browser).status_code == 302  # logging in again opens a new session
    assert signed_in(browser)
    assert not signed_in(holding(app, copy))


def test_logout_ends_only_that_session(app, admin):
    first, second = app.test_client(), app.test_client()
    assert log_in(first).status_code == 302 and log_in(second).status_code == 302
    assert log_out(first).status_code == 302
    assert not signed_in(first)
    assert signed_in(second)


def test_logout_on_one_instance_ends_the_session_on_every_other(database_url, app, browser):
    """Sessions live in the database: any gunicorn worker or instance sees a logout at once."""
    other = make_app(database_url)
    try:
        copy = cookie_of(browser)
        assert signed_in(holding(other, copy))
        assert log_out(browser).status_code == 302
        assert not signed_in(holding(other, copy))
    finally:
        with other.app_context():
            db.engine.dispose()


def test_get_logout_is_an_html_page_that_offers_the_button_and_ends_nothing(anonymous, browser):
    response = anonymous.get("/console/logout")
    assert (response.status_code, response.headers["Location"]) == (302, "/console/login")
    page = browser.get("/console/logout")
    assert (page.status_code, page.mimetype) == (200, "text/html")
    assert '<form class="logout-confirm" method="post" action="/console/logout">' in page.text
    assert signed_in(browser)
    assert browser.post("/console/logout", data={"csrf": csrf_of(page.text)}).status_code == 302
    assert not signed_in(browser)


def test_a_new_password_ends_existing_sessions(browser):
    assert browser.get(f"{DEFAULT}/users").status_code == 200
    store.set_password("admin", "another long password")
    assert browser.get(f"{DEFAULT}/users").status_code == 302


def test_a_new_password_ends_every_session_of_that_admin_and_only_those(app, admin):
    store.set_password("ops", "the ops admin password")
    laptop, phone, ops = app.test_client(), app.test_client(), app.test_client()
    for visitor in (laptop, phone):
        assert log_in(visitor).status_code == 302
    page = ops.get("/console/login")
    ops.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "username": "ops", "password": "the ops admin password"},
    )
    copy = cookie_of(laptop)
    result = app.test_cli_runner().invoke(
        args=["console", "set-password", "--password-stdin"], input="a brand new password\n"
    )
    assert result.exit_code == 0, result.output
    assert not signed_in(laptop) and not signed_in(phone) and not signed_in(holding(app, copy))
    assert signed_in(ops)
    assert log_in(laptop, "a brand new password").status_code == 302


def test_logout_all_command_ends_every_session(app, admin):
    store.set_password("ops", "the ops admin password")
    visitors = [app.test_client() for _ in range(3)]
    for visitor in visitors[:2]:
        assert log_in(visitor).status_code == 302
    page = visitors[2].get("/console/login")
    visitors[2].post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "username": "ops", "password": "the ops admin password"},
    )
    assert all(signed_in(visitor) for visitor in visitors)
    assert log_out(visitors[0]).status_code == 302  # already ended: not counted again
    runner = app.test_cli_runner()
    result = runner.invoke(args=["console", "logout-all"])
    assert result.exit_code == 0, result.output
    assert result.output == "Ended 2 console session(s); the admins' passwords are unchanged.\n"
    assert not any(signed_in(visitor) for visitor in visitors)
    assert runner.invoke(args=["console", "logout-all"]).output.startswith("Ended 0 console")
    assert log_in(visitors[1]).status_code == 302
    assert signed_in(visitors[1])


def test_a_session_idle_longer_than_its_lifetime_is_ended_on_the_server(app, browser):
    """The cookie's own expiry is the browser's business; a copy replayed later is refused."""
    idle = app.config["PERMANENT_SESSION_LIFETIME"]
    copy = cookie_of(browser)
    sessions = models.ConsoleSession.__table__
    db.session.execute(
        sessions.update().values(last_seen_at=utcnow() - idle + timedelta(minutes=2))
    )
    db.session.commit()
    assert signed_in(holding(app, copy))  # used within the lifetime: still open, and seen now
    db.session.execute(
        sessions.update().values(last_seen_at=utcnow() - idle - timedelta(minutes=1))
    )
    db.session.commit()
    assert not signed_in(holding(app, copy))
    assert not signed_in(browser)


def test_session_key_is_derived_from_but_not_equal_to_the_secret_key():
    env = {"SCIM_SECRET_KEY": "s" * 32}
    config = load_config(env)
    assert config["SECRET_KEY"] not in (env["SCIM_SECRET_KEY"], config["SCIM_SECRET_KEY"])
    assert load_config(env)["SECRET_KEY"] == config["SECRET_KEY"]  # the same on every instance
    assert load_config({"SCIM_SECRET_KEY": "t" * 32})["SECRET_KEY"] != config["SECRET_KEY"]


# --- separation from the SCIM API ----------------------------------------------------------


def test_scim_responses_never_carry_a_cookie_and_a_console_session_grants_no_scim_access(
    app, browser
):
    session_cookie = browser.get_cookie("scim_console", path="/console")
    assert session_cookie is not None
    cookie = f"scim_console={session_cookie.value}"
    api = app.test_client()
    refused = api.get(f"{BASE}/Users", headers={"Cookie": cookie})
    assert refused.status_code == 401
    assert "Set-Cookie" not in refused.headers
    for path in (f"{BASE}/Users", f"{BASE}/ServiceProviderConfig", "/healthz"):
        response = api.get(path, headers={"Cookie": cookie, "Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, path
        assert "Set-Cookie" not in response.headers, path


# --- the pages -----------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_pages_are_served_while_an_idp_write_holds_the_sqlite_lock(
    database_url, admin, create_user, create_group
):
    """A page only reads: on SQLite it never waits for the write lock (it began IMMEDIATE, and
    waited out the busy timeout behind every write of an initial import)."""
    user = create_user()
    group = create_group("Readers", members=[{"value": user["id"]}])
    other = make_app(database_url, SCIM_DB_TIMEOUT_SECONDS="1")
    browser = other.test_client()
    assert log_in(browser).status_code == 302
    holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for path in (
            "/console/tenants",
            "/console/t/default/",
            "/console/t/default/users",
            "/console/t/default/users?q=jane",
            f"/console/t/default/users/{user['id']}",
            "/console/t/default/groups",
            f"/console/t/default/groups/{group['id']}",
            "/console/t/default/events",
            "/console/t/default/failures",
            "/console/t/default/receivers",
        ):
            assert browser.get(path).status_code == 200, path
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        with other.app_context():
            db.engine.dispose()


def test_users_search_by_text_and_by_scim_filter(client, browser, create_user):
    create_user(
        userName="alan@example.com",
        name={"givenName": "Alan", "familyName": "Turing"},
        displayName="Alan Turing",
        emails=[{"value": "alan.turing@bletchley.example", "type": "work"}],
        externalId="a1",
    )
    create_user(
        userName="grace@example.com",
        name={"givenName": "Grace", "familyName": "Hopper"},
        displayName="Grace Hopper",
        emails=[{"value": "grace@navy.example", "type": "work"}],
        externalId="g1",
    )
    create_user(
        userName="tu@example.com",
        name={"givenName": "Tu", "familyName": "Tutu"},
        active=False,
        externalId="t1",
    )

    def search(q: str) -> tuple[list[str], str]:
        response = browser.get(f"{DEFAULT}/users", query_string={"q": q, "sort": "userName"})
        assert response.status_code == 200
        return user_names(response.text), response.text

    assert search("")[0] == ["alan@example.com", "grace@example.com", "tu@example.com"]
    assert search("TURING")[0] == ["alan@example.com"]  # the name, case-insensitively
    assert search("bletchley")[0] == ["alan@example.com"]  # an email address
    assert search("grace hopper")[0] == ["grace@example.com"]  # given and family name
    assert search("50%")[0] == []  # LIKE wildcards are text
    names, html = search('name.familyName sw "Tu" and active eq true')
    assert names == ["alan@example.com"]
    assert "Searched with the SCIM filter" in html
    names, html = search('emails[value co "navy"]')
    assert names == ["grace@example.com"]
    names, html = search("userName eq")
    assert names == []
    assert "Not a SCIM filter: Invalid filter" in html


def test_users_table_pages_and_sorts(client, browser):
    seed_users(120)
    first = browser.get(f"{DEFAULT}/users?sort=userName&order=asc")
    assert user_names(first.text)[:2] == ["user00000@example.com", "user00001@example.com"]
    assert len(user_names(first.text)) == 50
    assert "120 users" in first.text
    assert "page 1 of 3" in first.text
    last = browser.get(f"{DEFAULT}/users?sort=userName&order=asc&page=3")
    assert len(user_names(last.text)) == 20
    assert user_names(last.text)[-1] == "user00119@example.com"
    beyond = browser.get(f"{DEFAULT}/users?sort=userName&order=asc&page=99")
    assert "page 3 of 3" in beyond.text
    descending = browser.get(f"{DEFAULT}/users?sort=userName&order=desc")
    assert user_names(descending.text)[0] == "user00119@example.com"
    assert user_names(browser.get(f"{DEFAULT}/users").text)[0] == "user00000@example.com"
    newest = browser.get(f"{DEFAULT}/users?sort=lastModified&order=desc")
    assert user_names(newest.text)[0] == "user00119@example.com"
    inactive_first = browser.get(f"{DEFAULT}/users?sort=active&order=asc")
    assert user_names(inactive_first.text)[0] == "user00000@example.com"  # n % 4 == 0
    by_name = browser.get(f"{DEFAULT}/users?sort=name&order=desc")
    assert user_names(by_name.text)[0] == "user00119@example.com"


def test_user_page_shows_attributes_groups_and_timeline_but_no_password(client, browser):
    user = scim(client, "POST", "/Users", user_payload(password="s3cret-Passw0rd!"))
    scim(
        client,
        "PATCH",
        f"/Users/{user['id']}",
        patch_payload({"op": "replace", "path": "name.givenName", "value": "Janet"}),
    )
    group = scim(
        client,
        "POST",
        "/Groups",
        {"schemas": [GROUP_URN], "displayName": "Engineering", "members": [{"value": user["id"]}]},
    )
    page = browser.get(f"{DEFAULT}/users/{user['id']}")
    assert page.status_code == 200
    html = page.text
    for shown in ("jane@example.com", "Janet", "Doe", "00u1abcd2EFGH3ijk4l5", "en-US"):
        assert shown in html
    assert f'href="{DEFAULT}/groups/{group["id"]}">Engineering</a>' in html
    assert "s3cret-Passw0rd!" not in html
    assert "<dt>password</dt>" not in html  # the attribute, whatever its (hashed) value
    timeline = html.split('id="timeline"')[1].split('id="membership-changes"')[0]
    rows = re.findall(r"<tr class=\"[^\"]*\">(.*?)</tr>", timeline, re.S)
    assert len(rows) == 2
    assert "<td>patch</td>" in rows[0] and "name.givenName" in rows[0]
    assert "<td>create</td>" in rows[1] and "userName" in rows[1]
    assert "Janet" not in timeline  # names of attributes, never their values
    changes = html.split('id="membership-changes"')[1]
    assert f'href="{DEFAULT}/groups/{group["id"]}">Engineering</a>' in changes
    assert "<td>Added to</td>" in changes


def test_missing_user_or_group_is_an_html_404(browser):
    for path in (f"{DEFAULT}/users/nope", f"{DEFAULT}/groups/nope"):
        response = browser.get(path)
        assert response.status_code == 404
        assert response.mimetype == "text/html"


def test_groups_search_and_member_paging_reads_one_page_in_sql(client, browser):
    ids = seed_users(120)
    group = scim(client, "POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Big"})
    scim(client, "POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Small"})
    db.session.execute(
        insert(GroupMember),
        [{"group_id": group["id"], "member_id": i, "member_type": "User"} for i in ids],
    )
    db.session.commit()

    listing = browser.get(f"{DEFAULT}/groups?q=bi")
    assert re.findall(
        r'href="/console/t/default/groups/[0-9a-f-]{36}">([^<]+)</a>', listing.text
    ) == ["Big"]
    assert '<td class="num">120</td>' in listing.text
    by_filter = browser.get(f'{DEFAULT}/groups?q=displayName eq "small"')
    assert ">Small</a>" in by_filter.text and ">Big</a>" not in by_filter.text

    with statements() as seen:
        third = browser.get(f"{DEFAULT}/groups/{group['id']}?page=3")
    assert "120 members" in third.text and "page 3 of 3" in third.text
    assert len(user_names(third.text)) == 20
    member_reads = [s for s in seen if "group_members" in s and "count(" not in s.lower()]
    assert member_reads and all("LIMIT" in s for s in member_reads)


def test_dashboard_shows_counts_health_and_recent_events(client, browser, create_user):
    seed_users(8)  # n % 4 == 0 are inactive: 2 of 8
    user = create_user()
    scim(
        client,
        "POST",
        "/Groups",
        {"schemas": [GROUP_URN], "displayName": "Eng", "members": [{"value": user["id"]}]},
    )
    html = browser.get(f"{DEFAULT}/").text
    assert '<span class="n">7</span> active users' in html
    assert '<span class="n">2</span> inactive users' in html
    assert '<span class="n">1</span> groups' in html
    assert '<span class="n">1</span> memberships' in html
    assert "● Reachable" in html, html.split("<h2>Database</h2>")[1][:400]
    events = browser.get(f"{DEFAULT}/events").text
    assert "<td>create</td>" in events
    assert f'href="{DEFAULT}/groups/' in events


def test_a_user_whose_idp_removed_active_is_shown_without_status(client, browser, create_user):
    user = create_user()
    scim(
        client,
        "PATCH",
        f"/Users/{user['id']}",
        patch_payload({"op": "remove", "path": "active"}),
    )
    dashboard = browser.get(f"{DEFAULT}/").text
    assert '<span class="n">0</span> active users' in dashboard
    assert '<span class="n">0</span> inactive users' in dashboard
    assert '<span class="n">1</span> without status</a>' in dashboard
    no_status = '<span class="no" title="the identity provider removed active">no status</span>'
    assert no_status in browser.get(f"{DEFAULT}/users").text
    assert no_status in browser.get(f"{DEFAULT}/users/{user['id']}").text
    listing = browser.get(f"{DEFAULT}/users?q=not (active pr)").text
    assert user_names(listing) == [user["userName"]]


def test_console_pages_forbid_framing_inline_script_and_caching(browser):
    response = browser.get(f"{DEFAULT}/users")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


# --- `flask console set-password` ---------------------------------------------------------


def test_set_password_command_stores_only_a_hash(app, client, anonymous):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["console", "set-password", "--password-stdin"], input="short\n")
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    assert not store.admin_exists()

    result = runner.invoke(
        args=["console", "set-password", "--password-stdin"], input=f"{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    admin = store.get_admin("admin")
    assert admin is not None and admin.password_hash.startswith("scrypt:")
    assert PASSWORD not in admin.password_hash
    assert log_in(anonymous).status_code == 302

    result = runner.invoke(
        args=["console", "set-password", "--username", "Ops"],
        input="a prompted password\na prompted password\n",
    )
    assert result.exit_code == 0, result.output
    assert store.get_admin("ops") is not None


@pytest.mark.parametrize("query", ["endpoint=x", "_external=1", "_anchor=zz", "view_args=1"])
def test_unknown_query_parameters_never_reach_the_page_links(browser, query):
    response = browser.get(f"{DEFAULT}/users?{query}&q=jane")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "_external" not in page and "_anchor" not in page and "http://localhost" not in page
