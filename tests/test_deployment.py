"""What production relies on: probes, the request id, SCIM_REQUIRE_HTTPS, URLs behind a proxy."""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import queue
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask
from gunicorn.workers.gthread import ThreadWorker

from app.config import ConfigError, load_config
from app.db import db
from app.requests import RequestIdFilter
from tests.conftest import BASE, TOKEN, make_app
from tests.net import free_port
from tests.payloads import error, patch_payload, user_payload

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HTTPS_REQUIRED = error(
    403, "HTTPS is required: send SCIM requests to the https:// URL of this service"
)


@pytest.fixture
def app_with(app: Flask, database_url: str) -> Iterator[Callable[..., Flask]]:
    """Another app on the same database (tables made by `app`), with extra settings."""
    made: list[Flask] = []

    def make(**settings: str) -> Flask:
        made.append(make_app(database_url, **settings))
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


# --- /healthz and /readyz ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_ok_without_a_token(anonymous, path):
    response = anonymous.get(path)
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_503_with_retry_after_when_the_database_is_unreachable(tmp_path):
    # Nothing listens on port 1: the connection is refused at once.
    app = make_app("postgresql+psycopg://scim:secret@127.0.0.1:1/scim")
    client = app.test_client()
    assert client.get("/healthz").status_code == 200  # the process itself is alive
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.mimetype == "application/scim+json"
    assert response.json == error(503, "The service cannot reach its database")
    assert b"secret" not in response.data and b"127.0.0.1" not in response.data
    with app.app_context():
        db.engine.dispose()


def test_probes_are_not_under_scim_v2_and_take_no_other_methods(client, anonymous):
    assert client.get(f"{BASE}/healthz").status_code == 404
    assert anonymous.get(f"{BASE}/healthz").status_code == 401  # like any /scim/v2 path
    assert anonymous.post("/healthz").status_code == 405


# --- Answers without a body ---------------------------------------------------------------


@pytest.mark.parametrize("answer", ["delete-user", "delete-group", "patch-group", "not-modified"])
def test_answers_without_a_body_carry_no_content_type(client, create_user, create_group, answer):
    # RFC 9110 §8.3: Content-Type describes content; a 204 or 304 has none (it was text/html).
    user, group = create_user(), create_group()
    if answer == "delete-user":
        response = client.delete(f"{BASE}/Users/{user['id']}")
    elif answer == "delete-group":
        response = client.delete(f"{BASE}/Groups/{group['id']}")
    elif answer == "patch-group":
        add = {"op": "add", "path": "members", "value": [{"value": user["id"]}]}
        response = client.patch(f"{BASE}/Groups/{group['id']}", json=patch_payload(add))
    else:
        version = user["meta"]["version"]
        response = client.get(f"{BASE}/Users/{user['id']}", headers={"If-None-Match": version})
    assert response.status_code == (304 if answer == "not-modified" else 204)
    assert response.data == b""
    assert "Content-Type" not in response.headers, response.headers


# --- X-Request-ID --------------------------------------------------------------------------


def test_request_id_is_generated_and_echoed(client):
    response = client.get(f"{BASE}/Users")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert client.get(f"{BASE}/Users").headers["X-Request-ID"] != response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param("okta-7d2c1f", id="okta-style"),
        pytest.param("Root=1-67891233-abcdef012345678912345678;Parent=1", id="aws-trace"),
        pytest.param("x" * 128, id="longest"),
    ],
)
def test_request_id_from_the_caller_is_kept(client, presented):
    response = client.get(f"{BASE}/Users", headers={"X-Request-ID": presented})
    assert response.headers["X-Request-ID"] == presented


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param("x" * 129, id="too-long"),
        pytest.param("has space", id="space"),
        pytest.param("line\tbreak", id="control-character"),
        pytest.param("ünïcode", id="non-ascii"),
        pytest.param("", id="empty"),
    ],
)
def test_unacceptable_request_id_is_replaced(client, presented):
    response = client.get(f"{BASE}/Users", headers={"X-Request-ID": presented})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


@pytest.mark.parametrize(
    "path, status",
    [
        pytest.param("/scim/v2/Users", 401, id="unauthenticated"),
        pytest.param("/nowhere", 404, id="no-route"),
        pytest.param("/healthz", 200, id="probe"),
    ],
)
def test_every_response_carries_the_request_id(anonymous, path, status):
    response = anonymous.get(path, headers={"X-Request-ID": "abc-123"})
    assert (response.status_code, response.headers["X-Request-ID"]) == (status, "abc-123")


