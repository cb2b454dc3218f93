from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import require_permission
from apps.audit.history import recent_history
from apps.common.editing import edit_page
from apps.common.http import PortalRequest
from apps.incidents.choices import OPEN_STATES
from apps.operations.models import Operation
from apps.operations.registry import get_kind
from apps.services import actions, badges, gate, probes
from apps.services.cluster import ClusterError
from apps.services.forms import (
    HEALTH_ORDER,
    ClusterForm,
    DashboardFilterForm,
    EnvironmentForm,
    FreezeForm,
    ServiceForm,
    TargetForm,
)
from apps.services.models import (
    TARGET_TYPE,
    Cluster,
    DeployFreeze,
    DeploymentTarget,
    Environment,
    Service,
)
from apps.services.observe import deployment_of
from apps.services.tiles import Tile

# The buttons of a service page, in the order people reach for them.
ACTION_KINDS = [
    "services.rollout",
    "services.rollback",
    "services.restart",
    "services.scale",
    "services.set_flags",
    "services.logs",
    "services.block_traffic",
]


@require_permission("services.view_service")
@require_GET
def dashboard(request: PortalRequest) -> HttpResponse:
    """Services × environments at a glance, from what the probes and the cluster watcher
    last stored: a fixed number of queries whatever the number of services."""
    form = DashboardFilterForm(request.GET)
    services = Service.objects.all()
    filters = form.cleaned_data if form.is_valid() else {}
    if query := filters.get("q"):
        services = services.filter(Q(name__icontains=query) | Q(team__icontains=query))
    if team := filters.get("team"):
        services = services.filter(team=team)
    if tier := filters.get("tier"):
        services = services.filter(tier=tier)
    environments = list(Environment.objects.all())
    service_list = list(services.only("name", "slug", "team", "tier"))
    targets = DeploymentTarget.objects.for_dashboard().filter(service__in=services)
    now = timezone.now()
    by_place = {(target.service_id, target.environment_id): target for target in targets}
    target_badges = badges.for_targets(list(by_place.values()), now)
    rows = []
    for service in service_list:
        cells = [
            Tile.of(target, service, environment, now, target_badges.get(target.pk, []))
            if (target := by_place.get((service.pk, environment.pk)))
            else None
            for environment in environments
        ]
        worst = min((HEALTH_ORDER[tile.health] for tile in cells if tile), default=99)
        if not filters.get("problems") or worst < HEALTH_ORDER["no_data"]:
            rows.append((service, cells, worst))
    if filters.get("problems"):
        rows.sort(key=lambda row: row[2])
    context = {
        "form": form,
        "environments": environments,
        "rows": rows,
        "total": len(service_list),
        "teams": Service.objects.order_by("team").values_list("team", flat=True).distinct(),
        "filtered": any(request.GET.get(name) for name in ("q", "team", "tier", "problems")),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "services/dashboard.html#grid", context)
    return render(request, "services/dashboard.html", context)


def _chosen(targets: list[DeploymentTarget], env_slug: str | None) -> DeploymentTarget | None:
    if env_slug:
        return next((t for t in targets if t.environment.slug == env_slug), None)
    # Production first when there is one: it is what people open the page for at 3 a.m.
    production = (t for t in targets if t.environment.is_production)
    return next(production, targets[0] if targets else None)


@require_permission("services.view_service")
@require_GET
def service_detail(request: PortalRequest, slug: str) -> HttpResponse:
    service = get_object_or_404(Service, slug=slug)
    targets = list(
        DeploymentTarget.objects.filter(service=service).select_related("environment", "cluster")
    )
    target = _chosen(targets, request.GET.get("env"))
    context: dict[str, Any] = {
        "service": service,
        "targets": targets,
        "target": target,
        # Worst first: what is already declared on it, before someone declares it again.
        "open_incidents": service.incidents.filter(state__in=OPEN_STATES)
        .select_related("severity")
        .order_by("severity__rank", "pk"),
        # The service itself and every environment's target: its whole story on one page.
        "history": recent_history(
            [("services.service", service.pk)] + [(TARGET_TYPE, each.pk) for each in targets]
        ),
        "history_url": f"{reverse('audit:list')}?{urlencode({'q': service.name})}",
    }
    if target is not None:
        now = timezone.now()
        kinds = [get_kind(name) for name in ACTION_KINDS]
        context.update(
            {
                "health_state": target.health_now(now),
                "uptime": probes.uptime(target, now),
                "chart": probes.history_chart(target, now=now),
                "latest_check": target.health_checks.first(),
                "operations": Operation.objects.for_list().filter(
                    target_type=TARGET_TYPE, target_id=str(target.pk)
                )[:10],
                "blockers": gate.blockers(target, now),
                "kinds": [kind for kind in kinds if request.user.has_perm(kind.permission)],
            }
        )
    return render(request, "services/detail.html", context)


@require_permission("services.view_service")
@require_GET
def deployment_panel(request: PortalRequest, pk: int) -> HttpResponse:
    """The deployment as the cluster reports it now (loaded by the service page, and
    refreshed while it is open). A cluster that fails says why here, not with a 500."""
    target = get_object_or_404(
        DeploymentTarget.objects.select_related("service", "environment", "cluster"), pk=pk
    )
    context: dict[str, Any] = {"target": target}
    try:
        with deployment_of(target) as deployment:
            context["state"] = deployment.read()
            context["revisions"] = deployment.revisions()
            context["pods"] = deployment.pods()
            context["status"] = deployment.rollout_status()
    except ClusterError as exc:
        context["error"] = exc.message
    context["can_run"] = request.user.has_perm("operations.run_operation")
    return render(request, "services/_deployment.html", context)


