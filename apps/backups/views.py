"""The backups pages: targets with their last good backup and last verified restore, a
target's backup history, restores and integrity checks, the page that starts a restore of
one backup, the storage list, and the admins' forms for targets, storage and checks."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import OuterRef, Q, Subquery, Sum
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import require_permission
from apps.backups import actions, retention
from apps.backups.charts import size_chart
from apps.backups.choices import BackupState
from apps.backups.forms import BackupStorageForm, DatabaseTargetForm, IntegrityCheckForm
from apps.backups.freshness import freshness
from apps.backups.models import (
    TARGET_TYPE,
    Backup,
    BackupStorage,
    DatabaseTarget,
    IntegrityCheck,
    RestoreRun,
    verified_restore_status,
)
from apps.backups.pruning import PRUNE_KIND
from apps.backups.storage import StorageError
from apps.backups.sync import RESTORE_OBJECTS_KIND, SYNC_KIND
from apps.common.editing import edit_page
from apps.common.http import PortalRequest
from apps.common.paging import keyset_page
from apps.operations.models import Operation

BACKUP_KIND = "backups.backup"
RESTORE_KIND = "backups.restore"
TEST_RESTORE_KIND = "backups.test_restore"
HISTORY_PAGE_SIZE = 25
RESTORES_SHOWN = 10


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
    last_test = (
        RestoreRun.objects.tests()
        .finished()
        .filter(target=OuterRef("pk"))
        .order_by("-started_at", "-pk")
        .values("pk")[:1]
    )
    rows = list(
        targets.with_last_good_backup_id().annotate(
            last_test_id=Subquery(last_test),
            storage_used=Sum("backups__size_bytes", filter=Q(backups__state=BackupState.SUCCEEDED)),
        )
    )
    last_good = Backup.objects.select_related("started_by").in_bulk(
        [row.last_good_backup_id for row in rows if row.last_good_backup_id]  # type: ignore[attr-defined]
    )
    last_tests = RestoreRun.objects.in_bulk(
        [row.last_test_id for row in rows if row.last_test_id]  # type: ignore[attr-defined]
    )
    now = timezone.now()
    context = {
        "rows": [
            (
                target,
                backup := last_good.get(target.last_good_backup_id),  # type: ignore[attr-defined]
                last_tests.get(target.last_test_id),  # type: ignore[attr-defined]
                verified_restore_status(last_tests.get(target.last_test_id), now),  # type: ignore[attr-defined]
                freshness(target, backup.finished_at if backup else None, now),
            )
            for target in rows
        ],
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
    target = get_object_or_404(
        DatabaseTarget.objects.select_related("storage", "service", "auto_prune_by"), pk=pk
    )
    before = request.GET.get("before", "")
    history = (
        Backup.objects.filter(target=target)
        .select_related("storage", "started_by", "operation")
        .order_by("-pk")
    )
    page = keyset_page(
        request, history, "pk", int(before) if before.isdigit() else None, HISTORY_PAGE_SIZE
    )
    last_test = (
        RestoreRun.objects.tests()
        .finished()
        .filter(target=target)
        .select_related("backup")
        .order_by("-started_at", "-pk")
        .first()
    )
    now = timezone.now()
    last_good = Backup.objects.good().filter(target=target).order_by("-finished_at").first()
    context = {
        "target": target,
        "backups": page.rows,
        "next_query": page.next_query,
        "last_good": last_good,
        "freshness": freshness(target, last_good.finished_at if last_good else None, now),
        "size_chart": size_chart(target, now),
        "storage_used": Backup.objects.good()
        .filter(target=target)
        .aggregate(total=Sum("size_bytes"))["total"],
        "prune_kind": PRUNE_KIND,
        "past_policy": len(retention.plan(target).delete) if last_good else 0,
        "operations": Operation.objects.for_list().filter(
            target_type=TARGET_TYPE, target_id=str(target.pk)
        )[:5],
        "last_test": last_test,
        "verified": verified_restore_status(last_test, now),
        "restore_runs": RestoreRun.objects.filter(target=target).select_related(
            "backup__target", "operation", "started_by"
        )[:RESTORES_SHOWN],
        "checks": IntegrityCheck.objects.filter(target=target),
        "max_age_days": settings.BACKUP_VERIFIED_RESTORE_MAX_AGE_DAYS,
        "backup_kind": BACKUP_KIND,
        "restore_kind": RESTORE_KIND,
        "test_restore_kind": TEST_RESTORE_KIND,
    }
    if _fragment_wanted(request):
        return render(request, "backups/target.html#history", context)
    return render(request, "backups/target.html", context)


@require_permission("backups.add_databasetarget")
@require_http_methods(["GET", "POST"])
def target_create(request: PortalRequest) -> HttpResponse:
    form = DatabaseTargetForm(request.POST or None, actor=request.user)
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
    form = DatabaseTargetForm(request.POST or None, instance=target, actor=request.user)
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


@require_permission("operations.run_destructive_operation")
@require_GET
def backup_restore(request: PortalRequest, pk: int) -> HttpResponse:
    """The first step of a restore: one good backup, what it holds, and where it goes (its
    own target or another); the operations engine's form and confirmation follow."""
    backup = get_object_or_404(
        Backup.objects.good().select_related("target", "storage", "started_by"), pk=pk
    )
    chosen = request.GET.get("target", "")
    context = {
        "backup": backup,
        "destinations": DatabaseTarget.objects.all(),
        "chosen": int(chosen) if chosen.isdigit() else backup.target_id,
        "checks": IntegrityCheck.objects.filter(target=backup.target_id).count(),
        "restore_kind": RESTORE_KIND,
    }
    return render(request, "backups/restore.html", context)


