"""Random users and random filter trees: what SQL returns equals a small Python evaluator.

The evaluator below is RFC 7644 §3.4.2.2 in a few lines of Python: caseExact false compares
with str.casefold() (the service folds with app.fold); `pr` is false for null, "" and
[]; a comparison on a multi-valued attribute holds if any element matches, a value filter
holds for one element, and a missing attribute is `ne` anything; not() is two-valued. Each
example runs on SQLite and on PostgreSQL, so the two databases must agree with it and so
with each other. The file closes with simpler properties on userName alone: each operator,
and/or precedence and sortBy against Python's own str methods and operators.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import BASE, empty_tables
from tests.payloads import found, user_payload

PROPERTIES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# userName and emails.value are stored case-folded (app.fold): any printable Unicode.
# No control characters (Cc: a filter string cannot hold them raw) and no surrogates (Cs).
# Cased letters first, those whose folding is special included (ß, İ, final sigma, ǅ, ﬁ).
ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from('aAbBzZßẞİıΣσςǅǆﬁÅå "\\%_'),
        st.characters(blacklist_categories=("Cc", "Cs")),
    ),
    max_size=6,
)
# The other strings are folded by the database's lower() at query time, which is not
# casefold() for "ß", "İ" or a final sigma (see the report on issue 5): letters whose lower()
# and casefold() agree, plus everything SQL or the filter grammar treats specially.
PLAIN_LETTERS = 'aAbBzZéÉüÜжЖλΛ中😀0 "\\%_/-.@()[]'
PLAIN_TEXT = st.text(alphabet=PLAIN_LETTERS, max_size=6)
TYPES = ("work", "Work", "home", "")


def without_none(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


@st.composite
def emails(draw: st.DrawFn) -> list[dict[str, Any]]:
    elements = draw(
        st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "value": ANY_TEXT,
                    "type": st.sampled_from(TYPES),
                    "primary": st.booleans(),
                },
            ),
            max_size=3,
        )
    )
    seen_primary = False
    for element in elements:  # RFC 7643 §2.4: at most one primary
        if element.get("primary"):
            element["primary"] = not seen_primary
            seen_primary = True
    return elements


@st.composite
def people(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(ANY_TEXT.filter(bool), min_size=1, max_size=5, unique_by=str.casefold))
    optional = st.one_of(st.none(), PLAIN_TEXT)
    return [
        without_none(
            {
                "userName": name,
                "displayName": draw(optional),
                "title": draw(optional),
                "active": draw(st.one_of(st.none(), st.booleans())),
                "name": without_none({"givenName": draw(optional), "familyName": draw(optional)})
                or None,
                "emails": draw(emails()) or None,
            }
        )
        for name in names
    ]


# ---------------------------------------------------------------------------------------------
# Filter trees


@dataclass(frozen=True)
class Compare:
    path: str  # as written in the filter: `userName`, `name.givenName`, `emails.value`...
    op: str
    value: Any = None  # a Python value, rendered as JSON; absent for pr

    def text(self) -> str:
        if self.op == "pr":
            return f"{self.path} pr"
        return f"{self.path} {self.op} {json.dumps(self.value, ensure_ascii=False)}"


@dataclass(frozen=True)
class Logic:
    op: str  # and, or
    left: Any
    right: Any
    parenthesised: bool = False

    def text(self) -> str:
        def side(node: Any) -> str:
            # Only an `or` under an `and` needs parentheses: and binds tighter (RFC 7644).
            needs = self.op == "and" and isinstance(node, Logic) and node.op == "or"
            return f"({node.text()})" if needs else node.text()

        text = f"{side(self.left)} {self.op} {side(self.right)}"
        return f"({text})" if self.parenthesised else text


@dataclass(frozen=True)
class Not:
    inner: Any

    def text(self) -> str:
        return f"not ({self.inner.text()})"


@dataclass(frozen=True)
class ValuePath:
    inner: Any  # a tree over the element's sub-attributes

    def text(self) -> str:
        return f"emails[{self.inner.text()}]"


STRING_OPS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr")


def string_values(data: list[dict[str, Any]], *, plain: bool) -> st.SearchStrategy[str]:
    """Values that hit: every string in the data set, in three cases, and its pieces.

    `plain` keeps to PLAIN_TEXT's letters, for attributes the database folds with lower().
    """
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.update({value, value.upper(), value.lower(), value[1:], value[:-1]})
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    random = PLAIN_TEXT if plain else ANY_TEXT
    if plain:
        found = {v for v in found if set(v) <= set(PLAIN_LETTERS)}
    if not found:
        return random
    hits = st.sampled_from(sorted(found))
    return st.one_of(hits, hits, hits, random)


def comparisons(paths: tuple[str, ...], values: st.SearchStrategy[str]) -> st.SearchStrategy:
    strings = st.builds(Compare, st.sampled_from(paths), st.sampled_from(STRING_OPS), values)
    nulls = st.builds(Compare, st.sampled_from(paths), st.sampled_from(("eq", "ne")), st.none())
    return st.one_of(strings, strings, strings, nulls)


def booleans(path: str) -> st.SearchStrategy:
    return st.one_of(
        st.builds(Compare, st.just(path), st.sampled_from(("eq", "ne")), st.booleans()),
        st.just(Compare(path, "pr")),
    )


def trees(leaves: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(Logic, st.sampled_from(("and", "or")), children, children, st.booleans()),
            st.builds(Not, children),
        ),
        max_leaves=5,
    )


def filters(data: list[dict[str, Any]]) -> st.SearchStrategy:
    folded = string_values(data, plain=False)  # userName, emails.value: stored casefolded
    plain = string_values(data, plain=True)
    element_leaves = st.one_of(
        comparisons(("value",), folded),
        comparisons(("type",), plain),
        booleans("primary"),
    )
    leaves = st.one_of(
        comparisons(("userName", "emails.value", "emails", "EMAILS.VALUE"), folded),
        comparisons(("displayName", "title", "name.givenName", "name.familyName"), plain),
        comparisons(("emails.type",), plain),
        booleans("active"),
        booleans("emails.primary"),
        st.sampled_from([Compare("name", "pr"), Compare("emails", "pr")]),
        st.builds(ValuePath, trees(element_leaves)),
    )
    return trees(leaves)


# ---------------------------------------------------------------------------------------------
# The reference evaluator


def holds(op: str, actual: Any, expected: Any) -> bool:
    """One operator on one (singular) value; `actual` None when the attribute is missing."""
    if op == "pr":
        return actual is not None and actual != ""
    if expected is None:  # eq null / ne null
        return (actual is None) == (op == "eq")
    if actual is None:
        return op == "ne"
    if isinstance(expected, bool):
        return (actual == expected) == (op == "eq")
    a, e = actual.casefold(), expected.casefold()  # every string here is caseExact false
    return {
        "eq": a == e,
        "ne": a != e,
        "co": e in a,
        "sw": a.startswith(e),
        "ew": a.endswith(e),
        "gt": a > e,
        "ge": a >= e,
        "lt": a < e,
        "le": a <= e,
    }[op]


def singular(user: dict[str, Any], path: str) -> Any:
    head, _, sub = path.partition(".")
    value = user.get(head)
    return value.get(sub) if sub and isinstance(value, dict) else value


def element_matches(element: dict[str, Any], node: Any) -> bool:
    if isinstance(node, Logic):
        left, right = element_matches(element, node.left), element_matches(element, node.right)
        return (left and right) if node.op == "and" else (left or right)
    if isinstance(node, Not):
        return not element_matches(element, node.inner)
    return holds(node.op, element.get(node.path), node.value)


def matches(user: dict[str, Any], node: Any) -> bool:
    if isinstance(node, Logic):
        left, right = matches(user, node.left), matches(user, node.right)
        return (left and right) if node.op == "and" else (left or right)
    if isinstance(node, Not):
        return not matches(user, node.inner)
    elements = user.get("emails", [])
    if isinstance(node, ValuePath):
        return any(element_matches(e, node.inner) for e in elements)
    path = node.path.lower()
    if path == "name" and node.op == "pr":  # RFC 7644: a complex attribute with a value in it
        return any(holds("pr", v, None) for v in user.get("name", {}).values())
    if path == "emails" and node.op == "pr":
        return any(holds("pr", v, None) for e in elements for v in e.values())
    if path.startswith("emails"):
        sub = path.partition(".")[2] or "value"  # `emails` compares its value (RFC 7644)
        if not elements:  # no element: as a missing singular attribute
            return holds(node.op, None, node.value)
        return any(holds(node.op, e.get(sub), node.value) for e in elements)
    return holds(node.op, singular(user, node.path), node.value)


# ---------------------------------------------------------------------------------------------
# Running them


def reset(client, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Empty the tables and POST every user; returns the users as the service stored them."""
    empty_tables()
    created = []
    for person in data:
        unset = {"name": None, "emails": None, "displayName": None, "externalId": None}
        body = user_payload(**{**unset, **person})
        response = client.post(f"{BASE}/Users", json=body)
        assert response.status_code == 201, (person, response.json)
        created.append(response.json)
    return created


