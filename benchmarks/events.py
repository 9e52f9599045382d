#!/usr/bin/env python3
"""Push delivery (issue 17) with gunicorn as shipped: latency from commit to receiver under a
steady write load, and the API's write throughput with events on (one push receiver, the
worker delivering) against off (no receiver, no worker), on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/events.py [--seconds 10] [--rate 100] [--clients 8]
        [--databases sqlite,postgresql] [--postgres-url URL]

Each setup is a fresh, migrated database (a SQLite file; a PostgreSQL scratch database made on
--postgres-url, a superuser's, dropped at the end), the service under gunicorn.conf.py (2
workers x 4 threads) on a free port, and for "on" a push receiver (`flask events receivers
add`) that is a threaded HTTP server answering 202 in a process of its own, `flask events run`
as a process of its own. Everything shares this machine's cores: the worker's and the
receiver's CPU is taken from the API's, as it would be on one host.

- Throughput: --clients threads, each with a kept-alive connection, send writes as fast as
  they are answered for --seconds: a POST /Users, then PATCHes of that user (title; active
  false, then true), round-robin. Off and on take turns twice; the best run of each counts.
- Latency: --rate creates per second, paced, for --seconds; for each, the time from its 201
  (its transaction committed just before) to the arrival of its SET at the receiver; p50, p99
  and the maximum. Every SET must arrive.

Targets: p50 < 1 s, p99 < 5 s; throughput on >= 0.9x off.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from tests.e2e.service import migrate, service_env  # noqa: E402
from tests.net import free_port  # noqa: E402

TOKEN = "test-token-0123456789"  # tests.conftest.TOKEN: service_env configures its hash
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


# The receiver runs as a process of its own, so that its work never competes for this
# process's interpreter lock with the clients: a threaded HTTP server answering 202, printing
# the SET's subject and its arrival time (CLOCK_MONOTONIC, the same in every process).
RECEIVER = """
import json, sys, time, jwt
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        now = time.monotonic()
        uri = jwt.decode(body, options={"verify_signature": False})["sub_id"]["uri"]
        print(uri, now, flush=True)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
server.daemon_threads = True
server.serve_forever()
"""


class Receiver:
    """A push receiver answering 202 (a process), noting when each resource's first SET
    arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/events"
        self.process = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            uri, at = line.split()
            self.arrived.setdefault(uri, float(at))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@contextmanager
def service(database_url: str, work: Path, events: bool):
    """gunicorn on a fresh migrated database; with `events`, a receiver and the worker."""
    migrate(database_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}/scim/v2"
    env = service_env(database_url, port, SCIM_LOG_LEVEL="warning", SCIM_BASE_URL=base)
    receiver = Receiver() if events else None
    processes = []
    with (work / f"log-{port}.txt").open("wb") as log:
        if receiver is not None:
            subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", "events", "receivers", "add",
                 "app", "--url", receiver.url],
                cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )  # fmt: skip
        )
        if receiver is not None:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "wsgi", "events", "run"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )  # fmt: skip
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                Client(port).call("GET", "/scim/v2/ServiceProviderConfig")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"gunicorn did not start: {log.name}") from None
                time.sleep(0.2)
        try:
            yield port, receiver
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)
            if receiver is not None:
                receiver.close()


class Client:
    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/scim+json"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


def create(client: Client) -> tuple[int, Any]:
    name = uuid.uuid4().hex
    return client.call("POST", "/scim/v2/Users", {
        "schemas": [USER], "userName": f"{name}@x.example", "externalId": name,
        "name": {"givenName": "A", "familyName": name}, "emails": [{"value": f"{name}@x.example"}],
        "active": True})  # fmt: skip