def test_log_records_during_a_request_carry_its_id(app):
    record = logging.LogRecord("app.protocol", logging.ERROR, __file__, 1, "boom", None, None)
    with app.test_request_context(headers={"X-Request-ID": "req-77"}):
        app.preprocess_request()
        assert RequestIdFilter().filter(record)
    assert record.request_id == "req-77"
    outside = logging.LogRecord("app", logging.INFO, __file__, 1, "idle", None, None)
    RequestIdFilter().filter(outside)
    assert outside.request_id is None


# --- SCIM_REQUIRE_HTTPS --------------------------------------------------------------------


def test_require_https_refuses_plain_http_before_the_token_check(app_with):
    client = app_with(SCIM_REQUIRE_HTTPS="true").test_client()
    for headers in (AUTH, {}):
        response = client.get(f"{BASE}/Users", headers=headers)
        assert response.status_code == 403
        assert response.mimetype == "application/scim+json"
        assert response.json == HTTPS_REQUIRED


def test_require_https_accepts_tls_and_exempts_probes(app_with):
    client = app_with(SCIM_REQUIRE_HTTPS="1").test_client()
    assert (
        client.get(f"{BASE}/Users", headers=AUTH, base_url="https://localhost").status_code == 200
    )
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_require_https_believes_x_forwarded_proto_only_from_trusted_proxies(app_with):
    forwarded = {**AUTH, "X-Forwarded-Proto": "https"}
    untrusted = app_with(SCIM_REQUIRE_HTTPS="1").test_client()
    assert untrusted.get(f"{BASE}/Users", headers=forwarded).status_code == 403
    behind_proxy = app_with(SCIM_REQUIRE_HTTPS="1", SCIM_PROXY_HOPS="1").test_client()
    assert behind_proxy.get(f"{BASE}/Users", headers=forwarded).status_code == 200


def test_require_https_is_off_by_default(client):
    assert client.get(f"{BASE}/Users").status_code == 200


@pytest.mark.parametrize(
    "raw, expected",
    [("", False), ("0", False), ("false", False), ("off", False), ("1", True), ("TRUE", True),
     ("yes", True), ("on", True)],
)  # fmt: skip
def test_require_https_setting_values(raw, expected):
    assert load_config({"SCIM_REQUIRE_HTTPS": raw})["SCIM_REQUIRE_HTTPS"] is expected


def test_require_https_setting_rejects_anything_else():
    with pytest.raises(ConfigError, match="SCIM_REQUIRE_HTTPS must be true or false"):
        load_config({"SCIM_REQUIRE_HTTPS": "sometimes"})


# --- URLs behind a proxy -------------------------------------------------------------------

PROXY_HEADERS = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "scim.example.com",
    "X-Forwarded-Port": "443",
}


def _created_location(app: Flask, **headers: str) -> tuple[str, str]:
    response = app.test_client().post(
        f"{BASE}/Users", json=user_payload(), headers={**AUTH, **headers}
    )
    assert response.status_code == 201, response.json
    assert response.json["meta"]["location"] == response.headers["Location"]
    return response.headers["Location"], response.json["id"]


def test_proxy_headers_give_external_https_urls_with_one_trusted_hop(client, app_with):
    location, user_id = _created_location(app_with(SCIM_PROXY_HOPS="1"), **PROXY_HEADERS)
    assert location == f"https://scim.example.com/scim/v2/Users/{user_id}"


def test_proxy_headers_keep_a_non_default_port(client, app_with):
    headers = {**PROXY_HEADERS, "X-Forwarded-Port": "8443"}
    location, user_id = _created_location(app_with(SCIM_PROXY_HOPS="1"), **headers)
    assert location == f"https://scim.example.com:8443/scim/v2/Users/{user_id}"


def test_proxy_headers_are_ignored_without_trusted_hops(client, app_with):
    location, user_id = _created_location(app_with(), **PROXY_HEADERS)
    assert location == f"http://localhost/scim/v2/Users/{user_id}"


def test_base_url_overrides_the_request_and_the_proxy(client, app_with):
    app = app_with(SCIM_PROXY_HOPS="1", SCIM_BASE_URL="https://idp-facing.example.org/scim/v2/")
    location, user_id = _created_location(app, **PROXY_HEADERS)
    assert location == f"https://idp-facing.example.org/scim/v2/Users/{user_id}"


