"""Paging and sorting: startIndex and count (RFC 7644 §3.4.2.4), cursors (RFC 9865), index and
cursor walks under churn, sortBy and sortOrder (RFC 7644 §3.4.2.3) with missing values, on Users,
Groups and the root .search."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from app import paging, protocol, tenancy
from app.db import db, utcnow
from app.models import Group, GroupMember, User
from app.paging import PageRequest
from app.schema.core import USER_RESOURCE
from app.store import pages
from app.store import users as users_store
from tests.conftest import BASE, TOKEN, create_schema, make_app, statements, statements_run
from tests.payloads import (
    GROUP_URN,
    LIST_URN,
    SEARCH_URN,
    USER_URN,
    error,
    found,
    listed_names,
    member,
    search,
    user_payload,
)

# ---------------------------------------------------------------------------------------------
# startIndex and count (RFC 7644 §3.4.2.4)


@pytest.fixture
def numbered(create_user):
    """23 users created in order: u00 ... u22."""
    return [create_user(userName=f"u{i:02d}")["userName"] for i in range(23)]


def page(client, **params):
    response = search(client, **params)
    assert response.status_code == 200, response.json
    body = response.json
    return (body["totalResults"], body["startIndex"], body["itemsPerPage"]), listed_names(response)


def test_start_index_is_one_based(client, numbered):
    assert page(client, startIndex=1, count=3) == ((23, 1, 3), numbered[0:3])
    assert page(client, startIndex=2, count=3) == ((23, 2, 3), numbered[1:4])
    assert page(client, startIndex=22, count=5) == ((23, 22, 2), numbered[21:])
    assert page(client, startIndex=23, count=5) == ((23, 23, 1), numbered[22:])
    assert page(client, startIndex=24, count=5) == ((23, 24, 0), [])
    assert page(client, startIndex=10**20) == ((23, 10**20, 0), [])


@pytest.mark.parametrize("start_index", ["0", "-5", "-99999999999999999999"])
def test_start_index_below_one_is_one(client, numbered, start_index):
    assert page(client, startIndex=start_index, count=2) == ((23, 1, 2), numbered[:2])


def test_count_zero_returns_only_the_total(client, numbered):
    response = search(client, count=0)
    assert response.status_code == 200
    assert response.json == {
        "schemas": [LIST_URN],
        "totalResults": 23,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }
    assert page(client, count=0, filter='userName sw "u1"') == ((10, 1, 0), [])


@pytest.mark.parametrize("count", ["-1", "-100"])
def test_negative_count_is_zero(client, numbered, count):
    assert page(client, count=count) == ((23, 1, 0), [])


def test_default_count_is_100(client, numbered):
    assert page(client) == ((23, 1, 23), numbered)


def test_count_is_clamped_to_the_maximum(client, create_user):
    for i in range(201):
        create_user(userName=f"user{i:03d}")
    assert page(client, count=1000)[0] == (201, 1, 200)
    assert page(client, count=200)[0] == (201, 1, 200)
    assert page(client, count=100)[0] == (201, 1, 100)
    assert page(client, count=1000, startIndex=2)[0] == (201, 2, 200)
    assert page(client, count=1000, startIndex=101)[0] == (201, 101, 101)


def test_total_counts_matches_on_every_page(client, numbered):
    assert page(client, filter='userName sw "u1"', startIndex=4, count=3) == (
        (10, 4, 3),
        ["u13", "u14", "u15"],
    )


@pytest.mark.parametrize(
    ("params", "expected", "counted"),
    [
        # A lookup by a unique key: the page shows where the matches end, so nothing counts.
        ({"filter": 'userName eq "u07"'}, ((1, 1, 1), ["u07"]), False),
        ({"filter": 'userName eq "nobody"'}, ((0, 1, 0), []), False),
        ({"startIndex": 22, "count": 5}, ((23, 22, 2), ["u21", "u22"]), False),
        ({"cursor": "", "filter": 'userName sw "u1"', "count": 20}, ((10, None, 10), None), False),
        # A full page, or one past the end, cannot tell: the matches are counted.
        ({"startIndex": 1, "count": 3}, ((23, 1, 3), ["u00", "u01", "u02"]), True),
        ({"startIndex": 30, "count": 3}, ((23, 30, 0), []), True),
        ({"count": 0}, ((23, 1, 0), []), True),
        ({"cursor": "", "count": 5}, ((23, None, 5), None), True),
    ],
)
def test_total_is_counted_only_when_the_page_cannot_tell(
    client, numbered, params, expected, counted
):
    with statements() as seen:
        response = search(client, **params)
    assert response.status_code == 200, response.json
    body = response.json
    totals = (body["totalResults"], body.get("startIndex"), body["itemsPerPage"])
    assert totals == expected[0]
    if expected[1] is not None:
        assert listed_names(response) == expected[1]
    assert any(_counts(statement) for statement in seen) == counted


def _counts(statement: str) -> bool:
    """Whether a statement counts matches: count(*) of a filter's, or the live counters."""
    return "count(" in statement.lower() or "live_counts" in statement


