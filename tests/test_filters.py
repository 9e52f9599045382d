"""Filter parsing and semantics (RFC 7644 §3.4.2.2): error bodies, escapes, properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import BASE, empty_tables
from tests.payloads import GROUP_URN, LIST_URN, USER_URN, error, found, user_payload

OPERATORS = "eq, ne, co, sw, ew, gt, ge, lt, le or pr"


def search(client, filter_text: str):
    return client.get(f"{BASE}/Users", query_string={"filter": filter_text})


@pytest.mark.parametrize(
    ("filter_text", "detail"),
    [
        pytest.param(
            'userName eq "jane@example.com',
            "Unterminated string starting at position 13",
            id="unclosed-quote",
        ),
        pytest.param('shoeSize eq "9"', "unknown attribute 'shoeSize'", id="unknown-attribute"),
        pytest.param('name.nick eq "x"', "unknown attribute 'name.nick'", id="unknown-sub"),
        pytest.param(
            'urn:example:params:User:userName eq "x"',
            "unknown attribute 'urn:example:params:User:userName'",
            id="unknown-schema-urn",
        ),
        pytest.param("userName eq", "the filter ended unexpectedly", id="incomplete"),
        pytest.param("userName", "the filter ended unexpectedly", id="no-operator"),
        pytest.param('userName eq "x" and', "the filter ended unexpectedly", id="dangling-and"),
        pytest.param('(userName eq "x"', "the filter ended unexpectedly", id="unclosed-paren"),
        pytest.param('userName eq "x")', "unexpected ')' at position 16", id="extra-paren"),
        pytest.param(
            'emails[type eq "work"', "the filter ended unexpectedly", id="unclosed-bracket"
        ),
        pytest.param(
            'userName eq "x" userName eq "y"',
            "unexpected 'userName' at position 17",
            id="missing-logical-operator",
        ),
        pytest.param(
            'userName eq "x" and not userName eq "y"',
            "unexpected 'userName' at position 25",
            id="not-without-parentheses",
        ),
        pytest.param(
            "active gt true", "active is a boolean; only eq and ne apply", id="gt-on-boolean"
        ),
        pytest.param(
            'active eq "true"',
            "active is a boolean; compare it with true/false",
            id="boolean-with-string",
        ),
        pytest.param(
            "userName eq 42", "userName is a string; quote the value", id="string-with-number"
        ),
        pytest.param(
            "userName eq true", "userName is a string; quote the value", id="string-with-boolean"
        ),
        pytest.param(
            'userName regex "x"',
            f"unknown operator 'regex' at position 10; use {OPERATORS}",
            id="unknown-operator",
        ),
        pytest.param(
            'userName eq "x" and name.givenName like "y"',
            f"unknown operator 'like' at position 36; use {OPERATORS}",
            id="unknown-operator-after-sub-attribute",
        ),
        pytest.param(
            'emails[type regex "x"]',
            f"unknown operator 'regex' at position 13; use {OPERATORS}",
            id="unknown-operator-in-value-filter",
        ),
        pytest.param("userName eq 'x'", 'Unexpected character "\'" at position 13', id="quote"),
        pytest.param('userName eq "x";', "Unexpected character ';' at position 16", id="junk"),
        pytest.param('userName eq "a\\qb"', 'Invalid escape in string "a\\qb"', id="bad-escape"),
        pytest.param(
            'userName eq "a\tb"',
            'Invalid control character in string "a\tb"',
            id="raw-control-character",
        ),
        pytest.param(
            'userName eq "a\\u0000b"',
            "NUL character (\\u0000) in string at position 13",
            id="nul-character",
        ),
        pytest.param(
            'emails[value sw "\\u0000"]',
            "NUL character (\\u0000) in string at position 17",
            id="nul-character-in-value-filter",
        ),
        pytest.param(
            "userName gt null", "userName gt null is not a valid comparison", id="gt-null"
        ),
        pytest.param(
            'meta.lastModified gt "yesterday"',
            "'yesterday' is not an RFC 3339 date-time",
            id="bad-date-time",
        ),
        pytest.param(
            'meta.lastModified gt "2024-01-01T00:00:00"',
            "'2024-01-01T00:00:00' needs a time zone offset",
            id="date-time-without-offset",
        ),
        pytest.param(
            'meta.created co "2024-01-01T00:00:00Z"',
            "meta.created is a dateTime; co does not apply",
            id="co-on-date-time",
        ),
        pytest.param(
            'x509Certificates.value sw "MII"',
            "x509Certificates.value is binary; only eq, ne and pr apply",
            id="sw-on-binary",
        ),
        pytest.param('name eq "x"', "name a sub-attribute of name", id="complex-without-value"),
        pytest.param(
            'name[givenName eq "x"]', "name is not multi-valued", id="value-filter-on-singular"
        ),
        pytest.param(
            'emails[shoe eq "x"]', "unknown attribute emails.shoe", id="unknown-in-value-filter"
        ),
        pytest.param(
            'emails[type eq "work" and emails[value eq "x"]]',
            "value filters cannot be nested",
            id="nested-value-filter",
        ),
    ],
)
def test_invalid_filter_is_400_invalid_filter(client, create_user, filter_text, detail):
    create_user()
    response = search(client, filter_text)
    assert response.status_code == 400
    assert response.json == error(400, f"Invalid filter: {detail}", "invalidFilter")


def test_invalid_filter_in_okta_form_encoding(client):
    response = client.get(f"{BASE}/Users", query_string="filter=userName+eq+%22jane&count=100")
    assert response.status_code == 400
    assert response.json == error(
        400, "Invalid filter: Unterminated string starting at position 13", "invalidFilter"
    )


@pytest.mark.parametrize("filter_text", ["", "   "])
def test_empty_filter_lists_everyone(client, create_user, filter_text):
    create_user()
    assert found(client, filter_text) == {"jane@example.com"}


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


def test_string_true_is_not_boolean_true(client, create_user):
    create_user(userName="true", nickName="true")
    create_user(userName="other", nickName="false")
    assert found(client, 'userName eq "true"') == {"true"}
    assert found(client, 'nickName eq "TRUE"') == {"true"}


def test_value_filter_on_a_complex_attribute_without_value(client, create_user):
    create_user(userName="a", addresses=[{"type": "work", "locality": "Hollywood"}])
    create_user(userName="b", addresses=[{"type": "home", "locality": "Hollywood"}])
    assert found(client, 'addresses[type eq "work" and locality eq "hollywood"]') == {"a"}
    assert found(client, 'addresses[locality sw "Holly"]') == {"a", "b"}


def test_filter_and_sort_on_an_extension_attribute_with_a_colon_free_short_name(
    client, create_user
):
    urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    create_user(userName="a", **{urn: {"costCenter": "4130", "organization": "Universal"}})
    create_user(userName="b", **{urn: {"costCenter": "4131", "organization": "Paramount"}})
    # "co" and "or" start these names: they must lex as attributes, not operators.
    assert found(client, f'{urn}:costCenter eq "4130" or {urn}:organization eq "paramount"') == {
        "a",
        "b",
    }
    assert found(client, f'{urn}:organization co "ount"') == {"b"}


# ---------------------------------------------------------------------------------------------
# Properties: SQL results on both databases against a Python model of the semantics


PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Printable text, non-ASCII included: no control characters (a userName is printable) and no
# surrogates (not encodable).
names_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12
)
user_names = st.lists(names_text, min_size=1, max_size=5, unique_by=str.casefold)


def reset(client, names: list[str]) -> None:
    """Empty the tables (each example starts afresh) and create one user per name."""
    empty_tables()
    for name in names:
        response = client.post(f"{BASE}/Users", json=user_payload(userName=name))
        assert response.status_code == 201, (name, response.json)


def quoted(value: str, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


@PROPERTY_SETTINGS
@given(names=user_names, data=st.data())
def test_eq_finds_exactly_the_user_with_that_name(client, names, data):
    reset(client, names)
    target = data.draw(st.sampled_from(names))
    ascii_only = data.draw(st.booleans())
    spelling = data.draw(st.sampled_from([target, target.lower(), target.upper()]))
    expected = {n for n in names if n.casefold() == spelling.casefold()}
    if spelling != target.upper():
        assert target in expected
    assert found(client, f"userName eq {quoted(spelling, ascii_only)}") == expected
    assert found(client, f"not (userName eq {quoted(spelling, ascii_only)})") == (
        set(names) - expected
    )


@PROPERTY_SETTINGS
@given(names=user_names, data=st.data())
def test_substring_operators_match_the_python_model(client, names, data):
    reset(client, names)
    target = data.draw(st.sampled_from(names))
    start = data.draw(st.integers(0, len(target)))
    end = data.draw(st.integers(start, len(target)))
    part = target[start:end]
    key = part.casefold()
    models = {
        "co": lambda n: key in n.casefold(),
        "sw": lambda n: n.casefold().startswith(key),
        "ew": lambda n: n.casefold().endswith(key),
    }
    for op, model in models.items():
        result = found(client, f"userName {op} {quoted(part, True)}")
        assert result == {n for n in names if model(n)}, op
    assert target in found(client, f"userName co {quoted(part, False)}")
    assert target in found(client, f"userName sw {quoted(target[:end], False)}")
    assert target in found(client, f"userName ew {quoted(target[start:], False)}")


@PROPERTY_SETTINGS
@given(names=user_names, data=st.data())
def test_ordering_operators_and_sort_match_the_python_model(client, names, data):
    reset(client, names)
    pivot = data.draw(st.sampled_from(names)).casefold()
    for op, model in {
        "gt": lambda n: n.casefold() > pivot,
        "ge": lambda n: n.casefold() >= pivot,
        "lt": lambda n: n.casefold() < pivot,
        "le": lambda n: n.casefold() <= pivot,
    }.items():
        assert found(client, f"userName {op} {quoted(pivot, True)}") == {
            n for n in names if model(n)
        }, op
    response = client.get(f"{BASE}/Users", query_string={"sortBy": "userName"})
    assert [r["userName"] for r in response.json["Resources"]] == sorted(names, key=str.casefold)


@PROPERTY_SETTINGS
@given(
    names=st.lists(
        st.text(alphabet="ab", min_size=1, max_size=2), min_size=1, max_size=6, unique=True
    ),
    data=st.data(),
)
def test_and_binds_tighter_than_or(client, names, data):
    """Random chains of `and`/`or` against Python's own precedence, which is RFC 7644's."""
    reset(client, names)
    terms = data.draw(
        st.lists(
            st.tuples(st.sampled_from(["eq", "sw", "ew", "co"]), st.sampled_from(["a", "b"])),
            min_size=2,
            max_size=5,
        )
    )
    joins = data.draw(st.lists(st.sampled_from(["and", "or"]), min_size=4, max_size=4))
    text = " ".join(
        (f"{joins[i - 1]} " if i else "") + f'userName {op} "{v}"'
        for i, (op, v) in enumerate(terms)
    )
    tests = {"eq": str.__eq__, "sw": str.startswith, "ew": str.endswith, "co": str.__contains__}

    def matches(name: str) -> bool:
        expression = " ".join(
            (f"{joins[i - 1]} " if i else "") + str(tests[op](name, v))
            for i, (op, v) in enumerate(terms)
        )
        return eval(expression)  # noqa: S307 - True/False/and/or only

    assert found(client, text) == {n for n in names if matches(n)}, text


def test_list_response_for_a_filter_with_no_match(client, create_user):
    create_user()
    response = search(client, 'userName eq "nobody"')
    assert response.status_code == 200
    assert response.json == {
        "schemas": [LIST_URN],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }


# ---------------------------------------------------------------------------------------------
# Complex attributes, schemas, meta and joined attributes (RFC 7644 §3.4.2.2, §3.4.2.3)

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.fixture
def varied(create_user):
    create_user(
        userName="a",
        name={"givenName": "A"},
        emails=[{"value": "a@x", "primary": True}],
        addresses=[{"type": "work", "locality": "X"}],
        schemas=[USER_URN, ENTERPRISE],
        **{ENTERPRISE: {"department": "Engineering", "manager": {"value": "m1"}}},
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
        schemas=[USER_URN, ENTERPRISE],
        **{ENTERPRISE: {"employeeNumber": "7"}},
    )


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        pytest.param("name pr", {"a"}, id="complex-pr-ignores-empty-sub-attributes"),
        pytest.param("emails pr", {"a", "b"}, id="multi-valued-pr"),
        pytest.param("not (emails pr)", {"c"}, id="not-multi-valued-pr"),
        pytest.param("addresses pr", {"a"}, id="addresses-pr"),
        pytest.param(f"{ENTERPRISE}:manager pr", {"a"}, id="extension-complex-pr"),
        pytest.param("manager pr", {"a"}, id="extension-attribute-without-urn"),
        pytest.param('department co "GINE"', {"a"}, id="extension-co-without-urn"),
        pytest.param('manager.value sw "M"', {"a"}, id="extension-sub-attribute-sw"),
        pytest.param(f'{ENTERPRISE}:employeeNumber ew "7"', {"c"}, id="extension-ew"),
        pytest.param('meta.resourceType eq "User"', {"a", "b", "c"}, id="resource-type"),
        pytest.param('meta.resourceType eq "Group"', set(), id="resource-type-other"),
        pytest.param(f'schemas eq "{ENTERPRISE}"', {"a", "c"}, id="schemas-extension"),
        pytest.param(f'schemas eq "{USER_URN.upper()}"', {"a", "b", "c"}, id="schemas-core"),
        pytest.param(f'not (schemas eq "{ENTERPRISE}")', {"b"}, id="not-schemas"),
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


@pytest.mark.parametrize(
    ("filter_text", "detail"),
    [
        pytest.param(
            'meta.location eq "x"',
            "meta.location cannot be filtered or sorted on",
            id="meta-location",
        ),
        pytest.param("schemas gt true", "schemas is a string; quote the value", id="schemas-type"),
        pytest.param(
            'schemas[value eq "x"]', "unknown attribute 'schemas'", id="schemas-value-filter"
        ),
        pytest.param('groups.$ref eq "x"', "groups.$ref cannot be filtered on", id="groups-ref"),
    ],
)
def test_unfilterable_attributes_are_400(client, varied, filter_text, detail):
    response = search(client, filter_text)
    assert response.status_code == 400
    assert response.json == error(400, f"Invalid filter: {detail}", "invalidFilter")


def sorted_names(client, resource: str, sort_by: str, order: str = "ascending") -> list[str]:
    response = client.get(
        f"{BASE}/{resource}", query_string={"sortBy": sort_by, "sortOrder": order}
    )
    assert response.status_code == 200, response.json
    return [r.get("userName", r.get("displayName")) for r in response.json["Resources"]]


def test_sort_by_a_multi_valued_attribute_uses_the_primary_else_the_first(client, create_user):
    create_user(userName="a", emails=[{"value": "z@x"}, {"value": "B@x", "primary": True}])
    create_user(userName="b", emails=[{"value": "c@x"}, {"value": "a@x"}])  # no primary: first
    create_user(userName="c", emails=None)
    create_user(userName="d", emails=[{"value": "A@x", "type": "work"}])
    assert sorted_names(client, "Users", "emails.value") == ["d", "a", "b", "c"]
    assert sorted_names(client, "Users", "emails") == ["d", "a", "b", "c"]
    assert sorted_names(client, "Users", "emails", "descending") == ["c", "b", "a", "d"]
    assert sorted_names(client, "Users", "emails.type") == ["d", "a", "b", "c"]


def test_sort_is_by_code_point_on_both_databases(client, create_user):
    # A locale collation (en_US.UTF-8) would put "a-c" after "ab"; Python and SQLite do not.
    for name in ("ab", "a-c", "B", "é", "_"):
        create_user(userName=name)
    assert sorted_names(client, "Users", "userName") == sorted(
        ["ab", "a-c", "B", "é", "_"], key=str.casefold
    )
    assert found(client, 'userName gt "a-c"') == {"ab", "B", "é"}  # not "_" (U+005F)


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
    assert sorted_names(client, "Groups", "members.display") == ["Sales", "Engineering", "Empty"]

    assert found(client, 'groups.display eq "engineering"') == {"jane@example.com"}
    assert found(client, 'groups[display sw "S"]') == {"bob@example.com"}
    assert found(client, "not (groups pr)") == set()


def test_binary_values_compare_as_written(client, create_user):
    # Base64 is case-significant: the stored value matches, a case-folded copy of it does not.
    create_user(userName="a", x509Certificates=[{"value": "TUlJQ0FkYQ==", "type": "signing"}])
    create_user(userName="b", x509Certificates=[{"value": "tuljq0fkyq=="}])
    assert found(client, 'x509Certificates.value eq "TUlJQ0FkYQ=="') == {"a"}
    assert found(client, 'x509Certificates[value eq "tuljq0fkyq=="]') == {"b"}
    assert found(client, 'x509Certificates.value ne "TUlJQ0FkYQ=="') == {"b"}
