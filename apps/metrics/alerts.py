"""Firing and resolving alerts: the one entry point for the metrics evaluator and the
Alertmanager receiver. Both are idempotent, so a replayed notification changes nothing:

- ``fire`` on a (source, fingerprint) that is firing updates that row (the database holds at
  most one firing row per fingerprint, a partial unique constraint); a replay of an episode
  that has since resolved (same ``started_at``) is ignored rather than firing it again;
- ``resolve`` acts only on the firing row: the transition happens once, with its timeline
  entry and audit record, and a replay finds nothing to resolve.

A firing alert under an active silence is marked suppressed (as of when it was last seen):
it opens no incident and tells no one (apps.metrics.incident_link decides the rest). Other
apps suppress alerts too, without this app knowing them: a function registered with
``register_suppressor`` (the maintenance windows register theirs) names what covers an
alert's service and target now, and ``release_suppressed`` lets the alerts it covered go when
that ends (a critical one still firing then opens or joins its incident)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, record
from apps.incidents.models import Severity
from apps.metrics import incident_link
from apps.metrics.models import (
    Alert,
    AlertSeverity,
    AlertStatus,
    ServiceAlerting,
    Silence,
)
from apps.services.models import DeploymentTarget, Service

ALERT_TYPE = "metrics.alert"
NAME_MAX = 200
MAX_SILENCE = timedelta(days=30)


# (service, target, now) → a sentence naming what suppresses that service's alerts on that
# target now ("Maintenance #3 “Database upgrade” in progress"), or None. It runs inside
# fire()'s transaction before the alert row is locked, and may lock its own rows so that
# its end (which calls release_suppressed) waits for the alert being recorded.
Suppressor = Callable[[Service | None, DeploymentTarget | None, datetime], str | None]

_SUPPRESSORS: list[Suppressor] = []


def register_suppressor(suppressor: Suppressor) -> Suppressor:
    if suppressor not in _SUPPRESSORS:
        _SUPPRESSORS.append(suppressor)
    return suppressor


def suppressed_by(
    service: Service | None, target: DeploymentTarget | None, now: datetime
) -> str | None:
    """What (other than a silence) suppresses alerts of ``service`` on ``target`` now."""
    for suppressor in _SUPPRESSORS:
        reason = suppressor(service, target, now)
        if reason:
            return reason
    return None


def audit_target(alert: Alert) -> AuditTarget:
    return AuditTarget(ALERT_TYPE, str(alert.pk), f"#{alert.pk} {alert.name}"[:255])


def is_silenced(source: str, fingerprint: str, now: datetime | None = None) -> bool:
    return Silence.objects.active(now).filter(source=source, fingerprint=fingerprint).exists()


def _firing(source: str, fingerprint: str) -> Alert | None:
    return (
        Alert.objects.select_for_update()
        .filter(source=source, fingerprint=fingerprint, status=AlertStatus.FIRING)
        .first()
    )


def fire(
    *,
    service: Service | None,
    target: DeploymentTarget | None = None,
    source: str,
    fingerprint: str,
    name: str,
    severity: str,
    summary: str,
    labels: dict[str, str],
    started_at: datetime,
    now: datetime | None = None,
) -> Alert:
    """Record that an alert is firing (or still firing) and, when it is critical on a
    production target of a service whose switch is on, open or attach to an incident."""
    severity = AlertSeverity(severity)
    now = now or timezone.now()
    name = (name or fingerprint)[:NAME_MAX]
    with transaction.atomic():
        covered_by = suppressed_by(service, target, now)
        alert = _firing(source, fingerprint)
        if alert is None:
            replayed = (
                Alert.objects.filter(source=source, fingerprint=fingerprint, started_at=started_at)
                .order_by("-pk")
                .first()
            )
            if replayed is not None:
                # The notification of an episode that has already resolved, arriving late.
                return replayed
            try:
                with transaction.atomic():
                    alert = Alert(
                        source=source,
                        fingerprint=fingerprint,
                        service=service,
                        target=target,
                        name=name,
                        severity=severity,
                        summary=summary,
                        labels=labels,
                        started_at=started_at,
                        received_at=now,
                        last_seen_at=now,
                        suppressed=bool(covered_by) or is_silenced(source, fingerprint, now),
                    )
                    alert.save(force_insert=True)
            except IntegrityError:
                # Someone else created the firing row between our look and our insert.
                alert = _firing(source, fingerprint)
                if alert is None:
                    raise
                _update(alert, service, target, name, severity, summary, labels, now, covered_by)
            else:
                record(
                    "alert.fired",
                    actor=None,
                    actor_label=source,
                    target=audit_target(alert),
                    data={
                        "source": source,
                        "fingerprint": fingerprint,
                        "severity": severity.value,
                        "service": service.slug if service else None,
                        "target": target.pk if target else None,
                        "suppressed": alert.suppressed,
                        "suppressed_by": covered_by,
                    },
                )
        else:
            _update(alert, service, target, name, severity, summary, labels, now, covered_by)
        incident_link.link(alert)
    return alert


def _update(
    alert: Alert,
    service: Service | None,
    target: DeploymentTarget | None,
    name: str,
    severity: str,
    summary: str,
    labels: dict[str, str],
    now: datetime,
    covered_by: str | None = None,
) -> None:
    """A repeat of a firing alert: it is still on; its severity or text may have changed
    (the evaluator fires warning, then critical, under one fingerprint), and a silence (or
    what ``covered_by`` names) may have started or ended since it was last seen."""
    was_suppressed = alert.suppressed
    alert.service = service or alert.service
    alert.target = target or alert.target
    alert.name = name
    alert.severity = severity
    alert.summary = summary
    alert.labels = labels
    alert.last_seen_at = now
    alert.times_seen += 1
    alert.suppressed = bool(covered_by) or is_silenced(alert.source, alert.fingerprint, now)
    alert.save(
        update_fields=[
            "suppressed",
            "service",
            "target",
            "name",
            "severity",
            "summary",
            "labels",
            "last_seen_at",
            "times_seen",
        ]
    )
    if covered_by and not was_suppressed:
        record(
            "alert.suppressed",
            actor=None,
            actor_label=alert.source,
            target=audit_target(alert),
            reason=covered_by,
            data={"severity": alert.severity, "suppressed_by": covered_by},
        )


def release_suppressed(service_ids: Iterable[int], reason: str) -> list[Alert]:
    """What suppressed the alerts of these services has ended (``reason`` says what, e.g.
    "Maintenance #3 ended"): each of their firing suppressed alerts that nothing covers any
    more (no silence, no suppressor) stops being suppressed and, when critical on a
    production target with the service's switch on, opens or joins its incident, as it
    would have without the suppression. Returns the alerts let go. Runs in the caller's
    transaction; every firing alert of the services is locked, whatever its flag, so that
    one being recorded as suppressed right now is seen once it is."""
    now = timezone.now()
    released: list[Alert] = []
    with transaction.atomic():
        rows = (
            Alert.objects.firing()
            .filter(service_id__in=list(service_ids))
            .select_for_update(of=("self",))
            .select_related("service", "target__environment")
            .order_by("pk")
        )
        for alert in rows:
            if not alert.suppressed or is_silenced(alert.source, alert.fingerprint, now):
                continue
            if suppressed_by(alert.service, alert.target, now):
                continue
            alert.suppressed = False
            alert.save(update_fields=["suppressed"])
            record(
                "alert.unsuppressed",
                actor=None,
                actor_label=alert.source,
                target=audit_target(alert),
                reason=reason,
                data={"severity": alert.severity},
            )
            incident_link.link(alert)
            released.append(alert)
    return released


def resolve(*, source: str, fingerprint: str, ended_at: datetime) -> Alert | None:
    """End the firing episode of (source, fingerprint); None when nothing is firing (a replay,
    or a resolution of an alert the portal never saw fire)."""
    with transaction.atomic():
        alert = _firing(source, fingerprint)
        if alert is None:
            return None
        alert.status = AlertStatus.RESOLVED
        alert.ended_at = ended_at
        alert.last_seen_at = timezone.now()
        alert.save(update_fields=["status", "ended_at", "last_seen_at"])
        record(
            "alert.resolved",
            actor=None,
            actor_label=source,
            target=audit_target(alert),
            data={"source": source, "fingerprint": fingerprint, "incident": alert.incident_id},
        )
        incident_link.note_resolution(alert)
    return alert


# --- What people do to alerts (apps.metrics.alert_views) -----------------------------------


class AlertRefused(Exception):
    """The change cannot be made; ``message`` says why, for people. It is audited (denied)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _refuse(actor: User, alert: Alert, action: str, message: str) -> AlertRefused:
    record(
        f"alert.{action}",
        actor=actor,
        outcome=Outcome.DENIED,
        target=audit_target(alert),
        reason=message,
    )
    return AlertRefused(message)


