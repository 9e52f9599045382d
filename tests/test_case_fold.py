"""Every caseExact=false attribute compares through the one fold (app.fold), on both databases.

"STRASSE" and "straße", "ΟΔΟΣ" and "οδος" (final sigma), "MÜLLER" and "müller" are the same
value wherever an attribute is not caseExact: in a column (userName, displayName), in the JSON
document (nickName, title, an extension's department), in one element of a multi-valued
attribute (emails.type, addresses.locality), in a name read through a join (a group member's
display, a user's groups.display), for filters, sortBy and PATCH value filters alike. What is
caseExact (externalId, id, binary values) compares as written. The expected answers are
computed here with str.casefold and Python's code-point order, the definition app.fold gives.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

import flask_migrate
import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from app.db import db
from tests.conftest import BASE, TOKEN, make_app
from tests.databases import scratch_postgres_database
from tests.payloads import ENTERPRISE_URN, GROUP_URN, PATCH_URN, USER_URN, error

# What create_user's Okta body carries that would add values the tests do not choose.
PLAIN: dict[str, Any] = {
    "name": None,
    "emails": None,
    "displayName": None,
    "externalId": None,
    "locale": None,
}

# Stored values, each under a label: "ß" folds to "ss", final sigma "ς" to "σ", and "Ü", "É" to
# their small letters, none of which SQL's lower() does everywhere.
VALUES = {
    "sharp-s": "straße",
    "compound": "Straßenbahn",
    "sigma": "οδος",
    "umlaut": "MÜLLER",
    "acute": "Émile",
    "ascii": "adam",
}
# Each written otherwise than stored; "STRAß" folds to "strass", a prefix of "strasse".
QUERIES = ("STRASSE", "ΟΔΟΣ", "οδοσ", "müller", "éMILE", "STRAß", "Σ", "LER", "N")
OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "co": lambda value, query: query in value,
    "sw": str.startswith,
    "ew": str.endswith,
    "gt": operator.gt,  # str compares by code point, as the service orders strings
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def expected_match(op: str, stored: str | None, query: str) -> bool:
    """RFC 7644 §3.4.2.2 over folded forms: a missing value satisfies only `ne`."""
    if stored is None:
        return op == "ne"
    return OPERATORS[op](stored.casefold(), query.casefold())


def found_ids(client: FlaskClient, resource: str, filter_text: str) -> set[str]:
    response = client.get(f"{BASE}/{resource}", query_string={"filter": filter_text})
    assert response.status_code == 200, (filter_text, response.json)
    ids = [r["id"] for r in response.json["Resources"]]
    assert response.json["totalResults"] == len(ids) == len(set(ids)), response.json
    return set(ids)


def sorted_ids(client: FlaskClient, resource: str, sort_by: str, order: str) -> list[str]:
    query = {"sortBy": sort_by, "sortOrder": order}
    response = client.get(f"{BASE}/{resource}", query_string=query)
    assert response.status_code == 200, response.json
    return [r["id"] for r in response.json["Resources"]]


# ---------------------------------------------------------------------------------------------
# Where each attribute's value is put: (resource searched, filter with {op} and {q}, maker).
# A maker creates what holds `value` (None: the attribute absent) and returns the id of the
# resource the filter should select.

Maker = Callable[[Any, Any, str, str | None], str]


def _user_with(**attributes: Any) -> Maker:
    """A user whose `attributes` hold the value: each a function of it."""

    def make(create_user: Any, create_group: Any, label: str, value: str | None) -> str:
        body = {"userName": label}
        if value is not None:
            body |= {name: build(value) for name, build in attributes.items()}
        return create_user(**(PLAIN | body))["id"]

    return make


def _enterprise(build: Callable[[str], Any]) -> Maker:
    def make(create_user: Any, create_group: Any, label: str, value: str | None) -> str:
        extension = {} if value is None else {ENTERPRISE_URN: build(value)}
        body = {"userName": label, "schemas": [USER_URN, ENTERPRISE_URN], **extension}
        return create_user(**(PLAIN | body))["id"]

    return make


def _user_name(create_user: Any, create_group: Any, label: str, value: str | None) -> str:
    return create_user(**(PLAIN | {"userName": value}))["id"]


def _email_without(key: str) -> Maker:
    """An email whose `key` holds the value; when there is none, an email without `key`, so
    that `ne` has an element to hold for."""

    def make(create_user: Any, create_group: Any, label: str, value: str | None) -> str:
        email = {"value": f"{label}@example.com"} | ({} if value is None else {key: value})
        return create_user(**(PLAIN | {"userName": label, "emails": [email]}))["id"]

    return make


def _work_locality(create_user: Any, create_group: Any, label: str, value: str | None) -> str:
    # Stored type "WORK" (the filter says "work"); the home address's locality would match
    # some queries, which must not count: the filter holds for one element, not across two.
    work = {"type": "WORK"} | ({} if value is None else {"locality": value})
    home = {"type": "home", "locality": "Strasse"}
    return create_user(**(PLAIN | {"userName": label, "addresses": [home, work]}))["id"]


def _in_group_named(create_user: Any, create_group: Any, label: str, value: str | None) -> str:
    user = create_user(**(PLAIN | {"userName": label}))
    create_group(value, members=[{"value": user["id"]}])
    return user["id"]


def _group_named(create_user: Any, create_group: Any, label: str, value: str | None) -> str:
    return create_group(value)["id"]


def _group_with_member_named(
    create_user: Any, create_group: Any, label: str, value: str | None
) -> str:
    user = create_user(**(PLAIN | {"userName": label, "displayName": value}))
    return create_group(f"group {label}", members=[{"value": user["id"]}])["id"]


DEPARTMENT = f"{ENTERPRISE_URN}:department"
MANAGER = f"{ENTERPRISE_URN}:manager"

PLACES = [
    pytest.param("Users", 'userName {op} "{q}"', _user_name, False, id="userName"),
    pytest.param(
        "Users", 'displayName {op} "{q}"', _user_with(displayName=str), True, id="displayName"
    ),
    pytest.param(
        "Users",
        'name.familyName {op} "{q}"',
        _user_with(name=lambda v: {"familyName": v}),
        True,
        id="name.familyName",
    ),
    pytest.param(
        "Users",
        'name.givenName {op} "{q}"',
        _user_with(name=lambda v: {"givenName": v}),
        True,
        id="name.givenName",
    ),
    pytest.param("Users", 'nickName {op} "{q}"', _user_with(nickName=str), True, id="nickName"),
    pytest.param("Users", 'title {op} "{q}"', _user_with(title=str), True, id="title"),
    pytest.param(
        "Users",
        'preferredLanguage {op} "{q}"',
        _user_with(preferredLanguage=str),
        True,
        id="preferredLanguage",
    ),
    pytest.param(
        "Users",
        'name.formatted {op} "{q}"',
        _user_with(name=lambda v: {"formatted": v}),
        True,
        id="name.formatted",
    ),
    pytest.param(
        "Users",
        f'{DEPARTMENT} {{op}} "{{q}}"',
        _enterprise(lambda v: {"department": v}),
        True,
        id="enterprise-department",
    ),
    pytest.param(
        "Users",
        f'{MANAGER}.value {{op}} "{{q}}"',
        _enterprise(lambda v: {"manager": {"value": v}}),
        True,
        id="enterprise-manager.value",
    ),
    pytest.param(
        "Users", 'emails[type {op} "{q}"]', _email_without("type"), True, id="emails[type]"
    ),
    pytest.param(
        "Users", 'emails.display {op} "{q}"', _email_without("display"), True, id="emails.display"
    ),
    pytest.param(
        "Users",
        'addresses[type eq "work" and locality {op} "{q}"]',
        _work_locality,
        True,
        id="addresses[type-work].locality",
    ),
    pytest.param("Users", 'groups.display {op} "{q}"', _in_group_named, False, id="groups.display"),
    pytest.param("Groups", 'displayName {op} "{q}"', _group_named, False, id="group-displayName"),
    pytest.param(
        "Groups",
        'members.display {op} "{q}"',
        _group_with_member_named,
        False,
        id="members.display",
    ),
    pytest.param(
        "Groups",
        'members[display {op} "{q}"]',
        _group_with_member_named,
        False,
        id="members[display]",
    ),
]


@pytest.mark.parametrize(("resource", "template", "make", "can_be_missing"), PLACES)
def test_every_operator_compares_folded_forms(
    client, create_user, create_group, resource, template, make, can_be_missing
):
    stored = dict(VALUES) | ({"missing": None} if can_be_missing else {})
    label_of = {make(create_user, create_group, label, v): label for label, v in stored.items()}
    actual, expected = {}, {}
    for query in QUERIES:
        for op in OPERATORS:
            filter_text = template.format(op=op, q=query)
            actual[filter_text] = {label_of[i] for i in found_ids(client, resource, filter_text)}
            expected[filter_text] = {
                label for label, v in stored.items() if expected_match(op, v, query)
            }
    assert actual == expected


def test_strasse_finds_strasse_in_user_name_and_nick_name_alike(client, create_user):
    # Before ac33843 only userName did: nickName went through SQL's lower(), "strasse" != "straße".
    strasse = create_user(**(PLAIN | {"userName": "straße", "nickName": "straße"}))
    create_user(**(PLAIN | {"userName": "strase", "nickName": "strase"}))
    assert found_ids(client, "Users", 'userName eq "STRASSE"') == {strasse["id"]}
    assert found_ids(client, "Users", 'nickName eq "STRASSE"') == {strasse["id"]}


@pytest.mark.parametrize(
    ("stored", "query"),
    [
        pytest.param("οδος", "ΟΔΟΣ", id="final-sigma"),
        pytest.param("ΟΔΟΣ", "οδος", id="final-sigma-stored-upper"),
        pytest.param("οδος", "οδοσ", id="final-and-medial-sigma"),
        pytest.param("müller", "MÜLLER", id="umlaut"),
        pytest.param("MÜLLER", "müller", id="umlaut-stored-upper"),
    ],
)
def test_non_ascii_letters_match_in_column_document_and_element(client, create_user, stored, query):
    user = create_user(
        **(
            PLAIN
            | {
                "userName": stored,
                "nickName": stored,
                "emails": [{"value": "a@example.com", "type": stored}],
            }
        )
    )
    other = create_user(
        **(PLAIN | {"userName": "other", "nickName": "other", "emails": [{"value": "o@x"}]})
    )
    for path in ("userName", "nickName", "emails.type"):
        assert found_ids(client, "Users", f'{path} eq "{query}"') == {user["id"]}, path
        assert found_ids(client, "Users", f'{path} ne "{query}"') == {other["id"]}, path


def test_manager_display_name_is_read_only_so_no_filter_finds_it(client, create_user):
    # RFC 7643 §4.3: manager.displayName is readOnly; a value the client sends is ignored.
    manager = {"value": "MÜLLER-1", "displayName": "MÜLLER"}
    create_user(
        **(PLAIN | {"schemas": [USER_URN, ENTERPRISE_URN], ENTERPRISE_URN: {"manager": manager}})
    )
    assert found_ids(client, "Users", f'{MANAGER}.displayName eq "müller"') == set()
    assert len(found_ids(client, "Users", f'{MANAGER}.value eq "müller-1"')) == 1


# ---------------------------------------------------------------------------------------------
# caseExact=true compares as written


def test_external_id_is_case_exact(client, create_user):
    abc = create_user(**(PLAIN | {"userName": "a", "externalId": "Straße-ABC"}))
    create_user(**(PLAIN | {"userName": "b", "externalId": "STRASSE-abc"}))
    assert found_ids(client, "Users", 'externalId eq "Straße-ABC"') == {abc["id"]}
    assert found_ids(client, "Users", 'externalId eq "straße-abc"') == set()
    assert found_ids(client, "Users", 'externalId eq "STRASSE-ABC"') == set()
    assert found_ids(client, "Users", 'externalId sw "Straße"') == {abc["id"]}
    assert found_ids(client, "Users", 'externalId co "abc"') == found_ids(
        client, "Users", 'userName eq "b"'
    )


def test_group_external_id_is_case_exact(client, create_group):
    group = create_group("Straße", externalId="Grp-ÄÖ")
    assert found_ids(client, "Groups", 'externalId eq "Grp-ÄÖ"') == {group["id"]}
    assert found_ids(client, "Groups", 'externalId eq "grp-äö"') == set()


def test_binary_values_compare_as_written(client, create_user):
    upper = create_user(**(PLAIN | {"userName": "a", "x509Certificates": [{"value": "TUlJQw=="}]}))
    lower = create_user(**(PLAIN | {"userName": "b", "x509Certificates": [{"value": "tuljqw=="}]}))
    assert found_ids(client, "Users", 'x509Certificates.value eq "TUlJQw=="') == {upper["id"]}
    assert found_ids(client, "Users", 'x509Certificates[value eq "tuljqw=="]') == {lower["id"]}
    assert found_ids(client, "Users", 'x509Certificates.value eq "TULJQW=="') == set()


def test_id_is_case_exact(client, create_user, create_group):
    user = create_user(**(PLAIN | {"userName": "a"}))
    group = create_group("Straße")
    assert found_ids(client, "Users", f'id eq "{user["id"]}"') == {user["id"]}
    assert found_ids(client, "Users", f'id eq "{user["id"].upper()}"') == set()
    assert found_ids(client, "Groups", f'id eq "{group["id"]}"') == {group["id"]}
    assert found_ids(client, "Groups", f'id eq "{group["id"].upper()}"') == set()


# ---------------------------------------------------------------------------------------------
# sortBy orders by the folded form, in code-point order

SORT_VALUES = ("Émile", "adam", "Zoë", "ßa", "ΟΔΟΣ", "οδοα")


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize(
    ("path", "make"),
    [
        pytest.param("nickName", _user_with(nickName=str), id="nickName"),
        pytest.param("title", _user_with(title=str), id="title"),
        pytest.param(
            "name.formatted", _user_with(name=lambda v: {"formatted": v}), id="name.formatted"
        ),
        pytest.param("displayName", _user_with(displayName=str), id="displayName"),
        pytest.param(
            "emails.type",
            _user_with(emails=lambda v: [{"value": "x@example.com", "type": v}]),
            id="emails.type",
        ),
        pytest.param(
            DEPARTMENT, _enterprise(lambda v: {"department": v}), id="enterprise-department"
        ),
    ],
)
def test_sort_by_orders_folded_forms_by_code_point(
    client, create_user, create_group, path, make, order
):
    ids = {v: make(create_user, create_group, f"user {n}", v) for n, v in enumerate(SORT_VALUES)}
    missing = make(create_user, create_group, "missing", None)
    ordered = [ids[v] for v in sorted(SORT_VALUES, key=str.casefold)]
    # Folded: adam, ssa, zoë, émile (U+00E9 after "z"), οδοα, οδοσ. A locale collation puts
    # "Émile" next to "adam"; lower() leaves "ßa" as it is, after "zoë".
    assert [v for v in sorted(SORT_VALUES, key=str.casefold)] == [
        "adam", "ßa", "Zoë", "Émile", "οδοα", "ΟΔΟΣ",
    ]  # fmt: skip
    if order == "ascending":
        expected = [*ordered, missing]  # no value sorts last ascending...
    else:
        expected = [missing, *reversed(ordered)]  # ...and first descending
    assert sorted_ids(client, "Users", path, order) == expected


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_groups_sort_by_display_name_orders_folded_forms(client, create_group, order):
    ids = {v: create_group(v)["id"] for v in SORT_VALUES}
    ordered = [ids[v] for v in sorted(SORT_VALUES, key=str.casefold)]
    expected = ordered if order == "ascending" else ordered[::-1]
    assert sorted_ids(client, "Groups", "displayName", order) == expected


# ---------------------------------------------------------------------------------------------
# PATCH value filters (app.filters.match in memory; members in SQL) fold the same way


def _patch(client: FlaskClient, resource: dict[str, Any], *operations: dict[str, Any]) -> Any:
    url = f"{BASE}/{resource['meta']['resourceType']}s/{resource['id']}"
    return client.patch(url, json={"schemas": [PATCH_URN], "Operations": list(operations)})


@pytest.mark.parametrize(
    ("stored", "written"),
    [
        pytest.param("work", "WORK", id="ascii"),
        pytest.param("Straße", "STRASSE", id="sharp-s"),
        pytest.param("οδος", "ΟΔΟΣ", id="final-sigma"),
        pytest.param("MÜLLER", "müller", id="umlaut"),
    ],
)
def test_patch_value_filter_on_element_type_folds(client, create_user, stored, written):
    emails = [
        {"value": "a@example.com", "type": "home"},
        {"value": "b@example.com", "type": stored},
    ]
    user = create_user(**(PLAIN | {"userName": "ada", "emails": emails}))
    path = f'emails[type eq "{written}"].value'
    response = _patch(client, user, {"op": "replace", "path": path, "value": "c@example.com"})
    assert response.status_code == 200, response.json
    assert response.json["emails"] == [
        {"value": "a@example.com", "type": "home"},
        {"value": "c@example.com", "type": stored},
    ]
    # The search sees what the PATCH wrote, through the same fold.
    assert found_ids(
        client, "Users", f'emails[type eq "{written}" and value eq "C@EXAMPLE.COM"]'
    ) == {user["id"]}


def test_patch_value_filter_on_locality_and_remove(client, create_user):
    addresses = [
        {"type": "work", "locality": "Straßburg"},
        {"type": "home", "locality": "Οδος"},
    ]
    user = create_user(**(PLAIN | {"userName": "ada", "addresses": addresses}))
    response = _patch(
        client,
        user,
        {"op": "replace", "path": 'addresses[type eq "WORK"].locality', "value": "Zürich"},
        {"op": "remove", "path": 'addresses[locality eq "ΟΔΟΣ"]'},
    )
    assert response.status_code == 200, response.json
    assert response.json["addresses"] == [{"type": "work", "locality": "Zürich"}]


def test_patch_value_filter_on_a_case_exact_value_does_not_fold(client, create_user):
    certificates = [{"value": "TUlJQw==", "display": "signing"}]
    user = create_user(**(PLAIN | {"userName": "ada", "x509Certificates": certificates}))
    path = 'x509Certificates[value eq "tuljqw=="].display'
    response = _patch(client, user, {"op": "replace", "path": path, "value": "other"})
    assert response.status_code == 400
    assert response.json == error(
        400, "No x509Certificates value matches the filter in the path", "noTarget"
    )
    path = 'x509Certificates[value eq "TUlJQw=="].display'
    response = _patch(client, user, {"op": "replace", "path": path, "value": "other"})
    assert response.status_code == 200, response.json
    assert response.json["x509Certificates"] == [{"value": "TUlJQw==", "display": "other"}]


def test_patch_group_members_filtered_on_display_folds(client, create_user, create_group):
    strasse = create_user(**(PLAIN | {"userName": "s", "displayName": "Straße"}))
    sigma = create_user(**(PLAIN | {"userName": "οδος"}))  # display falls back to userName
    other = create_user(**(PLAIN | {"userName": "o", "displayName": "Strase"}))
    group = create_group(
        "Engineering", members=[{"value": u["id"]} for u in (strasse, sigma, other)]
    )
    response = _patch(client, group, {"op": "remove", "path": 'members[display eq "STRASSE"]'})
    assert response.status_code == 204
    response = _patch(client, group, {"op": "remove", "path": 'members[display eq "ΟΔΟΣ"]'})
    assert response.status_code == 204
    response = client.get(f"{BASE}/Groups/{group['id']}")
    assert response.status_code == 200
    assert [m["value"] for m in response.json["members"]] == [other["id"]]


# ---------------------------------------------------------------------------------------------
# A PostgreSQL database whose locale lowers only ASCII: the fold does not depend on it


@pytest.fixture
def c_locale_client() -> Iterator[FlaskClient]:
    """A client of an app on a PostgreSQL database created with LC_CTYPE=C and LC_COLLATE=C,
    built by the migrations as a deployment builds it."""
    with scratch_postgres_database(locale="C") as url:
        app = make_app(url)
        with app.app_context():
            flask_migrate.upgrade()
            try:
                client = app.test_client()
                client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
                yield client
            finally:
                db.session.remove()
                db.engine.dispose()


def test_folding_does_not_depend_on_the_postgresql_locale(c_locale_client):
    client = c_locale_client
    with db.engine.connect() as connection:
        # This database's lower() leaves non-ASCII letters alone: lower() would fail below.
        assert connection.execute(text("SELECT lower('MÜLLER')")).scalar() == "mÜller"
        assert connection.execute(text("SHOW lc_ctype")).scalar() == "C"

    def create(**body: Any) -> str:
        response = client.post(f"{BASE}/Users", json={"schemas": [USER_URN], **body})
        assert response.status_code == 201, response.json
        return response.json["id"]

    email = {"value": "Ada@École.fr", "type": "Études"}
    muller = create(userName="m", nickName="MÜLLER", title="Straße", emails=[email])
    emile = create(userName="e", nickName="émile", displayName="émile")
    others = {v: create(userName=f"o{n}", nickName=v) for n, v in enumerate(("Zoë", "ßa", "adam"))}
    assert found_ids(client, "Users", 'nickName eq "müller"') == {muller}
    assert found_ids(client, "Users", 'nickName eq "MÜLLER"') == {muller}
    assert found_ids(client, "Users", 'displayName sw "ÉM"') == {emile}
    assert found_ids(client, "Users", 'nickName co "ÜL"') == {muller}
    assert found_ids(client, "Users", 'title eq "STRASSE"') == {muller}
    assert found_ids(client, "Users", 'emails.value eq "ADA@ÉCOLE.FR"') == {muller}
    assert found_ids(client, "Users", 'emails[type sw "ÉTU"]') == {muller}
    assert found_ids(client, "Users", 'userName eq "M"') == {muller}
    group = client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "ÉCOLE"})
    assert group.status_code == 201, group.json
    assert found_ids(client, "Groups", 'displayName eq "école"') == {group.json["id"]}

    by_nick = {"MÜLLER": muller, "émile": emile} | others
    ordered = [by_nick[v] for v in sorted(by_nick, key=str.casefold)]
    assert [v for v in sorted(by_nick, key=str.casefold)] == [
        "adam",
        "MÜLLER",
        "ßa",
        "Zoë",
        "émile",
    ]
    assert sorted_ids(client, "Users", "nickName", "ascending") == ordered
    assert sorted_ids(client, "Users", "nickName", "descending") == ordered[::-1]
