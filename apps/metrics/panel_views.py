"""The metrics panel of a service page: loaded by htmx into the page, or shown alone (with
the site's layout) when followed as a plain link without JavaScript."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from apps.accounts.access import require_permission
from apps.common.http import PortalRequest
from apps.metrics import charts, panels
from apps.services.models import DeploymentTarget


@require_permission("services.view_service")
@require_GET
def target_panel(request: PortalRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(
        DeploymentTarget.objects.select_related("service", "environment"), pk=pk
    )
    range_key = request.GET.get("range", charts.DEFAULT_RANGE)
    panel = panels.metrics_panel(target, range_key)
    partial = request.htmx and not request.htmx.boosted
    template = "metrics/_panel.html" if partial else "metrics/_panel_page.html"
    return render(request, template, {"panel": panel, "target": target})
