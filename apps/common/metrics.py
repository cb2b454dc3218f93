"""The portal's own Prometheus metrics: one registry, exported at /metrics.

HTTP figures are counted in-process by the middleware. Figures about operations come from the
database at scrape time (a collector registered by the operations app), so they are right
whichever process did the work.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "opsportal_http_requests",
    "HTTP requests served, by method, route and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "opsportal_http_request_duration_seconds",
    "Time to serve an HTTP request, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)


def register_collector(collector: Collector) -> None:
    REGISTRY.register(collector)
