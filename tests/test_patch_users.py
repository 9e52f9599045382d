"""PATCH /Users/{id} (RFC 7644 §3.5.2) as Okta and Microsoft Entra ID send it."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.security import check_password_hash

from app.db import db
from app.models import User
from app.tenancy import DEFAULT_TENANT_ID
from tests.conftest import BASE, statements
from tests.payloads import (
    ENTERPRISE_URN,
    PATCH_URN,
    USER_URN,
    error,
    fetch,
    found,
    patch_payload,
    user_payload,
)

WORK = {"primary": True, "value": "jane@example.com", "type": "work"}
HOME = {"value": "jane@home.example", "type": "home"}


def patch(client, user: dict[str, Any], *operations: dict[str, Any], **kwargs: Any):
    return client.patch(f"{BASE}/Users/{user['id']}", json=patch_payload(*operations), **kwargs)


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What a PATCH changed: keys whose values differ, with the new value (None when removed)."""
    keys = (set(before) | set(after)) - {"meta"}
    return {k: after.get(k) for k in sorted(keys) if before.get(k) != after.get(k)}


def assert_patched(client, user, response, expected_changes, *, version='W/"2"'):
    """The PATCH answered 200 with the stored user, which differs from `user` exactly so."""
    assert response.status_code == 200, response.json
    assert response.json == fetch(client, user)
    assert changed(user, response.json) == expected_changes
    assert response.json["meta"]["version"] == version
    assert response.headers["ETag"] == version


# --- Okta -----------------------------------------------------------------------------------


def test_okta_pathless_deactivate(client, create_user):
    user = create_user()
    response = patch(client, user, {"op": "replace", "value": {"active": False}})
    assert_patched(client, user, response, {"active": False})


def test_okta_password_change_is_stored_and_never_returned(client, create_user):
    user = create_user(password="old-s3cret")
    response = patch(client, user, {"op": "replace", "value": {"password": "new-s3cret!"}})
    # The only change is the hash: nothing visible but a new version.
    assert_patched(client, user, response, {})
    assert "password" not in response.json
    listed = client.get(f"{BASE}/Users").json["Resources"]
    assert ["password" in u for u in listed] == [False]
    stored = db.session.get(User, (DEFAULT_TENANT_ID, user["id"])).password_hash
    assert check_password_hash(stored, "new-s3cret!")
    assert "new-s3cret!" not in stored


def test_password_by_path_is_stored_and_never_returned(client, create_user):
    user = create_user()
    response = patch(client, user, {"op": "replace", "path": "password", "value": "s3cret!"})
    assert_patched(client, user, response, {})


# --- Paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        pytest.param(
            {"op": "replace", "path": "active", "value": False}, {"active": False}, id="active"
        ),
        pytest.param(
            {"op": "replace", "path": "name.givenName", "value": "Janet"},
            {"name": {"givenName": "Janet", "familyName": "Doe"}},
            id="replace-givenName",
        ),
        pytest.param(
            {"op": "add", "path": "name.familyName", "value": "Smith"},
            {"name": {"givenName": "Jane", "familyName": "Smith"}},
            id="add-familyName",
        ),
        pytest.param(
            {"op": "remove", "path": "name.familyName"},
            {"name": {"givenName": "Jane"}},
            id="remove-familyName",
        ),
        pytest.param(
            {"op": "replace", "path": "name", "value": {"middleName": "Q."}},
            {"name": {"givenName": "Jane", "familyName": "Doe", "middleName": "Q."}},
            id="replace-name-merges",
        ),
        pytest.param(
            {"op": "replace", "path": "displayName", "value": "Jane Q. Doe"},
            {"displayName": "Jane Q. Doe"},
            id="replace-displayName",
        ),
        pytest.param(
            {"op": "add", "path": "nickName", "value": "JJ"}, {"nickName": "JJ"}, id="add-nickName"
        ),
        pytest.param(
            {"op": "remove", "path": "displayName"}, {"displayName": None}, id="remove-displayName"
        ),
        pytest.param(
            {"op": "replace", "path": "emails", "value": [HOME]},
            {"emails": [HOME]},
            id="replace-emails-list",
        ),
        pytest.param(
            {"op": "add", "path": "emails", "value": [HOME]},
            {"emails": [WORK, HOME]},
            id="add-email-appends",
        ),
        pytest.param(
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "j@example.com"},
            {"emails": [dict(WORK, value="j@example.com")]},
            id="replace-work-email-value",
        ),
        pytest.param({"op": "remove", "path": "emails"}, {"emails": None}, id="remove-all-emails"),
        pytest.param(
            {"op": "replace", "path": "externalId", "value": "00u-new"},
            {"externalId": "00u-new"},
            id="replace-externalId",
        ),
        pytest.param(
            {"op": "replace", "path": "userName", "value": "janet@example.com"},
            {"userName": "janet@example.com"},
            id="replace-userName",
        ),
        pytest.param(
            {"op": "replace", "path": "DisplayName", "value": "Case"},
            {"displayName": "Case"},
            id="path-case-insensitive",
        ),
    ],
)
def test_patch_with_path(client, create_user, operation, expected):
    user = create_user()
    response = patch(client, user, operation)
    assert_patched(client, user, response, expected)


