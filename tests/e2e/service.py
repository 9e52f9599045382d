"""The service as real processes for end-to-end tests: a migrated database, its tenants' tokens,
gunicorn, HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask_migrate
import pytest

from app import tenancy
from app.auth import new_token, token_hash
from app.db import db
from app.store import tenants, tokens
from tests.conftest import TOKEN, make_app
from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Reply:
    """One HTTP answer; status 0 when none came (the connection broke or timed out)."""

    status: int
    headers: dict[str, str]
    body: Any  # the parsed JSON body; None when empty or not JSON
    raw: bytes = b""

    @property
    def media_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()


def request(
    method: str, url: str, body: Any = None, *, timeout: float = 30, token: str = TOKEN
) -> Reply:
    """One request with the test token (the default tenant's) or `token`; never raises for an
    HTTP error or a broken connection."""
    data = json.dumps(body).encode() if body is not None else None
    http = urllib.request.Request(url, data=data, method=method)
    http.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        http.add_header("Content-Type", "application/scim+json")
    try:
        with urllib.request.urlopen(http, timeout=timeout) as response:
            return _reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as e:
        return _reply(e.code, e.headers, e.read())
    except OSError as e:  # refused, reset, timed out: no answer at all
        return Reply(0, {}, None, repr(e).encode())


def _reply(status: int, headers: Any, raw: bytes) -> Reply:
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        body = None  # an HTML error page, say: the caller asserts on the media type
    return Reply(status, dict(headers), body, raw)


def migrate(database_url: str) -> None:
    """`flask db upgrade`, as in production."""
    app = make_app(database_url)
    with app.app_context():
        flask_migrate.upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


def tenant_tokens(database_url: str, *slugs: str) -> list[str]:
    """A token of a new tenant for each slug, made as `flask tenants create SLUG` and `flask
    tokens create NAME --tenant SLUG` make them (the default tenant's is TOKEN)."""
    app = make_app(database_url)
    made = []
    with app.app_context():
        for slug in slugs:
            tenant = tenants.create(slug)
            token = new_token()
            with tenancy.entered(tenant.id):
                tokens.create(f"{slug}-idp", token_hash(token))
            made.append(token)
        db.session.remove()
        db.engine.dispose()
    return made


def service_env(database_url: str, port: int, **settings: str) -> dict[str, str]:
    """The environment of a service under test: every variable .env.example names is set, so a
    developer's .env cannot leak in; the test token; listening on `port`; then `settings`."""
    names = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("SCIM_")}
    env.update(dict.fromkeys(names, ""))
    env.update(
        DATABASE_URL=database_url,
        SCIM_TOKEN_HASHES=token_hash(TOKEN),
        SCIM_BIND=f"127.0.0.1:{port}",
        **settings,
    )
    return env


@contextmanager
def gunicorn(
    database_url: str, log: Path, *, workers: int = 3, threads: int = 4, **settings: str
) -> Iterator[str]:
    """gunicorn (gunicorn.conf.py) on a migrated database; yields the /scim/v2 URL.

    No rate limit unless `settings` sets one: these tests send thousands of requests a minute.
    """
    port = free_port()
    env = service_env(
        database_url,
        port,
        SCIM_WORKERS=str(workers),
        SCIM_THREADS=str(threads),
        SCIM_LOG_LEVEL="warning",
        **settings,
    )
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,  # the access and audit lines
            stderr=log_file,
        )
        base = f"http://127.0.0.1:{port}/scim/v2"
        try:
            deadline = time.monotonic() + 30
            while request("GET", f"{base}/ServiceProviderConfig", timeout=5).status != 200:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"gunicorn did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)