def do_acknowledge_alert(actor: User, alert: Alert) -> Alert:
    """Someone is looking at a firing alert. Acknowledging twice changes nothing."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if not alert.is_firing:
            refused = True
        elif alert.acknowledged_at is not None:
            return alert
        else:
            refused = False
            alert.acknowledged_at = timezone.now()
            alert.acknowledged_by = actor
            alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
            record("alert.acknowledged", actor=actor, target=audit_target(alert))
    if refused:
        raise _refuse(actor, alert, "acknowledge_refused", f"Alert #{alert.pk} is resolved.")
    return alert


def do_silence_alert(actor: User, alert: Alert, *, duration: timedelta, reason: str) -> Silence:
    """Silence an alert's fingerprint until now + ``duration``: while it lasts, the alert (and
    any new episode of it) still records but opens no incident and tells no one."""
    reason = reason.strip()
    if not reason:
        raise _refuse(actor, alert, "silence_refused", "Say why you silence this alert.")
    if duration <= timedelta(0) or duration > MAX_SILENCE:
        raise _refuse(
            actor, alert, "silence_refused", f"A silence lasts at most {MAX_SILENCE.days} days."
        )
    now = timezone.now()
    with transaction.atomic():
        # Any earlier silence of the fingerprint is replaced by this one.
        Silence.objects.active(now).filter(
            source=alert.source, fingerprint=alert.fingerprint
        ).update(lifted_at=now, lifted_by=actor)
        silence = Silence(
            source=alert.source,
            fingerprint=alert.fingerprint,
            alert=alert,
            reason=reason,
            created_by=actor,
            created_at=now,
            expires_at=now + duration,
        )
        silence.save(force_insert=True)
        Alert.objects.firing().filter(source=alert.source, fingerprint=alert.fingerprint).update(
            suppressed=True
        )
        record(
            "alert.silenced",
            actor=actor,
            target=audit_target(alert),
            reason=reason,
            data={"silence": silence.pk, "expires_at": silence.expires_at.isoformat()},
        )
    return silence


def do_lift_silence(actor: User, silence: Silence) -> Silence:
    """End a silence before it expires. A critical alert of it that is still firing then opens
    or joins its incident, as it would have without the silence."""
    with transaction.atomic():
        silence = Silence.objects.select_for_update().select_related("alert").get(pk=silence.pk)
        if not silence.is_active():
            refused = True
        else:
            refused = False
            silence.lifted_at = timezone.now()
            silence.lifted_by = actor
            silence.save(update_fields=["lifted_at", "lifted_by"])
            record(
                "alert.silence_lifted",
                actor=actor,
                target=audit_target(silence.alert),
                data={"silence": silence.pk},
            )
            # Asked before the alert is locked, in the order fire() asks (see Suppressor).
            covered_by = suppressed_by(silence.alert.service, silence.alert.target, timezone.now())
            alert = _firing(silence.source, silence.fingerprint)
            if (
                alert is not None
                and not covered_by
                and not is_silenced(alert.source, alert.fingerprint)
            ):
                if alert.suppressed:
                    alert.suppressed = False
                    alert.save(update_fields=["suppressed"])
                incident_link.link(alert)
    if refused:
        raise _refuse(actor, silence.alert, "unsilence_refused", "This silence has already ended.")
    return silence


def do_set_auto_incident(
    actor: User, service: Service, *, enabled: bool, severity: Severity | None
) -> ServiceAlerting:
    """Switch a service's automatic incidents for critical production alerts on or off."""
    with transaction.atomic():
        alerting, _ = ServiceAlerting.objects.select_for_update().get_or_create(service=service)
        before = (alerting.auto_incident, alerting.incident_severity_id)
        if before == (enabled, severity.pk if severity else None):
            return alerting
        alerting.auto_incident = enabled
        alerting.incident_severity = severity
        alerting.updated_at = timezone.now()
        alerting.save(update_fields=["auto_incident", "incident_severity", "updated_at"])
        record(
            "service.alerting_changed",
            actor=actor,
            target=AuditTarget("services.service", str(service.pk), service.name),
            data={
                "auto_incident": enabled,
                "incident_severity": severity.key if severity else None,
            },
        )
    return alerting