def test_an_unfiltered_page_reads_its_total_from_the_live_counters(client, numbered, create_group):
    """Tombstones are not counted; an unfiltered list sums the tenant's counter rows
    (models.LiveCount, kept by triggers) instead of counting every live row, in one statement
    as the count was."""
    for name in ("u03", "u04"):
        [user] = search(client, filter=f'userName eq "{name}"').json["Resources"]
        assert client.delete(f"{BASE}/Users/{user['id']}").status_code == 204
    for i in range(3):
        create_group(f"g{i}")
    with statements() as seen:
        users = search(client, count=2).json
        groups = client.get(f"{BASE}/Groups", query_string={"count": 2}).json
    assert (users["totalResults"], groups["totalResults"]) == (21, 3)
    assert not any("count(" in s.lower() for s in seen)
    counts = [s for s in seen if "live_counts" in s]
    assert len(counts) == 2 and all("live_counts.tenant_id =" in s for s in counts)
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT") and "set_config" not in s]
    assert len(selects) == 4  # a page and its total, twice


def test_crawl_sees_every_user_exactly_once(client, numbered):
    seen: list[str] = []
    start = 1
    while True:
        (total, start_index, items), names = page(client, startIndex=start, count=7)
        assert (total, start_index, items) == (23, start, len(names))
        seen += names
        if start + items > total:  # Okta's stop condition
            break
        start += items
    assert seen == numbered
    assert start == 22


def test_crawl_order_is_stable_with_sort_by(client, create_user):
    # Many equal sort keys: the tiebreak must make pages disjoint.
    for i in range(12):
        create_user(userName=f"u{i:02d}", title=("A", "B")[i % 2])
    seen = []
    for start in (1, 6, 11):
        seen += page(client, sortBy="title", startIndex=start, count=5)[1]
    assert sorted(seen) == [f"u{i:02d}" for i in range(12)]
    assert seen[:6] == ["u00", "u02", "u04", "u06", "u08", "u10"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        pytest.param({"startIndex": "abc"}, "startIndex must be an integer, got 'abc'", id="abc"),
        pytest.param({"startIndex": "1.5"}, "startIndex must be an integer, got '1.5'", id="1.5"),
        pytest.param({"count": "ten"}, "count must be an integer, got 'ten'", id="count-ten"),
    ],
)
def test_non_integer_paging_is_400(client, params, detail):
    response = search(client, **params)
    assert response.status_code == 400
    assert response.json == error(400, detail, "invalidValue")


