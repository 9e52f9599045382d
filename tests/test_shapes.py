"""A condition's shape and values apart (app/store/shapes.py), which prepared pages run by
(app/store/pages.py): same shape only for the same SQL, every value in its place, none
left over from the condition the statement was made from."""

from __future__ import annotations

import pytest
from sqlalchemy import literal, or_, select
from sqlalchemy.exc import StatementError

from app import tenancy
from app.db import db
from app.filters import sql as filters
from app.filters.grammar import parse
from app.models import User
from app.store import scope, shapes
from tests.conftest import BASE
from tests.payloads import listed_names, search


def test_filters_that_differ_in_values_only_share_a_shape():
    ada = shapes.shape_of(filters.users_where(parse('userName eq "Ada" and emails co "%_"')))
    bob = shapes.shape_of(filters.users_where(parse('userName eq "Bob" and emails co "x"')))
    other = shapes.shape_of(filters.users_where(parse('userName sw "Ada" and emails co "x"')))
    assert ada[0].key == bob[0].key != other[0].key
    assert list(ada[0].values.values()) == ["ada", "emails", "%/%/_%"]
    assert list(bob[0].values.values()) == ["bob", "emails", "%x%"]


def test_a_parameter_used_twice_is_part_of_the_shape():
    """One parameter in two places, or two parameters of equal value: the same SQL, different
    shapes, so that a statement made from one never takes the other's values."""
    version = literal(5)
    shared = or_(User.version == version, User.version > version)
    apart = or_(User.version == 5, User.version > 7)
    (shared_shape, shared_parameters), (apart_shape, _) = (
        shapes.shape_of(shared),
        shapes.shape_of(apart),
    )
    assert shared_shape.key != apart_shape.key
    assert list(shared_shape.values.values()) == [5]
    assert list(apart_shape.values.values()) == [5, 7]
    named = shapes.named(shared, shared_parameters)
    assert str(named.compile()).count(":_shape_0") == 2


def test_a_named_condition_keeps_no_value(client):
    """Its parameters are required: run without values, it fails instead of reusing the values
    of the condition it was made from."""
    condition = filters.users_where(parse('userName eq "ada@example.com"'))
    _, parameters = shapes.shape_of(condition)
    statement = select(User.id).where(shapes.named(condition, parameters))
    with tenancy.entered(tenancy.DEFAULT_TENANT_ID), pytest.raises(StatementError):
        db.session.execute(statement)
    db.session.rollback()


def test_lookups_of_one_shape_run_one_statement_made_once(client, create_user):
    """Ten lookups by different userNames each find their own user through one statement: the
    tenant scope confines nothing new after the first (store/scope.py keeps what it confined
    per statement object; a statement built per request would add one each time)."""
    names = [create_user(userName=f"shape{n}@example.com")["userName"] for n in range(10)]

    def lookup(name: str) -> list[str]:
        response = search(client, filter=f'userName eq "{name}"')
        assert response.status_code == 200, response.json
        return listed_names(response)

    scope._SCOPED.entries.clear()
    assert lookup(names[0]) == [names[0]]
    confined = len(scope._SCOPED.entries)
    assert [lookup(name) for name in names[1:]] == [[name] for name in names[1:]]
    assert len(scope._SCOPED.entries) == confined
    # And pages of every size and place, by the same prepared statement.
    response = client.get(f"{BASE}/Users", query_string={"startIndex": 4, "count": 3})
    assert [user["userName"] for user in response.json["Resources"]] == names[3:6]
