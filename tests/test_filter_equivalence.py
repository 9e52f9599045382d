"""The two filter backends agree: for random users and random filters, the SQL backend (what
GET /Users?filter= answers) selects exactly the users the in-memory backend (app.filters.match,
which PATCH value filters use) selects from the same users as GET returns them, on SQLite and
PostgreSQL. Where one refuses a filter, the other refuses it with the same detail.

Values and operands are drawn from the same words, respelled in other cases and spellings (ß as
SS, final sigma, the Kelvin sign...), with LIKE's own characters (%, _, /) among them: so the one
fold (app.fold) and the pattern escaping are what is compared, not only the plumbing. (Checked:
with folded_copy switched to lower(), this test fails within a few examples.)
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.errors import InvalidFilter
from app.filters import match
from app.filters.grammar import parse
from tests.conftest import BASE, empty_tables

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

# Deterministic (the same examples every run) and bounded: an example is a dozen requests.
AGREEMENT = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# ß/ss/ẞ, Σ/σ/ς, the Kelvin sign (folds to k), İ (folds to two code points), Ü/ü, and LIKE's
# wildcards and this service's escape character.
LETTERS = "sSßẞσΣςk\u212aİiüÜ_%/"
RANDOM_TEXT = st.text(alphabet=LETTERS, max_size=2)

# What a letter may be written as in an operand and still fold to the same thing.
SPELLINGS = {
    "s": ["s", "S"],
    "ß": ["ß", "ẞ", "ss", "SS", "sS"],
    "σ": ["σ", "Σ", "ς"],
    "k": ["k", "K", "\u212a"],
    "ü": ["ü", "Ü"],
    "i": ["i", "I"],
}
SAME = {spelling: letter for letter, spellings in SPELLINGS.items() for spelling in spellings}


@st.composite
def respelled(draw: st.DrawFn, value: str) -> str:
    """`value`, or a piece of it (for co, sw, ew), with its letters in other cases or spellings."""
    start = draw(st.integers(0, len(value)))
    end = draw(st.integers(start, len(value)))
    piece = draw(st.sampled_from([value, value[start:end]]))
    letters = (SAME.get(c, SAME.get(c.casefold(), c)) for c in piece)
    return "".join(draw(st.sampled_from(SPELLINGS.get(c, [c]))) for c in letters)


# Values and operands are drawn from the same words, each respelled: so that they often meet.
WORDS = ["ß", "ss", "Straße", "STRASSE", "ΟΔΟΣ", "οδος", "kelvin", "MÜLLER", "İi", "a_b", "a%", "/"]
TEXT = RANDOM_TEXT | st.sampled_from(WORDS).flatmap(respelled)
MAYBE_TEXT = st.integers(0, 3).flatmap(lambda n: st.none() if n == 0 else TEXT)


# Attributes a filter may name, by how they are stored: the indexed *_key columns, the JSON
# document, the enterprise extension, per-element rows; caseExact ones; booleans.
STRINGS = [
    "userName",
    "displayName",
    "nickName",
    "title",
    "name.givenName",
    "name.formatted",
    "emails.value",
    "emails.type",
    "emails.display",
    "addresses.locality",
    "department",
    f"{ENTERPRISE}:manager.displayName",
    "externalId",
]
BOOLEANS = ["active", "emails.primary"]
STRING_OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]
ELEMENT_STRINGS = {"emails": ["value", "type", "display"], "addresses": ["locality", "type"]}


def without_none(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if v is not None and v != {}}


@st.composite
def users(draw: st.DrawFn, index: int) -> dict[str, Any]:
    emails = [
        without_none(
            {
                "value": draw(MAYBE_TEXT),
                "type": draw(MAYBE_TEXT),
                "display": draw(MAYBE_TEXT),
                "primary": draw(st.none() | st.booleans()) if n == 0 else None,
            }
        )
        for n in range(draw(st.integers(0, 2)))
    ]
    addresses = [
        without_none({"locality": draw(MAYBE_TEXT), "type": draw(MAYBE_TEXT)})
        for _ in range(draw(st.integers(0, 1)))
    ]
    enterprise = without_none(
        {
            "department": draw(MAYBE_TEXT),
            "manager": without_none({"value": "m1", "displayName": draw(MAYBE_TEXT)}),
        }
    )
    return without_none(
        {
            "schemas": [USER_URN, ENTERPRISE] if enterprise else [USER_URN],
            # userName is unique among users, case-insensitively: the index keeps them apart.
            "userName": f"u{index}{draw(TEXT)}",
            "externalId": draw(MAYBE_TEXT),
            "displayName": draw(MAYBE_TEXT),
            "nickName": draw(MAYBE_TEXT),
            "title": draw(MAYBE_TEXT),
            "name": without_none({"givenName": draw(MAYBE_TEXT), "formatted": draw(MAYBE_TEXT)}),
            "active": draw(st.none() | st.booleans()),
            "emails": [e for e in emails if e] or None,
            "addresses": [a for a in addresses if a] or None,
            ENTERPRISE: enterprise or None,
        }
    )


@st.composite
def populations(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [draw(users(n)) for n in range(draw(st.integers(1, 5)))]


def literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def comparison(attribute: str, op: str, value: Any) -> str:
    return f"{attribute} pr" if op == "pr" else f"{attribute} {op} {literal(value)}"


def filters() -> st.SearchStrategy[str]:
    # `eq null` and `ne null` are valid; `co null` and the like are refused: now and then only.
    operand = st.integers(0, 9).flatmap(lambda n: st.none() if n == 0 else TEXT)
    string_terms = st.builds(
        comparison,
        st.sampled_from(STRINGS),
        st.sampled_from([*STRING_OPERATORS, "pr"]),
        operand,
    )
    boolean_terms = st.builds(
        comparison,
        st.sampled_from(BOOLEANS),
        st.sampled_from(["eq", "ne", "pr", "gt"]),  # gt: refused on a boolean, by both
        st.integers(0, 9).flatmap(lambda n: st.none() if n == 0 else st.booleans()),
    )
    terms = string_terms | boolean_terms | element_terms()
    # Mostly one comparison, whose answer depends most directly on the fold; some combined.
    return (
        string_terms
        | terms
        | st.recursive(
            terms,
            lambda inner: (
                st.builds(lambda a, b: f"({a}) and ({b})", inner, inner)
                | st.builds(lambda a, b: f"{a} or {b}", inner, inner)
                | st.builds(lambda a: f"not ({a})", inner)
            ),
            max_leaves=3,
        )
    )


@st.composite
def element_terms(draw: st.DrawFn) -> str:
    parent = draw(st.sampled_from(sorted(ELEMENT_STRINGS)))
    subs = ELEMENT_STRINGS[parent]
    inner = draw(
        st.lists(
            st.builds(
                comparison,
                st.sampled_from(subs),
                st.sampled_from([*STRING_OPERATORS, "pr"]),
                TEXT,
            ),
            min_size=1,
            max_size=2,
        )
    )
    joined = f" {draw(st.sampled_from(['and', 'or']))} ".join(inner)
    path = f"{parent}[{joined}]"
    if draw(st.booleans()):  # Entra's form: emails[type eq "work"].value eq "..."
        sub = draw(st.sampled_from(subs))
        op = draw(st.sampled_from(STRING_OPERATORS))
        return f"{path}.{sub} {op} {literal(draw(TEXT))}"
    return path


def sql_selects(client: Any, filter_text: str) -> set[str] | str:
    """The userNames the service's SQL selects, or the detail of its 400."""
    response = client.post(
        f"{BASE}/Users/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": filter_text,
            "count": 100,
        },
    )
    if response.status_code == 400:
        assert response.json["scimType"] == "invalidFilter", response.json
        return response.json["detail"]
    assert response.status_code == 200, (filter_text, response.json)
    return {resource["userName"] for resource in response.json["Resources"]}


def memory_selects(rt: Any, filter_text: str, documents: list[dict[str, Any]]) -> set[str] | str:
    """The userNames app.filters.match selects from the documents, or its refusal's detail."""
    try:
        tree = parse(filter_text)
        return {d["userName"] for d in documents if match.matches(rt, tree, d)}
    except InvalidFilter as e:
        return e.detail


def test_sql_and_in_memory_backends_select_the_same_users(client):
    rt = client.application.extensions["scim_registry"].user

    @AGREEMENT
    @given(people=populations(), filter_texts=st.lists(filters(), min_size=4, max_size=10))
    def run(people: list[dict[str, Any]], filter_texts: list[str]) -> None:
        empty_tables()
        for person in people:
            created = client.post(f"{BASE}/Users", json=person)
            assert created.status_code == 201, (person, created.json)
        documents = client.get(f"{BASE}/Users", query_string={"count": 100}).json["Resources"]
        for filter_text in filter_texts:
            assert sql_selects(client, filter_text) == memory_selects(rt, filter_text, documents), (
                filter_text,
                documents,
            )

    run()
