"""ETags (RFC 7644 §3.14): weak versions in meta.version and the ETag header, preconditions."""

from __future__ import annotations

import pytest

from tests.conftest import BASE
from tests.payloads import GROUP_URN, error, patch_payload, user_payload

RENAME = patch_payload({"op": "replace", "path": "displayName", "value": "Renamed"})


@pytest.fixture
def user(create_user):
    return create_user()


@pytest.fixture
def group(client):
    return client.post(f"{BASE}/Groups", json={"schemas": [GROUP_URN], "displayName": "Eng"}).json


def test_every_response_carries_the_version_as_etag(client, user, group):
    url = f"{BASE}/Users/{user['id']}"
    assert client.get(url).headers["ETag"] == 'W/"1"'
    assert client.patch(url, json=RENAME).headers["ETag"] == 'W/"2"'
    assert client.put(url, json=user_payload()).headers["ETag"] == 'W/"3"'
    group_url = f"{BASE}/Groups/{group['id']}"
    add = patch_payload({"op": "add", "path": "members", "value": [{"value": user["id"]}]})
    assert client.patch(group_url, json=add).headers["ETag"] == 'W/"2"'  # a 204 carries it too


@pytest.mark.parametrize("resource", ["user", "group"])
@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_stale_if_match_is_412_and_changes_nothing(client, request, resource, method):
    item = request.getfixturevalue(resource)
    path = "Users" if resource == "user" else "Groups"
    url = f"{BASE}/{path}/{item['id']}"
    body = {
        "put": user_payload()
        if resource == "user"
        else {"schemas": [GROUP_URN], "displayName": "X"},
        "patch": RENAME,
        "delete": None,
    }[method]
    response = client.open(url, method=method.upper(), json=body, headers={"If-Match": 'W/"7"'})
    assert response.status_code == 412
    kind = "User" if resource == "user" else "Group"
    assert response.json == error(
        412, f'{kind} {item["id"]} has changed: its ETag is now W/"1"; read it again'
    )
    after = client.get(url)
    assert after.status_code == 200 and after.headers["ETag"] == 'W/"1"'


@pytest.mark.parametrize("header", ['W/"1"', '"1"', "*", 'W/"9", W/"1"'])
def test_matching_if_match_lets_the_write_through(client, user, header):
    url = f"{BASE}/Users/{user['id']}"
    assert client.patch(url, json=RENAME, headers={"If-Match": header}).status_code == 200
    assert client.delete(url, headers={"If-Match": 'W/"2"'}).status_code == 204


def test_get_with_if_none_match_current_etag_is_304(client, create_user):
    user = create_user()
    url = f"{BASE}/Users/{user['id']}"
    response = client.get(url, headers={"If-None-Match": user["meta"]["version"]})
    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == user["meta"]["version"]
    client.patch(url, json=patch_payload({"op": "replace", "value": {"active": False}}))
    response = client.get(url, headers={"If-None-Match": user["meta"]["version"]})
    assert response.status_code == 200
    assert response.json["active"] is False


def test_if_none_match_on_groups(client, group):
    url = f"{BASE}/Groups/{group['id']}"
    response = client.get(url, headers={"If-None-Match": 'W/"1"'})
    assert (response.status_code, response.data, response.headers["ETag"]) == (304, b"", 'W/"1"')
    assert client.get(url, headers={"If-None-Match": 'W/"0"'}).status_code == 200


def test_projection_keeps_etag_and_location_headers(client):
    created = client.post(f"{BASE}/Users?attributes=userName", json=user_payload())
    assert created.status_code == 201
    assert "meta" in created.json and "location" not in created.json["meta"]
    assert created.headers["Location"] == f"http://localhost{BASE}/Users/{created.json['id']}"
    assert created.headers["ETag"] == 'W/"1"'
    url = f"{BASE}/Users/{created.json['id']}"
    assert client.get(url, query_string={"attributes": "userName"}).headers["ETag"] == 'W/"1"'
    patched = client.patch(f"{url}?excludedAttributes=meta", json=RENAME)
    assert patched.headers["ETag"] == 'W/"2"'


def test_an_etag_minted_for_one_tenant_never_matches_in_another(client, tenant_client, user):
    """The default tenant keeps W/"<version>"; every other tenant's versions carry an opaque tag
    of the tenant, so another tenant's ETag is a stale one (412), never a match."""
    acme = tenant_client("acme")
    theirs = acme.post(f"{BASE}/Users", json=user_payload()).json
    acme_url, our_url = f"{BASE}/Users/{theirs['id']}", f"{BASE}/Users/{user['id']}"
    acme_etag, our_etag = theirs["meta"]["version"], user["meta"]["version"]
    assert our_etag == 'W/"1"'
    assert acme_etag.startswith('W/"') and acme_etag.endswith('.1"') and acme_etag != our_etag
    assert acme.get(acme_url).headers["ETag"] == acme_etag

    assert client.patch(our_url, json=RENAME, headers={"If-Match": acme_etag}).status_code == 412
    stale = acme.patch(acme_url, json=RENAME, headers={"If-Match": our_etag})
    # The 412 names the ETag to send, as this tenant sees it.
    detail = f"User {theirs['id']} has changed: its ETag is now {acme_etag}; read it again"
    assert (stale.status_code, stale.json) == (412, error(412, detail))
    assert acme.get(acme_url, headers={"If-None-Match": our_etag}).status_code == 200
    assert acme.get(acme_url, headers={"If-None-Match": acme_etag}).status_code == 304
    renamed = acme.patch(acme_url, json=RENAME, headers={"If-Match": acme_etag})
    assert renamed.status_code == 200
    assert renamed.headers["ETag"] == acme_etag.replace('.1"', '.2"')

    # meta.version filters compare with the tag each tenant sees.
    escaped = renamed.headers["ETag"].replace('"', '\\"')
    version_filter = {"filter": f'meta.version eq "{escaped}"'}
    found = acme.get(f"{BASE}/Users", query_string=version_filter).json
    assert [r["id"] for r in found["Resources"]] == [theirs["id"]]
    assert client.get(f"{BASE}/Users", query_string=version_filter).json["totalResults"] == 0
