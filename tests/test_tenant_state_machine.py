"""Two tenants' random operations, interleaved through the HTTP API, each answered as a model of
that tenant's own operations alone predicts (issue 15, isolation proof), on SQLite and PostgreSQL.

userNames and group displayNames come from small pools shared by both tenants, so the same
names (and the same names in another case) meet within a tenant, where they collide (409), and
across tenants, where they must not. Every id either tenant ever saw, live or deleted, and ids
that never existed, are used by both (the tenant's own live ids most often). After every step
each tenant's GET /Users and GET /Groups equal its model: ids, userNames, displayNames, active,
members and groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from werkzeug.test import TestResponse

from tests.conftest import empty_tables
from tests.payloads import BASE, GROUP_URN, USER_URN, error, patch_payload


@pytest.fixture(scope="module")
def app(app_as_deployed: Flask) -> Flask:
    """SQLite, PostgreSQL, and PostgreSQL as deployed: the service's role, bound by row-level
    security, so that both layers of isolation are proven (tests/conftest.py)."""
    return app_as_deployed


USER_NAMES = (
    "ada@example.com",
    "ADA@example.com",
    "grace@example.com",
    "alan@example.com",
    "edsger@example.com",
)
GROUP_NAMES = ("Engineering", "ENGINEERING", "Sales", "Ops")
DISPLAY_NAMES = ("Ada", "Grace Hopper", "Ω")
TENANTS = ("a", "b")
# Modest, so that each database takes well under a minute.
STATE_MACHINE = settings(
    max_examples=10,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def key(name: str) -> str:
    """How uniqueness compares names (app.fold; the pools are ASCII and Greek, where
    str.casefold agrees)."""
    return name.casefold()


@dataclass
class User:
    user_name: str
    display_name: str | None = None
    active: bool = True


@dataclass
class Group:
    display_name: str
    members: dict[str, str] = field(default_factory=dict)  # member id -> "User" or "Group"


@dataclass
class Directory:
    """What one tenant's own operations alone leave behind."""

    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)  # ids this tenant deleted, in order

    def user_name_taken(self, name: str, own_id: str | None = None) -> bool:
        return any(key(u.user_name) == key(name) for i, u in self.users.items() if i != own_id)

    def group_name_taken(self, name: str, own_id: str | None = None) -> bool:
        return any(key(g.display_name) == key(name) for i, g in self.groups.items() if i != own_id)

    def kind(self, resource_id: str) -> str | None:
        if resource_id in self.users:
            return "User"
        return "Group" if resource_id in self.groups else None

    def reaches(self, start: str, target: str) -> bool:
        """Whether `target` is `start` or nested in it, at any depth."""
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            if current == target:
                return True
            if current in seen or current not in self.groups:
                continue
            seen.add(current)
            todo += [m for m, t in self.groups[current].members.items() if t == "Group"]
        return False

    def refusal(self, group_id: str, member_ids: list[str]) -> dict[str, Any] | None:
        """The 400 for making these members of the group, as the service words it, if any."""
        for member_id in member_ids:
            if self.kind(member_id) is None:
                detail = f"members: {member_id!r} is not an existing user or group"
                return error(400, detail, "invalidValue")
        for member_id in member_ids:
            if self.kind(member_id) != "Group":
                continue
            if member_id == group_id:
                return error(400, "members: a group cannot be a member of itself", "invalidValue")
            if self.reaches(member_id, group_id):
                detail = f"members: adding group {member_id} would make a cycle of nested groups"
                return error(400, detail, "invalidValue")
        return None

    def forget(self, member_id: str) -> None:
        for group in self.groups.values():
            group.members.pop(member_id, None)


def expect(response: TestResponse, status: int, body: dict[str, Any] | None = None) -> None:
    assert response.status_code == status, (
        response.request.method,
        response.request.path,
        response.json,
    )
    if body is not None:
        assert response.json == body