@PROPERTIES
@given(data=people(), draw=st.data())
def test_random_filters_match_the_reference_evaluator(client, data, draw):
    users = reset(client, data)
    for tree in draw.draw(st.lists(filters(data), min_size=3, max_size=3)):
        text = tree.text()
        expected = {u["id"] for u in users if matches(u, tree)}
        assert found(client, text, by="id") == expected, text
        assert found(client, f"not ({text})", by="id") == {
            u["id"] for u in users if u["id"] not in expected
        }, text


@PROPERTIES
@given(data=people(), draw=st.data())
def test_sort_matches_the_reference_order(client, data, draw):
    """RFC 7644 §3.4.2.3: case-insensitive where caseExact is false; a multi-valued attribute
    by its primary value, else its first; missing values last ascending, first descending; then
    creation order."""
    users = reset(client, data)
    path = draw.draw(
        st.sampled_from(["userName", "displayName", "title", "name.familyName", "emails.value"])
        | st.sampled_from(["emails", "emails.type"])
    )
    descending = draw.draw(st.booleans())

    def key(user: dict[str, Any]) -> str | None:
        if path.startswith("emails"):
            elements = user.get("emails", [])
            chosen = next((e for e in elements if e.get("primary")), None)
            chosen = chosen or (elements[0] if elements else {})
            value = chosen.get(path.partition(".")[2] or "value")
        else:
            value = singular(user, path)
        return None if value is None else value.casefold()

    present = [u for u in users if key(u) is not None]
    present.sort(key=key, reverse=descending)  # stable: ties stay in creation order
    missing = [u["id"] for u in users if key(u) is None]
    ordered = [u["id"] for u in present]
    expected = missing + ordered if descending else ordered + missing
    response = client.get(
        f"{BASE}/Users",
        query_string={"sortBy": path, "sortOrder": "descending" if descending else "ascending"},
    )
    assert response.status_code == 200, response.json
    assert [r["id"] for r in response.json["Resources"]] == expected, path


