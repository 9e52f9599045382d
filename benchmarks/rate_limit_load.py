#!/usr/bin/env python3
"""An IdP's load against the service as it runs by default: does the rate limit ever refuse it?

    .venv/bin/python benchmarks/rate_limit_load.py                 # 20,000 POST /Users at 25/s
    .venv/bin/python benchmarks/rate_limit_load.py --rate 50 --requests 4000
    .venv/bin/python benchmarks/rate_limit_load.py --rate-limit "1200 per minute" --rate 50 ...

Starts gunicorn with gunicorn.conf.py and every setting at its default (SCIM_RATE_LIMIT as
app/config.py sets it, counters in each worker's memory, SCIM_WORKERS and SCIM_THREADS), on a
migrated SQLite database in a temporary directory, with one token. Then sends POST /Users in
bursts of 8 concurrent requests (8 keep-alive connections, as an IdP's connection pool), one
burst every 8/rate seconds, on a fixed schedule: a late burst is followed at once by the next.
Microsoft asks a SCIM endpoint to sustain 25 requests/s per provisioning job; a 429 makes Entra
retry only in its next cycle, some 40 minutes later.

Prints the count of each status (target: no 429, every create a 201), the achieved rate
(target: at least --rate), latencies, and the most requests the token sent in any 60 seconds.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import DEFAULT_RATE_LIMIT  # noqa: E402

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(database_url: str, token: str, port: int, rate_limit: str) -> dict[str, str]:
    """Every variable .env.example names, empty (its default), so that no .env can leak in;
    SCIM_RATE_LIMIT is the only one whose empty value means something else (no limit)."""
    names = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    env.update(dict.fromkeys(names, ""))
    env.update(
        DATABASE_URL=database_url,
        SCIM_TOKEN_HASHES=hashlib.sha256(token.encode()).hexdigest(),
        SCIM_BIND=f"127.0.0.1:{port}",
        SCIM_RATE_LIMIT=rate_limit,
        SCIM_LOG_LEVEL="warning",
    )
    return env


class Client:
    """One keep-alive connection per thread, as an IdP's pool keeps them."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/scim+json",
        }
        self.local = threading.local()

    def post_user(self, n: int, run: str) -> tuple[int | str, float, float]:
        """Status (or the error's name), when it was sent, and how long it took."""
        body = json.dumps(
            {
                "schemas": [USER_URN],
                "userName": f"load-{run}-{n:06d}@example.com",
                "name": {"givenName": "Load", "familyName": f"User {n}"},
                "emails": [{"value": f"load-{run}-{n:06d}@example.com", "type": "work"}],
                "externalId": f"ext-{run}-{n}",
                "active": True,
            }
        )
        sent = time.monotonic()
        try:
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.local.connection = connection
            connection.request("POST", "/scim/v2/Users", body=body, headers=self.headers)
            response = connection.getresponse()
            response.read()
            status: int | str = response.status
        except (OSError, http.client.HTTPException) as e:
            self.local.connection = None  # a new connection for the next request
            status = type(e).__name__
        return status, sent, time.monotonic() - sent


