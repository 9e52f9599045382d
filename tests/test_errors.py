"""Every failure answers with a SCIM Error body (RFC 7644 §3.12); Okta's quirks change nothing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from flask import Flask

from app.db import db
from app.store import users
from tests.conftest import BASE, TOKEN, make_app
from tests.payloads import error, patch_payload, user_payload

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def small_app(app: Flask, database_url: str) -> Iterator[Flask]:
    """A second app on the same database (tables made by `app`) with a 1 KiB body limit."""
    other = make_app(database_url, SCIM_MAX_BODY_BYTES="1024")
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def quiet_app(app: Flask, database_url: str) -> Iterator[Flask]:
    """A second app that turns unhandled exceptions into 500s, as in production."""
    other = make_app(database_url)
    other.config["PROPAGATE_EXCEPTIONS"] = False
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


# --- Routing -------------------------------------------------------------------------------

NOT_IMPLEMENTED = {
    "/Me": error(
        501,
        "/Me is not supported: this service does not map a bearer token to a User "
        "(RFC 7644 §3.11); use /Users/{id}",
    ),
}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/Nope", id="unknown-resource"),
        pytest.param("/Users/some-id/extra", id="below-a-user"),
        pytest.param("/Groups/some-id/members", id="below-a-group"),
        pytest.param("/Users/", id="trailing-slash"),
        pytest.param("/Me/some-id", id="below-me"),
        pytest.param("", id="root"),
        pytest.param("/", id="root-slash"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_unknown_route_is_404_scim_error(client, method, path):
    response = client.open(f"{BASE}{path}", method=method, json={})
    assert response.status_code == 404
    assert response.mimetype == "application/scim+json"
    assert response.json == error(404, "No such endpoint")


@pytest.mark.parametrize("path", ["/Me"])
@pytest.mark.parametrize("method", METHODS)
def test_me_is_501_not_implemented(client, method, path):
    response = client.open(f"{BASE}{path}", method=method, json={})
    assert response.status_code == 501
    assert response.mimetype == "application/scim+json"
    assert response.json == NOT_IMPLEMENTED[path]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        pytest.param("/Users", {"GET", "HEAD", "OPTIONS", "POST"}, id="users"),
        pytest.param(
            "/Users/some-id", {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"}, id="user"
        ),
    ],
)
def test_options_lists_only_the_methods_of_the_endpoint(client, path, allowed):
    response = client.options(f"{BASE}{path}")
    assert response.status_code == 200
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_bulk_is_consistent_with_service_provider_config(client):
    assert client.get(f"{BASE}/ServiceProviderConfig").json["bulk"]["supported"] is True
    assert client.post(f"{BASE}/Bulk", json={"Operations": []}).status_code == 200
    assert client.get(f"{BASE}/Bulk").status_code == 405  # only POST (RFC 7644 §3.7)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/Bulk", 405, id="bulk-get"),
        pytest.param("PATCH", "/Me", 501, id="me"),
        pytest.param("DELETE", "/Users/some-id/extra", 404, id="below-a-user"),
        pytest.param("PUT", "/Groups/some-id/members", 404, id="below-a-group"),
    ],
)
def test_unsupported_and_unknown_writes_carry_a_request_id_and_are_not_audited(
    client, capsys, method, path, status
):
    capsys.readouterr()
    response = client.open(
        f"{BASE}{path}", method=method, json={}, headers={"X-Request-ID": "okta-7"}
    )
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "okta-7"
    assert '"type": "audit"' not in capsys.readouterr().out  # nothing was changed or refused


def test_unknown_routes_count_against_the_rate_limit(database_url):
    # Guessing tokens is limited on every /scim/v2 path, not only on the ones that exist.
    app = make_app(database_url, SCIM_RATE_LIMIT="2 per minute")
    client = app.test_client()
    statuses = [client.get(f"{BASE}{path}").status_code for path in ("/Nope", "/Me", "/Nope")]
    assert statuses == [401, 401, 429]
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param("DELETE", "/Users", {"GET", "HEAD", "OPTIONS", "POST"}, id="delete-users"),
        pytest.param("PUT", "/Users", {"GET", "HEAD", "OPTIONS", "POST"}, id="put-users"),
        pytest.param(
            "POST",
            "/Users/some-id",
            {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"},
            id="post-user",
        ),
        pytest.param(
            "POST", "/ServiceProviderConfig", {"GET", "HEAD", "OPTIONS"}, id="post-config"
        ),
        pytest.param("DELETE", "/Schemas", {"GET", "HEAD", "OPTIONS"}, id="delete-schemas"),
        pytest.param("PROPFIND", "/Users", {"GET", "HEAD", "OPTIONS", "POST"}, id="propfind"),
    ],
)
def test_wrong_method_is_405_scim_error_with_allow(client, method, path, allowed):
    response = client.open(f"{BASE}{path}", method=method)
    assert response.status_code == 405
    assert response.mimetype == "application/scim+json"
    assert response.json == error(405, "Method not allowed on this endpoint")
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


# --- Bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_body_over_the_limit_is_413_scim_error(small_app, method):
    client = small_app.test_client()
    path = "/Users" if method == "POST" else "/Users/some-id"
    body = json.dumps(user_payload(displayName="x" * 2000))
    response = client.open(
        f"{BASE}{path}",
        method=method,
        data=body,
        content_type="application/scim+json",
        headers=AUTH,
    )
    assert response.status_code == 413
    assert response.mimetype == "application/scim+json"
    assert response.json == error(413, "The request body is larger than this service accepts")


def test_body_within_the_limit_is_served(small_app):
    client = small_app.test_client()
    response = client.post(f"{BASE}/Users", json=user_payload(), headers=AUTH)
    assert response.status_code == 201
    client.delete(f"{BASE}/Users/{response.json['id']}", headers=AUTH)


def streamed(client, method: str, path: str, body: bytes, headers: dict[str, str] | None = None):
    """A chunked request as gunicorn hands it to the app: no Content-Length, the body read from
    wsgi.input until its last chunk, and wsgi.input_terminated set (gunicorn/http/wsgi.py)."""
    return client.open(
        f"{BASE}{path}",
        method=method,
        content_type="application/scim+json",
        headers={"Transfer-Encoding": "chunked", **(headers or {})},
        environ_overrides={"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )


def padded(body: dict, size: int) -> bytes:
    """The body as JSON, padded with trailing spaces to exactly `size` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


