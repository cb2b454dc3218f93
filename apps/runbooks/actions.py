"""Importing runbooks: one transaction and one audit record each."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.audit.records import AuditTarget, record
from apps.runbooks.commands import document_commands
from apps.runbooks.models import Runbook, RunbookVersion
from apps.runbooks.recognition import recognize
from apps.services.models import Service

Actor = User | AnonymousUser
RESERVED_SLUGS = {"import", "runs"}  # fixed paths of runbooks/urls.py


def _target(runbook: Runbook) -> AuditTarget:
    return AuditTarget("runbooks.runbook", str(runbook.pk), runbook.title)


def _unique_slug(title: str) -> str:
    base = slugify(title)[:180] or "runbook"
    slug, number = base, 1
    while slug in RESERVED_SLUGS or Runbook.objects.filter(slug=slug).exists():
        number += 1
        slug = f"{base}-{number}"
    return slug


def command_counts(source: str) -> dict[str, int]:
    """How many shell commands the text has, and how many the portal recognizes."""
    commands = [c for _, found in document_commands(source) for c in found]
    recognized = sum(1 for c in commands if recognize(c.text).recognized)
    return {"commands": len(commands), "recognized": recognized}


def _add_version(actor: Actor, runbook: Runbook, source: str, filename: str) -> RunbookVersion:
    last = runbook.versions.order_by("-number").values_list("number", flat=True).first() or 0
    version = RunbookVersion.objects.create(
        runbook=runbook,
        number=last + 1,
        source=source,
        sha256=RunbookVersion.digest(source),
        filename=filename,
        imported_by=actor if isinstance(actor, User) else None,
    )
    runbook.current = version
    runbook.updated_at = timezone.now()
    runbook.save(update_fields=["current", "updated_at"])
    return version


def do_import_runbook(
    actor: Actor, *, title: str, service: Service | None, source: str, filename: str = ""
) -> Runbook:
    """Create a runbook with its first version, and record who imported what."""
    with transaction.atomic():
        runbook = Runbook.objects.create(title=title, slug=_unique_slug(title), service=service)
        version = _add_version(actor, runbook, source, filename)
        record(
            "runbooks.imported",
            actor=actor,
            target=_target(runbook),
            data=_facts(version, source),
        )
    return runbook


def do_reimport_runbook(
    actor: Actor, runbook: Runbook, *, source: str, filename: str = ""
) -> RunbookVersion | None:
    """Add a version when the text changed; None (and nothing saved) when it did not."""
    if runbook.current is not None and runbook.current.sha256 == RunbookVersion.digest(source):
        return None
    with transaction.atomic():
        locked = Runbook.objects.select_for_update().get(pk=runbook.pk)
        version = _add_version(actor, locked, source, filename)
        record(
            "runbooks.reimported",
            actor=actor,
            target=_target(locked),
            data=_facts(version, source),
        )
    return version


def _facts(version: RunbookVersion, source: str) -> dict[str, Any]:
    return {
        "version": version.number,
        "sha256": version.sha256,
        "filename": version.filename,
        "characters": len(source),
        **command_counts(source),
    }
