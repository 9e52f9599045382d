"""The filter grammar alone (app.filters.grammar): text -> typed tree, precedence, Entra's form,
errors with positions, limits. No database, no app: HTTP behaviour is in test_filters.py."""

from __future__ import annotations

import dataclasses

import pytest

from app.errors import InvalidFilter, InvalidPath
from app.filters.grammar import (
    And,
    AttrPath,
    Compare,
    Not,
    Or,
    PatchPath,
    ValuePath,
    parse,
    parse_path,
)
from app.limits import Limits

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def term(name: str, op: str = "pr", value: object = None, sub: str | None = None) -> Compare:
    return Compare(AttrPath(name, sub), op, value)


A, B, C, D = (term(n) for n in "abcd")


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        pytest.param('userName eq "x"', term("userName", "eq", "x"), id="string"),
        pytest.param("userName Eq 42", term("userName", "eq", 42), id="operator-any-case"),
        pytest.param("x gt -1.5e3", term("x", "gt", -1500.0), id="json-number"),
        pytest.param("x eq 10", term("x", "eq", 10), id="many-digits"),
        pytest.param("active eq True", term("active", "eq", True), id="true-any-case"),
        pytest.param("active eq FALSE", term("active", "eq", False), id="false-any-case"),
        pytest.param("title eq NULL", term("title", "eq", None), id="null-any-case"),
        pytest.param('x eq "true"', term("x", "eq", "true"), id="string-true-stays-a-string"),
        pytest.param("nullable pr", term("nullable"), id="attribute-named-like-a-literal"),
        pytest.param('x eq "a\\"b\\u00e9"', term("x", "eq", 'a"bé'), id="json-escapes"),
        pytest.param("name.givenName pr", term("name", sub="givenName"), id="sub-attribute"),
        pytest.param(
            f'{ENTERPRISE}:manager.value eq "m"',
            Compare(AttrPath("manager", "value", ENTERPRISE), "eq", "m"),
            id="urn",
        ),
        pytest.param("not (a pr)", Not(A), id="not"),
        pytest.param("(a pr)", A, id="parentheses-leave-no-node"),
    ],
)
def test_terms(text, tree):
    assert parse(text) == tree


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        pytest.param("a pr or b pr and c pr", Or(A, And(B, C)), id="and-binds-tighter"),
        pytest.param("a pr and b pr or c pr", Or(And(A, B), C), id="and-first"),
        pytest.param(
            "a pr and b pr or c pr and d pr", Or(And(A, B), And(C, D)), id="two-conjunctions"
        ),
        pytest.param("a pr or b pr or c pr", Or(Or(A, B), C), id="left-to-right"),
        pytest.param("(a pr or b pr) and c pr", And(Or(A, B), C), id="parentheses-win"),
        pytest.param("a pr and (b pr or c pr)", And(A, Or(B, C)), id="parentheses-right"),
        pytest.param("not (a pr or b pr) and c pr", And(Not(Or(A, B)), C), id="not-is-a-group"),
        pytest.param(
            "a pr or not (b pr and c pr or d pr)", Or(A, Not(Or(And(B, C), D))), id="in-not"
        ),
    ],
)
def test_precedence(text, tree):
    assert parse(text) == tree


def test_value_path():
    assert parse('emails[type eq "work" and value co "@x" or primary eq true]') == ValuePath(
        AttrPath("emails"),
        Or(And(term("type", "eq", "work"), term("value", "co", "@x")), term("primary", "eq", True)),
    )


def test_value_path_with_urn_and_logic_around_it():
    assert parse(f"a pr or not ({ENTERPRISE}:x[y pr]) and b pr") == Or(
        A, And(Not(ValuePath(AttrPath("x", None, ENTERPRISE), term("y"))), B)
    )


def test_entra_sub_attribute_after_value_path_is_one_value_filter():
    assert parse('emails[type eq "work"].value eq "x"') == ValuePath(
        AttrPath("emails"), And(term("type", "eq", "work"), term("value", "eq", "x"))
    )


def test_entra_form_keeps_or_inside_the_bracket():
    # `and` binds tighter, but the bracket is a group of its own: (a or b) and value ...
    assert parse('emails[type eq "a" or type eq "b"].value pr') == ValuePath(
        AttrPath("emails"),
        And(Or(term("type", "eq", "a"), term("type", "eq", "b")), term("value")),
    )


def test_entra_form_inside_a_chain():
    work = ValuePath(AttrPath("emails"), And(term("type", "eq", "w"), term("value", "ne", "x")))
    assert parse('a pr or emails[type eq "w"].value ne "x" and b pr') == Or(A, And(work, B))