def test_group_list_pagination_and_members(client, create_user, create_group):
    jane = create_user()
    for index in range(5):
        create_group(f"Group {index}", members=[{"value": jane["id"]}])
    first = client.get(f"{BASE}/Groups?startIndex=1&count=2").json
    assert (first["totalResults"], first["itemsPerPage"]) == (5, 2)
    assert first["Resources"][0]["members"] == [member(jane)]
    names = []
    for start in (1, 3, 5):
        page = client.get(f"{BASE}/Groups?startIndex={start}&count=2").json
        names += [g["displayName"] for g in page["Resources"]]
    assert names == [f"Group {i}" for i in range(5)]


# ---------------------------------------------------------------------------------------------
# Cursors (RFC 9865), and index walks under churn


@pytest.fixture
def many_users(create_user):
    def create(count: int, **extra):
        return [
            create_user(userName=f"user{n:03d}@example.com", externalId=None, **extra)["id"]
            for n in range(count)
        ]

    return create


def walk_forward(client, query: dict) -> list[list[str]]:
    pages = []
    params = dict(query, cursor="")
    while True:
        body = client.get(f"{BASE}/Users", query_string=params).json
        assert "startIndex" not in body
        pages.append([u["id"] for u in body["Resources"]])
        if "nextCursor" not in body:
            return pages
        params["cursor"] = body["nextCursor"]


def walk_by_index(client, query: dict, count: int) -> list[str]:
    seen, start = [], 1
    while True:
        body = client.get(
            f"{BASE}/Users", query_string=dict(query, startIndex=start, count=count)
        ).json
        seen += [u["id"] for u in body["Resources"]]
        if start + body["itemsPerPage"] > body["totalResults"] or not body["Resources"]:
            return seen
        start += body["itemsPerPage"]


def test_first_cursor_page_shape(client, many_users):
    many_users(3)
    body = client.get(f"{BASE}/Users?cursor=&count=2").json
    assert body["schemas"] == [LIST_URN]
    assert (body["totalResults"], body["itemsPerPage"]) == (3, 2)
    assert "previousCursor" not in body and "startIndex" not in body
    assert list(body) == ["schemas", "totalResults", "itemsPerPage", "nextCursor", "Resources"]
    last = client.get(f"{BASE}/Users", query_string={"cursor": body["nextCursor"], "count": 2}).json
    assert last["itemsPerPage"] == 1
    assert "nextCursor" not in last and "previousCursor" in last


@pytest.mark.parametrize(
    "sort",
    [
        pytest.param({}, id="default-order"),
        pytest.param({"sortBy": "userName"}, id="userName"),
        pytest.param({"sortBy": "title", "sortOrder": "descending"}, id="title-desc-with-nulls"),
        pytest.param({"sortBy": "active"}, id="boolean-with-ties"),
    ],
)
def test_cursor_walk_equals_index_walk(client, create_user, sort):
    for n in range(23):
        title = None if n % 4 == 0 else f"Title {n % 5}"
        create_user(
            userName=f"u{(n * 7) % 23:02d}@example.com",
            externalId=None,
            title=title,
            active=n % 2 == 0,
        )
    pages = walk_forward(client, dict(sort, count=5))
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    by_cursor = [uid for page in pages for uid in page]
    assert by_cursor == walk_by_index(client, sort, 5)
    assert len(set(by_cursor)) == 23


def test_previous_cursor_goes_back_one_page(client, many_users):
    many_users(12)
    first = client.get(f"{BASE}/Users?cursor=&count=4").json
    second = client.get(
        f"{BASE}/Users", query_string={"cursor": first["nextCursor"], "count": 4}
    ).json
    third = client.get(
        f"{BASE}/Users", query_string={"cursor": second["nextCursor"], "count": 4}
    ).json
    back = client.get(
        f"{BASE}/Users", query_string={"cursor": third["previousCursor"], "count": 4}
    ).json
    assert [u["id"] for u in back["Resources"]] == [u["id"] for u in second["Resources"]]
    front = client.get(
        f"{BASE}/Users", query_string={"cursor": back["previousCursor"], "count": 4}
    ).json
    assert [u["id"] for u in front["Resources"]] == [u["id"] for u in first["Resources"]]
    assert "previousCursor" not in front


