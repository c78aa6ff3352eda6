"""Prometheus metrics for GET /metrics: requests and latencies per route and model version,
predicted rows per door, data-capture outcomes (plug-ins add collectors of their own).

Under gunicorn each worker is its own process, so `serve` points PROMETHEUS_MULTIPROC_DIR at a
fresh directory before the workers fork; every worker writes its samples there and whichever
worker answers the scrape sums them. In-process (tests, notebooks) the default registry is used.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter(
    "mlship_http_requests_total", "HTTP requests by route template, method, status and model version.",
    ["route", "method", "status", "model_version"])
LATENCY = Histogram(
    "mlship_http_request_duration_seconds",
    "Time from request start to response, by route and model version.",
    ["route", "model_version"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
ROWS = Counter(
    "mlship_predicted_rows_total", "Rows predicted, by door (invocations, portal_invoke, batch) and model.",
    ["door", "model", "model_version"])
CAPTURE = Counter(
    "mlship_capture_total",
    "Data capture of /invocations: recorded, dropped (queue full), failed (store error).",
    ["outcome"])


_children: dict[tuple[str, str, int, str], tuple[object, object]] = {}


def request_done(route: str, method: str, status: int, version: str, seconds: float) -> None:
    """Count one answered request. The labelled children are kept: looking them up is most of the
    cost of a sample, and the label sets are few (route templates, statuses, loaded versions)."""
    key = (route, method, status, version)
    pair = _children.get(key)
    if pair is None:
        pair = _children[key] = (REQUESTS.labels(route, method, str(status), version),
                                 LATENCY.labels(route, version))
    counter, histogram = pair
    counter.inc()  # type: ignore[attr-defined]
    histogram.observe(seconds)  # type: ignore[attr-defined]


_rows: dict[tuple[str, str, str], object] = {}
_held_rows: dict[tuple[str, str, str], int] | None = None
_rows_holder = 0  # the thread whose row counts are held


def rows_predicted(door: str, model: str, version: str, rows: int) -> None:
    """Count predicted rows (the labelled child kept, as in request_done); while this thread
    holds them (``hold_rows``), added up and counted at ``release_rows``."""
    key = (door, model, version)
    held = _held_rows
    if held is not None and threading.get_ident() == _rows_holder:
        held[key] = held.get(key, 0) + rows
        return
    _count_rows(key, rows)


def _count_rows(key: tuple[str, str, str], rows: int) -> None:
    child = _rows.get(key)
    if child is None:
        child = _rows[key] = ROWS.labels(*key)
    child.inc(rows)  # type: ignore[attr-defined]


def hold_rows() -> bool:
    """Hold the row counts this thread makes until ``release_rows``; False when they are held
    already. The serving worker holds them over each pass of its event loop, as it holds the
    access lines: a sample written to the shared file per pass, not per request."""
    global _held_rows, _rows_holder
    if _held_rows is not None:
        return False
    _held_rows, _rows_holder = {}, threading.get_ident()
    return True


def release_rows() -> None:
    global _held_rows
    held, _held_rows = _held_rows, None
    for key, rows in (held or {}).items():
        _count_rows(key, rows)


def exposition(collectors: Iterable[Collector] = ()) -> bytes:
    """The text a Prometheus scrape receives; ``collectors`` add samples read at scrape time."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    extra = list(collectors)
    if extra:
        registry = CollectorRegistry(auto_describe=False)
        for collector in extra:
            registry.register(collector)
        body += generate_latest(registry)
    return body


def worker_exited(pid: int) -> None:
    """gunicorn child_exit hook: drop a dead worker's live-only samples."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
