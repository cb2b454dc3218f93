"""The metrics tests' world: real Prometheus servers holding exactly the series a test wrote,
a catalog of services whose targets are labelled job=<deployment>, namespace=<namespace>,
and helpers that write a service's HTTP traffic with a known error rate and latency.

`prometheus(data)` (function-scoped factory) starts a server on `data` and stops it after
the test; `prometheus_session(name, build)` starts one per name for the whole session, for
modules that share their data."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from apps.metrics.models import PrometheusConnection
from apps.services.choices import ClusterAccess
from apps.services.models import Cluster, DeploymentTarget, Environment, Service
from tests.support.prometheus import OpenMetrics, PrometheusServer

# Series are written from T0 on, every STEP seconds; tests evaluate at T0 + minutes.
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
STEP = 15
REQUESTS_PER_SECOND = 10.0

ErrorPercent = Callable[[float], float]  # seconds after T0 → error percentage


def write_http(
    data: OpenMetrics,
    job: str,
    namespace: str,
    error_percent: ErrorPercent,
    *,
    minutes: int = 60,
    requests_per_second: float = REQUESTS_PER_SECOND,
    latency_seconds: float | None = None,
    start: datetime = T0,
) -> None:
    """http_requests_total{code="200"|"500"} counters whose 5xx share is `error_percent(t)`
    over each step; and, with `latency_seconds`, a histogram where every request takes that
    long (so every quantile is that latency, interpolated within its bucket)."""
    ok_total = errors_total = 0.0
    ok_points, error_points = [], []
    begin = start.timestamp()
    for index in range(minutes * 60 // STEP + 1):
        at = begin + index * STEP
        if index:
            requests = requests_per_second * STEP
            errors = requests * error_percent(index * STEP) / 100
            errors_total += errors
            ok_total += requests - errors
        ok_points.append((at, ok_total))
        error_points.append((at, errors_total))
    labels = {"job": job, "namespace": namespace}
    data.counter("http_requests", {**labels, "code": "200"}, ok_points)
    data.counter("http_requests", {**labels, "code": "500"}, error_points)
    if latency_seconds is not None:
        bounds = [0.1, 0.25, 0.5, 1.0, 2.5, float("inf")]
        data.histogram(
            "http_request_duration_seconds",
            labels,
            {
                bound: [
                    (at, total if latency_seconds <= bound else 0.0)
                    for (at, ok), (_, err) in zip(ok_points, error_points, strict=True)
                    for total in [ok + err]
                ]
                for bound in bounds
            },
        )


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[OpenMetrics], PrometheusServer]]:
    started: list[PrometheusServer] = []

    def start(data: OpenMetrics) -> PrometheusServer:
        server = PrometheusServer.start(tmp_path / f"prometheus-{len(started)}", data)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


_SESSION_SERVERS: dict[str, PrometheusServer] = {}


@pytest.fixture(scope="session")
def prometheus_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str, Callable[[], OpenMetrics]], PrometheusServer]]:

    def start(name: str, build: Callable[[], OpenMetrics]) -> PrometheusServer:
        if name not in _SESSION_SERVERS:
            _SESSION_SERVERS[name] = PrometheusServer.start(
                Path(tmp_path_factory.mktemp(f"prometheus-{name}")), build()
            )
        return _SESSION_SERVERS[name]

    yield start
    for server in _SESSION_SERVERS.values():
        server.stop()
    _SESSION_SERVERS.clear()


def connect(url: str, *, timeout: float = 5.0) -> PrometheusConnection:
    """Save the portal's Prometheus connection (replacing any)."""
    PrometheusConnection.objects.all().delete()
    return PrometheusConnection.objects.create(url=url, timeout_seconds=timeout)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers: a Prometheus that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens: a Prometheus that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def make_cluster() -> Cluster:
    cluster, _ = Cluster.objects.get_or_create(
        name="metrics-cluster", defaults={"access": ClusterAccess.IN_CLUSTER}
    )
    return cluster


def make_environment(slug: str = "production", *, production: bool = True) -> Environment:
    environment, _ = Environment.objects.get_or_create(
        slug=slug, defaults={"name": slug, "is_production": production}
    )
    return environment


def make_service(
    slug: str,
    *,
    namespace: str = "shop",
    environment: Environment | None = None,
) -> tuple[Service, DeploymentTarget]:
    """A service (with the default metrics, through the post_save hook) and one target whose
    deployment is the service's slug."""
    service = Service.objects.create(name=slug, slug=slug, team="Shop")
    target = DeploymentTarget.objects.create(
        service=service,
        environment=environment or make_environment(),
        cluster=make_cluster(),
        namespace=namespace,
        deployment=slug,
        container="app",
    )
    return service, target
