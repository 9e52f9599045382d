"""The operator console in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) against gunicorn, on SQLite and PostgreSQL; across tenants
too (the tenants page, suspend and resume, an admin bound to one tenant, failures, membership
changes).

The SCIM side is driven over HTTP with a bearer token, as an IdP would; what it did must show up
in the console. Screenshots of the main pages land in test-artifacts/console/ (not committed).
Without Chromium the tests are skipped, except in CI (.ci/run installs it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import delete, insert

from app import tenancy
from app.auth import new_token, token_hash
from app.db import db
from app.models import ConsoleAdmin, GroupMember
from app.store import console as console_store
from app.store import tenants, tokens
from tests.conftest import TOKEN, empty_tables
from tests.net import free_port
from tests.payloads import GROUP_URN, patch_payload, user_payload
from tests.test_console import PASSWORD, seed_users
from tests.test_events_outbox import add_receiver

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)
PEOPLE = [
    ("alan.turing@example.com", "Alan", "Turing", True),
    ("grace.hopper@example.com", "Grace", "Hopper", True),
    ("ada.lovelace@example.com", "Ada", "Lovelace", True),
    ("tu.youyou@example.com", "Youyou", "Tu", False),
    ("edsger.dijkstra@example.com", "Edsger", "Dijkstra", True),
    ("barbara.liskov@example.com", "Barbara", "Liskov", True),
]


def replaced(element: WebElement) -> Callable[[WebDriver], bool]:
    """The page that held `element` has been replaced by the next one.

    Like expected_conditions.staleness_of, but chromedriver sometimes reports the detached
    node as "Node with given id does not belong to the document", a plain WebDriverException
    (StaleElementReferenceException is one too).
    """

    def check(driver: WebDriver) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:
            return True
        return False

    return check


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {', '.join(missing)} is missing (.ci/run installs chromium)")
    pytest.skip(
        "Chromium is not installed (apt-get install chromium chromium-driver); "
        "the console's browser tests run in CI"
    )


def _service_env(database_url: str, port: int) -> dict[str, str]:
    # Every variable .env.example names is set, so a developer's .env cannot leak in.
    names = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("SCIM_")}
    env.update(dict.fromkeys(names, ""))
    env.update(
        DATABASE_URL=database_url,
        SCIM_TOKEN_HASHES=token_hash(TOKEN),
        SCIM_SECRET_KEY="console-browser-test-secret-key",
        SCIM_BIND=f"127.0.0.1:{port}",
        SCIM_WORKERS="1",
        SCIM_THREADS="4",
    )
    return env


@pytest.fixture(scope="module")
def server(
    app: Flask, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """gunicorn on the test database (whose tables the `app` fixture created)."""
    _browser_or_skip()
    port = free_port()
    log = tmp_path_factory.mktemp("console-gunicorn") / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=_service_env(database_url, port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not _answers(f"{base}/healthz"):
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"gunicorn did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    _browser_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture
def console(server: str, driver: WebDriver, client: Any) -> Iterator[Console]:
    """Empty tables, an admin password, and a browser without a session; `client` empties the
    tables again afterwards. (Emptied first too: a test elsewhere may have left rows behind.)"""
    empty_tables()
    console_store.set_password("admin", PASSWORD)
    driver.delete_all_cookies()
    yield Console(server, driver)


class Console:
    def __init__(self, base: str, driver: WebDriver):
        self.base, self.driver = base, driver

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def wait(self, condition: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
        return WebDriverWait(self.driver, timeout).until(condition)

    def log_in(self, password: str = PASSWORD, username: str | None = None) -> None:
        self.open("/console/")
        self.wait(expected_conditions.url_contains("/console/login"))
        if username is not None:
            field = self.driver.find_element(By.NAME, "username")
            field.clear()
            field.send_keys(username)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        submit = self.driver.find_element(By.CSS_SELECTOR, "form.login button")
        submit.click()
        self.wait(replaced(submit))

    def search(self, text: str) -> list[str]:
        box = self.driver.find_element(By.NAME, "q")
        box.clear()
        box.send_keys(text)
        button = self.driver.find_element(By.CSS_SELECTOR, "form.search button")
        button.click()
        self.wait(replaced(button))
        return self.user_names()

    def user_names(self) -> list[str]:
        # One round trip for the whole column, not one per link.
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#users tbody td:first-child a'),"
            " a => a.textContent)"
        )

    def text(self, selector: str = "main") -> str:
        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def screenshot(self, name: str) -> None:
        self.driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def api(self, method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
        """A SCIM request with the bearer token, as an IdP sends it."""
        with urllib.request.urlopen(self._request(method, path, body, token), timeout=30) as r:
            assert "Set-Cookie" not in r.headers  # SCIM clients never get a cookie
            raw = r.read()
        return json.loads(raw) if raw else None

    def refused(self, method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
        """A SCIM request that must be refused: its status and SCIM error body."""
        try:
            urllib.request.urlopen(self._request(method, path, body, token), timeout=30).close()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read())
        pytest.fail(f"{method} {path} was not refused")

    def _request(self, method: str, path: str, body: Any, token: str) -> urllib.request.Request:
        return urllib.request.Request(
            f"{self.base}/scim/v2{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
        )

    def provision_people(self) -> dict[str, str]:
        ids = {}
        for user_name, given, family, active in PEOPLE:
            body = user_payload(
                userName=user_name,
                name={"givenName": given, "familyName": family},
                displayName=f"{given} {family}",
                emails=[{"value": user_name, "type": "work", "primary": True}],
                externalId=f"00u{zlib.crc32(user_name.encode()):010d}",
                active=active,
            )
            ids[user_name] = self.api("POST", "/Users", body)["id"]
        return ids


def test_a_wrong_password_is_refused(console):
    console.log_in("not the password")
    assert console.driver.current_url.startswith(f"{console.base}/console/login")
    assert console.text(".error") == "Wrong username or password."
    console.screenshot("login-refused")
    console.open("/console/users")
    assert "/console/login" in console.driver.current_url  # still no session


def test_log_in_and_watch_a_user_created_through_the_scim_api_appear(console):
    console.log_in()
    # A global admin lands on the tenants page; the default tenant's dashboard is one click on.
    assert console.driver.current_url == f"{console.base}/console/tenants"
    console.driver.find_element(By.LINK_TEXT, "Default").click()
    console.wait(expected_conditions.url_to_be(f"{console.base}/console/t/default/"))
    assert "Dashboard" in console.text("h1")
    # The dashboard's event list reloads itself (console.js): the create shows up unasked.
    user = console.api("POST", "/Users", user_payload(userName="new.hire@example.com"))
    console.wait(lambda d: f"User {user['id'][:8]}" in d.find_element(By.ID, "events").text)
    console.open("/console/users")
    assert console.user_names() == ["new.hire@example.com"]
    # Logging out ends the session.
    console.driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    console.wait(expected_conditions.url_contains("/console/login"))
    console.open("/console/users")
    assert "/console/login" in console.driver.current_url


def test_logout_ends_the_session_even_for_a_copy_of_its_cookie(console):
    console.log_in()
    copy = console.driver.get_cookie("scim_console")
    assert copy is not None
    console.driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    console.wait(expected_conditions.url_contains("/console/login"))
    # Put the cookie from before the logout back, as someone who had copied it would.
    console.driver.add_cookie({k: copy[k] for k in ("name", "value", "path", "httpOnly")})
    console.open("/console/users")
    assert console.driver.current_url.startswith(f"{console.base}/console/login")
    assert console.driver.find_element(By.NAME, "password").is_displayed()
    assert "Users" not in console.text("h1")


def test_the_logout_address_opened_by_hand_offers_the_button(console):
    console.log_in()
    console.open("/console/logout")
    assert console.text("h1") == "Log out"
    console.screenshot("logout")
    button = console.driver.find_element(By.CSS_SELECTOR, "main form.logout-confirm button")
    button.click()
    console.wait(replaced(button))
    assert console.driver.current_url == f"{console.base}/console/login"
    console.open("/console/logout")  # signed out: the login page, never an API error
    assert console.driver.current_url == f"{console.base}/console/login"


def test_before_a_password_is_set_the_console_says_how_to_switch_it_on(console):
    db.session.execute(delete(ConsoleAdmin))
    db.session.commit()
    console.open("/")
    assert console.driver.current_url == f"{console.base}/console/"
    assert console.text("h1") == "The console is not switched on"
    assert "flask --app wsgi console set-password" in console.text()
    assert "/scim/v2" in console.text()
    console.screenshot("not-set-up")
    console.open("/console/users")
    assert console.text("h1") == "The console is not switched on"
    console_store.set_password("admin", PASSWORD)
    console.open("/")
    assert console.driver.current_url.startswith(f"{console.base}/console/login")


def test_search_users_by_text_and_by_scim_filter(console):
    console.provision_people()
    console.log_in()
    console.open("/console/users")
    assert console.user_names() == sorted(p[0] for p in PEOPLE)
    assert console.search("turing") == ["alan.turing@example.com"]
    assert console.search("GRACE HOPPER") == ["grace.hopper@example.com"]
    assert console.search('name.familyName sw "Tu" and active eq true') == [
        "alan.turing@example.com"
    ]
    assert "Searched with the SCIM filter" in console.text(".mode")
    assert console.search("active eq false") == ["tu.youyou@example.com"]
    console.search('emails[value ew "@example.com"] and name.givenName sw "a"')
    console.screenshot("users-search")


def test_user_timeline_shows_what_the_idp_did_after_a_patch(console):
    ids = console.provision_people()
    ada = ids["ada.lovelace@example.com"]
    console.api(
        "PATCH",
        f"/Users/{ada}",
        patch_payload({"op": "replace", "path": "name.givenName", "value": "Augusta Ada"}),
    )
    group = console.api(
        "POST",
        "/Groups",
        {"schemas": [GROUP_URN], "displayName": "Analytical Engines", "members": [{"value": ada}]},
    )
    console.log_in()
    console.open("/console/users?sort=userName")
    console.driver.find_element(By.LINK_TEXT, "ada.lovelace@example.com").click()
    console.wait(expected_conditions.url_contains(f"/console/t/default/users/{ada}"))
    assert "Augusta Ada" in console.text(".attributes")
    assert console.driver.find_element(By.LINK_TEXT, "Analytical Engines")
    rows = console.driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[3].text for row in rows] == ["patch", "create"]
    assert "name.givenName" in rows[0].text
    assert "Augusta" not in console.text("#timeline")  # attribute names, never values
    console.screenshot("user")
    console.driver.find_element(By.LINK_TEXT, "Analytical Engines").click()
    console.wait(expected_conditions.url_contains(f"/console/t/default/groups/{group['id']}"))
    assert "1 member" in console.text(".pager")
    console.open("/console/t/default/")
    console.screenshot("dashboard")


def test_page_through_1000_users_and_a_1000_member_group(console):
    ids = seed_users(1000)
    group = console.api("POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Everyone"})
    db.session.execute(
        insert(GroupMember),
        [{"group_id": group["id"], "member_id": i, "member_type": "User"} for i in ids],
    )
    db.session.commit()
    console.log_in()
    console.open("/console/users?sort=userName")
    assert "1,000 users · page 1 of 20" in console.text(".pager")
    console.screenshot("users")
    seen: list[str] = []
    while True:
        seen += console.user_names()
        following = console.driver.find_elements(By.CSS_SELECTOR, ".pager a[rel=next]")
        if not following:
            break
        following[0].click()
        console.wait(replaced(following[0]))
    assert seen == [f"user{n:05d}@example.com" for n in range(1000)]
    assert "page 20 of 20" in console.text(".pager")

    console.open(f"/console/groups/{group['id']}")
    assert "1,000 members · page 1 of 20" in console.text(".pager")
    console.driver.find_element(By.LINK_TEXT, "Last »").click()
    console.wait(lambda d: "page 20 of 20" in d.find_element(By.CSS_SELECTOR, ".pager").text)
    assert len(console.driver.find_elements(By.CSS_SELECTOR, "#members tbody tr")) == 50
    console.screenshot("group")
    # Readable on a phone: the same page at a phone's width.
    console.driver.set_window_size(390, 844)
    try:
        console.open("/console/users")
        console.screenshot("users-phone")
    finally:
        console.driver.set_window_size(1280, 900)


# --- Tenants (issue 15) ----------------------------------------------------------------------


def new_tenant(slug: str) -> tuple[int, str]:
    """A tenant and a token of its own, made as `flask tenants create` and `tokens create` do."""
    tenant = tenants.create(slug, name=slug.capitalize())
    token = new_token()
    with tenancy.entered(tenant.id):
        tokens.create(f"{slug}-idp", token_hash(token))
    return tenant.id, token


def test_a_global_admin_sees_two_tenants_and_suspends_and_resumes_one(console):
    _, acme = new_tenant("acme")
    _, globex = new_tenant("globex")
    console.api("POST", "/Users", user_payload(userName="ada@acme.example"), token=acme)
    console.api("POST", "/Users", user_payload(userName="ada@globex.example"), token=globex)
    console.log_in()
    assert console.driver.current_url == f"{console.base}/console/tenants"
    rows = console.driver.find_elements(By.CSS_SELECTOR, "#tenants tbody tr")
    assert [row.get_attribute("data-slug") for row in rows] == ["acme", "default", "globex"]
    acme_row = console.driver.find_element(By.CSS_SELECTOR, 'tr[data-slug="acme"]')
    assert acme_row.find_elements(By.TAG_NAME, "td")[2].text == "1"  # one user
    assert acme_row.find_elements(By.TAG_NAME, "td")[6].text == "0.0% (0 of 1)"
    console.screenshot("tenants")

    button = acme_row.find_element(By.CSS_SELECTOR, "form.state-change button")
    assert button.text == "Suspend"
    button.click()
    console.wait(replaced(button))
    acme_row = console.driver.find_element(By.CSS_SELECTOR, 'tr[data-slug="acme"]')
    assert acme_row.find_element(By.CSS_SELECTOR, ".state").text == "suspended"
    status, body = console.refused("GET", "/Users", token=acme)
    assert status == 403 and "'acme' is suspended" in body["detail"]
    assert console.api("GET", "/Users", token=globex)["totalResults"] == 1
    console.screenshot("tenants-suspended")

    button = acme_row.find_element(By.CSS_SELECTOR, "form.state-change button")
    assert button.text == "Resume"
    button.click()
    console.wait(replaced(button))
    acme_row = console.driver.find_element(By.CSS_SELECTOR, 'tr[data-slug="acme"]')
    assert acme_row.find_element(By.CSS_SELECTOR, ".state").text == "active"
    assert console.api("GET", "/Users", token=acme)["totalResults"] == 1
    # Each tenant's pages show that tenant's users.
    acme_row.find_element(By.LINK_TEXT, "Acme").click()
    console.wait(expected_conditions.url_to_be(f"{console.base}/console/t/acme/"))
    console.open("/console/t/acme/users")
    assert console.user_names() == ["ada@acme.example"]


def test_a_tenant_bound_admin_sees_only_their_tenant(console):
    acme_id, acme = new_tenant("acme")
    _, globex = new_tenant("globex")
    console.api("POST", "/Users", user_payload(userName="ada@acme.example"), token=acme)
    other = console.api("POST", "/Users", user_payload(userName="ada@globex.example"), token=globex)
    console_store.set_password("acme-it", "acme admin password", tenant_id=acme_id)
    console.log_in("acme admin password", username="acme-it")
    assert console.driver.current_url == f"{console.base}/console/t/acme/"
    assert console.driver.find_element(By.CSS_SELECTOR, ".bar .tenant").text == "Acme"
    assert not console.driver.find_elements(By.LINK_TEXT, "Tenants")
    console.open("/console/t/acme/users")
    assert console.user_names() == ["ada@acme.example"]
    for path in (
        "/console/t/globex/users",
        f"/console/t/globex/users/{other['id']}",
        f"/console/t/acme/users/{other['id']}",
        "/console/tenants",
    ):
        console.open(path)
        assert console.text("h1") == "404", path
        assert "globex" not in console.text().lower(), path
    console.screenshot("bound-admin-404")


def test_a_failed_requests_scim_detail_is_visible(console):
    console.api("POST", "/Users", user_payload(userName="ada@example.com"))
    status, body = console.refused("POST", "/Users", user_payload(userName="ADA@example.com"))
    assert status == 409
    console.log_in()
    console.open("/console/t/default/failures")
    rows = console.driver.find_elements(By.CSS_SELECTOR, "#failures tbody tr")
    assert len(rows) == 1
    error = rows[0].find_element(By.CSS_SELECTOR, ".scim-error")
    assert error.text == f"uniqueness {body['detail']}"
    assert rows[0].find_elements(By.TAG_NAME, "td")[6].text.startswith("409")
    assert console.driver.find_element(By.CSS_SELECTOR, "#chart svg").is_displayed()
    assert "2 requests, 1 failed in the last 72 hours" in console.text("#chart figcaption")
    console.screenshot("failures")
    console.open("/console/t/default/")
    events = console.driver.find_element(By.ID, "events")
    assert body["detail"] in events.text


def test_a_users_timeline_shows_a_membership_change_made_by_a_group_patch(console):
    ids = console.provision_people()
    ada = ids["ada.lovelace@example.com"]
    group = console.api("POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Poets"})
    console.api(
        "PATCH",
        f"/Groups/{group['id']}",
        patch_payload({"op": "add", "path": "members", "value": [{"value": ada}]}),
    )
    console.log_in()
    console.open(f"/console/t/default/users/{ada}")
    rows = console.driver.find_elements(By.CSS_SELECTOR, "#membership-changes tbody tr")
    assert len(rows) == 1
    cells = [cell.text for cell in rows[0].find_elements(By.TAG_NAME, "td")]
    assert cells[1:3] == ["Added to", "Poets"]
    console.screenshot("user-membership-changes")
    rows[0].find_element(By.LINK_TEXT, "Poets").click()
    console.wait(expected_conditions.url_contains(f"/console/t/default/groups/{group['id']}"))
    assert "1 member" in console.text(".pager")


def test_change_events_show_per_receiver_and_beside_the_request_that_emitted_them(console):
    add_receiver("crm")  # the service writes its deliveries: the worker is not running
    ada = console.provision_people()["ada.lovelace@example.com"]
    console.api(
        "PATCH", f"/Users/{ada}", patch_payload({"op": "replace", "path": "active", "value": False})
    )
    console.log_in()
    console.open("/console/t/default/")
    console.driver.find_element(By.LINK_TEXT, "Change events").click()
    console.wait(expected_conditions.url_contains("/console/t/default/receivers"))
    (row,) = console.driver.find_elements(By.CSS_SELECTOR, "#receivers tbody tr")
    pending = int(row.find_element(By.CSS_SELECTOR, "td.pending").text)
    assert pending >= 2  # at least ada's create and her deactivation, none delivered yet
    assert row.find_element(By.CSS_SELECTOR, "td.delivered").text == "0"
    assert "ago" in row.find_element(By.CSS_SELECTOR, "td.oldest").text
    console.screenshot("receivers")
    console.open(f"/console/t/default/users/{ada}")
    cells = console.driver.find_elements(By.CSS_SELECTOR, "#timeline td.emitted")
    assert [cell.text.split("\n")[0] for cell in cells[:2]] == [
        "patch + deactivate 1 pending",
        "create + activate 1 pending",
    ]
    console.screenshot("user-change-events")