def test_cursor_walk_under_churn_never_repeats(client, many_users, create_user):
    ids = many_users(30)
    seen: list[str] = []
    params = {"cursor": "", "count": 4}
    created = 0
    while True:
        body = client.get(f"{BASE}/Users", query_string=params).json
        seen += [u["id"] for u in body["Resources"]]
        # Between pages, another client deletes a user not yet seen and one already seen,
        # and creates a new one.
        unseen = [i for i in ids if i not in seen]
        if unseen:
            assert client.delete(f"{BASE}/Users/{unseen[-1]}").status_code == 204
            ids.remove(unseen[-1])
        if seen and seen[0] in ids:
            client.delete(f"{BASE}/Users/{seen[0]}")
            ids.remove(seen[0])
        create_user(userName=f"late{created}@example.com", externalId=None)
        created += 1
        if "nextCursor" not in body:
            break
        params["cursor"] = body["nextCursor"]
    assert len(seen) == len(set(seen))


def test_index_walk_under_churn_never_repeats(client, many_users, create_user):
    ids = many_users(30)
    seen: list[str] = []
    start = 1
    for created in range(20):
        body = client.get(f"{BASE}/Users?startIndex={start}&count=4").json
        seen += [u["id"] for u in body["Resources"]]
        create_user(userName=f"late{created}@example.com", externalId=None)
        unseen = [i for i in ids if i not in seen]
        if unseen:
            client.delete(f"{BASE}/Users/{unseen[-1]}")
            ids.remove(unseen[-1])
        if not body["Resources"]:
            break
        start += body["itemsPerPage"]
    assert len(seen) == len(set(seen))


def test_tampered_cursor_is_400_invalid_cursor(client, many_users):
    many_users(3)
    cursor = client.get(f"{BASE}/Users?cursor=&count=1").json["nextCursor"]
    forged = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    for bad in (forged, "not-a-cursor", "x.y", "."):
        response = client.get(f"{BASE}/Users", query_string={"cursor": bad})
        assert response.status_code == 400
        assert response.json == error(
            400,
            "The cursor is not one this service issued; start again with cursor=",
            "invalidCursor",
        )


def test_cursor_of_another_query_is_400(client, many_users):
    many_users(3)
    cursor = client.get(f"{BASE}/Users?cursor=&count=1").json["nextCursor"]
    response = client.get(
        f"{BASE}/Users", query_string={"cursor": cursor, "filter": "active eq true"}
    )
    assert response.json == error(
        400,
        "The cursor belongs to a different query; keep filter and sorting unchanged",
        "invalidCursor",
    )


def test_expired_cursor_is_400_expired_cursor(client, many_users):
    many_users(2)
    first = client.get(f"{BASE}/Users?cursor=&count=1").json
    query = paging.fingerprint("User", None, None, False)
    old = paging.encode(
        paging.Cursor(("x",)),
        query=query,
        secret=protocol.cursor_secret(),  # the key of the caller's tenant, as the service signs
        now=time.time() - 3601,
    )
    assert first["nextCursor"]
    response = client.get(f"{BASE}/Users", query_string={"cursor": old})
    assert response.status_code == 400
    assert response.json == error(
        400, "The cursor expired after 3600 seconds; start again with cursor=", "expiredCursor"
    )


def test_cursor_and_start_index_together_is_400(client):
    response = client.get(f"{BASE}/Users?cursor=&startIndex=1")
    assert response.json == error(
        400, "Use either startIndex or cursor, not both (RFC 9865 §2)", "invalidValue"
    )


def test_groups_take_cursors_too(client):
    for n in range(5):
        client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": f"G{n}"})
    first = client.get(f"{BASE}/Groups?cursor=&count=3&excludedAttributes=members").json
    rest = client.get(
        f"{BASE}/Groups",
        query_string={"cursor": first["nextCursor"], "count": 3, "excludedAttributes": "members"},
    ).json
    names = [g["displayName"] for g in first["Resources"] + rest["Resources"]]
    assert names == [f"G{n}" for n in range(5)]


