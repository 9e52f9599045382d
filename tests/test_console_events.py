"""The console's view of change events (issue 17), on both databases: per receiver, how its
deliveries stand (delivered, pending, failing, dead, the oldest pending, the last error), and
on a user's or a group's timeline, the events each request emitted beside that request."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from app import tenancy
from app.db import db, utcnow
from app.models import EventDelivery, EventReceiver
from app.store import console as console_store
from app.store import tenants
from tests.payloads import GROUP_URN, patch_payload, user_payload
from tests.test_console import PASSWORD, log_in, scim
from tests.test_events_outbox import add_receiver

DEFAULT = "/console/t/default"


@pytest.fixture
def browser(app: Flask, client: FlaskClient) -> FlaskClient:
    """A global admin, signed in (`client` empties every table afterwards)."""
    console_store.set_password("admin", PASSWORD)
    browser = app.test_client()
    assert log_in(browser).status_code == 302
    return browser


def receiver_rows(page: str) -> dict[str, dict[str, str]]:
    """The receivers table: per receiver name, each cell's text by its class."""
    rows = {}
    for name, row in re.findall(r'<tr data-receiver="([^"]+)"[^>]*>(.*?)</tr>', page, re.S):
        cells = re.findall(r'<td class="[^"]*?(\w[\w-]*)">(.*?)</td>', row, re.S)
        rows[html.unescape(name)] = {
            key: html.unescape(" ".join(re.sub(r"<[^>]+>", " ", value).split()))
            for key, value in cells
        }
    return rows


def set_deliveries(receiver: EventReceiver, **columns: Any) -> None:
    """Every delivery of one receiver takes these values (what the worker would have done)."""
    db.session.execute(
        update(EventDelivery).where(EventDelivery.receiver_id == receiver.id).values(**columns)
    )
    db.session.commit()


def test_with_no_receiver_the_page_says_how_to_add_one(browser):
    page = browser.get(f"{DEFAULT}/receivers")
    assert page.status_code == 200
    assert "No receivers." in page.text
    assert "flask events receivers add NAME --tenant default --url URL" in page.text
    assert '<a href="/console/t/default/receivers" aria-current="page">Change events</a>' in (
        page.text
    )


def test_each_receiver_shows_delivered_pending_failing_dead_oldest_and_last_error(
    client, browser, create_user
):
    app_receiver = add_receiver("app")
    poller = add_receiver("audit-poller", delivery="poll", url=None, full=True)
    first = create_user(userName="ada@example.com")
    second = create_user(userName="grace@example.com")
    create_user(userName="linus@example.com")
    # The worker's outcomes: for "app", the first user's event delivered, the second's tried
    # and failed (still pending), the third's pending; the poller's all dead.
    set_deliveries(poller, state="dead", last_error="max age")
    poller.enabled = False  # since: it keeps what it was owed
    tried = utcnow() - timedelta(minutes=5)
    db.session.execute(
        update(EventDelivery)
        .where(EventDelivery.receiver_id == app_receiver.id)
        .where(EventDelivery.resource_id == first["id"])
        .values(state="delivered", attempts=1, delivered_at=tried)
    )
    db.session.execute(
        update(EventDelivery)
        .where(EventDelivery.receiver_id == app_receiver.id)
        .where(EventDelivery.resource_id == second["id"])
        .values(attempts=3, last_attempt_at=tried, last_error="HTTP 503 <b>down</b>")
    )
    db.session.execute(
        update(EventDelivery)
        .where(EventDelivery.receiver_id == app_receiver.id)
        .values(created_at=utcnow() - timedelta(hours=3))
    )
    db.session.commit()

    page = browser.get(f"{DEFAULT}/receivers")
    assert page.status_code == 200
    rows = receiver_rows(page.text)
    assert list(rows) == ["app", "audit-poller"]  # by name
    app_row, poller_row = rows["app"], rows["audit-poller"]
    assert (app_row["delivered"], app_row["pending"], app_row["failing"], app_row["dead"]) == (
        "1",
        "2",
        "1",
        "0",
    )
    assert app_row["oldest"].endswith("(3 h ago)")
    # The receiver's error, escaped: it quotes what the receiver answered.
    assert app_row["last-error"].startswith("HTTP 503 <b>down</b> ")
    assert "HTTP 503 &lt;b&gt;down&lt;/b&gt;" in page.text
    assert "push to <code>https://app.example/events</code>" in page.text
    assert (poller_row["delivered"], poller_row["pending"], poller_row["dead"]) == ("0", "0", "3")
    assert poller_row["oldest"] == "—"
    assert f"/events/receivers/{poller.id}/poll" in page.text
    assert f'href="/events/receivers/{app_receiver.id}/jwks.json"' in page.text
    row_html = dict(re.findall(r'<tr data-receiver="([^"]+)".*?>(.*?)</tr>', page.text, re.S))
    assert '<span class="state suspended">disabled</span>' in row_html["audit-poller"]
    assert "disabled" not in row_html["app"]