def test_two_tenants_interleaved_each_see_only_their_own(
    tenant_client: Callable[[str], FlaskClient],
):
    class TwoTenants(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            empty_tables()  # every tenant and row of the previous example
            self.clients = {t: tenant_client(f"tenant-{t}") for t in TENANTS}
            self.models = {t: Directory() for t in TENANTS}

        # -- what ids and names a step may use -------------------------------------------------

        def ids(self, data: st.DataObject, tenant: str, kinds: tuple[str, ...]) -> str:
            """An id of these kinds: mostly the tenant's own live ones, else the other tenant's,
            a deleted one (of either), or one that never existed."""
            (other,) = (t for t in TENANTS if t != tenant)
            own, theirs = (self.live(self.models[t], kinds) for t in (tenant, other))
            gone = [*self.models[tenant].gone, *self.models[other].gone]
            # Own first: hypothesis leans towards the first branch, and shrinks towards it.
            choices = [st.sampled_from(ids) for ids in (own, own, theirs, gone) if ids]
            choices.append(st.uuids().map(str))
            return data.draw(st.one_of(choices), label=f"{tenant}'s {'/'.join(kinds)} id")

        @staticmethod
        def live(model: Directory, kinds: tuple[str, ...]) -> list[str]:
            return [
                *(model.users if "User" in kinds else ()),
                *(model.groups if "Group" in kinds else ()),
            ]

        @initialize()
        def same_names_in_both(self) -> None:
            """Each tenant starts with the same two users in the same group."""
            for tenant, client in self.clients.items():
                model = self.models[tenant]
                for name in USER_NAMES[2:4]:
                    body = {"schemas": [USER_URN], "userName": name}
                    response = client.post(f"{BASE}/Users", json=body)
                    expect(response, 201)
                    model.users[response.json["id"]] = User(name)
                members = list(model.users)
                body = {
                    "schemas": [GROUP_URN],
                    "displayName": GROUP_NAMES[0],
                    "members": [{"value": m} for m in members],
                }
                response = client.post(f"{BASE}/Groups", json=body)
                expect(response, 201)
                model.groups[response.json["id"]] = Group(
                    GROUP_NAMES[0], dict.fromkeys(members, "User")
                )

        def user_name(self, data: st.DataObject, tenant: str) -> str:
            """A pool name, or one the other tenant uses now."""
            (other,) = (t for t in TENANTS if t != tenant)
            theirs = sorted(u.user_name for u in self.models[other].users.values())
            return data.draw(st.sampled_from([*USER_NAMES, *theirs]), label="userName")

        def group_name(self, data: st.DataObject, tenant: str) -> str:
            (other,) = (t for t in TENANTS if t != tenant)
            theirs = sorted(g.display_name for g in self.models[other].groups.values())
            return data.draw(st.sampled_from([*GROUP_NAMES, *theirs]), label="displayName")

        # -- users --------------------------------------------------------------------------

        @rule(tenant=st.sampled_from(TENANTS), data=st.data())
        def create_user(self, tenant: str, data: st.DataObject) -> None:
            model, name = self.models[tenant], self.user_name(data, tenant)
            body = {"schemas": [USER_URN], "userName": name}
            response = self.clients[tenant].post(f"{BASE}/Users", json=body)
            if model.user_name_taken(name):
                expect(
                    response, 409, error(409, f"userName '{name}' is already taken", "uniqueness")
                )
                return
            expect(response, 201)
            model.users[response.json["id"]] = User(name)

        @rule(tenant=st.sampled_from(TENANTS), data=st.data())
        def rename_user(self, tenant: str, data: st.DataObject) -> None:
            model = self.models[tenant]
            user_id, name = self.ids(data, tenant, ("User",)), self.user_name(data, tenant)
            body = patch_payload({"op": "replace", "path": "userName", "value": name})
            response = self.clients[tenant].patch(f"{BASE}/Users/{user_id}", json=body)
            if user_id not in model.users:
                expect(response, 404, error(404, f"User {user_id} not found"))
            elif model.user_name_taken(name, user_id):
                expect(
                    response, 409, error(409, f"userName '{name}' is already taken", "uniqueness")
                )
            else:
                expect(response, 200)
                model.users[user_id].user_name = name

        @rule(
            tenant=st.sampled_from(TENANTS),
            data=st.data(),
            active=st.booleans(),
            display=st.sampled_from(DISPLAY_NAMES),
        )
        def patch_user(self, tenant: str, data: st.DataObject, active: bool, display: str) -> None:
            model, user_id = self.models[tenant], self.ids(data, tenant, ("User",))
            body = patch_payload(
                {"op": "replace", "path": "active", "value": active},
                {"op": "replace", "path": "displayName", "value": display},
            )
            response = self.clients[tenant].patch(f"{BASE}/Users/{user_id}", json=body)
            if user_id not in model.users:
                expect(response, 404, error(404, f"User {user_id} not found"))
                return
            expect(response, 200)
            model.users[user_id].active = active
            model.users[user_id].display_name = display

        @rule(tenant=st.sampled_from(TENANTS), data=st.data())
        def delete_user(self, tenant: str, data: st.DataObject) -> None:
            model, user_id = self.models[tenant], self.ids(data, tenant, ("User",))
            response = self.clients[tenant].delete(f"{BASE}/Users/{user_id}")
            if user_id not in model.users:
                expect(response, 404, error(404, f"User {user_id} not found"))
                return
            expect(response, 204)
            del model.users[user_id]
            model.forget(user_id)
            model.gone.append(user_id)

        # -- groups -------------------------------------------------------------------------

        @rule(tenant=st.sampled_from(TENANTS), data=st.data())
        def create_group(self, tenant: str, data: st.DataObject) -> None:
            model, name = self.models[tenant], self.group_name(data, tenant)
            members = [
                self.ids(data, tenant, ("User", "Group"))
                for _ in range(data.draw(st.integers(0, 2), label="members"))
            ]
            body = {
                "schemas": [GROUP_URN],
                "displayName": name,
                "members": [{"value": m} for m in members],
            }
            response = self.clients[tenant].post(f"{BASE}/Groups", json=body)
            # The members are looked up before the name (app/store/groups.py create).
            unknown = next((m for m in members if model.kind(m) is None), None)
            if unknown is not None:
                detail = f"members: {unknown!r} is not an existing user or group"
                expect(response, 400, error(400, detail, "invalidValue"))
            elif model.group_name_taken(name):
                detail = f"displayName '{name}' is already taken"
                expect(response, 409, error(409, detail, "uniqueness"))
            else:
                expect(response, 201)
                model.groups[response.json["id"]] = Group(
                    name, {m: model.kind(m) or "" for m in members}
                )

        @rule(tenant=st.sampled_from(TENANTS), data=st.data())
        def rename_group(self, tenant: str, data: st.DataObject) -> None:
            model = self.models[tenant]
            group_id, name = self.ids(data, tenant, ("Group",)), self.group_name(data, tenant)
            body = patch_payload({"op": "replace", "path": "displayName", "value": name})
            response = self.clients[tenant].patch(f"{BASE}/Groups/{group_id}", json=body)
            if group_id not in model.groups:
                expect(response, 404, error(404, f"Group {group_id} not found"))
            elif model.group_name_taken(name, group_id):
                detail = f"displayName '{name}' is already taken"
                expect(response, 409, error(409, detail, "uniqueness"))
            else:
                expect(response, 204)
                model.groups[group_id].display_name = name

        @rule(tenant=st.sampled_from(TENANTS), data=st.data())
        def add_member(self, tenant: str, data: st.DataObject) -> None:
            model = self.models[tenant]
            group_id = self.ids(data, tenant, ("Group",))
            member_id = self.ids(data, tenant, ("User", "Group"))
            body = patch_payload({"op": "add", "path": "members", "value": [{"value": member_id}]})
            response = self.clients[tenant].patch(f"{BASE}/Groups/{group_id}", json=body)
            if group_id not in model.groups:
                expect(response, 404, error(404, f"Group {group_id} not found"))
            elif (refused := model.refusal(group_id, [member_id])) is not None:
                expect(response, 400, refused)
            else:
                expect(response, 204)
                model.groups[group_id].members[member_id] = model.kind(member_id) or ""

        @rule(tenant=st.sampled_from(TENANTS), data=st.data())
        def remove_member(self, tenant: str, data: st.DataObject) -> None:
            model = self.models[tenant]
            group_id = self.ids(data, tenant, ("Group",))
            member_id = self.ids(data, tenant, ("User", "Group"))
            body = patch_payload({"op": "remove", "path": f'members[value eq "{member_id}"]'})
            response = self.clients[tenant].patch(f"{BASE}/Groups/{group_id}", json=body)
            if group_id not in model.groups:
                expect(response, 404, error(404, f"Group {group_id} not found"))
                return
            expect(response, 204)
            model.groups[group_id].members.pop(member_id, None)

        @rule(tenant=st.sampled_from(TENANTS), data=st.data())
        def replace_group(self, tenant: str, data: st.DataObject) -> None:
            """PUT: a name and the whole member list, as Okta's AIW apps send."""
            model = self.models[tenant]
            group_id, name = self.ids(data, tenant, ("Group",)), self.group_name(data, tenant)
            members = [
                self.ids(data, tenant, ("User", "Group"))
                for _ in range(data.draw(st.integers(0, 2), label="members"))
            ]
            body = {
                "schemas": [GROUP_URN],
                "displayName": name,
                "members": [{"value": m} for m in members],
            }
            response = self.clients[tenant].put(f"{BASE}/Groups/{group_id}", json=body)
            if group_id not in model.groups:
                expect(response, 404, error(404, f"Group {group_id} not found"))
            elif model.group_name_taken(name, group_id):
                detail = f"displayName '{name}' is already taken"
                expect(response, 409, error(409, detail, "uniqueness"))
            elif (refused := model.refusal(group_id, members)) is not None:
                expect(response, 400, refused)
            else:
                expect(response, 200)
                model.groups[group_id] = Group(name, {m: model.kind(m) or "" for m in members})

        @rule(tenant=st.sampled_from(TENANTS), data=st.data())
        def delete_group(self, tenant: str, data: st.DataObject) -> None:
            model, group_id = self.models[tenant], self.ids(data, tenant, ("Group",))
            response = self.clients[tenant].delete(f"{BASE}/Groups/{group_id}")
            if group_id not in model.groups:
                expect(response, 404, error(404, f"Group {group_id} not found"))
                return
            expect(response, 204)
            del model.groups[group_id]
            model.forget(group_id)
            model.gone.append(group_id)

        # -- after every step -----------------------------------------------------------------

        @invariant()
        def each_tenant_sees_its_model(self) -> None:
            for tenant, client in self.clients.items():
                model = self.models[tenant]
                assert listed(client, "Users") == {
                    user_id: expected_user(model, user_id) for user_id in model.users
                }, tenant
                assert listed(client, "Groups") == {
                    group_id: expected_group(model, group_id) for group_id in model.groups
                }, tenant

    run_state_machine_as_test(TwoTenants, settings=STATE_MACHINE)


def listed(client: FlaskClient, endpoint: str) -> dict[str, Any]:
    """GET /{endpoint} in full, by id: what the model predicts of each resource."""
    response = client.get(f"{BASE}/{endpoint}", query_string={"count": 1000})
    assert response.status_code == 200, response.json
    resources = response.json["Resources"]
    assert response.json["totalResults"] == len(resources)
    out: dict[str, Any] = {}
    for resource in resources:
        if endpoint == "Users":
            out[resource["id"]] = (
                resource["userName"],
                resource.get("displayName"),
                resource["active"],
                sorted((g["value"], g["display"]) for g in resource.get("groups", [])),
            )
        else:
            out[resource["id"]] = (
                resource["displayName"],
                sorted((m["value"], m["type"], m["display"]) for m in resource.get("members", [])),
            )
    return out


def expected_user(model: Directory, user_id: str) -> tuple[Any, ...]:
    user = model.users[user_id]
    groups = [(i, g.display_name) for i, g in model.groups.items() if user_id in g.members]
    return user.user_name, user.display_name, user.active, sorted(groups)


def expected_group(model: Directory, group_id: str) -> tuple[Any, ...]:
    group = model.groups[group_id]
    members = []
    for member_id, kind in group.members.items():
        if kind == "User":
            user = model.users[member_id]
            members.append((member_id, kind, user.display_name or user.user_name))
        else:
            members.append((member_id, kind, model.groups[member_id].display_name))
    return group.display_name, sorted(members)
