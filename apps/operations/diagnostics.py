"""The built-in operation that proves the engine end to end: it checks, step by step, what
the portal depends on (database, broker, backup storage) from the worker's side."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.conf import settings

from apps.common.probes import check_backup_storage, check_broker, check_database, run_probe
from apps.operations.models import Operation
from apps.operations.progress import OperationFailed, Reporter
from apps.operations.registry import (
    OperationKind,
    ParamsForm,
    Target,
    TargetNotFound,
    register,
)

PORTAL_TARGET_ID = "self"


def portal_target(target_id: str) -> Target:
    """The portal itself; there is one, so no target given means it."""
    if target_id not in ("", PORTAL_TARGET_ID):
        raise TargetNotFound(f"Unknown portal instance {target_id!r}.")
    return Target(
        type="portal",
        id=PORTAL_TARGET_ID,
        label="OpsPortal (this instance)",
        environment=settings.PORTAL_ENVIRONMENT,
        is_production=settings.PORTAL_IS_PRODUCTION,
    )


class PingForm(ParamsForm):
    pause_seconds = forms.IntegerField(
        label="Pause between checks (seconds)",
        min_value=0,
        max_value=60,
        initial=1,
        required=False,
        help_text="Slows the checks down so that progress can be watched.",
    )

    def clean_pause_seconds(self) -> int:
        return self.cleaned_data["pause_seconds"] or 0


def _checked(reporter: Reporter, label: str, check: Callable[[], str]) -> None:
    result = run_probe(label, check)
    if not result.ok:
        raise OperationFailed(f"{label}: {result.detail}")
    reporter.log(f"{label}: OK in {result.milliseconds} ms ({result.detail})")


def ping(operation: Operation, reporter: Reporter) -> None:
    pause = int(operation.params.get("pause_seconds") or 0)
    checks = [
        ("Database", check_database),
        ("Broker", check_broker),
        ("Backup storage", check_backup_storage),
    ]
    for index, (label, check) in enumerate(checks):
        reporter.step(int(index * 100 / len(checks)), f"Checking {label.lower()}…")
        reporter.wait(pause)
        _checked(reporter, label, check)
    reporter.step(100, "All checks passed")


register(
    OperationKind(
        name="diagnostics.ping",
        label="Run diagnostics",
        description="Checks, from a worker, that the database, the broker and the backup "
        "storage answer.",
        handler=ping,
        resolve_target=portal_target,
        form_class=PingForm,
        soft_time_limit=240,
        time_limit=300,
        default_target=PORTAL_TARGET_ID,
        summary=lambda target, params: (
            f"A worker checks the database, the broker and the backup storage of {target.label}."
        ),
        command=lambda target, params: (
            "psql -c 'SELECT 1' && redis-cli ping && touch $BACKUP_DIR/.probe"
        ),
    )
)
