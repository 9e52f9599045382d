"""GET /metrics under gunicorn (gunicorn.conf.py): every worker's counts summed in one scrape,
the multiprocess directory emptied at start, a dead worker's gauges dropped (SQLite and
PostgreSQL)."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from app.auth import token_hash
from tests.e2e.service import gunicorn, migrate, request
from tests.test_metrics import METRICS_TOKEN

LOOKUPS = {"route": "/scim/v2/Users", "method": "GET", "status_class": "2xx", "tenant": "default"}


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    root = base.removesuffix("/scim/v2")
    http = urllib.request.Request(f"{root}/metrics")
    http.add_header("Authorization", f"Bearer {METRICS_TOKEN}")
    with urllib.request.urlopen(http, timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def lookups(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    return samples.get(("scim_http_requests_total", frozenset(LOOKUPS.items())), 0)


def pids(directory: Path, prefix: str) -> set[int]:
    return {int(p.stem.rsplit("_", 1)[1]) for p in directory.glob(f"{prefix}_*.db")}


def stale_count(directory: Path) -> None:
    """What a previous run would have left: 41 lookups counted by a process long gone."""
    stale = MmapedDict(str(directory / "counter_999999.db"))
    key = mmap_key(
        "scim_http_requests",
        "scim_http_requests_total",
        tuple(LOOKUPS),
        tuple(LOOKUPS.values()),
        "left over",
    )
    stale.write_value(key, 41.0, 0.0)
    stale.close()


def test_every_workers_counts_are_summed_and_a_dead_workers_gauges_dropped(
    fresh_database_url, tmp_path
):
    migrate(fresh_database_url)
    directory = tmp_path / "metrics"
    directory.mkdir()
    stale_count(directory)
    with gunicorn(
        fresh_database_url,
        tmp_path / "gunicorn.log",
        workers=2,
        threads=4,
        SCIM_METRICS_TOKEN_HASHES=token_hash(METRICS_TOKEN),
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    ) as base:
        assert not (directory / "counter_999999.db").exists()  # emptied as gunicorn started
        # New connections, many at once, until both workers have answered some.
        sent = 0
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(pids(directory, "counter")) < 2 or sent < 40:
                assert time.monotonic() < deadline, "one worker answered every request"
                replies = list(pool.map(lambda _: request("GET", f"{base}/Users"), range(16)))
                assert [r.status for r in replies] == [200] * 16
                sent += 16

        samples = scrape(base)
        assert lookups(samples) == sent
        duration = "scim_http_request_duration_seconds_count"
        assert samples[(duration, frozenset(LOOKUPS.items()))] == sent
        route = frozenset({"route": "/scim/v2/Users", "method": "GET"}.items())
        assert samples[("scim_http_request_sql_seconds_count", route)] == sent
        assert samples[("scim_db_pool_checked_out", frozenset())] == 0
        workers = pids(directory, "gauge_livesum")
        assert len(workers) == 2
        # Both workers answered, so both reported their pools: livesum adds them up.
        assert samples[("scim_db_pool_size", frozenset())] == 2 * 5

        killed = min(workers)
        os.kill(killed, signal.SIGKILL)  # gunicorn replaces it; child_exit drops its gauges
        deadline = time.monotonic() + 30
        while (
            killed in pids(directory, "gauge_livesum") or len(pids(directory, "gauge_livesum")) < 2
        ):
            assert time.monotonic() < deadline, "the dead worker's gauges are still summed"
            time.sleep(0.1)
        # Its counts stay: counters never go down while the service runs.
        assert lookups(scrape(base)) == sent
        assert killed in pids(directory, "counter")
