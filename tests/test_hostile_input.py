"""Hostile input through the API (issue 12): never a 5xx, every refusal a SCIM error, data whole.

Random filters, PATCH documents and resource bodies, shaped to reach the places where a parser,
a driver or an index gives up: lone UTF-16 surrogates (`"\\ud800"` is a valid JSON escape of no
character, so no driver can encode it), NUL (PostgreSQL text cannot hold it), strings past
SCIM_MAX_STRING_BYTES as sent or only once case-folded ("ΐ" is 2 bytes, folded 6), nesting and
chains past the filter limits, JSON nested thousands deep, wrong types and wrong-case names.

The contract: a 2xx or a 4xx SCIM Error (RFC 7644 §3.12: `status` as a string equal to the HTTP
status, a `scimType` RFC 7644 defines, a detail); never a 5xx (a 503 for a value the database
refuses is a 5xx too: retrying cannot help). After every example the data is whole: one live
user per case-folded userName, group_members rows between live resources only, and every
resource answered 201 or 200 reads back as it was answered.

The properties run on SQLite and PostgreSQL (the session `app` fixture) through an app of their
own on the same database, whose requests each get an app context and a session of their own, as
under gunicorn. Each example that writes starts from emptied tables and three seeds; the read-only
ones (filters, list parameters) share one set of seeds. The exact cases after them pin the
statuses issue 12 promises, with the detail checked for the attribute or limit it must name.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.db import db
from tests.conftest import BASE, TOKEN, empty_tables, make_app
from tests.payloads import (
    ENTERPRISE_URN,
    ERROR_URN,
    GROUP_URN,
    LIST_URN,
    PATCH_URN,
    SEARCH_URN,
    USER_URN,
)

MEDIA_TYPE = "application/scim+json"

# RFC 7644 §3.12, Table 9: the only scimType values an error may carry.
SCIM_TYPES = frozenset(
    {
        "invalidFilter",
        "tooMany",
        "uniqueness",
        "mutability",
        "invalidSyntax",
        "invalidPath",
        "noTarget",
        "invalidValue",
        "invalidVers",
        "sensitive",
    }
)

# Deterministic (derandomize: the same examples every run) and bounded: a few hundred requests a
# property. No shrinking: an example costs a dozen requests, some of them a thousand rows, and
# shrinking one took minutes. A failure stops the property at once and names the request that
# failed; the exact cases after the properties are the small examples.
HOSTILE = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------------
# The app under attack, requests, and the contract every answer keeps


@pytest.fixture(scope="module")
def service(app: Flask, database_url: str) -> Iterator[FlaskClient]:
    """A client of an app of its own on the session's database (`app` made the tables).

    Not the `client` fixture: that one is function-scoped, and every request it sends shares the
    session app's context (and so one database session) with the test.
    """
    other = make_app(database_url)
    client = other.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    yield client
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _tables_emptied_afterwards(app: Flask) -> Iterator[None]:
    """Each test leaves the tables empty, as the `client` fixture does, whatever it used."""
    yield
    empty_tables()


@dataclass(frozen=True)
class Call:
    """One request as sent: the body is JSON text, escapes and all, or None."""

    method: str
    path: str
    body: str | None = None
    query: tuple[tuple[str, str], ...] = ()  # parameters before percent-encoding
    shown: str | None = None  # the body as a failure shows it: Python repr, long runs elided

    def __str__(self) -> str:
        text = f"{self.method} {self.path}"
        if self.query:
            # JSON string notation, so that NUL and surrogates show as escapes.
            text += "?" + "&".join(f"{k}={clip(json.dumps(v))}" for k, v in self.query)
        if self.shown is not None:
            text += f" {clip(self.shown, 2000)}"
        elif self.body is not None:
            text += f" {clip(self.body)}"
        return text

    def query_string(self) -> str:
        # surrogatepass: a lone surrogate goes out as its (invalid) UTF-8 bytes, as a client might.
        return "&".join(
            f"{name}={quote(value.encode('utf-8', 'surrogatepass'), safe='')}"
            for name, value in self.query
        )


def clip(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def document_call(method: str, path: str, document: Any) -> Call:
    """A request with a generated body; a failure shows it with Long and Many kept short."""
    return Call(method, path, encode(document), shown=repr(document))


def send(client: FlaskClient, call: Call) -> Any:
    try:
        return client.open(
            call.path,
            method=call.method,
            data=None if call.body is None else call.body.encode("utf-8"),
            content_type=MEDIA_TYPE if call.body is not None else None,
            query_string=call.query_string(),
        )
    except Exception as e:  # the app let it escape: in production, a 500
        raise AssertionError(f"{call}: unhandled {type(e).__name__} (a 500)") from e


def check_answer(response: Any, call: Call, *, ok: tuple[int, ...] = (200, 201, 204)) -> None:
    """Never a 5xx; anything that is not `ok` is a 4xx SCIM Error (RFC 7644 §3.12)."""
    status = response.status_code
    assert status < 500, f"{status} for {call}: {clip(response.get_data(as_text=True))}"
    if status in ok:
        return
    assert 400 <= status < 500, f"{status} for {call}"
    assert response.mimetype == MEDIA_TYPE, f"{status} {response.mimetype} for {call}"
    body = response.json
    assert isinstance(body, dict), f"{status} for {call}: {clip(response.get_data(as_text=True))}"
    assert body.get("schemas") == [ERROR_URN], (str(call), body)
    assert body.get("status") == str(status), (str(call), body)
    assert isinstance(body.get("detail"), str) and body["detail"], (str(call), body)
    if "scimType" in body:
        assert body["scimType"] in SCIM_TYPES, (str(call), body)


def check_list(response: Any, call: Call) -> None:
    body = response.json
    assert body["schemas"] == [LIST_URN], (str(call), body)
    assert isinstance(body["totalResults"], int), (str(call), body)
    assert isinstance(body["Resources"], list), (str(call), body)
    assert body["itemsPerPage"] == len(body["Resources"]) <= body["totalResults"], str(call)


def error_of(response: Any) -> tuple[int, str | None, str]:
    body = response.json
    return response.status_code, body.get("scimType"), body.get("detail", "")


# ---------------------------------------------------------------------------------------------
# JSON text as an attacker writes it


@dataclass(frozen=True)
class Nested:
    """JSON nested `depth` levels deep, written out directly (json.dumps would recurse)."""

    depth: int
    kind: str = "array"

    def json(self) -> str:
        if self.kind == "array":
            return "[" * self.depth + "]" * self.depth
        return '{"a":' * self.depth + "null" + "}" * self.depth


def encode(value: Any) -> str:
    """JSON text; ensure_ascii writes a lone surrogate as the escape `\\ud800`, NUL as \\u0000."""
    if isinstance(value, Nested):
        return value.json()
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int) -> Any:
    """`usual`, and `rare` about once in `one_in` draws (one_of weighs its branches alike)."""
    return st.integers(1, one_in).flatmap(lambda i: rare if i == one_in else usual)


class Long(str):
    """A long string whose repr stays short: Hypothesis prints a falsifying example in full, and
    warns (an error here) past 30,000 characters."""

    def __repr__(self) -> str:
        return f"Long({str.__repr__(self[:20])} + ... {len(self)} characters)"


class Many(list):
    """A long list whose repr stays short, for the same reason."""

    def __repr__(self) -> str:
        return f"Many([{self[0]!r}, ...] {len(self)} elements)" if self else "Many([])"


def noise(length: int) -> str:
    """`length` characters no compressor shrinks (hex digests). PostgreSQL compresses an index
    entry before it checks its size, so "x" * 3000 fits in a B-tree and hides the limit."""
    digests = (hashlib.sha256(str(i).encode()).hexdigest() for i in range(length // 64 + 1))
    return "".join(digests)[:length]


# Every code point: controls, NUL and lone surrogates (category Cs) included.
ANY_CHARACTER = st.characters(exclude_categories=())
RANDOM_TEXT = st.text(ANY_CHARACTER, max_size=8)
# What a valid value looks like: a few letters, some of them outside ASCII.
PLAIN = st.text("abcxyzABCXYZ019 .-_@éßΣ", min_size=1, max_size=10).filter(str.strip)

# Text no database can store: lone surrogates (JSON escapes of no character) and NUL.
UNSTORABLE_STRINGS = (
    "x\ud800",
    "\ud800",
    "\udfff",
    "\udc00x",
    "\ud83d",  # the first half of an emoji, alone
    "a\x00b",
    "\x00",
)
# Around SCIM_MAX_STRING_BYTES (2,048), as sent and case-folded; the first three are accepted.
SIZED_STRINGS = (
    Long("x" * 2048),
    Long("ß" * 1024),  # 2,048 bytes, folded "ss" * 1024: 2,048 as well
    "ΐ" * 341,  # 682 bytes, folded 2,046
    Long(noise(2049)),
    Long(noise(3000)),
    Long(noise(10_000)),
    Long("é" * 1025),  # 2,050 bytes
    "ΐ" * 342,  # 684 bytes, folded 2,052
    Long("ΐ" * 700),  # 1,400 bytes, folded 4,200
    Long("İ" * 700),  # 1,400 bytes, folded 2,100
    Long("😀" * 600),
)
ODD_STRINGS = ("", " ", "\u2028\u2029\ufeff", "\U0010ffff", "%_\\\"'", "'; DROP TABLE users; --")
STRINGS = st.one_of(
    st.sampled_from(UNSTORABLE_STRINGS),
    st.sampled_from(SIZED_STRINGS),
    st.sampled_from(ODD_STRINGS),
    RANDOM_TEXT,
    st.text(max_size=12),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: 10**40 where a boolean or a string goes
    st.floats(allow_nan=False, allow_infinity=False),
    STRINGS,
)
NAMES = (
    "schemas",
    "id",
    "externalId",
    "meta",
    "userName",
    "name",
    "displayName",
    "emails",
    "active",
    "password",
    "groups",
    "title",
    "members",
    "value",
    "type",
    "primary",
    "display",
    "$ref",
    ENTERPRISE_URN,
)
KEYS = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES).map(str.upper),
    st.sampled_from(NAMES).map(str.swapcase),
    RANDOM_TEXT,
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=10,
)
HUGE = st.one_of(
    st.builds(Nested, st.sampled_from([33, 40, 1000, 10_000]), st.sampled_from(["array", "obj"])),
    st.builds(
        lambda n, item: Many(copy.deepcopy(item) for _ in range(n)),
        st.sampled_from([1000, 3000]),
        st.sampled_from([None, 1, "x", {}, [], {"value": None}, {"value": "<spare>"}]),
    ),
)
NOT_OBJECTS = st.one_of(ANY_JSON.filter(lambda v: not isinstance(v, dict)), HUGE)
MARKERS = ("<user>", "<spare>", "<group>")  # replaced with the ids of the example's resources


def places(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) of a JSON document: object members and array elements."""
    if isinstance(value, dict):
        for key in list(value):
            yield value, key
            yield from places(value[key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield value, index
            yield from places(item)


@st.composite
def spoiled(draw: st.DrawFn, documents: st.SearchStrategy[Any], most: int = 2) -> Any:
    """A valid document with up to `most` spots made hostile, anywhere in it.

    A spot's value becomes a hostile string or any JSON at all, its key changes case or is
    dropped, an unknown key or something huge is added. With no spot spoiled the document is
    valid, so that examples also reach the database and the invariants have data to hold for.
    """
    document = copy.deepcopy(draw(documents))
    for _ in range(draw(st.integers(0, most))):
        spots = list(places(document))
        if not spots:
            break
        how = draw(st.sampled_from(("text", "text", "json", "recase", "drop", "add", "huge")))
        # A hostile string goes where a string was, so that it gets past type checks.
        texts = [(c, k) for c, k in spots if isinstance(c[k], str)]
        container, key = draw(st.sampled_from(texts if how == "text" and texts else spots))
        if how == "text":
            container[key] = draw(STRINGS)
        elif how == "json":
            container[key] = draw(ANY_JSON)
        elif how == "huge":
            container[key] = draw(HUGE)
        elif how == "drop":
            del container[key]
        elif isinstance(container, dict) and how == "recase":
            container[draw(recased(key))] = container.pop(key)
        elif isinstance(container, dict):
            container[draw(KEYS)] = draw(ANY_JSON)
    return document


def recased(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from((name.upper(), name.lower(), name.swapcase()))


# userNames that collide once case-folded: straße/STRASSE, final sigma, ǅ/ǆ, the ﬁ ligature.
USER_NAMES = mostly(
    st.sampled_from(
        (
            "ada@example.com",
            "ADA@example.com",
            "straße",
            "STRASSE",
            "ΟΔΟΣ",
            "οδος",
            "ǅemo",
            "ǆemo",
            "ﬁx",
            "FIX",
            "seed@example.com",
            "SPARE@example.com",
        )
    ),
    PLAIN,
    3,
)
# A string attribute's value: valid, or a hostile string (some of which are valid too).
TEXT = st.one_of(PLAIN, STRINGS)
EMAILS = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {"value": st.one_of(TEXT, st.sampled_from(["a@example.com", "A@EXAMPLE.COM"]))},
            optional={"type": st.sampled_from(["work", "home", "Work"]), "primary": st.booleans()},
        ),
        max_size=3,
    ),
    st.builds(lambda: Many({"value": f"u{i}@example.com"} for i in range(1000))),
)
USER_DOCUMENTS = st.fixed_dictionaries(
    {"schemas": st.just([USER_URN]), "userName": USER_NAMES},
    optional={
        "name": st.fixed_dictionaries(
            {}, optional={"givenName": TEXT, "familyName": TEXT, "formatted": TEXT}
        ),
        "displayName": TEXT,
        "emails": EMAILS,
        "externalId": TEXT,
        "active": st.one_of(st.booleans(), st.sampled_from(["True", "false"])),
        "title": TEXT,
        "password": TEXT,
        ENTERPRISE_URN: st.fixed_dictionaries(
            {},
            optional={
                "department": TEXT,
                "manager": st.fixed_dictionaries({"value": st.sampled_from(MARKERS)}),
            },
        ),
    },
)
MEMBERS = st.lists(
    st.fixed_dictionaries(
        {"value": st.sampled_from(MARKERS)},
        optional={"type": st.sampled_from(["User", "Group"]), "display": TEXT},
    ),
    max_size=3,
)
GROUP_DOCUMENTS = st.fixed_dictionaries(
    {"schemas": st.just([GROUP_URN]), "displayName": TEXT},
    optional={"members": MEMBERS, "externalId": TEXT},
)
USER_BODIES = mostly(spoiled(USER_DOCUMENTS), NOT_OBJECTS, 8)
GROUP_BODIES = mostly(spoiled(GROUP_DOCUMENTS), NOT_OBJECTS, 8)


