"""The backups pages: targets with their last good backup, a target's backup history, the
storage list, and the admins' forms for targets and storage."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import require_permission
from apps.backups import actions
from apps.backups.forms import BackupStorageForm, DatabaseTargetForm
from apps.backups.models import TARGET_TYPE, Backup, BackupStorage, DatabaseTarget
from apps.common.editing import edit_page
from apps.common.http import PortalRequest
from apps.common.paging import keyset_page
from apps.operations.models import Operation

BACKUP_KIND = "backups.backup"
HISTORY_PAGE_SIZE = 25


def _fragment_wanted(request: PortalRequest) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


@require_permission("backups.view_backup")
@require_GET
def backup_list(request: PortalRequest) -> HttpResponse:
    """Every target with its newest good backup: a fixed number of queries."""
    query = request.GET.get("q", "").strip()[:100]
    targets = DatabaseTarget.objects.select_related("storage", "service")
    if query:
        targets = targets.filter(
            Q(name__icontains=query) | Q(database__icontains=query) | Q(host__icontains=query)
        )
    rows = list(targets.with_last_good_backup_id())
    last_good = Backup.objects.select_related("started_by").in_bulk(
        [row.last_good_backup_id for row in rows if row.last_good_backup_id]  # type: ignore[attr-defined]
    )
    context = {
        "rows": [(target, last_good.get(target.last_good_backup_id)) for target in rows],  # type: ignore[attr-defined]
        "query": query,
        "has_storage": BackupStorage.objects.exists(),
        "backup_kind": BACKUP_KIND,
    }
    if _fragment_wanted(request):
        return render(request, "backups/list.html#targets", context)
    return render(request, "backups/list.html", context)


@require_permission("backups.view_backup")
@require_GET
def target_detail(request: PortalRequest, pk: int) -> HttpResponse:
    """A target and its backups, newest first, paged by id."""
    target = get_object_or_404(DatabaseTarget.objects.select_related("storage", "service"), pk=pk)
    before = request.GET.get("before", "")
    history = (
        Backup.objects.filter(target=target)
        .select_related("storage", "started_by", "operation")
        .order_by("-pk")
    )
    page = keyset_page(
        request, history, "pk", int(before) if before.isdigit() else None, HISTORY_PAGE_SIZE
    )
    context = {
        "target": target,
        "backups": page.rows,
        "next_query": page.next_query,
        "last_good": Backup.objects.good().filter(target=target).order_by("-finished_at").first(),
        "operations": Operation.objects.for_list().filter(
            target_type=TARGET_TYPE, target_id=str(target.pk)
        )[:5],
        "backup_kind": BACKUP_KIND,
    }
    if _fragment_wanted(request):
        return render(request, "backups/target.html#history", context)
    return render(request, "backups/target.html", context)


@require_permission("backups.add_databasetarget")
@require_http_methods(["GET", "POST"])
def target_create(request: PortalRequest) -> HttpResponse:
    form = DatabaseTargetForm(request.POST or None)
    return edit_page(
        request,
        form,
        title="New database target",
        back=reverse("backups:list"),
        save=actions.do_save_database_target,
        done=lambda target: target.get_absolute_url(),
    )


@require_permission("backups.change_databasetarget")
@require_http_methods(["GET", "POST"])
def target_edit(request: PortalRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(DatabaseTarget, pk=pk)
    form = DatabaseTargetForm(request.POST or None, instance=target)
    return edit_page(
        request,
        form,
        title=f"Edit {target.name}",
        back=target.get_absolute_url(),
        save=actions.do_save_database_target,
        done=lambda saved: saved.get_absolute_url(),
    )


@require_permission("backups.change_databasetarget")
@require_POST
def target_check(request: PortalRequest, pk: int) -> HttpResponse:
    target = actions.do_test_database_connection(
        request.user, get_object_or_404(DatabaseTarget, pk=pk)
    )
    if target.check_ok:
        messages.success(request, f"{target.name} answers: {target.check_detail}.")
    else:
        messages.error(request, f"{target.name} cannot be reached: {target.check_detail}")
    return redirect(target)


@require_permission("backups.view_backup")
@require_GET
def storage_list(request: PortalRequest) -> HttpResponse:
    return render(request, "backups/storage.html", {"storages": BackupStorage.objects.all()})


@require_permission("backups.add_backupstorage")
@require_http_methods(["GET", "POST"])
def storage_create(request: PortalRequest) -> HttpResponse:
    form = BackupStorageForm(request.POST or None)
    return edit_page(
        request,
        form,
        title="New backup storage",
        back=reverse("backups:storage"),
        save=actions.do_save_backup_storage,
        done=lambda storage: reverse("backups:storage"),
    )


@require_permission("backups.change_backupstorage")
@require_http_methods(["GET", "POST"])
def storage_edit(request: PortalRequest, pk: int) -> HttpResponse:
    storage = get_object_or_404(BackupStorage, pk=pk)
    form = BackupStorageForm(request.POST or None, instance=storage)
    return edit_page(
        request,
        form,
        title=f"Edit {storage.name}",
        back=reverse("backups:storage"),
        save=actions.do_save_backup_storage,
        done=lambda saved: reverse("backups:storage"),
    )
