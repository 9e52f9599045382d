#!/usr/bin/env python3
"""scripts/conformance's helper: two public SCIM checkers against gunicorn on fresh databases.

    .venv/bin/python scripts/conformance_checks.py --checkers-python .venv/conformance/bin/python
        [sqlite] [postgresql]

For each database kind and each checker (scim2-tester, scim-sanity) it migrates an empty database
(a SQLite file in a temp dir; a scratch PostgreSQL database at TEST_DATABASE_URL or
127.0.0.1:5432, created here and dropped afterwards), starts gunicorn on it with a one-off token
and no rate limit, runs the checker against http://127.0.0.1:<port>/scim/v2, and stops it all.
It prints per checker and database the total, passed, failed and skipped checks, each failure's
name and message, and any 5xx the service answered.

Some failures are known not to be bugs of the service (KNOWN below: what the RFCs leave open, or
what the checkers get wrong); they are printed, marked, and do not make the exit status 1. Any
other failure, a 5xx, a checker that could not run or a service that did not start does.

The same file, run by the checkers' interpreter with --run-scim2-tester URL, is the bridge to
scim2-tester's Python API (it has no CLI of its own): it prints the results as JSON. The checkers
live in a virtual environment of their own, so this half imports nothing from the service.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"  # as tests/databases.py
CHECKER_TIMEOUT = 300  # seconds; each checker takes a few seconds here
TOKEN_VARIABLE = "SCIM_CONFORMANCE_TOKEN"  # how the token reaches the scim2-tester bridge

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_EXTENSION_SCHEMAS = (
    "checker bug: the value is the extension object with a 'schemas' member inside it (from "
    "scim2-models), which RFC 7643 §3.3 does not define for an extension; the service answers "
    "400 for that unknown attribute, and accepts the same operation without it"
)
_MEMBER_DISPLAY = (
    "checker bug: it compares members with strict equality, but the service fills the readOnly "
    "members.display (RFC 7643 §4.2; /Schemas says readOnly) that the check did not send"
)
_PATCH_204 = (
    "left open by RFC 7644 §3.5.2: 'either MUST return a 200 OK ... or MAY return HTTP status "
    "code 204 (No Content)'; Groups answer 204 unless attributes/excludedAttributes is asked for"
)
# (checker, failure name) -> why it is not a bug of the service. Reviewed against the pinned
# versions in requirements-conformance.txt; a checker upgrade may rename or fix them.
KNOWN: dict[tuple[str, str], str] = {
    ("scim2-tester", f"User check_add_attribute {ENTERPRISE}"): _EXTENSION_SCHEMAS,
    ("scim2-tester", f"User check_replace_attribute {ENTERPRISE}"): _EXTENSION_SCHEMAS,
    ("scim2-tester", "Group check_add_attribute members"): _MEMBER_DISPLAY,
    ("scim2-tester", "Group check_replace_attribute members"): _MEMBER_DISPLAY,
    ("scim-sanity", "PATCH /Groups/{id}"): _PATCH_204,
    ("scim-sanity", "PATCH /Groups/{id} remove members"): _PATCH_204,
    ("scim-sanity", "PATCH /Groups/{id} add member"): (
        "left open by the RFCs: the member value is 'fake-member-id', not the id of any "
        "resource (RFC 7643 §4.2: value is 'the \"id\" of a SCIM resource'); the service "
        "answers 400 invalidValue, and the checker would accept only 200 (not even 204)"
    ),
}


@dataclass
class Outcome:
    """One checker's run on one database."""

    checker: str
    version: str = "?"
    total: int = 0
    passed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (name, message)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # SHOULD-level deviations
    server_errors: list[str] = field(default_factory=list)  # "METHOD path status"
    problem: str | None = None  # the checker or the service could not run

    @property
    def unexpected(self) -> list[tuple[str, str]]:
        return [(n, m) for n, m in self.failures if (self.checker, n) not in KNOWN]


# --- the scim2-tester bridge, run by the checkers' interpreter ----------------------------------


def run_scim2_tester(url: str) -> None:
    """Run every check of scim2-tester against `url`; print {"version", "results"} as JSON."""
    from importlib.metadata import version

    from httpx2 import Client
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import check_server

    token = os.environ[TOKEN_VARIABLE]
    with Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        results = check_server(SyncSCIMClient(http))
    rows = []
    for r in results:
        name = f"{r.resource_type} {r.title}" if r.resource_type else str(r.title)
        if isinstance(r.data, dict) and r.data.get("urn"):
            name += f" {r.data['urn']}"  # add/replace/remove checks report once per attribute
        rows.append({"status": r.status.name, "name": name, "reason": str(r.reason or "")})
    json.dump({"version": version("scim2-tester"), "results": rows}, sys.stdout)


