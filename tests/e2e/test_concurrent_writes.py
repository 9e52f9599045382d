"""Several gunicorn workers writing to one group at once lose nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import flask_migrate
import pytest

from app.auth import token_hash
from tests.conftest import TOKEN, make_app
from tests.net import free_port
from tests.payloads import GROUP_URN, PATCH_URN, user_payload

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 24


def _request(method: str, url: str, body: dict | None = None) -> tuple[int, dict | None]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Content-Type", "application/scim+json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture
def service(fresh_database_url: str, tmp_path: Path) -> Iterator[str]:
    """gunicorn with 3 workers of 4 threads on a migrated database; yields the /scim/v2 URL."""
    database_url = fresh_database_url
    app = make_app(database_url)
    with app.app_context():
        flask_migrate.upgrade(directory=str(ROOT / "migrations"))
        from app.db import db

        db.engine.dispose()
    port = free_port()
    log = tmp_path / "gunicorn.log"
    log_file = log.open("wb")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SCIM_TOKEN_HASHES": token_hash(TOKEN),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--no-control-socket",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "3",
            "--threads",
            "4",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    base = f"http://127.0.0.1:{port}/scim/v2"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _request("GET", f"{base}/ServiceProviderConfig")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"gunicorn did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log_file.close()


def test_concurrent_member_adds_to_one_group_lose_none(service):
    users = []
    for n in range(WRITERS):
        status, body = _request(
            "POST", f"{service}/Users", user_payload(userName=f"u{n}@example.com", externalId=None)
        )
        assert status == 201, body
        users.append(body["id"])
    status, group = _request(
        "POST", f"{service}/Groups", {"schemas": [GROUP_URN], "displayName": "Race"}
    )
    assert status == 201

    def add(user_id: str) -> int:
        body = {
            "schemas": [PATCH_URN],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
        }
        return _request("PATCH", f"{service}/Groups/{group['id']}", body)[0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(add, users))
    assert statuses == [204] * WRITERS
    status, after = _request("GET", f"{service}/Groups/{group['id']}")
    assert status == 200
    assert sorted(m["value"] for m in after["members"]) == sorted(users)
    assert after["meta"]["version"] == f'W/"{WRITERS + 1}"'


def test_concurrent_patches_to_one_user_all_apply(service):
    status, user = _request("POST", f"{service}/Users", user_payload())
    assert status == 201

    def add_email(n: int) -> int:
        body = {
            "schemas": [PATCH_URN],
            "Operations": [
                {"op": "add", "path": "emails", "value": [{"value": f"alias{n}@example.com"}]}
            ],
        }
        return _request("PATCH", f"{service}/Users/{user['id']}", body)[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(add_email, range(16)))
    assert statuses == [200] * 16
    _, after = _request("GET", f"{service}/Users/{user['id']}")
    assert len(after["emails"]) == 17
    assert after["meta"]["version"] == 'W/"17"'
