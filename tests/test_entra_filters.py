"""Entra's value path with a sub-attribute: `emails[type eq "work"].value eq "x"`.

RFC 7644's grammar has no `valuePath "." subAttr` in a filter, but Entra ID sends it to look
users up; it is read as `emails[type eq "work" and value eq "x"]`: one element must match both.
"""

from __future__ import annotations

import pytest

from tests.conftest import BASE
from tests.payloads import GROUP_URN, LIST_URN, SEARCH_URN, error, found, patch_payload


@pytest.fixture
def people(create_user):
    """Users whose elements differ by type, so a match across two elements would show."""
    ada = create_user(
        userName="ada",
        emails=[
            {"value": "Ada@Contoso.com", "type": "work", "primary": True},
            {"value": "ada@home.example", "type": "home"},
        ],
        phoneNumbers=[
            {"value": "+1 425 555 0100", "type": "work"},
            {"value": "+1 206 555 0199", "type": "mobile"},
        ],
        addresses=[
            {"type": "work", "streetAddress": "1 Main St", "locality": "Redmond"},
            {"type": "home", "streetAddress": "9 Elm St", "locality": "Seattle"},
        ],
        ims=[{"value": "ada.lovelace", "type": "skype"}],
        photos=[{"value": "https://photos.example/ada.jpg", "type": "photo"}],
        entitlements=[{"value": "Admin", "type": "app"}],
        roles=[{"value": "Owner", "type": "app", "primary": True}],
        x509Certificates=[{"value": "TUlJQ0FkYQ==", "type": "signing"}],
    )
    # Bob's home address is Ada's work one, and the reverse: only a per-element match tells.
    create_user(
        userName="bob",
        emails=[
            {"value": "ada@contoso.com", "type": "home"},
            {"value": "bob@contoso.com", "type": "work"},
        ],
        phoneNumbers=[{"value": "+1 425 555 0100", "type": "home"}],
        addresses=[{"type": "home", "streetAddress": "1 Main St"}],
        ims=[{"value": "ada.lovelace", "type": "xmpp"}],
        photos=[{"value": "https://photos.example/ada.jpg", "type": "thumbnail"}],
        entitlements=[{"value": "Admin", "type": "web"}],
        roles=[{"value": "Owner", "type": "app", "primary": False}],
        x509Certificates=[{"value": "TUlJQ0FkYQ==", "type": "encryption"}],
    )
    # A work email without a value: `ne` holds for it, `pr` does not.
    create_user(userName="cy", emails=[{"value": "cy@contoso.com", "type": "work"}])
    create_user(userName="dee", emails=[{"type": "work", "display": "no address yet"}])
    create_user(userName="eve", emails=None)
    return ada


WORK = 'emails[type eq "work"]'


