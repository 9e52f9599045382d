"""Production shape, end to end: nginx terminating TLS in front of gunicorn (gunicorn.conf.py).

nginx runs deploy/nginx/scim.conf itself, with only its ports, certificate paths and upstream
substituted; gunicorn runs gunicorn.conf.py with 2 workers, SCIM_PROXY_HOPS=1 and
SCIM_REQUIRE_HTTPS=1. The client verifies the certificate the test generates. On SQLite and
PostgreSQL. Without nginx on PATH the test is skipped, except in CI (.ci/run installs it).
running_stack() also serves tests/e2e/test_production_proof.py (audit, rate limit, outage).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.auth import token_hash
from tests.conftest import TOKEN
from tests.databases import scratch_postgres_database
from tests.e2e.service import migrate, service_env
from tests.net import free_port
from tests.payloads import ERROR_URN, GROUP_URN, PATCH_URN, error, user_payload
from tests.test_metrics import METRICS_TOKEN

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "scim.conf"
TOO_LARGE = error(413, "The request body is larger than this service accepts")
LIMIT = 1_048_576  # SCIM_MAX_BODY_BYTES and client_max_body_size 1m
URI_TOO_LONG = error(
    414,
    "The request line is longer than this service accepts: send a long filter in the body of "
    "a POST .search request (RFC 7644 §3.4.3)",
)
HEADERS_TOO_LARGE = error(400, "The request header fields are larger than this service accepts")
BAD_REQUEST = error(400, "The request is not valid HTTP/1.1")


@dataclass
class Stack:
    https: str  # https://127.0.0.1:<nginx TLS port>
    http: str  # http://127.0.0.1:<nginx plain port>
    gunicorn: str  # http://127.0.0.1:<gunicorn port>, bypassing nginx
    tls: ssl.SSLContext
    access_log: Path  # gunicorn's stdout
    error_log: Path  # gunicorn's stderr

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        token: bool | str = True,
    ) -> tuple[int, dict[str, str], Any]:
        """One request, redirects not followed; (status, headers, parsed JSON body or None).

        token: True sends tests.conftest.TOKEN, a string sends that token, False none."""
        data = body if isinstance(body, bytes) else None
        if body is not None and data is None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {TOKEN if token is True else token}")
        if data is not None:
            request.add_header("Content-Type", "application/scim+json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.tls), _NoRedirect()
        )
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), _json(response)
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), _json(e)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _json(response: Any) -> Any:
    """The JSON body; None for an empty or non-JSON one (nginx's HTML redirect page)."""
    raw = response.read()
    is_json = response.headers.get_content_subtype() in ("json", "scim+json")
    return json.loads(raw) if raw.strip() and is_json else None


def raw_request(
    url: str, head: str, chunks: Sequence[bytes] = (), *, tls: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], Any]:
    """Send `head` (request line and headers, without the blank line) as it is, then `chunks`
    as a chunked body when there are any; (status, headers, parsed JSON body or None).

    The connection is closed after the response (Connection: close). The response is read while
    the request is still being sent: a server may answer (413, 414) and close before it has read
    everything, and a client that only reads once it has sent all would see a reset instead."""
    parts = urllib.parse.urlsplit(url)
    framing = "Transfer-Encoding: chunked\r\n" if chunks else ""
    wire = f"{head}\r\nConnection: close\r\n{framing}\r\n".encode("latin-1")
    if chunks:
        wire += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
        wire += b"0\r\n\r\n"
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=parts.hostname)
    unsent, received = memoryview(wire), bytearray()
    deadline = time.monotonic() + 60
    with sock:
        sock.setblocking(False)
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if unsent else [], [], 1)
            if unsent and writable:
                try:
                    unsent = unsent[sock.send(unsent) :]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except OSError:
                    unsent = unsent[:0]  # closed by the server, which has answered
            if readable or (tls is not None and sock.pending()):
                try:
                    data = sock.recv(65_536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                except OSError:
                    break  # reset after the answer: what was received is all there is
                if not data:
                    break
                received += data
    response = http.client.HTTPResponse(_Received(bytes(received)))  # type: ignore[arg-type]
    response.begin()
    return response.status, dict(response.headers), _json(response)


class _Received:
    """What http.client.HTTPResponse needs of a socket, over bytes already received."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, _mode: str) -> io.BytesIO:
        return io.BytesIO(self._data)


def _nginx_or_skip() -> str:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if nginx is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but nginx is not installed (.ci/run installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx-light); it runs in CI")
    return nginx


def _substitute(text: str, old: str, new: str) -> str:
    """Replace a line of the shipped site exactly once, so that the test notices it drifting."""
    assert text.count(old) == 1, f"deploy/nginx/scim.conf no longer has exactly one {old!r}"
    return text.replace(old, new)


def _render_site(tmp: Path, *, https_port: int, http_port: int, upstream_port: int) -> Path:
    site = SITE.read_text()
    for old, new in (
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("listen [::]:443 ssl;", ""),
        ("/etc/ssl/scim/fullchain.pem", str(tmp / "cert.pem")),
        ("/etc/ssl/scim/privkey.pem", str(tmp / "key.pem")),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
    ):
        site = _substitute(site, old, new)
    (tmp / "scim.conf").write_text(site)
    # What the distribution's nginx.conf provides around a site, with every path in tmp.
    main = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 128; }}
http {{
    default_type application/octet-stream;
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/scim.conf;
}}
"""
    (tmp / "nginx.conf").write_text(main)
    return tmp / "nginx.conf"


def _self_signed_certificate(tmp: Path) -> None:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


def _wait_until(ready: Any, what: str, processes: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            tails = "\n".join(
                f"{log.name}: {log.read_text()[-1500:]}" for log in logs if log.exists()
            )
            pytest.fail(f"{what} did not start:\n{tails}")
        time.sleep(0.2)


def _service_env(database_url: str, port: int) -> dict[str, str]:
    return service_env(
        database_url,
        port,
        SCIM_WORKERS="2",
        SCIM_THREADS="4",
        SCIM_PROXY_HOPS="1",
        SCIM_REQUIRE_HTTPS="1",
        SCIM_METRICS_TOKEN_HASHES=token_hash(METRICS_TOKEN),
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scratch_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of its own, migrated as in production (flask db upgrade)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('nginx-db') / 'scim.sqlite3'}"
        yield from _migrated(url)
    else:
        with scratch_postgres_database() as url:
            yield from _migrated(url)


def _migrated(url: str) -> Iterator[str]:
    migrate(url)
    yield url


@pytest.fixture(scope="module")
def stack(scratch_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(scratch_database, tmp_path_factory.mktemp("nginx")) as stack:
        yield stack


@contextmanager
def running_stack(database_url: str, tmp: Path, **settings: str) -> Iterator[Stack]:
    """nginx (deploy/nginx/scim.conf, a certificate made here) in front of gunicorn
    (gunicorn.conf.py) on this database, with _service_env's settings plus these; both stopped
    on the way out."""
    nginx = _nginx_or_skip()
    _self_signed_certificate(tmp)
    gunicorn_port, https_port, http_port = free_port(), free_port(), free_port()
    conf = _render_site(
        tmp, https_port=https_port, http_port=http_port, upstream_port=gunicorn_port
    )
    env = {**_service_env(database_url, gunicorn_port), **settings}
    access_log, error_log = tmp / "gunicorn-access.log", tmp / "gunicorn-error.log"
    processes: list[subprocess.Popen] = []
    with access_log.open("wb") as out, error_log.open("wb") as err:
        try:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=err,
                )
            )
            tls = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
            stack = Stack(
                f"https://127.0.0.1:{https_port}",
                f"http://127.0.0.1:{http_port}",
                f"http://127.0.0.1:{gunicorn_port}",
                tls,
                access_log,
                error_log,
            )
            logs = [error_log, tmp / "nginx-error.log"]
            _wait_until(
                lambda: stack.request("GET", f"{stack.gunicorn}/healthz")[0] == 200,
                "gunicorn",
                processes,
                logs,
            )
            # Its own prefix, error log (-e: even before the config is read) and config.
            nginx_args = [
                nginx,
                "-p",
                str(tmp),
                "-e",
                str(tmp / "nginx-error.log"),
                "-c",
                str(conf),
            ]
            subprocess.run([*nginx_args, "-t", "-q"], check=True, capture_output=True)
            processes.append(
                subprocess.Popen(
                    [*nginx_args, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=err
                )
            )
            _wait_until(
                lambda: stack.request("GET", f"{stack.https}/readyz")[0] == 200,
                "nginx",
                processes,
                logs,
            )
            yield stack
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def test_okta_user_lifecycle_over_https_carries_https_urls(stack):
    users = f"{stack.https}/scim/v2/Users"
    status, headers, user = stack.request("POST", users, user_payload())
    assert status == 201, user
    assert headers["Location"] == f"{users}/{user['id']}"
    assert user["meta"]["location"] == headers["Location"]

    status, _, read = stack.request("GET", headers["Location"])
    assert status == 200
    assert read["id"] == user["id"]

    status, _, found = stack.request(
        "GET", f"{users}?filter=userName%20eq%20%22jane%40example.com%22&startIndex=1&count=100"
    )
    assert status == 200
    assert [r["meta"]["location"] for r in found["Resources"]] == [f"{users}/{user['id']}"]

    status, headers, group = stack.request(
        "POST",
        f"{stack.https}/scim/v2/Groups",
        {"schemas": [GROUP_URN], "displayName": "Engineering", "members": [{"value": user["id"]}]},
    )
    assert status == 201, group
    assert headers["Location"] == f"{stack.https}/scim/v2/Groups/{group['id']}"
    assert [m["$ref"] for m in group["members"]] == [f"{users}/{user['id']}"]

    deactivate = {
        "schemas": [PATCH_URN],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    }
    status, _, patched = stack.request("PATCH", f"{users}/{user['id']}", deactivate)
    assert (status, patched["active"]) == (200, False)
    assert stack.request("DELETE", f"{stack.https}/scim/v2/Groups/{group['id']}")[0] == 204
    assert stack.request("DELETE", f"{users}/{user['id']}")[0] == 204
    assert stack.request("GET", f"{users}/{user['id']}")[0] == 404


def test_plain_http_port_redirects_to_https(stack):
    status, headers, _ = stack.request("GET", f"{stack.http}/scim/v2/Users?count=1")
    assert status == 301
    # nginx's $host has no port: in production that is 443; here only the scheme and path matter.
    assert headers["Location"] == "https://127.0.0.1/scim/v2/Users?count=1"


def test_health_endpoints_answer_through_nginx_without_a_token(stack):
    for path in ("/healthz", "/readyz"):
        status, headers, body = stack.request("GET", f"{stack.https}{path}", token=False)
        assert (status, body) == (200, {"status": "ok"})
        assert headers["Server"] == "nginx"  # server_tokens off: no version
        assert headers["Strict-Transport-Security"] == "max-age=31536000"


def test_oversized_body_gets_a_scim_413_from_nginx(stack):
    # nginx's client_max_body_size equals SCIM_MAX_BODY_BYTES: nginx refuses, with the app's body.
    padding = "x" * 1_048_576
    status, headers, body = stack.request(
        "POST", f"{stack.https}/scim/v2/Users", user_payload(displayName=padding)
    )
    assert (status, body) == (413, TOO_LARGE)
    assert headers["Content-Type"] == "application/scim+json"
    assert "X-Request-ID" not in headers  # nginx answered: the app never saw the body

    # Exactly at the limit, a body passes both.
    at_limit = json.dumps(user_payload(userName="limit@example.com")).encode()
    at_limit += b" " * (1_048_576 - len(at_limit))
    status, _, created = stack.request("POST", f"{stack.https}/scim/v2/Users", at_limit)
    assert status == 201, created
    assert stack.request("DELETE", f"{stack.https}/scim/v2/Users/{created['id']}")[0] == 204


def _in_chunks(body: bytes, size: int = 65_536) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def _padded(body: dict[str, Any], size: int) -> bytes:
    raw = json.dumps(body).encode()
    return raw + b" " * (size - len(raw))


def _head(method: str, path: str, *extra: str) -> str:
    return "\r\n".join(
        [
            f"{method} {path} HTTP/1.1",
            "Host: 127.0.0.1",
            f"Authorization: Bearer {TOKEN}",
            "Content-Type: application/scim+json",
            *extra,
        ]
    )


def _user_names(stack: Stack, user_name: str) -> list[str]:
    query = urllib.parse.quote(f'userName eq "{user_name}"')
    status, _, found = stack.request("GET", f"{stack.https}/scim/v2/Users?filter={query}")
    assert status == 200, found
    return [r["userName"] for r in found["Resources"]]


@pytest.mark.parametrize(
    "body",
    [
        # A valid SCIM body up to the limit, then more: once served (201), cut at the limit.
        pytest.param(
            _padded(user_payload(userName="chunked@example.com"), LIMIT) + b"{}", id="valid-prefix"
        ),
        # Once "not valid JSON" (400): the first MiB of it.
        pytest.param(b'{"userName": "' + b"x" * 20_000_000 + b'"}', id="20-MB"),
    ],
)
def test_chunked_body_over_the_limit_straight_to_gunicorn_is_a_scim_413(stack, body):
    # Straight to gunicorn, as when nothing is in front of it (scripts/serve, a tunnel): nginx
    # itself buffers a chunked body and sends it on with a Content-Length. X-Forwarded-Proto
    # stands in for nginx's, for SCIM_REQUIRE_HTTPS.
    head = _head("POST", "/scim/v2/Users", "X-Forwarded-Proto: https")
    status, headers, answer = raw_request(stack.gunicorn, head, _in_chunks(body))
    assert (status, answer) == (413, TOO_LARGE)
    assert headers["Content-Type"] == "application/scim+json"
    assert _user_names(stack, "chunked@example.com") == []


def test_chunked_body_within_the_limit_straight_to_gunicorn_is_served(stack):
    head = _head("POST", "/scim/v2/Users", "X-Forwarded-Proto: https")
    body = _padded(user_payload(userName="chunked@example.com"), LIMIT)
    status, _, created = raw_request(stack.gunicorn, head, _in_chunks(body))
    assert status == 201, created
    assert stack.request("DELETE", f"{stack.https}/scim/v2/Users/{created['id']}")[0] == 204


def test_chunked_body_over_the_limit_gets_a_scim_413_from_nginx(stack):
    body = _padded(user_payload(userName="chunked@example.com"), LIMIT) + b"{}" + b" " * LIMIT
    head = _head("POST", "/scim/v2/Users")
    status, headers, answer = raw_request(stack.https, head, _in_chunks(body), tls=stack.tls)
    assert (status, answer) == (413, TOO_LARGE)
    assert headers["Content-Type"] == "application/scim+json"
    assert "X-Request-ID" not in headers  # nginx answered: the app never saw the body
    assert _user_names(stack, "chunked@example.com") == []

    # Within the limit, nginx passes a chunked body on (with a Content-Length) and it is served.
    body = _padded(user_payload(userName="chunked@example.com"), LIMIT)
    status, _, created = raw_request(stack.https, head, _in_chunks(body), tls=stack.tls)
    assert status == 201, created
    assert stack.request("DELETE", f"{stack.https}/scim/v2/Users/{created['id']}")[0] == 204


def test_a_long_filter_in_a_get_is_served_end_to_end(stack):
    # A request line of some 23 KB: beyond gunicorn's defaults (4,094 bytes) and nginx's (8 KiB),
    # within deploy/nginx/scim.conf's 32 KiB and the filter limits (characters, terms).
    users = f"{stack.https}/scim/v2/Users"
    status, _, user = stack.request("POST", users, user_payload(userName="long-filter@example.com"))
    assert status == 201, user
    names = [f"someone-{n:03}-{'é' * 10}@example.com" for n in range(200)]
    filter_text = " or ".join(f'userName eq "{name}"' for name in [*names, user["userName"]])
    path = f"/scim/v2/Users?filter={urllib.parse.quote(filter_text)}"
    assert 20_000 < len(f"GET {path} HTTP/1.1") < 32_768
    status, _, found = stack.request("GET", f"{stack.https}{path}")
    assert status == 200, found
    assert [r["id"] for r in found["Resources"]] == [user["id"]]
    assert stack.request("DELETE", f"{users}/{user['id']}")[0] == 204


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Padding": "x" * 20_000}, id="a-20-KB-header"),
        pytest.param({f"X-Extra-{n}": "x" for n in range(200)}, id="200-headers"),
    ],
)
def test_headers_within_nginx_limits_reach_the_app(stack, headers):
    # gunicorn's defaults would refuse these with an HTML page (431): a header line over 8,190
    # bytes, more than 100 header lines.
    status, _, body = stack.request("GET", f"{stack.https}/scim/v2/Users?count=0", headers=headers)
    assert status == 200, body