# ---------------------------------------------------------------------------------------------
# One example's resources, and what must hold of the data afterwards


@dataclass
class World:
    """The resources of one example: ids by marker, and each resource as last answered."""

    ids: dict[str, str]
    written: dict[str, dict[str, Any]] = field(default_factory=dict)  # location path -> body
    gone: set[str] = field(default_factory=set)  # ids deleted during the example

    def sub(self, value: Any) -> Any:
        """`value` with the markers replaced by ids; Long and Many stay what they are."""
        if isinstance(value, str):
            replaced = value
            for marker, resource_id in self.ids.items():
                replaced = replaced.replace(marker, resource_id)
            return Long(replaced) if isinstance(value, Long) else replaced
        if isinstance(value, dict):
            return {key: self.sub(item) for key, item in value.items()}
        if isinstance(value, list):
            items = [self.sub(item) for item in value]
            return Many(items) if isinstance(value, Many) else items
        return value

    def record(self, call: Call, response: Any) -> None:
        status = response.status_code
        if call.method == "DELETE" and status == 204:
            self.written.pop(call.path, None)
            self.gone.add(call.path.rsplit("/", 1)[1])
        elif call.method in ("POST", "PUT", "PATCH") and status in (200, 201):
            body = response.json
            kind = "Users" if call.path.startswith(f"{BASE}/Users") else "Groups"
            location = f"{BASE}/{kind}/{body['id']}"
            if status == 201:
                assert response.headers["Location"].endswith(location), str(call)
            self.written[location] = body


