"""The size of a target's backups over time, drawn with the metrics charts (apps.metrics.charts
and templates/metrics/_chart.html): one point per good (or since pruned) backup."""

from __future__ import annotations

from datetime import datetime, timedelta

from apps.backups.choices import BackupState
from apps.backups.models import Backup, DatabaseTarget
from apps.metrics.charts import TimeChart, time_chart
from apps.metrics.client import Series

POINTS = 200
MIB = 1024 * 1024


def size_chart(target: DatabaseTarget, now: datetime) -> TimeChart | None:
    """The last POINTS backups' sizes in MiB, None before the first good backup."""
    rows: list[tuple[datetime, int]] = list(
        Backup.objects.filter(
            target=target,
            state__in=[BackupState.SUCCEEDED, BackupState.PRUNED],
            finished_at__isnull=False,
            size_bytes__isnull=False,
        )
        .order_by("-finished_at")
        .values_list("finished_at", "size_bytes")[:POINTS]  # type: ignore[arg-type]
    )
    if not rows:
        return None
    rows.reverse()
    points = [(finished.timestamp(), size / MIB) for finished, size in rows]
    start = min(rows[0][0], now - timedelta(days=1))
    return time_chart(
        [Series(labels={}, points=points)],
        name=f"Backup size of {target.name}",
        unit="MiB",
        start=start,
        end=now,
        step_seconds=0,
    )