def test_list_links_follow_the_proxy(client, app_with):
    app = app_with(SCIM_PROXY_HOPS="1")
    _, user_id = _created_location(app, **PROXY_HEADERS)
    listed = app.test_client().get(f"{BASE}/Users", headers={**AUTH, **PROXY_HEADERS}).json
    assert [r["meta"]["location"] for r in listed["Resources"]] == [
        f"https://scim.example.com/scim/v2/Users/{user_id}"
    ]


# --- gunicorn.conf.py ----------------------------------------------------------------------


def test_gunicorn_conf_reads_bind_workers_and_threads(monkeypatch):
    monkeypatch.setenv("SCIM_BIND", "0.0.0.0:9000")
    monkeypatch.setenv("SCIM_WORKERS", "3")
    monkeypatch.setenv("SCIM_THREADS", "8")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (conf["bind"], conf["workers"], conf["threads"]) == (["0.0.0.0:9000"], 3, 8)
    assert issubclass(conf["worker_class"], ThreadWorker)  # gthread's: `threads` counts
    assert conf["control_socket_disable"] is True
    assert conf["secure_scheme_headers"] == {}  # only SCIM_PROXY_HOPS decides about the scheme
    assert conf["graceful_timeout"] <= conf["timeout"] < conf["keepalive"]


def test_gunicorn_conf_rejects_a_bad_worker_count(monkeypatch):
    monkeypatch.setenv("SCIM_WORKERS", "many")
    with pytest.raises(SystemExit, match="SCIM_WORKERS must be a positive integer"):
        runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize("hops", ["1", "2"])
def test_gunicorn_behind_a_proxy_takes_whatever_nginx_passes_on(monkeypatch, hops):
    # Its refusals are HTML pages: nginx must be the one to refuse, with a SCIM error.
    monkeypatch.setenv("SCIM_PROXY_HOPS", hops)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    site = (ROOT / "deploy" / "nginx" / "scim.conf").read_text()
    count, size = re.search(r"^\s*large_client_header_buffers (\d+) (\d+)k;", site, re.M).groups()
    line_bytes, all_bytes = int(size) * 1024, int(count) * int(size) * 1024
    assert conf["limit_request_line"] == 0  # unlimited: gunicorn has nothing between 8190 and it
    assert conf["limit_request_field_size"] > line_bytes  # with room for X-Forwarded-For
    assert conf["limit_request_fields"] >= all_bytes // len("a:\r\n")  # the most nginx passes


@pytest.mark.parametrize("hops", ["", "0"])
def test_gunicorn_reached_directly_keeps_bounded_request_lines_and_headers(monkeypatch, hops):
    monkeypatch.setenv("SCIM_PROXY_HOPS", hops)  # the environment wins over a .env
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["limit_request_line"] == 8190  # gunicorn's largest bounded value
    assert (conf["limit_request_fields"], conf["limit_request_field_size"]) == (100, 8190)


def test_gunicorn_worker_freezes_the_loaded_app_out_of_full_collections(monkeypatch):
    # Each full collection would otherwise walk every object the loaded app holds (~100 ms).
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    app_log = logging.getLogger("app")
    monkeypatch.setattr(app_log, "handlers", list(app_log.handlers))
    monkeypatch.setattr(app_log, "propagate", app_log.propagate)
    monkeypatch.setattr(app_log, "level", app_log.level)
    worker = SimpleNamespace(cfg=SimpleNamespace(loglevel="info"), age=1, sockets=[])
    gc.unfreeze()
    try:
        conf["post_worker_init"](worker)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