# --- Catalog management (admins) ---------------------------------------------------------


@require_permission("services.add_service")
@require_http_methods(["GET", "POST"])
def service_create(request: PortalRequest) -> HttpResponse:
    form = ServiceForm(request.POST or None)
    return edit_page(
        request,
        form,
        title="New service",
        back=reverse("services:dashboard"),
        save=actions.do_save_catalog_entry,
        done=lambda service: service.get_absolute_url(),
    )


@require_permission("services.change_service")
@require_http_methods(["GET", "POST"])
def service_edit(request: PortalRequest, slug: str) -> HttpResponse:
    service = get_object_or_404(Service, slug=slug)
    form = ServiceForm(request.POST or None, instance=service)
    return edit_page(
        request,
        form,
        title=f"Edit {service.name}",
        back=service.get_absolute_url(),
        save=actions.do_save_catalog_entry,
        done=lambda saved: saved.get_absolute_url(),
    )


@require_permission("services.add_deploymenttarget")
@require_http_methods(["GET", "POST"])
def target_create(request: PortalRequest, slug: str) -> HttpResponse:
    service = get_object_or_404(Service, slug=slug)
    form = TargetForm(request.POST or None, service=service)
    return edit_page(
        request,
        form,
        title=f"New deployment target for {service.name}",
        back=service.get_absolute_url(),
        save=actions.do_save_catalog_entry,
        done=lambda target: target.get_absolute_url(),
    )


@require_permission("services.change_deploymenttarget")
@require_http_methods(["GET", "POST"])
def target_edit(request: PortalRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(DeploymentTarget.objects.select_related("service"), pk=pk)
    form = TargetForm(request.POST or None, instance=target, service=target.service)
    return edit_page(
        request,
        form,
        title=f"Edit {target}",
        back=target.get_absolute_url(),
        save=actions.do_save_catalog_entry,
        done=lambda saved: saved.get_absolute_url(),
    )


@require_permission("services.view_service")
@require_GET
def environment_list(request: PortalRequest) -> HttpResponse:
    return render(
        request, "services/environments.html", {"environments": Environment.objects.all()}
    )


@require_permission("services.add_environment")
@require_http_methods(["GET", "POST"])
def environment_create(request: PortalRequest) -> HttpResponse:
    form = EnvironmentForm(request.POST or None)
    back = reverse("services:environments")
    return edit_page(
        request, form, title="New environment", back=back, save=actions.do_save_catalog_entry
    )


@require_permission("services.change_environment")
@require_http_methods(["GET", "POST"])
def environment_edit(request: PortalRequest, pk: int) -> HttpResponse:
    environment = get_object_or_404(Environment, pk=pk)
    form = EnvironmentForm(request.POST or None, instance=environment)
    back = reverse("services:environments")
    return edit_page(
        request,
        form,
        title=f"Edit {environment.name}",
        back=back,
        save=actions.do_save_catalog_entry,
    )


@require_permission("services.view_service")
@require_GET
def cluster_list(request: PortalRequest) -> HttpResponse:
    return render(request, "services/clusters.html", {"clusters": Cluster.objects.all()})


@require_permission("services.add_cluster")
@require_http_methods(["GET", "POST"])
def cluster_create(request: PortalRequest) -> HttpResponse:
    form = ClusterForm(request.POST or None, request.FILES or None)
    back = reverse("services:clusters")
    return edit_page(request, form, title="New cluster", back=back, save=actions.do_save_cluster)


@require_permission("services.change_cluster")
@require_http_methods(["GET", "POST"])
def cluster_edit(request: PortalRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    form = ClusterForm(request.POST or None, request.FILES or None, instance=cluster)
    back = reverse("services:clusters")
    return edit_page(
        request, form, title=f"Edit {cluster.name}", back=back, save=actions.do_save_cluster
    )


@require_permission("services.change_cluster")
@require_POST
def cluster_check(request: PortalRequest, pk: int) -> HttpResponse:
    cluster = actions.do_check_cluster(request.user, get_object_or_404(Cluster, pk=pk))
    if cluster.check_ok:
        messages.success(request, f"{cluster.name} answers: {cluster.check_detail}.")
    else:
        messages.error(request, f"{cluster.name} does not answer: {cluster.check_detail}")
    return redirect("services:clusters")


@require_permission("services.view_service")
@require_GET
def freeze_list(request: PortalRequest) -> HttpResponse:
    now = timezone.now()
    freezes = DeployFreeze.objects.select_related(
        "service", "environment", "created_by", "lifted_by"
    )
    return render(
        request,
        "services/freezes.html",
        {
            "in_force": list(freezes.in_force(now)),
            "past": list(freezes.exclude(pk__in=freezes.in_force(now).values("pk"))[:50]),
        },
    )


@require_permission("services.add_deployfreeze")
@require_http_methods(["GET", "POST"])
def freeze_create(request: PortalRequest) -> HttpResponse:
    form = FreezeForm(request.POST or None, initial=request.GET.dict() or None)
    back = reverse("services:freezes")
    return edit_page(
        request, form, title="Freeze changes", back=back, save=actions.do_save_catalog_entry
    )


@require_permission("services.change_deployfreeze")
@require_POST
def freeze_lift(request: PortalRequest, pk: int) -> HttpResponse:
    freeze = get_object_or_404(DeployFreeze, pk=pk)
    actions.do_lift_freeze(request.user, freeze, request.POST.get("reason", ""))
    messages.success(request, f"The freeze of {freeze.scope_label} is lifted.")
    return redirect("services:freezes")
