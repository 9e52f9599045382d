"""POST /Bulk (RFC 7644 §3.7): operations run as their single requests, bulkId references in
data and paths (forward, backward, circular), failOnErrors, versions, limits (413), malformed
requests, audit rows and rate-limit accounting per operation, races with single requests."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import tenancy
from app.config import ConfigError
from app.db import db
from app.models import EventReceiver
from app.store import audit
from app.store import events as events_store
from tests.conftest import BASE, TOKEN, empty_tables, make_app
from tests.payloads import (
    ENTERPRISE_URN,
    GROUP_URN,
    USER_URN,
    error,
    patch_payload,
    user_payload,
)

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
HOST = f"http://localhost{BASE}"
ALLOWED = "(POST to /Users or /Groups; PUT, PATCH and DELETE to /Users/{id} or /Groups/{id})"


def bulk(client: FlaskClient, *operations: dict[str, Any], **fields: Any) -> Any:
    body = {"schemas": [BULK_REQUEST], "Operations": list(operations), **fields}
    response = client.post(f"{BASE}/Bulk", json=body)
    response.close()  # as a WSGI server closes it: refused operations' audit rows are stored
    return response


def results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.json
    assert response.json["schemas"] == [BULK_RESPONSE]
    assert set(response.json) == {"schemas", "Operations"}
    return response.json["Operations"]


def new_user(bulk_id: str, user_name: str, **extra: Any) -> dict[str, Any]:
    data = {"schemas": [USER_URN], "userName": user_name, **extra}
    return {"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": data}


def new_group(bulk_id: str, name: str, *members: str) -> dict[str, Any]:
    data = {
        "schemas": [GROUP_URN],
        "displayName": name,
        "members": [{"value": value} for value in members],
    }
    return {"method": "POST", "path": "/Groups", "bulkId": bulk_id, "data": data}


def id_of(result: dict[str, Any]) -> str:
    return result["location"].rsplit("/", 1)[1]


def created(result: dict[str, Any], endpoint: str, bulk_id: str) -> dict[str, Any]:
    """What a POST's result says: its bulkId, version 1, where the new resource is."""
    assert result == {
        "method": "POST",
        "bulkId": bulk_id,
        "version": 'W/"1"',
        "location": f"{HOST}/{endpoint}/{id_of(result)}",
        "status": "201",
    }
    return result


def get(client: FlaskClient, endpoint: str, resource_id: str) -> dict[str, Any]:
    response = client.get(f"{BASE}/{endpoint}/{resource_id}")
    assert response.status_code == 200, response.json
    return response.json


# --- bulkId references ----------------------------------------------------------------------


def test_a_group_refers_forward_to_users_created_later_in_the_request(client):
    response = bulk(
        client,
        new_group("g", "Engineering", "bulkId:ada", "bulkId:grace"),
        new_user("ada", "ada@example.com"),
        new_user("grace", "grace@example.com"),
    )
    group, ada, grace = results(response)
    created(group, "Groups", "g")
    created(ada, "Users", "ada")
    created(grace, "Users", "grace")
    members = get(client, "Groups", id_of(group))["members"]
    assert sorted(m["value"] for m in members) == sorted([id_of(ada), id_of(grace)])
    assert get(client, "Users", id_of(ada))["groups"][0]["value"] == id_of(group)


def test_a_group_refers_back_to_users_and_a_patch_path_to_the_group(client):
    response = bulk(
        client,
        new_user("ada", "ada@example.com"),
        new_group("g", "Engineering", "bulkId:ada"),
        new_user("grace", "grace@example.com"),
        {
            "method": "PATCH",
            "path": "/Groups/bulkId:g",
            "data": patch_payload(
                {"op": "add", "path": "members", "value": [{"value": "bulkId:grace"}]},
                {"op": "replace", "path": "displayName", "value": "Engineers"},
            ),
        },
    )
    ada, group, grace, patched = results(response)
    assert patched == {
        "method": "PATCH",
        "version": 'W/"2"',
        "location": group["location"],
        "status": "204",  # as a group PATCH without attributes is answered
    }
    read = get(client, "Groups", id_of(group))
    assert read["displayName"] == "Engineers"
    assert read["meta"]["version"] == 'W/"2"'
    assert {m["value"] for m in read["members"]} == {id_of(ada), id_of(grace)}


def test_a_patch_of_a_user_created_later_runs_after_it(client):
    response = bulk(
        client,
        {
            "method": "PATCH",
            "path": "/Users/bulkId:ada",
            "data": patch_payload({"op": "replace", "path": "active", "value": False}),
        },
        new_user("ada", "ada@example.com"),
    )
    patched, ada = results(response)
    created(ada, "Users", "ada")
    assert patched == {
        "method": "PATCH",
        "version": 'W/"2"',
        "location": ada["location"],
        "status": "200",
    }
    assert get(client, "Users", id_of(ada))["active"] is False