@pytest.mark.parametrize(
    ("comparison", "expected"),
    [
        pytest.param('eq "ada@contoso.com"', {"ada"}, id="eq"),
        pytest.param('eq "ADA@CONTOSO.COM"', {"ada"}, id="eq-is-case-insensitive"),
        pytest.param('eq "bob@contoso.com"', {"bob"}, id="eq-other"),
        pytest.param('eq "ada@home.example"', set(), id="eq-value-of-another-type"),
        # ne: a work email whose value is not "x" (dee's has none): the bracket form's meaning.
        pytest.param('ne "ada@contoso.com"', {"bob", "cy", "dee"}, id="ne"),
        pytest.param('ne "AdA@contoso.COM"', {"bob", "cy", "dee"}, id="ne-is-case-insensitive"),
        pytest.param('co "@CONTOSO."', {"ada", "bob", "cy"}, id="co"),
        pytest.param('sw "ADA"', {"ada"}, id="sw"),
        pytest.param('ew "Contoso.Com"', {"ada", "bob", "cy"}, id="ew"),
        pytest.param('gt "B"', {"bob", "cy"}, id="gt"),
        pytest.param('ge "BOB@contoso.com"', {"bob", "cy"}, id="ge"),
        pytest.param('lt "Bob@contoso.com"', {"ada"}, id="lt"),
        pytest.param('le "bob@CONTOSO.com"', {"ada", "bob"}, id="le"),
        pytest.param("pr", {"ada", "bob", "cy"}, id="pr"),
        pytest.param("eq null", {"dee"}, id="eq-null"),
        pytest.param("ne null", {"ada", "bob", "cy"}, id="ne-null"),
    ],
)
def test_value_path_with_sub_attribute_on_emails(client, people, comparison, expected):
    assert found(client, f"{WORK}.value {comparison}") == expected
    # The same as the one value filter RFC 7644 does define.
    conditions = f'type eq "work" and value {comparison}'
    assert found(client, f"emails[{conditions}]") == expected


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param(
            'phoneNumbers[type eq "work"].value eq "+1 425 555 0100"', {"ada"}, id="phoneNumbers"
        ),
        pytest.param('phoneNumbers[type eq "mobile"].value sw "+1 206"', {"ada"}, id="phone-sw"),
        pytest.param(
            'addresses[type eq "work"].streetAddress co "Main"', {"ada"}, id="addresses-co"
        ),
        pytest.param(
            'addresses[type eq "home"].streetAddress co "MAIN"', {"bob"}, id="addresses-home"
        ),
        pytest.param('addresses[type eq "home"].locality pr', {"ada"}, id="addresses-pr"),
        pytest.param('addresses[type eq "work"].locality ne "Seattle"', {"ada"}, id="addresses-ne"),
        pytest.param('ims[type eq "skype"].value eq "ADA.LOVELACE"', {"ada"}, id="ims"),
        pytest.param('photos[type eq "photo"].value ew "/ada.jpg"', {"ada"}, id="photos"),
        pytest.param('entitlements[type eq "app"].value eq "admin"', {"ada"}, id="entitlements"),
        pytest.param('roles[primary eq true].value eq "Owner"', {"ada"}, id="roles-primary"),
        pytest.param('roles[type eq "app"].primary eq false', {"bob"}, id="roles-boolean-sub"),
        pytest.param(
            'x509Certificates[type eq "signing"].value eq "TUlJQ0FkYQ=="',
            {"ada"},
            id="x509Certificates",
        ),
        pytest.param(
            'x509Certificates[type eq "signing"].value ne "TUlJQ0FkYQ=="', set(), id="x509-ne"
        ),
        pytest.param(
            'emails[type eq "work"].type eq "home"', set(), id="sub-attribute-in-both-places"
        ),
        pytest.param(
            'urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"].value sw "bob"',
            {"bob"},
            id="urn-qualified",
        ),
        pytest.param(
            'EMAILS[TYPE eq "work"].VALUE eq "cy@contoso.com"', {"cy"}, id="names-any-case"
        ),
    ],
)
def test_value_path_with_sub_attribute_on_every_multi_valued_attribute(
    client, people, filter_text, expected
):
    assert found(client, filter_text) == expected


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param(
            f'{WORK}.value eq "ada@contoso.com" or {WORK}.value eq "bob@contoso.com"',
            {"ada", "bob"},
            id="or",
        ),
        pytest.param(f'userName ne "cy" and {WORK}.value co "contoso"', {"ada", "bob"}, id="and"),
        pytest.param(
            f'not ({WORK}.value eq "ada@contoso.com")', {"bob", "cy", "dee", "eve"}, id="not"
        ),
        pytest.param(
            f'({WORK}.value sw "a" or {WORK}.value sw "c") and userName ne "ada"',
            {"cy"},
            id="parentheses",
        ),
        # RFC 7644: `and` binds tighter than `or` inside the brackets too: home, or (work and
        # "cy"); read left to right it would be cy's alone.
        pytest.param(
            'emails[type eq "home" or type eq "work" and value sw "cy"].value pr',
            {"ada", "bob", "cy"},
            id="and-binds-tighter-inside-brackets",
        ),
        pytest.param(
            f'userName eq "eve" or userName eq "dee" and {WORK}.value pr',
            {"eve"},
            id="and-binds-tighter-around",
        ),
        pytest.param(
            f'{WORK}.value pr and not (emails[type eq "home"].value pr)', {"cy"}, id="not-inside"
        ),
    ],
)
def test_value_path_with_sub_attribute_combines_with_logical_operators(
    client, people, filter_text, expected
):
    assert found(client, filter_text) == expected


@pytest.mark.parametrize(
    ("filter_text", "detail"),
    [
        pytest.param(
            f'{WORK} eq "x"', "a value path cannot be compared directly", id="no-sub-attribute"
        ),
        pytest.param(
            f'{WORK}.shoe eq "x"', "unknown attribute emails.shoe", id="unknown-sub-attribute"
        ),
        pytest.param(
            'name[givenName eq "x"].familyName eq "y"',
            "name is not multi-valued",
            id="singular-attribute",
        ),
        pytest.param(
            f"{WORK}.value eq 42", "emails.value is a string; quote the value", id="number"
        ),
        pytest.param(
            f"{WORK}.primary gt true",
            "emails.primary is a boolean; only eq and ne apply",
            id="gt-on-boolean",
        ),
        pytest.param(
            'x509Certificates[type eq "x"].value sw "MII"',
            "x509Certificates.value is binary; only eq, ne and pr apply",
            id="sw-on-binary",
        ),
        pytest.param(
            'emails[type eq "work"].value.value eq "x"',
            "unexpected '.value' at position 29",
            id="two-sub-attributes",
        ),
        pytest.param(
            f'{WORK}.value regex "x"',
            "unknown operator 'regex' at position 30; use eq, ne, co, sw, ew, gt, ge, lt, le or pr",
            id="unknown-operator",
        ),
    ],
)
def test_value_path_with_sub_attribute_errors_are_400(client, people, filter_text, detail):
    response = client.get(f"{BASE}/Users", query_string={"filter": filter_text})
    assert response.status_code == 400
    assert response.json == error(400, f"Invalid filter: {detail}", "invalidFilter")