# scim2-tester's statuses: MUST-level errors fail; SHOULD-level deviations are warnings.
TESTER_PASSED = {"SUCCESS", "COMPLIANT", "ACCEPTABLE"}
TESTER_FAILED = {"ERROR", "CRITICAL"}


def scim2_tester(python: str, url: str, token: str) -> Outcome:
    outcome = Outcome("scim2-tester")
    run = _run([python, __file__, "--run-scim2-tester", url], {TOKEN_VARIABLE: token})
    if isinstance(run, str):
        outcome.problem = run
        return outcome
    report = json.loads(run.stdout)
    outcome.version = report["version"]
    for row in report["results"]:
        outcome.total += 1
        if row["status"] in TESTER_PASSED:
            outcome.passed += 1
        elif row["status"] == "SKIPPED":
            outcome.skipped += 1
        elif row["status"] in TESTER_FAILED:
            outcome.failures.append((row["name"], row["reason"]))
        else:  # DEVIATION
            outcome.warnings.append((row["name"], row["reason"]))
    return outcome


def scim_sanity(python: str, url: str, token: str) -> Outcome:
    outcome = Outcome("scim-sanity")
    command = [python, "-m", "scim_sanity", "probe", url, "--token", token]
    run = _run([*command, "--i-accept-side-effects", "--json-output"], {})
    if isinstance(run, str):
        outcome.problem = run
        return outcome
    report = json.loads(run.stdout)
    outcome.version = report.get("scim_sanity_version", "?")
    for row in report["results"]:
        outcome.total += 1
        entry = (row["name"], row.get("message") or "")
        if row["status"] == "pass":
            outcome.passed += 1
        elif row["status"] == "skip":
            outcome.skipped += 1
        elif row["status"] == "warn":
            outcome.warnings.append(entry)
        else:  # fail, error
            outcome.failures.append(entry)
    return outcome


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str] | str:
    """A checker's run, whose stdout is JSON; a string saying why when there is none."""
    try:
        run = subprocess.run(
            command,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=CHECKER_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"did not finish within {CHECKER_TIMEOUT} s"
    try:
        json.loads(run.stdout)
    except ValueError:
        return f"exit status {run.returncode}, no JSON report: {run.stderr.strip()[-1500:]}"
    return run  # scim-sanity exits 1 when a check failed: the report says which


CHECKERS = {"scim2-tester": scim2_tester, "scim-sanity": scim_sanity}


# --- databases and the service -----------------------------------------------------------------


@contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """An empty database URL of `kind`; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'conformance-{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES)
    name = f"scim_conformance_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used here; None when it answers."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES)
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except OperationalError as e:
        first_line = str(e.orig or e).strip().splitlines()[0]
        return f"not reachable at TEST_DATABASE_URL or 127.0.0.1:5432 ({first_line})"
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(database_url: str, token: str, port: int) -> dict[str, str]:
    """The environment of `flask db upgrade` and gunicorn: a developer's .env cannot leak in."""
    from app.auth import token_hash

    # Every variable .env.example names is set (empty: its default), as tests/e2e/service.py does.
    names = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("SCIM_")}
    env.update(dict.fromkeys(names, ""))
    env.update(
        DATABASE_URL=database_url,
        SCIM_TOKEN_HASHES=token_hash(token),
        SCIM_RATE_LIMIT="",  # empty disables it: the checkers send bursts with one token
        SCIM_BIND=f"127.0.0.1:{port}",
        SCIM_WORKERS="2",
        SCIM_THREADS="4",
        SCIM_LOG_LEVEL="warning",
        FLASK_APP="wsgi",
    )
    return env


@contextmanager
def service(database_url: str, token: str, workdir: Path) -> Iterator[tuple[str, Path]]:
    """Migrate, then gunicorn (gunicorn.conf.py); yields the /scim/v2 URL and the access log."""
    port = free_port()
    env = service_env(database_url, token, port)
    upgrade = subprocess.run(
        [sys.executable, "-m", "flask", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if upgrade.returncode != 0:
        raise RuntimeError(f"flask db upgrade failed: {upgrade.stderr.strip()[-1500:]}")
    access_log = workdir / f"access-{port}.log"
    error_log = workdir / f"error-{port}.log"
    with access_log.open("wb") as out, error_log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=out,  # access and audit lines, read for 5xx
            stderr=err,
        )
        base = f"http://127.0.0.1:{port}/scim/v2"
        try:
            deadline = time.monotonic() + 30
            while not _answers(f"{base}/ServiceProviderConfig", token):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"gunicorn did not start: {error_log.read_text()[-1500:]}")
                time.sleep(0.2)
            yield base, access_log
        finally:
            process.terminate()
            try:
                process.wait(timeout=40)  # graceful_timeout is 30 s
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str, token: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def server_errors(access_log: Path) -> list[str]:
    """The requests gunicorn answered with a 5xx, from its JSON access lines."""
    found = []
    for line in access_log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("type") != "audit" and int(record.get("status") or 0) >= 500:
            found.append(f"{record.get('method')} {record.get('path')} {record.get('status')}")
    return found