def throughput(port: int, clients: int, seconds: float) -> tuple[float, int]:
    """Writes answered 2xx per second; the number of other answers."""
    counts = [0] * clients
    errors = [0] * clients
    stop = time.monotonic() + seconds

    def load(n: int) -> None:
        client = Client(port)
        user_id = None
        step = 0
        while time.monotonic() < stop:
            if step % 3 == 0:
                status, body = create(client)
                user_id = body["id"] if status == 201 else None
            elif user_id is not None:
                operation = (
                    {"op": "replace", "path": "title", "value": f"t{step}"}
                    if step % 3 == 1
                    else {"op": "replace", "path": "active", "value": step % 2 == 0}
                )
                status, _ = client.call(
                    "PATCH", f"/scim/v2/Users/{user_id}",
                    {"schemas": [PATCH], "Operations": [operation]},
                )  # fmt: skip
            else:
                status = 0
            step += 1
            if 200 <= status < 300:
                counts[n] += 1
            else:
                errors[n] += 1

    threads = [threading.Thread(target=load, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds, sum(errors)


def latency(port: int, receiver: Receiver, rate: float, seconds: float) -> list[float]:
    """Seconds from each create's 201 to its SET's arrival, creates paced at `rate` per
    second by a few threads."""
    answered: dict[str, float] = {}
    lock = threading.Lock()
    total = int(rate * seconds)
    start = time.monotonic()
    threads_n = 4

    def load(n: int) -> None:
        client = Client(port)
        for i in range(n, total, threads_n):
            due = start + i / rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            status, body = create(client)
            if status == 201:
                with lock:
                    answered[f"/Users/{body['id']}"] = time.monotonic()

    threads = [threading.Thread(target=load, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 60
    while set(answered) - set(receiver.arrived) and time.monotonic() < deadline:
        time.sleep(0.1)
    missing = set(answered) - set(receiver.arrived)
    if missing:
        raise SystemExit(f"{len(missing)} SETs never arrived")
    return sorted(receiver.arrived[uri] - at for uri, at in answered.items())


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def bench(kind: str, urls: dict[str, str], work: Path, args: argparse.Namespace) -> list[str]:
    best: dict[str, float] = {}
    for turn in range(2):
        for setup in ("off", "on") if turn == 0 else ("on", "off"):
            url = urls[f"{setup}{turn}"]
            with service(url, work, setup == "on") as (port, _):
                rate, errors = throughput(port, args.clients, args.seconds)
            best[setup] = max(best.get(setup, 0.0), rate)
            print(f"  {kind} {setup}: {rate:.0f} writes/s ({errors} not 2xx)", file=sys.stderr)
    with service(urls["latency"], work, True) as (port, receiver):
        assert receiver is not None
        times = latency(port, receiver, args.rate, args.seconds)
    p50, p99, worst = (quantile(times, q) * 1000 for q in (0.5, 0.99, 1.0))
    return [
        f"| {kind} | {best['off']:.0f} | {best['on']:.0f} | {best['on'] / best['off']:.2f}x "
        f"| {len(times)} | {p50:.0f} ms | {p99:.0f} ms | {worst:.0f} ms |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=100, help="creates/s in the latency run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    names = ("off0", "on0", "off1", "on1", "latency")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "sqlite" in args.databases:
            rows += bench("SQLite", {n: f"sqlite:///{work}/{n}.sqlite3" for n in names}, work, args)
        if "postgresql" in args.databases:
            admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
            made = {n: f"events_bench_{n}_{uuid.uuid4().hex[:6]}" for n in names}
            with admin.connect() as connection:
                for name in made.values():
                    connection.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                base = args.postgres_url.rsplit("/", 1)[0]
                rows += bench("PostgreSQL", {n: f"{base}/{d}" for n, d in made.items()}, work, args)
            finally:
                with admin.connect() as connection:
                    for name in made.values():
                        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(
        f"gunicorn 2x4, {args.clients} clients, {args.seconds:.0f} s per run; latency at "
        f"{args.rate:.0f} creates/s; {os.cpu_count()} cores shared by everything"
    )
    print("| database | writes/s off | writes/s on | on/off | SETs | p50 | p99 | max |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
