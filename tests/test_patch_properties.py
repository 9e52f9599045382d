"""Random PATCH sequences through the API agree with a plain-dict model of RFC 7644 §3.5.2."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import BASE, empty_tables
from tests.payloads import ENTERPRISE_URN, PATCH_URN, USER_URN

SIMPLE = ("displayName", "title", "nickName")
TYPES = ("work", "home", "Work")  # type is caseExact: false, so "Work" matches "work"
EMAILS = ("a@example.com", "A@example.com", "b@example.com", "c@example.com")
text = st.text(alphabet="abcXYZ é-", min_size=1, max_size=6)

operation = st.one_of(
    st.builds(lambda a, v: ("set", a, v), st.sampled_from(SIMPLE), text),
    st.builds(lambda a: ("unset", a), st.sampled_from(SIMPLE)),
    st.builds(lambda s, v: ("set_name", s, v), st.sampled_from(("givenName", "familyName")), text),
    st.builds(lambda s: ("unset_name", s), st.sampled_from(("givenName", "familyName"))),
    st.builds(lambda v, s: ("active", v, s), st.booleans(), st.booleans()),
    st.builds(lambda v, t: ("add_email", v, t), st.sampled_from(EMAILS), st.sampled_from(TYPES)),
    st.builds(lambda t: ("remove_emails", t), st.sampled_from(TYPES)),
    st.builds(
        lambda t, v: ("replace_email", t, v), st.sampled_from(TYPES), st.sampled_from(EMAILS)
    ),
    st.builds(lambda v: ("department", v), st.one_of(st.none(), text)),
    st.builds(lambda d, f: ("pathless", d, f), text, text),
)


class NoTarget(Exception):
    pass


def wire(op: tuple) -> dict[str, Any]:
    """The PatchOp operation an IdP would send for a model operation."""
    kind = op[0]
    if kind == "set":
        return {"op": "replace", "path": op[1], "value": op[2]}
    if kind == "unset":
        return {"op": "remove", "path": op[1]}
    if kind == "set_name":
        return {"op": "replace", "path": f"name.{op[1]}", "value": op[2]}
    if kind == "unset_name":
        return {"op": "remove", "path": f"name.{op[1]}"}
    if kind == "active":
        value = ("True" if op[1] else "False") if op[2] else op[1]  # Entra's string booleans
        return {"op": "Replace", "path": "active", "value": value}
    if kind == "add_email":
        return {"op": "add", "path": "emails", "value": [{"value": op[1], "type": op[2]}]}
    if kind == "remove_emails":
        return {"op": "remove", "path": f'emails[type eq "{op[1]}"]'}
    if kind == "replace_email":
        return {"op": "replace", "path": f'emails[type eq "{op[1]}"].value', "value": op[2]}
    if kind == "department":
        path = f"{ENTERPRISE_URN}:department"
        if op[1] is None:
            return {"op": "remove", "path": path}
        return {"op": "replace", "path": path, "value": op[1]}
    return {"op": "replace", "value": {"displayName": op[1], "name.familyName": op[2]}}


def apply(model: dict[str, Any], op: tuple) -> None:
    """The semantics the service promises, written as plainly as possible."""
    kind = op[0]
    if kind == "set":
        model[op[1]] = op[2]
    elif kind == "unset":
        model.pop(op[1], None)
    elif kind == "set_name":
        model.setdefault("name", {})[op[1]] = op[2]
    elif kind == "unset_name":
        model.get("name", {}).pop(op[1], None)
        if model.get("name") == {}:
            del model["name"]
    elif kind == "active":
        model["active"] = op[1]
    elif kind == "add_email":
        emails = model.setdefault("emails", [])
        same = [e for e in emails if e["value"].casefold() == op[1].casefold()]
        if same:  # no duplicates: the existing element is updated
            same[0].update(value=op[1], type=op[2])
        else:
            emails.append({"value": op[1], "type": op[2]})
    elif kind == "remove_emails":
        kept = [e for e in model.get("emails", []) if e["type"].casefold() != op[1].casefold()]
        model.pop("emails", None)
        if kept:
            model["emails"] = kept
    elif kind == "replace_email":
        matched = [e for e in model.get("emails", []) if e["type"].casefold() == op[1].casefold()]
        if not matched:
            raise NoTarget
        for element in matched:
            element["value"] = op[2]
    elif kind == "department":
        if op[1] is None:
            model.get(ENTERPRISE_URN, {}).pop("department", None)
            if model.get(ENTERPRISE_URN) == {}:
                del model[ENTERPRISE_URN]
        else:
            model.setdefault(ENTERPRISE_URN, {})["department"] = op[1]
    else:
        model["displayName"] = op[1]
        model.setdefault("name", {})["familyName"] = op[2]


def visible(resource: dict[str, Any]) -> dict[str, Any]:
    keys = (*SIMPLE, "name", "active", "emails", ENTERPRISE_URN)
    return {k: resource[k] for k in keys if k in resource}


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests=st.lists(st.lists(operation, min_size=1, max_size=3), min_size=1, max_size=5))
def test_patch_sequences_match_the_model(client, requests):
    empty_tables()
    created = client.post(
        f"{BASE}/Users", json={"schemas": [USER_URN], "userName": "model@example.com"}
    )
    assert created.status_code == 201
    url = f"{BASE}/Users/{created.json['id']}"
    model: dict[str, Any] = {"active": True}
    version = 1
    for ops in requests:
        candidate = copy.deepcopy(model)
        try:
            for op in ops:
                apply(candidate, op)
            expected_status = 200
        except NoTarget:
            expected_status = 400
        body = {"schemas": [PATCH_URN], "Operations": [wire(op) for op in ops]}
        response = client.patch(url, json=body)
        assert response.status_code == expected_status, (ops, response.json)
        if expected_status == 200:
            if visible(candidate) != visible(model):
                version += 1
            model = candidate
            assert visible(response.json) == visible(model), ops
        current = client.get(url).json
        assert visible(current) == visible(model)  # a refused request changed nothing
        assert current["meta"]["version"] == f'W/"{version}"'  # bumped only by a real change