def test_a_request_line_over_nginx_limit_is_a_scim_414(stack):
    head = _head("GET", f"/scim/v2/Users?filter={'x' * 40_000}")
    status, headers, body = raw_request(stack.https, head, tls=stack.tls)
    assert (status, body) == (414, URI_TOO_LONG)
    assert headers["Content-Type"] == "application/scim+json"


def test_a_header_over_nginx_limit_is_a_scim_400(stack):
    # nginx's 494 (Request Header Too Large), which it answers as 400.
    head = _head("GET", "/scim/v2/Users", f"X-Padding: {'x' * 40_000}")
    status, headers, body = raw_request(stack.https, head, tls=stack.tls)
    assert (status, body) == (400, HEADERS_TOO_LARGE)
    assert headers["Content-Type"] == "application/scim+json"


@pytest.mark.parametrize(
    "head",
    [
        pytest.param("GET /scim/v2/Users HTTP/1.1", id="no-host"),
        pytest.param(
            "GET /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: many",
            id="bad-content-length",
        ),
        pytest.param("NOT HTTP AT ALL", id="no-request-line"),
    ],
)
def test_a_malformed_request_is_a_scim_400_from_nginx(stack, head):
    status, headers, body = raw_request(stack.https, head, tls=stack.tls)
    assert (status, body) == (400, BAD_REQUEST)
    assert headers["Content-Type"] == "application/scim+json"


