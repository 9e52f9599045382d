#!/usr/bin/env python3
"""The service beside the floor (issue 16): throughput, latency and server CPU per request.

    .venv/bin/python benchmarks/floor.py                  # SQLite, then PostgreSQL: ~10 minutes
    .venv/bin/python benchmarks/floor.py --users 2000 --big-group 1000 --duration 1 --repeats 1
    #   ^ a check of the harness: ~70 s per database
    .venv/bin/python benchmarks/floor.py --databases postgresql --json floor.json
    git worktree add ../base HEAD~3 && .venv/bin/python benchmarks/floor.py --baseline ../base
    #   ^ the service against itself at another revision, interleaved the same way

The floor is the minimal Flask + SQLAlchemy app in ../shared/floor/ (--floor): what this stack
can do with only the SQL a good implementation needs. For each database kind, the floor and the
service each get a fresh database of that kind (SQLite files in a temp dir; PostgreSQL scratch
databases made on --postgres-url, a superuser's, and dropped at the end) and run as real
processes on free ports of 127.0.0.1, both from this interpreter's venv: the floor with its own
gunicorn.conf.py (2 sync workers), the service with the repository's gunicorn.conf.py as shipped
(2 workers x 4 threads, JSON access log on stdout, which goes to /dev/null) after `flask db
upgrade`, one bearer token (SCIM_TOKEN_HASHES) and SCIM_RATE_LIMIT far above the load, so that
the limiter runs, and costs, but never refuses.

Both get the same directory: --users users (userName, name, emails, active, externalId), a big
group of --big-group members and --small-groups groups of --small-members members each. The
service's users go in through store/users.py `insert_many` (the rows exactly as a write makes
them), the floor's through its POST /Users; the groups of both through their POST /Groups, the
big group's members through PATCHes of 1,000 members each. PostgreSQL gets a VACUUM ANALYZE
after seeding, as autovacuum would (before it, a fresh database's plans can be very slow: the
big group's full GET took over 5 s, a 503); SQLite nothing. Seeding takes some 35 s at 20,000.

Each row of the table is one wrk run (/usr/bin/wrk, Debian package `wrk`) with
benchmarks/floor_lua/requests.lua, which randomizes every request from a file of the server's
ids and names: a lookup by `userName eq` and a page of 100 at a random startIndex, POST of a new
user (unique names), PUT, PATCH of givenName and PATCH active=false of a random user, POST of a
new group, GET of the big group without its members, and a lookup of a small group by
`displayName eq`. Every row runs at each of --connections (1: wrk -t1 -c1; more: -t2), for
--duration seconds, --repeats times, the servers interleaved: repeat 1 sends a row to the floor
then to the service, repeat 2 to the service then the floor, and so on. After --warmup seconds
per row and server (not counted). Every response's status is checked in Lua: a row whose runs
had non-2xx answers or socket errors says so in its last column, and the details follow the
table.

--baseline DIR compares two revisions of the service instead: the checkout at DIR stands in the
floor's columns, migrated by its own `flask db upgrade`, its users seeded by its own
store/users.py insert_many (in a process of its own, with the same documents) and served by its
own gunicorn.conf.py, from this interpreter's venv. Both are seeded the same way on purpose: the
service against itself, one copy seeded through its API and the other through insert_many, read
at 0.87 to 0.96 of itself with eight connections on SQLite.

Server CPU per request: the utime+stime (/proc/<pid>/stat) the gunicorn workers (the master's
children) used during the wrk run, plus, on PostgreSQL, that of the database's backends
(pg_stat_activity; PostgreSQL must run on this machine), divided by the requests answered.

Prints, per database and connection count: req/s of each, the ratio service/floor (median over
the repeats, and its min-max over them: the machine's noise), p50/p95/p99 of each (ms), and CPU
ms per request of each with their ratio; medians over the repeats. --json FILE writes every
run's raw numbers. A run takes about (2 databases x 9 rows x 2 servers) x (connection counts x
repeats x (duration + 0.1 s) + warmup) plus seeding: 9.5 minutes with the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Whose app this process imports: this checkout's, or a --baseline's when this file runs there
# to seed it (seed_baseline_users).
sys.path.insert(0, os.environ.get("FLOOR_SERVICE_ROOT", str(ROOT)))

from sqlalchemy import Engine, create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app import create_app, tenancy, validate  # noqa: E402
from app.auth import token_hash  # noqa: E402
from app.db import db  # noqa: E402
from app.schema.core import USER_RESOURCE, USER_URN  # noqa: E402
from app.store import users as users_store  # noqa: E402

GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_FLOOR = ROOT.parent / "shared" / "floor"
LUA = ROOT / "benchmarks" / "floor_lua" / "requests.lua"
TOKEN = "floor-benchmark-token-0123456789"
RATE_LIMIT = "10000000 per minute"
PREFIX = "/scim/v2"
CHUNK = 5000  # users per insert_many
MEMBERS_PER_PATCH = 1000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None}


@dataclass(frozen=True)
class Row:
    key: str  # the Lua script's request kind
    label: str


ROWS = (
    Row("lookup", 'GET /Users?filter=userName eq "…"'),
    Row("page", "GET /Users?startIndex=<random>&count=100"),
    Row("post_user", "POST /Users"),
    Row("put_user", "PUT /Users/{id}"),
    Row("patch_given", "PATCH /Users/{id} givenName"),
    Row("patch_active", "PATCH /Users/{id} active=false"),
    Row("post_group", "POST /Groups"),
    Row("get_big_group", "GET /Groups/{big}?excludedAttributes=members"),
    Row("group_lookup", 'GET /Groups?filter=displayName eq "…"'),
)
TARGETS = ("floor", "service")


# --- the directory both servers get -----------------------------------------------------------

GIVEN_NAMES = (
    "Ada Alan Alice Amir Anna Arjun Ben Bjorn Carla Chen David Elena Emma Farid Grace Hana "
    "Hugo Ines Ivan James Jonas Julia Karen Kenji Lena Leon Lucia Mark Mei Nadia Noah Olga "
    "Omar Paul Priya Rosa Sam Sofia Tom Yuki Zoe"
).split()
FAMILY_NAMES = (
    "Smith Johnson Garcia Miller Davis Martinez Wilson Anderson Taylor Moore Jackson Martin "
    "Lee Perez Thompson White Harris Clark Lewis Walker Young Allen King Wright Scott Nguyen "
    "Hill Green Adams Baker Nelson Mueller Schmidt Rossi Dubois Silva Jensen Kowalski Tanaka "
    "Kim Chen Singh Patel Cohen Novak"
).split()


@dataclass(frozen=True)
class Person:
    user_name: str
    external_id: str
    given: str
    family: str

    def document(self) -> dict[str, Any]:
        return {
            "schemas": [USER_URN],
            "userName": self.user_name,
            "externalId": self.external_id,
            "name": {
                "givenName": self.given,
                "familyName": self.family,
                "formatted": f"{self.given} {self.family}",
            },
            "displayName": f"{self.given} {self.family}",
            "emails": [{"value": self.user_name, "type": "work", "primary": True}],
            "active": True,
        }


def people(count: int) -> list[Person]:
    """`count` users, the same for both servers: ASCII names (the Lua script writes them into
    JSON as they are), a unique userName and externalId each."""
    found = []
    for n in range(count):
        given = GIVEN_NAMES[n % len(GIVEN_NAMES)]
        family = FAMILY_NAMES[(n // len(GIVEN_NAMES)) % len(FAMILY_NAMES)]
        user_name = f"{given.lower()}.{family.lower()}.{n}@example.com"
        found.append(Person(user_name, f"ext-{n:07d}", given, family))
    return found


@dataclass
class Directory:
    """What one server holds, for the Lua script: user ids in the order of `people`."""

    user_ids: list[str]
    big_group: str
    small_groups: list[str]  # displayNames

    def write(self, path: Path, persons: list[Person]) -> None:
        lines = [
            f"u\t{user_id}\t{p.user_name}\t{p.external_id}\t{p.given}\t{p.family}"
            for user_id, p in zip(self.user_ids, persons, strict=True)
        ]
        lines.append(f"b\t{self.big_group}")
        lines += [f"s\t{name}" for name in self.small_groups]
        path.write_text("\n".join(lines) + "\n")


# --- HTTP -------------------------------------------------------------------------------------


def call(method: str, url: str, body: Any = None, *, expected: int) -> Any:
    """One request with the bench token; the parsed JSON answer (None when empty). Any other
    status than `expected` stops the run: seeding must not go wrong silently."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/scim+json")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    if status != expected:
        sys.exit(f"{method} {url}: {status} (expected {expected}): {raw[:500]!r}")
    return json.loads(raw) if raw.strip() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the servers ------------------------------------------------------------------------------