def reset(client: FlaskClient) -> World:
    """Empty tables, then a user, a spare user and a group with the user as its member."""
    with client.application.app_context():
        empty_tables()
    world = World({})
    seeds = (
        (
            "<user>",
            "/Users",
            {
                "schemas": [USER_URN],
                "userName": "seed@example.com",
                "name": {"givenName": "Seed", "familyName": "User"},
                "displayName": "Seed User",
                "emails": [{"value": "seed@example.com", "type": "work", "primary": True}],
                "externalId": "seed-1",
            },
        ),
        ("<spare>", "/Users", {"schemas": [USER_URN], "userName": "spare@example.com"}),
        (
            "<group>",
            "/Groups",
            {"schemas": [GROUP_URN], "displayName": "Seed group", "members": [{"value": "<user>"}]},
        ),
    )
    for marker, path, body in seeds:
        call = Call("POST", f"{BASE}{path}", encode(world.sub(body)))
        response = send(client, call)
        assert response.status_code == 201, (str(call), response.json)
        world.ids[marker] = response.json["id"]
        world.record(call, response)
    return world


ORPHAN_MEMBERSHIPS = text(
    """
    SELECT count(*) FROM group_members AS m
    WHERE NOT EXISTS (
            SELECT 1 FROM groups AS g WHERE g.id = m.group_id AND g.deleted_at IS NULL)
       OR (m.member_type = 'User' AND NOT EXISTS (
            SELECT 1 FROM users AS u WHERE u.id = m.member_id AND u.deleted_at IS NULL))
       OR (m.member_type = 'Group' AND NOT EXISTS (
            SELECT 1 FROM groups AS g WHERE g.id = m.member_id AND g.deleted_at IS NULL))
       OR m.member_type NOT IN ('User', 'Group')
    """
)


def comparable(resource: dict[str, Any], gone: set[str]) -> dict[str, Any]:
    """A resource as it must read back, minus what writes to other resources may change.

    meta.lastModified and meta.version (a membership change bumps them), a user's groups and a
    manager's displayName (they follow other resources), members' display names and members
    deleted since: a group's members compare as (value, type) pairs.
    """
    out = copy.deepcopy(resource)
    meta = out.get("meta")
    if isinstance(meta, dict):
        meta.pop("lastModified", None)
        meta.pop("version", None)
    out.pop("groups", None)
    manager = (out.get(ENTERPRISE_URN) or {}).get("manager")
    if isinstance(manager, dict):
        manager.pop("displayName", None)
    members = [
        (m.get("value"), m.get("type"))
        for m in out.pop("members", None) or []
        if m.get("value") not in gone
    ]
    if members:
        out["members"] = sorted(members, key=repr)
    return out


def check_invariants(client: FlaskClient, world: World) -> None:
    with client.application.app_context():
        names = db.session.execute(
            text("SELECT user_name FROM users WHERE deleted_at IS NULL")
        ).scalars()
        folded = [name.casefold() for name in names]
        orphans = db.session.execute(ORPHAN_MEMBERSHIPS).scalar_one()
    twice = sorted({name for name in folded if folded.count(name) > 1})
    assert not twice, f"live users share a case-folded userName: {twice}"
    assert orphans == 0, f"{orphans} group_members rows name a deleted or missing resource"
    for kind in ("Users", "Groups"):
        call = Call("GET", f"{BASE}/{kind}")
        response = send(client, call)
        check_answer(response, call, ok=(200,))
        assert response.status_code == 200, str(call)
        check_list(response, call)
        if kind == "Users":
            assert response.json["totalResults"] == len(folded)
    for location, answered in world.written.items():
        call = Call("GET", location)
        response = send(client, call)
        assert response.status_code == 200, f"{response.status_code} for {call}: answered before"
        assert comparable(response.json, world.gone) == comparable(answered, world.gone), location


# ---------------------------------------------------------------------------------------------
# Property 1: filters


