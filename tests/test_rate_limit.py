"""Rate limits per token: 429 SCIM errors with Retry-After, in memory or shared through Redis."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from app.config import ConfigError, load_config
from app.db import db
from tests.conftest import BASE, OTHER_TOKEN, TOKEN, make_app
from tests.payloads import error

REDIS = ("127.0.0.1", 6379)
TOO_MANY = error(
    429, "Too many requests with this token; retry after the seconds given in Retry-After"
)


@pytest.fixture
def limited(client, database_url: str) -> Iterator[Callable[..., Flask]]:
    """Apps on the test database with a small limit and a key prefix of this test's own."""
    made: list[Flask] = []
    prefix = f"scim-test-{uuid.uuid4().hex}"

    def make(limit: str = "3 per minute", **settings: str) -> Flask:
        settings = {"SCIM_RATE_LIMIT": limit, "SCIM_RATE_LIMIT_KEY_PREFIX": prefix, **settings}
        made.append(make_app(database_url, **settings))
        return made[-1]

    yield make
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def redis_or_skip() -> str:
    try:
        socket.create_connection(REDIS, timeout=1).close()
    except OSError as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                f"CI=true but Redis is not answering at 127.0.0.1:6379 ({e}); .ci/run starts it"
            )
        pytest.skip(
            "Redis is not answering at 127.0.0.1:6379 (apt-get install redis-server); it runs in CI"
        )
    return "redis://127.0.0.1:6379/0"


def get(app: Flask, token: str | None = TOKEN, path: str = f"{BASE}/Users"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.test_client().get(path, headers=headers)


def test_the_request_past_the_limit_is_a_scim_429_with_retry_after(limited):
    app = limited()
    assert [get(app).status_code for _ in range(3)] == [200, 200, 200]
    refused = get(app)
    assert refused.status_code == 429
    assert refused.mimetype == "application/scim+json"
    assert refused.json == TOO_MANY
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "X-Request-ID" in refused.headers
    ok = get(app, OTHER_TOKEN)  # another token (env-2) has a budget of its own
    assert ok.status_code == 200 and "Retry-After" not in ok.headers


def test_every_scim_route_shares_one_budget_per_token_and_probes_are_exempt(limited):
    app = limited()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    assert client.get(f"{BASE}/ServiceProviderConfig").status_code == 200
    assert client.post(f"{BASE}/Users", json={}).status_code == 400  # refused, but counted
    assert client.get(f"{BASE}/Groups").status_code == 200
    assert client.get(f"{BASE}/Users").status_code == 429
    assert [client.get(p).status_code for p in ("/healthz", "/readyz") * 3] == [200] * 6


def test_callers_without_a_valid_token_are_limited_by_address(limited):
    app = limited()
    assert [get(app, None).status_code for _ in range(2)] == [401, 401]
    assert get(app, "guess").status_code == 401
    assert get(app, "another-guess").status_code == 429  # guessing tokens is limited too
    assert get(app, TOKEN).status_code == 200


def test_an_empty_limit_disables_limiting(limited):
    app = limited("")
    assert {get(app).status_code for _ in range(10)} == {200}


def test_limits_are_shared_by_instances_through_redis(limited):
    uri = redis_or_skip()
    first, second = (
        limited(SCIM_RATE_LIMIT_STORAGE_URI=uri),
        limited(SCIM_RATE_LIMIT_STORAGE_URI=uri),
    )
    assert [get(first).status_code, get(second).status_code, get(first).status_code] == [200] * 3
    refused = get(second)
    assert (refused.status_code, refused.json) == (429, TOO_MANY)
    assert int(refused.headers["Retry-After"]) >= 1
    # An instance keeping its limits in memory knows nothing of the others' requests.
    assert get(limited()).status_code == 200


def test_an_unreachable_redis_lets_requests_through(limited):
    app = limited(SCIM_RATE_LIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    assert {get(app).status_code for _ in range(5)} == {200}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("SCIM_RATE_LIMIT", "lots", id="limit-not-a-rate"),
        pytest.param("SCIM_RATE_LIMIT_STORAGE_URI", "memcached://h:1", id="unsupported-storage"),
    ],
)
def test_bad_rate_limit_settings_stop_start_up_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})