@require_permission("backups.add_integritycheck")
@require_http_methods(["GET", "POST"])
def check_create(request: PortalRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(DatabaseTarget, pk=pk)
    form = IntegrityCheckForm(request.POST or None, target=target)
    return edit_page(
        request,
        form,
        title=f"New integrity check of {target.name}",
        back=target.get_absolute_url(),
        save=actions.do_save_integrity_check,
    )


@require_permission("backups.change_integritycheck")
@require_http_methods(["GET", "POST"])
def check_edit(request: PortalRequest, pk: int) -> HttpResponse:
    check = get_object_or_404(IntegrityCheck.objects.select_related("target"), pk=pk)
    form = IntegrityCheckForm(request.POST or None, instance=check, target=check.target)
    return edit_page(
        request,
        form,
        title=f"Edit the check “{check.name}” of {check.target.name}",
        back=check.target.get_absolute_url(),
        save=actions.do_save_integrity_check,
    )


@require_permission("backups.delete_integritycheck")
@require_POST
def check_delete(request: PortalRequest, pk: int) -> HttpResponse:
    check = get_object_or_404(IntegrityCheck.objects.select_related("target"), pk=pk)
    target = check.target
    actions.do_delete_integrity_check(request.user, check)
    messages.success(request, f"Removed the check “{check.name}”.")
    return redirect(target)


@require_permission("backups.view_backup")
@require_GET
def storage_list(request: PortalRequest) -> HttpResponse:
    return render(
        request,
        "backups/storage.html",
        {
            "storages": BackupStorage.objects.all(),
            "sync_kind": SYNC_KIND,
            "restore_objects_kind": RESTORE_OBJECTS_KIND,
        },
    )


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


@require_permission("backups.download_backup")
@require_GET
def backup_download(request: PortalRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    """The stored object of one good backup, streamed from its storage in pieces (never
    whole in memory), exactly as stored (a zstd stream or a custom-format dump); audited.
    A storage that cannot be read sends the admin back with its words, not a 500."""
    backup = get_object_or_404(Backup.objects.good().select_related("target", "storage"), pk=pk)
    try:
        download = actions.do_download_backup(request.user, backup)
    except StorageError as exc:
        messages.error(request, f"Backup #{backup.pk} cannot be read from {backup.storage}: {exc}")
        return redirect(backup.target)
    response = StreamingHttpResponse(download.chunks, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    if backup.size_bytes is not None:
        response["Content-Length"] = str(backup.size_bytes)
    response["X-Content-SHA256"] = backup.sha256
    return response