AT_THE_LIMIT = padded(user_payload(userName="streamed@example.com"), 1024)  # small_app's limit


@pytest.mark.parametrize(
    "body",
    [
        # What a truncating read would take for a whole valid body, then more.
        pytest.param(AT_THE_LIMIT + b"{}", id="valid-prefix"),
        pytest.param(AT_THE_LIMIT + b" ", id="one-byte-over"),
        pytest.param(b'{"userName": "' + b"x" * 20_000 + b'"}', id="far-over"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_streamed_body_over_the_limit_is_413_never_a_truncated_read(
    small_app, client, create_user, method, body
):
    user = create_user()
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"
    response = streamed(small_app.test_client(), method, path, body, AUTH)
    assert response.status_code == 413
    assert response.mimetype == "application/scim+json"
    assert response.json == error(413, "The request body is larger than this service accepts")
    assert client.get(f"{BASE}/Users").json["Resources"] == [user]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(json.dumps(user_payload()).encode(), id="small"),
        pytest.param(AT_THE_LIMIT, id="at-the-limit"),
    ],
)
def test_streamed_body_within_the_limit_is_served(small_app, client, body):
    response = streamed(small_app.test_client(), "POST", "/Users", body, AUTH)
    assert response.status_code == 201, response.json
    assert response.json["userName"] == json.loads(body)["userName"]


def test_streamed_body_without_a_token_is_401_before_it_is_read(small_app):
    body = b'{"userName": "' + b"x" * 20_000 + b'"}'
    response = streamed(small_app.test_client(), "POST", "/Users", body)
    assert response.status_code == 401
    assert response.json == error(401, "Authorization: Bearer <token> is required")


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        pytest.param("{", "The request body is not valid JSON", id="truncated"),
        pytest.param("", "The request body is not valid JSON", id="empty"),
        pytest.param("{'userName': 'x'}", "The request body is not valid JSON", id="single-quotes"),
        pytest.param(b"\xff\xfe{}", "The request body is not valid JSON", id="not-utf8"),
        pytest.param("[]", "The request body must be a JSON object", id="array"),
        pytest.param(
            '[{"userName": "x"}]', "The request body must be a JSON object", id="array-obj"
        ),
        pytest.param('"jane"', "The request body must be a JSON object", id="string"),
        pytest.param("null", "The request body must be a JSON object", id="null"),
        pytest.param(
            '{"userName": "x", "externalId": NaN}',
            "The request body is not valid JSON",
            id="nan",
        ),
        pytest.param(
            '{"userName": "x", "externalId": -Infinity}',
            "The request body is not valid JSON",
            id="infinity",
        ),
        # Nested deeper than Python's recursion limit, well within the size limit: not a 500.
        pytest.param(
            "[" * 100_000 + "]" * 100_000, "The request body is not valid JSON", id="deep"
        ),
        pytest.param(
            '{"userName": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "The request body is not valid JSON",
            id="deep-in-object",
        ),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_bad_json_is_400_invalid_syntax(client, create_user, method, data, detail):
    user = create_user()
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"
    response = client.open(
        f"{BASE}{path}", method=method, data=data, content_type="application/scim+json"
    )
    assert response.status_code == 400
    assert response.json == error(400, detail, "invalidSyntax")
    assert client.get(f"{BASE}/Users").json["Resources"] == [user]


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("1e999", "1e999"),
        ("-1.5E+400", "-1.5E+400"),
        ("9" * 400 + ".0", "9" * 37 + "..."),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_number_beyond_a_double_is_400_invalid_value(client, create_user, method, number, shown):
    """Python reads 1e999 as infinity, which no JSON column can hold: SQLite's kept `Infinity`
    and answered null, PostgreSQL's refused the row with a vaguer 400. Refused alike, wherever
    in the body."""
    user = create_user()
    if method == "PATCH":
        data = json.dumps(patch_payload({"op": "replace", "path": "title", "value": "x"}))
        data = data.replace('"x"', f'{{"nested": [{number}]}}')
    else:
        data = json.dumps(user_payload(userName="other@example.com", title="x"))
        data = data.replace('"title": "x"', f'"title": "x", "x-extra": {number}')
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"
    response = client.open(
        f"{BASE}{path}", method=method, data=data, content_type="application/scim+json"
    )
    assert response.status_code == 400
    detail = (
        f"The number {shown} is beyond the range this service stores (an IEEE 754 double, at "
        "most about 1.8e308 either side of zero)"
    )
    assert response.json == error(400, detail, "invalidValue")
    assert client.get(f"{BASE}/Users").json["Resources"] == [user]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_unsupported_content_type_is_415(client, create_user, method, content_type):
    user = create_user()
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"
    response = client.open(
        f"{BASE}{path}",
        method=method,
        data=json.dumps(user_payload(userName="other@example.com")),
        content_type=content_type,
    )
    assert response.status_code == 415
    assert response.json == error(
        415,
        f"Content-Type must be application/scim+json or application/json, got {content_type}",
    )
    assert client.get(f"{BASE}/Users").json["Resources"] == [user]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/scim+json",
        "application/scim+json; charset=utf-8",
        "application/json",
        "application/json; charset=UTF-8",
    ],
)
def test_scim_and_plain_json_media_types_are_accepted(client, content_type):
    response = client.post(
        f"{BASE}/Users", data=json.dumps(user_payload()), content_type=content_type
    )
    assert response.status_code == 201
    assert response.mimetype == "application/scim+json"