# ---------------------------------------------------------------------------------------------
# One attribute: userName's operators, their precedence and sortBy against Python's str


# Printable text, non-ASCII included: no control characters (a userName is printable) and no
# surrogates (not encodable).
names_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12
)


user_names = st.lists(names_text, min_size=1, max_size=5, unique_by=str.casefold)


def quoted(value: str, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


@settings(PROPERTIES, max_examples=50)
@given(names=user_names, data=st.data())
def test_eq_finds_exactly_the_user_with_that_name(client, names, data):
    reset(client, [{"userName": name} for name in names])
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


@settings(PROPERTIES, max_examples=50)
@given(names=user_names, data=st.data())
def test_substring_operators_match_the_python_model(client, names, data):
    reset(client, [{"userName": name} for name in names])
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


@settings(PROPERTIES, max_examples=50)
@given(names=user_names, data=st.data())
def test_ordering_operators_and_sort_match_the_python_model(client, names, data):
    reset(client, [{"userName": name} for name in names])
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


@settings(PROPERTIES, max_examples=50)
@given(
    names=st.lists(
        st.text(alphabet="ab", min_size=1, max_size=2), min_size=1, max_size=6, unique=True
    ),
    data=st.data(),
)
def test_and_binds_tighter_than_or(client, names, data):
    """Random chains of `and`/`or` against Python's own precedence, which is RFC 7644's."""
    reset(client, [{"userName": name} for name in names])
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
