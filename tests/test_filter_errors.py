"""Filters the service refuses (RFC 7644 §3.4.2.2, §3.12): 400 invalidFilter with a detail
that names the problem, and where it is; attributes that cannot be filtered on; injection
attempts, whose values stay values and whose errors never show SQL."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BASE
from tests.payloads import error, found, search

OPERATORS = "eq, ne, co, sw, ew, gt, ge, lt, le or pr"


@pytest.mark.parametrize(
    ("filter_text", "detail"),
    [
        pytest.param(
            'userName eq "jane@example.com',
            "Unterminated string starting at position 13",
            id="unclosed-quote",
        ),
        pytest.param('shoeSize eq "9"', "unknown attribute 'shoeSize'", id="unknown-attribute"),
        pytest.param('name.nick eq "x"', "unknown attribute 'name.nick'", id="unknown-sub"),
        pytest.param(
            'urn:example:params:User:userName eq "x"',
            "unknown attribute 'urn:example:params:User:userName'",
            id="unknown-schema-urn",
        ),
        pytest.param("userName eq", "the filter ended unexpectedly", id="incomplete"),
        pytest.param("userName", "the filter ended unexpectedly", id="no-operator"),
        pytest.param('userName eq "x" and', "the filter ended unexpectedly", id="dangling-and"),
        pytest.param('(userName eq "x"', "the filter ended unexpectedly", id="unclosed-paren"),
        pytest.param('userName eq "x")', "unexpected ')' at position 16", id="extra-paren"),
        pytest.param(
            'emails[type eq "work"', "the filter ended unexpectedly", id="unclosed-bracket"
        ),
        pytest.param(
            'userName eq "x" userName eq "y"',
            "unexpected 'userName' at position 17",
            id="missing-logical-operator",
        ),
        pytest.param(
            'userName eq "x" and not userName eq "y"',
            "unexpected 'userName' at position 25",
            id="not-without-parentheses",
        ),
        pytest.param(
            "active gt true", "active is a boolean; only eq and ne apply", id="gt-on-boolean"
        ),
        pytest.param(
            'active eq "true"',
            "active is a boolean; compare it with true/false",
            id="boolean-with-string",
        ),
        pytest.param(
            "userName eq 42", "userName is a string; quote the value", id="string-with-number"
        ),
        pytest.param(
            "userName eq true", "userName is a string; quote the value", id="string-with-boolean"
        ),
        pytest.param(
            'userName regex "x"',
            f"unknown operator 'regex' at position 10; use {OPERATORS}",
            id="unknown-operator",
        ),
        pytest.param(
            'userName eq "x" and name.givenName like "y"',
            f"unknown operator 'like' at position 36; use {OPERATORS}",
            id="unknown-operator-after-sub-attribute",
        ),
        pytest.param(
            'emails[type regex "x"]',
            f"unknown operator 'regex' at position 13; use {OPERATORS}",
            id="unknown-operator-in-value-filter",
        ),
        pytest.param("userName eq 'x'", 'Unexpected character "\'" at position 13', id="quote"),
        pytest.param('userName eq "x";', "Unexpected character ';' at position 16", id="junk"),
        pytest.param('userName eq "a\\qb"', 'Invalid escape in string "a\\qb"', id="bad-escape"),
        pytest.param(
            'userName eq "a\tb"',
            'Invalid control character in string "a\tb"',
            id="raw-control-character",
        ),
        pytest.param(
            'userName eq "a\\u0000b"',
            "NUL character (\\u0000) in string at position 13",
            id="nul-character",
        ),
        pytest.param(
            'emails[value sw "\\u0000"]',
            "NUL character (\\u0000) in string at position 17",
            id="nul-character-in-value-filter",
        ),
        pytest.param(
            "userName gt null", "userName gt null is not a valid comparison", id="gt-null"
        ),
        pytest.param(
            'meta.lastModified gt "yesterday"',
            "'yesterday' is not an RFC 3339 date-time",
            id="bad-date-time",
        ),
        pytest.param(
            'meta.lastModified gt "2024-01-01T00:00:00"',
            "'2024-01-01T00:00:00' needs a time zone offset",
            id="date-time-without-offset",
        ),
        pytest.param(
            'meta.created co "2024-01-01T00:00:00Z"',
            "meta.created is a dateTime; co does not apply",
            id="co-on-date-time",
        ),
        pytest.param(
            'x509Certificates.value sw "MII"',
            "x509Certificates.value is binary; only eq, ne and pr apply",
            id="sw-on-binary",
        ),
        pytest.param('name eq "x"', "name a sub-attribute of name", id="complex-without-value"),
        pytest.param(
            'name[givenName eq "x"]', "name is not multi-valued", id="value-filter-on-singular"
        ),
        pytest.param(
            'emails[shoe eq "x"]', "unknown attribute emails.shoe", id="unknown-in-value-filter"
        ),
        pytest.param(
            'emails[type eq "work" and emails[value eq "x"]]',
            "value filters cannot be nested",
            id="nested-value-filter",
        ),
    ],
)
def test_invalid_filter_is_400_invalid_filter(client, create_user, filter_text, detail):
    create_user()
    response = search(client, filter=filter_text)
    assert response.status_code == 400
    assert response.json == error(400, f"Invalid filter: {detail}", "invalidFilter")


def test_invalid_filter_in_okta_form_encoding(client):
    response = client.get(f"{BASE}/Users", query_string="filter=userName+eq+%22jane&count=100")
    assert response.status_code == 400
    assert response.json == error(
        400, "Invalid filter: Unterminated string starting at position 13", "invalidFilter"
    )


@pytest.mark.parametrize(
    ("filter_text", "detail"),
    [
        pytest.param(
            'meta.location eq "x"',
            "meta.location cannot be filtered or sorted on",
            id="meta-location",
        ),
        pytest.param("schemas gt true", "schemas is a string; quote the value", id="schemas-type"),
        pytest.param(
            'schemas[value eq "x"]', "unknown attribute 'schemas'", id="schemas-value-filter"
        ),
        pytest.param('groups.$ref eq "x"', "groups.$ref cannot be filtered on", id="groups-ref"),
    ],
)
def test_unfilterable_attributes_are_400(client, create_user, filter_text, detail):
    create_user()
    response = search(client, filter=filter_text)
    assert response.status_code == 400
    assert response.json == error(400, f"Invalid filter: {detail}", "invalidFilter")


# ---------------------------------------------------------------------------------------------
# Injection: values stay values, and errors name the filter's problem, never SQL


SQL_WORDS = ("select", "where", "sqlalchemy", "psycopg", "sqlite", "users.", "traceback")


def assert_no_sql(detail: str, sent: str) -> None:
    """No SQL, driver or trace in `detail`, beyond what the caller sent and sees echoed."""
    leaked = [w for w in SQL_WORDS if w in detail.lower() and w not in sent.lower()]
    assert not leaked, detail


@pytest.mark.parametrize(
    "user_name",
    [
        pytest.param('x" or 1=1 --', id="double-quote-or"),
        pytest.param("x' or '1'='1", id="single-quote-or"),
        pytest.param("'; DROP TABLE users; --", id="drop-table"),
        pytest.param("%", id="like-everything"),
        pytest.param("\\", id="backslash"),
        pytest.param('x\\" or ""="', id="escaped-escape"),
    ],
)
def test_injection_in_values_finds_only_the_literal_value(client, create_user, user_name):
    create_user(userName="innocent@example.com", displayName="innocent")
    target = create_user(userName=user_name, displayName=user_name)
    quoted = json.dumps(user_name)
    for text in (
        f"userName eq {quoted}",
        f"displayName eq {quoted}",
        f"emails[value eq {quoted}] or userName eq {quoted}",
        f"userName co {quoted} and title pr or userName eq {quoted}",
    ):
        assert found(client, text, by="id") == {target["id"]}, text
    assert found(client, "userName pr", by="id") == {target["id"], found_innocent(client)}


def found_innocent(client) -> str:
    ids = found(client, 'userName eq "innocent@example.com"', by="id")
    assert len(ids) == 1  # the table is still there, and so is its row
    return ids.pop()


@pytest.mark.parametrize(
    ("filter_text", "detail"),
    [
        pytest.param(
            'userName eq "x" or 1=1 --', "Unexpected character '=' at position 21", id="raw-or-1=1"
        ),
        pytest.param(
            'userName eq "x"; DROP TABLE users; --',
            "Unexpected character ';' at position 16",
            id="statement-after",
        ),
        pytest.param(
            "userName eq 'x' or '1'='1'",
            'Unexpected character "\'" at position 13',
            id="single-quoted",
        ),
        pytest.param(
            'users.user_name eq "x"', "unknown attribute 'users.user_name'", id="column-name"
        ),
        pytest.param("password_hash pr", "unknown attribute 'password_hash'", id="hidden-column"),
        pytest.param(
            'userName/**/eq "x"', "Unexpected character '/' at position 9", id="sql-comment"
        ),
        pytest.param(
            'urn:x:y:userName; DROP TABLE users eq "x"',
            "Unexpected character ';' at position 17",
            id="urn-with-statement",
        ),
        pytest.param('userName eq "x" union select 1', "unexpected 'union' at position 17"),
    ],
)
def test_injection_in_syntax_is_400_without_sql(client, create_user, filter_text, detail):
    create_user()
    response = client.get(f"{BASE}/Users", query_string={"filter": filter_text})
    assert response.status_code == 400
    assert response.json == error(400, f"Invalid filter: {detail}", "invalidFilter")
    assert_no_sql(response.json["detail"], filter_text)
    assert len(found(client, "userName pr")) == 1
