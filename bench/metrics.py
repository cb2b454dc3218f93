"""Metrics (issue 4): one evaluation cycle over 300 services × 8 metrics against a local
Prometheus holding their series, and the services dashboard with metric states on and off.

The catalog is bench/dashboard.py's (300 services × 2 environments, prefix "bench-dash-");
each service gets the 7 enabled default metrics plus DB connections (8). A real Prometheus
(tests/support/prometheus.py) is loaded with 30 minutes of series for every service: request
counters (1 in 10 services at 7 % errors, 1 in 10 at 3 %), latency histograms, CPU, memory,
pool usage. Three cycles run at T-6 min, T-3 min and T (so the "for 5 minutes" thresholds
are met on the last); each is timed and its Prometheus requests counted (targets: < 20
requests and < 5 s per cycle). Then GET /services/ is timed with the metric badges provider
registered (tiles read the stored states) and unregistered (target: on ≤ 1.3 × off).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.metrics.client import Prometheus
from apps.metrics.definitions import build_defaults
from apps.metrics.evaluator import Cycle, evaluate
from apps.metrics.models import MetricDefinition, MetricState, PrometheusConnection, StateChange
from apps.metrics.tiles import metric_badges
from apps.services import badges
from apps.services.models import Service
from bench import dashboard
from bench.report import heading, ms, percentile, table, verdict
from tests.support.prometheus import OpenMetrics, PrometheusServer

SERVICES = 300
STEP = 30
MINUTES = 30
TARGET_REQUESTS = 20
TARGET_SECONDS = 5.0
TARGET_RATIO = 1.3
REQUESTS = 30


class CountingPrometheus(Prometheus):
    requests = 0

    def instant(self, promql: str, at: Any = None) -> Any:
        self.requests += 1
        return super().instant(promql, at)


@dataclass
class Result:
    states: int
    series: int
    cycles: list[tuple[str, float, int, Cycle]]
    on: list[float]
    off: list[float]
    queries_on: int
    queries_off: int


def _error_percent(i: int) -> float:
    return 7.0 if i % 10 == 0 else 3.0 if i % 10 == 1 else 0.3


def _series(end: float) -> OpenMetrics:
    data = OpenMetrics()
    start = end - MINUTES * 60
    times = [start + k * STEP for k in range(MINUTES * 60 // STEP + 1)]
    for i in range(SERVICES):
        labels = {"job": f"svc-{i}", "namespace": "bench"}
        rps, pct = 20.0, _error_percent(i)
        ok = [(t, k * STEP * rps * (1 - pct / 100)) for k, t in enumerate(times)]
        bad = [(t, k * STEP * rps * pct / 100) for k, t in enumerate(times)]
        data.counter("http_requests", {**labels, "code": "200"}, ok)
        data.counter("http_requests", {**labels, "code": "500"}, bad)
        latency = 0.3 if i % 7 else 0.8
        data.histogram(
            "http_request_duration_seconds",
            labels,
            {
                bound: [
                    (t, k * STEP * rps if latency <= bound else 0.0) for k, t in enumerate(times)
                ]
                for bound in (0.1, 0.5, 1.0, float("inf"))
            },
        )
        data.counter(
            "container_cpu_usage_seconds",
            labels,
            [(t, k * STEP * 0.5) for k, t in enumerate(times)],
        )
        data.gauge("container_memory_working_set_bytes", labels, [(t, 4e8) for t in times])
        for resource, limit in (("cpu", 1.0), ("memory", 1e9)):
            data.gauge(
                "kube_pod_container_resource_limits",
                {**labels, "resource": resource},
                [(t, limit) for t in times],
            )
        data.gauge("db_pool_connections_in_use", labels, [(t, 12.0) for t in times])
        data.gauge("db_pool_connections_max", labels, [(t, 20.0) for t in times])
    return data


def _definitions() -> None:
    services = list(Service.objects.filter(slug__startswith=dashboard.PREFIX))
    rows = []
    for service in services:
        for definition in build_defaults(service):
            if definition.key == "db_connections":
                definition.enabled = True
            if definition.enabled:
                rows.append(definition)
    MetricDefinition.objects.bulk_create(rows, batch_size=2000)


def _time_dashboard(client: Client, requests: int) -> tuple[list[float], list[float], int, int]:
    """On and off requests interleaved, so that the load of the machine weighs on both."""
    url = reverse("services:dashboard")
    seconds: dict[bool, list[float]] = {True: [], False: []}
    counts: dict[bool, int] = {}
    for number in range(requests + 2):
        for on in (True, False):
            if not on:
                badges._PROVIDERS.remove(metric_badges)
            try:
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = client.get(url)
                    elapsed = time.perf_counter() - started
            finally:
                if not on:
                    badges.register_provider(metric_badges)
            assert response.status_code == 200, response.status_code
            if number >= 2:  # two unmeasured rounds
                seconds[on].append(elapsed)
                counts[on] = len(captured.captured_queries)
    return seconds[True], seconds[False], counts[True], counts[False]


def measure(client: Client, user: Any, requests: int = REQUESTS) -> Result:
    previous = list(PrometheusConnection.objects.all())
    end = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
        data = _series(end.timestamp())
        series = sum(len(found[1]) for found in data.families.values())
        server = PrometheusServer.start(Path(directory), data)
        try:
            dashboard.load_catalog(user, SERVICES)
            _definitions()
            PrometheusConnection.objects.all().delete()
            PrometheusConnection.objects.create(url=server.url, timeout_seconds=10)
            cycles = []
            for label, at in (
                ("T-6 min (creates the states)", end - timedelta(minutes=6)),
                ("T-3 min", end - timedelta(minutes=3)),
                ("T (for 5 min met)", end),
            ):
                prometheus = CountingPrometheus(server.url, timeout=10)
                started = time.perf_counter()
                cycle = evaluate(at, prometheus=prometheus)
                cycles.append((label, time.perf_counter() - started, prometheus.requests, cycle))
            states = MetricState.objects.count()
            on, off, queries_on, queries_off = _time_dashboard(client, requests)
            return Result(states, series, cycles, on, off, queries_on, queries_off)
        finally:
            server.stop()
            StateChange.objects.filter(
                definition__service__slug__startswith=dashboard.PREFIX
            ).delete()
            dashboard.clean_up()
            PrometheusConnection.objects.all().delete()
            for row in previous:
                row.save()


def render(result: Result) -> str:
    title = heading("9. Metrics: evaluation of 300 services × 8 metrics; dashboard on/off")
    rows = [
        [
            label,
            f"{seconds:.2f} s",
            requests,
            cycle.evaluated,
            cycle.changes,
            ", ".join(f"{k} {v}" for k, v in sorted(cycle.by_state.items())),
        ]
        for label, seconds, requests, cycle in result.cycles
    ]
    worst_seconds = max(seconds for _, seconds, _, _ in result.cycles)
    worst_requests = max(requests for _, _, requests, _ in result.cycles)
    on50, off50 = percentile(result.on, 50), percentile(result.off, 50)
    ratio = on50 / off50
    return "\n".join(
        [
            title,
            f"  {SERVICES} services × 2 environments (600 targets) × 8 enabled metrics = "
            f"{result.states} states; local Prometheus with {result.series} series.",
            "",
            table(["cycle", "wall", "requests", "states", "changes", "states after"], rows),
            "",
            f"  target < {TARGET_REQUESTS} Prometheus requests per cycle: "
            f"{verdict(worst_requests < TARGET_REQUESTS)} ({worst_requests})",
            f"  target < {TARGET_SECONDS:g} s per cycle: {verdict(worst_seconds < TARGET_SECONDS)} "
            f"(worst {worst_seconds:.2f} s)",
            "",
            table(
                ["GET /services/", "p50", "p95", "queries"],
                [
                    ["metrics on", ms(on50), ms(percentile(result.on, 95)), result.queries_on],
                    ["metrics off", ms(off50), ms(percentile(result.off, 95)), result.queries_off],
                ],
            ),
            f"  target on ≤ {TARGET_RATIO}× off (p50): {verdict(ratio <= TARGET_RATIO)} "
            f"({ratio:.2f}×)",
        ]
    )
