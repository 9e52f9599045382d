"""The application factory's Flask: hooks asked once whether they are coroutine functions
(app._Service), any other callable as Flask asks it."""

from __future__ import annotations

from flask import after_this_request

from app.db import db
from tests.conftest import BASE, TOKEN, create_schema, make_app


class _Unhashable:
    """A response callback that cannot be a dict key, as after_this_request allows."""

    __hash__ = None  # type: ignore[assignment]

    def __call__(self, response):
        response.headers["X-Seen"] = "unhashable"
        return response


def test_per_request_callbacks_run_and_are_not_remembered(database_url):
    app = make_app(database_url)
    with app.app_context():
        create_schema()

    @app.get("/probe")
    def probe():
        after_this_request(lambda response: response)  # a new function each request
        after_this_request(_Unhashable())
        return {"ok": True}

    remembered = dict(app._sync_hooks)
    client = app.test_client()
    for _ in range(3):
        response = client.get("/probe")
        assert response.status_code == 200
        assert response.json == {"ok": True}
        assert response.headers["X-Seen"] == "unhashable"
    assert app._sync_hooks == remembered  # nothing added by the requests
    # The registered hooks still run from the memo: a SCIM request is authenticated.
    assert client.get(f"{BASE}/Users").status_code == 401
    listed = client.get(f"{BASE}/Users", headers={"Authorization": f"Bearer {TOKEN}"})
    assert listed.status_code == 200
    with app.app_context():
        db.engine.dispose()
