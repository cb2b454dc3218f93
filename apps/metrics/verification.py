"""Checks after a change: once a rollout, rollback, restart or flag change of a target has
succeeded, its error rate and p95 latency (the service's definitions "error_rate" and
"latency_p95") are compared, a verification period later, with their values before it.

- "before" is each metric's value at the time of the change and "after" its value one period
  later: both are instant queries at explicit times, so the windows are those of the
  definitions' own `rate(...[5m])` (the 5 minutes before the change, the 5 minutes after);
- a metric fails when it became critical, or got markedly worse (WORSE_RATIO times its value
  before, or the inverse for a "<" metric) and crosses its warning threshold;
- the verdict (passed, failed, or could not conclude: Prometheus unavailable, no data after
  the change) goes with its figures into the operation's log, into the timeline of the
  incident the change came from, and into the audit trail;
- a failed check of a rollout that asked for automatic rollback starts the rollback as a new
  operation (apps.operations.actions), from the same origin, unless a later change of the
  target superseded the rollout.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, record
from apps.metrics.charts import format_value
from apps.metrics.client import MetricsUnavailable, Prometheus, QueryError
from apps.metrics.connection import client as configured_client
from apps.metrics.models import MetricDefinition, PrometheusConnection
from apps.operations.actions import OperationRefused, do_start_operation
from apps.operations.choices import LogLevel, State
from apps.operations.models import Operation, OperationLogLine
from apps.operations.progress import Reporter
from apps.services.models import TARGET_TYPE, DeploymentTarget

if TYPE_CHECKING:
    from apps.incidents.models import Incident

logger = logging.getLogger(__name__)

# The changes that are checked afterwards.
CHECKED_KINDS = {
    "services.rollout": "rollout",
    "services.rollback": "rollback",
    "services.restart": "restart",
    "services.set_flags": "flag change",
}
METRIC_KEYS = ("error_rate", "latency_p95")
WORSE_RATIO = 1.5
RESULT_PREFIX = "Checks after the change "

PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"


@dataclass(frozen=True)
class Figure:
    """One metric before and after the change, and what it says."""

    key: str
    name: str
    unit: str
    before: float | None
    after: float | None
    verdict: str  # passed, failed, inconclusive, or "skipped" (no data either side)
    why: str

    def text(self) -> str:
        def shown(value: float | None) -> str:
            return "no data" if value is None else format_value(value, self.unit)

        words = f"{self.name} {shown(self.before)} before, {shown(self.after)} after"
        return f"{words} ({self.why})" if self.why else words

    def as_data(self) -> dict[str, object]:
        return {
            "key": self.key,
            "before": self.before,
            "after": self.after,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Verification:
    outcome: str
    figures: list[Figure]
    sentence: str
    changed_at: datetime
    period: timedelta


def verification_period() -> timedelta:
    return timedelta(seconds=settings.VERIFICATION_SECONDS)


def _minutes(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _value(prometheus: Prometheus, promql: str, at: datetime) -> float | None:
    """The worst finite value the query gives at ``at`` (one series per target is expected;
    several are judged by the worst), or None."""
    values = [
        sample.value
        for sample in prometheus.instant(promql, at=at)
        if not (math.isnan(sample.value) or math.isinf(sample.value))
    ]
    return max(values) if values else None


def judge(definition: MetricDefinition, before: float | None, after: float | None) -> Figure:
    """The verdict on one metric from its values before and after the change."""

    def figure(verdict: str, why: str = "") -> Figure:
        return Figure(definition.key, definition.name, definition.unit, before, after, verdict, why)

    if after is None:
        if before is None:
            return figure("skipped", "no data")
        return figure(INCONCLUSIVE, "no data after the change")
    if before is None:
        return figure(INCONCLUSIVE, "no data before the change")
    unit = definition.unit
    if definition.crosses(after, definition.critical) and not definition.crosses(
        before, definition.critical
    ):
        assert definition.critical is not None
        return figure(FAILED, f"critical: past {format_value(definition.critical, unit)}")
    if definition.comparison == ">":
        worse = after > before * WORSE_RATIO
        factor = f"{after / before:.1f}× before" if before > 0 else "up from 0"
    else:
        worse = after * WORSE_RATIO < before
        factor = f"{after / before:.1f}× before" if before > 0 else "down"
    limits_crossed = definition.crosses(after, definition.warning) or definition.crosses(
        after, definition.critical
    )
    no_limits = definition.warning is None and definition.critical is None
    if worse and (limits_crossed or no_limits):
        if definition.warning is not None and definition.crosses(after, definition.warning):
            return figure(
                FAILED,
                f"{factor}, past the warning threshold of {format_value(definition.warning, unit)}",
            )
        return figure(FAILED, factor)
    return figure(PASSED)


def _definitions(target: DeploymentTarget) -> list[MetricDefinition]:
    found = {
        definition.key: definition
        for definition in MetricDefinition.objects.filter(
            service_id=target.service_id, key__in=METRIC_KEYS, enabled=True
        )
    }
    return [found[key] for key in METRIC_KEYS if key in found]


def verify(
    target: DeploymentTarget,
    *,
    changed_at: datetime,
    period: timedelta,
    prometheus: Prometheus | None = None,
) -> Verification:
    """Compare ``target``'s error rate and p95 latency at ``changed_at`` (before) and at
    ``changed_at + period`` (after). Never raises for Prometheus's sake: an unavailable or
    rejecting Prometheus makes the verdict inconclusive, with its sentence."""
    after_at = changed_at + period
    definitions = _definitions(target)
    window = f"{_minutes(period)} after the change against the {_minutes(period)} before"

    def concluded(outcome: str, figures: list[Figure], detail: str) -> Verification:
        head = {
            PASSED: "passed",
            FAILED: "failed",
            INCONCLUSIVE: "could not conclude",
        }[outcome]
        return Verification(
            outcome, figures, f"{RESULT_PREFIX}{head}: {detail}", changed_at, period
        )

    if not definitions:
        return concluded(
            INCONCLUSIVE,
            [],
            f"{target.service.name} has no enabled error rate or p95 latency metric.",
        )
    figures: list[Figure] = []
    try:
        prometheus = prometheus or configured_client()
        for definition in definitions:
            promql = definition.promql(target)
            before = _value(prometheus, promql, changed_at)
            after = _value(prometheus, promql, after_at)
            figures.append(judge(definition, before, after))
    except (MetricsUnavailable, QueryError) as exc:
        return concluded(INCONCLUSIVE, figures, f"metrics unavailable: {exc.message}")
    detail = "; ".join(figure.text() for figure in figures) + f" ({window})."
    verdicts = {figure.verdict for figure in figures}
    if FAILED in verdicts:
        return concluded(FAILED, figures, detail)
    if INCONCLUSIVE in verdicts or PASSED not in verdicts:
        return concluded(INCONCLUSIVE, figures, detail)
    return concluded(PASSED, figures, detail)


# --- After an operation -----------------------------------------------------------------------


def _target_of(operation: Operation) -> DeploymentTarget | None:
    if operation.target_type != TARGET_TYPE or not operation.target_id.isdigit():
        return None
    return (
        DeploymentTarget.objects.select_related("service", "environment")
        .filter(pk=int(operation.target_id))
        .first()
    )


def on_operation_finished(sender: object, operation: Operation, **kwargs: object) -> None:
    """operation_finished: a checked change that succeeded is verified one period later."""
    if operation.kind not in CHECKED_KINDS or operation.state != State.SUCCEEDED:
        return
    target = _target_of(operation)
    if target is None:
        return
    reporter = Reporter(operation)
    if not _definitions(target):
        reporter.log(
            f"No checks after the change: {target.service.name} has no enabled error rate "
            "or p95 latency metric."
        )
        return
    if PrometheusConnection.current() is None:
        reporter.log("No checks after the change: metrics are not configured.")
        return
    period = verification_period()
    reporter.log(
        f"Watching the error rate and p95 latency of {target}: they are compared "
        f"{_minutes(period)} after the change with the {_minutes(period)} before it."
    )
    operation_id = operation.pk
    transaction.on_commit(
        lambda: verify_change.apply_async((operation_id,), countdown=period.total_seconds())
    )


@shared_task(name="apps.metrics.verification.verify_change", ignore_result=True)
def verify_change(operation_id: int) -> str:
    """The scheduled check of one finished change (thin: see ``check_operation``)."""
    operation = Operation.objects.filter(pk=operation_id).first()
    if operation is None or operation.finished_at is None:
        return "gone"
    early = operation.finished_at + verification_period() - timezone.now()
    if early > timedelta(seconds=1):
        # Delivered before its time (a broker that ignored the countdown): wait for it.
        verify_change.apply_async((operation_id,), countdown=early.total_seconds())
        return "rescheduled"
    verification = check_operation(operation)
    return verification.outcome if verification else "skipped"


def check_operation(
    operation: Operation,
    *,
    changed_at: datetime | None = None,
    period: timedelta | None = None,
    prometheus: Prometheus | None = None,
) -> Verification | None:
    """Verify ``operation``'s change and record the verdict (once, even if the task is
    delivered twice); a failed rollout that asked for it is rolled back. Returns the
    verification, or None when there was nothing to check or it was already recorded."""
    target = _target_of(operation)
    if target is None or operation.finished_at is None:
        return None
    verification = verify(
        target,
        changed_at=changed_at or operation.finished_at,
        period=period or verification_period(),
        prometheus=prometheus,
    )
    with transaction.atomic():
        locked = Operation.objects.select_for_update().get(pk=operation.pk)
        if OperationLogLine.objects.filter(
            operation=locked, message__startswith=RESULT_PREFIX
        ).exists():
            return None
        _record(locked, target, verification)
    if verification.outcome == FAILED:
        _roll_back(operation, verification)
    return verification


def _record(operation: Operation, target: DeploymentTarget, verification: Verification) -> None:
    level = {PASSED: LogLevel.INFO, FAILED: LogLevel.ERROR}.get(
        verification.outcome, LogLevel.WARNING
    )
    Reporter(operation).log(verification.sentence, level)
    data = {
        "kind": operation.kind,
        "outcome": verification.outcome,
        "changed_at": verification.changed_at.isoformat(),
        "period_seconds": int(verification.period.total_seconds()),
        "figures": [figure.as_data() for figure in verification.figures],
    }
    record(
        "operation.verified",
        actor=None,
        actor_label="checks after the change",
        outcome=Outcome.FAILED if verification.outcome == FAILED else Outcome.SUCCEEDED,
        target=AuditTarget(operation.target_type, operation.target_id, operation.target_label),
        reason=verification.sentence,
        data=data,
        operation_id=operation.pk,
    )
    incident = _incident_of(operation)
    if incident is not None:
        from apps.incidents.actions import add_entry
        from apps.incidents.choices import EntryKind

        what = CHECKED_KINDS.get(operation.kind, "change")
        add_entry(
            incident,
            EntryKind.NOTE,
            None,
            text=f"{what.capitalize()} #{operation.pk} on {target}: {verification.sentence}",
            operation=operation,
            data={"phase": "verification", **data},
        )


def _incident_of(operation: Operation) -> Incident | None:
    from apps.incidents.hooks import ORIGIN_TYPE
    from apps.incidents.models import Incident
    from apps.operations import origins

    incident_id = origins.origin_id(operation.origin, ORIGIN_TYPE)
    return None if incident_id is None else Incident.objects.filter(pk=incident_id).first()


def _roll_back(operation: Operation, verification: Verification) -> Operation | None:
    """The automatic rollback of a rollout whose checks failed, as a new operation."""
    if operation.kind != "services.rollout" or not operation.params.get("auto_rollback"):
        return None
    reporter = Reporter(operation)
    later = (
        Operation.objects.filter(
            target_type=operation.target_type,
            target_id=operation.target_id,
            kind__in=CHECKED_KINDS,
            pk__gt=operation.pk,
        )
        .exclude(state__in=[State.REJECTED, State.CANCELLED])
        .order_by("pk")
        .first()
    )
    if later is not None:
        reporter.log(
            f"Not rolled back automatically: operation #{later.pk} has changed the target since.",
            LogLevel.WARNING,
        )
        return None
    try:
        rollback = do_start_operation(
            operation.requested_by,
            "services.rollback",
            operation.target_id,
            {"to_revision": None, "healthy_checks": operation.params.get("healthy_checks") or 3},
            f"Automatic rollback of rollout #{operation.pk}: {verification.sentence}"[:2000],
            idempotency_key=f"verification-rollback-{operation.pk}",
            origin=operation.origin,
        )
    except OperationRefused as exc:
        reporter.log(f"The automatic rollback could not start: {exc}", LogLevel.ERROR)
        return None
    reporter.log(f"Rolling back automatically: operation #{rollback.pk}.", LogLevel.WARNING)
    return rollback
