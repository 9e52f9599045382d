"""Push delivery (RFC 8935) to receivers over HTTPS: the worker (app/worker.py) verifies the
receiver's certificate against the CAs OpenSSL trusts, here a CA made in the test that
SSL_CERT_FILE names, as docs/events.md tells operators with a private CA; a certificate it
cannot verify (self-signed, another CA's, another host's) delivers nothing and is retried with
backoff, its reason in `flask events status` (issue 17)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.payloads import BASE, user_payload
from tests.set_receiver import Certificate, authority, issue, running
from tests.test_events_delivery import verify
from tests.test_events_push import AUDIENCE, ISSUER, PROV, add_pusher, rows, wait_until, worker
from tests.test_tenants_cli import ok

VERIFY_FAILED = "TLS: certificate verify failed: "


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Certificate:
    """A private CA the worker trusts: OpenSSL reads SSL_CERT_FILE whenever a context loads
    its default paths, which the worker does for each new connection."""
    ca = authority()
    ca_file, _ = ca.write(tmp_path, "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    return ca


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_receiver_with_a_trusted_certificate_gets_sets_that_verify(app, client, ca, host):
    with running(tls=issue(ca, "127.0.0.1", "localhost")) as receiver:
        url = receiver.url.replace("127.0.0.1", host)
        assert url.startswith(f"https://{host}:")
        hook = add_pusher(app, url)
        user = client.post(f"{BASE}/Users", json=user_payload()).json
        assert client.delete(f"{BASE}/Users/{user['id']}").status_code == 204
        with worker(app):
            receiver.wait_for(lambda: len(receiver.received) == 2)
            wait_until(lambda: [row.state for row in rows()] == ["delivered"] * 2)
    claims = [verify(client, hook, got.token, audience=AUDIENCE) for got in receiver.received]
    assert [c["iss"] for c in claims] == [ISSUER] * 2
    assert [sorted(c["events"]) for c in claims] == [
        [f"{PROV}:activate", f"{PROV}:create:notice"],
        [f"{PROV}:delete"],
    ]
    assert [(row.attempts, row.last_error) for row in rows()] == [(1, None)] * 2


UNVERIFIABLE = [
    pytest.param(
        lambda ca: issue(None, "127.0.0.1", "localhost"),
        "127.0.0.1",
        "self-signed certificate",
        id="self-signed",
    ),
    pytest.param(
        lambda ca: issue(authority("Another CA"), "127.0.0.1", "localhost"),
        "127.0.0.1",
        "unable to get local issuer certificate",
        id="untrusted-ca",
    ),
    pytest.param(
        lambda ca: issue(ca, "receiver.example"),
        "127.0.0.1",
        "IP address mismatch, certificate is not valid for '127.0.0.1'",
        id="ip-mismatch",
    ),
    pytest.param(
        lambda ca: issue(ca, "receiver.example"),
        "localhost",
        "Hostname mismatch, certificate is not valid for 'localhost'",
        id="hostname-mismatch",
    ),
]


@pytest.mark.parametrize(("certificate", "host", "reason"), UNVERIFIABLE)
def test_a_certificate_that_does_not_verify_delivers_nothing_and_is_retried_with_backoff(
    app, client, ca, certificate: Callable[[Certificate], Certificate], host: str, reason: str
):
    base, cap = 0.1, 10.0
    with running(tls=certificate(ca)) as receiver:
        add_pusher(app, receiver.url.replace("127.0.0.1", host))
        client.post(f"{BASE}/Users", json=user_payload())
        with worker(app, retry_base=base, retry_max=cap):
            wait_until(lambda: [row.attempts >= 3 for row in rows()] == [True])
    assert receiver.received == []  # the handshake failed: no SET was sent
    ((row),) = rows()
    assert (row.state, row.last_error) == ("pending", VERIFY_FAILED + reason)
    # The worker's backoff (app/worker.py): the delay doubles with each attempt, jittered
    # within its upper half; never dead at once (SCIM_EVENTS_MAX_AGE_SECONDS is an hour).
    delay = row.next_attempt_at - row.last_attempt_at
    assert delay >= timedelta(seconds=min(cap, base * 2 ** (row.attempts - 1)) / 2 - 0.001)
    status = ok(app, "events", "status")
    line = r"default +hook +push +enabled +0 +1 +1 +0 +\d+s +[-\d]+ [:\d]+ UTC "
    assert re.search(line + re.escape(VERIFY_FAILED + reason) + "$", status, re.M), status


def test_once_the_worker_trusts_the_ca_the_pending_events_go(app, client, tmp_path, monkeypatch):
    private = authority("Private CA")
    with running(tls=issue(private, "127.0.0.1")) as receiver:
        add_pusher(app, receiver.url)
        client.post(f"{BASE}/Users", json=user_payload())
        monkeypatch.setenv("SSL_CERT_FILE", str(authority().write(tmp_path, "other")[0]))
        with worker(app):
            wait_until(lambda: [row.attempts > 0 for row in rows()] == [True])
        ((failed),) = rows()
        unverified = VERIFY_FAILED + "unable to get local issuer certificate"
        assert (failed.state, failed.last_error) == ("pending", unverified)
        # The operator's fix (docs/events.md): the private CA in SSL_CERT_FILE, the worker
        # restarted.
        monkeypatch.setenv("SSL_CERT_FILE", str(private.write(tmp_path, "private")[0]))
        with worker(app):
            receiver.wait_for(lambda: len(receiver.received) == 1)
            wait_until(lambda: [row.state for row in rows()] == ["delivered"])
    # The last error stays, for the operator (as after a 503).
    assert [(row.attempts, row.last_error) for row in rows()] == [(failed.attempts + 1, unverified)]
