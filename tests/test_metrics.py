"""GET /metrics: Prometheus' exposition behind a token of its own, requests counted by route
template, method, status class and tenant, time in SQL, the pool; several processes summed."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from app import tenancy
from app.auth import new_token, token_hash
from app.config import ConfigError, load_config
from app.db import db, utcnow
from app.models import EventDelivery
from app.store import audit, deliveries, tenants, tokens
from tests.conftest import BASE, TOKEN, make_app
from tests.payloads import patch_payload, user_payload
from tests.test_events_outbox import add_receiver

METRICS_TOKEN = "metrics-token-0123456789"
ROOT = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def of(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def request_labels(
    route: str, method: str, status_class: str, tenant: str = "default"
) -> frozenset[tuple[str, str]]:
    return frozenset(
        {"route": route, "method": method, "status_class": status_class, "tenant": tenant}.items()
    )


@pytest.fixture
def metered(client: FlaskClient, database_url: str) -> Iterator[Callable[..., Flask]]:
    """Apps with metrics on, on the test database (`client` empties it afterwards); each has
    counts of its own."""
    made: list[Flask] = []

    def make(**settings: str) -> Flask:
        made.append(
            make_app(database_url, SCIM_METRICS_TOKEN_HASHES=token_hash(METRICS_TOKEN), **settings)
        )
        return made[-1]

    yield make
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def scim_client(app: Flask, token: str = TOKEN) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def scrape(app: Flask, **headers: str) -> Samples:
    response = app.test_client().get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}", **headers}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse(response.get_data(as_text=True))


def test_metrics_are_off_by_default(anonymous):
    response = anonymous.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 404
    assert "metrics" not in anonymous.application.blueprints


@pytest.mark.parametrize(
    "authorization, challenge",
    [
        pytest.param(None, 'Bearer realm="metrics"', id="no-token"),
        pytest.param(
            "Bearer wrong-token", 'Bearer realm="metrics", error="invalid_token"', id="wrong"
        ),
        pytest.param(
            f"Bearer {TOKEN}", 'Bearer realm="metrics", error="invalid_token"', id="scim-token"
        ),
        pytest.param(f"Basic {METRICS_TOKEN}", 'Bearer realm="metrics"', id="not-bearer"),
    ],
)
def test_metrics_without_its_token_is_401(metered, authorization, challenge):
    headers = {"Authorization": authorization} if authorization else {}
    response = metered().test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge
    assert b"scim_http_requests_total" not in response.data


def test_metrics_with_its_token_is_prometheus_text(metered):
    response = (
        metered()
        .test_client()
        .get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert "# TYPE scim_http_requests_total counter" in response.get_data(as_text=True)


def test_metrics_speak_openmetrics_when_asked(metered):
    response = (
        metered()
        .test_client()
        .get(
            "/metrics",
            headers={
                "Authorization": f"Bearer {METRICS_TOKEN}",
                "Accept": "application/openmetrics-text; version=1.0.0",
            },
        )
    )
    assert response.status_code == 200
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_any_of_several_metrics_tokens_is_accepted(client, database_url):
    other = "rotated-metrics-token-42"
    app = make_app(
        database_url,
        SCIM_METRICS_TOKEN_HASHES=f"{token_hash(METRICS_TOKEN)}, {token_hash(other)}",
    )
    for token in (METRICS_TOKEN, other):
        response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    with app.app_context():
        db.engine.dispose()


def test_requests_are_counted_by_route_template_method_status_class_and_tenant(metered):
    app = metered()
    scim = scim_client(app)
    created = scim.post(f"{BASE}/Users", json=user_payload(userName="ada@example.com")).json
    user_id = created["id"]
    assert scim.get(f"{BASE}/Users/{user_id}").status_code == 200
    assert scim.get(f"{BASE}/Users/{user_id}").status_code == 200
    assert scim.get(f"{BASE}/Users/no-such-id-0123").status_code == 404
    patch = patch_payload({"op": "replace", "path": "active", "value": False})
    assert scim.patch(f"{BASE}/Users/{user_id}", json=patch).status_code == 200
    assert scim.get(f"{BASE}/Users", query_string={"filter": 'userName eq "x"'}).status_code == 200
    assert app.test_client().get(f"{BASE}/Users").status_code == 401  # no token: no tenant
    assert scim.get(f"{BASE}/Users/{user_id}/some/thing").status_code == 404  # no route
    assert scim.open(f"{BASE}/Users", method="BREW").status_code == 405  # neither a method
    assert app.test_client().get("/healthz").status_code == 200

    samples = scrape(app)

    assert named(samples, "scim_http_requests_total") == {
        request_labels("/scim/v2/Users", "POST", "2xx"): 1,
        request_labels("/scim/v2/Users/<user_id>", "GET", "2xx"): 2,
        request_labels("/scim/v2/Users/<user_id>", "GET", "4xx"): 1,
        request_labels("/scim/v2/Users/<user_id>", "PATCH", "2xx"): 1,
        request_labels("/scim/v2/Users", "GET", "2xx"): 1,
        request_labels("/scim/v2/Users", "GET", "4xx", tenant=""): 1,
        request_labels("unmatched", "GET", "4xx"): 1,
        request_labels("unmatched", "other", "4xx"): 1,
        request_labels("/healthz", "GET", "2xx", tenant=""): 1,
    }
    text = (
        app.test_client()
        .get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        .get_data(as_text=True)
    )
    for volatile in (user_id, "no-such-id-0123", "some/thing", "ada@example.com", "BREW"):
        assert volatile not in text


def test_each_tenant_is_counted_by_its_slug(metered):
    app = metered()
    tenant = tenants.create("acme")
    token = new_token()
    with tenancy.entered(tenant.id):
        tokens.create("acme-idp", token_hash(token))
    assert scim_client(app, token).get(f"{BASE}/Users").status_code == 200
    assert scim_client(app).get(f"{BASE}/Users").status_code == 200
    assert scim_client(app, "not-a-token").get(f"{BASE}/Groups").status_code == 401

    samples = named(scrape(app), "scim_http_requests_total")

    assert samples == {
        request_labels("/scim/v2/Users", "GET", "2xx", tenant="acme"): 1,
        request_labels("/scim/v2/Users", "GET", "2xx", tenant="default"): 1,
        request_labels("/scim/v2/Groups", "GET", "4xx", tenant=""): 1,
    }


def test_durations_and_sql_time_are_observed_once_per_request(metered):
    app = metered()
    scim = scim_client(app)
    user_id = scim.post(f"{BASE}/Users", json=user_payload()).json["id"]
    for _ in range(3):
        assert scim.get(f"{BASE}/Users/{user_id}").status_code == 200
    assert app.test_client().get("/healthz").status_code == 200

    samples = scrape(app)

    read = {"route": "/scim/v2/Users/<user_id>", "method": "GET"}
    duration = "scim_http_request_duration_seconds"
    labels = {**read, "status_class": "2xx", "tenant": "default"}
    assert of(samples, f"{duration}_count", **labels) == 3
    assert of(samples, f"{duration}_bucket", **labels, le="+Inf") == 3
    assert of(samples, f"{duration}_sum", **labels) > 0
    sql = "scim_http_request_sql_seconds"
    assert of(samples, f"{sql}_count", **read) == 3
    assert of(samples, f"{sql}_bucket", **read, le="+Inf") == 3
    # The token's tenant and the user are read in SQL; the time spent in it is above nothing
    # and below the whole request's.
    assert 0 < of(samples, f"{sql}_sum", **read) < of(samples, f"{duration}_sum", **labels)
    assert of(samples, f"{sql}_count", route="/scim/v2/Users", method="POST") == 1
    assert of(samples, f"{sql}_sum", route="/scim/v2/Users", method="POST") > 0
    # A probe that runs no SQL is observed at zero.
    assert of(samples, f"{sql}_count", route="/healthz", method="GET") == 1
    assert of(samples, f"{sql}_sum", route="/healthz", method="GET") == 0


def test_a_failed_statement_counts_as_sql_time_too(metered):
    app = metered()
    scim = scim_client(app)
    assert scim.post(f"{BASE}/Users", json=user_payload(userName="twice")).status_code == 201
    assert scim.post(f"{BASE}/Users", json=user_payload(userName="twice")).status_code == 409

    samples = scrape(app)

    sql = "scim_http_request_sql_seconds"
    assert of(samples, f"{sql}_count", route="/scim/v2/Users", method="POST") == 2
    assert of(samples, f"{sql}_sum", route="/scim/v2/Users", method="POST") > 0


def test_pool_gauges_count_connections_in_use(metered):
    app = metered()
    assert scim_client(app).get(f"{BASE}/Users").status_code == 200  # reports the pool's size
    samples = scrape(app)
    assert of(samples, "scim_db_pool_checked_out") == 0
    assert of(samples, "scim_db_pool_size") == 5  # SQLAlchemy's QueuePool defaults
    assert of(samples, "scim_db_pool_max_overflow") == 10

    with app.app_context():
        held = [db.engine.connect(), db.engine.connect()]
        assert of(scrape(app), "scim_db_pool_checked_out") == 2
        held.pop().close()
        assert of(scrape(app), "scim_db_pool_checked_out") == 1
        held.pop().close()
    assert of(scrape(app), "scim_db_pool_checked_out") == 0


def test_metrics_are_neither_rate_limited_nor_audited(metered, capsys):
    app = metered(SCIM_RATE_LIMIT="2 per minute")
    capsys.readouterr()
    for _ in range(5):
        response = app.test_client().get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        response.close()
        assert response.status_code == 200
    for _ in range(5):
        response = app.test_client().get("/metrics", headers={"Authorization": "Bearer wrong"})
        response.close()
        assert response.status_code == 401
    assert '"type": "audit"' not in capsys.readouterr().out
    db.session.remove()
    with tenancy.across_tenants():
        assert audit.recent(limit=10) == []
    # The SCIM limit still applies to SCIM requests.
    statuses = [scim_client(app).get(f"{BASE}/Users").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_metrics_answer_plain_http_when_https_is_required(metered):
    """Prometheus scrapes a worker on the private network, as a load balancer probes it."""
    app = metered(SCIM_REQUIRE_HTTPS="1")
    assert scim_client(app).get(f"{BASE}/Users").status_code == 403
    response = app.test_client().get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200


def test_token_gen_prints_a_metrics_token_and_its_setting(client, database_url, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "token_gen.py"), "--metrics"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
        check=True,
    )
    lines = result.stdout.splitlines()
    token = lines[0].rsplit(": ", 1)[1]
    setting, _, digest = lines[-1].partition("=")
    assert setting == "SCIM_METRICS_TOKEN_HASHES"
    app = make_app(database_url, SCIM_METRICS_TOKEN_HASHES=digest)
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    with app.app_context():
        db.engine.dispose()


def test_metrics_settings_are_checked_at_start(tmp_path):
    with pytest.raises(ConfigError, match="^SCIM_METRICS_TOKEN_HASHES must be comma-separated"):
        load_config({"SCIM_METRICS_TOKEN_HASHES": METRICS_TOKEN})
    missing = str(tmp_path / "missing")
    on = {"SCIM_METRICS_TOKEN_HASHES": token_hash(METRICS_TOKEN)}
    with pytest.raises(ConfigError, match="^PROMETHEUS_MULTIPROC_DIR must be an existing"):
        load_config({**on, "PROMETHEUS_MULTIPROC_DIR": missing})
    # Metrics off: the directory is not looked at.
    assert load_config({"PROMETHEUS_MULTIPROC_DIR": missing})["PROMETHEUS_MULTIPROC_DIR"] == ""
    assert load_config(on)["PROMETHEUS_MULTIPROC_DIR"] == ""


# --- several processes: what gunicorn's workers do ---------------------------------------------

# One process of the service: serves `requests` lookups through the test client, then, when
# asked, scrapes /metrics and prints it. prometheus_client chooses multiprocess mode when it is
# imported, so each is a process of its own with PROMETHEUS_MULTIPROC_DIR in its environment.
PROCESS = """
import json, sys
from app import create_app
settings, requests, scrape = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "scrape"
app = create_app(settings)
client = app.test_client()
for _ in range(requests):
    answer = client.get("/scim/v2/Users", headers={"Authorization": "Bearer " + settings["token"]})
    assert answer.status_code == 200, answer.get_data(as_text=True)
