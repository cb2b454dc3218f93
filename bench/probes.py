"""Health probes (``apps.services.probes.probe_all``): the time of one probe cycle over 600
deployment targets, and its SQL queries.

The targets are bulk-created in the bench database with a service each, one environment and
one cluster, all named ``bench-probe-…`` and deleted at the end. Every target has a liveness,
a readiness and a health JSON URL on a ThreadingHTTPServer on loopback that answers each GET
after 20 ms, as a service on the same network would; the server runs in a child process, so
that it does not compete with the probe threads for this interpreter's lock. One target in
50 reports degraded health (a failing check), one in 100 is not ready (503). The server
speaks HTTP/1.0 and closes the connection after each answer, so every GET pays for a new TCP
connection as it would against 600 different hosts: a pessimistic figure, since the real
cycle keeps one connection for the URLs of a host.

``probe_all()`` runs 3 times with the settings of the environment (HEALTH_PROBE_CONCURRENCY
threads, HEALTH_PROBE_TIMEOUT_SECONDS). The time is ``ProbeCycle.seconds`` (loading the
targets, probing, writing the results); the queries are traced per cycle with
``bench.tracing.QueryTimer``. The count must not grow with the targets, and one cycle over
600 targets must take under 10 s.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from django.conf import settings
from django.db import connection

from apps.services.choices import ClusterAccess
from apps.services.models import Cluster, DeploymentTarget, Environment, Service
from apps.services.probes import ProbeCycle, probe_all
from bench import tracing
from bench.report import heading, ms, percentile, table, verdict

PREFIX = "bench-probe-"
TARGETS = 600
CYCLES = 3
DELAY_SECONDS = 0.020
TARGET_SECONDS = 10.0
HEALTHY = json.dumps(
    {"status": "ok", "checks": {"database": {"status": "pass"}, "redis": {"status": "pass"}}}
).encode()
DEGRADED = json.dumps(
    {
        "status": "degraded",
        "checks": {
            "database": {"status": "pass"},
            "redis": {"status": "fail", "output": "timeout after 2 s"},
        },
    }
).encode()


class _ServiceHandler(BaseHTTPRequestHandler):
    """/<n>/live, /<n>/ready and /<n>/health of target n, each after DELAY_SECONDS."""

    def do_GET(self) -> None:
        server = cast(_Server, self.server)
        with server.answered.get_lock():
            server.answered.value += 1
        time.sleep(DELAY_SECONDS)
        _, number, endpoint = self.path.split("/", 2)
        index = int(number)
        status, body = 200, HEALTHY
        if endpoint == "ready" and index % 100 == 99:
            status, body = 503, b'{"status": "starting"}'
        elif endpoint == "health" and index % 50 == 49:
            body = DEGRADED
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the probe threads connect all at once
    answered: Any  # a multiprocessing.Value("q"), shared with the bench process


def _serve(listening: socket.socket, answered: Any) -> None:
    server = _Server(listening.getsockname(), _ServiceHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = listening
    server.answered = answered
    server.serve_forever()


@contextmanager
def _services() -> Iterator[tuple[str, Any]]:
    """The services' base URL and the count of GETs answered. The server runs in a child
    process: in this one it would compete with the probe threads for the interpreter lock,
    and the figure would be the server's."""
    context = multiprocessing.get_context("fork")  # the child runs no Django code
    answered = context.Value("q", 0)
    listening = socket.create_server(("127.0.0.1", 0), backlog=256)
    port = listening.getsockname()[1]
    child = context.Process(target=_serve, args=(listening, answered), daemon=True)
    child.start()
    listening.close()  # the child has its own copy
    try:
        yield f"http://127.0.0.1:{port}", answered
    finally:
        child.terminate()
        child.join(5)


def _delete_bench_rows() -> None:
    # Targets first: environments and clusters are protected while targets point at them.
    # Their health checks and rollups go with them (ON DELETE CASCADE in Django).
    DeploymentTarget.objects.filter(service__name__startswith=PREFIX).delete()
    Service.objects.filter(name__startswith=PREFIX).delete()
    Environment.objects.filter(name__startswith=PREFIX).delete()
    Cluster.objects.filter(name__startswith=PREFIX).delete()


