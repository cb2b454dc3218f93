"""The services dashboard (``GET /services/``): server time and SQL query count with 30 and
with 300 services, each in 2 environments (60 and 600 tiles).

The catalog is bulk-created under the prefix "bench-dash-": every target has a probe result
(mostly OK, some warning, critical or stale), an observed deployment, and every tenth one a
last change made by an operation; one freeze is in force so that the badges are looked up.
Each size is requested through Django's test client, signed in as the bench operator, 50
times after 2 unmeasured requests; the query count is taken with ``CaptureQueriesContext``.
The count must not grow with the number of services, and the p95 must stay under 150 ms.
Everything the bench made is deleted at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.operations.choices import State
from apps.operations.models import Operation, hash_params
from apps.services.choices import ClusterAccess, Health
from apps.services.models import (
    TARGET_TYPE,
    Cluster,
    DeployFreeze,
    DeploymentTarget,
    Environment,
    Service,
)
from bench.report import heading, ms, percentile, table, verdict

PREFIX = "bench-dash-"
SIZES = (30, 300)
WARM_UP_REQUESTS = 2
TARGET_P95_SECONDS = 0.150
HEALTHS = [Health.OK] * 17 + [Health.WARNING, Health.CRITICAL, Health.STALE]


@dataclass
class Result:
    services: int
    tiles: int
    seconds: list[float]
    query_counts: set[int]
    kilobytes: float


def clean_up() -> None:
    Service.objects.filter(slug__startswith=PREFIX).delete()
    DeployFreeze.objects.filter(reason__startswith=PREFIX).delete()
    Environment.objects.filter(slug__startswith=PREFIX).delete()
    Cluster.objects.filter(name__startswith=PREFIX).delete()
    Operation.objects.filter(target_type=TARGET_TYPE, reason=PREFIX).delete()


def load_catalog(user: Any, count: int) -> None:
    """Replace the bench's catalog with ``count`` services in 2 environments."""
    clean_up()
    now = timezone.now()
    cluster = Cluster.objects.create(name=f"{PREFIX}cluster", access=ClusterAccess.IN_CLUSTER)
    environments = [
        Environment.objects.create(name=f"{PREFIX}staging", slug=f"{PREFIX}staging", order=90),
        Environment.objects.create(
            name=f"{PREFIX}production", slug=f"{PREFIX}production", is_production=True, order=91
        ),
    ]
    services = Service.objects.bulk_create(
        Service(name=f"{PREFIX}{i:04d}", slug=f"{PREFIX}{i:04d}", team=f"Team {i % 12}")
        for i in range(count)
    )
    targets = []
    for i, service in enumerate(services):
        for j, environment in enumerate(environments):
            health = HEALTHS[(i + j) % len(HEALTHS)]
            checked = now - (timedelta(minutes=5) if health == Health.STALE else timedelta(0))
            targets.append(
                DeploymentTarget(
                    service=service,
                    environment=environment,
                    cluster=cluster,
                    namespace="bench",
                    deployment=f"svc-{i}",
                    container="app",
                    observed_image=f"registry.example.com/bench/svc-{i}:1.{i}.0",
                    observed_revision=3,
                    desired_replicas=3,
                    ready_replicas=3 if health == Health.OK else 2,
                    observed_at=now,
                    health=Health.OK if health == Health.STALE else health,
                    health_checked_at=checked,
                    health_latency_ms=12,
                )
            )
    targets = DeploymentTarget.objects.bulk_create(targets)
    params = {"image": "registry.example.com/bench/svc:1.0.0"}
    changes = Operation.objects.bulk_create(
        Operation(
            kind="services.rollout",
            target_type=TARGET_TYPE,
            target_id=str(target.pk),
            target_label=f"bench {target.pk}",
            target_key=f"{TARGET_TYPE}:{target.pk}",
            params=params,
            params_hash=hash_params(params),
            reason=PREFIX,
            requested_by=user,
            state=State.SUCCEEDED,
            created_at=now,
            finished_at=now,
        )
        for target in targets[::10]
    )
    for target, change in zip(targets[::10], changes, strict=True):
        target.last_change = change
    DeploymentTarget.objects.bulk_update(targets[::10], ["last_change"])
    DeployFreeze.objects.create(
        service=services[0],
        reason=f"{PREFIX}freeze",
        created_by=user,
        expires_at=now + timedelta(hours=1),
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE services_service, services_deploymenttarget")


def measure_size(client: Client, user: Any, count: int, requests: int) -> Result:
    load_catalog(user, count)
    url = reverse("services:dashboard")
    for _ in range(WARM_UP_REQUESTS):
        client.get(url)
    seconds: list[float] = []
    counts: set[int] = set()
    size = 0
    for _ in range(requests):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        counts.add(len(captured.captured_queries))
        size = len(response.content)
    # Every service of the bench is on the page, one row each.
    shown = response.content.count(f'<th scope="row"><a href="/services/{PREFIX}'.encode())
    if shown < count:
        raise RuntimeError(f"the dashboard showed {shown} of {count} bench services")
    return Result(count, count * 2, seconds, counts, size / 1024)


def measure(client: Client, user: Any, requests: int) -> list[Result]:
    try:
        return [measure_size(client, user, count, requests) for count in SIZES]
    finally:
        clean_up()


def _counts(result: Result) -> str:
    return "/".join(str(count) for count in sorted(result.query_counts))


def render(results: list[Result], requests: int) -> str:
    rows = [
        [
            f"{result.services} services",
            result.tiles,
            ms(percentile(result.seconds, 50)),
            ms(percentile(result.seconds, 95)),
            ms(max(result.seconds)),
            _counts(result),
            f"{result.kilobytes:.0f} KiB",
        ]
        for result in results
    ]
    worst = max(percentile(result.seconds, 95) for result in results)
    same = len({frozenset(result.query_counts) for result in results}) == 1
    return "\n".join(
        [
            heading(
                "3. Services dashboard: GET /services/ at 30 and 300 services × 2 environments"
            ),
            f"  {requests} requests per line after {WARM_UP_REQUESTS} unmeasured, in-process test "
            "client; every tile probed, 1 in 10 with a last change, one freeze in force.",
            "",
            table(["catalog", "tiles", "p50", "p95", "max", "queries", "page"], rows),
            "",
            "  query count the same at 30 and 300 services: "
            + ("yes" if same else f"NO ({' -> '.join(_counts(r) for r in results)})"),
            f"  target p95 < {ms(TARGET_P95_SECONDS)} at 300 services: "
            f"{verdict(percentile(results[-1].seconds, 95) < TARGET_P95_SECONDS)} "
            f"(worst p95 {ms(worst)})",
        ]
    )