def test_entra_lookup_create_then_find_by_work_email(client):
    """Entra's matching on emails[type eq "work"].value: not found, created, found, renamed."""
    lookup = 'emails[type eq "work"].value eq "ada@contoso.com"'

    def look_up(filter_text: str) -> dict:
        response = client.get(f"{BASE}/Users", query_string={"filter": filter_text})
        assert response.status_code == 200, response.json
        return response.json

    empty = {
        "schemas": [LIST_URN],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }
    assert look_up(lookup) == empty
    created = client.post(
        f"{BASE}/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": "ada",
            "userName": "Ada@contoso.com",
            "active": True,
            "displayName": "Ada Lovelace",
            "emails": [{"primary": True, "type": "work", "value": "Ada@contoso.com"}],
            "name": {"formatted": "Ada Lovelace", "familyName": "Lovelace", "givenName": "Ada"},
        },
    )
    assert created.status_code == 201, created.json
    assert look_up(lookup) == dict(empty, totalResults=1, itemsPerPage=1, Resources=[created.json])
    # Entra changes the address through the same path it filtered on.
    changed = client.patch(
        f"{BASE}/Users/{created.json['id']}",
        json=patch_payload(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "ada@fabrikam.com"}
        ),
    )
    assert changed.status_code == 200, changed.json
    assert look_up(lookup) == empty
    after = look_up('emails[type eq "work"].value eq "ADA@FABRIKAM.COM"')
    assert [u["id"] for u in after["Resources"]] == [created.json["id"]]


def test_value_path_with_sub_attribute_on_group_members_and_user_groups(client, create_user):
    ada = create_user(userName="ada", displayName=None)
    bob = create_user(userName="bob", displayName=None)

    def group(name: str, members: list[dict]) -> dict:
        body = {"schemas": [GROUP_URN], "displayName": name, "members": members}
        response = client.post(f"{BASE}/Groups", json=body)
        assert response.status_code == 201, response.json
        return response.json

    engineering = group("Engineering", [{"value": ada["id"], "type": "User"}])
    sales = group("Sales", [{"value": bob["id"]}, {"value": engineering["id"], "type": "Group"}])
    group("Empty", [])

    def groups_found(filter_text: str) -> set[str]:
        return found(client, filter_text, resource="Groups", excludedAttributes="members")

    assert groups_found(f'members[type eq "User"].value eq "{ada["id"]}"') == {"Engineering"}
    assert groups_found(f'members[type eq "Group"].value eq "{ada["id"]}"') == set()
    assert groups_found(f'members[type eq "Group"].value eq "{engineering["id"]}"') == {"Sales"}
    assert groups_found(f'members[type eq "User"].value ne "{ada["id"]}"') == {"Sales"}
    assert groups_found('members[type eq "user"].display sw "BO"') == {"Sales"}
    assert groups_found('members[type eq "User"].value pr') == {"Engineering", "Sales"}
    assert groups_found(
        f'id eq "{sales["id"]}" and members[type eq "User"].value eq "{bob["id"]}"'
    ) == {"Sales"}
    assert groups_found(f'not (members[type eq "User"].value eq "{bob["id"]}")') == {
        "Engineering",
        "Empty",
    }
    assert found(client, f'groups[type eq "direct"].value eq "{engineering["id"]}"') == {"ada"}
    assert found(client, 'groups[value pr].display eq "SALES"') == {"bob"}


def test_value_path_with_sub_attribute_in_the_root_search(client, people, create_user):
    """The root /.search: each type finds what it has; the other type lacks the attribute."""
    group = client.post(
        f"{BASE}/Groups",
        json={
            "schemas": [GROUP_URN],
            "displayName": "Admins",
            "members": [{"value": people["id"]}],
        },
    ).json
    text = f'{WORK}.value eq "ada@contoso.com" or members[type eq "User"].value eq "{people["id"]}"'
    response = client.post(f"{BASE}/.search", json={"schemas": [SEARCH_URN], "filter": text})
    assert response.status_code == 200, response.json
    assert response.json["totalResults"] == 2
    assert [r["id"] for r in response.json["Resources"]] == [people["id"], group["id"]]
    negated = client.post(
        f"{BASE}/.search",
        json={"schemas": [SEARCH_URN], "filter": f"not ({WORK}.value pr) and userName pr"},
    ).json
    assert [r["userName"] for r in negated["Resources"]] == ["dee", "eve"]
    by_users_search = client.post(
        f"{BASE}/Users/.search",
        json={"schemas": [SEARCH_URN], "filter": f'{WORK}.value ew "@CONTOSO.COM"'},
    ).json
    assert {r["userName"] for r in by_users_search["Resources"]} == {"ada", "bob", "cy"}
