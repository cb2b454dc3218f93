"""Every change to the metrics configuration: one transaction and one audit record each,
with the fields changed (secrets masked)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, field_changes, record, save_form_recorded
from apps.metrics.client import MetricsUnavailable
from apps.metrics.forms import ConnectionForm, DefinitionForm
from apps.metrics.models import MetricDefinition, PrometheusConnection


def audit_target(instance: PrometheusConnection | MetricDefinition) -> AuditTarget:
    return AuditTarget(f"metrics.{instance._meta.model_name}", str(instance.pk), str(instance))


def do_save_connection(actor: User, form: ConnectionForm) -> PrometheusConnection:
    """Create or change the Prometheus connection; a new token or password is encrypted
    before it is stored, and the audit record says only that it changed."""
    changes = field_changes(form)
    for secret in ("token", "password", "remove_token", "remove_password"):
        changes.pop(secret, None)
    connection: PrometheusConnection = form.instance
    data = form.cleaned_data
    if data.get("token"):
        connection.set_token(data["token"])
        changes["bearer"] = ["", "replaced"]
    elif data.get("remove_token"):
        connection.set_token("")
        changes["bearer"] = ["stored", "removed"]
    if data.get("password"):
        connection.set_password(data["password"])
        changes["basic_auth"] = ["", "replaced"]
    elif data.get("remove_password") or not data.get("username"):
        if connection.has_password:
            changes["basic_auth"] = ["stored", "removed"]
        connection.set_password("")
    connection.updated_at = timezone.now()
    # A new URL or new credentials: the last check says nothing about them.
    connection.checked_at, connection.check_ok, connection.check_detail = None, None, ""
    saved: PrometheusConnection = save_form_recorded(
        actor, form, target_of=audit_target, changes=changes
    )
    return saved


def do_check_connection(actor: User, connection: PrometheusConnection) -> PrometheusConnection:
    """Ask Prometheus for its version and a query with the stored credentials; keep the
    answer and audit the check."""
    try:
        ok, detail = True, connection.client().check()
    except MetricsUnavailable as exc:
        ok, detail = False, exc.message
    except Exception as exc:  # a QueryError on vector(1) means something odd answers
        ok, detail = False, str(exc)
    connection.check_ok = ok
    connection.check_detail = detail[:500]
    connection.checked_at = timezone.now()
    with transaction.atomic():
        connection.save(update_fields=["check_ok", "check_detail", "checked_at"])
        record(
            "prometheusconnection.checked",
            actor=actor,
            outcome=Outcome.SUCCEEDED if ok else Outcome.FAILED,
            target=audit_target(connection),
            reason=detail,
        )
    return connection


def do_save_definition(actor: User, form: DefinitionForm) -> MetricDefinition:
    """Create or change a metric definition (already checked against Prometheus by the form;
    the audit record says when it could not be)."""
    changes = field_changes(form)
    reason = f"Not checked: {form.unchecked}" if form.unchecked else ""
    saved: MetricDefinition = save_form_recorded(
        actor, form, target_of=audit_target, changes=changes, reason=reason
    )
    return saved