@dataclass
class Server:
    label: str  # "floor" or "service"
    database_url: str
    process: subprocess.Popen[bytes]
    origin: str  # http://127.0.0.1:PORT
    log: Path
    data_file: Path
    database_name: str | None = None  # PostgreSQL's, for its backends' CPU

    @property
    def base(self) -> str:
        return self.origin + PREFIX

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until_serving(server: Server) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{server.label} did not start: {server.log.read_text()[-3000:]}")
        request = urllib.request.Request(f"{server.base}/ServiceProviderConfig")
        request.add_header("Authorization", f"Bearer {TOKEN}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)


def start_floor(floor: Path, database_url: str, work: Path) -> Server:
    """The floor's tables (`python app.py`), then gunicorn with its own gunicorn.conf.py."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOOR_")}
    env.update(FLOOR_DB_URL=database_url, BENCH_TOKEN=TOKEN)
    subprocess.run([sys.executable, "app.py"], cwd=floor, env=env, check=True)
    port = free_port()
    log = work / "floor.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
            + ["-b", f"127.0.0.1:{port}", "app:app"],
            cwd=floor,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server("floor", database_url, process, f"http://127.0.0.1:{port}", log, work / "f")
    wait_until_serving(server)
    return server


def service_settings(database_url: str, **settings: str) -> dict[str, str]:
    """Every variable .env.example names, empty (the shipped defaults; a developer's .env
    cannot leak in), then the database, the bench token, the rate limit and `settings`."""
    names = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    env = dict.fromkeys(names, "")
    env.update(
        DATABASE_URL=database_url,
        SCIM_TOKEN_HASHES=token_hash(TOKEN),
        SCIM_RATE_LIMIT=RATE_LIMIT,
        **settings,
    )
    return env


def migrate_service(database_url: str, work: Path, root: Path = ROOT) -> None:
    """`flask db upgrade` of the checkout at `root`, as in production."""
    outside = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=root,
        env=outside | service_settings(database_url),
        capture_output=True,
        text=True,
    )
    (work / "migrate.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"flask db upgrade failed: {done.stderr[-3000:]}")


def start_service(
    database_url: str, work: Path, root: Path = ROOT, label: str = "service"
) -> Server:
    """gunicorn with the gunicorn.conf.py of the checkout at `root`, as shipped; `label` says
    which column of the table it is (a --baseline stands where the floor would)."""
    port = free_port()
    outside = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    env = outside | service_settings(database_url, SCIM_BIND=f"127.0.0.1:{port}")
    log = work / f"{label}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,  # the access lines, one per request, as in production
            stderr=log_file,
        )
    origin = f"http://127.0.0.1:{port}"
    server = Server(label, database_url, process, origin, log, work / label[0])
    wait_until_serving(server)
    return server


# --- seeding ----------------------------------------------------------------------------------


def seed_service_users(database_url: str, persons: list[Person]) -> list[str]:
    """Through store/users.py insert_many, 5,000 users per INSERT, into the default tenant."""
    app = create_app(service_settings(database_url, SCIM_DB_TIMEOUT_SECONDS="120"))
    created = datetime.now(UTC) - timedelta(days=365)
    ids: list[str] = []
    with app.app_context(), tenancy.entered(tenancy.DEFAULT_TENANT_ID):
        for start in range(0, len(persons), CHUNK):
            chunk = persons[start : start + CHUNK]
            documents = [validate.resource(USER_RESOURCE, p.document()).document for p in chunk]
            times = [created + timedelta(seconds=start + n) for n in range(len(chunk))]
            ids += users_store.insert_many(USER_RESOURCE, documents, times)
            db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return ids


def seed_baseline_users(
    root: Path, database_url: str, persons: list[Person], work: Path
) -> list[str]:
    """The --baseline's users, seeded as the service's are: seed_service_users, run by this
    file in a process that imports the baseline's app (FLOOR_SERVICE_ROOT)."""
    given = work / "baseline-users.json"
    given.write_text(json.dumps({"url": database_url, "persons": [asdict(p) for p in persons]}))
    outside = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    done = subprocess.run(
        [sys.executable, __file__, "--seed-users", str(given)],
        cwd=root,
        env=outside | {"FLOOR_SERVICE_ROOT": str(root)},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(
            f"seeding the baseline at {root} failed (it needs app.store.users.insert_many, "
            f"from issue 16 on): {done.stderr[-3000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def seed_floor_users(server: Server, persons: list[Person]) -> list[str]:
    """Through the floor's POST /Users, a few at a time."""

    def post(person: Person) -> str:
        return call("POST", f"{server.base}/Users", person.document(), expected=201)["id"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(post, persons))


def seed_groups(server: Server, user_ids: list[str], args: argparse.Namespace) -> Directory:
    """The same groups on either server, through POST /Groups and PATCH: the big group holds
    the first --big-group users; small group n the --small-members users after n x that."""
    big = call(
        "POST",
        f"{server.base}/Groups",
        {"schemas": [GROUP_URN], "displayName": "Everyone"},
        expected=201,
    )["id"]
    for start in range(0, args.big_group, MEMBERS_PER_PATCH):
        members = [
            {"value": u} for u in user_ids[start : min(start + MEMBERS_PER_PATCH, args.big_group)]
        ]
        body = {
            "schemas": [PATCH_URN],
            "Operations": [{"op": "add", "path": "members", "value": members}],
        }
        call("PATCH", f"{server.base}/Groups/{big}", body, expected=204)
    names = []
    for n in range(args.small_groups):
        name = f"Team {n:03d}"
        first = (n * args.small_members) % max(1, len(user_ids) - args.small_members)
        members = [{"value": u} for u in user_ids[first : first + args.small_members]]
        body = {"schemas": [GROUP_URN], "displayName": name, "members": members}
        call("POST", f"{server.base}/Groups", body, expected=201)
        names.append(name)
    return Directory(user_ids, big, names)


def check_directory(
    server: Server, directory: Directory, persons: list[Person], args: argparse.Namespace
) -> None:
    """The seeded directory answers as it should, so that both servers hold the same one."""
    middle = len(persons) // 2
    query = urllib.parse.quote(f'userName eq "{persons[middle].user_name}"')
    found = call("GET", f"{server.base}/Users?filter={query}", expected=200)["Resources"]
    page = call("GET", f"{server.base}/Users?startIndex=1&count=100", expected=200)["Resources"]
    big = call("GET", f"{server.base}/Groups/{directory.big_group}", expected=200)
    query = urllib.parse.quote(f'displayName eq "{directory.small_groups[0]}"')
    small = call("GET", f"{server.base}/Groups?filter={query}", expected=200)["Resources"]
    checks = {
        "a lookup by userName finds its user": [u["id"] for u in found]
        == [directory.user_ids[middle]],
        "a page holds 100 users": len(page) == 100,
        "the big group has all its members": len(big.get("members", [])) == args.big_group,
        "a small group's lookup finds it, with its members": len(small) == 1
        and len(small[0].get("members", [])) == args.small_members,
    }
    if failed := [check for check, passed in checks.items() if not passed]:
        sys.exit(f"{server.label}, seeded: not true that {'; '.join(failed)}")


def vacuum_analyze(database_url: str) -> None:
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


# --- CPU --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # fields[0] is the state, the 3rd field
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if path.exists():
        return [int(child) for child in path.read_text().split()]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU time of a server's workers and, on PostgreSQL, of its database's backends."""

    def __init__(self, admin: Engine | None) -> None:
        self.admin = admin  # None: no PostgreSQL backends to count (SQLite, or not local)

    def backends(self, database: str) -> list[int]:
        assert self.admin is not None
        with self.admin.connect() as connection:
            rows = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": database}
            )
            return [pid for (pid,) in rows]

    def snapshot(self, server: Server) -> dict[str, dict[int, float]]:
        shot: dict[str, dict[int, float]] = {"workers": {}, "database": {}}
        for pid in children(server.process.pid):
            if (cpu := cpu_seconds(pid)) is not None:
                shot["workers"][pid] = cpu
        if self.admin is not None and server.database_name:
            for pid in self.backends(server.database_name):
                if (cpu := cpu_seconds(pid)) is not None:
                    shot["database"][pid] = cpu
        return shot

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> tuple[float, int]:
        """CPU seconds used between the snapshots, and how many processes exited in between
        (their last CPU is lost: the figure is then a lower bound)."""
        used = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
        return used, len(set(before) - set(after))


# --- wrk --------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One wrk run: a row, a server, a connection count, a repeat."""

    database: str
    connections: int
    repeat: int
    row: str
    target: str
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    worker_cpu_s: float = 0.0
    database_cpu_s: float | None = None
    cpu_ms_per_request: float | None = None
    exited_processes: int = 0
    non_2xx: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def run_wrk(
    wrk: str, server: Server, meter: CpuMeter, cell: Cell, duration: int, run_id: str
) -> Cell:
    threads = 1 if cell.connections == 1 else 2
    prefix = f"{run_id}{cell.repeat}c{cell.connections}{cell.target[0]}"
    command = [wrk, f"-t{threads}", f"-c{cell.connections}", f"-d{duration}s", "--timeout", "30s"]
    command += ["-s", str(LUA), server.origin, "--", cell.row, str(server.data_file), prefix, TOKEN]
    before = meter.snapshot(server)
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120)
    after = meter.snapshot(server)
    if done.returncode != 0 or "BENCH " not in done.stdout:
        sys.exit(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    for line in done.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "BENCH":
            numbers = {k: int(v) for k, v in (pair.split("=") for pair in rest.split())}
            cell.requests = numbers["requests"]
            cell.seconds = numbers["duration_us"] / 1e6
            cell.rps = round(cell.requests / cell.seconds, 2) if cell.seconds else 0.0
            cell.p50_ms, cell.p95_ms, cell.p99_ms, cell.max_ms = (
                numbers[name] / 1000 for name in ("p50_us", "p95_us", "p99_us", "max_us")
            )
            cell.non_2xx = numbers["bad"]
            cell.socket_errors = {
                name: numbers[name]
                for name in ("connect", "read", "write", "timeout")
                if numbers[name]
            }
        elif kind == "BENCHSTATUS":
            status, count = rest.split()
            cell.statuses[status] = cell.statuses.get(status, 0) + int(count)
        elif kind == "BENCHFIRST":
            cell.first_errors.append(rest)
    workers, exited = CpuMeter.used(before["workers"], after["workers"])
    cell.worker_cpu_s, cell.exited_processes = round(workers, 3), exited
    total = workers
    if meter.admin is not None and server.database_name:
        database, exited = CpuMeter.used(before["database"], after["database"])
        cell.database_cpu_s = round(database, 3)
        cell.exited_processes += exited
        total += database
    if cell.requests:
        cell.cpu_ms_per_request = round(total * 1000 / cell.requests, 4)
    return cell


# --- report -----------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(
    database: str, connections: int, cells: list[Cell], args: argparse.Namespace
) -> None:
    threads = 1 if connections == 1 else 2
    print(
        f"\n{database}, {connections} connection{'s' if connections > 1 else ''} "
        f"(wrk -t{threads} -c{connections}), {args.duration} s per run, "
        f"median of {args.repeats} repeat{'s' if args.repeats > 1 else ''}; "
        "ratio = service/floor req/s (min-max over repeats); latency and CPU: ms per request, "
        "x = service/floor CPU"
    )
    header = (
        f"{'request':<44}{'floor/s':>9}{'service/s':>10}{'ratio':>7}{'  (min-max)':<13}"
        f"{'floor p50/p95/p99':>19}{'service p50/p95/p99':>22}"
        f"{'CPU floor':>11}{'service':>9}{'x':>6}  errors"
    )
    print(header)
    print("-" * len(header))
    problems = []
    for row in ROWS:
        mine = [c for c in cells if c.row == row.key and c.connections == connections]
        by = {t: [c for c in mine if c.target == t] for t in TARGETS}
        ratios = []
        for repeat in range(1, args.repeats + 1):
            pair = {c.target: c for c in mine if c.repeat == repeat}
            if len(pair) == 2 and pair["floor"].rps:
                ratios.append(pair["service"].rps / pair["floor"].rps)
        rps = {t: median([c.rps for c in by[t]]) for t in TARGETS}
        pct = {
            t: "/".join(
                ms(median([getattr(c, name) for c in by[t]]))
                for name in ("p50_ms", "p95_ms", "p99_ms")
            )
            for t in TARGETS
        }
        cpu = {
            t: median([c.cpu_ms_per_request for c in by[t] if c.cpu_ms_per_request is not None])
            for t in TARGETS
        }
        errors = {t: sum(c.errors for c in by[t]) for t in TARGETS}
        spread = f"  ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else ""
        flagged = "  ".join(f"{t} {n:,}" for t, n in errors.items() if n)
        print(
            f"{row.label:<44}{rps['floor']:>9.0f}{rps['service']:>10.0f}"
            f"{median(ratios):>7.2f}{spread:<13}{pct['floor']:>19}{pct['service']:>22}"
            f"{cpu['floor']:>11.2f}{cpu['service']:>9.2f}{cpu['service'] / cpu['floor']:>6.1f}"
            f"  {'ERRORS ' + flagged if flagged else ''}".rstrip()
        )
        problems += [c for c in mine if c.errors]
    for c in problems:
        print(
            f"  ! {c.target}, {c.row}, repeat {c.repeat}: {c.non_2xx:,} non-2xx of "
            f"{c.requests:,} {c.statuses or ''} socket errors {c.socket_errors or 'none'}"
        )
        for first in c.first_errors[:2]:
            print(f"      first: {first[:200]}")
    lost = [c for c in cells if c.connections == connections and c.exited_processes]
    if lost:
        print(f"  note: {len(lost)} run(s) lost a process mid-run: their CPU is a lower bound")


# --- one database kind ------------------------------------------------------------------------


@contextlib.contextmanager
def databases(dialect: str, admin_url: str, work: Path) -> Iterator[tuple[str, str, Engine | None]]:
    """(floor URL, service URL, admin engine or None) of two fresh databases."""
    if dialect == "sqlite":
        yield f"sqlite:///{work}/floor.sqlite3", f"sqlite:///{work}/service.sqlite3", None
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    stem = f"floor_bench_{uuid.uuid4().hex[:10]}"
    names = [f"{stem}_floor", f"{stem}_service"]
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        urls = [
            make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            for name in names
        ]
        yield urls[0], urls[1], admin
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_database(dialect: str, args: argparse.Namespace, wrk: str) -> list[Cell]:
    started = time.perf_counter()
    persons = people(args.users)
    cells: list[Cell] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="floor-bench-")))
        floor_url, service_url, admin = stack.enter_context(
            databases(dialect, args.postgres_url, work)
        )
        if dialect == "postgresql":
            with admin.connect() as connection:  # type: ignore[union-attr]
                version = "PostgreSQL " + connection.execute(text("SHOW server_version")).scalar()
        else:
            version = f"SQLite {sqlite3.sqlite_version}"
        print(f"\n=== {dialect} ({version}); load average at start {load()}", flush=True)

        seeding = time.perf_counter()
        migrate_service(service_url, work)
        service_ids = seed_service_users(service_url, persons)
        service = start_service(service_url, work)
        stack.callback(service.stop)
        if args.baseline is None:
            floor = start_floor(args.floor, floor_url, work)
            stack.callback(floor.stop)
            floor_ids = seed_floor_users(floor, persons)
        else:  # seeded and served exactly as the service is, by its own code
            migrate_service(floor_url, work, root=args.baseline)
            floor_ids = seed_baseline_users(args.baseline, floor_url, persons, work)
            floor = start_service(floor_url, work, root=args.baseline, label="floor")
            stack.callback(floor.stop)
        users_done = time.perf_counter() - seeding
        for server, ids in ((floor, floor_ids), (service, service_ids)):
            directory = seed_groups(server, ids, args)
            if dialect == "postgresql":  # first: without statistics, plans can be very slow
                vacuum_analyze(server.database_url)
                server.database_name = make_url(server.database_url).database
            check_directory(server, directory, persons, args)
            directory.write(server.data_file, persons)
        print(
            f"seeded each: {args.users:,} users, a group of {args.big_group:,} members, "
            f"{args.small_groups} groups of {args.small_members} in "
            f"{time.perf_counter() - seeding:.0f} s (users {users_done:.0f} s)",
            flush=True,
        )

        local = make_url(args.postgres_url).host in LOCAL_HOSTS
        meter = CpuMeter(admin if dialect == "postgresql" and local else None)
        if dialect == "postgresql" and not local:
            print("PostgreSQL is not on this machine: CPU per request counts the workers only")
        servers = {"floor": floor, "service": service}
        run_id = uuid.uuid4().hex[:6]
        if args.warmup:
            for row in ROWS:
                for target in TARGETS:
                    cell = Cell(dialect, 1, 0, row.key, target)
                    run_wrk(wrk, servers[target], meter, cell, args.warmup, run_id)
                    if cell.errors:
                        print(
                            f"  warm-up: {target} {row.key}: {cell.errors} errors "
                            f"{cell.statuses} {cell.first_errors[:1]}",
                            file=sys.stderr,
                        )
        for repeat in range(1, args.repeats + 1):
            order = TARGETS if repeat % 2 else TARGETS[::-1]
            for connections in args.connections:
                for row in ROWS:
                    for target in order:
                        cell = Cell(dialect, connections, repeat, row.key, target)
                        cells.append(
                            run_wrk(wrk, servers[target], meter, cell, args.duration, run_id)
                        )
                print(
                    f"  repeat {repeat}, {connections} connection(s) done "
                    f"({time.perf_counter() - started:.0f} s, load {load()})",
                    file=sys.stderr,
                    flush=True,
                )
        for server in servers.values():
            if server.process.poll() is not None:
                print(f"  ! the {server.label} exited during the run: see its log")
    for connections in args.connections:
        print_table(dialect, connections, cells, args)
    print(
        f"\n{dialect}: {time.perf_counter() - started:.0f} s in all; load average at end {load()}"
    )
    return cells


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}"