def test_a_user_created_patched_twice_and_deleted_in_one_request(client):
    """The create leaves an entity in the session; the PATCHes read the user as columns and
    write by statement; the DELETE reads the entity again, and must see both PATCHes."""
    rename = patch_payload({"op": "replace", "path": "displayName", "value": "Ada L."})
    deactivate = patch_payload({"op": "replace", "path": "active", "value": False})
    response = bulk(
        client,
        new_user("ada", "ada@example.com"),
        {"method": "PATCH", "path": "/Users/bulkId:ada", "data": rename},
        {"method": "PATCH", "path": "/Users/bulkId:ada", "data": deactivate},
        {"method": "DELETE", "path": "/Users/bulkId:ada"},
    )
    ada, renamed, deactivated, deleted = results(response)
    created(ada, "Users", "ada")
    assert [renamed["status"], renamed["version"]] == ["200", 'W/"2"']
    assert [deactivated["status"], deactivated["version"]] == ["200", 'W/"3"']
    assert deleted["status"] == "204"
    assert client.get(f"{BASE}/Users/{id_of(ada)}").status_code == 404


def test_a_reference_in_any_value_of_the_data_is_resolved(client):
    response = bulk(
        client,
        new_user("boss", "boss@example.com"),
        new_user("ada", "ada@example.com", **{ENTERPRISE_URN: {"manager": "bulkId:boss"}}),
    )
    boss, ada = results(response)
    assert get(client, "Users", id_of(ada))[ENTERPRISE_URN]["manager"]["value"] == id_of(boss)


def test_an_undefined_bulk_id_fails_that_operation_with_400_invalid_value(client):
    response = bulk(
        client,
        new_group("g", "Engineering", "bulkId:nobody"),
        {"method": "DELETE", "path": "/Users/bulkId:nobody"},
        new_user("ada", "ada@example.com"),
    )
    group, delete, ada = results(response)
    assert group == {
        "method": "POST",
        "bulkId": "g",
        "status": "400",
        "response": error(
            400,
            "Operations[0] refers to bulkId:nobody, which no POST operation of this request "
            "defines",
            "invalidValue",
        ),
    }
    assert delete == {
        "method": "DELETE",  # no location: the path names no resource
        "status": "400",
        "response": error(
            400,
            "Operations[1] refers to bulkId:nobody, which no POST operation of this request "
            "defines",
            "invalidValue",
        ),
    }
    created(ada, "Users", "ada")


def test_a_reference_to_a_post_that_failed_fails_with_409(client, create_user):
    create_user(userName="ada@example.com")
    response = bulk(
        client,
        new_user("ada", "ADA@example.com"),
        new_group("g", "Engineering", "bulkId:ada"),
    )
    ada, group = results(response)
    assert ada["status"] == "409"
    assert ada["response"]["scimType"] == "uniqueness"
    assert group == {
        "method": "POST",
        "bulkId": "g",
        "status": "409",
        "response": error(409, "Operations[1] refers to bulkId:ada, whose POST failed"),
    }
    assert client.get(f"{BASE}/Groups").json["totalResults"] == 0


def test_a_circular_reference_is_resolved_when_the_resources_allow_it(client):
    # RFC 7644 §3.7.1: two users each other's manager. The first is created without the
    # reference, the second with it, then the first is given its own.
    response = bulk(
        client,
        new_user("a", "a@example.com", **{ENTERPRISE_URN: {"manager": {"value": "bulkId:b"}}}),
        new_user("b", "b@example.com", **{ENTERPRISE_URN: {"manager": {"value": "bulkId:a"}}}),
    )
    a, b = results(response)
    assert a == {
        "method": "POST",
        "bulkId": "a",
        "version": 'W/"2"',  # created, then given its manager
        "location": f"{HOST}/Users/{id_of(a)}",
        "status": "201",
    }
    created(b, "Users", "b")
    assert get(client, "Users", id_of(a))[ENTERPRISE_URN]["manager"]["value"] == id_of(b)
    assert get(client, "Users", id_of(b))[ENTERPRISE_URN]["manager"]["value"] == id_of(a)


@pytest.mark.parametrize(
    "operations",
    [
        pytest.param(
            [new_group("a", "A", "bulkId:b"), new_group("b", "B", "bulkId:a")], id="two-groups"
        ),
        pytest.param(
            [
                new_group("a", "A", "bulkId:b"),
                new_group("b", "B", "bulkId:c"),
                new_group("c", "C", "bulkId:a"),
            ],
            id="three-groups",
        ),
    ],
)
def test_a_circle_of_groups_cannot_be_resolved_and_fails_whole_with_409(client, operations):
    # Groups may not contain each other (no cycles of nested groups): RFC 7644 §3.7.1 lets
    # the service "stop after a failed attempt and instead return HTTP status code 409".
    answered = results(bulk(client, *operations, new_user("ada", "ada@example.com")))
    *circle, ada = answered
    indexes = ", ".join(str(i) for i in range(len(circle)))
    for result, op in zip(circle, operations, strict=True):
        assert result["status"] == "409"
        assert set(result) == {"method", "bulkId", "status", "response"}, result
        assert result["bulkId"] == op["bulkId"]
        detail = result["response"]["detail"]
        assert detail.startswith(
            f"Operations {indexes} refer to each other by bulkId in a circle that could not be "
            "resolved: members: adding group "
        ), detail
    created(ada, "Users", "ada")
    assert client.get(f"{BASE}/Groups").json["totalResults"] == 0  # none of them kept


def test_a_group_that_refers_to_itself_fails_with_409(client):
    (result,) = results(bulk(client, new_group("g", "G", "bulkId:g")))
    assert result["status"] == "409"
    assert result["response"]["detail"] == (
        "Operations 0 refer to each other by bulkId in a circle that could not be resolved: "
        "members: a group cannot be a member of itself"
    )
    assert client.get(f"{BASE}/Groups").json["totalResults"] == 0


