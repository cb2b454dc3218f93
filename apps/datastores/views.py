"""The datastore pages: the list of PostgreSQL and Redis targets, each one's console (a
read-only snapshot, refreshed by htmx every 5 s while the page is open), and the admins'
Redis target forms. The consoles' buttons lead to the operations engine's start pages."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import require_permission
from apps.backups.models import TARGET_TYPE, DatabaseTarget
from apps.backups.postgres import DatabaseProblem
from apps.common.editing import edit_page
from apps.common.http import PortalRequest
from apps.datastores import actions, operations, postgres, redis_client
from apps.datastores.forms import RedisTargetForm
from apps.datastores.models import REDIS_TARGET_TYPE, RedisTarget
from apps.operations.models import Operation

RECENT_OPERATIONS = 5


def _fragment_wanted(request: PortalRequest) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


def _recent(target_type: str, pk: int) -> Any:
    return Operation.objects.for_list().filter(
        target_type=target_type, target_id=str(pk), kind__startswith="datastores."
    )[:RECENT_OPERATIONS]


@require_permission("datastores.view_datastore")
@require_GET
def datastore_list(request: PortalRequest) -> HttpResponse:
    context = {
        "databases": DatabaseTarget.objects.select_related("service"),
        "redis_targets": RedisTarget.objects.select_related("service"),
    }
    return render(request, "datastores/list.html", context)


@require_permission("datastores.view_datastore")
@require_GET
def postgres_console(request: PortalRequest, pk: int) -> HttpResponse:
    """One connection per load, closed after; a server that is down or slow is a message on
    the page, never a 500."""
    target = get_object_or_404(DatabaseTarget.objects.select_related("service"), pk=pk)
    snapshot, problem = None, ""
    try:
        snapshot = postgres.read_snapshot(target)
    except DatabaseProblem as exc:
        problem = str(exc)
    context = {
        "target": target,
        "snapshot": snapshot,
        "problem": problem,
        "warning_percent": postgres.WARNING_PERCENT,
        "critical_percent": postgres.CRITICAL_PERCENT,
        "long_minutes": int(postgres.LONG_QUERY.total_seconds() // 60),
        "cancel_kind": operations.PG_CANCEL,
        "terminate_kind": operations.PG_TERMINATE,
        "vacuum_kind": operations.PG_VACUUM,
    }
    if _fragment_wanted(request):
        return render(request, "datastores/postgres.html#console", context)
    context["operations"] = _recent(TARGET_TYPE, target.pk)
    return render(request, "datastores/postgres.html", context)


@require_permission("datastores.view_datastore")
@require_GET
def redis_console(request: PortalRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(RedisTarget.objects.select_related("service"), pk=pk)
    snapshot, problem = None, ""
    try:
        snapshot = redis_client.read_snapshot(target)
    except redis_client.RedisProblem as exc:
        problem = str(exc)
    context = {
        "target": target,
        "snapshot": snapshot,
        "problem": problem,
        "delete_kind": operations.REDIS_DELETE_KEYS,
        "clear_failed_kind": operations.REDIS_CLEAR_FAILED,
        "bgsave_kind": operations.REDIS_BGSAVE,
        "flush_kind": operations.REDIS_FLUSHDB,
    }
    if _fragment_wanted(request):
        return render(request, "datastores/redis.html#console", context)
    context["operations"] = _recent(REDIS_TARGET_TYPE, target.pk)
    return render(request, "datastores/redis.html", context)


@require_permission("datastores.add_redistarget")
@require_http_methods(["GET", "POST"])
def redis_create(request: PortalRequest) -> HttpResponse:
    return edit_page(
        request,
        RedisTargetForm(request.POST or None),
        title="New Redis target",
        back=reverse("datastores:list"),
        save=actions.do_save_redis_target,
        done=lambda target: target.get_absolute_url(),
    )


@require_permission("datastores.change_redistarget")
@require_http_methods(["GET", "POST"])
def redis_edit(request: PortalRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(RedisTarget, pk=pk)
    return edit_page(
        request,
        RedisTargetForm(request.POST or None, instance=target),
        title=f"Edit {target.name}",
        back=target.get_absolute_url(),
        save=actions.do_save_redis_target,
        done=lambda saved: saved.get_absolute_url(),
    )


@require_permission("datastores.change_redistarget")
@require_POST
def redis_check(request: PortalRequest, pk: int) -> HttpResponse:
    target = actions.do_test_redis_connection(request.user, get_object_or_404(RedisTarget, pk=pk))
    if target.check_ok:
        messages.success(request, f"{target.name} answers: {target.check_detail}.")
    else:
        messages.error(request, f"{target.name} cannot be reached: {target.check_detail}")
    return redirect(target)


# --- the panels of the service page ------------------------------------------------------------
# The service page includes datastores/_service_panels.html, which lists the service's
# targets (two queries, whatever their number) and loads each panel from these views with
# htmx: a server that is down or slow makes its own panel say so, never the service page wait
# for it or fail.


@require_permission("datastores.view_datastore")
@require_GET
def postgres_panel(request: PortalRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(DatabaseTarget, pk=pk)
    context: dict[str, Any] = {
        "target": target,
        "warning_percent": postgres.WARNING_PERCENT,
        "critical_percent": postgres.CRITICAL_PERCENT,
    }
    try:
        context["snapshot"] = postgres.read_headline(target)
    except DatabaseProblem as exc:
        context["problem"] = str(exc)
    return render(request, "datastores/_postgres_panel.html", context)


@require_permission("datastores.view_datastore")
@require_GET
def redis_panel(request: PortalRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(RedisTarget, pk=pk)
    context: dict[str, Any] = {"target": target}
    try:
        context["snapshot"] = redis_client.read_headline(target)
    except redis_client.RedisProblem as exc:
        context["problem"] = str(exc)
    return render(request, "datastores/_redis_panel.html", context)