def test_add_email_already_present_is_not_duplicated(client, create_user):
    user = create_user()
    # Re-sent without `primary`: the element stays as it was, primary included.
    again = {"value": "jane@example.com", "type": "work"}
    response = patch(client, user, {"op": "add", "path": "emails", "value": [again, HOME]})
    assert_patched(client, user, response, {"emails": [WORK, HOME]})


def test_add_email_differing_only_in_case_updates_the_existing_one(client, create_user):
    user = create_user()
    # emails.value is caseExact false (RFC 7643 §4.1.2): the same address, spelt as now sent.
    again = {"value": "Jane@Example.com", "type": "work"}
    response = patch(client, user, {"op": "add", "path": "emails", "value": [again]})
    assert_patched(client, user, response, {"emails": [dict(WORK, value="Jane@Example.com")]})


def test_remove_filtered_email_removes_only_the_matching_one(client, create_user):
    user = create_user(emails=[WORK, HOME])
    response = patch(client, user, {"op": "remove", "path": 'emails[type eq "home"]'})
    assert_patched(client, user, response, {"emails": [WORK]})


def test_entra_add_work_email_value_creates_the_element(client, create_user):
    user = create_user(emails=[HOME])
    operation = {"op": "Add", "path": 'emails[type eq "work"].value', "value": "jw@example.com"}
    response = patch(client, user, operation)
    expected = {"emails": [HOME, {"type": "work", "value": "jw@example.com"}]}
    assert_patched(client, user, response, expected)


def test_replace_work_email_without_a_work_email_is_400_no_target(client, create_user):
    user = create_user(emails=[HOME])
    operation = {"op": "replace", "path": 'emails[type eq "work"].value', "value": "x@example.com"}
    response = patch(client, user, operation)
    assert response.status_code == 400
    assert response.json == error(400, "No emails value matches the filter in the path", "noTarget")
    assert fetch(client, user) == user


def test_setting_primary_on_one_email_clears_the_others(client, create_user):
    user = create_user(emails=[WORK, HOME])
    operation = {"op": "replace", "path": 'emails[type eq "home"].primary', "value": True}
    response = patch(client, user, operation)
    expected = {"emails": [dict(WORK, primary=False), dict(HOME, primary=True)]}
    assert_patched(client, user, response, expected)


def test_adding_a_primary_email_clears_the_others(client, create_user):
    user = create_user()
    new = {"value": "jd@example.com", "type": "other", "primary": True}
    response = patch(client, user, {"op": "add", "path": "emails", "value": [new]})
    assert_patched(client, user, response, {"emails": [dict(WORK, primary=False), new]})


# --- Enterprise extension --------------------------------------------------------------------