def _create_targets(count: int, base_url: str) -> None:
    environment = Environment.objects.create(name=f"{PREFIX}env", slug=f"{PREFIX}env")
    cluster = Cluster.objects.create(name=f"{PREFIX}cluster", access=ClusterAccess.IN_CLUSTER)
    services = Service.objects.bulk_create(
        Service(name=f"{PREFIX}{i:04d}", slug=f"{PREFIX}{i:04d}", team="bench")
        for i in range(count)
    )
    DeploymentTarget.objects.bulk_create(
        DeploymentTarget(
            service=service,
            environment=environment,
            cluster=cluster,
            namespace="bench",
            deployment=f"svc-{i:04d}",
            container="app",
            liveness_url=f"{base_url}/{i}/live",
            readiness_url=f"{base_url}/{i}/ready",
            health_url=f"{base_url}/{i}/health",
        )
        for i, service in enumerate(services)
    )


@dataclass(frozen=True)
class ProbeBenchResult:
    targets: int
    other_targets: int  # targets with health URLs already in the database, probed too
    cycles: list[ProbeCycle]
    queries: list[list[tracing.TimedQuery]]  # per cycle
    requests: int  # GETs the server answered over all cycles
    concurrency: int
    timeout_seconds: int

    @property
    def seconds(self) -> list[float]:
        return [cycle.seconds for cycle in self.cycles]


def measure(targets: int = TARGETS) -> ProbeBenchResult:
    """Create ``targets`` bench targets, run CYCLES probe cycles, delete them; the figures."""
    _delete_bench_rows()  # what an interrupted run left
    other = DeploymentTarget.objects.exclude(
        liveness_url="", readiness_url="", health_url=""
    ).count()
    cycles: list[ProbeCycle] = []
    queries: list[list[tracing.TimedQuery]] = []
    requests = 0
    try:
        with _services() as (base_url, answered):
            _create_targets(targets, base_url)
            for _ in range(CYCLES):
                with tracing.QueryTimer(connection) as timer:
                    cycles.append(probe_all())
                queries.append(timer.queries)
            requests = int(answered.value)
    finally:
        _delete_bench_rows()
    return ProbeBenchResult(
        targets=targets,
        other_targets=other,
        cycles=cycles,
        queries=queries,
        requests=requests,
        concurrency=settings.HEALTH_PROBE_CONCURRENCY,
        timeout_seconds=settings.HEALTH_PROBE_TIMEOUT_SECONDS,
    )


def render(result: ProbeBenchResult) -> str:
    rows = [
        [
            f"cycle {number}",
            cycle.targets,
            f"{cycle.ok}/{cycle.warning}/{cycle.critical}",
            cycle.workers,
            ms(cycle.seconds),
            len(cycle_queries),
            ms(sum(query.seconds for query in cycle_queries)),
        ]
        for number, (cycle, cycle_queries) in enumerate(
            zip(result.cycles, result.queries, strict=True), start=1
        )
    ]
    seconds = result.seconds
    worst = max(seconds)
    counts = sorted({len(cycle_queries) for cycle_queries in result.queries})
    lines = [
        heading(f"4. Health probes: one probe cycle over {result.targets} targets"),
        f"  {result.targets} targets x 3 URLs (live, ready, health JSON) on a loopback HTTP/1.0 "
        f"server answering in {DELAY_SECONDS * 1000:.0f} ms;",
        f"  HEALTH_PROBE_CONCURRENCY={result.concurrency}, "
        f"HEALTH_PROBE_TIMEOUT_SECONDS={result.timeout_seconds}; "
        f"{result.requests} GETs answered over {len(seconds)} cycles.",
    ]
    if result.other_targets:
        lines.append(
            f"  (the {result.other_targets} other targets in the database were probed too)"
        )
    lines += [
        "",
        table(["cycle", "targets", "ok/warn/crit", "threads", "time", "queries", "SQL time"], rows),
        "",
        f"  cycle time: p50 {ms(percentile(seconds, 50))}, max {ms(worst)}; "
        f"queries per cycle: {'/'.join(str(count) for count in counts)}",
        f"  target: one probe cycle over {result.targets} targets under "
        f"{TARGET_SECONDS:.0f} s: {verdict(worst < TARGET_SECONDS)}",
        "",
        "  the queries of the last cycle:",
    ]
    for number, query in enumerate(result.queries[-1], start=1):
        lines.append(f"  {number:>3}. {ms(query.seconds):>8}  {query.shortened()}")
    return "\n".join(lines)