FILTER_ATTRIBUTES = (
    "userName",
    "USERNAME",
    "name.familyName",
    "name",
    "emails",
    "emails.value",
    "emails.type",
    "emails.primary",
    "displayName",
    "members",
    "members.value",
    "meta.lastModified",
    "meta.created",
    "meta.resourceType",
    "id",
    "externalId",
    "active",
    "groups.value",
    "schemas",
    f"{USER_URN}:userName",
    f"{ENTERPRISE_URN}:department",
    f"{ENTERPRISE_URN}:manager.value",
    "nosuch",
    "name.nosuch",
    "emails.value.value",
    "x.y.z",
    "$ref",
    "password",
    "a" * 300,
)
FILTER_OPERATORS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "EQ", "Pr", "=")
FILTER_LITERALS = (
    '"x"',
    '""',
    '"seed@example.com"',
    '"\\ud800"',
    '"\\udc00"',
    '"x\\ud800y"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"\\u00e9"',
    '"\\"',
    '"\\\\"',
    '"\\q"',
    '"\\u12"',
    '"unterminated',
    "true",
    "False",
    "NULL",
    "null",
    "0",
    "-1",
    "1.5e3",
    "1e999",
    "-1e999",
    "99999999999999999999999999999",
    '"2024-01-01T00:00:00Z"',
    '"2024-13-45T99:00:00Z"',
    "'single'",
    '"%"',
    '"_"',
)
FILTER_PIECES = (
    "(",
    ")",
    "not (",
    "not(",
    "NOT (",
    "not",
    "[",
    "]",
    "and",
    "or",
    "AND",
    "Or",
    '"',
    "\\",
    "\\u",
    "\x00",
    "\ud800",
    " ",
    "\t",
    "\n",
    ".",
    ":",
    ",",
    "emails[",
    "members[",
)
LITERALS = st.one_of(
    st.sampled_from(FILTER_LITERALS),
    RANDOM_TEXT.map(json.dumps),  # lone surrogates and NUL as JSON escapes
    RANDOM_TEXT.map(lambda s: json.dumps(s, ensure_ascii=False)),  # ... and as characters
)
WILD_COMPARISONS = st.one_of(
    st.builds(
        lambda a, o, v: f"{a} {o} {v}",
        st.sampled_from(FILTER_ATTRIBUTES),
        st.sampled_from(FILTER_OPERATORS),
        LITERALS,
    ),
    st.builds(lambda a: f"{a} pr", st.sampled_from(FILTER_ATTRIBUTES)),
)
# Comparisons the service answers with 200, so that examples reach the SQL as well.
SANE_COMPARISONS = st.one_of(
    st.builds(
        lambda a, o, v: f"{a} {o} {json.dumps(v, ensure_ascii=False)}",
        st.sampled_from(("userName", "displayName", "externalId", "id", "emails.value", "title")),
        st.sampled_from(("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")),
        st.one_of(PLAIN, st.sampled_from(("seed@example.com", "Seed group", "%", "_", "\\"))),
    ),
    st.builds(
        lambda a: f"{a} pr",
        st.sampled_from(("userName", "displayName", "externalId", "emails", "name", "members")),
    ),
    st.sampled_from(
        (
            "active eq true",
            'meta.lastModified gt "2024-01-01T00:00:00Z"',
            'emails[type eq "work" and value co "@"]',
            "members[value pr]",
        )
    ),
)
COMPARISONS = mostly(SANE_COMPARISONS, WILD_COMPARISONS, 4)
GRAMMAR = st.recursive(
    COMPARISONS,
    lambda children: st.one_of(
        st.builds(
            lambda left, op, right: f"{left} {op} {right}",
            children,
            st.sampled_from(("and", "or", "AND", "Or")),
            children,
        ),
        st.builds(lambda inner: f"({inner})", children),
        st.builds(lambda inner: f"not ({inner})", children),
        st.builds(
            lambda name, inner: f"{name}[{inner}]",
            st.sampled_from(("emails", "members", "name", "EMAILS")),
            children,
        ),
    ),
    max_leaves=6,
)
FRAGMENTS = st.one_of(
    st.sampled_from(FILTER_PIECES),
    st.sampled_from(FILTER_ATTRIBUTES),
    st.sampled_from(FILTER_OPERATORS),
    LITERALS,
    RANDOM_TEXT,
)
SOUP = st.builds(
    lambda parts, glue: glue.join(parts),
    st.lists(FRAGMENTS, max_size=20),
    st.sampled_from(("", " ")),
)
SPLICED = st.builds(
    lambda text, at, piece: text[: at % (len(text) + 1)] + piece + text[at % (len(text) + 1) :],
    GRAMMAR,
    st.integers(0, 200),
    FRAGMENTS,
)
DEPTHS = (31, 32, 33, 100, 500, 2000)


def chain(op: str, terms: int, attribute: str = "externalId") -> str:
    return f" {op} ".join(f'{attribute} eq "value-{i:06d}"' for i in range(terms))


HUGE_FILTERS = st.one_of(
    st.builds(lambda n, inner: "(" * n + inner + ")" * n, st.sampled_from(DEPTHS), GRAMMAR),
    st.builds(lambda n, inner: "not (" * n + inner + ")" * n, st.sampled_from(DEPTHS), GRAMMAR),
    st.builds(
        lambda n: "emails[" + "(" * n + 'value eq "x"' + ")" * n + "]", st.sampled_from(DEPTHS)
    ),
    st.builds(lambda n, piece: piece * n, st.sampled_from(DEPTHS), st.sampled_from(FILTER_PIECES)),
    st.builds(chain, st.sampled_from(("or", "and")), st.sampled_from((255, 256, 257, 1000))),
    st.builds(
        lambda n, c: f'userName eq "{c * n}"',
        st.sampled_from((2048, 3000, 16_384, 20_000)),
        st.sampled_from(("a", "ΐ", "\\ud800")),
    ),
    st.builds(lambda n: "a" * n + " pr", st.sampled_from((1000, 20_000))),
)
FILTERS = mostly(GRAMMAR, st.one_of(SOUP, SPLICED, HUGE_FILTERS), 2).map(
    lambda text: Long(text) if len(text) > 500 else text
)


def list_calls(parameters: dict[str, Any]) -> list[Call]:
    """The parameters sent to every list endpoint: in a query string, and in SearchRequests."""

    def text_of(value: Any) -> str:
        return ",".join(value) if isinstance(value, list) else str(value)

    query = tuple((name, text_of(value)) for name, value in parameters.items())
    search = encode({"schemas": [SEARCH_URN], **parameters})
    return [
        Call("GET", f"{BASE}/Users", query=query),
        Call("GET", f"{BASE}/Groups", query=query),
        Call("POST", f"{BASE}/Users/.search", search),
        Call("POST", f"{BASE}/Groups/.search", search),
        Call("POST", f"{BASE}/.search", search),
    ]


def test_random_filters_are_200_or_400_invalid_filter(service):
    world = reset(service)

    @settings(HOSTILE, max_examples=200)
    @given(filter_text=FILTERS)
    def run(filter_text: str) -> None:
        for call in list_calls({"filter": filter_text}):
            response = send(service, call)
            check_answer(response, call, ok=(200,))
            if response.status_code == 200:
                check_list(response, call)
            else:
                assert error_of(response)[:2] == (400, "invalidFilter"), (str(call), response.json)

    run()
    check_invariants(service, world)


LIST_PARAMETERS = st.fixed_dictionaries(
    {},
    optional={
        "sortBy": st.one_of(st.sampled_from(FILTER_ATTRIBUTES), STRINGS),
        "sortOrder": st.one_of(st.sampled_from(("ascending", "DESCENDING", "up")), STRINGS),
        "startIndex": st.one_of(st.integers(), STRINGS),
        "count": st.one_of(st.integers(), STRINGS),
        "attributes": st.lists(st.one_of(st.sampled_from(FILTER_ATTRIBUTES), STRINGS), max_size=3),
        "excludedAttributes": st.lists(
            st.one_of(st.sampled_from(FILTER_ATTRIBUTES), STRINGS), max_size=3
        ),
    },
)


def test_random_list_parameters_are_200_or_400_invalid_value(service):
    world = reset(service)

    @settings(HOSTILE, max_examples=100)
    @given(parameters=LIST_PARAMETERS)
    def run(parameters: dict[str, Any]) -> None:
        for call in list_calls(parameters):
            response = send(service, call)
            check_answer(response, call, ok=(200,))
            if response.status_code == 200:
                check_list(response, call)
            else:
                assert error_of(response)[:2] == (400, "invalidValue"), (str(call), response.json)

    run()
    check_invariants(service, world)


# ---------------------------------------------------------------------------------------------
# Property 2: PATCH documents