def test_tree_holds_only_our_types():
    tree = parse('not (emails[type eq "w"].value eq "x") or (a gt 1 and b.c eq null)')
    ours = {Compare, And, Or, Not, ValuePath, AttrPath}
    pending = [tree]
    while pending:
        node = pending.pop()
        assert type(node) in ours
        for field in dataclasses.fields(node):
            child = getattr(node, field.name)
            if dataclasses.is_dataclass(child):
                pending.append(child)
            else:
                assert child is None or isinstance(child, str | int | float | bool)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param('a eq "x', "Unterminated string starting at position 6", id="unterminated"),
        pytest.param("a eq 'x'", 'Unexpected character "\'" at position 6', id="quote"),
        pytest.param(
            'a regex "x"',
            "unknown operator 'regex' at position 3; use eq, ne, co, sw, ew, gt, ge, lt, le or pr",
            id="unknown-operator",
        ),
        pytest.param('a eq "x" b eq "y"', "unexpected 'b' at position 10", id="no-logic"),
        pytest.param("a eq", "the filter ended unexpectedly", id="incomplete"),
        pytest.param('a eq "\\u0000"', "NUL character (\\u0000) in string at position 6", id="nul"),
        pytest.param('a eq "\\ud800"', "Lone UTF-16 surrogate in string at position 6", id="lone"),
        pytest.param('a eq "\\q"', 'Invalid escape in string "\\q"', id="escape"),
        pytest.param(
            "emails[a pr and emails[b pr]]", "value filters cannot be nested", id="nested"
        ),
        pytest.param(
            "emails[x[a pr].b pr]", "value filters cannot be nested", id="nested-entra-form"
        ),
        pytest.param(
            'emails[type eq "w"] eq "x"', "a value path cannot be compared directly", id="direct"
        ),
    ],
)
def test_errors_say_what_and_where(text, detail):
    with pytest.raises(InvalidFilter) as caught:
        parse(text)
    assert caught.value.detail == f"Invalid filter: {detail}"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param(
            "a pr or " * 3 + "a pr",
            "it has 4 comparisons; at most 3 are accepted (SCIM_MAX_FILTER_TERMS)",
            id="terms",
        ),
        pytest.param(
            "((a pr))",
            "it nests 2 levels of ( ) and [ ] deep; at most 1 are accepted (SCIM_MAX_FILTER_DEPTH)",
            id="depth",
        ),
        pytest.param(
            "a" * 41 + " pr",
            "it is 44 characters long; at most 40 are accepted (SCIM_MAX_FILTER_CHARS)",
            id="length",
        ),
    ],
)
def test_limits(text, detail):
    with pytest.raises(InvalidFilter) as caught:
        parse(text, Limits(filter_chars=40, filter_depth=1, filter_terms=3))
    assert caught.value.detail == f"Invalid filter: {detail}"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        pytest.param("userName", PatchPath(AttrPath("userName")), id="attribute"),
        pytest.param("name.givenName", PatchPath(AttrPath("name", "givenName")), id="sub"),
        pytest.param(
            f"{ENTERPRISE}:manager.value",
            PatchPath(AttrPath("manager", "value", ENTERPRISE)),
            id="urn",
        ),
        pytest.param(
            'emails[type eq "work"]',
            PatchPath(AttrPath("emails"), term("type", "eq", "work")),
            id="value-filter",
        ),
        pytest.param(
            'emails[type eq "work" or primary eq true and value pr].value',
            PatchPath(
                AttrPath("emails", "value"),
                Or(term("type", "eq", "work"), And(term("primary", "eq", True), term("value"))),
            ),
            id="value-filter-then-sub-attribute",
        ),
    ],
)
def test_patch_paths(text, path):
    assert parse_path(text) == path


def test_patch_path_prints_as_the_attribute_it_touches():
    assert str(parse_path('emails[type eq "work"].value').path) == "emails.value"
    assert str(parse_path(f"{ENTERPRISE}:manager.value").path) == f"{ENTERPRISE}:manager.value"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param("emails[type eq", "Invalid path 'emails[type eq'", id="unparsable"),
        pytest.param('userName eq "x"', "Invalid path 'userName eq \"x\"'", id="a-filter"),
        pytest.param("", "Invalid path ''", id="empty"),
        pytest.param(
            "emails[a pr and emails[b pr]]",
            "Invalid path: value filters cannot be nested",
            id="nested",
        ),
        pytest.param("x" * 50, "Invalid path '" + "x" * 50 + "'", id="too-long"),
        pytest.param(
            "e[((((a pr))))]",
            "Invalid path: it nests 5 levels of ( ) and [ ] deep; at most 4 are accepted "
            "(SCIM_MAX_FILTER_DEPTH)",
            id="too-deep",
        ),
    ],
)
def test_patch_path_errors_are_invalid_path(text, detail):
    with pytest.raises(InvalidPath) as caught:
        parse_path(text, Limits(filter_chars=40, filter_depth=4))
    assert caught.value.detail == detail