if scrape:
    answer = client.get("/metrics", headers={"Authorization": "Bearer " + settings["metrics"]})
    print(answer.get_data(as_text=True))
"""


def run_process(settings: dict[str, Any], requests: int, scrape: bool = False) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": settings["PROMETHEUS_MULTIPROC_DIR"]}
    finished = subprocess.run(
        [
            sys.executable,
            "-c",
            PROCESS,
            json.dumps(settings),
            str(requests),
            str(scrape and "scrape"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout


def test_processes_sharing_a_multiprocess_dir_are_summed(client, database_url, tmp_path):
    settings = {
        "DATABASE_URL": database_url,
        "SCIM_TOKEN_HASHES": token_hash(TOKEN),
        "SCIM_METRICS_TOKEN_HASHES": token_hash(METRICS_TOKEN),
        "SCIM_RATE_LIMIT": "",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "token": TOKEN,
        "metrics": METRICS_TOKEN,
    }
    run_process(settings, 3)
    run_process(settings, 4)
    samples = parse(run_process(settings, 5, scrape=True))

    lookups = request_labels("/scim/v2/Users", "GET", "2xx")
    assert named(samples, "scim_http_requests_total") == {lookups: 3 + 4 + 5}
    duration = "scim_http_request_duration_seconds"
    assert of(samples, f"{duration}_count", **dict(lookups)) == 12
    assert of(samples, f"{duration}_bucket", **dict(lookups), le="+Inf") == 12
    sql = "scim_http_request_sql_seconds"
    assert of(samples, f"{sql}_count", route="/scim/v2/Users", method="GET") == 12
    # livesum: no process here was marked dead (gunicorn.conf.py's child_exit does that), so
    # the three pools count: 3 x 5.
    assert of(samples, "scim_db_pool_size") == 15
    assert len(list(tmp_path.glob("counter_*.db"))) == 3  # one file per process


# --- gunicorn.conf.py's hooks ------------------------------------------------------------------


def gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    # Restored afterwards, however the hooks change it: the suite's own prometheus_client
    # stays single-process (it chose when it was imported).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_makes_a_fresh_multiprocess_dir_per_run_and_removes_it(monkeypatch):
    conf = gunicorn_conf(monkeypatch, SCIM_METRICS_TOKEN_HASHES=token_hash(METRICS_TOKEN))
    conf["on_starting"](None)
    first = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert os.path.isdir(first) and os.listdir(first) == []
    conf["on_exit"](None)
    assert not os.path.exists(first)

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    conf["on_starting"](None)
    second = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert second != first
    conf["on_exit"](None)


def test_gunicorn_empties_a_given_multiprocess_dir_of_metrics_files_only(monkeypatch, tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"\0" * 8)
    (tmp_path / "gauge_livesum_123.db").write_bytes(b"\0" * 8)
    (tmp_path / "notes.txt").write_text("not ours")
    conf = gunicorn_conf(
        monkeypatch,
        SCIM_METRICS_TOKEN_HASHES=token_hash(METRICS_TOKEN),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    conf["on_starting"](None)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    conf["on_exit"](None)
    assert tmp_path.is_dir()  # the operator's directory stays


def test_gunicorn_sets_up_nothing_with_metrics_off(monkeypatch):
    conf = gunicorn_conf(monkeypatch, SCIM_METRICS_TOKEN_HASHES="")
    conf["on_starting"](None)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == ""


# --- change events: each receiver's backlog ----------------------------------------------------


def backlog(samples: Samples, name: str) -> dict[tuple[str, str, str], float]:
    return {
        (labels["tenant"], labels["receiver"], labels["delivery"]): value
        for (n, frozen), value in samples.items()
        if n == name
        for labels in [dict(frozen)]
    }


def test_each_receivers_pending_failing_and_oldest_age_are_read_at_the_scrape(
    metered, tenant_client
):
    app = metered()
    api = scim_client(app)
    with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        crm = add_receiver("crm").id
        add_receiver("portal", delivery="poll", url=None)
    acme = tenant_client("acme")
    with app.app_context(), tenancy.entered(tenants.by_slug("acme").id):
        add_receiver("acme-app")
    samples = scrape(app)
    assert backlog(samples, "scim_events_pending") == {
        ("acme", "acme-app", "push"): 0,
        ("default", "crm", "push"): 0,
        ("default", "portal", "poll"): 0,
    }
    assert set(backlog(samples, "scim_events_oldest_pending_age_seconds").values()) == {0}

    user = api.post(f"{BASE}/Users", json=user_payload()).json
    api.patch(
        f"{BASE}/Users/{user['id']}",
        json=patch_payload({"op": "replace", "path": "active", "value": False}),
    )
    acme.post(f"{BASE}/Users", json=user_payload())
    with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        # The worker tried crm's first event and failed; it has waited a minute.
        first = select(func.min(EventDelivery.event_id)).scalar_subquery()
        db.session.execute(
            update(EventDelivery)
            .where(EventDelivery.receiver_id == crm, EventDelivery.event_id == first)
            .values(attempts=2, created_at=utcnow() - timedelta(minutes=1))
        )
        db.session.commit()
    samples = scrape(app)
    assert backlog(samples, "scim_events_pending") == {
        ("acme", "acme-app", "push"): 1,
        ("default", "crm", "push"): 2,
        ("default", "portal", "poll"): 2,
    }
    assert backlog(samples, "scim_events_failing") == {
        ("acme", "acme-app", "push"): 0,
        ("default", "crm", "push"): 1,
        ("default", "portal", "poll"): 0,
    }
    ages = backlog(samples, "scim_events_oldest_pending_age_seconds")
    assert 60 <= ages[("default", "crm", "push")] < 120
    assert 0 < ages[("default", "portal", "poll")] < 60
    assert 0 < ages[("acme", "acme-app", "push")] < 60


def test_with_events_off_there_is_no_backlog(metered):
    app = metered(SCIM_EVENTS="off")
    text = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert "scim_events_" not in text.get_data(as_text=True)


def test_a_database_down_at_the_scrape_leaves_out_the_backlog_only(metered, monkeypatch):
    app = metered()

    def down() -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(deliveries, "backlog", down)
    response = app.test_client().get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "scim_events_pending{" not in text
    assert "# TYPE scim_http_requests_total counter" in text