def test_request_id_round_trips_into_the_access_log(stack):
    status, headers, _ = stack.request(
        "GET", f"{stack.https}/scim/v2/Users?count=0", headers={"X-Request-ID": "okta-42-abc"}
    )
    assert (status, headers["X-Request-ID"]) == (200, "okta-42-abc")
    # Without one, nginx's $request_id (32 hex digits) is used, and echoed.
    generated = stack.request("GET", f"{stack.https}/healthz", token=False)[1]["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)

    first, second = _access_lines(stack, {"okta-42-abc", generated})
    assert set(first) == {
        "time", "request_id", "remote_addr", "method", "path", "status", "bytes",
        "duration_ms", "user_agent",
    }  # fmt: skip
    assert {k: first[k] for k in ("request_id", "remote_addr", "method", "path", "status")} == {
        "request_id": "okta-42-abc",
        "remote_addr": "127.0.0.1",  # the client, as X-Forwarded-For told ProxyFix
        "method": "GET",
        "path": "/scim/v2/Users",  # without the query string, which may carry user names
        "status": 200,
    }
    assert first["user_agent"].startswith("Python-urllib/")
    assert (second["request_id"], second["path"]) == (generated, "/healthz")


def test_plain_http_straight_to_gunicorn_is_refused_but_probes_answer(stack):
    status, _, body = stack.request("GET", f"{stack.gunicorn}/scim/v2/Users")
    assert (status, body) == (
        403,
        {
            "schemas": [ERROR_URN],
            "status": "403",
            "detail": "HTTPS is required: send SCIM requests to the https:// URL of this service",
        },
    )
    assert stack.request("GET", f"{stack.gunicorn}/healthz", token=False)[0] == 200


def test_metrics_are_not_served_through_nginx_even_with_their_token(stack):
    for url in (f"{stack.https}/metrics", f"{stack.https}//metrics", f"{stack.https}/%6detrics"):
        status, headers, body = stack.request("GET", url, token=METRICS_TOKEN)
        assert (status, body) == (404, error(404, "No such endpoint")), url
        assert headers["Content-Type"] == "application/scim+json"


def test_metrics_are_scraped_from_gunicorn_directly_and_count_what_came_through_nginx(stack):
    status, _, user = stack.request("POST", f"{stack.https}/scim/v2/Users", user_payload())
    assert status == 201
    assert stack.request("GET", f"{stack.https}/scim/v2/Users/{user['id']}")[0] == 200
    assert stack.request("GET", f"{stack.gunicorn}/metrics", token=False)[0] == 401
    # Plain HTTP on the private address, as a load balancer's probes, despite SCIM_REQUIRE_HTTPS.
    scrape = urllib.request.Request(f"{stack.gunicorn}/metrics")
    scrape.add_header("Authorization", f"Bearer {METRICS_TOKEN}")
    with urllib.request.urlopen(scrape, timeout=30) as response:
        text = response.read().decode()
    reads = [
        line
        for line in text.splitlines()
        if line.startswith("scim_http_requests_total{")
        and 'route="/scim/v2/Users/<user_id>"' in line
        and 'method="GET"' in line
        and 'status_class="2xx"' in line
        and 'tenant="default"' in line
    ]
    assert len(reads) == 1 and float(reads[0].rsplit(" ", 1)[1]) >= 1, text
    assert user["id"] not in text


def test_logs_never_contain_the_token(stack):
    assert stack.request("GET", f"{stack.https}/scim/v2/Users")[0] == 200
    for log in (stack.access_log, stack.error_log):
        text = log.read_text()
        assert TOKEN not in text
        assert "Bearer" not in text


def _access_lines(stack: Stack, request_ids: set[str]) -> list[dict[str, Any]]:
    """gunicorn's access lines (each one JSON object) for these request ids, in order."""
    deadline = time.monotonic() + 5
    while True:  # the worker writes its line just after the response
        lines = [json.loads(line) for line in stack.access_log.read_text().splitlines()]
        kept = [line for line in lines if line["request_id"] in request_ids]
        if len(kept) >= len(request_ids) or time.monotonic() > deadline:
            return kept
        time.sleep(0.05)


def test_readyz_fails_without_the_database_and_the_error_log_names_the_request(tmp_path):
    # gunicorn alone, on a database nobody listens for (port 1): alive, not ready, and its
    # stderr line for the failure is JSON carrying the request id.
    port = free_port()
    env = _service_env("postgresql+psycopg://scim@127.0.0.1:1/scim", port)
    error_log = tmp_path / "gunicorn-error.log"
    stack = Stack(
        "", "", f"http://127.0.0.1:{port}", ssl.create_default_context(), error_log, error_log
    )
    with error_log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            _wait_until(
                lambda: stack.request("GET", f"{stack.gunicorn}/healthz")[0] == 200,
                "gunicorn",
                [process],
                [error_log],
            )
            status, headers, body = stack.request(
                "GET", f"{stack.gunicorn}/readyz", headers={"X-Request-ID": "probe-9"}, token=False
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert (status, headers["Retry-After"]) == (503, "5")
    assert body == error(503, "The service cannot reach its database")
    lines = [json.loads(line) for line in error_log.read_text().splitlines()]
    assert {
        "level": "warning",
        "logger": "app.api.health",
        "message": 'readiness check failed: PostgreSQL database "scim" on 127.0.0.1:1'
        ' as user "scim": Connection refused; Is the server running on that host and accepting'
        " TCP/IP connections?",
        "request_id": "probe-9",
    } in [{k: v for k, v in line.items() if k != "time"} for line in lines]
