"""The ``backups.prune`` operation: apply a target's retention policy (apps.backups.retention).

Its confirmation page lists every backup it will delete, with its key; the list is fixed in
the operation's parameters when it is requested. On the worker only those listed that the
policy still lets go are deleted (a restore that started meanwhile keeps its backup, a newer
backup changes nothing about what was listed): the stored object first (S3 or directory),
then the record is marked pruned, so a record never claims an object that is gone while
still listed as good.

Automatic pruning (``start_due_prunes``, hourly): a target whose admin turned it on, with a
reason, is pruned in that admin's name whenever backups are past its policy, so the engine
checks that admin's role each time. The consent ends when the admin may no longer prune
(deactivated, removed, or without the role): the target is turned back to pruning by hand,
and that is recorded, rather than a refusal every hour."""

from __future__ import annotations

import shlex
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.template.defaultfilters import pluralize
from django.utils import timezone

from apps.backups import retention, schedules
from apps.backups.actions import do_stop_auto_prune
from apps.backups.choices import BackupState, StorageKind
from apps.backups.dumps import human_bytes
from apps.backups.models import Backup, DatabaseTarget
from apps.backups.storage import StorageError, backend_for
from apps.operations.models import Operation
from apps.operations.progress import OperationFailed, Reporter
from apps.operations.registry import OperationKind, ParamsForm, Target, register

PRUNE_KIND = "backups.prune"


class PruneParamsForm(ParamsForm):
    """No choice to make: the backups the policy lets go now become the parameter, so that
    the confirmation shows, and the worker deletes, exactly those."""

    backups = forms.CharField(required=False, widget=forms.HiddenInput, label="Backups to delete")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # A non-field error: the field is hidden, the message must show.
        cleaned["backups"] = self._planned()
        return cleaned

    def _planned(self) -> list[int]:
        target = (
            DatabaseTarget.objects.filter(pk=self.target.id).first()
            if self.target.id.isdigit()
            else None
        )
        if target is None:
            raise ValidationError("This target no longer exists.")
        plan = retention.plan(target)
        if not plan.delete:
            raise ValidationError(
                f"Nothing to prune: the policy (keep {target.keep_daily} daily, "
                f"{target.keep_weekly} weekly, {target.keep_monthly} monthly) keeps all "
                f"{len(plan.kept)} good backup{pluralize(len(plan.kept))} of {target.name}."
            )
        return plan.delete_ids


def _listed(params: dict[str, Any]) -> list[Backup]:
    ids = [pk for pk in params.get("backups") or [] if isinstance(pk, int)]
    return list(
        Backup.objects.filter(pk__in=ids).select_related("storage").order_by("started_at", "pk")
    )


def _remove_line(backup: Backup) -> str:
    storage = backup.storage
    if storage.kind == StorageKind.LOCAL:
        return shlex.join(["rm", f"{storage.directory.rstrip('/')}/{backup.key}"])
    endpoint = ["--endpoint-url", storage.endpoint_url] if storage.endpoint_url else []
    return shlex.join(["aws", "s3", "rm", *endpoint, f"s3://{storage.bucket}/{backup.key}"])


def _summary(target: Target, params: dict[str, Any]) -> str:
    found = DatabaseTarget.objects.get(pk=target.id)
    listed = _listed(params)
    total = sum(backup.size_bytes or 0 for backup in listed)
    when = ", ".join(
        f"#{backup.pk} ({(backup.finished_at or backup.started_at):%Y-%m-%d %H:%M})"
        for backup in listed
    )
    return (
        f"Deletes {len(listed)} backup{pluralize(len(listed))} of {found.name} "
        f"({human_bytes(total)}) that its policy (keep {found.keep_daily} daily, "
        f"{found.keep_weekly} weekly, {found.keep_monthly} monthly) lets go: {when}. The "
        "newest good backup and any backup a restore is using are kept."
    )


def _command(target: Target, params: dict[str, Any]) -> str:
    return "\n".join(_remove_line(backup) for backup in _listed(params))


def prune(operation: Operation, reporter: Reporter) -> None:
    target = DatabaseTarget.objects.filter(pk=operation.target_id).first()
    if target is None:
        raise OperationFailed(f"{operation.target_label} is no longer registered.")
    listed = _listed(operation.params)
    failures: list[str] = []
    deleted = 0
    for number, backup in enumerate(listed, start=1):
        # Asked again before each deletion: a restore may have picked this backup meanwhile.
        if backup.pk not in retention.plan(target).delete_ids:
            reporter.log(f"Kept #{backup.pk} ({backup.key}): the policy keeps it now.")
            continue
        try:
            backend_for(backup.storage).delete(backup.key)
        except StorageError as exc:
            failures.append(f"#{backup.pk}: {exc}")
            reporter.log(f"Could not delete #{backup.pk} ({backup.key}): {exc}")
            continue
        Backup.objects.filter(pk=backup.pk, state=BackupState.SUCCEEDED).update(
            state=BackupState.PRUNED, pruned_at=timezone.now()
        )
        deleted += 1
        reporter.step(
            int(number * 99 / len(listed)),
            f"Deleted #{backup.pk}: {backup.storage.name} {backup.key}",
        )
    if failures:
        raise OperationFailed(
            f"Deleted {deleted} of {len(listed)}; {len(failures)} could not be deleted and "
            f"stay listed as good: {'; '.join(failures[:5])}"
        )
    reporter.step(100, f"Pruned {deleted} backup{pluralize(deleted)} of {target.name}.")


def start_due_prunes() -> list[Operation]:
    """Start a prune of every target pruned automatically that has backups past its policy
    and no prune under way, requested by the admin who consented, with their reason."""
    targets = (
        DatabaseTarget.objects.filter(auto_prune=True)
        .annotate(busy=schedules.under_way(PRUNE_KIND))
        .filter(busy=False)
        .select_related("auto_prune_by")
        .order_by("pk")
    )
    started: list[Operation] = []
    for target in targets:
        admin = target.auto_prune_by
        # has_perm is False for a deactivated account.
        if admin is None or not admin.has_perm("operations.run_destructive_operation"):
            who = admin.get_username() if admin else "the admin who turned it on"
            do_stop_auto_prune(
                target, f"Automatic pruning stopped: {who} may no longer prune backups."
            )
            continue
        if not retention.plan(target).delete:
            continue
        since = f" on {target.auto_prune_since:%Y-%m-%d}" if target.auto_prune_since else ""
        operation = schedules.start(
            admin,
            PRUNE_KIND,
            target,
            {},
            f"Automatic pruning of {target.name}, turned on by {admin.get_username()}"
            f"{since}: {target.auto_prune_reason}",
        )
        if operation is not None:
            started.append(operation)
    return started


def _resolve_target(target_id: str) -> Target:
    from apps.backups.operations import resolve_target

    return resolve_target(target_id)


register(
    OperationKind(
        name=PRUNE_KIND,
        icon="trash",
        label="Prune old backups",
        description="Deletes the backups the target's retention policy lets go (their stored "
        "objects, then marks their records); never the newest good backup nor one a restore "
        "is using.",
        handler=prune,
        resolve_target=_resolve_target,
        form_class=PruneParamsForm,
        destructive=True,
        summary=_summary,
        command=_command,
    )
)