# Paths an IdP sends, and paths no parser should choke on.
PATCH_PATHS = (
    "userName",
    "USERNAME",
    "displayName",
    "name.familyName",
    "name",
    "emails",
    'emails[type eq "work"]',
    'emails[type eq "work"].value',
    'emails[value eq "\\ud800"]',  # the escape, in the path text
    'emails[value eq "x\ud800"]',  # the lone surrogate itself (an escape in the JSON text)
    'emails[type eq "work" and not (primary eq true)].value',
    "emails.value",
    "members",
    'members[value eq "<user>"]',
    'members[value eq "<spare>"]',
    'members[type eq "User"]',
    "members.value",
    "externalId",
    "active",
    "id",
    "meta.lastModified",
    "groups",
    "password",
    f"{ENTERPRISE_URN}:department",
    f"{ENTERPRISE_URN}:manager",
    f"{ENTERPRISE_URN}:manager.value",
    "urn:example:nope:2.0:User:attribute",
    "emails[",
    'emails[type eq "work"',
    "emails]",
    "not (displayName)",
    "[",
    "",
    " ",
    "userName\x00",
    Long("x" * 20_000),
    Long("emails[" + "(" * 500 + 'type eq "work"' + ")" * 500 + "].value"),
    Long('members[value eq "' + "x" * 3000 + '"]'),
)
OPS = st.sampled_from(("add", "remove", "replace", "Add", "Replace", "REMOVE"))


def operation(op: Any, path: Any, value: Any) -> st.SearchStrategy[dict[str, Any]]:
    """A PatchOp operation from strategies (or plain values); a None path or value is left out."""

    def strategy(x: Any) -> st.SearchStrategy[Any]:
        return x if isinstance(x, st.SearchStrategy) else st.just(x)

    def build(o: Any, p: Any, v: Any) -> dict[str, Any]:
        operation = {"op": o, "path": p, "value": v}
        return {key: item for key, item in operation.items() if item is not None}

    return st.builds(build, strategy(op), strategy(path), strategy(value))


WILD_OPERATIONS = (
    operation(OPS, st.sampled_from(PATCH_PATHS), st.one_of(PLAIN, MEMBERS, EMAILS, ANY_JSON)),
    # Keys and op values no RFC operation has.
    st.fixed_dictionaries(
        {"op": st.one_of(st.sampled_from(("move", "copy", "test", "")), SCALARS)},
        optional={"path": st.sampled_from(PATCH_PATHS), "value": ANY_JSON, "from": PLAIN},
    ),
    st.fixed_dictionaries(
        {"op": OPS, "Path": st.sampled_from(PATCH_PATHS)}, optional={"Value": PLAIN}
    ),
)
USER_OPERATIONS = st.one_of(
    operation(OPS, st.sampled_from(("displayName", "name.familyName", "title")), TEXT),
    operation(OPS, "userName", USER_NAMES),
    operation("add", "emails", EMAILS),
    operation("replace", 'emails[type eq "work"].value', TEXT),
    operation("remove", 'emails[type eq "work"]', None),
    operation("Replace", "active", st.sampled_from((True, False, "False"))),
    operation("replace", f"{ENTERPRISE_URN}:department", TEXT),
    operation(
        "replace", None, st.fixed_dictionaries({"displayName": TEXT, "name.familyName": TEXT})
    ),
    *WILD_OPERATIONS,
)
GROUP_OPERATIONS = st.one_of(
    operation(OPS, st.sampled_from(("displayName", "externalId")), TEXT),
    operation(OPS, "members", MEMBERS),
    operation("remove", st.sampled_from(('members[value eq "<spare>"]', "members")), None),
    operation("remove", "members", [{"value": "<user>"}]),
    operation("replace", None, st.fixed_dictionaries({"displayName": TEXT})),
    operation("add", None, st.fixed_dictionaries({"members": MEMBERS})),
    *WILD_OPERATIONS,
)
CHEAP_OPERATIONS = st.sampled_from(
    (
        {"op": "replace", "path": "displayName", "value": "again"},
        {"op": "add", "path": "members", "value": [{"value": "<spare>"}]},
        {"op": "remove", "path": 'members[value eq "<spare>"]'},
    )
)
MANY_OPERATIONS = st.builds(
    lambda cheap, n: {"schemas": [PATCH_URN], "Operations": Many([cheap] * n)},
    CHEAP_OPERATIONS,
    st.sampled_from((1000, 1001, 1500)),
)