def test_enterprise_attribute_by_urn_path(client, create_user):
    user = create_user()
    operation = {"op": "add", "path": f"{ENTERPRISE_URN}:department", "value": "Tour Operations"}
    response = patch(client, user, operation)
    assert_patched(
        client,
        user,
        response,
        {"schemas": [USER_URN, ENTERPRISE_URN], ENTERPRISE_URN: {"department": "Tour Operations"}},
    )
    replace = {"op": "replace", "path": f"{ENTERPRISE_URN}:department", "value": "Sales"}
    response = patch(client, user, replace)
    assert response.json[ENTERPRISE_URN] == {"department": "Sales"}
    response = patch(client, user, {"op": "remove", "path": f"{ENTERPRISE_URN}:department"})
    # The last enterprise attribute gone: the extension and its schema URN go too.
    assert_patched(client, user, response, {}, version='W/"4"')


def test_entra_manager_as_bare_id_then_removed(client, create_user):
    user = create_user()
    path = f"{ENTERPRISE_URN}:manager"
    response = patch(client, user, {"op": "Add", "path": path, "value": "mgr-26118915"})
    assert_patched(
        client,
        user,
        response,
        {
            "schemas": [USER_URN, ENTERPRISE_URN],
            ENTERPRISE_URN: {"manager": {"value": "mgr-26118915"}},
        },
    )
    response = patch(client, user, {"op": "Replace", "path": path, "value": "mgr-2"})
    assert response.json[ENTERPRISE_URN] == {"manager": {"value": "mgr-2"}}
    response = patch(client, user, {"op": "Remove", "path": path})
    assert_patched(client, user, response, {}, version='W/"4"')


def test_manager_value_by_sub_attribute_path(client, create_user):
    user = create_user(**{ENTERPRISE_URN: {"department": "Sales"}})
    operation = {"op": "replace", "path": f"{ENTERPRISE_URN}:manager.value", "value": "mgr-3"}
    response = patch(client, user, operation)
    expected = {ENTERPRISE_URN: {"department": "Sales", "manager": {"value": "mgr-3"}}}
    assert_patched(client, user, response, expected)


# --- Entra ID's forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        pytest.param(
            {"op": "Replace", "path": "active", "value": "False"},
            {"active": False},
            id="capitalised-op-string-false",
        ),
        pytest.param(
            {"op": "Replace", "value": {"active": "False"}},
            {"active": False},
            id="pathless-string-false",
        ),
        pytest.param(
            {"op": "Add", "path": "title", "value": "Tour Guide"},
            {"title": "Tour Guide"},
            id="capitalised-add",
        ),
        pytest.param({"op": "Remove", "path": "locale"}, {"locale": None}, id="capitalised-remove"),
        pytest.param(
            {"op": "Replace", "value": {"name.givenName": "Janet", "name.familyName": "Smith"}},
            {"name": {"givenName": "Janet", "familyName": "Smith"}},
            id="pathless-dotted-keys",
        ),
        pytest.param(
            {
                "op": "Add",
                "value": {
                    f"{ENTERPRISE_URN}:employeeNumber": "701984",
                    f"{ENTERPRISE_URN}:manager": "mgr-1",
                },
            },
            {
                "schemas": [USER_URN, ENTERPRISE_URN],
                ENTERPRISE_URN: {"employeeNumber": "701984", "manager": {"value": "mgr-1"}},
            },
            id="pathless-urn-keys",
        ),
        pytest.param(
            {"op": "Add", "value": {ENTERPRISE_URN: {"department": "Sales"}}},
            {"schemas": [USER_URN, ENTERPRISE_URN], ENTERPRISE_URN: {"department": "Sales"}},
            id="pathless-extension-object",
        ),
        pytest.param(
            {"op": "Replace", "value": {'emails[type eq "work"].value': "jw@example.com"}},
            {"emails": [dict(WORK, value="jw@example.com")]},
            id="pathless-filtered-key",
        ),
        pytest.param(
            {"op": "Add", "value": {'phoneNumbers[type eq "mobile"].value': "+1 555 0100"}},
            {"phoneNumbers": [{"type": "mobile", "value": "+1 555 0100"}]},
            id="pathless-filtered-key-creates",
        ),
        pytest.param(
            {"op": "Add", "path": 'addresses[type eq "work"].formatted', "value": "1 Main St"},
            {"addresses": [{"type": "work", "formatted": "1 Main St"}]},
            id="add-work-address-formatted",
        ),
    ],
)
def test_entra_forms(client, create_user, operation, expected):
    user = create_user()
    response = patch(client, user, operation)
    assert_patched(client, user, response, expected)