def test_search_cursor_walk(client, many_users):
    many_users(5)
    body = {"schemas": [SEARCH_URN], "cursor": "", "count": 3}
    first = client.post(f"{BASE}/Users/.search", json=body).json
    second = client.post(f"{BASE}/Users/.search", json=dict(body, cursor=first["nextCursor"])).json
    assert first["itemsPerPage"] + second["itemsPerPage"] == 5
    assert "nextCursor" not in second


# ---------------------------------------------------------------------------------------------
# Sorting (RFC 7644 §3.4.2.3)


@pytest.fixture
def mixed_case(create_user):
    for name in ("bob", "Alice", "carol", "Dave", "alfred"):
        create_user(userName=name)


def test_sort_by_username_ascending_is_case_insensitive(client, mixed_case):
    expected = ["alfred", "Alice", "bob", "carol", "Dave"]
    assert listed_names(search(client, sortBy="userName")) == expected
    assert listed_names(search(client, sortBy="userName", sortOrder="ascending")) == expected
    assert listed_names(search(client, sortBy="USERNAME", sortOrder="Ascending")) == expected


def test_sort_by_username_descending(client, mixed_case):
    response = search(client, sortBy="userName", sortOrder="descending")
    assert listed_names(response) == ["Dave", "carol", "bob", "Alice", "alfred"]


def test_sort_then_paginate(client, mixed_case):
    response = search(client, sortBy="userName", startIndex=2, count=2)
    assert listed_names(response) == ["Alice", "bob"]
    assert response.json["totalResults"] == 5


def test_sort_by_other_attributes(client, directory):
    ada, grace, alan, edsger = (
        directory[k]["userName"] for k in ("ada", "grace", "alan", "edsger")
    )
    assert listed_names(search(client, sortBy="name.familyName")) == [edsger, grace, ada, alan]
    by_title = listed_names(search(client, sortBy="title", sortOrder="descending"))
    assert by_title == [grace, edsger, ada, alan]  # absent values first: greater than any
    assert listed_names(search(client, sortBy="meta.created", sortOrder="descending")) == [
        edsger,
        alan,
        grace,
        ada,
    ]
    urn_sorted = listed_names(search(client, sortBy=f"{USER_URN}:displayName"))
    assert urn_sorted == [ada, alan, edsger, grace]


def sorted_names(client, resource: str, sort_by: str, order: str = "ascending") -> list[str]:
    query = {"sortBy": sort_by, "sortOrder": order}
    return listed_names(client.get(f"{BASE}/{resource}", query_string=query))


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


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        pytest.param({"sortBy": "shoeSize"}, "sortBy: unknown attribute 'shoeSize'", id="unknown"),
        pytest.param(
            {"sortBy": "name.nick"}, "sortBy: unknown attribute 'name.nick'", id="unknown-sub"
        ),
        pytest.param(
            {"sortBy": "userName", "sortOrder": "up"},
            "sortOrder must be 'ascending' or 'descending', got 'up'",
            id="bad-order",
        ),
    ],
)
def test_bad_sort_is_400(client, create_user, params, detail):
    create_user()
    response = search(client, **params)
    assert response.status_code == 400
    assert response.json == error(400, detail, "invalidValue")


@pytest.mark.parametrize(
    "sort_by", ["userName; DROP TABLE users", "userName desc, 1", "(select 1)", "user_name_key"]
)
def test_injection_in_sort_by_is_400_without_sql(client, create_user, sort_by):
    create_user()
    response = client.get(f"{BASE}/Users", query_string={"sortBy": sort_by})
    assert response.status_code == 400
    assert response.json == error(400, f"sortBy: unknown attribute {sort_by!r}", "invalidValue")
    assert len(found(client, "userName pr")) == 1


