"""The in-memory filter backend (app.filters.match): every operator and type on a document as GET
returns it, missing values, value paths, PATCH's element tests; and, over HTTP on both
databases, the same answers as the SQL backend for the same filters."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import InvalidFilter, InvalidPath
from app.filters import match
from app.filters.grammar import parse
from app.schema import Attribute, Resolved, Schema, complex_
from app.schema.core import GROUP_RESOURCE, USER_RESOURCE, build_registry
from tests.conftest import BASE
from tests.payloads import found

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

ADA: dict[str, Any] = {
    "schemas": [USER_URN, ENTERPRISE],
    "id": "a1b2c3",
    "externalId": "Ext-1",
    "userName": "Ada@Example.com",
    "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": ""},
    "displayName": "Straße",
    "nickName": "",
    "active": True,
    "emails": [
        {"value": "Ada@Work.example", "type": "work", "primary": True},
        {"value": "ada@home.example", "type": "home"},
    ],
    "x509Certificates": [{"value": "TUlJQ0FkYQ=="}],
    ENTERPRISE: {"department": "Engineering", "manager": {"value": "m1"}},
    "meta": {
        "resourceType": "User",
        "created": "2024-01-01T10:00:00.123Z",
        "lastModified": "2024-05-01T00:00:00.000Z",
        "location": "https://scim.example/scim/v2/Users/a1b2c3",
        "version": 'W/"3"',
    },
}
# Only what every user has: no name, no emails, no extension, not even active.
BARE: dict[str, Any] = {
    "schemas": [USER_URN],
    "id": "d4e5f6",
    "userName": "bare",
    "meta": {
        "resourceType": "User",
        "created": "2024-01-02T00:00:00.000Z",
        "lastModified": "2024-01-02T00:00:00.000Z",
        "location": "https://scim.example/scim/v2/Users/d4e5f6",
        "version": 'W/"1"',
    },
}


def holds(filter_text: str, document: dict[str, Any]) -> bool:
    return match.matches(USER_RESOURCE, parse(filter_text), document)


@pytest.mark.parametrize(
    ("filter_text", "ada", "bare"),
    [
        # Strings with caseExact false compare folded; ordering is by code point.
        pytest.param('userName eq "ADA@EXAMPLE.COM"', True, False, id="eq-folds"),
        pytest.param('displayName eq "STRASSE"', True, False, id="eq-casefold-not-lower"),
        pytest.param('userName ne "x"', True, True, id="ne"),
        pytest.param('displayName ne "x"', True, True, id="ne-holds-when-missing"),
        pytest.param('userName co "@EXAM"', True, False, id="co"),
        pytest.param('userName sw "ada@"', True, False, id="sw"),
        pytest.param('userName ew ".COM"', True, False, id="ew"),
        pytest.param('userName gt "Ad"', True, True, id="gt-folded"),
        pytest.param('userName lt "b"', True, False, id="lt-code-point"),
        pytest.param('userName ge "ada@example.com"', True, True, id="ge-equal"),
        pytest.param('userName le "ada@example.com"', True, False, id="le-equal"),
        pytest.param('displayName gt "a"', True, False, id="gt-false-when-missing"),
        # caseExact true: compared as written.
        pytest.param('externalId eq "ext-1"', False, False, id="case-exact-eq"),
        pytest.param('externalId eq "Ext-1"', True, False, id="case-exact-as-written"),
        pytest.param('externalId co "xt"', True, False, id="case-exact-co"),
        pytest.param('id eq "A1B2C3"', False, False, id="id-case-exact"),
        # pr: false for null, "" and missing.
        pytest.param("userName pr", True, True, id="pr"),
        pytest.param("nickName pr", False, False, id="pr-false-for-empty-string"),
        pytest.param("name.formatted pr", False, False, id="pr-empty-sub-attribute"),
        pytest.param("name pr", True, False, id="pr-complex-any-sub-present"),
        pytest.param("emails pr", True, False, id="pr-multi-valued"),
        pytest.param("meta.location pr", True, True, id="pr-location"),
        # null
        pytest.param("displayName eq null", False, True, id="eq-null"),
        pytest.param("displayName ne null", True, False, id="ne-null"),
        pytest.param("nickName eq null", False, True, id="empty-string-is-not-null"),
        # Booleans: missing is neither true nor false, but ne holds.
        pytest.param("active eq true", True, False, id="boolean-eq"),
        pytest.param("active ne true", False, True, id="boolean-ne-missing"),
        pytest.param("active eq false", False, False, id="boolean-eq-false-not-missing"),
        # dateTime, to the millisecond.
        pytest.param('meta.created eq "2024-01-01T10:00:00.123Z"', True, False, id="dt-eq"),
        pytest.param(
            'meta.created eq "2024-01-01T11:00:00.123+01:00"', True, False, id="dt-offset"
        ),
        pytest.param('meta.created eq "2024-01-01T10:00:00.1234Z"', False, False, id="dt-sub-ms"),
        pytest.param('meta.created ne "2024-01-01T10:00:00.1234Z"', True, True, id="dt-ne-sub-ms"),
        pytest.param('meta.created gt "2024-01-01T10:00:00.123Z"', False, True, id="dt-gt"),
        pytest.param('meta.created ge "2024-01-01T10:00:00.1225Z"', True, True, id="dt-ge"),
        pytest.param('meta.created lt "2024-01-01T10:00:00.1225Z"', False, False, id="dt-lt"),
        pytest.param('meta.created le "2024-01-01T10:00:00.123Z"', True, False, id="dt-le"),
        # Multi-valued: any element; missing semantics for ne.
        pytest.param('emails.value eq "ada@work.EXAMPLE"', True, False, id="mv-eq"),
        pytest.param('emails eq "ada@home.example"', True, False, id="mv-default-value"),
        pytest.param('emails.type ne "work"', True, True, id="mv-ne-any-or-none"),
        pytest.param("emails.primary eq true", True, False, id="mv-boolean"),
        pytest.param("emails.primary eq false", False, False, id="mv-primary-false-only-if-said"),
        pytest.param("emails.display eq null", True, True, id="mv-eq-null-or-no-elements"),
        # Value filters: one element must satisfy the whole bracket.
        pytest.param('emails[type eq "work" and value co "work"]', True, False, id="vp"),
        pytest.param(
            'emails[type eq "home" and primary eq true]', False, False, id="vp-one-element"
        ),
        pytest.param('emails[type eq "home"].value co "home"', True, False, id="entra-form"),
        pytest.param('emails[type eq "work"].value ne "x"', True, False, id="entra-ne"),
        pytest.param('emails[not (type eq "work")]', True, False, id="vp-not"),
        # Binary is compared as written.
        pytest.param('x509Certificates.value eq "TUlJQ0FkYQ=="', True, False, id="binary"),
        pytest.param('x509Certificates.value eq "tuljq0zkyq=="', False, False, id="binary-case"),
        # Extensions, with or without their URN; schemas as serialize lists them.
        pytest.param(f'{ENTERPRISE}:department eq "engineering"', True, False, id="urn"),
        pytest.param('department sw "ENG"', True, False, id="without-urn"),
        pytest.param('manager.value eq "M1"', True, False, id="extension-complex"),
        pytest.param("manager pr", True, False, id="extension-complex-pr"),
        pytest.param(f'schemas eq "{ENTERPRISE.upper()}"', True, False, id="schemas-extension"),
        pytest.param(f'schemas eq "{USER_URN}"', True, True, id="schemas-core"),
        pytest.param('meta.resourceType eq "User"', True, True, id="resource-type"),
        pytest.param('meta.version eq "W/\\"3\\""', True, False, id="version"),
        # Logic
        pytest.param('not (userName eq "bare")', True, False, id="not"),
        pytest.param('userName eq "bare" or name pr and active eq true', True, True, id="or-and"),
        pytest.param(
            '(userName eq "bare" or name pr) and active eq true', True, False, id="parens"
        ),
    ],
)
def test_operators_and_types(filter_text, ada, bare):
    assert (holds(filter_text, ADA), holds(filter_text, BARE)) == (ada, bare)


def test_schemas_follows_the_data_not_the_listed_schemas():
    # As the SQL backend: an extension counts when the resource has data for it.
    listed_only = {**BARE, "schemas": [USER_URN, ENTERPRISE]}
    assert not holds(f'schemas eq "{ENTERPRISE}"', listed_only)


def test_a_predicate_is_reusable():
    test = match.predicate(USER_RESOURCE, parse("emails pr"))
    assert [test(d) for d in (ADA, BARE, ADA)] == [True, False, True]


def test_unknown_attributes_are_missing_across_resource_types():
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops"}
    tree = parse('userName eq "x" or displayName eq "ops" and not (emails[type pr])')
    assert match.matches(GROUP_RESOURCE, tree, group, unknown_is_missing=True)
    assert match.matches(GROUP_RESOURCE, parse('userName ne "x"'), group, unknown_is_missing=True)
    with pytest.raises(InvalidFilter):
        match.matches(GROUP_RESOURCE, parse('userName eq "x"'), group)


@pytest.mark.parametrize(
    ("filter_text", "detail"),
    [
        pytest.param("active gt true", "active is a boolean; only eq and ne apply", id="boolean"),
        pytest.param("userName eq 1", "userName is a string; quote the value", id="string"),
        pytest.param('meta.created co "x"', "'x' is not an RFC 3339 date-time", id="date-time"),
        pytest.param('shoe eq "x"', "unknown attribute 'shoe'", id="unknown"),
        pytest.param('emails[shoe eq "x"]', "unknown attribute emails.shoe", id="unknown-sub"),
        pytest.param('name[givenName eq "x"]', "name is not multi-valued", id="singular"),
        pytest.param(
            'meta.location eq "x"', "meta.location cannot be filtered or sorted on", id="loc"
        ),
    ],
)
def test_the_same_errors_as_sql(filter_text, detail):
    with pytest.raises(InvalidFilter) as caught:
        holds(filter_text, ADA)
    assert caught.value.detail == f"Invalid filter: {detail}"


# --- PATCH: one element at a time ------------------------------------------------------------

SKILLS = Schema(
    "urn:example:skills:1.0:User",
    "Skills",
    "",
    (Attribute("skills", multi_valued=True), complex_("pets", Attribute("kind"))),
)
WITH_SKILLS = build_registry((SKILLS,)).user


def emails() -> Resolved:
    return Resolved(USER_RESOURCE.schema, USER_RESOURCE.schema.attribute("emails"))


def test_element_matcher_tests_one_element():
    selects = match.element_matcher(USER_RESOURCE, emails(), parse('type eq "WORK"'))
    assert [selects(e) for e in ADA["emails"]] == [True, False]
    assert not selects("not an object")


def test_element_matcher_ignores_the_sub_attribute_of_the_path():
    # emails[type eq "work"].value: the filter is about the element, whatever is replaced.
    resolved = Resolved(emails().schema, emails().attribute, emails().attribute.sub("value"))
    selects = match.element_matcher(USER_RESOURCE, resolved, parse("primary eq true"))
    assert [selects(e) for e in ADA["emails"]] == [True, False]


def test_element_matcher_on_a_simple_multi_valued_attribute():
    skills = Resolved(SKILLS, SKILLS.attribute("skills"))
    selects = match.element_matcher(WITH_SKILLS, skills, parse('value sw "GO"'))
    assert [selects(s) for s in ("go", "golang", "rust")] == [True, True, False]


@pytest.mark.parametrize(
    ("filter_text", "detail"),
    [
        pytest.param('shoe eq "x"', "unknown attribute emails.shoe", id="unknown-sub"),
        pytest.param(
            "primary eq 1", "emails.primary is a boolean; compare it with true/false", id="type"
        ),
        pytest.param('name.x eq "y"', "inside emails[...] name a sub-attribute", id="dotted"),
    ],
)
def test_element_matcher_refuses_at_once_as_invalid_path(filter_text, detail):
    with pytest.raises(InvalidPath) as caught:
        match.element_matcher(USER_RESOURCE, emails(), parse(filter_text))
    assert caught.value.detail == f"Invalid path: {detail}"


# --- The same answers as SQL, on both databases ----------------------------------------------

AGREEMENT_FILTERS = [
    'userName eq "ADA"',
    'userName gt "b"',
    'userName le "bob"',
    'displayName co "LOVE"',
    "displayName pr",
    "displayName eq null",
    'nickName ne "x"',
    "nickName pr",
    "active eq true",
    "active ne true",
    "name pr",
    'name.givenName sw "a"',
    "name.formatted pr",
    "emails pr",
    'emails.value ew "@contoso.com"',
    'emails.type ne "work"',
    "emails.primary eq false",
    "emails.display eq null",
    'emails[type eq "work" and value pr]',
    'emails[type eq "work"].value ne "cy@contoso.com"',
    'emails[type eq "home" or primary eq true].value co "ada"',
    'not (emails[type eq "work"])',
    'addresses[type eq "work"].locality eq "REDMOND"',
    'phoneNumbers.value eq "+1 425 555 0100"',
    'x509Certificates.value eq "TUlJQ0FkYQ=="',
    'x509Certificates.value eq "tuljq0fkyq=="',
    "roles[primary eq true]",
    'department eq "engineering"',
    f"{ENTERPRISE}:manager.value pr",
    f'schemas eq "{ENTERPRISE}"',
    'meta.resourceType eq "User"',
    'meta.created gt "2000-01-01T00:00:00Z"',
    'meta.lastModified lt "2000-01-01T00:00:00Z"',
    'userName eq "bob" or emails pr and not (active eq true)',
]


@pytest.fixture
def people(create_user):
    create_user(
        userName="ada",
        displayName="Ada Lovelace",
        nickName="",
        emails=[
            {"value": "Ada@Contoso.com", "type": "work", "primary": True},
            {"value": "ada@home.example", "type": "home", "display": "Home"},
        ],
        addresses=[{"type": "work", "locality": "Redmond"}],
        phoneNumbers=[{"value": "+1 425 555 0100", "type": "work"}],
        x509Certificates=[{"value": "TUlJQ0FkYQ=="}],
        roles=[{"value": "Owner", "primary": True}],
        schemas=[USER_URN, ENTERPRISE],
        **{ENTERPRISE: {"department": "Engineering", "manager": {"value": "m1"}}},
    )
    create_user(
        userName="bob",
        displayName=None,
        name={"formatted": ""},
        active=False,
        emails=[{"value": "bob@contoso.com", "type": "home", "primary": False}],
        roles=[{"value": "Owner", "primary": False}],
    )
    create_user(userName="cy", nickName="Cy", emails=[{"value": "cy@contoso.com", "type": "work"}])
    create_user(userName="dee", name=None, emails=[{"type": "work", "display": "soon"}])
    create_user(userName="eve", name=None, emails=None, active=None)


def test_in_memory_and_sql_select_the_same_users(client, people):
    rt = client.application.extensions["scim_registry"].user
    documents = client.get(f"{BASE}/Users", query_string={"count": 100}).json["Resources"]
    for filter_text in AGREEMENT_FILTERS:
        tree = parse(filter_text)
        in_memory = {d["userName"] for d in documents if match.matches(rt, tree, d)}
        assert in_memory == found(client, filter_text), filter_text