# --- each operation as its single request ---------------------------------------------------


SINGLE_FAILURES = [
    pytest.param("POST", "/Users", {"schemas": [USER_URN]}, id="create-without-username"),
    pytest.param("POST", "/Users", user_payload(active="maybe"), id="create-bad-boolean"),
    pytest.param("POST", "/Users", {"schemas": ["urn:x"], "userName": "x"}, id="unknown-schema"),
    pytest.param("POST", "/Groups", {"schemas": [GROUP_URN]}, id="group-without-name"),
    pytest.param(
        "POST",
        "/Groups",
        {"schemas": [GROUP_URN], "displayName": "G", "members": [{"value": "nope"}]},
        id="group-with-unknown-member",
    ),
    pytest.param("PUT", "/Users/nope", user_payload(), id="replace-unknown"),
    pytest.param(
        "PATCH",
        "/Users/{user}",
        patch_payload({"op": "replace", "path": "id", "value": "x"}),
        id="patch-readonly",
    ),
    pytest.param(
        "PATCH",
        "/Users/{user}",
        patch_payload({"op": "remove", "path": 'emails[type eq "home"]'}),
        id="patch-no-target-is-fine-for-remove",
    ),
    pytest.param(
        "PATCH",
        "/Groups/{group}",
        patch_payload({"op": "replace", "path": 'members[value eq "x"]', "value": []}),
        id="patch-group-no-target",
    ),
    pytest.param("PATCH", "/Users/{user}", {"Operations": "x"}, id="patch-malformed"),
    pytest.param("DELETE", "/Groups/nope", None, id="delete-unknown"),
    pytest.param("POST", "/Users", user_payload(userName="taken@example.com"), id="uniqueness"),
]


@pytest.mark.parametrize(("method", "path", "data"), SINGLE_FAILURES)
def test_an_operation_is_answered_as_its_single_request(
    client, create_user, create_group, method, path, data
):
    user = create_user(userName="taken@example.com")
    group = create_group("Engineering")
    path = path.format(user=user["id"], group=group["id"])
    operation = {"method": method, "path": path, "bulkId": "x"}
    if data is not None:
        operation["data"] = data
    (result,) = results(bulk(client, operation))
    single = client.open(f"{BASE}{path}", method=method, json=data)
    assert result["status"] == str(single.status_code)
    if single.status_code >= 400:
        assert result["response"] == single.json
    else:
        assert "response" not in result
    if method != "POST":
        assert result["location"] == f"{HOST}{path}"


def test_an_operation_is_atomic_and_the_others_stay(client, create_user):
    ada = create_user(userName="ada@example.com", displayName="Ada")
    response = bulk(
        client,
        new_user("one", "one@example.com"),
        {
            "method": "PATCH",
            "path": f"/Users/{ada['id']}",
            "data": patch_payload(
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "replace", "path": "id", "value": "not-allowed"},
            ),
        },
        new_user("two", "one@EXAMPLE.com"),  # taken by the first, in the same transaction
        new_user("three", "three@example.com"),
    )
    one, patched, two, three = results(response)
    created(one, "Users", "one")
    assert patched["status"] == "400" and patched["response"]["scimType"] == "mutability"
    assert two["status"] == "409" and two["response"]["scimType"] == "uniqueness"
    created(three, "Users", "three")
    assert get(client, "Users", ada["id"])["displayName"] == "Ada"  # nothing of the PATCH
    names = {r["userName"] for r in client.get(f"{BASE}/Users").json["Resources"]}
    assert names == {"ada@example.com", "one@example.com", "three@example.com"}


def test_versions_are_if_match_per_operation(client, create_user, create_group):
    ada = create_user(userName="ada@example.com")
    grace = create_user(userName="grace@example.com")
    edsger = create_user(userName="edsger@example.com")
    group = create_group("Engineering")
    stale = 'W/"7"'
    response = bulk(
        client,
        {
            "method": "PUT",
            "path": f"/Users/{ada['id']}",
            "version": stale,
            "data": user_payload(userName="ada@example.com"),
        },
        {
            "method": "PATCH",
            "path": f"/Users/{grace['id']}",
            "version": grace["meta"]["version"],
            "data": patch_payload({"op": "replace", "path": "title", "value": "Admiral"}),
        },
        {"method": "DELETE", "path": f"/Users/{edsger['id']}", "version": stale},
        {
            "method": "PATCH",
            "path": f"/Groups/{group['id']}",
            "version": stale,
            "data": patch_payload(
                {"op": "add", "path": "members", "value": [{"value": ada["id"]}]}
            ),
        },
    )
    put, patched, delete, group_patch = results(response)
    assert put == {
        "method": "PUT",
        "location": f"{HOST}/Users/{ada['id']}",
        "status": "412",
        "response": error(
            412, f'User {ada["id"]} has changed: its ETag is now W/"1"; read it again'
        ),
    }
    assert patched == {
        "method": "PATCH",
        "version": 'W/"2"',
        "location": f"{HOST}/Users/{grace['id']}",
        "status": "200",
    }
    assert delete["status"] == "412" and group_patch["status"] == "412"
    assert get(client, "Users", edsger["id"])["meta"]["version"] == 'W/"1"'
    assert get(client, "Groups", group["id"]).get("members", []) == []


