"""The console's plain-text search through its pages, on both databases: what it finds, in
which tenant, after which writes, and how it counts (issue 16: trigram indexes on PostgreSQL,
FTS5 tables on SQLite, app/models.py; the LIKE it replaced decides what matches)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, text

from app import tenancy
from app.db import db
from app.models import SEARCH_BACKLOG_FOLDED_EVERY, SEARCH_INDEX_NAMES_POSTGRESQL
from app.store import console as store
from app.store import search_backlog
from tests.payloads import BASE, GROUP_URN, patch_payload, user_payload
from tests.test_console import PASSWORD, log_in, seed_users, user_names

DEFAULT = "/console/t/default"

ADA = user_payload(
    userName="ada@example.com",
    name={"givenName": "Ada", "familyName": "Lovelace"},
    displayName="Countess of Lovelace",
    emails=[
        {"value": "ada.work@analytical.example", "type": "work", "primary": True},
        {"value": "ADA.Home@Engine.Example", "type": "home"},
    ],
    externalId="ada",
)
GRACE = user_payload(
    userName="grace@example.com",
    name={"givenName": "Grace", "familyName": "Hopper"},
    displayName="Amazing Grace",
    emails=[{"value": "grace@navy.example", "type": "work"}],
    externalId="grace",
)
JURGEN = user_payload(
    userName="jürgen@example.com",
    name={"givenName": "Jürgen", "familyName": "Straße"},
    displayName="J. S.",
    emails=[{"value": "js@bahn.example", "type": "work"}],
    externalId="jurgen",
)
# Deleted: its tombstone stays in the table, and out of every search.
ZEBEDEE = user_payload(
    userName="zebedee@example.com",
    name={"givenName": "Zebedee", "familyName": "Tombstone"},
    displayName="Zebedee Tombstone",
    emails=[{"value": "zebedee@gone.example", "type": "work"}],
    externalId="zebedee",
)
# Another tenant's user with Ada's names, and text of its own.
ACME_ADA = user_payload(
    userName="ada@example.com",
    name={"givenName": "Ada", "familyName": "Lovelace"},
    displayName="Acme's Ada",
    emails=[{"value": "ada@acme-only.example", "type": "work"}],
    externalId="acme-ada",
)


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def browser(app: Flask, client: FlaskClient) -> FlaskClient:
    """A global admin's console session (`client` empties every table afterwards)."""
    store.set_password("admin", PASSWORD)
    browser = app.test_client()
    assert log_in(browser).status_code == 302
    return browser


