"""What a filter selects (RFC 7644 §3.4.2.2), over HTTP on both databases, for Users and Groups:
operators and logic, case (caseExact), strings and escapes, dates, multi-valued and complex
attributes, extensions, schemas and meta.

Refused filters: test_filter_errors.py. Entra's value path with a sub-attribute:
test_entra_filters.py. Random filters against a Python model: test_filter_properties.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.conftest import BASE
from tests.payloads import ENTERPRISE_URN, GROUP_URN, LIST_URN, USER_URN, found, listed_names

# ---------------------------------------------------------------------------------------------
# Operators and logic


@pytest.mark.parametrize("filter_text", ["", "   "])
def test_empty_filter_lists_everyone(client, create_user, filter_text):
    create_user()
    assert found(client, filter_text) == {"jane@example.com"}


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param('emails.value eq "ADA@example.com"', {"ada"}, id="emails.value-eq"),
        pytest.param('emails eq "grace@EXAMPLE.org"', {"grace"}, id="emails-means-value"),
        pytest.param('emails.value ew ".COM"', {"ada", "alan"}, id="emails.value-ew"),
        pytest.param('emails.type eq "HOME"', {"grace"}, id="emails.type-case-insensitive"),
        pytest.param('displayName eq "ada lovelace"', {"ada"}, id="displayName-eq"),
        pytest.param('displayName ne "Ada Lovelace"', {"grace", "alan", "edsger"}, id="ne"),
        pytest.param('name.familyName eq "HOPPER"', {"grace"}, id="name.familyName"),
        pytest.param('name.givenName sw "a"', {"ada", "alan"}, id="name.givenName-sw"),
        pytest.param('title eq "engineer"', {"ada", "alan"}, id="json-attribute-eq"),
        pytest.param('title co "ESS"', {"edsger"}, id="json-attribute-co"),
        pytest.param("title pr", {"ada", "alan", "edsger"}, id="json-attribute-pr"),
        pytest.param("not (title pr)", {"grace"}, id="not-pr"),
        pytest.param('title ne "Engineer"', {"grace", "edsger"}, id="ne-includes-absent"),
        pytest.param("active eq true", {"ada", "grace", "edsger"}, id="active-true"),
        pytest.param("active eq false", {"alan"}, id="active-false"),
        pytest.param("active ne true", {"alan"}, id="active-ne"),
        pytest.param("active pr", {"ada", "grace", "alan", "edsger"}, id="active-pr"),
        pytest.param("nickName pr", set(), id="absent-pr"),
        pytest.param("nickName eq null", {"ada", "grace", "alan", "edsger"}, id="eq-null"),
        pytest.param('userName gt "b"', {"grace", "edsger"}, id="string-gt"),
        pytest.param('userName le "ALAN@example.com"', {"ada", "alan"}, id="string-le"),
    ],
)
def test_attribute_operators(client, directory, filter_text, expected):
    assert found(client, filter_text) == {directory[key]["userName"] for key in expected}


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param('title eq "Engineer" and active eq true', {"ada"}, id="and"),
        pytest.param(
            'name.givenName eq "Grace" or name.givenName eq "Edsger"', {"grace", "edsger"}, id="or"
        ),
        # RFC 7644 §3.4.2.2: "and" binds tighter, so this is Grace or (Ada and inactive): no Ada.
        pytest.param(
            'name.givenName eq "Grace" or name.givenName eq "Ada" and active eq false',
            {"grace"},
            id="and-binds-tighter-than-or",
        ),
        pytest.param(
            'name.givenName eq "Ada" and active eq false or name.givenName eq "Grace"',
            {"grace"},
            id="and-binds-tighter-on-the-left",
        ),
        pytest.param(
            '(name.givenName eq "Grace" or name.givenName eq "Ada") and active eq true',
            {"grace", "ada"},
            id="parentheses-override",
        ),
        pytest.param(
            'title eq "Engineer" and (active eq false or name.givenName eq "Ada")',
            {"ada", "alan"},
            id="parenthesised-or-inside-and",
        ),
        pytest.param(
            'not (name.givenName eq "Grace" or name.givenName eq "Ada" and active eq false)',
            {"ada", "alan", "edsger"},
            id="precedence-inside-not",
        ),
        pytest.param('not (title eq "Engineer")', {"grace", "edsger"}, id="not"),
        pytest.param(
            'not (title eq "Engineer") and not (userName ew ".net")', {"grace"}, id="two-nots"
        ),
        pytest.param(
            'userName sw "a" and userName ew ".com" and not (active eq false)',
            {"ada"},
            id="and-chain",
        ),
        pytest.param(
            'name.givenName eq "Ada" Or name.givenName eq "Alan" AND active eq false',
            {"ada", "alan"},
            id="logical-operators-any-case",
        ),
    ],
)
def test_logical_operators(client, directory, filter_text, expected):
    assert found(client, filter_text) == {directory[key]["userName"] for key in expected}


def test_string_true_is_not_boolean_true(client, create_user):
    create_user(userName="true", nickName="true")
    create_user(userName="other", nickName="false")
    assert found(client, 'userName eq "true"') == {"true"}
    assert found(client, 'nickName eq "TRUE"') == {"true"}


# ---------------------------------------------------------------------------------------------
# Case: caseExact=false attributes compare case-folded, caseExact=true ones as written


@pytest.mark.parametrize(
    "filter_text",
    [
        pytest.param('userName eq "JANE@Example.COM"', id="upper-case"),
        pytest.param('USERNAME eq "jane@example.com"', id="attribute-name-case"),
        pytest.param('userName EQ "jane@example.com"', id="operator-case"),
        pytest.param('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "Jane@example.com"'),
    ],
)
def test_username_eq_is_case_insensitive(client, create_user, filter_text):
    create_user(userName="jane@example.com")
    create_user(userName="jane@example.co")
    assert found(client, filter_text) == {"jane@example.com"}


def test_username_eq_folds_non_ascii_case(client, create_user):
    create_user(userName="müller@x")
    create_user(userName="muller@x")
    assert found(client, 'userName eq "MÜLLER@x"') == {"müller@x"}
    assert found(client, 'userName sw "MÜ"') == {"müller@x"}


def test_display_name_eq_folds_non_ascii_case(client, create_user):
    create_user(userName="a", displayName="Jürgen Müller")
    create_user(userName="b", displayName="Jurgen Muller")
    create_user(userName="c", displayName="İstanbul")
    assert found(client, 'displayName eq "JÜRGEN MÜLLER"') == {"a"}
    assert found(client, 'displayName co "ÜRGEN"') == {"a"}
    # Python's "İ".lower() differs from PostgreSQL's: both sides must fold the same way.
    assert found(client, 'displayName eq "İSTANBUL"') == {"c"}
    assert found(client, 'displayName sw "İst"') == {"c"}
    assert found(client, 'name.givenName eq "JANE" and displayName ew "BUL"') == {"c"}
    assert found(client, 'emails.value eq "JANE@EXAMPLE.COM"') == {"a", "b", "c"}


def test_external_id_eq_is_case_exact(client, directory):
    assert found(client, 'externalId eq "ext-Ada"') == {"ada@example.com"}
    assert found(client, 'externalId eq "EXT-ADA"') == set()
    assert found(client, 'externalId sw "ext-A"') == {"ada@example.com", "alan@example.com"}
    assert found(client, 'externalId sw "ext-a"') == set()


def test_id_eq_is_case_exact(client, directory):
    ada = directory["ada"]["id"]
    assert found(client, f'id eq "{ada}"') == {"ada@example.com"}
    assert found(client, f'id eq "{ada.upper()}"') == set()
    # Entra's Test Connection looks up a random GUID and expects an empty list.
    assert found(client, 'id eq "00000000-0000-4000-8000-000000000000"') == set()


def test_binary_values_compare_as_written(client, create_user):
    # Base64 is case-significant: the stored value matches, a case-folded copy of it does not.
    create_user(userName="a", x509Certificates=[{"value": "TUlJQ0FkYQ==", "type": "signing"}])
    create_user(userName="b", x509Certificates=[{"value": "tuljq0fkyq=="}])
    assert found(client, 'x509Certificates.value eq "TUlJQ0FkYQ=="') == {"a"}
    assert found(client, 'x509Certificates[value eq "tuljq0fkyq=="]') == {"b"}
    assert found(client, 'x509Certificates.value ne "TUlJQ0FkYQ=="') == {"b"}


# ---------------------------------------------------------------------------------------------
# Strings: JSON escapes, and LIKE's wildcards taken literally


@pytest.mark.parametrize(
    ("user_name", "filter_text"),
    [
        pytest.param('a"b', 'userName eq "a\\"b"', id="escaped-quote"),
        pytest.param('"quoted"', 'userName eq "\\"QUOTED\\""', id="quotes-at-both-ends"),
        pytest.param("back\\slash", 'userName eq "back\\\\slash"', id="backslash"),
        pytest.param("é@x", 'userName eq "\\u00e9@x"', id="unicode-escape"),
        pytest.param("😀@x", 'userName eq "\\ud83d\\ude00@x"', id="surrogate-pair"),
        pytest.param("a/b", 'userName eq "a\\/b"', id="escaped-solidus"),
        pytest.param("tab\tbed", 'userName eq "tab\\tbed"', id="escaped-tab"),
        pytest.param('x and y or not (z) ]"', 'userName eq "X AND Y OR NOT (Z) ]\\""', id="syntax"),
    ],
)
def test_escapes_in_strings(client, create_user, user_name, filter_text):
    create_user(userName=user_name)
    create_user(userName="other")
    assert found(client, filter_text) == {user_name}


def test_escaped_quote_inside_value_filter(client, create_user):
    create_user(userName="a", emails=[{"value": 'say "hi"@x', "type": "work"}])
    create_user(userName="b", emails=[{"value": "say hi@x", "type": "work"}])
    assert found(client, 'emails[value co "\\"hi\\"" and type eq "work"]') == {"a"}


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        pytest.param("co", "100%", {"100%-off"}, id="co-percent"),
        pytest.param("co", "a_b", {"a_b"}, id="co-underscore"),
        pytest.param("sw", "a_", {"a_b"}, id="sw-underscore"),
        pytest.param("ew", "%-off", {"100%-off"}, id="ew-percent"),
        pytest.param("co", "\\\\", {"back\\slash"}, id="co-backslash"),
        pytest.param("co", "/", {"sl/ash"}, id="co-slash"),
        pytest.param("co", "%", {"100%-off"}, id="co-lone-percent"),
        pytest.param("co", "_", {"a_b"}, id="co-lone-underscore"),
        pytest.param("sw", "", {"100%-off", "a_b", "axb", "1000-off", "back\\slash", "sl/ash"}),
    ],
)
def test_like_wildcards_match_literally(client, create_user, operator, value, expected):
    for name in ("100%-off", "a_b", "axb", "1000-off", "back\\slash", "sl/ash"):
        create_user(userName=name)
    assert found(client, f'userName {operator} "{value}"') == expected


def test_substring_operators_on_display_name_escape_wildcards(client, create_user):
    create_user(userName="a", displayName="50% Off")
    create_user(userName="b", displayName="500 Off")
    assert found(client, 'displayName co "0% o"') == {"a"}
    assert found(client, 'displayName sw "50%"') == {"a"}


# ---------------------------------------------------------------------------------------------
# Dates


def test_last_modified_compares_instants_across_offsets(client, create_user):
    first = create_user(userName="first")
    time.sleep(0.01)
    second = create_user(userName="second")
    cutoff = datetime.fromisoformat(second["meta"]["lastModified"]) - timedelta(microseconds=500)
    in_utc = cutoff.astimezone(UTC).isoformat().replace("+00:00", "Z")
    in_new_york = cutoff.astimezone(timezone(timedelta(hours=-5))).isoformat()
    in_plus_0530 = cutoff.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    for text in (in_utc, in_new_york, in_plus_0530):
        assert found(client, f'meta.lastModified gt "{text}"') == {"second"}, text
        assert found(client, f'meta.lastModified lt "{text}"') == {"first"}, text
    assert found(client, f'meta.lastModified ge "{first["meta"]["lastModified"]}"') == {
        "first",
        "second",
    }


def test_last_modified_matches_the_value_the_service_returned(client, create_user):
    """An IdP filters with the timestamp it was given (milliseconds); that must find the user."""
    first = create_user(userName="first")
    time.sleep(0.01)
    second = create_user(userName="second")
    stamp = first["meta"]["lastModified"]
    assert found(client, f'meta.lastModified eq "{stamp}"') == {"first"}
    assert found(client, f'meta.lastModified le "{stamp}"') == {"first"}
    assert found(client, f'meta.lastModified gt "{stamp}"') == {"second"}
    assert found(client, f'meta.lastModified ge "{second["meta"]["lastModified"]}"') == {"second"}
    assert found(client, f'meta.lastModified lt "{second["meta"]["lastModified"]}"') == {"first"}
    assert found(client, f'meta.created eq "{second["meta"]["created"]}"') == {"second"}
    assert found(client, f'meta.lastModified ne "{stamp}"') == {"second"}


# ---------------------------------------------------------------------------------------------
# Multi-valued and complex attributes, value filters


def test_value_filter_matches_within_one_element(client, create_user):
    # Both conditions hold, but for different emails: must not match.
    create_user(
        userName="split",
        emails=[
            {"value": "split@other.org", "type": "work"},
            {"value": "split@example.com", "type": "home"},
        ],
    )
    create_user(userName="work", emails=[{"value": "work@EXAMPLE.com", "type": "work"}])
    create_user(userName="none", emails=[])
    assert found(client, 'emails[type eq "work" and value co "@example.com"]') == {"work"}
    assert found(client, 'emails[type eq "work"]') == {"split", "work"}
    assert found(client, 'emails[type eq "home" or value ew "@other.org"]') == {"split"}
    assert found(client, 'emails[not (type eq "work")]') == {"split"}
    assert found(client, 'userName eq "none" or emails[type eq "work"]') == {
        "split",
        "work",
        "none",
    }
    assert found(client, 'not (emails[type eq "work"])') == {"none"}
    assert found(client, "emails pr") == {"split", "work"}


def test_entra_group_style_value_filter_with_primary(client, create_user):
    create_user(
        userName="a",
        emails=[
            {"value": "a@x", "type": "work", "primary": False},
            {"value": "b@x", "primary": True},
        ],
    )
    create_user(userName="b", emails=[{"value": "c@x", "type": "work", "primary": True}])
    assert found(client, 'emails[type eq "work" and primary eq true]') == {"b"}
    assert found(client, "emails.primary eq true") == {"a", "b"}


def test_value_filter_on_a_complex_attribute_without_value(client, create_user):
    create_user(userName="a", addresses=[{"type": "work", "locality": "Hollywood"}])
    create_user(userName="b", addresses=[{"type": "home", "locality": "Hollywood"}])
    assert found(client, 'addresses[type eq "work" and locality eq "hollywood"]') == {"a"}
    assert found(client, 'addresses[locality sw "Holly"]') == {"a", "b"}


# ---------------------------------------------------------------------------------------------
# Extensions, schemas, meta and joined attributes (RFC 7644 §3.4.2.2, §3.4.2.3)


def test_enterprise_attributes_by_urn(client, create_user):
    create_user(
        userName="a",
        **{ENTERPRISE_URN: {"department": "Tour Operations", "manager": {"value": "mgr-1"}}},
    )
    create_user(userName="b", **{ENTERPRISE_URN: {"department": "Finance", "manager": "mgr-2"}})
    create_user(userName="c")
    urn = ENTERPRISE_URN
    assert found(client, f'{urn}:department eq "tour operations"') == {"a"}
    assert found(client, f'{urn}:manager.value eq "mgr-2"') == {"b"}
    assert found(client, f'{urn}:manager eq "mgr-1"') == {"a"}
    assert found(client, f"{urn}:department pr") == {"a", "b"}
    assert found(client, f'{urn.upper()}:DEPARTMENT eq "FINANCE"') == {"b"}
    assert found(client, f'{USER_URN}:name.givenName eq "jane" and {urn}:department sw "T"') == {
        "a"
    }


def test_filter_and_sort_on_an_extension_attribute_with_a_colon_free_short_name(
    client, create_user
):
    urn = ENTERPRISE_URN
    create_user(userName="a", **{urn: {"costCenter": "4130", "organization": "Universal"}})
    create_user(userName="b", **{urn: {"costCenter": "4131", "organization": "Paramount"}})
    # "co" and "or" start these names: they must lex as attributes, not operators.
    assert found(client, f'{urn}:costCenter eq "4130" or {urn}:organization eq "paramount"') == {
        "a",
        "b",
    }
    assert found(client, f'{urn}:organization co "ount"') == {"b"}


@pytest.fixture
def varied(create_user):
    create_user(
        userName="a",
        name={"givenName": "A"},
        emails=[{"value": "a@x", "primary": True}],
        addresses=[{"type": "work", "locality": "X"}],
        schemas=[USER_URN, ENTERPRISE_URN],
        **{ENTERPRISE_URN: {"department": "Engineering", "manager": {"value": "m1"}}},
    )
    create_user(
        userName="b",
        name={"formatted": ""},
        emails=[{"value": "b@x"}, {"value": "0@x", "primary": False, "type": "work"}],
    )
    create_user(
        userName="c",
        name=None,
        emails=None,
        schemas=[USER_URN, ENTERPRISE_URN],
        **{ENTERPRISE_URN: {"employeeNumber": "7"}},
    )


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param("name pr", {"a"}, id="complex-pr-ignores-empty-sub-attributes"),
        pytest.param("emails pr", {"a", "b"}, id="multi-valued-pr"),
        pytest.param("not (emails pr)", {"c"}, id="not-multi-valued-pr"),
        pytest.param("addresses pr", {"a"}, id="addresses-pr"),
        pytest.param(f"{ENTERPRISE_URN}:manager pr", {"a"}, id="extension-complex-pr"),
        pytest.param("manager pr", {"a"}, id="extension-attribute-without-urn"),
        pytest.param('department co "GINE"', {"a"}, id="extension-co-without-urn"),
        pytest.param('manager.value sw "M"', {"a"}, id="extension-sub-attribute-sw"),
        pytest.param(f'{ENTERPRISE_URN}:employeeNumber ew "7"', {"c"}, id="extension-ew"),
        pytest.param('meta.resourceType eq "User"', {"a", "b", "c"}, id="resource-type"),
        pytest.param('meta.resourceType eq "Group"', set(), id="resource-type-other"),
        pytest.param(f'schemas eq "{ENTERPRISE_URN}"', {"a", "c"}, id="schemas-extension"),
        pytest.param(f'schemas eq "{USER_URN.upper()}"', {"a", "b", "c"}, id="schemas-core"),
        pytest.param(f'not (schemas eq "{ENTERPRISE_URN}")', {"b"}, id="not-schemas"),
        pytest.param('meta.version eq "W/\\"1\\""', {"a", "b", "c"}, id="meta-version"),
        pytest.param("meta.location pr", {"a", "b", "c"}, id="meta-location-pr"),
        pytest.param('emails.value ne "a@x"', {"b", "c"}, id="ne-any-element-or-missing"),
        pytest.param("emails.value eq null", {"c"}, id="eq-null-on-multi-valued"),
        pytest.param("emails.primary eq false", {"b"}, id="primary-false-only-when-said"),
        pytest.param("emails.primary pr", {"a", "b"}, id="primary-pr"),
        pytest.param('addresses[type eq "work" and locality eq "x"]', {"a"}, id="addresses"),
        pytest.param(
            'not (emails[value eq "a@x"]) and emails[type eq "WORK" and primary eq FALSE]',
            {"b"},
            id="not-value-filter-and-upper-case-literal",
        ),
        pytest.param("active eq TRUE and title eq NULL", {"a", "b", "c"}, id="literal-case"),
    ],
)
def test_complex_schemas_and_meta_filters(client, varied, filter_text, expected):
    assert found(client, filter_text) == expected


# ---------------------------------------------------------------------------------------------
# Groups: members, and a user's groups


@pytest.mark.parametrize(
    "query",
    [
        pytest.param('displayName eq "engineering"', id="displayName-eq"),
        pytest.param('externalId eq "00g1"', id="externalId-eq"),
        pytest.param('id eq "{gid}"', id="id-eq"),
        pytest.param('members.value eq "{uid}"', id="members-value"),
        pytest.param('id eq "{gid}" and members[value eq "{uid}"]', id="entra-membership-check"),
        pytest.param('displayName eq "nope" or members[value eq "{uid}"]', id="or"),
    ],
)
def test_group_filters(client, create_user, create_group, query):
    jane = create_user()
    group = create_group(externalId="00g1", members=[{"value": jane["id"]}])
    create_group("Sales", externalId="00g2")
    text = query.format(gid=group["id"], uid=jane["id"])
    response = client.get(
        f"{BASE}/Groups", query_string={"filter": text, "excludedAttributes": "members"}
    )
    assert response.status_code == 200
    body = response.json
    assert (body["schemas"], body["totalResults"], body["itemsPerPage"]) == ([LIST_URN], 1, 1)
    assert body["Resources"][0]["id"] == group["id"]
    assert "members" not in body["Resources"][0]


def test_entra_membership_check_for_a_non_member_is_empty(client, create_user, create_group):
    jane = create_user()
    group = create_group()
    text = f'id eq "{group["id"]}" and members[value eq "{jane["id"]}"]'
    response = client.get(
        f"{BASE}/Groups", query_string={"filter": text, "excludedAttributes": "members"}
    )
    assert response.json["totalResults"] == 0


def test_user_filter_on_groups_value(client, create_user, create_group):
    jane = create_user()
    create_user(userName="bob@example.com")
    group = create_group(members=[{"value": jane["id"]}])
    response = client.get(
        f"{BASE}/Users", query_string={"filter": f'groups.value eq "{group["id"]}"'}
    )
    assert [u["id"] for u in response.json["Resources"]] == [jane["id"]]


def test_group_filters_on_members_meta_and_schemas(client, create_user):
    jane = create_user(userName="jane@example.com", displayName="Jane Doe")
    bob = create_user(userName="bob@example.com", displayName=None)

    def group(name: str, members: list[dict]) -> dict:
        body = {"schemas": [GROUP_URN], "displayName": name, "members": members}
        response = client.post(f"{BASE}/Groups", json=body)
        assert response.status_code == 201, response.json
        return response.json

    engineering = group("Engineering", [{"value": jane["id"]}])
    group("Sales", [{"value": bob["id"]}, {"value": engineering["id"], "type": "Group"}])
    group("Empty", [])

    def groups_found(text: str) -> set[str]:
        return found(client, text, resource="Groups")

    assert groups_found('members[type eq "User"]') == {"Engineering", "Sales"}
    assert groups_found('members[type eq "group"]') == {"Sales"}
    assert groups_found('members.display eq "JANE DOE"') == {"Engineering"}
    assert groups_found('members.display eq "bob@example.com"') == {"Sales"}  # no displayName
    assert groups_found('members.display eq "engineering"') == {"Sales"}  # a nested group
    assert groups_found("members pr") == {"Engineering", "Sales"}
    assert groups_found('meta.resourceType eq "Group" and not (members pr)') == {"Empty"}
    assert groups_found(f'schemas eq "{GROUP_URN}"') == {"Engineering", "Sales", "Empty"}
    assert groups_found('meta.version eq "W/\\"1\\""') == {"Engineering", "Sales", "Empty"}
    by_members = {"sortBy": "members.display", "sortOrder": "ascending"}
    assert listed_names(client.get(f"{BASE}/Groups", query_string=by_members)) == [
        "Sales",
        "Engineering",
        "Empty",
    ]

    assert found(client, 'groups.display eq "engineering"') == {"jane@example.com"}
    assert found(client, 'groups[display sw "S"]') == {"bob@example.com"}
    assert found(client, "not (groups pr)") == set()
