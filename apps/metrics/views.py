"""Pages of metrics: the Prometheus connection (admins) and each service's metric
definitions with their current states."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import require_permission
from apps.common.editing import edit_page
from apps.common.http import PortalRequest
from apps.metrics import actions
from apps.metrics.forms import ConnectionForm, DefinitionForm
from apps.metrics.models import MetricDefinition, MetricState, PrometheusConnection
from apps.services.models import DeploymentTarget, Service


@require_permission("metrics.change_prometheusconnection")
@require_http_methods(["GET", "POST"])
def connection(request: PortalRequest) -> HttpResponse:
    current = PrometheusConnection.current()
    form = ConnectionForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        saved = actions.do_save_connection(request.user, form)
        messages.success(request, f"Saved the connection to {saved.url}. Test it below.")
        return redirect("metrics:connection")
    status = 400 if request.method == "POST" else 200
    return render(
        request, "metrics/connection.html", {"form": form, "current": current}, status=status
    )


@require_permission("metrics.change_prometheusconnection")
@require_POST
def connection_check(request: PortalRequest) -> HttpResponse:
    current = PrometheusConnection.current()
    if current is None:
        messages.error(request, "Save a connection first.")
        return redirect("metrics:connection")
    checked = actions.do_check_connection(request.user, current)
    if checked.check_ok:
        messages.success(request, checked.check_detail)
    else:
        messages.error(request, f"Prometheus does not answer: {checked.check_detail}")
    if request.htmx and not request.htmx.boosted:
        return render(request, "metrics/connection.html#status", {"current": checked, "form": None})
    return redirect("metrics:connection")


@require_permission("metrics.view_metricdefinition")
@require_GET
def definitions(request: PortalRequest, service_id: int) -> HttpResponse:
    service = get_object_or_404(Service, pk=service_id)
    metric_definitions = list(service.metric_definitions.all())
    targets = list(DeploymentTarget.objects.filter(service=service).select_related("environment"))
    states = {
        (state.definition_id, state.target_id): state
        for state in MetricState.objects.filter(definition__service=service)
    }
    rows = [
        (definition, [(target, states.get((definition.pk, target.pk))) for target in targets])
        for definition in metric_definitions
    ]
    context: dict[str, Any] = {
        "service": service,
        "targets": targets,
        "rows": rows,
        "configured": PrometheusConnection.objects.exists(),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "metrics/definitions.html#table", context)
    return render(request, "metrics/definitions.html", context)


def _save_definition(request: PortalRequest) -> Any:
    def save(actor: Any, form: DefinitionForm) -> MetricDefinition:
        saved = actions.do_save_definition(actor, form)
        if form.unchecked:
            messages.warning(
                request,
                f"The query was saved without being checked: {form.unchecked} "
                "The evaluator will show an error as “no data” with Prometheus's message.",
            )
        return saved

    return save


@require_permission("metrics.add_metricdefinition")
@require_http_methods(["GET", "POST"])
def definition_create(request: PortalRequest, service_id: int) -> HttpResponse:
    service = get_object_or_404(Service, pk=service_id)
    form = DefinitionForm(request.POST or None, service=service)
    back = reverse("metrics:definitions", args=[service.pk])
    return edit_page(
        request,
        form,
        title=f"New metric for {service.name}",
        back=back,
        save=_save_definition(request),
    )


@require_permission("metrics.change_metricdefinition")
@require_http_methods(["GET", "POST"])
def definition_edit(request: PortalRequest, service_id: int, pk: int) -> HttpResponse:
    definition = get_object_or_404(MetricDefinition, pk=pk, service_id=service_id)
    form = DefinitionForm(request.POST or None, instance=definition, service=definition.service)
    back = reverse("metrics:definitions", args=[service_id])
    return edit_page(
        request,
        form,
        title=f"Edit {definition.name} of {definition.service.name}",
        back=back,
        save=_save_definition(request),
    )