def check(kind: str, checker: str, python: str, workdir: Path) -> Outcome:
    from sqlalchemy.exc import SQLAlchemyError

    token = secrets.token_urlsafe(32)  # this run's only token; never shown
    try:
        with fresh_database(kind, workdir) as database_url:
            with service(database_url, token, workdir) as (base, access_log):
                outcome = CHECKERS[checker](python, base, token)
                outcome.server_errors = server_errors(access_log)
                return outcome
    except (RuntimeError, OSError, SQLAlchemyError) as e:  # reported with the others, not raised
        return Outcome(checker, problem=str(e) or e.__class__.__name__)


# --- the report --------------------------------------------------------------------------------


def print_outcome(kind: str, o: Outcome) -> None:
    counts = f"{o.total} checks: {o.passed} passed, {len(o.failures)} failed, {o.skipped} skipped"
    if o.warnings:
        counts += f", {len(o.warnings)} warnings"
    print(
        f"\n[{kind}] {o.checker} {o.version}: "
        + (f"DID NOT RUN: {o.problem}" if o.problem else counts)
    )
    for name, message in o.failures:
        print(f"  FAILED  {name}")
        print(_indent(message, "          "))
        if why := KNOWN.get((o.checker, name)):
            print(_indent(f"known, not a service bug: {why}", "          "))
    for name, message in o.warnings:
        print(f"  WARNING {name}")
        print(_indent(message, "          "))
    for line in o.server_errors:
        print(f"  5xx     {line}")


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in (text.strip() or "(no message)").splitlines())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("databases", nargs="*", help="sqlite, postgresql (default: both)")
    parser.add_argument("--checkers-python", help="the interpreter that has the checkers")
    parser.add_argument("--run-scim2-tester", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_scim2_tester:
        run_scim2_tester(args.run_scim2_tester)
        return 0
    if not args.checkers_python:
        parser.error("--checkers-python is required")
    if unknown := set(args.databases) - {"sqlite", "postgresql"}:
        parser.error(f"unknown database kind {sorted(unknown)}: sqlite, postgresql")

    sys.path.insert(0, str(ROOT))  # the service's own modules (app.auth), as benchmarks/ do
    kinds = args.databases or ["sqlite", "postgresql"]
    rows: list[tuple[str, Outcome]] = []
    skipped_kinds: list[str] = []
    with tempfile.TemporaryDirectory(prefix="scim-conformance-") as tmp:
        for kind in kinds:
            if kind == "postgresql" and (why := postgres_problem()):
                print(f"\n[postgresql] skipped: PostgreSQL {why}")
                skipped_kinds.append(kind)
                continue
            for checker in CHECKERS:
                outcome = check(kind, checker, args.checkers_python, Path(tmp))
                print_outcome(kind, outcome)
                rows.append((kind, outcome))

    print("\nSummary (failures marked known are not bugs of the service; see above)")
    print(
        f"  {'database':<11} {'checker':<13} {'total':>5} {'passed':>6} {'failed':>6} "
        f"{'known':>5} {'skipped':>7} {'5xx':>4}"
    )
    for kind, o in rows:
        if o.problem:
            print(f"  {kind:<11} {o.checker:<13} did not run")
            continue
        known = len(o.failures) - len(o.unexpected)
        print(
            f"  {kind:<11} {o.checker:<13} {o.total:>5} {o.passed:>6} {len(o.failures):>6} "
            f"{known:>5} {o.skipped:>7} {len(o.server_errors):>4}"
        )
    for kind in skipped_kinds:
        print(f"  {kind:<11} skipped: not reachable")
    if not rows:
        print("Result: nothing was checked")
        return 1
    bad = [o for _, o in rows if o.problem or o.unexpected or o.server_errors]
    if bad:
        print(
            "Result: FAILED (a failure not known to be a checker's, a 5xx, or a checker "
            "that did not run)"
        )
        return 1
    print("Result: no failure but the known ones")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