def start(env: dict[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    migrate = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if migrate.returncode:
        sys.exit(f"flask db upgrade failed: {migrate.stderr.strip()}")
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,  # access and audit lines
            stderr=log_file,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            sys.exit(f"gunicorn did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def busiest_minute(sent_times: list[float]) -> int:
    """The most requests sent within any 60 seconds: what a per-minute limit would count."""
    times = sorted(sent_times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 60:
            first += 1
        most = max(most, last - first + 1)
    return most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="POST /Users to send")
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second")
    parser.add_argument("--burst", type=int, default=8, help="concurrent requests per burst")
    parser.add_argument(
        "--rate-limit",
        default=DEFAULT_RATE_LIMIT,
        help=f"SCIM_RATE_LIMIT (default: the service's default, {DEFAULT_RATE_LIMIT!r})",
    )
    args = parser.parse_args()

    token = secrets.token_urlsafe(32)
    port = free_port()
    run = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'scim.sqlite3'}"
        env = service_env(database_url, token, port, args.rate_limit)
        conf = _gunicorn_settings(env)
        print(
            f"service: gunicorn.conf.py, {conf['workers']} workers x {conf['threads']} threads, "
            f"SQLite in a temporary directory"
        )
        print(
            f"rate limit: SCIM_RATE_LIMIT={args.rate_limit!r} per token, counted in each "
            "worker's memory (memory://, the default)"
        )
        print(
            f"load: {args.requests:,} POST /Users in bursts of {args.burst} concurrent requests, "
            f"one burst every {args.burst / args.rate:.3f} s (target {args.rate:g} requests/s)"
        )
        process = start(env, Path(tmp) / "gunicorn.log", port)
        client = Client(port, token)
        results: list[tuple[int | str, float, float]] = []
        interval = args.burst / args.rate
        try:
            with ThreadPoolExecutor(max_workers=args.burst) as pool:
                started = time.monotonic()
                next_report = started + 60
                for first in range(0, args.requests, args.burst):
                    due = started + (first // args.burst) * interval
                    if (wait := due - time.monotonic()) > 0:
                        time.sleep(wait)
                    last_burst_at, last_due = time.monotonic(), due
                    numbers = range(first, min(first + args.burst, args.requests))
                    results.extend(pool.map(lambda n: client.post_user(n, run), numbers))
                    if time.monotonic() >= next_report:
                        next_report += 60
                        elapsed = time.monotonic() - started
                        refused = sum(status == 429 for status, _, _ in results)
                        print(
                            f"  {elapsed:5.0f} s: {len(results):,} sent, "
                            f"{len(results) / elapsed:.2f}/s, {refused} x 429",
                            flush=True,
                        )
                elapsed = time.monotonic() - started
        finally:
            process.terminate()
            process.wait(timeout=60)

    statuses = Counter(status for status, _, _ in results)
    latencies = sorted(took * 1000 for _, _, took in results)
    # The rate the bursts went out at: the last one left at `last_burst_at` and owns one interval
    # of the schedule. (Dividing by the time its answers came back would fail a run that kept
    # the schedule to the end whenever that last burst took longer than one interval.)
    achieved = len(results) / (last_burst_at - started + interval)
    print()
    print(
        f"sent {len(results):,} requests in {last_burst_at - started + interval:.1f} s: "
        f"{achieved:.2f} requests/s (all answered after {elapsed:.1f} s)"
    )
    counts = sorted(statuses.items(), key=str)
    print("status counts: " + ", ".join(f"{status} x {n:,}" for status, n in counts))
    print(f"429 responses: {statuses.get(429, 0)}")
    print(
        f"latency: median {statistics.median(latencies):.1f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)]:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    print(
        f"most requests in any 60 s: {busiest_minute([sent for _, sent, _ in results]):,} "
        f"(the token's limit: {args.rate_limit} in each worker)"
    )
    missed = []
    if statuses.get(429, 0):
        missed.append(f"{statuses[429]} requests refused with 429")
    if statuses.get(201, 0) != len(results):
        missed.append(f"{len(results) - statuses.get(201, 0)} requests not created (201)")
    # Bursts never leave early, so the achieved rate can only reach the target, never pass it:
    # the rate is met when the schedule was kept, the last burst leaving less than one
    # interval after its time (a float comparison of the rates would fail on rounding alone).
    behind = last_burst_at - last_due
    print(f"schedule: the last burst left {behind * 1000:.1f} ms after its time")
    if behind >= interval:
        missed.append(
            f"achieved {achieved:.2f} requests/s: the schedule slipped by {behind:.2f} s, "
            f"so the rate fell below {args.rate:g}"
        )
    print("FAILED: " + "; ".join(missed) if missed else "OK: no 429, every user created, rate met")
    sys.exit(1 if missed else 0)


def _gunicorn_settings(env: dict[str, str]) -> dict[str, object]:
    """workers and threads as gunicorn.conf.py resolves them in this environment."""
    code = "import runpy, json; c = runpy.run_path('gunicorn.conf.py'); "
    code += "print(json.dumps({'workers': c['workers'], 'threads': c['threads']}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


if __name__ == "__main__":
    main()