def test_the_rfc_example_add_update_remove(client, create_user):
    # RFC 7644 §3.7.3's first example: a POST, a PUT, a PATCH and a DELETE.
    bob = create_user(userName="bob@example.com")
    jim = create_user(userName="jim@example.com")
    gone = create_user(userName="gone@example.com")
    response = bulk(
        client,
        new_user("qwerty", "Alice"),
        {
            "method": "PUT",
            "path": f"/Users/{bob['id']}",
            "version": bob["meta"]["version"],
            "data": user_payload(userName="bob@example.com", displayName="Bob Smith"),
        },
        {
            "method": "PATCH",
            "path": f"/Users/{jim['id']}",
            "version": jim["meta"]["version"],
            "data": patch_payload({"op": "add", "path": "nickName", "value": "Jimmy"}),
        },
        {"method": "DELETE", "path": f"/Users/{gone['id']}", "version": 'W/"1"'},
    )
    alice, put, patched, delete = results(response)
    created(alice, "Users", "qwerty")
    assert put == {
        "method": "PUT",
        "version": 'W/"2"',
        "location": f"{HOST}/Users/{bob['id']}",
        "status": "200",
    }
    assert patched["status"] == "200" and patched["version"] == 'W/"2"'
    assert delete == {"method": "DELETE", "location": f"{HOST}/Users/{gone['id']}", "status": "204"}
    assert client.get(f"{BASE}/Users/{gone['id']}").status_code == 404
    assert get(client, "Users", jim["id"])["nickName"] == "Jimmy"
    assert get(client, "Users", id_of(alice))["userName"] == "Alice"


def test_a_delete_then_a_write_to_the_same_user_is_404(client, create_user, create_group):
    ada = create_user(userName="ada@example.com")
    group = create_group("Engineering", members=[{"value": ada["id"]}])
    response = bulk(
        client,
        {"method": "DELETE", "path": f"/Users/{ada['id']}"},
        {"method": "PUT", "path": f"/Users/{ada['id']}", "data": user_payload()},
    )
    delete, put = results(response)
    assert delete["status"] == "204"
    assert put["status"] == "404"
    assert put["response"] == error(404, f"User {ada['id']} not found")
    assert get(client, "Groups", group["id"]).get("members", []) == []


# --- failOnErrors ---------------------------------------------------------------------------


def test_fail_on_errors_stops_after_that_many_errors(client, create_user):
    create_user(userName="taken@example.com")
    operations = [
        new_user("a", "a@example.com"),
        new_user("b", "taken@example.com"),  # error 1
        new_user("c", "c@example.com"),
        {"method": "DELETE", "path": "/Users/nope"},  # error 2: the last that runs
        new_user("d", "d@example.com"),
    ]
    answered = results(bulk(client, *operations, failOnErrors=2))
    assert [r["status"] for r in answered] == ["201", "409", "201", "404"]
    assert [r.get("bulkId") for r in answered] == ["a", "b", "c", None]
    names = {r["userName"] for r in client.get(f"{BASE}/Users").json["Resources"]}
    assert names == {"taken@example.com", "a@example.com", "c@example.com"}
    # Without failOnErrors, every operation runs (RFC 7644 §3.7.3).
    empty_tables()
    create_user(userName="taken@example.com")
    assert len(results(bulk(client, *operations))) == 5


def test_fail_on_errors_counts_in_the_order_operations_run(client):
    # The POST a group refers to runs first, and its failure is the one error allowed.
    answered = results(
        bulk(
            client,
            new_group("g", "G", "bulkId:u"),
            new_user("u", ""),  # fails: userName is required
            new_user("v", "v@example.com"),
            failOnErrors=1,
        )
    )
    assert [(r["bulkId"], r["status"]) for r in answered] == [("u", "400")]


# --- limits ---------------------------------------------------------------------------------


@pytest.fixture
def limited_app(database_url: str) -> Iterator[Callable[..., FlaskClient]]:
    made: list[Flask] = []

    def make(**settings: str) -> FlaskClient:
        app = make_app(database_url, **settings)
        made.append(app)
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        return client

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()


def test_limits_are_advertised_and_configurable(client, limited_app):
    assert client.get(f"{BASE}/ServiceProviderConfig").json["bulk"] == {
        "supported": True,
        "maxOperations": 2000,
        "maxPayloadSize": 1_048_576,
    }
    other = limited_app(SCIM_BULK_MAX_OPERATIONS="3", SCIM_BULK_MAX_PAYLOAD_BYTES="2048")
    assert other.get(f"{BASE}/ServiceProviderConfig").json["bulk"] == {
        "supported": True,
        "maxOperations": 3,
        "maxPayloadSize": 2048,
    }