def test_entra_one_operation_per_attribute(client, create_user):
    user = create_user()
    response = patch(
        client,
        user,
        {"op": "Replace", "path": "displayName", "value": "Janet Smith"},
        {"op": "Replace", "path": "name.givenName", "value": "Janet"},
        {"op": "Replace", "path": "name.familyName", "value": "Smith"},
        {"op": "Replace", "path": "active", "value": "True"},
        {"op": "Add", "path": f"{ENTERPRISE_URN}:costCenter", "value": "4130"},
    )
    assert_patched(
        client,
        user,
        response,
        {
            "displayName": "Janet Smith",
            "name": {"givenName": "Janet", "familyName": "Smith"},
            "schemas": [USER_URN, ENTERPRISE_URN],
            ENTERPRISE_URN: {"costCenter": "4130"},
        },
    )


def test_entra_primary_as_string_true_clears_the_others(client, create_user):
    user = create_user(emails=[WORK, HOME])
    operation = {"op": "Replace", "path": 'emails[type eq "home"].primary', "value": "True"}
    response = patch(client, user, operation)
    expected = {"emails": [dict(WORK, primary=False), dict(HOME, primary=True)]}
    assert_patched(client, user, response, expected)


def test_pathless_replace_with_the_unchanged_id_is_fine(client, create_user):
    user = create_user()
    operation = {"op": "replace", "value": {"id": user["id"], "displayName": "Janet"}}
    response = patch(client, user, operation)
    assert_patched(client, user, response, {"displayName": "Janet"})


