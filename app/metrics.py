"""Prometheus metrics: every request by route, method, status class and tenant, its time in SQL,
the connection pool, and each change-event receiver's backlog (read from the database at each
scrape); served by GET /metrics (app/api/metrics.py). Off, and costing nothing,
unless SCIM_METRICS_TOKEN_HASHES is set (README, "Metrics").

Under gunicorn each worker writes its numbers to files in PROMETHEUS_MULTIPROC_DIR, which
gunicorn.conf.py makes afresh for every run, and a scrape answered by any worker sums them all;
without it (the Flask test client, `flask run`) the numbers are this process's own.

Labels stay few whatever callers send: the route is the URL rule (`/scim/v2/Users/<user_id>`,
never an id), unmatched paths share one value, methods outside HTTP's usual ones are "other",
and the tenant is the slug of the token's tenant ("" before a token was recognised).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import disable_created_metrics as _without_created_series
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import SQLAlchemyError

from app.db import (
    db,
    pool_limits,
    statement_seconds,
    time_statements,
    utcnow,
    watch_checkouts,
)
from app.store import deliveries

log = logging.getLogger("scim.metrics")

UNMATCHED = "unmatched"  # the route of a request that matched none (a 404 or a 405)
NO_TENANT = ""  # no token recognised: the probes, the console, a refused SCIM request
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUS_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")
# Requests here take milliseconds; a statement past SCIM_DB_TIMEOUT_SECONDS (5 s) fails.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SQL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
REQUEST_LABELS = ("route", "method", "status_class", "tenant")


class Metrics:
    """The instruments of one app, and the registry a scrape reads."""

    def __init__(self, multiprocess_dir: str, *, events: bool = False) -> None:
        # The *_created series would double the count of series for nothing Prometheus reads.
        _without_created_series()
        # With several processes each metric lives in their files, not in a registry.
        own = None if multiprocess_dir else CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "scim_http_requests",
            "HTTP requests answered, by route (the URL rule), method, status class and tenant.",
            REQUEST_LABELS,
            registry=own,
        )
        self.duration = Histogram(
            "scim_http_request_duration_seconds",
            "Time from the request's first hook to its response, in seconds.",
            REQUEST_LABELS,
            buckets=REQUEST_BUCKETS,
            registry=own,
        )
        self.sql = Histogram(
            "scim_http_request_sql_seconds",
            "Time one request spent in SQL statements, summed, in seconds.",
            ("route", "method"),
            buckets=SQL_BUCKETS,
            registry=own,
        )
        # livesum: the connections of the workers alive now, summed (gunicorn.conf.py's
        # child_exit drops a dead worker's).
        self.pool_checked_out = Gauge(
            "scim_db_pool_checked_out",
            "Database connections in use now.",
            multiprocess_mode="livesum",
            registry=own,
        )
        self.pool_size = Gauge(
            "scim_db_pool_size",
            "Database connections the pools keep open (pool_size, summed over the workers).",
            multiprocess_mode="livesum",
            registry=own,
        )
        self.pool_max_overflow = Gauge(
            "scim_db_pool_max_overflow",
            "Connections the pools may open beyond their size under load (max_overflow, summed).",
            multiprocess_mode="livesum",
            registry=own,
        )
        if own is None:
            own = CollectorRegistry()
            MultiProcessCollector(own, path=multiprocess_dir)
        if events:
            own.register(EventBacklog())
        self.registry = own
        # (route, method, status class, tenant) -> the label children it updates: .labels()
        # takes a lock and builds a key on every call; a hit here is one dict lookup.
        self._children: dict[tuple[str, str, int, str], tuple[Counter, Histogram, Histogram]] = {}
        # (pool_size, max_overflow), reported at the first request rather than at start-up: a
        # `flask` command run with the service's settings serves none, and so adds no pool of
        # its own to the workers' sums.
        self.pool_limits: tuple[int, int] | None = None

    # Flask's `g` and `request` are proxies that look up the request's context on every
    # attribute: each hook resolves them once (a tenth of the hooks' cost).

    def start(self) -> None:
        state = g._get_current_object()  # type: ignore[attr-defined]
        state.metrics_started = time.perf_counter()
        state.metrics_sql_started = statement_seconds()
        if self.pool_limits is not None:
            size, max_overflow = self.pool_limits
            self.pool_limits = None
            self.pool_size.set(size)
            self.pool_max_overflow.set(max_overflow)

    def finish(self, response: Response) -> Response:
        now = time.perf_counter()
        state = g._get_current_object()  # type: ignore[attr-defined]
        sql = statement_seconds() - getattr(state, "metrics_sql_started", 0.0)
        started = getattr(state, "metrics_started", now)
        caller = getattr(state, "caller", None)
        current = request._get_current_object()  # type: ignore[attr-defined]
        rule = current.url_rule
        method = current.method
        key = (
            rule.rule if rule is not None else UNMATCHED,
            method if method in METHODS else "other",
            response.status_code // 100,
            caller.tenant_slug if caller is not None else NO_TENANT,
        )
        children = self._children.get(key) or self._bind(key)
        children[0].inc()
        children[1].observe(now - started)
        children[2].observe(sql)
        return response

    def _bind(self, key: tuple[str, str, int, str]) -> tuple[Counter, Histogram, Histogram]:
        route, method, status, tenant = key
        status_class = STATUS_CLASSES[status] if 0 <= status < len(STATUS_CLASSES) else "other"
        children = (
            self.requests.labels(route, method, status_class, tenant),
            self.duration.labels(route, method, status_class, tenant),
            self.sql.labels(route, method),
        )
        self._children[key] = children
        return children

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asked for (OpenMetrics or Prometheus text),
        and its content type."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


class EventBacklog:
    """Each change-event receiver's deliveries still owed, read from the database at each
    scrape: whichever process delivers them (a worker, or the receiver's own polls), the
    database knows. `scim_events_oldest_pending_age_seconds` is what to alert on: it grows
    while a receiver is down or the worker is not running."""

    LABELS = ("tenant", "receiver", "delivery")

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())  # names and help only: registering reads no database

    def collect(self) -> Iterator[Metric]:
        pending, failing, age = families = self._families()
        try:
            backlog = deliveries.backlog()
        except SQLAlchemyError as e:  # the database is down: the request metrics still go
            log.warning("change events' backlog not read: %s", e.__class__.__name__)
            return iter(())
        now = utcnow()
        for row in backlog:
            labels = [row.tenant, row.receiver, row.delivery]
            pending.add_metric(labels, row.pending)
            failing.add_metric(labels, row.failing)
            waited = (now - row.oldest_pending).total_seconds() if row.oldest_pending else 0.0
            age.add_metric(labels, max(waited, 0.0))
        return iter(families)

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "scim_events_pending",
                "Change events not yet delivered to the receiver (pushed or polled).",
                labels=self.LABELS,
            ),
            GaugeMetricFamily(
                "scim_events_failing",
                "Pending change events whose delivery was tried and failed at least once.",
                labels=self.LABELS,
            ),
            GaugeMetricFamily(
                "scim_events_oldest_pending_age_seconds",
                "How long the oldest pending change event has waited; 0 when none is.",
                labels=self.LABELS,
            ),
        )


def init_app(app: Flask) -> None:
    """Register first, so that the clock starts before any other hook and stops after them all
    (after_request hooks run in reverse order); nothing at all when metrics are off."""
    if not app.config["SCIM_METRICS_TOKEN_HASHES"]:
        return
    metrics = Metrics(app.config["PROMETHEUS_MULTIPROC_DIR"], events=app.config["SCIM_EVENTS"])
    app.extensions["scim_metrics"] = metrics
    app.before_request(metrics.start)
    app.after_request(metrics.finish)
    with app.app_context():
        engine = db.engine
    time_statements(engine)
    watch_checkouts(engine, metrics.pool_checked_out.set)
    metrics.pool_limits = pool_limits(engine)


def of(app: Flask) -> Metrics:
    """The app's metrics (only when SCIM_METRICS_TOKEN_HASHES is set)."""
    metrics: Metrics = app.extensions["scim_metrics"]
    return metrics