def test_more_operations_than_max_operations_is_413_naming_the_limit(client, limited_app):
    other = limited_app(SCIM_BULK_MAX_OPERATIONS="3")
    operations = [new_user(f"u{i}", f"u{i}@example.com") for i in range(4)]
    response = bulk(other, *operations)
    assert response.status_code == 413
    assert response.json == error(
        413,
        "The bulk request has 4 operations, more than the maxOperations (3) this service "
        "accepts (SCIM_BULK_MAX_OPERATIONS)",
    )
    assert client.get(f"{BASE}/Users").json["totalResults"] == 0
    assert len(results(bulk(other, *operations[:3]))) == 3


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"SCIM_BULK_MAX_PAYLOAD_BYTES": "2048"}, id="below-the-body-limit"),
        pytest.param({"SCIM_MAX_BODY_BYTES": "2048"}, id="the-body-limit"),
    ],
)
def test_a_request_larger_than_max_payload_size_is_413_naming_the_limit(
    client, limited_app, chunked, settings
):
    other = limited_app(**settings)
    operations = [new_user(f"u{i}", f"user-number-{i}@example.com") for i in range(30)]
    body = json.dumps({"schemas": [BULK_REQUEST], "Operations": operations}).encode()
    assert len(body) > 2048
    if chunked:  # as gunicorn hands a chunked body over (tests/test_errors.py, streamed)
        response = other.post(
            f"{BASE}/Bulk",
            content_type="application/scim+json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
        )
    else:
        response = other.post(f"{BASE}/Bulk", data=body, content_type="application/scim+json")
    assert response.status_code == 413
    assert response.json == error(
        413,
        "The bulk request is larger than the maxPayloadSize (2048 bytes) this service accepts "
        "(SCIM_BULK_MAX_PAYLOAD_BYTES)",
    )
    assert client.get(f"{BASE}/Users").json["totalResults"] == 0


def test_max_payload_size_cannot_exceed_the_body_limit(database_url):
    with pytest.raises(ConfigError, match="SCIM_BULK_MAX_PAYLOAD_BYTES must be at most"):
        make_app(database_url, SCIM_MAX_BODY_BYTES="4096", SCIM_BULK_MAX_PAYLOAD_BYTES="8192")


def test_the_largest_request_fits_in_nginx_limit():
    # deploy/nginx's client_max_body_size admits what maxPayloadSize advertises.
    from pathlib import Path

    conf = (Path(__file__).parent.parent / "deploy/nginx/scim.conf").read_text()
    assert "client_max_body_size 1m;" in conf


# --- malformed requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            [], error(400, "The request body must be a JSON object", "invalidSyntax"), id="array"
        ),
        pytest.param(
            {"schemas": ["urn:x"], "Operations": []},
            error(400, f"schemas must be [{BULK_REQUEST!r}]", "invalidSyntax"),
            id="wrong-schema",
        ),
        pytest.param(
            {"schemas": [BULK_REQUEST]},
            error(
                400,
                "A BulkRequest needs Operations, a list of operations (RFC 7644 §3.7)",
                "invalidSyntax",
            ),
            id="no-operations",
        ),
        pytest.param(
            {"Operations": {"method": "POST"}},
            error(
                400,
                "A BulkRequest needs Operations, a list of operations (RFC 7644 §3.7)",
                "invalidSyntax",
            ),
            id="operations-not-a-list",
        ),
        *(
            pytest.param(
                {"Operations": [], "failOnErrors": value},
                error(400, "failOnErrors must be an integer of at least 1", "invalidValue"),
                id=f"fail-on-errors-{value!r}",
            )
            for value in (0, -1, "1", True, 1.5)
        ),
        pytest.param(
            {"Operations": [new_user("a", "a@x"), new_user("a", "b@x")]},
            error(
                400,
                "bulkId 'a' is given to operations 0 and 1; each must be unique within the request",
                "invalidValue",
            ),
            id="duplicate-bulk-id",
        ),
    ],
)
def test_a_malformed_request_is_400_and_runs_nothing(client, body, expected):
    response = client.post(f"{BASE}/Bulk", json=body)
    assert response.status_code == 400
    assert response.json == expected
    assert client.get(f"{BASE}/Users").json["totalResults"] == 0


def test_lower_case_names_and_no_schemas_are_accepted(client):
    response = client.post(
        f"{BASE}/Bulk",
        json={
            "operations": [
                {"METHOD": "post", "Path": "/Users", "BULKID": "a", "Data": {"userName": "a@x"}}
            ]
        },
    )
    (result,) = results(response)
    created(result, "Users", "a")