# ---------------------------------------------------------------------------------------------
# Missing sort values (RFC 7644 §3.4.2.3): greater than every value, so last when ascending and
# first when descending, on every page of an index or cursor walk, in either direction.


# Ties (B/b, a/A, C/c) and missing values interleaved in creation order.
SORT_VALUES = ["B", None, "a", None, "b", "C", None, "A", "c", None]


def _user_with(path: str, value: str | None) -> dict:
    if path == "title":
        return {"title": value}
    if path == "name.familyName":
        return {"name": {"givenName": "G", "familyName": value} if value else {"givenName": "G"}}
    if path == "displayName":
        return {"displayName": value}
    # emails sorts by the primary element (else the first): the other one must not count.
    assert path == "emails"
    return {
        "emails": [{"value": "0@x"}, {"value": f"{value}@x", "primary": True}] if value else None
    }


def expected_order(ids: list[str], keys: list[str | None], descending: bool) -> list[str]:
    """Present values sorted (ties in creation order), missing ones after them ascending and
    before them descending, themselves in creation order."""
    present = [(k, i) for i, k in zip(ids, keys, strict=True) if k is not None]
    present.sort(key=lambda pair: pair[0], reverse=descending)  # stable: ties stay in order
    missing = [i for i, k in zip(ids, keys, strict=True) if k is None]
    ordered = [i for _, i in present]
    return missing + ordered if descending else ordered + missing


def crawls(client, resource: str, query: dict, count: int) -> dict[str, list[str]]:
    """Every id, in order, by startIndex pages, by nextCursor and back by previousCursor."""
    url = f"{BASE}/{resource}"
    by_index, start = [], 1
    while True:
        body = client.get(url, query_string=dict(query, startIndex=start, count=count)).json
        by_index += [r["id"] for r in body["Resources"]]
        if start + body["itemsPerPage"] > body["totalResults"]:
            break
        start += body["itemsPerPage"]
    forward, params = [], dict(query, cursor="", count=count)
    while True:
        body = client.get(url, query_string=params).json
        assert 0 < body["itemsPerPage"] <= count
        forward += [r["id"] for r in body["Resources"]]
        if "nextCursor" not in body:
            break
        params["cursor"] = body["nextCursor"]
    # From the last page back to the first, each page before the previous one.
    backward = [r["id"] for r in body["Resources"]]
    while "previousCursor" in body:
        body = client.get(url, query_string=dict(params, cursor=body["previousCursor"])).json
        assert body["itemsPerPage"] == count
        backward = [r["id"] for r in body["Resources"]] + backward
    return {"index": by_index, "next": forward, "previous": backward}


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("path", ["title", "name.familyName", "displayName", "emails"])
def test_users_missing_sort_values_are_greatest(client, create_user, path, order):
    ids = [
        create_user(userName=f"u{n}", externalId=None, **_user_with(path, value))["id"]
        for n, value in enumerate(SORT_VALUES)
    ]
    keys = [v.casefold() if v else None for v in SORT_VALUES]
    expected = expected_order(ids, keys, order == "descending")
    query = {"sortBy": path, "sortOrder": order}
    everything = client.get(f"{BASE}/Users", query_string=query).json["Resources"]
    assert [r["id"] for r in everything] == expected
    # Pages of 3 and 4 cross from values to missing ones (or back) mid-page and at an edge.
    for count in (3, 4):
        assert crawls(client, "Users", query, count) == dict.fromkeys(
            ("index", "next", "previous"), expected
        ), count


