"""Prometheus metrics of a server: requests by endpoint and status, latency, rows, in flight.

Endpoints are route templates (``/v2/models/{name}/infer``), never raw paths, so the
label set stays small whatever clients send. With ``--workers N`` every process
writes to ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them up
(prometheus-client's multiprocess mode; the server sets the folder up).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

STATIC = {
    "/invocations",
    "/ping",
    "/health",
    "/version",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
}


def endpoint_of(path: str) -> str:
    """The route template a path belongs to (``other`` for unknown paths)."""
    if path in STATIC:
        return path
    if path.startswith("/v2/models/"):
        parts = path.split("/")
        if len(parts) == 4 and parts[3]:
            return "/v2/models/{name}"
        if len(parts) == 5 and parts[3] and parts[4] in ("ready", "infer"):
            return f"/v2/models/{{name}}/{parts[4]}"
    return "other"


class ServeMetrics:
    """The server's metrics, in their own registry (or the multiprocess files)."""

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: they double the exposition
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        registry = None if self.multiprocess else CollectorRegistry()
        self.registry = registry
        self.requests = Counter(
            "distml_serve_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "distml_serve_request_duration_seconds",
            "Time from the request's start to its reply, by endpoint.",
            ["endpoint"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "distml_serve_rows_scored", "Rows scored, by model.", ["model"], registry=registry
        )
        self.in_flight = Gauge(
            "distml_serve_requests_in_flight",
            "Requests being handled now.",
            registry=registry,
            multiprocess_mode="livesum",
        )

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        children = self._children.get(key)
        if children is None:  # label lookups cached: this runs on every request
            children = (self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        registry = self.registry
        if registry is None:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