# --- Errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "detail", "scim_type"),
    [
        pytest.param(
            {"op": "replace", "value": {"id": "another-id"}},
            "id is readOnly",
            "mutability",
            id="pathless-different-id",
        ),
        pytest.param(
            {"op": "replace", "path": "id", "value": "another-id"},
            "id is readOnly",
            "mutability",
            id="id-by-path",
        ),
        pytest.param(
            {"op": "remove"}, "Operation 1: remove requires a path", "noTarget", id="remove-no-path"
        ),
        pytest.param(
            {"op": "Remove", "value": {"displayName": "x"}},
            "Operation 1: remove requires a path",
            "noTarget",
            id="remove-pathless-value",
        ),
        pytest.param(
            {"op": "replace", "path": "shoeSize", "value": 9},
            "Unknown attribute in path 'shoeSize'",
            "invalidPath",
            id="unknown-path",
        ),
        pytest.param(
            {"op": "replace", "path": "name.nick", "value": "x"},
            "Unknown attribute in path 'name.nick'",
            "invalidPath",
            id="unknown-sub-attribute",
        ),
        pytest.param(
            {"op": "replace", "path": "urn:example:ext:1.0:User:color", "value": "x"},
            "Unknown attribute in path 'urn:example:ext:1.0:User:color'",
            "invalidPath",
            id="unknown-urn",
        ),
        pytest.param(
            {"op": "replace", "value": {"shoeSize": 9}},
            "Unknown attribute in path 'shoeSize'",
            "invalidPath",
            id="pathless-unknown-key",
        ),
        pytest.param(
            {"op": "replace", "path": "meta.created", "value": "2001-01-01T00:00:00Z"},
            "meta.created is readOnly",
            "mutability",
            id="meta-created",
        ),
        pytest.param(
            {"op": "add", "path": "groups", "value": [{"value": "g1"}]},
            "groups is readOnly",
            "mutability",
            id="groups",
        ),
        pytest.param(
            {"op": "remove", "path": "groups"}, "groups is readOnly", "mutability", id="groups-rm"
        ),
        pytest.param(
            {"op": "remove", "path": "userName"},
            "userName is required",
            "invalidValue",
            id="remove-userName",
        ),
        pytest.param(
            {"op": "replace", "path": "userName", "value": ""},
            "userName must not be empty",
            "invalidValue",
            id="blank-userName",
        ),
        pytest.param(
            {"op": "Replace", "value": {"userName": ""}},
            "userName must not be empty",
            "invalidValue",
            id="pathless-blank-userName",
        ),
        pytest.param(
            {"op": "add", "value": {ENTERPRISE_URN: "Sales"}},
            f"Operation 1: {ENTERPRISE_URN} must be an object",
            "invalidValue",
            id="pathless-extension-not-object",
        ),
        pytest.param(
            {"op": "replace", "path": "active", "value": "maybe"},
            "active must be a boolean",
            "invalidValue",
            id="bad-boolean",
        ),
        pytest.param(
            {"op": "replace", "path": "displayName"},
            "Operation 1: replace requires a value",
            "invalidValue",
            id="missing-value",
        ),
        pytest.param(
            {"op": "replace", "value": "Jane"},
            "Operation 1: replace without a path requires an object value",
            "invalidValue",
            id="pathless-non-object",
        ),
        pytest.param(
            {"op": "copy", "path": "displayName", "value": "x"},
            "Operation 1: op must be one of add, remove, replace",
            "invalidSyntax",
            id="unknown-op",
        ),
        pytest.param(
            {"op": "replace", "path": 'displayName[value eq "x"]', "value": "y"},
            "displayName is not multi-valued; it takes no filter",
            "invalidPath",
            id="filter-on-single-valued",
        ),
        pytest.param(
            {"op": "replace", "path": "emails[type eq", "value": "y"},
            "Invalid path 'emails[type eq'",
            "invalidPath",
            id="unparsable-path",
        ),
    ],
)
def test_invalid_operation_is_400_and_changes_nothing(
    client, create_user, operation, detail, scim_type
):
    user = create_user()
    response = patch(client, user, operation)
    assert response.status_code == 400
    assert response.json == error(400, detail, scim_type)
    assert fetch(client, user) == user


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param({"schemas": [PATCH_URN]}, "Operations must be a non-empty list", id="missing"),
        pytest.param(
            {"schemas": [PATCH_URN], "Operations": []},
            "Operations must be a non-empty list",
            id="empty",
        ),
        pytest.param(
            {"schemas": [PATCH_URN], "Operations": {"op": "replace"}},
            "Operations must be a non-empty list",
            id="not-a-list",
        ),
        pytest.param(
            {"schemas": [PATCH_URN], "Operations": ["replace"]},
            "Operation 1 must be an object",
            id="operation-not-object",
        ),
        pytest.param(
            {"schemas": [USER_URN], "Operations": [{"op": "replace", "value": {"active": False}}]},
            f"schemas must be [{PATCH_URN!r}]",
            id="wrong-schemas",
        ),
        pytest.param(
            {"schemas": PATCH_URN, "Operations": [{"op": "replace", "value": {"active": False}}]},
            f"schemas must be [{PATCH_URN!r}]",
            id="schemas-not-list",
        ),
    ],
)
def test_malformed_patch_request_is_400_invalid_syntax(client, create_user, body, detail):
    user = create_user()
    response = client.patch(f"{BASE}/Users/{user['id']}", json=body)
    assert response.status_code == 400
    assert response.json == error(400, detail, "invalidSyntax")
    assert fetch(client, user) == user


def test_patch_unknown_user_is_404(client):
    response = client.patch(
        f"{BASE}/Users/nobody", json=patch_payload({"op": "replace", "value": {"active": False}})
    )
    assert response.status_code == 404
    assert response.json == error(404, "User nobody not found")


# --- Atomicity and versions ------------------------------------------------------------------