def test_a_tenant_sees_only_its_own_receivers(
    client, browser, tenant_client: Callable[[str], FlaskClient]
):
    add_receiver("default-app")
    acme = tenant_client("acme")
    with tenancy.entered(tenants.by_slug("acme").id):
        add_receiver("acme-app")
    scim(acme, "POST", "/Users", user_payload(userName="ada@example.com"))

    assert list(receiver_rows(browser.get(f"{DEFAULT}/receivers").text)) == ["default-app"]
    rows = receiver_rows(browser.get("/console/t/acme/receivers").text)
    assert list(rows) == ["acme-app"]
    assert rows["acme-app"]["pending"] == "1"


def timeline_cells(page: str) -> list[str]:
    """The timeline's change-event cells, newest request first, as plain text."""
    timeline = page.split('id="timeline"')[1].split("</table>")[0]
    cells = re.findall(r'<td class="emitted">(.*?)</td>', timeline, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells]


def test_a_users_timeline_shows_the_events_each_request_emitted_and_their_deliveries(
    client, browser
):
    receiver = add_receiver("app")
    user = scim(client, "POST", "/Users", user_payload())
    set_deliveries(receiver, state="delivered")
    scim(
        client,
        "PATCH",
        f"/Users/{user['id']}",
        patch_payload({"op": "replace", "path": "active", "value": False}),
    )
    # A request that changed nothing: refused, it emitted no event.
    with client.open(
        f"/scim/v2/Users/{user['id']}",
        method="PATCH",
        json=patch_payload({"op": "replace", "path": "nosuch", "value": 1}),
    ) as refused:
        assert refused.status_code == 400

    page = browser.get(f"{DEFAULT}/users/{user['id']}")
    assert page.status_code == 200
    assert timeline_cells(page.text) == [
        "",
        "patch + deactivate 1 pending",
        "create + activate 1 delivered",  # created active: RFC 9967 says so too
    ]
    assert re.search(r'title="jti [0-9a-f-]+; attributes active"', page.text)


def test_without_receivers_the_events_are_shown_with_no_receiver(client, browser):
    user = scim(client, "POST", "/Users", user_payload())
    page = browser.get(f"{DEFAULT}/users/{user['id']}")
    assert timeline_cells(page.text) == ["create + activate no receiver"]


def test_a_groups_timeline_shows_its_membership_events(client, browser):
    add_receiver("app")
    user = scim(client, "POST", "/Users", user_payload())
    group = scim(client, "POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Eng"})
    scim(
        client,
        "PATCH",
        f"/Groups/{group['id']}",
        patch_payload({"op": "add", "path": "members", "value": [{"value": user["id"]}]}),
    )
    page = browser.get(f"{DEFAULT}/groups/{group['id']}").text
    section = page.split("Provisioning timeline")[1]
    cells = [
        " ".join(re.sub(r"<[^>]+>", " ", cell).split())
        for cell in re.findall(r'<td class="emitted">(.*?)</td>', section, re.S)
    ]
    assert cells == ["patch 1 pending", "create 1 pending"]
    assert 'attributes members"' in section