def revision(checkout: Path) -> str:
    """The commit a checkout is at (and whether it has changes), for the report."""
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=checkout, capture_output=True, text=True
    )
    return described.stdout.strip() or "(not a git checkout)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES),
        help="a superuser's URL: the scratch databases are made there",
    )
    parser.add_argument(
        "--floor", type=Path, default=DEFAULT_FLOOR, help="the floor app's directory"
    )
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--big-group", type=int, default=10_000, help="members of the big group")
    parser.add_argument("--small-groups", type=int, default=100)
    parser.add_argument("--small-members", type=int, default=10, help="members per small group")
    parser.add_argument(
        "--connections",
        type=lambda raw: [int(n) for n in raw.split(",")],
        default=[1, 8],
        help="comma-separated (default 1,8)",
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds per row and server (0: none)"
    )
    parser.add_argument("--json", type=Path, help="write every run's numbers there")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of the service at another revision (git worktree add DIR REV): it "
        "takes the floor's place, migrated, seeded and served as the service is, by its own code",
    )
    parser.add_argument("--seed-users", type=Path, help=argparse.SUPPRESS)  # seed_baseline_users
    args = parser.parse_args()
    if args.seed_users is not None:
        given = json.loads(args.seed_users.read_text())
        persons = [Person(**person) for person in given["persons"]]
        print(json.dumps(seed_service_users(given["url"], persons)))
        return
    if args.users < 200 or not 0 < args.big_group <= args.users:
        parser.error("--users at least 200, --big-group between 1 and --users")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not (args.baseline / "wsgi.py").exists():
            parser.error(f"no checkout of the service at {args.baseline} (--baseline)")
    elif not (args.floor / "app.py").exists():
        parser.error(f"no floor app at {args.floor} (--floor)")
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    if not Path(wrk).exists():
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    # The audit's stdout lines of the in-process seeding app: a filter survives its logging set-up.
    logging.getLogger("scim.audit").addFilter(lambda record: False)
    logging.getLogger("app").setLevel(logging.ERROR)

    started = time.perf_counter()
    print(f"machine: {machine()}")
    if args.baseline is None:
        print(
            f"floor: 2 sync workers (its gunicorn.conf.py); service: gunicorn.conf.py as "
            f"shipped, rate limit {RATE_LIMIT!r}; {args.users:,} users"
        )
    else:
        print(
            f"the 'floor' columns are the service at {revision(args.baseline)}, the 'service' "
            f"columns the service at {revision(ROOT)}: both as shipped, rate limit "
            f"{RATE_LIMIT!r}; {args.users:,} users"
        )
    arguments = vars(args) | {
        "postgres_url": make_url(args.postgres_url).render_as_string(hide_password=True),
        "floor": os.path.relpath(args.floor, ROOT),
        "baseline": args.baseline and revision(args.baseline),
        "json": None,
    }
    results: dict[str, Any] = {"machine": machine(), "arguments": arguments}
    for dialect in (d.strip() for d in args.databases.split(",")):
        cells = run_database(dialect, args, wrk)
        results.setdefault("runs", []).extend(asdict(c) for c in cells)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"\ntotal: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
