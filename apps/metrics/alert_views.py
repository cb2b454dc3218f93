"""The alerts page (/alerts/): what is firing now and what fired recently, per service, with
acknowledge, silence (an expiry and a reason) and lifting a silence; and, for admins, a
service's switch for automatic incidents. Every change goes through one action of
apps.metrics.alerts; a refusal is shown and audited, and nothing is saved."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Case, Exists, OuterRef, QuerySet, Value, When
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from apps.accounts.access import require_permission
from apps.common.http import PortalRequest
from apps.common.paging import keyset_page
from apps.incidents.models import Severity
from apps.metrics import alerts
from apps.metrics.alerts import AlertRefused
from apps.metrics.models import (
    Alert,
    AlertSeverity,
    AlertSource,
    AlertStatus,
    ServiceAlerting,
    Silence,
)
from apps.services.models import Service

UNMATCHED = "unmatched"
STATE_FILTERS = [("", "Firing and recent"), ("firing", "Firing"), ("resolved", "Resolved")]
DURATIONS = [
    ("1h", "1 hour", timedelta(hours=1)),
    ("4h", "4 hours", timedelta(hours=4)),
    ("24h", "24 hours", timedelta(hours=24)),
    ("7d", "7 days", timedelta(days=7)),
]
SILENCES_SHOWN = 50
SEVERITY_ORDER = Case(
    When(severity=AlertSeverity.CRITICAL, then=Value(0)),
    When(severity=AlertSeverity.WARNING, then=Value(1)),
    default=Value(2),
)


class AlertFilterForm(forms.Form):
    service = forms.CharField(required=False, max_length=100)
    state = forms.ChoiceField(required=False, choices=STATE_FILTERS)
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


class SilenceForm(forms.Form):
    duration = forms.ChoiceField(
        label="Silence for",
        choices=[(key, label) for key, label, _ in DURATIONS],
        initial="4h",
        widget=forms.Select(attrs={"class": "form-select"}),
    )
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2, "class": "form-control"}),
        help_text="Why it can be ignored for now: a known issue, a test, a change under way.",
    )

    @property
    def period(self) -> timedelta:
        return next(span for key, _, span in DURATIONS if key == self.cleaned_data["duration"])


class AlertingForm(forms.Form):
    auto_incident = forms.BooleanField(
        required=False, label="Open an incident automatically for critical production alerts"
    )
    incident_severity = forms.ModelChoiceField(
        queryset=Severity.objects.order_by("rank"),
        required=False,
        to_field_name="key",
        empty_label="SEV-2 (default)",
        label="Severity of those incidents",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )


def _is_fragment(request: PortalRequest) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


def _with_silence(rows: QuerySet[Alert]) -> QuerySet[Alert]:
    active = Silence.objects.active().filter(
        source=OuterRef("source"), fingerprint=OuterRef("fingerprint")
    )
    return rows.select_related("service", "target__environment", "incident").annotate(
        silenced=Exists(active)
    )


def _back(request: PortalRequest) -> str:
    """Where a change from the list returns: the list as it was (filters kept)."""
    wanted = request.POST.get("next", "")
    if wanted and url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return reverse("metrics:alerts")


@require_permission("metrics.view_alert")
@require_GET
def alert_list(request: PortalRequest) -> HttpResponse:
    """Firing alerts first (critical first), then resolved ones newest first, paged by id.
    ``?service=<slug>`` (or ``unmatched``) and ``?state=`` filter; a bad value is ignored."""
    form = AlertFilterForm(request.GET)
    form.is_valid()
    filters = getattr(form, "cleaned_data", {})
    state = filters.get("state") or ""
    slug = filters.get("service") or ""
    service = Service.objects.filter(slug=slug).first() if slug and slug != UNMATCHED else None
    rows = _with_silence(Alert.objects.all())
    if slug == UNMATCHED:
        rows = rows.filter(service__isnull=True)
    elif service is not None:
        rows = rows.filter(service=service)
    before = filters.get("before")
    firing: list[Alert] = []
    if state == "":
        if not before:
            firing = list(
                rows.filter(status=AlertStatus.FIRING).order_by(SEVERITY_ORDER, "-started_at")
            )
        rest = rows.filter(status=AlertStatus.RESOLVED)
    else:
        rest = rows.filter(status=state)
    page = keyset_page(request, rest.order_by("-pk"), "pk", before)
    silences = (
        Silence.objects.active()
        .select_related("alert__service", "created_by")
        .order_by("expires_at")
    )
    if service is not None:
        silences = silences.filter(alert__service=service)
    alerting = None
    if service is not None:
        alerting = ServiceAlerting.objects.filter(service=service).first()
    context: dict[str, Any] = {
        "form": form,
        "state": state,
        "state_filters": STATE_FILTERS,
        "services": Service.objects.order_by("name").only("slug", "name"),
        "selected": slug if (service is not None or slug == UNMATCHED) else "",
        "service": service,
        "firing": firing,
        "rows": page.rows,
        "next_query": page.next_query,
        "paged": bool(before),
        "filtered": bool(service is not None or slug == UNMATCHED or state),
        "silences": list(silences[:SILENCES_SHOWN]),
        "alerting": alerting,
        "alerting_form": AlertingForm(
            initial={
                "auto_incident": bool(alerting and alerting.auto_incident),
                "incident_severity": alerting.incident_severity.key
                if alerting and alerting.incident_severity
                else None,
            }
        ),
        "here": request.get_full_path(),
    }
    if _is_fragment(request):
        return render(request, "metrics/alerts.html#results", context)
    return render(request, "metrics/alerts.html", context)


@require_permission("metrics.change_alert")
@require_POST
def alert_acknowledge(request: PortalRequest, pk: int) -> HttpResponse:
    """Someone is on it."""
    alert = get_object_or_404(Alert, pk=pk)
    try:
        alerts.do_acknowledge_alert(request.user, alert)
    except AlertRefused as exc:
        messages.error(request, exc.message)
        if _is_fragment(request):
            # The list reloads to show why; the row alone has no room for it.
            return HttpResponseClientRedirect(_back(request))
    else:
        if not _is_fragment(request):
            messages.success(request, f"Alert #{alert.pk} {alert.name} acknowledged.")
    if _is_fragment(request):
        # The row says "Acknowledged" itself.
        row = _with_silence(Alert.objects.filter(pk=pk)).get()
        return render(request, "metrics/_alert_row.html", {"alert": row, "here": _back(request)})
    return redirect(_back(request))


@require_permission("metrics.add_silence")
@require_http_methods(["GET", "POST"])
def alert_silence(request: PortalRequest, pk: int) -> HttpResponse:
    """The silence's confirmation page: what it will do, for how long, and why."""
    alert = get_object_or_404(Alert.objects.select_related("service", "target"), pk=pk)
    form = SilenceForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                silence = alerts.do_silence_alert(
                    request.user,
                    alert,
                    duration=form.period,
                    reason=form.cleaned_data["reason"],
                )
            except AlertRefused as exc:
                form.add_error(None, exc.message)
            else:
                when = timezone.localtime(silence.expires_at).strftime("%Y-%m-%d %H:%M %Z")
                messages.success(request, f"Alert #{alert.pk} {alert.name} silenced until {when}.")
                return redirect(_back(request))
        status = 400
    context = {
        "alert": alert,
        "form": form,
        "amtool": _amtool(alert),
        "next": _back(request) if request.method == "POST" else request.GET.get("next", ""),
    }
    return render(request, "metrics/alerts_silence.html", context, status=status)


