"""The RFC 8936 poll endpoint under hostile input: every refusal is a 400 (or 413) with RFC
8935 §2.3's {"err", "description"} body, never a 500, and nothing is acknowledged by it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import BASE
from tests.payloads import user_payload
from tests.test_events_delivery import add_poller, poll

NOT_AN_OBJECT = {"err": "invalid_request", "description": "the body must be a JSON object"}


def raw_poll(client, receiver: dict, data: bytes | str, content_type: str = "application/json"):
    return client.post(
        f"/events/receivers/{receiver['id']}/poll",
        data=data,
        content_type=content_type,
        headers={"Authorization": f"Bearer {receiver['token']}"},
    )


def invalid(description: str) -> dict[str, str]:
    return {"err": "invalid_request", "description": description}


@pytest.fixture
def receiver(app, client) -> dict:
    return add_poller(app)


@pytest.mark.parametrize(
    ("data", "body"),
    [
        pytest.param("[" * 100_000 + "]" * 100_000, NOT_AN_OBJECT, id="deep-array"),
        pytest.param('{"a":' * 50_000 + "1" + "}" * 50_000, NOT_AN_OBJECT, id="deep-object"),
        pytest.param('{"ack": [' * 30_000, NOT_AN_OBJECT, id="deep-unclosed"),
        pytest.param(b"\xff\xfe{}", NOT_AN_OBJECT, id="not-utf8"),
        pytest.param("{", NOT_AN_OBJECT, id="truncated"),
        pytest.param("[]", NOT_AN_OBJECT, id="array"),
        pytest.param('"ack"', NOT_AN_OBJECT, id="string"),
        pytest.param("null", NOT_AN_OBJECT, id="null"),
        pytest.param('{"maxEvents": NaN}', NOT_AN_OBJECT, id="nan"),
        pytest.param('{"maxEvents": ' + "9" * 5000 + "}", NOT_AN_OBJECT, id="5000-digits"),
        pytest.param(
            '{"maxEvents": 1e400}', invalid("maxEvents must be a non-negative integer"), id="inf"
        ),
        pytest.param(
            '{"maxEvents": 1.5}', invalid("maxEvents must be a non-negative integer"), id="float"
        ),
        pytest.param(
            '{"maxEvents": true}', invalid("maxEvents must be a non-negative integer"), id="bool"
        ),
        pytest.param(
            '{"maxEvents": "10"}', invalid("maxEvents must be a non-negative integer"), id="text"
        ),
        pytest.param('{"ack": {}}', invalid("ack must be an array of jti strings"), id="ack-obj"),
        pytest.param(
            '{"ack": [1, 2]}', invalid("ack must be an array of jti strings"), id="ack-numbers"
        ),
        pytest.param(
            '{"ack": [["a"]]}', invalid("ack must be an array of jti strings"), id="ack-nested"
        ),
        pytest.param(
            '{"ack": null}', invalid("ack must be an array of jti strings"), id="ack-null"
        ),
        pytest.param(
            '{"setErrs": []}',
            invalid('setErrs must map each jti to {"err": ..., "description": ...}'),
            id="seterrs-array",
        ),
        pytest.param(
            '{"setErrs": {"a": {"err": 1}}}',
            invalid('setErrs must map each jti to {"err": ..., "description": ...}'),
            id="seterrs-err-number",
        ),
        pytest.param(
            '{"setErrs": {"a": {"err": "x", "description": ["y"]}}}',
            invalid('setErrs must map each jti to {"err": ..., "description": ...}'),
            id="seterrs-description-array",
        ),
        pytest.param(
            '{"returnImmediately": 1}',
            invalid("returnImmediately must be true or false"),
            id="immediately-number",
        ),
    ],
)
def test_a_hostile_body_is_400_with_rfc8935_error(client, receiver, data, body):
    response = raw_poll(client, receiver, data)
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert response.json == body


def test_a_huge_ack_list_is_400_naming_the_limit(client, receiver):
    ack = [f"{n:032x}" for n in range(10_001)]
    response = poll(client, receiver, {"ack": ack})
    assert response.status_code == 400
    assert response.json == invalid("ack and setErrs may name at most 10000 jtis together per poll")


def test_ten_thousand_acks_of_unknown_jtis_acknowledge_nothing(client, receiver):
    user = client.post(f"{BASE}/Users", json=user_payload()).json
    ack = [f"{n:032x}" for n in range(9_990)] + ["\x00", "\ud800", "x" * 10_000]
    errors = {"\x00nul": {"err": "invalid_key", "description": "\ud800\x00"}}
    response = poll(client, receiver, {"ack": ack, "setErrs": errors})
    assert response.status_code == 200
    ((jti, _token),) = response.json["sets"].items()  # still owed: nothing matched it
    again = poll(client, receiver, {"setErrs": {jti: {"err": "x\x00", "description": "\ud800"}}})
    assert again.json == {"sets": {}}  # dead-lettered with the error as stored, no 500
    assert user["id"]


def test_a_body_over_the_size_limit_is_413(app, client, receiver):
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = raw_poll(client, receiver, json.dumps({"ack": ["x" * limit]}))
    assert response.status_code == 413
    assert response.json == invalid(f"the body is larger than {limit} bytes")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
MEMBERS = st.sampled_from(["ack", "setErrs", "maxEvents", "returnImmediately", "other"])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(MEMBERS, JSON, max_size=4))
def test_any_json_object_is_200_or_a_400_invalid_request(client, receiver, body: dict[str, Any]):
    response = poll(client, receiver, body | {"returnImmediately": True})
    assert response.status_code in (200, 400), response.json
    if response.status_code == 400:
        assert set(response.json) == {"err", "description"}
        assert response.json["err"] == "invalid_request"
    else:
        assert set(response.json) <= {"sets", "moreAvailable"}
