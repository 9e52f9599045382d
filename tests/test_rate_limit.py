"""Rate limits per token: 429 SCIM errors with Retry-After, in memory or shared through Redis."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from unittest.mock import patch

import pytest
import redis
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from limits import parse_many
from limits.storage import memory as limits_memory
from sqlalchemy.engine import make_url

from app import ratelimit, tenancy
from app.auth import new_token, token_hash
from app.config import DEFAULT_RATE_LIMIT, ConfigError, load_config
from app.db import db
from app.ratelimit import WindowStorage
from app.store import tenants, tokens
from tests.conftest import BASE, OTHER_TOKEN, TOKEN, make_app
from tests.payloads import error

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
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
    """TEST_REDIS_URL, or the local server; skip when neither answers (fail instead when CI)."""
    url = os.environ.get("TEST_REDIS_URL", "").strip() or DEFAULT_REDIS
    shown = make_url(url).render_as_string(hide_password=True)  # never a password in a report
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
    except (redis.RedisError, ValueError) as e:
        reason = f"Redis is not answering at {shown} (TEST_REDIS_URL): {type(e).__name__}: {e}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason} (.ci/run starts one)")
        pytest.skip(f"{reason} (set TEST_REDIS_URL, or apt-get install redis-server; CI runs it)")
    return url


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


def test_the_default_limit_sustains_twice_the_rate_entra_asks_for_and_allows_bursts():
    """Microsoft: at least 25 requests/s per provisioning job; a 429 costs Entra a 40-minute
    cycle. Every window of the default allows 50/s, and a whole window's budget in one burst."""
    assert load_config({})["SCIM_RATE_LIMIT"] == DEFAULT_RATE_LIMIT
    for item in parse_many(DEFAULT_RATE_LIMIT):
        assert item.amount / item.get_expiry() >= 50, item
        assert item.get_expiry() >= 60, item  # a per-second cap would refuse a short burst


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the limit needs no database
def test_the_default_limit_lets_a_burst_through(app, database_url):
    """What an initial import does: requests as fast as the service answers, none refused."""
    settings = {"SCIM_RATE_LIMIT_KEY_PREFIX": f"scim-test-{uuid.uuid4().hex}"}
    default = make_app(database_url, SCIM_RATE_LIMIT=DEFAULT_RATE_LIMIT, **settings)
    client = default.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    statuses = {client.get(f"{BASE}/ServiceProviderConfig").status_code for _ in range(1500)}
    assert statuses == {200}
    with default.app_context():
        db.engine.dispose()


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


def test_an_unreachable_redis_is_logged_on_each_request_it_lets_through(limited, caplog):
    app = limited(SCIM_RATE_LIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="app.ratelimit"):
        assert [get(app).status_code for _ in range(2)] == [200, 200]
    logged = [r.getMessage() for r in caplog.records if r.name == "app.ratelimit"]
    assert len(logged) == 2
    assert logged[0].startswith("rate limit not counted (storage unreachable), request let through")
    assert "127.0.0.1:1" in logged[0]


def test_deployments_sharing_a_redis_count_apart_under_their_own_key_prefix(limited):
    uri = redis_or_skip()
    first = limited("1 per minute", SCIM_RATE_LIMIT_STORAGE_URI=uri)
    prefix = f"scim-test-{uuid.uuid4().hex}"
    other = limited(
        "1 per minute", SCIM_RATE_LIMIT_STORAGE_URI=uri, SCIM_RATE_LIMIT_KEY_PREFIX=prefix
    )
    assert [get(first).status_code, get(first).status_code] == [200, 429]
    assert get(other).status_code == 200


def test_retry_after_is_when_the_oldest_request_leaves_the_window(limited, monkeypatch):
    """A moving window: a place frees 60 s after the request that took it, not at a minute's
    turn, and Retry-After says when (rounded up)."""
    now = [1_000_000.25]
    monkeypatch.setattr(ratelimit.time, "time", lambda: now[0])
    app = limited("2 per minute")
    assert get(app).status_code == 200
    now[0] += 10
    assert get(app).status_code == 200
    now[0] += 20.5  # the first request came 30.5 s ago: its place frees in 29.5 s
    refused = get(app)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "30")
    now[0] += 29.4
    assert get(app).status_code == 429  # still in the window (by a tenth of a second)
    now[0] += 0.2
    assert get(app).status_code == 200  # the first left; the second's place frees at +10 s
    refused = get(app)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "10")


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


def test_two_tenants_tokens_of_the_same_name_have_budgets_of_their_own(limited, client):
    app = limited("2 per minute")
    same_name = {}
    for slug in ("acme", "globex"):
        tenant = tenants.create(slug)
        same_name[slug] = new_token()
        with tenancy.entered(tenant.id):
            tokens.create("okta", token_hash(same_name[slug]))
    assert [get(app, same_name["acme"]).status_code for _ in range(3)] == [200, 200, 429]
    assert [get(app, same_name["globex"]).status_code for _ in range(2)] == [200, 200]


def test_a_per_tenant_limit_is_shared_by_all_its_tokens_and_none_is_the_default(limited, client):
    assert load_config({})["SCIM_RATE_LIMIT_PER_TENANT"] == ""
    app = limited("100 per minute", SCIM_RATE_LIMIT_PER_TENANT="3 per minute")
    acme = tenants.create("acme")
    first, second = new_token(), new_token()
    with tenancy.entered(acme.id):
        tokens.create("okta", token_hash(first))
        tokens.create("entra", token_hash(second))
    answers = [get(app, token).status_code for token in (first, second, first, second)]
    assert answers == [200, 200, 200, 429]
    refused = get(app, first)
    assert refused.json == error(
        429,
        "Too many requests for this tenant (all its tokens together); retry after the seconds "
        "given in Retry-After",
    )
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert get(app, TOKEN).status_code == 200  # the default tenant's budget is its own


def test_a_per_tenant_limit_that_is_not_a_limit_stops_start_up():
    with pytest.raises(ConfigError, match="SCIM_RATE_LIMIT_PER_TENANT must look like"):
        load_config({"SCIM_RATE_LIMIT_PER_TENANT": "lots"})


# --- The in-process count (memory://): ratelimit.WindowStorage -----------------------------


def test_the_default_storage_is_the_deque_window(limited):
    assert isinstance(limited().extensions["scim_limiter"].storage, WindowStorage)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.floats(0, 25), st.integers(1, 3)),
        min_size=1,
        max_size=60,
    )
)
def test_the_deque_window_answers_as_limits_own_memory_storage(steps):
    """Random requests of two keys at random intervals, some costing more than one: the same
    allowed or refused, and the same window (start, count) as limits' list-based storage."""
    clock = [1_000_000.0]
    with (
        patch.object(ratelimit.time, "time", lambda: clock[0]),
        patch.object(limits_memory.time, "time", lambda: clock[0]),
    ):
        theirs, ours = limits_memory.MemoryStorage(), WindowStorage()
        for key, pause, cost in steps:
            clock[0] += pause
            assert ours.acquire_entry(key, 5, 60, cost) == theirs.acquire_entry(key, 5, 60, cost)
            assert ours.get_moving_window(key, 5, 60) == theirs.get_moving_window(key, 5, 60)


def test_keys_idle_for_a_window_are_forgotten(monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: clock[0])
    storage = WindowStorage()
    for n in range(100):
        assert storage.acquire_entry(f"address:{n}", 3, 60)
    clock[0] += WindowStorage.SWEEP_SECONDS + 1
    assert storage.acquire_entry("token:1:okta", 3, 60)  # the request that sweeps
    assert list(storage._windows) == ["token:1:okta"]