@pytest.mark.parametrize(
    "failing",
    [
        pytest.param({"op": "replace", "path": "meta.created", "value": "x"}, id="readOnly"),
        pytest.param(
            {"op": "replace", "path": 'emails[type eq "home"].value', "value": "x"}, id="noTarget"
        ),
        pytest.param({"op": "remove", "path": "userName"}, id="invalid-result"),
        pytest.param({"op": "replace", "path": "active", "value": 3}, id="bad-value"),
    ],
)
def test_patch_whose_second_operation_fails_changes_nothing(client, create_user, failing):
    user = create_user()
    response = patch(
        client, user, {"op": "replace", "path": "displayName", "value": "Changed"}, failing
    )
    assert response.status_code == 400
    after = fetch(client, user)
    assert after == user
    assert after["meta"]["version"] == 'W/"1"'


def test_patch_to_a_taken_username_is_409_and_changes_nothing(client, create_user):
    create_user(userName="taken@example.com")
    user = create_user()
    response = patch(
        client,
        user,
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "replace", "path": "userName", "value": "TAKEN@example.com"},
    )
    assert response.status_code == 409
    assert response.json == error(
        409, "userName 'TAKEN@example.com' is already taken", "uniqueness"
    )
    assert fetch(client, user) == user


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param({"op": "replace", "value": {"active": True}}, id="same-active"),
        pytest.param({"op": "replace", "path": "displayName", "value": "Jane Doe"}, id="same-name"),
        pytest.param({"op": "add", "path": "emails", "value": [WORK]}, id="existing-email"),
        pytest.param({"op": "remove", "path": "nickName"}, id="remove-absent"),
        pytest.param({"op": "Replace", "value": {"active": "True"}}, id="entra-string-true"),
    ],
)
def test_patch_that_changes_nothing_keeps_the_version(client, create_user, operation):
    user = create_user()
    response = patch(client, user, operation)
    assert response.status_code == 200
    assert response.json == user
    assert response.headers["ETag"] == 'W/"1"'
    assert fetch(client, user) == user


def test_every_successful_change_bumps_the_version(client, create_user):
    user = create_user()
    operations = [
        {"op": "replace", "value": {"active": False}},
        {"op": "replace", "path": "displayName", "value": "J. Doe"},
        {"op": "add", "path": "emails", "value": [HOME]},
        {"op": "remove", "path": 'emails[type eq "home"]'},
        {"op": "replace", "value": {"active": True}},
    ]
    for number, operation in enumerate(operations, start=2):
        response = patch(client, user, operation)
        assert response.status_code == 200
        assert response.json["meta"]["version"] == f'W/"{number}"'
    assert fetch(client, user)["meta"]["version"] == 'W/"6"'


# --- If-Match (RFC 7644 §3.14) ---------------------------------------------------------------


def test_if_match_with_the_current_etag_succeeds(client, create_user):
    user = create_user()
    response = patch(
        client,
        user,
        {"op": "replace", "value": {"active": False}},
        headers={"If-Match": user["meta"]["version"]},
    )
    assert_patched(client, user, response, {"active": False})


def test_if_match_with_a_stale_etag_is_412(client, create_user):
    user = create_user()
    patch(client, user, {"op": "replace", "path": "displayName", "value": "Someone else"})
    current = fetch(client, user)
    response = patch(
        client,
        user,
        {"op": "replace", "value": {"active": False}},
        headers={"If-Match": user["meta"]["version"]},
    )
    assert response.status_code == 412
    assert response.json == error(
        412, f'User {user["id"]} has changed: its ETag is now W/"2"; read it again'
    )
    assert fetch(client, user) == current


# --- An extension's schema URN as path (RFC 7644 §3.5.2) --------------------------------------


def test_add_by_extension_urn_sets_the_given_attributes_and_keeps_the_others(client, create_user):
    user = create_user(**{ENTERPRISE_URN: {"employeeNumber": "701984", "department": "Retail"}})
    # Entra sends the manager as a bare id string; it is stored and returned as {"value": id}.
    value = {"department": "Sales", "manager": "mgr-1", "costCenter": "4130"}
    response = patch(client, user, {"op": "Add", "path": ENTERPRISE_URN, "value": value})
    expected = {
        "employeeNumber": "701984",
        "department": "Sales",
        "manager": {"value": "mgr-1"},
        "costCenter": "4130",
    }
    assert_patched(client, user, response, {ENTERPRISE_URN: expected})


