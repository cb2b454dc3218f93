"""Every minute: all enabled metric definitions of all targets, in one instant query per
distinct template, and the state of each (definition, target) moved on.

One template (the defaults are shared by every service) is asked once, with its `$labels`
replaced by matchers over all the targets of the services that use it; its series carry
`job` and `namespace` (the template aggregates `by (job, namespace)`) and are mapped back to
the targets by those two labels. So a cycle costs as many requests as there are distinct
templates, whatever the number of services.

States and the "for" duration, as Prometheus's alerting rules do it:
- a value past a threshold first makes the state *pending*; it becomes warning or critical
  once it has stayed past it for `for_seconds` (a move to a less severe alerting state, and
  back to ok, happens at once);
- no series, NaN, or several series for one target → no_data (with the reason): never ok;
- Prometheus down, slow or refusing → unavailable for everything it was not asked about:
  never ok either, and the pending timers are kept (nothing was learnt).

Every change of state is a StateChange row; entering warning or critical fires an alert and
going back to ok resolves it (apps.metrics.alerts, per the contract).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from apps.metrics.choices import SEVERITY, MetricStatus
from apps.metrics.client import MetricsUnavailable, Prometheus, QueryError, Sample
from apps.metrics.connection import client as configured_client
from apps.metrics.definitions import sentence
from apps.metrics.models import MetricDefinition, MetricState, StateChange
from apps.services.models import DeploymentTarget

logger = logging.getLogger(__name__)

ALERTING = (MetricStatus.WARNING, MetricStatus.CRITICAL)
ALERT_SOURCE = "metrics"


@dataclass(frozen=True)
class Reading:
    """What Prometheus said about one metric of one target: the raw status and why."""

    status: str
    value: float | None = None
    reason: str = ""


@dataclass
class Cycle:
    """What one evaluation did, for the task's result and the bench."""

    requests: int = 0
    evaluated: int = 0
    changes: int = 0
    unavailable: str = ""
    by_state: dict[str, int] = field(default_factory=dict)


def fingerprint(definition_id: int, target_id: int) -> str:
    return f"metric:{definition_id}:{target_id}"


def _reading(definition: MetricDefinition, samples: list[Sample]) -> Reading:
    if not samples:
        return Reading(MetricStatus.NO_DATA, reason="No series for this target.")
    if len(samples) > 1:
        return Reading(
            MetricStatus.NO_DATA,
            reason=f"{len(samples)} series where one was expected: aggregate the query "
            "by (job, namespace) only.",
        )
    value = samples[0].value
    if math.isnan(value):
        return Reading(MetricStatus.NO_DATA, reason="The query gives NaN (no traffic?).")
    return Reading(definition.status_for(value), value=value)


def _read_group(
    prometheus: Prometheus,
    definitions: list[MetricDefinition],
    targets_of: dict[int, list[DeploymentTarget]],
    now: datetime,
) -> dict[tuple[int, int], Reading]:
    """One query for every definition sharing this template; readings per (definition,
    target). Raises MetricsUnavailable."""
    targets = [t for d in definitions for t in targets_of.get(d.service_id, [])]
    if not targets:
        return {}
    try:
        samples = prometheus.instant(definitions[0].batched_promql(targets), at=now)
    except QueryError as exc:
        reading = Reading(
            MetricStatus.NO_DATA, reason=f"Prometheus rejects the query: {sentence(exc)}"
        )
        return {
            (d.pk, t.pk): reading for d in definitions for t in targets_of.get(d.service_id, [])
        }
    by_place: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for sample in samples:
        by_place[(sample.labels.get("job", ""), sample.labels.get("namespace", ""))].append(sample)
    unlabelled = by_place.get(("", ""), [])
    found: dict[tuple[int, int], Reading] = {}
    for definition in definitions:
        for target in targets_of.get(definition.service_id, []):
            mine = by_place.get((target.deployment, target.namespace), [])
            if unlabelled and not mine:
                found[(definition.pk, target.pk)] = Reading(
                    MetricStatus.NO_DATA,
                    reason="The query's series carry no job and namespace labels: aggregate "
                    "it by (job, namespace).",
                )
            else:
                found[(definition.pk, target.pk)] = _reading(definition, mine)
    return found


def _next(state: MetricState, reading: Reading, for_seconds: int, now: datetime) -> str | None:
    """Move `state` on by `reading` (pending fields included); the new state when it changed."""
    old = state.state
    raw = reading.status
    if raw == MetricStatus.UNAVAILABLE:
        new = raw  # pending timers kept: nothing was learnt about the values
    elif raw in ALERTING and not (old in ALERTING and SEVERITY[raw] <= SEVERITY[old]):
        # Worse than the current alerting level (or not alerting yet): pending until the
        # threshold has been crossed for `for_seconds`.
        if state.pending_state == raw or (
            # Back under critical but still past warning: the warning condition has held
            # since the critical one began.
            raw == MetricStatus.WARNING and state.pending_state == MetricStatus.CRITICAL
        ):
            state.pending_state = raw
        else:
            state.pending_state, state.pending_since = raw, now
        assert state.pending_since is not None
        if now - state.pending_since >= timedelta(seconds=for_seconds):
            new = raw
            state.pending_state, state.pending_since = "", None
        else:
            new = old
    else:
        # ok, no data, or a less severe alerting level: at once.
        new = raw
        state.pending_state, state.pending_since = "", None
    state.value = reading.value if raw != MetricStatus.UNAVAILABLE else state.value
    state.reason = reading.reason[:300]
    state.checked_at = now
    if new != old:
        state.state, state.since = new, now
        return new
    return None