# --- scripts/serve -------------------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """What scripts/serve uses, in a directory of its own: its .env and instance/ land there.

    The virtual environment is this one's packages behind a .venv of the copy's own, already
    marked as installed, so that nothing is installed or written in the real one.
    """
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for name in ("scripts/serve", "scripts/bootstrap.sh", "scripts/token_gen.py"):
        shutil.copy2(ROOT / name, root / name)
    for name in (".env.example", "gunicorn.conf.py", "wsgi.py", "requirements.txt"):
        shutil.copy2(ROOT / name, root / name)
    for name in ("app", "migrations"):
        (root / name).symlink_to(ROOT / name)
    venv = root / ".venv"
    venv.mkdir()
    shutil.copy2(ROOT / ".venv" / "pyvenv.cfg", venv / "pyvenv.cfg")
    for name in ("bin", "lib"):
        (venv / name).symlink_to(ROOT / ".venv" / name)
    requirements = (ROOT / "requirements.txt").read_bytes()
    (venv / ".installed-requirements.txt").write_text(
        hashlib.sha256(requirements * 2).hexdigest() + "\n"  # as bootstrap.sh computes it
    )
    return root


class Serve:
    """scripts/serve as a developer runs it, its output read line by line as it comes."""

    def __init__(self, checkout: Path, port: int) -> None:
        names = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
        # Settings come from the copy's .env only (as on a developer's machine), but the port.
        env = {k: v for k, v in os.environ.items() if k not in names and k != "FLASK_APP"}
        env.update(SCIM_BIND=f"127.0.0.1:{port}", SCIM_WORKERS="1", SCIM_THREADS="2")
        self.process = subprocess.Popen(
            [str(checkout / "scripts" / "serve")],
            cwd=checkout,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, predicate: Callable[[str], bool], timeout: float = 60) -> str | None:
        """The first line that satisfies `predicate`; None if the output ended first."""
        deadline = time.monotonic() + timeout
        while not self.ended and (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.ended = True
                break
            self.output.append(line)
            if predicate(line):
                return line
        if self.ended:
            return None
        pytest.fail(f"scripts/serve printed nothing expected in {timeout} s: {self.output}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C, to gunicorn (serve exec'd it)
        code = self.process.wait(timeout=30)
        self.until(lambda line: False, timeout=5)  # the rest of the output, to its end
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


def _get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_serve_prints_its_token_once_and_the_banner_once_it_serves(checkout):
    port = free_port()
    banner = f"SCIM service on http://127.0.0.1:{port}/scim/v2 (Ctrl-C stops it)"
    first = Serve(checkout, port)
    try:
        assert first.until(lambda line: line.startswith("Created .env with a new bearer token"))
        token = first.until(lambda line: line.startswith("    ")).strip()
        assert first.until(lambda line: line.startswith("SCIM service on")) == banner
        # Printed once serving: the first request after it is answered, with that token.
        assert _get(f"http://127.0.0.1:{port}/scim/v2/ServiceProviderConfig", token) == 200
    finally:
        first.stop()
    assert sum(line.startswith("SCIM service on") for line in first.output) == 1

    second = Serve(checkout, port)  # .env exists now: no token, but how to make one
    try:
        assert second.until(lambda line: line.startswith("SCIM service on")) == banner
    finally:
        second.stop()
    assert token not in "\n".join(second.output)
    assert "For another token: .venv/bin/flask --app wsgi tokens create NAME" in second.output
    assert not any(line.startswith("    ") for line in second.output)


def test_serve_names_a_taken_port_and_the_setting_that_moves_it(checkout):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        serve = Serve(checkout, port)
        assert serve.until(lambda line: False) is None  # it ends by itself
        assert serve.stop() == 1
        assert time.monotonic() - started < 15  # not after gunicorn's 5 s of retries
    assert serve.output[-1] == (
        f"Port {port} on 127.0.0.1 is already in use (another scripts/serve, or another "
        f"service). Stop that, or listen elsewhere: SCIM_BIND=127.0.0.1:{port + 1} "
        "./scripts/serve (or set SCIM_BIND in .env)."
    )
    assert not any(line.startswith("SCIM service on") for line in serve.output)


def test_serve_names_a_database_it_cannot_use_in_one_line(checkout):
    env_file = checkout / ".env"
    subprocess.run(
        [sys.executable, "scripts/token_gen.py", "--env", ".env"], cwd=checkout, check=True
    )
    text = env_file.read_text().replace(
        "\nDATABASE_URL=\n", "\nDATABASE_URL=postgres://scim:s3cret-pw@127.0.0.1:1/scimdb\n"
    )
    env_file.write_text(text)
    serve = Serve(checkout, free_port())
    assert serve.until(lambda line: False) is None
    assert serve.stop() == 1
    assert serve.output == [
        'Error: cannot use the database (DATABASE_URL): PostgreSQL database "scimdb" on '
        '127.0.0.1:1 as user "scim": Connection refused; Is the server running on that host '
        "and accepting TCP/IP connections?"
    ]