def test_replace_by_extension_urn_leaves_sub_attributes_not_given_unchanged(client, create_user):
    user = create_user(
        **{ENTERPRISE_URN: {"employeeNumber": "701984", "manager": {"value": "mgr-1"}}}
    )
    value = {"employeeNumber": "701985", "manager": {"$ref": f"{BASE}/Users/mgr-1"}}
    response = patch(client, user, {"op": "replace", "path": ENTERPRISE_URN, "value": value})
    expected = {
        "employeeNumber": "701985",
        "manager": {"value": "mgr-1", "$ref": f"{BASE}/Users/mgr-1"},
    }
    assert_patched(client, user, response, {ENTERPRISE_URN: expected})


def test_add_by_extension_urn_to_a_user_without_it_adds_the_extension(client, create_user):
    user = create_user()
    path = ENTERPRISE_URN.upper()  # schema URNs are case-insensitive, like attribute names
    response = patch(client, user, {"op": "add", "path": path, "value": {"division": "EMEA"}})
    assert_patched(
        client,
        user,
        response,
        {"schemas": [USER_URN, ENTERPRISE_URN], ENTERPRISE_URN: {"division": "EMEA"}},
    )


@pytest.mark.parametrize(
    "path",
    [pytest.param(ENTERPRISE_URN, id="urn"), pytest.param(ENTERPRISE_URN.lower(), id="lower")],
)
def test_remove_by_extension_urn_removes_the_extension_and_its_schema(client, create_user, path):
    user = create_user(
        **{ENTERPRISE_URN: {"employeeNumber": "701984", "manager": {"value": "mgr-1"}}}
    )
    assert user["schemas"] == [USER_URN, ENTERPRISE_URN]
    response = patch(client, user, {"op": "Remove", "path": path})
    assert_patched(client, user, response, {"schemas": [USER_URN], ENTERPRISE_URN: None})


def test_remove_by_extension_urn_from_a_user_without_it_changes_nothing(client, create_user):
    user = create_user()
    response = patch(client, user, {"op": "remove", "path": ENTERPRISE_URN})
    assert response.status_code == 200
    assert response.json == user
    assert response.headers["ETag"] == 'W/"1"'


@pytest.mark.parametrize(
    ("operation", "detail", "scim_type"),
    [
        pytest.param(
            {"op": "add", "path": ENTERPRISE_URN, "value": {"shoeSize": 9}},
            f"Unknown attribute in path '{ENTERPRISE_URN}:shoeSize'",
            "invalidPath",
            id="unknown-attribute",
        ),
        pytest.param(
            {"op": "replace", "path": ENTERPRISE_URN, "value": {"employeeNumber": 7}},
            f"{ENTERPRISE_URN}:employeeNumber must be a string",
            "invalidValue",
            id="wrong-type",
        ),
        pytest.param(
            {"op": "replace", "path": ENTERPRISE_URN, "value": "Sales"},
            f"Operation 1: {ENTERPRISE_URN} must be an object",
            "invalidValue",
            id="not-an-object",
        ),
        pytest.param(
            {"op": "add", "path": ENTERPRISE_URN},
            "Operation 1: add requires a value",
            "invalidValue",
            id="no-value",
        ),
        pytest.param(
            {"op": "remove", "path": f'{ENTERPRISE_URN}[department eq "Sales"]'},
            f"Unknown attribute in path '{ENTERPRISE_URN}[department eq \"Sales\"]'",
            "invalidPath",
            id="value-filter-after-urn",
        ),
        pytest.param(
            {"op": "replace", "path": f"{ENTERPRISE_URN}.department", "value": "Sales"},
            f"Unknown attribute in path '{ENTERPRISE_URN}.department'",
            "invalidPath",
            id="sub-path-after-urn",
        ),
        pytest.param(
            {"op": "remove", "path": "urn:example:ext:1.0:User"},
            "Unknown attribute in path 'urn:example:ext:1.0:User'",
            "invalidPath",
            id="undeclared-extension",
        ),
    ],
)
def test_invalid_operation_by_extension_urn_is_400_and_changes_nothing(
    client, create_user, operation, detail, scim_type
):
    user = create_user(**{ENTERPRISE_URN: {"department": "Retail"}})
    response = patch(client, user, operation)
    assert response.status_code == 400
    assert response.json == error(400, detail, scim_type)
    assert fetch(client, user) == user


