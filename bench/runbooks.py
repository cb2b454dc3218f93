"""Runbooks (``--only runbooks``):

1. import of a 1 MB runbook (the two real runbooks of tests/runbooks/data repeated, with
   their deployments renamed each time, until the text passes 1,000,000 characters): the
   whole import action (a version row, the split into commands and the recognition of each,
   one audit record), and the split + recognition alone; best and median of 5;
2. the page of a runbook with 500 commands (50 sections of 10 commands, half of them kubectl
   commands on a registered deployment target): server time over 20 requests after 2
   unmeasured ones, and its SQL queries.

Targets: the import under 1 s; the page under 150 ms at p95. The runbooks and the targets
made for the run are removed at the end (their audit events stay: the table is append-only).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.runbooks.actions import command_counts, do_import_runbook
from apps.runbooks.models import Runbook
from apps.services.choices import ClusterAccess
from apps.services.models import Cluster, DeploymentTarget, Environment, Service
from bench.report import heading, ms, percentile, table, verdict

DATA = Path(__file__).resolve().parent.parent / "tests" / "runbooks" / "data"
SIZE = 1_000_000
RUNS = 5
REQUESTS = 20
COMMANDS = 500
IMPORT_TARGET_SECONDS = 1.0
PAGE_TARGET_SECONDS = 0.150
NAME = "bench-runbooks"


@dataclass
class Result:
    characters: int
    commands: int
    recognized: int
    import_seconds: list[float]
    recognition_seconds: list[float]
    page_commands: int
    page_seconds: list[float]
    page_queries: int


def big_runbook() -> str:
    sources = [(DATA / name).read_text() for name in sorted(p.name for p in DATA.glob("*.md"))]
    parts: list[str] = []
    size = copy = 0
    while size < SIZE:
        for source in sources:
            part = source.replace("rosterhub-api", f"rosterhub-api-{copy}")
            parts.append(part)
            size += len(part)
        copy += 1
    return "\n".join(parts)


def page_runbook() -> str:
    lines = ["# Bench runbook", ""]
    for section in range(COMMANDS // 10):
        lines += [f"## {section}. Section {section}", "", "Steps:", "", "```bash"]
        for step in range(5):
            lines.append(f"kubectl scale deployment {NAME} --replicas={step + 1} -n {NAME}")
            lines.append(f"redis-cli LLEN bull:queue-{section}:wait   # step {step}")
        lines += ["```", ""]
    return "\n".join(lines)


def _target() -> DeploymentTarget:
    service = Service.objects.create(name=NAME, slug=NAME, team="bench")
    environment = Environment.objects.create(name=NAME, slug=NAME)
    cluster = Cluster.objects.create(name=NAME, access=ClusterAccess.IN_CLUSTER)
    return DeploymentTarget.objects.create(
        service=service,
        environment=environment,
        cluster=cluster,
        namespace=NAME,
        deployment=NAME,
        container="app",
    )


def _clean_up() -> None:
    Runbook.objects.filter(title__startswith=NAME).delete()
    DeploymentTarget.objects.filter(service__slug=NAME).delete()
    Service.objects.filter(slug=NAME).delete()
    Environment.objects.filter(slug=NAME).delete()
    Cluster.objects.filter(name=NAME).delete()


def measure(client: Client, operator: Any) -> Result:
    _clean_up()
    source = big_runbook()
    try:
        import_seconds, recognition_seconds = [], []
        counts: dict[str, int] = {}
        for run in range(RUNS):
            began = time.perf_counter()
            counts = command_counts(source)
            recognition_seconds.append(time.perf_counter() - began)
            began = time.perf_counter()
            do_import_runbook(operator, title=f"{NAME} big {run}", service=None, source=source)
            import_seconds.append(time.perf_counter() - began)
        _target()
        page = do_import_runbook(
            operator, title=f"{NAME} page", service=None, source=page_runbook()
        )
        url = page.get_absolute_url()
        for _ in range(2):
            assert client.get(url).status_code == 200
        page_seconds = []
        for _ in range(REQUESTS):
            began = time.perf_counter()
            response = client.get(url)
            page_seconds.append(time.perf_counter() - began)
            assert response.status_code == 200
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        return Result(
            characters=len(source),
            commands=counts["commands"],
            recognized=counts["recognized"],
            import_seconds=import_seconds,
            recognition_seconds=recognition_seconds,
            page_commands=command_counts(page_runbook())["commands"],
            page_seconds=page_seconds,
            page_queries=len(queries),
        )
    finally:
        _clean_up()


def render(result: Result) -> str:
    best_import = min(result.import_seconds)
    p95 = percentile(result.page_seconds, 95)
    return "\n".join(
        [
            heading("Runbooks"),
            f"  A runbook of {result.characters:,} characters: {result.commands:,} commands, "
            f"{result.recognized:,} recognized.",
            table(
                ["1 MB runbook (5 runs)", "best", "median"],
                [
                    [
                        "import (version, recognition, audit)",
                        ms(best_import),
                        ms(statistics.median(result.import_seconds)),
                    ],
                    [
                        "split + recognition alone",
                        ms(min(result.recognition_seconds)),
                        ms(statistics.median(result.recognition_seconds)),
                    ],
                ],
            ),
            f"  Target: import under {ms(IMPORT_TARGET_SECONDS)}: "
            f"{verdict(statistics.median(result.import_seconds) < IMPORT_TARGET_SECONDS)}",
            table(
                [f"page with {result.page_commands} commands ({REQUESTS} requests)", "p50", "p95"],
                [
                    [
                        "GET /runbooks/<slug>/",
                        ms(percentile(result.page_seconds, 50)),
                        ms(p95),
                    ]
                ],
            ),
            f"  SQL queries per page: {result.page_queries}",
            f"  Target: page under {ms(PAGE_TARGET_SECONDS)} at p95: "
            f"{verdict(p95 < PAGE_TARGET_SECONDS)}",
        ]
    )