def patch_bodies(operations: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Mostly PatchOps with a spot or two spoiled (spoiled() also recases "Operations", drops
    schemas, makes a path or a value hostile); sometimes 1,000 operations or more, or no object."""
    valid = spoiled(
        st.fixed_dictionaries(
            {
                "schemas": st.just([PATCH_URN]),
                "Operations": st.lists(operations, min_size=1, max_size=4),
            }
        )
    )
    return mostly(valid, st.one_of(MANY_OPERATIONS, NOT_OBJECTS), 6)


@settings(HOSTILE, max_examples=80)
@given(user_patch=patch_bodies(USER_OPERATIONS), group_patch=patch_bodies(GROUP_OPERATIONS))
def test_random_patch_documents_are_answered_without_5xx(service, user_patch, group_patch):
    world = reset(service)
    targets = ((f"{BASE}/Users/<user>", user_patch), (f"{BASE}/Groups/<group>", group_patch))
    for location, document in targets:
        url = world.sub(location)
        before = send(service, Call("GET", url)).json
        call = document_call("PATCH", url, world.sub(document))
        response = send(service, call)
        check_answer(response, call)
        after = send(service, Call("GET", url))
        assert after.status_code == 200, str(call)
        if response.status_code >= 400:  # a refused PATCH wrote nothing (RFC 7644 §3.5.2)
            assert after.json == before, str(call)
            continue
        if response.status_code == 200:
            assert comparable(after.json, set()) == comparable(response.json, set()), str(call)
        world.written[url] = after.json
    check_invariants(service, world)


# ---------------------------------------------------------------------------------------------
# Property 3: resource bodies for POST and PUT


STEPS = st.one_of(
    st.tuples(st.just("POST"), st.just("/Users"), USER_BODIES),
    st.tuples(st.just("PUT"), st.just("/Users/<user>"), USER_BODIES),
    st.tuples(st.just("POST"), st.just("/Groups"), GROUP_BODIES),
    st.tuples(st.just("PUT"), st.just("/Groups/<group>"), GROUP_BODIES),
    st.tuples(st.just("DELETE"), st.just("/Users/<spare>"), st.none()),
)


@settings(HOSTILE, max_examples=60)
@given(steps=st.lists(STEPS, min_size=1, max_size=4))
def test_random_bodies_are_answered_without_5xx_and_leave_the_data_whole(service, steps):
    world = reset(service)
    for method, path, body in steps:
        url = world.sub(f"{BASE}{path}")
        call = Call(method, url) if body is None else document_call(method, url, world.sub(body))
        response = send(service, call)
        check_answer(response, call)
        world.record(call, response)
    check_invariants(service, world)


# ---------------------------------------------------------------------------------------------
# Exact cases: what issue 12 promises for each


def target_url(world: World, method: str, kind: str) -> str:
    """Where an exact case sends its request: the collection for POST, else the seed resource."""
    if method == "POST":
        return f"{BASE}/{kind}"
    return world.sub(f"{BASE}/{kind}/<{'user' if kind == 'Users' else 'group'}>")


def check_nothing_written(client: FlaskClient, world: World) -> None:
    """A refused request changed nothing: the seeds read back as created, and no resource more."""
    check_invariants(client, world)
    for kind, seeds in (("Users", 2), ("Groups", 1)):
        assert send(client, Call("GET", f"{BASE}/{kind}")).json["totalResults"] == seeds, kind


def contains_all(detail: str, *words: str) -> bool:
    return all(word.lower() in detail.lower() for word in words)


def user_body_text(**fields: str) -> str:
    """A user body as JSON text; `fields` values are JSON text themselves (raw escapes kept)."""
    parts = [f'"schemas":["{USER_URN}"]', '"userName":"raw@example.com"']
    parts += [f'"{name}":{value}' for name, value in fields.items()]
    return "{" + ",".join(parts) + "}"


def patch_text(operation: str) -> str:
    return f'{{"schemas":["{PATCH_URN}"],"Operations":[{operation}]}}'


GROUP_BODY = f'{{"schemas":["{GROUP_URN}"],"displayName":"x\\ud800"}}'


@pytest.mark.parametrize(
    ("method", "kind", "body", "words"),
    [
        pytest.param(
            "POST",
            "Users",
            f'{{"schemas":["{USER_URN}"],"userName":"x\\ud800"}}',
            ("userName",),
            id="post-userName-surrogate",
        ),
        pytest.param(
            "PUT",
            "Users",
            f'{{"schemas":["{USER_URN}"],"userName":"x\\ud800"}}',
            ("userName",),
            id="put-userName-surrogate",
        ),
        pytest.param(
            "POST",
            "Users",
            f'{{"schemas":["{USER_URN}"],"userName":"\\udc00"}}',
            ("userName",),
            id="post-userName-low-surrogate",
        ),
        pytest.param(
            "POST",
            "Users",
            user_body_text(displayName='"x\\ud800"'),
            ("displayName",),
            id="post-displayName-surrogate",
        ),
        pytest.param(
            "PUT",
            "Users",
            user_body_text(displayName='"x\\ud800"'),
            ("displayName",),
            id="put-displayName-surrogate",
        ),
        pytest.param(
            "POST",
            "Users",
            user_body_text(emails='[{"value":"x\\ud800","type":"work"}]'),
            ("emails", "value"),
            id="post-emails-value-surrogate",
        ),
        pytest.param(
            "PUT",
            "Users",
            user_body_text(emails='[{"value":"x\\ud800","type":"work"}]'),
            ("emails", "value"),
            id="put-emails-value-surrogate",
        ),
        pytest.param(
            "POST",
            "Users",
            user_body_text(name='{"familyName":"x\\ud800"}'),
            ("familyName",),
            id="post-familyName-surrogate",
        ),
        pytest.param(
            "POST",
            "Users",
            f'{{"schemas":["{USER_URN}"],"userName":"a\\u0000b"}}',
            ("userName",),
            id="post-userName-nul",
        ),
        pytest.param(
            "POST",
            "Users",
            user_body_text(displayName='"a\\u0000b"'),
            ("displayName",),
            id="post-displayName-nul",
        ),
        pytest.param(
            "POST",
            "Users",
            user_body_text(emails='[{"value":"a\\u0000b"}]'),
            ("emails", "value"),
            id="post-emails-value-nul",
        ),
        pytest.param(
            "PATCH",
            "Users",
            patch_text('{"op":"replace","path":"userName","value":"x\\ud800"}'),
            ("userName",),
            id="patch-userName-surrogate",
        ),
        pytest.param(
            "PATCH",
            "Users",
            patch_text('{"op":"replace","value":{"userName":"x\\ud800"}}'),
            ("userName",),
            id="patch-pathless-userName-surrogate",
        ),
        pytest.param(
            "PATCH",
            "Users",
            patch_text('{"op":"replace","path":"displayName","value":"x\\ud800"}'),
            ("displayName",),
            id="patch-displayName-surrogate",
        ),
        pytest.param(
            "PATCH",
            "Users",
            patch_text('{"op":"add","path":"emails","value":[{"value":"x\\ud800"}]}'),
            ("emails",),
            id="patch-emails-value-surrogate",
        ),
        pytest.param(
            "PATCH",
            "Users",
            patch_text('{"op":"replace","path":"displayName","value":"a\\u0000b"}'),
            ("displayName",),
            id="patch-displayName-nul",
        ),
        pytest.param("POST", "Groups", GROUP_BODY, ("displayName",), id="post-group-surrogate"),
        pytest.param("PUT", "Groups", GROUP_BODY, ("displayName",), id="put-group-surrogate"),
        pytest.param(
            "PATCH",
            "Groups",
            patch_text('{"op":"replace","path":"displayName","value":"x\\ud800"}'),
            ("displayName",),
            id="patch-group-surrogate",
        ),
    ],
)
def test_unstorable_text_in_a_body_is_400_invalid_value_naming_the_attribute(
    client, method, kind, body, words
):
    world = reset(client)
    url = target_url(world, method, kind)
    call = Call(method, url, body)
    response = send(client, call)
    check_answer(response, call, ok=())
    status, scim_type, detail = error_of(response)
    assert (status, scim_type) == (400, "invalidValue"), (str(call), response.json)
    assert contains_all(detail, *words), detail
    check_nothing_written(client, world)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "template",
    [
        pytest.param("/Users/%00", id="users-nul"),
        pytest.param("/Users/{user}%00", id="users-id-nul"),
        pytest.param("/Users/%00{user}", id="users-nul-id"),
        pytest.param("/Users/%ED%A0%80", id="users-surrogate-bytes"),
        pytest.param("/Groups/%00", id="groups-nul"),
        pytest.param("/Groups/{group}%00", id="groups-id-nul"),
    ],
)
def test_nul_or_surrogate_in_an_id_is_404(client, method, template):
    world = reset(client)
    path = BASE + template.format(user=world.ids["<user>"], group=world.ids["<group>"])
    bodies = {
        "PUT": encode(
            {"schemas": [USER_URN], "userName": "other@example.com"}
            if "/Users/" in template
            else {"schemas": [GROUP_URN], "displayName": "Other"}
        ),
        "PATCH": patch_text('{"op":"replace","path":"displayName","value":"Other"}'),
    }
    call = Call(method, path, bodies.get(method))
    response = send(client, call)
    check_answer(response, call, ok=())
    assert response.status_code == 404, (str(call), response.json)
    check_nothing_written(client, world)  # DELETE /Users/<id>%00 deleted nothing, say


FILTER_ENDPOINTS = [
    pytest.param("GET", "/Users", id="get-users"),
    pytest.param("GET", "/Groups", id="get-groups"),
    pytest.param("POST", "/Users/.search", id="search-users"),
    pytest.param("POST", "/Groups/.search", id="search-groups"),
    pytest.param("POST", "/.search", id="search-root"),
]


def filter_call(method: str, path: str, filter_text: str) -> Call:
    if method == "GET":
        return Call("GET", f"{BASE}{path}", query=(("filter", filter_text),))
    return Call("POST", f"{BASE}{path}", encode({"schemas": [SEARCH_URN], "filter": filter_text}))


@pytest.mark.parametrize(("method", "path"), FILTER_ENDPOINTS)
@pytest.mark.parametrize(
    "filter_text",
    [
        pytest.param('externalId eq "\\ud800"', id="surrogate-escape"),
        pytest.param('externalId eq "x\\udc00y"', id="low-surrogate-escape"),
        pytest.param('externalId eq "\\u0000"', id="nul-escape"),
        pytest.param('externalId eq "a\x00b"', id="nul-character"),
        pytest.param("externalId\x00 pr", id="nul-in-attribute"),
    ],
)
def test_unstorable_text_in_a_filter_is_400_invalid_filter(client, method, path, filter_text):
    call = filter_call(method, path, filter_text)
    response = send(client, call)
    check_answer(response, call, ok=())
    assert error_of(response)[:2] == (400, "invalidFilter"), (str(call), response.json)


@pytest.mark.parametrize(("method", "path"), [p for p in FILTER_ENDPOINTS if p.values[0] == "POST"])
def test_lone_surrogate_character_in_a_search_filter_is_400_invalid_filter(client, method, path):
    # The JSON text carries the escape "\\ud800", so the filter holds the lone surrogate itself
    # (in a query string it could only arrive as UTF-8 bytes, which decode to U+FFFD).
    call = filter_call(method, path, 'externalId eq "\ud800"')
    assert "\\ud800" in call.body
    response = send(client, call)
    check_answer(response, call, ok=())
    assert error_of(response)[:2] == (400, "invalidFilter"), (str(call), response.json)


@pytest.mark.parametrize(
    ("method", "path"),
    [pytest.param("GET", "/Users", id="get"), pytest.param("POST", "/Users/.search", id="search")],
)
def test_username_eq_lone_surrogate_is_400_invalid_filter(client, method, path):
    call = filter_call(method, path, 'userName eq "\\ud800"')
    response = send(client, call)
    check_answer(response, call, ok=())
    assert error_of(response)[:2] == (400, "invalidFilter"), (str(call), response.json)


def nested(n: int, opening: str, inner: str = 'externalId eq "x"') -> str:
    return opening * n + inner + ")" * n


def padded(length: int) -> str:
    """A valid filter of exactly `length` characters: spaces count too."""
    core = 'externalId eq "x"'
    return core + " " * (length - len(core))


@pytest.mark.parametrize(("method", "path"), FILTER_ENDPOINTS)
@pytest.mark.parametrize(
    ("filter_text", "limits"),
    [
        pytest.param(nested(500, "("), ("SCIM_MAX_FILTER_DEPTH",), id="500-parentheses"),
        pytest.param(nested(33, "("), ("SCIM_MAX_FILTER_DEPTH",), id="33-parentheses"),
        pytest.param(nested(2000, "not ("), ("SCIM_MAX_FILTER_DEPTH",), id="2000-not"),
        pytest.param(
            "emails[" + nested(500, "(", 'value eq "x"') + "]",
            ("SCIM_MAX_FILTER_DEPTH",),
            id="value-path-500-parentheses",
        ),
        pytest.param(" or ".join(["id pr"] * 257), ("SCIM_MAX_FILTER_TERMS",), id="257-terms-or"),
        pytest.param(" and ".join(["id pr"] * 300), ("SCIM_MAX_FILTER_TERMS",), id="300-terms-and"),
        pytest.param(
            chain("or", 1000),
            ("SCIM_MAX_FILTER_CHARS", "SCIM_MAX_FILTER_TERMS"),
            id="1000-terms-or-100k",
        ),
        pytest.param(
            chain("and", 1000),
            ("SCIM_MAX_FILTER_CHARS", "SCIM_MAX_FILTER_TERMS"),
            id="1000-terms-and-100k",
        ),
        pytest.param(padded(16_385), ("SCIM_MAX_FILTER_CHARS",), id="16385-characters"),
        pytest.param(
            'externalId eq "' + "x" * 20_000 + '"',
            ("SCIM_MAX_FILTER_CHARS",),
            id="20000-character-literal",
        ),
    ],
)
def test_filter_past_a_limit_is_400_invalid_filter_naming_it(
    client, method, path, filter_text, limits
):
    call = filter_call(method, path, filter_text)
    response = send(client, call)
    check_answer(response, call, ok=())
    status, scim_type, detail = error_of(response)
    assert (status, scim_type) == (400, "invalidFilter"), (str(call), response.json)
    assert any(limit.lower() in detail.lower() for limit in limits), detail


@pytest.mark.parametrize(("method", "path"), FILTER_ENDPOINTS)
@pytest.mark.parametrize(
    "filter_text",
    [
        pytest.param(nested(32, "("), id="32-parentheses"),
        pytest.param(nested(31, "not ("), id="31-not"),
        pytest.param(" or ".join(["id pr"] * 256), id="256-terms"),
        pytest.param(padded(16_384), id="16384-characters"),
    ],
)
def test_filter_at_a_limit_is_served(client, method, path, filter_text):
    call = filter_call(method, path, filter_text)
    response = send(client, call)
    check_answer(response, call, ok=(200,))
    assert response.status_code == 200, (str(call), response.json)
    check_list(response, call)


LONG = noise(3000)  # over SCIM_MAX_STRING_BYTES, and over what a PostgreSQL index entry holds
WORK = 'emails[type eq "work"].value'


def long_string_cases() -> list[Any]:
    """3,000-byte values (over SCIM_MAX_STRING_BYTES, 2,048) by POST, PUT and PATCH."""
    user_fields: dict[str, tuple[dict[str, Any], str]] = {
        "userName": ({"userName": LONG}, "userName"),
        "displayName": ({"displayName": LONG}, "displayName"),
        "familyName": ({"name": {"familyName": LONG}}, "familyName"),
        "emails-value": ({"emails": [{"value": LONG, "type": "work"}]}, "emails"),
        "externalId": ({"externalId": LONG}, "externalId"),
        "department": ({ENTERPRISE_URN: {"department": LONG}}, "department"),
    }
    cases = []
    for name, (fields, word) in user_fields.items():
        body = {"schemas": [USER_URN], "userName": "long@example.com", **fields}
        for method in ("POST", "PUT"):
            cases.append(pytest.param(method, "Users", body, word, id=f"{method.lower()}-{name}"))
    patches = {
        "userName": ("userName", LONG, "userName"),
        "displayName": ("displayName", LONG, "displayName"),
        "familyName": ("name.familyName", LONG, "familyName"),
        "emails-value": (WORK, LONG, "emails"),
        "emails": ("emails", [{"value": LONG}], "emails"),
        "externalId": ("externalId", LONG, "externalId"),
    }
    for name, (path, value, word) in patches.items():
        body = {
            "schemas": [PATCH_URN],
            "Operations": [{"op": "replace", "path": path, "value": value}],
        }
        cases.append(pytest.param("PATCH", "Users", body, word, id=f"patch-{name}"))
    pathless = {
        "schemas": [PATCH_URN],
        "Operations": [{"op": "replace", "value": {"displayName": LONG}}],
    }
    cases.append(pytest.param("PATCH", "Users", pathless, "displayName", id="patch-pathless"))
    variants = {
        "10k-userName": ({"userName": noise(10_240)}, "userName"),
        "folded-3x-userName": ({"userName": "ΐ" * 700}, "userName"),  # 1,400 bytes, folded 4,200
        "folded-userName-just-over": ({"userName": "ΐ" * 342}, "userName"),  # folded 2,052
        "folded-emails-value": ({"emails": [{"value": "İ" * 700}]}, "emails"),  # folded 2,100
        "2-byte-displayName": ({"displayName": "é" * 1025}, "displayName"),  # 2,050 bytes
    }
    for name, (fields, word) in variants.items():
        body = {"schemas": [USER_URN], "userName": "long@example.com", **fields}
        cases.append(pytest.param("POST", "Users", body, word, id=f"post-{name}"))
    group = {"schemas": [GROUP_URN], "displayName": LONG}
    cases += [
        pytest.param("POST", "Groups", group, "displayName", id="post-group-displayName"),
        pytest.param("PUT", "Groups", group, "displayName", id="put-group-displayName"),
        pytest.param(
            "POST",
            "Groups",
            {"schemas": [GROUP_URN], "displayName": "ΐ" * 700},
            "displayName",
            id="post-group-folded-displayName",
        ),
        pytest.param(
            "PATCH",
            "Groups",
            {
                "schemas": [PATCH_URN],
                "Operations": [{"op": "replace", "path": "displayName", "value": LONG}],
            },
            "displayName",
            id="patch-group-displayName",
        ),
        pytest.param(
            "POST",
            "Groups",
            {"schemas": [GROUP_URN], "displayName": "long", "externalId": LONG},
            "externalId",
            id="post-group-externalId",
        ),
    ]
    return cases


@pytest.mark.parametrize(("method", "kind", "body", "word"), long_string_cases())
def test_string_over_the_byte_limit_is_400_invalid_value_naming_it(
    client, method, kind, body, word
):
    world = reset(client)
    url = target_url(world, method, kind)
    call = Call(method, url, encode(body))
    response = send(client, call)
    check_answer(response, call, ok=())
    status, scim_type, detail = error_of(response)
    assert (status, scim_type) == (400, "invalidValue"), (str(call), response.json)
    assert contains_all(detail, word, "SCIM_MAX_STRING_BYTES"), detail
    check_nothing_written(client, world)


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        pytest.param({"userName": "x" * 2048}, "Users", id="userName-2048-bytes"),
        pytest.param({"userName": noise(2048)}, "Users", id="userName-2048-incompressible-bytes"),
        pytest.param({"userName": "ΐ" * 341}, "Users", id="userName-folded-2046-bytes"),
        pytest.param({"userName": "ß" * 1024}, "Users", id="userName-2048-bytes-folded-too"),
        pytest.param({"displayName": "é" * 1024}, "Users", id="displayName-2048-bytes"),
        pytest.param({"emails": [{"value": "x" * 2048}]}, "Users", id="emails-value-2048-bytes"),
        pytest.param({"displayName": "x" * 2048}, "Groups", id="group-displayName-2048-bytes"),
    ],
)
def test_string_at_the_byte_limit_is_stored_and_read_back(client, fields, kind):
    world = reset(client)
    urn = USER_URN if kind == "Users" else GROUP_URN
    base = {"userName": "limit@example.com"} if kind == "Users" else {"displayName": "limit"}
    call = Call("POST", f"{BASE}/{kind}", encode({"schemas": [urn], **base, **fields}))
    response = send(client, call)
    check_answer(response, call, ok=(201,))
    assert response.status_code == 201, (str(call), response.json)
    world.record(call, response)
    for name, value in fields.items():
        assert response.json[name] == value
    check_invariants(client, world)


def many_operations(n: int) -> str:
    operation = {"op": "replace", "path": "displayName", "value": "again"}
    return encode({"schemas": [PATCH_URN], "Operations": [operation] * n})


@pytest.mark.parametrize("kind", ["Users", "Groups"])
@pytest.mark.parametrize("n", [pytest.param(1001, id="1001"), pytest.param(5000, id="5000")])
def test_patch_over_the_operations_limit_is_400(client, kind, n):
    world = reset(client)
    call = Call("PATCH", target_url(world, "PATCH", kind), many_operations(n))
    response = send(client, call)
    check_answer(response, call, ok=())
    status, _, detail = error_of(response)
    assert status == 400, (str(call), response.json)
    assert contains_all(detail, "SCIM_MAX_PATCH_OPERATIONS"), detail
    check_nothing_written(client, world)


@pytest.mark.parametrize("kind", ["Users", "Groups"])
def test_patch_at_the_operations_limit_is_served(client, kind):
    world = reset(client)
    call = Call("PATCH", target_url(world, "PATCH", kind), many_operations(1000))
    response = send(client, call)
    check_answer(response, call, ok=(200, 204))
    assert response.status_code in (200, 204), (str(call), response.json)


@pytest.mark.parametrize(
    ("method", "kind", "body"),
    [
        pytest.param(
            "POST",
            "Users",
            user_body_text(displayName=Nested(10_000).json()),
            id="post-user-10000-arrays",
        ),
        pytest.param(
            "POST",
            "Users",
            user_body_text(displayName=Nested(40).json()),
            id="post-user-40-arrays",
        ),
        pytest.param(
            "POST",
            "Users",
            user_body_text(name=Nested(40, "object").json()),
            id="post-user-40-objects",
        ),
        pytest.param(
            "PUT",
            "Users",
            user_body_text(emails=Nested(10_000, "object").json()),
            id="put-user-10000-objects",
        ),
        pytest.param(
            "PATCH",
            "Users",
            patch_text(f'{{"op":"replace","path":"displayName","value":{Nested(40).json()}}}'),
            id="patch-user-40-arrays",
        ),
        pytest.param(
            "POST",
            "Groups",
            f'{{"schemas":["{GROUP_URN}"],"displayName":"g","members":{Nested(10_000).json()}}}',
            id="post-group-10000-arrays",
        ),
        pytest.param(
            "POST",
            "Users/.search",
            f'{{"schemas":["{SEARCH_URN}"],"attributes":{Nested(40).json()}}}',
            id="search-40-arrays",
        ),
    ],
)
def test_json_nested_past_the_limit_is_400_invalid_syntax(client, method, kind, body):
    world = reset(client)
    url = target_url(world, method, kind)
    call = Call(method, url, body)
    response = send(client, call)
    check_answer(response, call, ok=())
    assert error_of(response)[:2] == (400, "invalidSyntax"), (str(call), response.json)
    check_nothing_written(client, world)


NON_STRING_EMAIL_VALUES = [
    pytest.param([{"value": ["x@example.com"]}], id="value-list"),
    pytest.param([{"value": {"x": "x@example.com"}}], id="value-object"),
    pytest.param({"value": ["x@example.com"]}, id="bare-element-value-list"),
]


@pytest.mark.parametrize("value", NON_STRING_EMAIL_VALUES)
def test_patch_add_emails_with_a_non_string_value_is_400_invalid_value(client, value):
    # Found by the PATCH property: the duplicate check hashed the value (a TypeError, a 500).
    world = reset(client)
    url = world.sub(f"{BASE}/Users/<user>")
    operation = {"op": "add", "path": "emails", "value": value}
    call = document_call("PATCH", url, {"schemas": [PATCH_URN], "Operations": [operation]})
    response = send(client, call)
    check_answer(response, call, ok=())
    assert error_of(response)[:2] == (400, "invalidValue"), (str(call), response.json)
    check_nothing_written(client, world)


@pytest.mark.parametrize("value", NON_STRING_EMAIL_VALUES)
def test_patch_remove_emails_with_a_non_string_value_is_no_5xx(client, value):
    world = reset(client)
    url = world.sub(f"{BASE}/Users/<user>")
    operation = {"op": "remove", "path": "emails", "value": value}
    call = document_call("PATCH", url, {"schemas": [PATCH_URN], "Operations": [operation]})
    response = send(client, call)
    check_answer(response, call, ok=(200,))
    if response.status_code == 200:  # nothing matched: nothing removed
        world.written[url] = response.json
    check_invariants(client, world)