@pytest.mark.parametrize(
    ("operation", "status", "scim_type", "detail"),
    [
        pytest.param(
            "nope", 400, "invalidSyntax", "Operations[0] must be an object", id="not-an-object"
        ),
        pytest.param(
            {"path": "/Users"},
            400,
            "invalidSyntax",
            "Operations[0].method must be one of POST, PUT, PATCH or DELETE",
            id="no-method",
        ),
        pytest.param(
            {"method": "GET", "path": "/Users"},
            400,
            "invalidSyntax",
            "Operations[0].method must be one of POST, PUT, PATCH or DELETE",
            id="get",
        ),
        pytest.param(
            {"method": "POST", "path": "/Users", "data": {"userName": "a"}},
            400,
            "invalidSyntax",
            "Operations[0].bulkId is required for a POST",
            id="post-without-bulk-id",
        ),
        pytest.param(
            {"method": "POST", "bulkId": 7, "path": "/Users", "data": {}},
            400,
            "invalidSyntax",
            "Operations[0].bulkId must be a string",
            id="bulk-id-not-a-string",
        ),
        pytest.param(
            {"method": "DELETE"},
            400,
            "invalidSyntax",
            "Operations[0].path is required: /Users or /Groups for a POST, /Users/{id} or "
            "/Groups/{id} otherwise",
            id="no-path",
        ),
        pytest.param(
            {"method": "DELETE", "path": "Users/x"},
            400,
            "invalidValue",
            "Operations[0].path must be a path such as /Users or /Users/{id}, without a query",
            id="relative-path",
        ),
        pytest.param(
            {"method": "DELETE", "path": "/Users/x?attributes=id"},
            400,
            "invalidValue",
            "Operations[0].path must be a path such as /Users or /Users/{id}, without a query",
            id="query",
        ),
        pytest.param(
            {"method": "DELETE", "path": "/Widgets/x"},
            404,
            None,
            "Operations[0].path '/Widgets/x': no such endpoint",
            id="unknown-endpoint",
        ),
        pytest.param(
            {"method": "DELETE", "path": "/Users/x/y"},
            404,
            None,
            "Operations[0].path '/Users/x/y': no such endpoint",
            id="below-a-user",
        ),
        pytest.param(
            {"method": "POST", "bulkId": "a", "path": "/Users/x", "data": {}},
            405,
            None,
            f"Operations[0]: POST is not allowed on /Users/x {ALLOWED}",
            id="post-to-a-user",
        ),
        pytest.param(
            {"method": "DELETE", "path": "/Groups"},
            405,
            None,
            f"Operations[0]: DELETE is not allowed on /Groups {ALLOWED}",
            id="delete-an-endpoint",
        ),
        pytest.param(
            {"method": "POST", "bulkId": "a", "path": "/Users/.search", "data": {}},
            400,
            "invalidValue",
            "Operations[0]: a search cannot be a bulk operation",
            id="search",
        ),
        pytest.param(
            {"method": "PUT", "path": "/Users/x"},
            400,
            "invalidSyntax",
            "Operations[0].data must be a JSON object for a PUT",
            id="no-data",
        ),
        pytest.param(
            {"method": "PATCH", "path": "/Users/x", "data": [1]},
            400,
            "invalidSyntax",
            "Operations[0].data must be a JSON object for a PATCH",
            id="data-not-an-object",
        ),
    ],
)
def test_a_malformed_operation_fails_alone(client, operation, status, scim_type, detail):
    response = client.post(
        f"{BASE}/Bulk", json={"Operations": [operation, new_user("ok", "ok@example.com")]}
    )
    failed, ok = results(response)
    assert failed["status"] == str(status)
    assert failed["response"] == error(status, detail, scim_type)
    created(ok, "Users", "ok")


# --- audit, rate limit, tenants -------------------------------------------------------------


def audit_rows() -> list[Any]:
    db.session.remove()
    with tenancy.across_tenants():
        return sorted(audit.recent(limit=1000), key=lambda row: row.id)


