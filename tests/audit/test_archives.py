"""Archiving a period: the events of those days, gzip JSON Lines or CSV, written to a backup
storage (a local directory, and moto's S3 server), parsed back and compared with the rows;
the archive is itself audited and nothing is deleted."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit.models import AuditEvent
from apps.audit.records import record
from apps.backups.choices import StorageKind
from apps.backups.models import BackupStorage
from tests.audit.test_checkpoints import s3_storage  # noqa: F401 (fixture)
from tests.audit.test_exports import parse_csv, parse_jsonl


@pytest.fixture
def march(db: None) -> list[AuditEvent]:
    """Events on 28 Feb, 1, 2 and 3 March (UTC, the tests' zone), in the order of time."""
    made = []
    for day in (28, 1, 2, 3):
        month = 2 if day == 28 else 3
        with time_machine.travel(datetime(2026, month, day, 12, tzinfo=UTC), tick=False):
            made.append(record(f"test.day{day}", actor=None, actor_label="t", reason=f"d{day}"))
    return made


@pytest.fixture
def local_storage(settings: Any, db: None) -> BackupStorage:
    directory = Path(settings.BACKUP_DIR) / f"test-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    return BackupStorage.objects.create(
        name="archive", kind=StorageKind.LOCAL, directory=str(directory), prefix="portal"
    )


def test_it_archives_a_period_to_a_directory(
    march: list[AuditEvent], local_storage: BackupStorage, capsys: Any
) -> None:
    call_command(
        "audit_archive", "--since", "2026-03-01", "--until", "2026-03-02", "--storage", "archive"
    )
    key = "portal/audit-archive/audit-20260301-20260302.jsonl.gz"
    assert key in capsys.readouterr().out
    text = gzip.decompress((Path(local_storage.directory) / key).read_bytes()).decode()
    header, rows = parse_jsonl(text)
    assert [row["action"] for row in rows] == ["test.day2", "test.day1"]
    assert header["last_seq"] == march[2].seq and header["last_hash"] == march[2].hash
    assert [row["hash"] for row in rows] == [march[2].hash, march[1].hash]
    archived = AuditEvent.objects.get(action="audit.archived")
    assert archived.data["key"] == key and archived.data["events"] == 2
    assert AuditEvent.objects.filter(action__startswith="test.day").count() == 4  # kept


def test_it_archives_csv_to_s3(
    march: list[AuditEvent],
    s3_storage: tuple[BackupStorage, Any],  # noqa: F811
) -> None:
    storage, client = s3_storage
    call_command(
        "audit_archive",
        "--since=2026-02-28",
        "--until=2026-03-03",
        f"--storage={storage.name}",
        "--format=csv",
    )
    key = "portal/audit-archive/audit-20260228-20260303.csv.gz"
    body = client.get_object(Bucket=storage.bucket, Key=key)["Body"].read()
    header, rows = parse_csv(gzip.decompress(body).decode())
    assert [row["reason"] for row in rows] == ["d3", "d2", "d1", "d28"]
    assert header["summary"].startswith("on or after 2026-02-28")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--since=2026-03-05", "--until=2026-03-01", "--storage=archive"], "after the end"),
        (["--since=March", "--until=2026-03-01", "--storage=archive"], "not a date"),
        (["--since=2026-03-01", "--until=2026-03-01", "--storage=nowhere"], "No backup storage"),
    ],
)
def test_bad_input_is_refused_with_a_message(
    local_storage: BackupStorage, arguments: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("audit_archive", *arguments)
    assert not AuditEvent.objects.filter(action="audit.archived").exists()
