"""The store's tenant scope (app/store/scope.py): every ORM statement sees the entered tenant's
rows only; with no tenant entered it fails instead of seeing every tenant's; the deliberate
cross-tenant path sees all. (The HTTP isolation proof is tests/test_tenant_isolation.py.)"""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, delete, exists, func, select, text, union_all, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import aliased
from sqlalchemy.sql.util import find_tables

from app import tenancy
from app.db import db
from app.models import Group, GroupMember, Token, User, UserValue
from app.schema.core import USER_RESOURCE
from app.store import scope, tenants
from app.store import users as user_store


@pytest.fixture
def two_tenants(client):
    """Tenants a (3 users) and b (5 users), seeded through the store as a write would."""
    made = {}
    for slug, count in (("a", 3), ("b", 5)):
        tenant = tenants.create(slug)
        with tenancy.entered(tenant.id):
            documents = [
                {
                    "schemas": [USER_RESOURCE.schema.id],
                    "userName": f"u{i}@example.com",
                    "emails": [{"value": f"u{i}@example.com"}],
                    "active": True,
                }
                for i in range(count)
            ]
            user_store.insert_many(USER_RESOURCE, documents, [datetime.now(UTC)] * count)
            db.session.commit()
        made[slug] = tenant.id
    return made


COUNTS = [
    pytest.param(lambda: select(func.count()).select_from(User), id="count-select-from"),
    pytest.param(lambda: select(func.count(User.id)), id="count-column"),
    pytest.param(
        lambda: (
            select(func.count()).select_from(UserValue).join(User, User.id == UserValue.user_id)
        ),
        id="join",
    ),
    pytest.param(
        lambda: select(func.count()).where(
            select(func.count(User.id)).where(User.active).scalar_subquery() > 4
        ),
        id="scalar-subquery",
    ),
    # Each statement is confined by the criteria of the tables it touches, found wherever
    # they are (app/store/scope.py): inside IN, behind an alias, in one arm of a UNION.
    pytest.param(
        lambda: (
            select(func.count()).select_from(User).where(User.id.in_(select(UserValue.user_id)))
        ),
        id="in-subquery",
    ),
    pytest.param(lambda: select(func.count()).select_from(aliased(User)), id="aliased"),
    pytest.param(lambda: _joined_to_an_alias(), id="join-alias"),
    pytest.param(
        lambda: select(func.count()).select_from(
            union_all(select(User.id), select(UserValue.user_id)).subquery()
        ),
        id="union",
    ),
]


def _joined_to_an_alias():
    # As the console reads a group's members: each row joined to an alias of another model.
    owner = aliased(User)
    return (
        select(func.count())
        .select_from(UserValue)
        .outerjoin(owner, owner.id == UserValue.user_id)
        .where(owner.id.is_not(None))
    )


# What each query answers for tenant a (3 users), b (5) and across both.
EXPECTED = {
    "count-select-from": {"a": 3, "b": 5, "all": 8},
    "count-column": {"a": 3, "b": 5, "all": 8},
    "join": {"a": 3, "b": 5, "all": 8},
    "scalar-subquery": {"a": 0, "b": 1, "all": 1},
    "in-subquery": {"a": 3, "b": 5, "all": 8},
    "aliased": {"a": 3, "b": 5, "all": 8},
    "join-alias": {"a": 3, "b": 5, "all": 8},
    "union": {"a": 6, "b": 10, "all": 16},  # a user and the one email of each
}


@pytest.mark.parametrize("query", COUNTS)
def test_a_tenant_counts_only_its_own_rows(two_tenants, query, request):
    seen = {}
    for slug, tenant_id in two_tenants.items():
        with tenancy.entered(tenant_id):
            seen[slug] = db.session.scalar(query())
    with tenancy.across_tenants():
        seen["all"] = db.session.scalar(query())
    assert seen == EXPECTED[request.node.callspec.id.split("-", 1)[1]]


def test_every_tenant_shares_one_compiled_statement_per_query(two_tenants):
    """The tenant's id is a bound parameter of the criteria, not part of the SQL: a thousand
    tenants do not make a thousand compiled copies of each query (nor fill SQLAlchemy's
    cache), and each still sees its own rows."""
    compiled: dict = {}
    lookup = select(User.user_name).where(User.user_name_key == "u4@example.com")
    seen = {}
    for slug, tenant_id in two_tenants.items():
        with tenancy.entered(tenant_id):
            seen[slug] = db.session.scalars(
                lookup, execution_options={"compiled_cache": compiled}
            ).all()
    assert seen == {"a": [], "b": ["u4@example.com"]}
    assert len(compiled) == 1