def test_each_operation_has_its_own_audit_row_and_line(client, create_user, capsys):
    ada = create_user(userName="ada@example.com")
    capsys.readouterr()
    before = {row.id for row in audit_rows()}
    response = client.post(
        f"{BASE}/Bulk",
        json={
            "Operations": [
                new_user("grace", "grace@example.com", displayName="Grace"),
                new_user("dup", "ADA@example.com"),
                {
                    "method": "PATCH",
                    "path": f"/Users/{ada['id']}",
                    "data": patch_payload({"op": "replace", "path": "title", "value": "Countess"}),
                },
                {"method": "DELETE", "path": "/Groups/nope"},
                {"method": "DELETE", "path": "/Widgets/nope"},  # no such route: not audited
            ]
        },
        headers={"X-Request-ID": "bulk-1"},
    )
    response.close()
    grace, *_ = results(response)
    rows = [row for row in audit_rows() if row.id not in before]
    seen = [
        (
            r.request_id,
            r.method,
            r.resource_type,
            r.resource_id,
            r.operation,
            r.attributes,
            r.status,
            r.scim_type,
        )
        for r in rows
    ]
    assert sorted(seen, key=str) == sorted(
        [
            (
                "bulk-1",
                "POST",
                "User",
                id_of(grace),
                "create",
                ["displayName", "userName"],
                201,
                None,
            ),
            ("bulk-1", "POST", "User", None, "create", ["userName"], 409, "uniqueness"),
            ("bulk-1", "PATCH", "User", ada["id"], "patch", ["title"], 200, None),
            ("bulk-1", "DELETE", "Group", "nope", "delete", [], 404, None),
        ],
        key=str,
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"audit"' in line]
    assert [(line["method"], line["status"]) for line in lines] == [
        ("POST", 201),
        ("POST", 409),
        ("PATCH", 200),
        ("DELETE", 404),
    ]


def test_operations_are_counted_by_the_rate_limit_before_any_runs(limited_app):
    other = limited_app(SCIM_RATE_LIMIT="5 per minute")
    # Five operations: the request and four more; the budget is spent.
    five = [new_user(f"u{i}", f"u{i}@example.com") for i in range(5)]
    assert len(results(bulk(other, *five[:3]))) == 3  # 3 of 5
    refused = bulk(other, *[new_user(f"v{i}", f"v{i}@example.com") for i in range(3)])
    assert refused.status_code == 429  # 3 more than the 2 left: refused whole
    assert "Retry-After" in refused.headers
    assert refused.json["status"] == "429"
    # Nothing of it ran, and nothing of it was spent but the request itself.
    assert other.get(f"{BASE}/Users").json["totalResults"] == 3  # the 5th request
    assert other.get(f"{BASE}/Users").status_code == 429


def test_another_tenants_ids_are_404_and_invalid_members_as_elsewhere(
    client, tenant_client, create_user, create_group
):
    theirs = create_user(userName="ada@example.com")
    their_group = create_group("Theirs")
    mine = tenant_client("acme")
    answered = results(
        bulk(
            mine,
            {"method": "DELETE", "path": f"/Users/{theirs['id']}"},
            {
                "method": "PATCH",
                "path": f"/Groups/{their_group['id']}",
                "data": patch_payload({"op": "replace", "path": "displayName", "value": "x"}),
            },
            new_group("g", "Mine", theirs["id"]),
        )
    )
    assert [r["status"] for r in answered] == ["404", "404", "400"]
    assert answered[0]["response"] == error(404, f"User {theirs['id']} not found")
    assert answered[2]["response"] == error(
        400, f"members: {theirs['id']!r} is not an existing user or group", "invalidValue"
    )
    assert get(client, "Users", theirs["id"])["meta"]["version"] == 'W/"1"'


# --- chunks, races --------------------------------------------------------------------------


@pytest.fixture
def chunk_every_operation(app: Flask) -> Iterator[None]:
    before = app.config["SCIM_BULK_CHUNK_SECONDS"]
    app.config["SCIM_BULK_CHUNK_SECONDS"] = 0  # a COMMIT after every operation
    yield
    app.config["SCIM_BULK_CHUNK_SECONDS"] = before


def test_commits_between_operations_change_nothing_of_the_answers(client, chunk_every_operation):
    response = bulk(
        client,
        new_group("g", "G", "bulkId:a", "bulkId:b"),
        new_user("a", "a@example.com"),
        new_user("b", "b@example.com"),
        new_user("dup", "A@example.com"),
    )
    group, a, b, dup = results(response)
    assert [group["status"], a["status"], b["status"], dup["status"]] == [
        "201",
        "201",
        "201",
        "409",
    ]
    assert len(get(client, "Groups", id_of(group))["members"]) == 2


def test_a_bulk_racing_single_requests_on_the_same_group_loses_no_change(
    app, client, create_user, create_group
):
    group = create_group("Engineering")
    users = [create_user(userName=f"u{i}@example.com", externalId=None) for i in range(40)]
    bulk_users, single_users = users[:20], users[20:]

    def add(user: dict[str, Any]) -> dict[str, Any]:
        return patch_payload({"op": "add", "path": "members", "value": [{"value": user["id"]}]})

    statuses: list[str] = []
    single_statuses: list[int] = []
    start = threading.Barrier(2)

    def send_bulk() -> None:
        other = app.test_client()
        other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        start.wait()
        ops = [
            {"method": "PATCH", "path": f"/Groups/{group['id']}", "data": add(u)}
            for u in bulk_users
        ]
        statuses.extend(r["status"] for r in results(bulk(other, *ops)))

    def send_singles() -> None:
        other = app.test_client()
        other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        start.wait()
        for user in single_users:
            single_statuses.append(
                other.patch(f"{BASE}/Groups/{group['id']}", json=add(user)).status_code
            )

    threads = [threading.Thread(target=send_bulk), threading.Thread(target=send_singles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == ["204"] * 20
    assert single_statuses == [204] * 20
    read = get(client, "Groups", group["id"])
    assert {m["value"] for m in read["members"]} == {u["id"] for u in users}
    assert read["meta"]["version"] == 'W/"41"'  # every change counted once


def test_a_bulk_deleting_users_while_single_requests_add_them_leaves_no_dangling_member(
    app, client, create_user, create_group
):
    group = create_group("Engineering")
    users = [create_user(userName=f"u{i}@example.com", externalId=None) for i in range(20)]
    start = threading.Barrier(2)

    def send_bulk() -> None:
        other = app.test_client()
        other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        start.wait()
        results(bulk(other, *[{"method": "DELETE", "path": f"/Users/{u['id']}"} for u in users]))

    def send_singles() -> None:
        other = app.test_client()
        other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        start.wait()
        for user in users:
            other.patch(
                f"{BASE}/Groups/{group['id']}",
                json=patch_payload(
                    {"op": "add", "path": "members", "value": [{"value": user["id"]}]}
                ),
            )

    threads = [threading.Thread(target=send_bulk), threading.Thread(target=send_singles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.get(f"{BASE}/Users").json["totalResults"] == 0
    assert get(client, "Groups", group["id"]).get("members", []) == []


# --- hostile inputs ---------------------------------------------------------------------------

_ids = st.sampled_from(["bulkId:a", "bulkId:b", "bulkId:zz", "nope", "", "bulkId:", "\u00e9"])
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | _ids,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.text(max_size=5)
            | st.sampled_from(
                ["userName", "displayName", "members", "value", "Operations", "op", "path"]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)
_operations = (
    st.fixed_dictionaries(
        {},
        optional={
            "method": st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET", "post", ""])
            | _values,
            "bulkId": st.sampled_from(["a", "b", "c", ""]) | _values,
            "version": st.sampled_from(['W/"1"', "*", ""]) | _values,
            "path": st.sampled_from(
                [
                    "/Users",
                    "/Groups",
                    "/Users/bulkId:a",
                    "/Groups/bulkId:b",
                    "/Users/nope",
                    "/",
                    "//",
                    "/Groups/",
                ]
            )
            | _values,
            "data": _values
            | st.builds(
                lambda name, value: {
                    "userName": name,
                    "displayName": name,
                    "members": [{"value": value}],
                },
                st.text(min_size=1, max_size=5),
                _ids,
            ),
        },
    )
    | _values
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(operations=st.lists(_operations, max_size=6), fail_on_errors=st.none() | st.integers(-1, 3))
def test_hostile_operation_lists_are_answered_never_with_a_server_error(
    client, operations, fail_on_errors
):
    body: dict[str, Any] = {"Operations": operations}
    if fail_on_errors is not None:
        body["failOnErrors"] = fail_on_errors
    response = client.post(f"{BASE}/Bulk", json=body)
    assert response.status_code in (200, 400), response.json
    if response.status_code == 400:
        assert response.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        return
    answered = results(response)
    assert len(answered) <= len(operations)
    failures = 0
    for result in answered:
        status = int(result["status"])
        assert 200 <= status < 500, result
        if status >= 400:
            failures += 1
            assert result["response"]["status"] == result["status"]
        elif result["method"] != "DELETE":
            assert result["location"].startswith(f"{HOST}/")
            assert result["version"].startswith('W/"')
    if fail_on_errors is not None and fail_on_errors >= 1 and len(answered) < len(operations):
        assert failures >= fail_on_errors
    empty_tables()


# --- consecutive creates, written together (store/batch.py, Batch.defer) ------------------------


_names = st.sampled_from(["ada", "ADA", "grace", "alan", "Alan", "edsger", "taken", "TAKEN"])


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    names=st.lists(_names, min_size=1, max_size=12),
    patch_at=st.none() | st.integers(0, 12),
    fail_on_errors=st.none() | st.integers(1, 3),
)
def test_consecutive_creates_are_each_answered_as_alone(client, names, patch_at, fail_on_errors):
    """Each POST of a run of users is 201 or 409 exactly as its single request would be, in
    order, whatever else is in the run; failOnErrors stops right after the error it counts, a
    PATCH after the run included; each has its audit row."""
    empty_tables()
    taken = client.post(f"{BASE}/Users", json=user_payload(userName="taken@example.com")).json
    operations = [new_user(f"u{i}", f"{name}@example.com") for i, name in enumerate(names)]
    patch_op = {
        "method": "PATCH",
        "path": f"/Users/{taken['id']}",
        "data": patch_payload({"op": "replace", "path": "displayName", "value": "Patched"}),
    }
    if patch_at is not None:
        operations.insert(min(patch_at, len(operations)), patch_op)
    fields = {} if fail_on_errors is None else {"failOnErrors": fail_on_errors}
    before = {row.id for row in audit_rows()}
    answered = results(bulk(client, *operations, **fields))
    # The model: names are unique case-insensitively; failOnErrors stops after that many.
    existing, expected, errors = {"taken"}, [], 0
    for op in operations:
        if fail_on_errors is not None and errors >= fail_on_errors:
            break
        if op["method"] == "PATCH":
            expected.append("200")
            continue
        key = op["data"]["userName"].split("@")[0].casefold()
        if key in existing:
            expected.append("409")
            errors += 1
        else:
            existing.add(key)
            expected.append("201")
    assert [r["status"] for r in answered] == expected
    for op, result in zip(operations, answered, strict=False):
        if result["status"] == "201":
            created(result, "Users", op["bulkId"])
        elif result["status"] == "409":
            assert result["response"] == error(
                409, f"userName '{op['data']['userName']}' is already taken", "uniqueness"
            )
    listed = client.get(f"{BASE}/Users", query_string={"count": 100}).json["Resources"]
    assert {u["userName"].split("@")[0].casefold() for u in listed} == existing
    statuses = sorted(row.status for row in audit_rows() if row.id not in before)
    assert statuses == sorted(int(status) for status in expected)


# --- change events (issue 17) -----------------------------------------------------------------


def test_each_operation_writes_the_events_of_its_single_request_under_a_txn_of_its_own(client):
    db.session.add(
        EventReceiver(
            name="app",
            delivery="push",
            url="https://app.example/events",
            events=list(events_store.EVENT_NAMES),
            full=False,
            enabled=True,
            audience="https://app.example",
            alg="ES256",
        )
    )
    db.session.commit()
    response = bulk(
        client,
        new_group("g", "G", "bulkId:a"),
        new_user("a", "a@example.com"),
        new_user("dup", "A@example.com"),  # refused: no event
        {
            "method": "PATCH",
            "path": "/Users/bulkId:a",
            "data": patch_payload({"op": "replace", "path": "active", "value": False}),
        },
    )
    group, a, dup, patched = results(response)
    assert dup["status"] == "409"
    db.session.remove()
    found = [
        (e.resource_type, e.resource_id, e.operation, e.activation, e.version, e.txn)
        for e in events_store.since()
    ]
    assert [row[:5] for row in found] == [
        ("User", id_of(a), "create", "activate", 1),
        ("Group", id_of(group), "create", None, 1),
        ("User", id_of(a), "patch", "deactivate", 2),
    ]
    assert len({row[5] for row in found}) == 3  # one txn per operation
    with tenancy.across_tenants():
        txns = {(r.resource_id, r.status): r.txn for r in audit.recent(limit=100)}
    assert txns[(id_of(a), 201)] == found[0][5]  # the audit row names its events' txn
    assert txns[(id_of(group), 201)] == found[1][5]