def created(client: FlaskClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{BASE}{path}", json=body)
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def directory(
    client: FlaskClient, tenant_client: Callable[[str], FlaskClient]
) -> dict[str, dict[str, Any]]:
    """Ada, Grace and Jürgen in the default tenant; Zebedee deleted there; Ada's namesake in
    tenant acme."""
    users = {body["externalId"]: created(client, "/Users", body) for body in (ADA, GRACE, JURGEN)}
    zebedee = created(client, "/Users", ZEBEDEE)
    assert client.delete(f"{BASE}/Users/{zebedee['id']}").status_code == 204
    created(tenant_client("acme"), "/Users", ACME_ADA)
    return users


def found(browser: FlaskClient, q: str, tenant: str = "default") -> list[str]:
    """The userNames the users page lists for the search text, in userName order."""
    response = browser.get(f"/console/t/{tenant}/users", query_string={"q": q})
    assert response.status_code == 200
    assert "Searched with the SCIM filter" not in response.text
    return user_names(response.text)


def listed_groups(browser: FlaskClient, q: str) -> list[str]:
    response = browser.get(f"{DEFAULT}/groups", query_string={"q": q})
    assert response.status_code == 200
    link = r'<a href="/console/t/default/groups/[0-9a-f-]{36}">([^<]+)</a>'
    return re.findall(link, response.text)


def skip_unless_sqlite() -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's trigram indexes are written with their rows: no backlog")


def fold_search_backlog() -> None:
    """Write SQLite's backlog into its FTS5 tables now, as the write that fills it does."""
    skip_unless_sqlite()
    search_backlog.fold(db.session.connection())
    db.session.commit()


def backlog() -> int:
    return db.session.scalar(text("SELECT count(*) FROM search_backlog"))


def count_line(html: str) -> str:
    match = re.search(r'<span class="count">(.*?)</span>', html, re.S)
    assert match, "no count in the page"
    return " ".join(match.group(1).split())


# --- what a search finds -------------------------------------------------------------------

ADA_, GRACE_, JURGEN_ = "ada@example.com", "grace@example.com", "jürgen@example.com"


SEARCHES = [
    pytest.param("LOVELACE", [ADA_], id="family-name-uppercase"),
    pytest.param("countess", [ADA_], id="display-name"),
    pytest.param("of Love", [ADA_], id="display-name-with-space"),
    pytest.param("ada lov", [ADA_], id="given-and-family-across-the-space"),
    pytest.param("Grace@EX", [GRACE_], id="user-name-mixed-case"),
    pytest.param("analytical", [ADA_], id="email"),
    pytest.param("engine.EXAMPLE", [ADA_], id="second-email-any-case"),
    pytest.param("navy.example", [GRACE_], id="email-domain"),
    pytest.param("opp", [GRACE_], id="three-characters"),
    pytest.param("STRASSE", [JURGEN_], id="unicode-fold-sharp-s"),
    pytest.param("JÜRGEN", [JURGEN_], id="unicode-uppercase"),
    pytest.param("ng", [ADA_, GRACE_], id="two-characters"),
    pytest.param("z", [GRACE_], id="one-character"),
    # One character that folds to two: "ss", in Straße and in Countess.
    pytest.param("ß", [ADA_, JURGEN_], id="one-character-folding-to-two"),
    pytest.param("example", [ADA_, GRACE_, JURGEN_], id="everyone"),
    pytest.param("zebedee", [], id="a-deleted-users-name"),
    pytest.param("gone.example", [], id="a-deleted-users-email"),
    pytest.param("acme-only", [], id="another-tenants-email"),
    pytest.param("acme's", [], id="another-tenants-display-name"),
    pytest.param("a_a", [], id="underscore-is-text"),
    pytest.param("%", [], id="percent-is-text"),
    pytest.param("e%e", [], id="percent-is-text-in-three"),
    pytest.param('lovelace"', [], id="double-quote"),
    pytest.param("a\\d", [], id="backslash"),
    pytest.param("lovelacex", [], id="no-match"),
]


@pytest.mark.parametrize(("q", "expected"), SEARCHES)
def test_text_search_finds_a_substring_of_each_field_case_insensitively(
    browser, directory, q, expected
):
    assert found(browser, q) == expected


@pytest.mark.parametrize(("q", "expected"), SEARCHES)
def test_text_search_finds_the_same_once_sqlites_backlog_is_folded(browser, directory, q, expected):
    fold_search_backlog()
    assert found(browser, q) == expected


def test_text_search_stays_in_its_tenant(browser, directory):
    assert found(browser, "lovelace", tenant="acme") == [ADA_]
    assert found(browser, "acme-only", tenant="acme") == [ADA_]
    assert found(browser, "analytical", tenant="acme") == []
    assert found(browser, "grace", tenant="acme") == []


# SQLite's FTS5 tables lag the rows by up to a thousand changes (app/models.py): a search must
# find every change whether its row is in the backlog only, folded into the tables, or both
# (the tables holding the row as it was before the change).
FOLDING = ["backlog-only", "folded-after-each-write", "folded-before-each-write"]


@pytest.fixture(params=FOLDING)
def written(request: pytest.FixtureRequest, client: FlaskClient) -> Callable[..., int]:
    """Send a write (method, path, body) and say its status, folding SQLite's backlog before
    or after it, or never."""
    if request.param != "backlog-only":
        skip_unless_sqlite()

    def write(method: str, path: str, body: dict[str, Any] | None = None) -> int:
        if request.param == "folded-before-each-write":
            fold_search_backlog()
        status = client.open(f"{BASE}{path}", method=method, json=body).status_code
        if request.param == "folded-after-each-write":
            fold_search_backlog()
        return status

    return write


def test_text_search_follows_every_write(client, browser, written):
    user = created(client, "/Users", ADA)
    url = f"/Users/{user['id']}"
    rename = patch_payload({"op": "replace", "path": "name.familyName", "value": "Byron"})
    assert written("PATCH", url, rename) == 200
    assert found(browser, "byron") == [ADA_]
    assert found(browser, "ada lov") == []
    assert found(browser, "Countess of Lovelace") == [ADA_]  # the displayName is unchanged
    replaced = dict(ADA, displayName="Ada King", emails=[{"value": "ada@new.example"}])
    assert written("PUT", url, replaced) == 200
    assert found(browser, "new.example") == [ADA_]
    assert found(browser, "analytical") == []
    assert found(browser, "countess") == []
    assert found(browser, "ada king") == [ADA_]
    renamed = patch_payload({"op": "replace", "path": "userName", "value": "Countess@Example.com"})
    assert written("PATCH", url, renamed) == 200
    assert found(browser, "countess") == ["Countess@Example.com"]
    assert written("DELETE", url) == 204
    assert found(browser, "countess") == []
    assert found(browser, "new.example") == []
    # The same userName again is a new user, found by its own text only.
    assert written("POST", "/Users", dict(GRACE, userName="Countess@Example.com")) == 201
    assert found(browser, "countess") == ["Countess@Example.com"]
    assert found(browser, "ada king") == []


def test_group_search_finds_a_substring_case_insensitively(client, browser, written):
    for name in ("Engineering", "Sales EMEA", "Straße Team"):
        assert written("POST", "/Groups", {"schemas": [GROUP_URN], "displayName": name}) == 201
    gone = created(client, "/Groups", {"schemas": [GROUP_URN], "displayName": "Old Engines"})
    assert written("DELETE", f"/Groups/{gone['id']}") == 204
    renamed = created(client, "/Groups", {"schemas": [GROUP_URN], "displayName": "Marketing"})
    rename = patch_payload({"op": "replace", "path": "displayName", "value": "Brand"})
    assert written("PATCH", f"/Groups/{renamed['id']}", rename) == 204
    assert listed_groups(browser, "market") == []
    assert listed_groups(browser, "brand") == ["Brand"]
    assert listed_groups(browser, "ENGINE") == ["Engineering"]
    assert listed_groups(browser, "es em") == ["Sales EMEA"]
    assert listed_groups(browser, "strasse") == ["Straße Team"]
    assert listed_groups(browser, "in") == ["Engineering"]
    assert listed_groups(browser, "s") == ["Sales EMEA", "Straße Team"]
    assert listed_groups(browser, "old") == []
    assert listed_groups(browser, "e_e") == []


def test_a_sqlite_write_that_fills_the_backlog_folds_it_into_the_search_tables(client, browser):
    """400 users, each a user row and an email address: 800 changes, which wait in the backlog;
    100 more bring it to 1,000, and their transaction folds all of it into the FTS5 tables."""
    skip_unless_sqlite()

    def indexed() -> int:
        tables = ("users_search", "user_values_search")
        return sum(db.session.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables)

    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        seed_users(400)
    assert (backlog(), indexed()) == (800, 0)
    assert found(browser, "user00399@") == ["user00399@example.com"]  # from the backlog
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        seed_users(100, start=400)
    assert (backlog(), indexed()) == (0, SEARCH_BACKLOG_FOLDED_EVERY)
    assert found(browser, "user00000@") == ["user00000@example.com"]  # from the tables
    assert found(browser, "family00450") == ["user00450@example.com"]
    # A SCIM write adds to the emptied backlog; a read adds nothing and folds nothing.
    user = created(client, "/Users", GRACE)
    assert client.get(f"{BASE}/Users/{user['id']}").status_code == 200
    assert (backlog(), indexed()) == (2, SEARCH_BACKLOG_FOLDED_EVERY)
    assert found(browser, "navy.example") == [GRACE_]


# --- how a search counts -------------------------------------------------------------------


def test_a_search_counts_its_matches(browser, directory):
    page = browser.get(f"{DEFAULT}/users", query_string={"q": "example"})
    assert count_line(page.text) == "3 users · page 1 of 1"
    page = browser.get(f"{DEFAULT}/users", query_string={"q": "ng"})
    assert count_line(page.text) == "2 users · page 1 of 1"


def test_a_broad_search_says_more_than_the_limit_and_still_lists_in_order(
    browser, directory, client, tenant_client, monkeypatch
):
    monkeypatch.setattr(store, "TEXT_COUNT_LIMIT", 2)
    # Found by the index: more than 2 by email, read in userName order instead.
    page = browser.get(f"{DEFAULT}/users", query_string={"q": "example"})
    assert user_names(page.text) == [ADA_, GRACE_, JURGEN_]
    assert count_line(page.text) == "more than 2 users · page 1"
    assert "Last »" not in page.text
    # Too short for the index: counted up to the limit.
    page = browser.get(f"{DEFAULT}/users", query_string={"q": "e"})
    assert user_names(page.text) == [ADA_, GRACE_, JURGEN_]
    assert count_line(page.text) == "more than 2 users · page 1"
    # At the limit: counted.
    assert count_line(browser.get(f"{DEFAULT}/users?q=ng").text) == "2 users · page 1 of 1"
    # Another tenant's many matches do not make this tenant's search broad.
    acme = tenant_client("acme2")
    for n in range(3):
        created(acme, "/Users", user_payload(userName=f"lovelace{n}@acme.example"))
    assert count_line(browser.get(f"{DEFAULT}/users?q=lovelace").text) == "1 user · page 1 of 1"


def test_a_broad_search_pages_forward_without_a_last_page(browser, client, monkeypatch):
    monkeypatch.setattr(store, "TEXT_COUNT_LIMIT", 2)
    seed_users(store.PER_PAGE + 2)
    first = browser.get(f"{DEFAULT}/users", query_string={"q": "example"})
    assert user_names(first.text)[:2] == ["user00000@example.com", "user00001@example.com"]
    assert len(user_names(first.text)) == store.PER_PAGE
    assert count_line(first.text) == "more than 2 users · page 1"
    assert 'rel="next"' in first.text
    second = browser.get(f"{DEFAULT}/users", query_string={"q": "example", "page": 2})
    assert user_names(second.text) == ["user00050@example.com", "user00051@example.com"]
    assert count_line(second.text) == "more than 2 users · page 2"
    assert 'rel="next"' not in second.text
    assert 'rel="prev"' in second.text


# --- PostgreSQL: the statements can use the indexes ----------------------------------------


TRIGRAM_INDEXES = {name for name in SEARCH_INDEX_NAMES_POSTGRESQL if name.endswith("_trgm")}
CODEPOINT_INDEX = "ix_users_live_user_name_key_codepoint"


@pytest.fixture
def plans(app: Flask) -> Iterator[Callable[[set[str]], list[tuple[str, str]]]]:
    """The SELECTs on users and groups run meanwhile, each with PostgreSQL's plan made where the
    indexes named are the only ones users, user_values and groups have (the others dropped in
    a transaction rolled back afterwards) and sequential scans are off: a statement those
    indexes can serve uses them, however few rows the tables hold."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("trigram indexes are PostgreSQL's; SQLite's FTS5 tables are read by name")
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if re.match(r"\s*SELECT\b.*\b(users|groups)\b", statement, re.S):
            seen.append((statement, parameters))

    def explained(keep: set[str]) -> list[tuple[str, str]]:
        event.remove(db.engine, "before_cursor_execute", record)
        out = []
        with db.engine.connect() as connection:
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            for table, index, constraint in connection.exec_driver_sql(
                "SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, c.conname "
                "FROM pg_index i LEFT JOIN pg_constraint c "
                "ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
                "WHERE i.indrelid::regclass::text IN ('users', 'user_values', 'groups')"
            ).all():
                if index in keep:
                    continue
                if constraint is None:
                    connection.exec_driver_sql(f"DROP INDEX {index}")
                else:
                    connection.exec_driver_sql(
                        f"ALTER TABLE {table} DROP CONSTRAINT {constraint} CASCADE"
                    )
            for statement, parameters in seen:
                rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                out.append((statement, "\n".join(row[0] for row in rows)))
            connection.rollback()
        event.listen(db.engine, "before_cursor_execute", record)
        return out

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield explained
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_postgresql_can_answer_searches_from_the_search_indexes(plans, browser, directory):
    assert found(browser, "lovelace") == [ADA_]
    assert listed_groups(browser, "engineering") == []
    explained = "\n\n".join(plan for _, plan in plans(TRIGRAM_INDEXES))
    assert {name for name in TRIGRAM_INDEXES if name in explained} == TRIGRAM_INDEXES, explained


def test_postgresql_lists_users_in_userName_order_from_an_index(plans, browser, directory):
    # What a broad search reads, as the unsearched users table does: sortBy's code point order.
    assert found(browser, "") == [ADA_, GRACE_, JURGEN_]
    assert found(browser, "e") == [ADA_, GRACE_, JURGEN_]
    pages = [
        plan for sql, plan in plans({CODEPOINT_INDEX}) if "ORDER BY (users.user_name_key" in sql
    ]
    assert len(pages) == 2
    assert all(CODEPOINT_INDEX in plan for plan in pages), pages
