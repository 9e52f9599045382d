#!/usr/bin/env python3
"""What the metrics (SCIM_METRICS_TOKEN_HASHES, app/metrics.py) cost a request.

    .venv/bin/python benchmarks/metrics_overhead.py                  # in process, then gunicorn
    .venv/bin/python benchmarks/metrics_overhead.py --only inprocess --requests 5000
    .venv/bin/python benchmarks/metrics_overhead.py --only gunicorn --duration 10 --repeats 5

In process: two apps on one SQLite file, metrics off and on, driven through the Flask test client
(no server, no network: what is left is the app's own cost), the two interleaved, --repeats
times --requests requests per row. Once with prometheus_client single-process (as under the
test client) and once in multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before it is imported,
as in a gunicorn worker: every update is a write to a memory-mapped file), each in a process
of its own. Rows: /healthz (no SQL: the hooks' fixed cost), GET /Users/{id} and a userName
lookup. Prints the median CPU microseconds (this process's, SQLite included: what other
processes on a busy machine do counts less than in wall time) per request of each and the
difference.

gunicorn: gunicorn.conf.py as shipped (2 workers x 4 threads), once with metrics off and once on
(a fresh PROMETHEUS_MULTIPROC_DIR, as gunicorn.conf.py makes it), the two runs interleaved, under
wrk (/usr/bin/wrk, Debian package `wrk`) on GET /Users/{id} at --connections. Prints req/s and
the workers' CPU milliseconds per request (utime+stime from /proc), medians over the repeats.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "benchmark-token-0123456789"
METRICS_TOKEN = "benchmark-metrics-token-42"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- in process -------------------------------------------------------------------------------


def in_process(requests: int, repeats: int) -> dict[str, dict[str, float]]:
    """Run in a process whose prometheus_client mode was set before it was imported."""
    sys.path.insert(0, str(ROOT))
    from app import create_app
    from app.db import db
    from app.store import tenants

    directory = tempfile.mkdtemp(prefix="scim-metrics-bench-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    url = f"sqlite:///{directory}/bench.sqlite3"
    base = {"DATABASE_URL": url, "SCIM_TOKEN_HASHES": sha256(TOKEN), "SCIM_RATE_LIMIT": ""}
    metered = {"SCIM_METRICS_TOKEN_HASHES": sha256(METRICS_TOKEN)}
    if multiprocess := os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""):
        metered["PROMETHEUS_MULTIPROC_DIR"] = multiprocess
    apps = {"off": create_app(base), "on": create_app({**base, **metered})}
    with apps["off"].app_context():
        db.create_all()
        tenants.ensure_default()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    user = {"schemas": [USER_URN], "userName": "ada@example.com"}
    created = apps["off"].test_client().post("/scim/v2/Users", json=user, headers=headers)
    user_id = created.get_json()["id"]
    rows = {
        "GET /healthz": ("/healthz", None),
        "GET /Users/{id}": (f"/scim/v2/Users/{user_id}", None),
        "GET /Users?filter=userName eq": ("/scim/v2/Users", {"filter": 'userName eq "ada@x"'}),
    }
    results: dict[str, dict[str, list[float]]] = {row: {"off": [], "on": []} for row in rows}
    clients = {name: app.test_client() for name, app in apps.items()}
    for repeat in range(repeats + 1):  # the first round warms up, and is not counted
        order = ("off", "on") if repeat % 2 else ("on", "off")
        for row, (path, query) in rows.items():
            for name in order:
                client = clients[name]
                started = time.process_time()
                for _ in range(requests):
                    response = client.get(path, query_string=query, headers=headers)
                    assert response.status_code == 200, response.get_data(as_text=True)
                elapsed = time.process_time() - started
                if repeat:
                    results[row][name].append(elapsed / requests * 1e6)
    return {
        row: {name: statistics.median(times) for name, times in by_app.items()}
        for row, by_app in results.items()
    }


def report_in_process(args: argparse.Namespace) -> None:
    for mode in ("single-process", "multiprocess"):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with tempfile.TemporaryDirectory(prefix="scim-metrics-bench-") as multiprocess_dir:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
            finished = subprocess.run(
                [sys.executable, __file__, "--child", str(args.requests), str(args.repeats)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        results = json.loads(finished.stdout.splitlines()[-1])
        print(f"\nIn process, prometheus_client {mode}: CPU microseconds per request (median)")
        print(f"{'request':32} {'off':>9} {'on':>9} {'cost':>9}")
        for row, times in results.items():
            cost = times["on"] - times["off"]
            print(f"{row:32} {times['off']:9.1f} {times['on']:9.1f} {cost:+9.1f}")


# --- gunicorn ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds_of_children(master: int) -> float:
    """utime+stime of the master's children (the workers) so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == master:  # ppid
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def start_gunicorn(database_url: str, metrics: bool, log: Path) -> tuple[subprocess.Popen, int]:
    names = re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(dict.fromkeys(names, ""))
    port = free_port()
    env.update(
        DATABASE_URL=database_url,
        SCIM_TOKEN_HASHES=sha256(TOKEN),
        SCIM_BIND=f"127.0.0.1:{port}",
        SCIM_RATE_LIMIT="",
        SCIM_LOG_LEVEL="warning",
        SCIM_METRICS_TOKEN_HASHES=sha256(METRICS_TOKEN) if metrics else "",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"gunicorn did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def wrk(port: int, path: str, connections: int, duration: int) -> float:
    threads = 1 if connections == 1 else 2
    finished = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s"]
        + ["-H", f"Authorization: Bearer {TOKEN}", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in finished.stdout:
        raise SystemExit(f"wrk saw errors: {finished.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", finished.stdout)[1])


def report_gunicorn(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    directory = Path(tempfile.mkdtemp(prefix="scim-metrics-bench-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    url = f"sqlite:///{directory}/bench.sqlite3"
    env = {**os.environ, "DATABASE_URL": url, "FLASK_APP": "wsgi"}
    subprocess.run(
        [sys.executable, "-m", "flask", "db", "upgrade"], cwd=ROOT, env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    servers = {
        name: start_gunicorn(url, name == "on", directory / f"{name}.log") for name in ("off", "on")
    }
    try:
        body = json.dumps({"schemas": [USER_URN], "userName": "ada@example.com"}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{servers['off'][1]}/scim/v2/Users", data=body, method="POST"
        )
        request.add_header("Authorization", f"Bearer {TOKEN}")
        request.add_header("Content-Type", "application/scim+json")
        with urllib.request.urlopen(request) as response:
            user_id = json.loads(response.read())["id"]
        path = f"/scim/v2/Users/{user_id}"
        for connections in args.connections:
            rates: dict[str, list[float]] = {"off": [], "on": []}
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            for repeat in range(args.repeats + 1):  # the first round warms up
                for name in ("off", "on") if repeat % 2 else ("on", "off"):
                    process, port = servers[name]
                    before = cpu_seconds_of_children(process.pid)
                    rate = wrk(port, path, connections, args.duration)
                    used = cpu_seconds_of_children(process.pid) - before
                    if repeat:
                        rates[name].append(rate)
                        cpu[name].append(used / (rate * args.duration) * 1000)
            off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
            cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
            print(f"\ngunicorn, GET /Users/{{id}}, {connections} connection(s), medians:")
            print(f"  req/s        off {off:8.1f}   on {on:8.1f}   on/off {on / off:.3f}")
            cpu_ratio = cpu_on / cpu_off
            print(f"  CPU ms/req   off {cpu_off:8.3f}   on {cpu_on:8.3f}   on/off {cpu_ratio:.3f}")
    finally:
        for process, _ in servers.values():
            process.terminate()
        for process, _ in servers.values():
            process.wait(timeout=30)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(in_process(int(sys.argv[2]), int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("inprocess", "gunicorn"))
    parser.add_argument("--requests", type=int, default=2000, help="per row and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    if args.only != "gunicorn":
        report_in_process(args)
    if args.only != "inprocess":
        report_gunicorn(args)


if __name__ == "__main__":
    main()
