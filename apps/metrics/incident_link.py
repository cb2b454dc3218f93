"""From alerts to incidents. When a service's switch (ServiceAlerting.auto_incident) is on,
a critical alert firing on one of its production targets attaches to the service's open
incident (a timeline entry) or, when there is none, declares one through the incidents'
own action, in the name of the portal's alerts account. The alert's resolution adds a
timeline entry to the incident it joined.

Everything runs inside the caller's transaction (apps.metrics.alerts), on the locked alert
row: an alert joins an incident at most once, however often it is replayed; the service's
switch row is locked too, so two alerts of one service firing together open one incident."""

from __future__ import annotations

from django.contrib.auth.models import User

from apps.audit.records import record
from apps.incidents.actions import add_entry, audit_target, do_declare_incident
from apps.incidents.choices import EntryKind
from apps.incidents.models import Incident, Severity
from apps.metrics.models import Alert, AlertSeverity, ServiceAlerting

# The account automatic declarations are made in: it cannot sign in (inactive, no password)
# and is never told anything (notifications go to active people only).
ALERTS_USERNAME = "opsportal-alerts"
DEFAULT_SEVERITY = "SEV-2"
AUDIT_ACTOR = "alerts"


def alerts_actor() -> User:
    user, created = User.objects.get_or_create(
        username=ALERTS_USERNAME,
        defaults={"first_name": "OpsPortal", "last_name": "alerts", "is_active": False},
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _severity(alerting: ServiceAlerting) -> Severity | None:
    if alerting.incident_severity_id is not None:
        return alerting.incident_severity
    return (
        Severity.objects.filter(key=DEFAULT_SEVERITY).first()
        or Severity.objects.order_by("rank").first()
    )


def wants_incident(alert: Alert) -> bool:
    """Critical, firing, not silenced, on a production target of a service."""
    return (
        alert.is_firing
        and not alert.suppressed
        and alert.incident_id is None
        and alert.severity == AlertSeverity.CRITICAL
        and alert.service_id is not None
        and alert.target is not None
        and alert.target.environment.is_production
    )


def _entry_data(alert: Alert, phase: str) -> dict[str, object]:
    return {
        "alert": alert.pk,
        "phase": phase,
        "source": alert.source,
        "name": alert.name,
        "severity": alert.severity,
        "target": str(alert.target) if alert.target else "",
    }


def link(alert: Alert) -> Incident | None:
    """Attach ``alert`` (locked by the caller) to its service's open incident or open one,
    when the service's switch is on; returns the incident, or None when nothing was done."""
    if not wants_incident(alert) or alert.service_id is None:
        return None
    alerting = (
        ServiceAlerting.objects.select_for_update(of=("self",))
        .filter(service_id=alert.service_id, auto_incident=True)
        .select_related("incident_severity")
        .first()
    )
    if alerting is None:
        return None
    where = f" on {alert.target}" if alert.target else ""
    text = f"Alert #{alert.pk} {alert.name} ({alert.severity}){where}: {alert.summary}".strip()
    incident = (
        Incident.objects.open()
        .filter(services=alert.service_id)
        .order_by("severity__rank", "declared_at")
        .first()
    )
    if incident is not None:
        add_entry(incident, EntryKind.ALERT, None, text=text, data=_entry_data(alert, "attached"))
        record(
            "incident.alert_attached",
            actor=None,
            actor_label=AUDIT_ACTOR,
            target=audit_target(incident),
            data={"alert": alert.pk, "fingerprint": alert.fingerprint},
        )
    else:
        severity = _severity(alerting)
        if severity is None:
            return None  # no severities defined: nothing to declare with
        assert alert.service is not None and alert.target is not None
        incident = do_declare_incident(
            alerts_actor(),
            title=f"{alert.name} on {alert.service.name}"[:200],
            severity=severity,
            services=[alert.service],
            environments=[alert.target.environment],
            customer_impact=alert.summary,
        )
        add_entry(incident, EntryKind.ALERT, None, text=text, data=_entry_data(alert, "opened"))
    alert.incident = incident
    alert.save(update_fields=["incident"])
    return incident


def note_resolution(alert: Alert) -> None:
    """The resolved alert's line in the timeline of the incident it joined."""
    if alert.incident_id is None:
        return
    incident = Incident.objects.get(pk=alert.incident_id)
    add_entry(
        incident,
        EntryKind.ALERT,
        None,
        occurred_at=alert.ended_at,
        text=f"Alert #{alert.pk} {alert.name} resolved.",
        data=_entry_data(alert, "resolved"),
    )
    record(
        "incident.alert_resolved",
        actor=None,
        actor_label=AUDIT_ACTOR,
        target=audit_target(incident),
        data={"alert": alert.pk, "fingerprint": alert.fingerprint},
    )