@pytest.mark.parametrize("order", ["ascending", "descending"])
@pytest.mark.parametrize("path", ["externalId", "members.display"])
def test_groups_missing_sort_values_are_greatest(client, create_user, create_group, path, order):
    ids = []
    for n, value in enumerate(SORT_VALUES):
        if path == "externalId":
            extra = {"externalId": value} if value else {}
        else:
            member = create_user(userName=f"m{n}", displayName=value) if value else None
            extra = {"members": [{"value": member["id"]}] if member else []}
        ids.append(create_group(f"G{n}", **extra)["id"])
    # externalId is caseExact: ordered by code point, "A" < "B" < "C" < "a" < "b" < "c".
    keys = SORT_VALUES if path == "externalId" else [v and v.casefold() for v in SORT_VALUES]
    expected = expected_order(ids, keys, order == "descending")
    query = {"sortBy": path, "sortOrder": order, "excludedAttributes": "members"}
    for count in (3, 4):
        assert crawls(client, "Groups", query, count) == dict.fromkeys(
            ("index", "next", "previous"), expected
        ), count


def test_root_search_sorts_missing_values_first_when_descending(client, create_user):
    present = create_user(userName="a", title="Boss")
    missing = create_user(userName="b", title=None)
    body = {"schemas": [SEARCH_URN], "sortBy": "title", "sortOrder": "descending"}
    found = client.post(f"{BASE}/.search", json=body).json["Resources"]
    assert [r["id"] for r in found] == [missing["id"], present["id"]]


# ---------------------------------------------------------------------------------------------
# pages.fetch: entities or Rows


def test_a_page_of_one_entity_is_entities_and_of_columns_is_rows(numbered):
    """pages.fetch gives the rows of a select of one entity as entities, of several columns as
    Rows named as the columns are; a cursor page's keys (created_at is one) are labelled apart
    from the columns and do not change them."""
    keys = [pages.Key(User.created_at), pages.Key(User.id)]
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        entities = pages.fetch(select(User), keys, PageRequest(1, 5)).rows
        assert [type(row) for row in entities] == [User] * 5
        columns = select(User.id, User.user_name, User.created_at)
        by_index = pages.fetch(columns, keys, PageRequest(2, 5)).rows
        by_cursor = pages.fetch(columns, keys, PageRequest(1, 5, cursor=paging.Cursor()))
        db.session.rollback()
    assert [row.user_name for row in by_index] == numbered[1:6]
    assert [row.user_name for row in by_cursor.rows] == numbered[:5]
    assert [row.id for row in by_cursor.rows] == [row.id for row in entities]
    assert [row.created_at for row in by_cursor.rows] == [row.created_at for row in entities]
    assert by_cursor.next == paging.Cursor((entities[-1].created_at, entities[-1].id))


def test_sqlite_reads_a_pages_groups_by_member_without_statistics(tmp_path):
    """A page past the first reads its users' groups in one statement (member_id IN the page's
    ids). Without statistics for group_members SQLite scanned every membership of the tenant
    through the group index; the member index carries the group id (migration 0016) and is
    chosen either way."""
    app = make_app(f"sqlite:///{tmp_path / 'unplanned.sqlite3'}")
    with app.app_context():
        create_schema()
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        ids = []
        for n in range(200):
            response = client.post(f"{BASE}/Users", json=user_payload(userName=f"m{n}@example.com"))
            ids.append(response.json["id"])
        groups = [("Everyone", ids)] + [(f"Team {n:03}", ids[n::100]) for n in range(100)]
        for name, members in groups:
            body = {
                "schemas": [GROUP_URN],
                "displayName": name,
                "members": [{"value": i} for i in members],
            }
            assert client.post(f"{BASE}/Groups", json=body).status_code == 201
        with db.engine.begin() as connection:
            assert not connection.exec_driver_sql(
                "SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'"
            ).first()  # never analysed: what PRAGMA optimize (SQLite 3.40) leaves alone

        with statements_run("FROM group_members JOIN groups") as seen:
            page = client.get(f"{BASE}/Users", query_string={"startIndex": 101, "count": 100})
        assert page.status_code == 200
        shown = page.json["Resources"]
        assert [user["id"] for user in shown] == ids[100:]
        for n, user in enumerate(shown):
            names = [group["display"] for group in user["groups"]]
            assert names == ["Everyone", f"Team {n:03}"], user
        [(query, parameters)] = seen
        with db.engine.connect() as connection:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}", parameters).all()
        details = [row[-1] for row in plan]
        assert any("ix_group_members_member_id" in detail for detail in details), details
        db.session.remove()
        db.engine.dispose()