@pytest.mark.parametrize(
    "statement",
    [
        *COUNTS,
        pytest.param(lambda: select(Group.id).where(exists(select(GroupMember.member_id))), id="e"),
        pytest.param(lambda: update(User).values(active=False), id="update"),
        pytest.param(lambda: delete(Token), id="delete"),
    ],
)
def test_with_no_tenant_entered_a_statement_on_tenant_rows_fails(two_tenants, statement):
    with tenancy.entered(None), pytest.raises(tenancy.NoTenantScope):
        db.session.execute(statement())
    db.session.rollback()


def test_with_no_tenant_entered_a_new_row_cannot_be_created(client):
    with tenancy.entered(None), pytest.raises(StatementError) as refused:
        db.session.add(User(user_name="x", user_name_key="x", document={}, version=1))
        db.session.flush()
    assert isinstance(refused.value.orig, tenancy.NoTenantScope)
    db.session.rollback()


def test_updates_and_deletes_touch_only_the_entered_tenant(two_tenants):
    with tenancy.entered(two_tenants["a"]):
        assert db.session.execute(update(User).values(active=False)).rowcount == 3
        db.session.commit()
    with tenancy.entered(two_tenants["b"]):
        assert db.session.scalar(select(func.count()).where(User.active.is_(False))) == 0
        assert db.session.execute(delete(User)).rowcount == 5
        db.session.commit()
    with tenancy.entered(two_tenants["a"]):
        assert db.session.scalar(select(func.count(User.id))) == 3


def test_postgresql_row_level_security_setting_follows_the_scope_within_a_transaction(
    two_tenants, database_url
):
    """A console page may read one tenant, then all, in one transaction: each statement runs
    under the setting of the scope it ran in (row-level security reads it; see
    tests/test_row_level_security.py for the policies themselves)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row-level security is PostgreSQL's")
    current = text("SELECT current_setting('scim.tenant', true)")
    seen = []
    with tenancy.entered(two_tenants["a"]):
        seen.append(db.session.scalar(current))
        db.session.scalar(select(func.count(User.id)))
        with tenancy.across_tenants():
            seen.append(db.session.scalar(current))
            with tenancy.entered(two_tenants["b"]):
                seen.append(db.session.scalar(current))
        assert db.session().in_transaction()  # still the one transaction
        seen.append(db.session.scalar(current))
    db.session.commit()
    assert seen == [str(two_tenants["a"]), "*", str(two_tenants["b"]), str(two_tenants["a"])]


# --- The tables a statement touches, kept per element (scope._Found) -------------------------


def test_the_kept_tables_are_never_another_statements():
    """An element's answer is kept under its id, which Python reuses once the element is gone:
    a new statement at that id must be walked, not given the old one's tables."""
    found = scope._Found(size=64)
    for _ in range(200):
        on_users = select(User.id).where(User.user_name == "x")
        assert found.tables(on_users) == {User.__table__}
        reused = id(on_users)
        del on_users
        on_groups = select(Group.id).where(Group.display_name == "x")
        if id(on_groups) == reused:  # usually: CPython hands the freed memory out again
            assert found.tables(on_groups) == {Group.__table__}
        assert found.tables(on_groups) == {Group.__table__}
        assert found.tables(select(func.count()).select_from(Token)) == {Token.__table__}


def test_an_entry_counts_only_for_its_own_element():
    """Whatever sits under an element's id (here planted: another element's answer) is not
    its answer unless the entry's weak reference is to that very element."""
    found = scope._Found(size=64)
    on_groups = select(Group.id)
    other = select(User.id)
    found.entries[id(on_groups)] = (weakref.ref(other), frozenset({User.__table__}))
    assert found.tables(on_groups) == {Group.__table__}
    assert found.entries[id(on_groups)][0]() is on_groups


def test_the_kept_tables_agree_with_a_fresh_walk():
    """Statements sharing parts (the store's live() with a new WHERE each time) are answered
    from the parts kept and the new parts walked: the same tables as sqlalchemy's find_tables."""
    found = scope._Found(size=16)  # small: entries go while the walk goes on
    member = aliased(User)
    statements = [
        user_store._with_groups_shown(user_store._live_shown()).where(User.user_name_key == "x"),
        user_store.live().where(User.id == "y"),
        select(func.count()).select_from(user_store.live().subquery()),
        select(Group.id).join(GroupMember, GroupMember.group_id == Group.id),
        select(member.id).where(exists().where(UserValue.user_id == member.id)),
        union_all(select(User.id), select(Group.id)),
        update(User).values(active=False),
        delete(UserValue).where(UserValue.user_id == "z"),
        select(text("1")),
    ]
    for _ in range(3):
        for statement in statements:
            walked = find_tables(
                statement, include_joins=True, include_aliases=True, include_crud=True
            )
            assert found.tables(statement) == scope._OWNED_TABLES.intersection(walked)
    assert len(found.entries) <= 16


