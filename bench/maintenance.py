"""The maintenance beat tick (``apps.maintenance.beat.tick``) with 5,000 windows scheduled:
time per tick and SQL queries, when nothing is due and when 10 stages are due, and the plan
PostgreSQL picks for "the due stages" (it must read the partial index ``stage_due``).

The windows (each one occurrence within the next year, its four stages and its checklist)
are bulk-inserted; 10 of them have their announcement due now. Each figure is the median of
20 ticks (the due case re-arms its 10 stages between ticks). Target: under 50 ms per tick.
Everything the bench made is deleted at the end.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.maintenance import beat
from apps.maintenance.choices import StageKind
from apps.maintenance.models import Occurrence, Stage, StageOutcome, Window
from apps.services.models import Service
from bench.report import heading, ms, table, verdict

WINDOWS = 5000
DUE = 10
TICKS = 20
TARGET_SECONDS = 0.050
TITLE = "bench-window"


@dataclass(frozen=True)
class Result:
    idle_seconds: float
    idle_queries: int
    due_seconds: float
    due_queries: int
    plan: str


def clean_up() -> None:
    # The service stays (reused by the next run): deleting it would cascade into every app
    # that hangs rows on services, which a bench has no business touching.
    Window.objects.filter(title__startswith=TITLE).delete()


def load(user: Any) -> list[int]:
    clean_up()
    now = timezone.now()
    service, _ = Service.objects.get_or_create(
        slug="bench-maintenance", defaults={"name": "bench-maintenance"}
    )
    windows = Window.objects.bulk_create(
        Window(
            title=f"{TITLE} {number}",
            time_zone="Europe/London",
            start_at=now + timedelta(days=8, hours=number * 1.7),
            end_at=now + timedelta(days=8, hours=number * 1.7 + 2),
            message="bench",
            owner=user,
        )
        for number in range(WINDOWS)
    )
    Window.services.through.objects.bulk_create(
        Window.services.through(window_id=window.pk, service_id=service.pk) for window in windows
    )
    occurrences = Occurrence.objects.bulk_create(
        Occurrence(
            window=window,
            original_start=window.start_at,
            start_at=window.start_at,
            end_at=window.end_at,
        )
        for window in windows
    )
    stages = []
    for occurrence in occurrences:
        stages += [
            Stage(
                occurrence=occurrence,
                kind=StageKind.ANNOUNCE,
                due_at=occurrence.start_at - timedelta(days=7),
            ),
            Stage(
                occurrence=occurrence,
                kind=StageKind.REMIND,
                due_at=occurrence.start_at - timedelta(days=1),
            ),
            Stage(occurrence=occurrence, kind=StageKind.IN_PROGRESS, due_at=occurrence.start_at),
            Stage(occurrence=occurrence, kind=StageKind.COMPLETED, due_at=occurrence.end_at),
        ]
    Stage.objects.bulk_create(stages, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE maintenance_stage; ANALYZE maintenance_occurrence")
    due = Stage.objects.filter(
        kind=StageKind.ANNOUNCE, occurrence__in=occurrences[:DUE]
    ).values_list("pk", flat=True)
    return list(due)


def _rearm(stage_ids: list[int], now: Any) -> None:
    Stage.objects.filter(pk__in=stage_ids).update(
        due_at=now - timedelta(seconds=30),
        claimed_at=None,
        finished_at=None,
        outcome=StageOutcome.PENDING,
        late=False,
        note="",
    )


def _tick() -> tuple[float, int]:
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        beat.tick(timezone.now())
        elapsed = time.perf_counter() - started
    return elapsed, len(queries)


def measure(user: Any) -> Result:
    due_ids = load(user)
    try:
        idle = [_tick() for _ in range(TICKS)]
        due = []
        for _ in range(TICKS):
            _rearm(due_ids, timezone.now())
            due.append(_tick())
        with connection.cursor() as cursor:
            sql, params = (
                Stage.objects.due(timezone.now())
                .order_by("due_at")
                .values("pk")[:200]
                .query.sql_with_params()
            )
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        return Result(
            idle_seconds=statistics.median(t for t, _ in idle),
            idle_queries=max(q for _, q in idle),
            due_seconds=statistics.median(t for t, _ in due),
            due_queries=max(q for _, q in due),
            plan=plan,
        )
    finally:
        clean_up()


def render(result: Result) -> str:
    rows = [
        [
            "nothing due",
            ms(result.idle_seconds),
            result.idle_queries,
            verdict(result.idle_seconds < TARGET_SECONDS),
        ],
        [
            f"{DUE} stages due (sent by email)",
            ms(result.due_seconds),
            result.due_queries,
            verdict(result.due_seconds < TARGET_SECONDS),
        ],
    ]
    uses_index = "stage_due" in result.plan
    return "\n".join(
        [
            heading(f"Maintenance beat tick, {WINDOWS:,} windows scheduled (median of {TICKS})"),
            table(["Tick", "Time", "SQL queries", "Under 50 ms"], rows),
            f"  due stages read through the partial index stage_due: {verdict(uses_index)}",
            "",
        ]
    )