# --- Unhandled errors ----------------------------------------------------------------------


def test_unhandled_exception_is_500_scim_error_without_a_trace(quiet_app, monkeypatch, caplog):
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals: SELECT * FROM users")

    monkeypatch.setattr(users, "get", explode)
    client = quiet_app.test_client()
    with caplog.at_level(logging.ERROR):
        response = client.get(f"{BASE}/Users/some-id", headers=AUTH)
    assert response.status_code == 500
    assert response.mimetype == "application/scim+json"
    assert response.json == error(
        500, "The server could not complete the request; it has been logged"
    )
    assert b"Traceback" not in response.data
    assert b"secret internals" not in response.data
    # The operator still gets the trace, in the log.
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


def test_unhandled_exception_during_a_write_leaves_nothing(quiet_app, client, monkeypatch):
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    # After the user's rows are written, in place of the commit.
    monkeypatch.setattr(users, "commit", explode)
    response = quiet_app.test_client().post(f"{BASE}/Users", json=user_payload(), headers=AUTH)
    assert response.status_code == 500
    monkeypatch.undo()
    assert client.get(f"{BASE}/Users").json["totalResults"] == 0


# --- Okta's quirks -------------------------------------------------------------------------

OKTA_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/scim+json",
    "Accept-Charset": "utf-8",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": "Okta SCIM Client 1.0.0",
}


def test_okta_headers_on_bodiless_requests_change_nothing(client, create_user):
    user = create_user(userName="jörg@example.com")
    url = f"{BASE}/Users/{user['id']}"
    lookup = {"filter": 'userName eq "jörg@example.com"', "startIndex": "1", "count": "100"}
    for path, query in ((url, None), (f"{BASE}/Users", lookup), (f"{BASE}/Schemas", None)):
        plain = client.get(path, query_string=query)
        okta = client.get(path, query_string=query, headers=OKTA_HEADERS)
        assert okta.status_code == plain.status_code == 200
        # Not compressed (gzip is acceptable, not required), and byte for byte the same answer.
        assert "Content-Encoding" not in okta.headers
        assert okta.data == plain.data
        assert okta.mimetype == "application/scim+json"
    assert client.get(url, headers=OKTA_HEADERS).json["userName"] == "jörg@example.com"
    response = client.delete(url, headers=OKTA_HEADERS)
    assert response.status_code == 204
    assert response.data == b""
    assert client.get(url, headers=OKTA_HEADERS).json == error(404, f"User {user['id']} not found")


def test_okta_headers_on_writes_change_nothing(client):
    headers = {k: v for k, v in OKTA_HEADERS.items() if k != "Content-Type"}
    response = client.post(
        f"{BASE}/Users",
        data=json.dumps(user_payload()),
        content_type="application/json; charset=utf-8",
        headers=headers,
    )
    assert response.status_code == 201
    deactivate = patch_payload({"op": "replace", "value": {"active": False}})
    response = client.patch(
        f"{BASE}/Users/{response.json['id']}",
        data=json.dumps(deactivate),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json["active"] is False