def _amtool(alert: Alert) -> str:
    """The equivalent command for people who know Alertmanager."""
    if alert.source != AlertSource.ALERTMANAGER:
        return ""
    matchers = " ".join(
        f'{key}="{value}"' for key, value in sorted(alert.labels.items()) if key != "severity"
    )
    return f'amtool silence add {matchers} --duration=4h --comment="<reason>"'


@require_permission("metrics.change_silence")
@require_POST
def silence_lift(request: PortalRequest, pk: int) -> HttpResponse:
    """End a silence now."""
    silence = get_object_or_404(Silence.objects.select_related("alert"), pk=pk)
    try:
        alerts.do_lift_silence(request.user, silence)
    except AlertRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Alert #{silence.alert_id} {silence.alert.name} is no longer silenced."
        )
    return redirect(_back(request))


@require_permission("metrics.change_servicealerting")
@require_POST
def service_alerting(request: PortalRequest, pk: int) -> HttpResponse:
    """Switch a service's automatic incidents on or off."""
    service = get_object_or_404(Service, pk=pk)
    form = AlertingForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a severity from the list.")
    else:
        alerting = alerts.do_set_auto_incident(
            request.user,
            service,
            enabled=form.cleaned_data["auto_incident"],
            severity=form.cleaned_data["incident_severity"],
        )
        messages.success(
            request,
            f"Automatic incidents for {service.name} are "
            f"{'on' if alerting.auto_incident else 'off'}.",
        )
    return redirect(f"{reverse('metrics:alerts')}?service={service.slug}")