def test_the_kept_tables_are_bounded():
    found = scope._Found(size=100)
    for i in range(1000):
        found.tables(select(User.id).where(User.id == str(i)))
    assert len(found.entries) <= 100


def test_the_kept_tables_are_right_under_threads():
    """Threads walking statements at once (gthread workers) while entries come and go: every
    answer is its own statement's, and dropping the oldest entries never fails."""
    found = scope._Found(size=32)
    made = [
        (select(User.id).where(User.id == str(i)), {User.__table__})
        if i % 2
        else (select(Group.id).where(Group.id == str(i)), {Group.__table__})
        for i in range(200)
    ]
    wrong = []

    def walk() -> None:
        try:
            for _ in range(20):
                for statement, tables in made:
                    if found.tables(statement) != tables:
                        wrong.append(statement)
        except Exception as e:  # a thread's exception would not fail the test by itself
            wrong.append(e)

    threads = [threading.Thread(target=walk) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_statement_run_again_is_confined_once_for_each_tenant(two_tenants):
    """A statement built once, its values parameters (the store's reads by id), is confined to
    a tenant once and the confined copy run again; each tenant still sees only its own rows."""
    by_name = select(User.user_name).where(User.user_name_key == bindparam("name"))
    seen = []
    for slug in ("a", "b", "a", "b"):
        with tenancy.entered(two_tenants[slug]):
            seen.append(db.session.scalars(by_name, {"name": "u4@example.com"}).all())
    assert seen == [[], ["u4@example.com"], [], ["u4@example.com"]]
    owned = frozenset({User.__table__})
    kept = scope._Scoped(size=8)
    first = kept.scoped(by_name, two_tenants["a"], owned)
    assert kept.entries[(id(by_name), two_tenants["a"])][1] is None  # seen once: no copy kept
    for_a = kept.scoped(by_name, two_tenants["a"], owned)
    assert for_a is not first
    assert kept.scoped(by_name, two_tenants["a"], owned) is for_a
    for_b = [kept.scoped(by_name, two_tenants["b"], owned) for _ in range(3)]
    assert for_b[1] is for_b[2] is not for_a


def test_a_confined_statement_is_never_another_statements():
    """Kept under the statement's id, as _Found: a new statement at a freed id is confined
    anew, and an entry counts only while its weak reference is to that very statement."""
    kept = scope._Scoped(size=64)
    owned = frozenset({User.__table__})
    on_users = select(User.id)
    other = select(User.user_name)
    kept.entries[(id(on_users), 1)] = (weakref.ref(other), other)
    kept.scoped(on_users, 1, owned)
    confined = kept.scoped(on_users, 1, owned)
    assert confined is not other
    assert [c.name for c in confined.selected_columns] == ["id"]


def test_the_confined_statements_are_bounded():
    kept = scope._Scoped(size=100)
    owned = frozenset({User.__table__})
    statements = [select(User.id).where(User.id == str(i)) for i in range(1000)]
    for statement in statements:
        kept.scoped(statement, 1, owned)
    assert len(kept.entries) <= 100


def test_two_tenants_building_their_first_criteria_at_once_each_get_their_own(
    two_tenants, monkeypatch
):
    """SQLAlchemy analyses a criterion's lambda once for every tenant. Two threads that both
    missed that analysis and then stored it at once left the second one holding the first's
    tenant (app/store/scope.py, _BUILDING): here both are held until both have looked, as the
    race had them, in a worker that has analysed no criterion yet."""
    from sqlalchemy.sql import lambdas

    cache = lambdas._closure_per_cache_key
    looked = threading.Barrier(2, timeout=1)

    class HeldCache:
        """The lambda cache, each lookup waiting for the other thread's (up to a second)."""

        def get(self, key, default=None):
            found = cache.get(key, default)
            try:
                looked.wait()
            except threading.BrokenBarrierError:
                pass  # the other thread is not looking now: nothing to hold it for
            return found

        def __contains__(self, key):
            return key in cache

        def __getitem__(self, key):
            return cache[key]

        def __setitem__(self, key, value):
            cache[key] = value

    cache.clear()
    scope._tenant_criteria.cache_clear()
    monkeypatch.setattr(lambdas, "_closure_per_cache_key", HeldCache())
    owned = frozenset({User.__table__})
    built = {}

    def build(slug):
        built[slug] = scope._tenant_criteria(two_tenants[slug], owned)

    threads = [threading.Thread(target=build, args=(slug,)) for slug in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    monkeypatch.undo()
    scope._tenant_criteria.cache_clear()
    with tenancy.across_tenants():
        counts = {
            slug: db.session.scalar(select(func.count()).select_from(User).options(*built[slug]))
            for slug in ("a", "b")
        }
    assert counts == {"a": 3, "b": 5}