def test_a_pages_groups_are_found_by_key_however_many_groups_the_tenant_has(client):
    """A page past the first reads its users' groups in one statement, each membership finding
    its group by the group's key. As a plain join, PostgreSQL hashed every group of the tenant
    to match a page's memberships: 2.4 ms at 10,000 groups, and growing with them."""
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        documents = [
            {"schemas": [USER_URN], "userName": f"p{n:03}@example.com"} for n in range(120)
        ]
        created = [utcnow() + timedelta(milliseconds=n) for n in range(120)]
        users = users_store.insert_many(USER_RESOURCE, documents, created)
        groups = [str(uuid.uuid4()) for _ in range(10_000)]
        db.session.execute(
            insert(Group),
            [
                {
                    "id": group_id,
                    "display_name": f"Team {n:05}",
                    "display_name_key": f"team {n:05}",
                    "created_at": created[0],
                    "last_modified": created[0],
                    "version": 1,
                }
                for n, group_id in enumerate(groups)
            ],
        )
        db.session.execute(
            insert(GroupMember),
            [
                {"group_id": groups[n + k], "member_id": user_id, "member_type": "User"}
                for n, user_id in enumerate(users)
                for k in (0, 1)
            ],
        )
        db.session.commit()
    with db.engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")

    with statements_run("FROM group_members JOIN") as seen:
        page = client.get(f"{BASE}/Users", query_string={"startIndex": 2, "count": 100})
    assert page.status_code == 200
    shown = page.json["Resources"]
    assert [user["id"] for user in shown] == users[1:101]
    for n, user in enumerate(shown, start=1):
        names = [group["display"] for group in user["groups"]]
        assert names == [f"Team {n:05}", f"Team {n + 1:05}"], user
    [(query, parameters)] = seen
    with db.engine.connect() as connection:
        explain = "EXPLAIN QUERY PLAN" if connection.dialect.name == "sqlite" else "EXPLAIN"
        plan = [row[-1] for row in connection.exec_driver_sql(f"{explain} {query}", parameters)]
    assert not [step for step in plan if "Seq Scan on groups" in step or "SCAN groups" in step]


def test_a_first_page_has_its_limit_in_the_sql_on_postgresql_and_bounds_as_parameters_else(
    client, create_user, create_group
):
    """PostgreSQL plans a first page once when its LIMIT is in the SQL (store/pages.py,
    _for_the_page); a later page, and every SQLite page, keeps its bounds as parameters. The
    answers are the same either way."""
    for name in ("ann", "bob", "cy"):
        create_user(userName=name)
    create_group("team")
    postgresql = db.engine.dialect.name == "postgresql"
    with statements() as seen:
        found = client.get(f"{BASE}/Users", query_string={"filter": 'userName eq "bob"'}).json
        groups = client.get(f"{BASE}/Groups", query_string={"filter": 'displayName eq "team"'})
        later = client.get(f"{BASE}/Users", query_string={"startIndex": 2, "count": 1}).json
    assert [u["userName"] for u in found["Resources"]] == ["bob"]
    assert [g["displayName"] for g in groups.json["Resources"]] == ["team"]
    assert (later["totalResults"], later["startIndex"], len(later["Resources"])) == (3, 2, 1)
    pages_read = [s for s in seen if "LIMIT" in s and "ORDER BY" in s]
    assert len(pages_read) == 3, pages_read
    first_user, first_group, second = pages_read
    for statement in (first_user, first_group):
        if postgresql:
            assert statement.rstrip().endswith("LIMIT 100") and "OFFSET" not in statement
        else:
            assert statement.rstrip().endswith("LIMIT ? OFFSET ?")
    assert "OFFSET" in second and "LIMIT 1 " not in second