# --- Removing active (RFC 7644 §3.5.2.2: the attribute becomes unassigned) -----------------


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param({"op": "remove", "path": "active"}, id="remove"),
        pytest.param({"op": "Remove", "path": "Active"}, id="entra-capitalised"),
    ],
)
def test_remove_active_leaves_it_unassigned(client, create_user, operation):
    user = create_user(active=False)
    response = patch(client, user, operation)
    assert_patched(client, user, response, {"active": None})
    assert "active" not in response.json


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param("active pr", {"bob@example.com"}, id="pr"),
        pytest.param("active eq true", {"bob@example.com"}, id="eq-true"),
        pytest.param("active eq false", set(), id="eq-false"),
        pytest.param("not (active pr)", {"jane@example.com"}, id="not-pr"),
        pytest.param("not (active eq true)", {"jane@example.com"}, id="not-eq-true"),
        pytest.param("active ne true", {"jane@example.com"}, id="ne-true"),
    ],
)
def test_filters_agree_with_get_on_an_unassigned_active(client, create_user, filter_text, expected):
    user = create_user()
    create_user(userName="bob@example.com", externalId="00u2")  # active
    assert patch(client, user, {"op": "remove", "path": "active"}).status_code == 200
    assert found(client, filter_text) == expected


def test_unassigned_active_stays_so_through_put_and_is_set_again_by_patch(client, create_user):
    user = create_user()
    url = f"{BASE}/Users/{user['id']}"
    assert patch(client, user, {"op": "remove", "path": "active"}).status_code == 200
    # A PUT without active neither activates nor deactivates: the state stays unassigned.
    response = client.put(url, json=user_payload(active=None, displayName="Jane Q."))
    assert response.status_code == 200
    assert "active" not in response.json and "active" not in fetch(client, user)
    assert found(client, "active pr") == set()
    # Removing it again changes nothing: no new version.
    response = patch(client, user, {"op": "remove", "path": "active"})
    assert response.json["meta"]["version"] == 'W/"3"'
    response = patch(client, user, {"op": "add", "path": "active", "value": True})
    assert response.json["active"] is True
    assert response.json["meta"]["version"] == 'W/"4"'
    assert found(client, "active eq true") == {"jane@example.com"}


def test_a_change_that_keeps_every_element_leaves_their_rows_alone(client, create_user):
    """The per-element rows (user_values, what emails[...] filters read) are rewritten only
    when an element changed: a PATCH of givenName or active writes the user's row alone, and
    of it only the columns that change (SQLite rewrites the index entries of every column an
    UPDATE sets, changed or not)."""
    user = create_user(userName="ada@example.com")
    for operation in (
        {"op": "replace", "path": "name.givenName", "value": "Augusta"},
        {"op": "replace", "path": "active", "value": False},
    ):
        with statements() as seen:
            assert patch(client, user, operation).status_code == 200
        assert not [s for s in seen if "user_values" in s], seen
        (update,) = [s for s in seen if s.lstrip().upper().startswith("UPDATE USERS")]
        assert "user_name" not in update.split("WHERE")[0], update
    new_email = {"op": "replace", "path": "emails", "value": [{"value": "ada@lovelace.org"}]}
    with statements() as seen:
        assert patch(client, user, new_email).status_code == 200
    assert [s.split()[0] for s in seen if "user_values" in s] == ["DELETE", "INSERT"]
    assert found(client, 'emails.value eq "ada@lovelace.org"') == {"ada@example.com"}
    assert found(client, 'emails.value eq "jane@example.com"') == set()