def _notify(
    definition: MetricDefinition,
    target: DeploymentTarget,
    old: str,
    new: str,
    value: float | None,
    now: datetime,
) -> None:
    """Fire or resolve the alert of this metric and target (C's apps.metrics.alerts)."""
    from apps.metrics import alerts  # imported here: alerts imports the incidents app

    key = fingerprint(definition.pk, target.pk)
    if new in ALERTING:
        threshold = definition.critical if new == MetricStatus.CRITICAL else definition.warning
        shown = "no value" if value is None else f"{value:.4g}{definition.unit}"
        alerts.fire(
            service=definition.service,
            target=target,
            source=ALERT_SOURCE,
            fingerprint=key,
            name=definition.name,
            severity=str(new),
            summary=f"{definition.name} of {target} is {shown} "
            f"({definition.comparison} {threshold:g}{definition.unit} "
            f"for {definition.for_seconds} s).",
            labels={
                "metric": definition.key,
                "service": definition.service.slug,
                "environment": target.environment.slug,
                "job": target.deployment,
                "namespace": target.namespace,
            },
            started_at=now,
        )
    elif new == MetricStatus.OK and old in ALERTING:
        alerts.resolve(source=ALERT_SOURCE, fingerprint=key, ended_at=now)


STATE_FIELDS = ["state", "value", "reason", "since", "pending_state", "pending_since", "checked_at"]


def evaluate(now: datetime | None = None, prometheus: Prometheus | None = None) -> Cycle:
    """One evaluation cycle at `now` (Prometheus is asked for its values at that instant, so
    a test or a replay can evaluate the past)."""
    now = now or timezone.now()
    cycle = Cycle()
    definitions = list(
        MetricDefinition.objects.filter(enabled=True).select_related("service").order_by("pk")
    )
    service_ids = {d.service_id for d in definitions}
    targets_of: dict[int, list[DeploymentTarget]] = defaultdict(list)
    for target in DeploymentTarget.objects.filter(service_id__in=service_ids).select_related(
        "environment"
    ):
        targets_of[target.service_id].append(target)
    groups: dict[str, list[MetricDefinition]] = defaultdict(list)
    for definition in definitions:
        groups[definition.template].append(definition)

    readings: dict[tuple[int, int], Reading] = {}
    try:
        prometheus = prometheus or configured_client()
    except MetricsUnavailable as exc:
        # Not configured: nothing to say about any metric (and no tile to grey out).
        cycle.unavailable = exc.message
        return cycle
    for group in groups.values():
        if not cycle.unavailable:
            try:
                cycle.requests += 1
                readings.update(_read_group(prometheus, group, targets_of, now))
                continue
            except MetricsUnavailable as exc:
                # Down or slow: asking again for the next template would only wait again.
                cycle.unavailable = exc.message
        gone = Reading(MetricStatus.UNAVAILABLE, reason=cycle.unavailable)
        for definition in group:
            for target in targets_of.get(definition.service_id, []):
                readings[(definition.pk, target.pk)] = gone
    _store(definitions, targets_of, readings, now, cycle)
    return cycle


def _store(
    definitions: list[MetricDefinition],
    targets_of: dict[int, list[DeploymentTarget]],
    readings: dict[tuple[int, int], Reading],
    now: datetime,
    cycle: Cycle,
) -> None:
    existing = {
        (state.definition_id, state.target_id): state
        for state in MetricState.objects.filter(definition__in=definitions)
    }
    new_states: list[MetricState] = []
    changed_states: list[MetricState] = []
    changes: list[StateChange] = []
    notices: list[tuple[MetricDefinition, DeploymentTarget, str, str, float | None]] = []
    counts: dict[str, int] = defaultdict(int)
    for definition in definitions:
        for target in targets_of.get(definition.service_id, []):
            reading = readings.get((definition.pk, target.pk))
            if reading is None:
                continue
            state = existing.get((definition.pk, target.pk))
            if state is None:
                state = MetricState(
                    definition=definition, target=target, state=MetricStatus.NO_DATA, since=now
                )
                new_states.append(state)
            else:
                changed_states.append(state)
            old = state.state
            new = _next(state, reading, definition.for_seconds, now)
            counts[state.state] += 1
            if new is not None:
                changes.append(
                    StateChange(
                        definition=definition,
                        target=target,
                        old=old,
                        new=new,
                        value=state.value,
                        reason=state.reason,
                        at=now,
                    )
                )
                notices.append((definition, target, old, new, state.value))
    with transaction.atomic():
        # One upsert for new and known states alike: bulk_update's CASE per row and field
        # costs seconds at thousands of rows, INSERT … ON CONFLICT DO UPDATE milliseconds.
        MetricState.objects.bulk_create(
            [*new_states, *changed_states],
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["definition", "target"],
            update_fields=STATE_FIELDS,
        )
        StateChange.objects.bulk_create(changes, batch_size=1000)
        for definition, target, old, new, value in notices:
            try:
                with transaction.atomic():
                    _notify(definition, target, old, new, value, now)
            except Exception:
                # An alert that cannot be raised must not lose the states of every service.
                logger.exception("alert for %s failed", fingerprint(definition.pk, target.pk))
    cycle.evaluated = len(new_states) + len(changed_states)
    cycle.changes = len(changes)
    cycle.by_state = dict(counts)
