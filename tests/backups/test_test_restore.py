"""Test restores end to end on a real worker: the latest good backup restored into a scratch
database created for it (on the target's own server, or on the one BACKUP_SCRATCH_DATABASE_URL
names), checked, and always dropped; a backup whose stored object was altered fails before
any scratch database exists; the target's page shows the last verified restore."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apps.backups.choices import RestoreKind, RestoreState
from apps.backups.models import Backup, DatabaseTarget, IntegrityCheck, RestoreRun
from apps.backups.restores import CHECKSUM_MISMATCH, SCRATCH_PREFIX
from apps.operations.choices import State
from tests.backups.conftest import (
    EXPECTED_COUNTS,
    Server,
    make_local_storage,
    make_s3_storage,
    make_target,
)
from tests.backups.test_backup_operation import back_up
from tests.backups.test_restore_operation import log_of, run
from tests.conftest import client_for


def scratch_databases(server: Server) -> set[str]:
    with server.connect() as connection:
        rows = connection.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [SCRATCH_PREFIX]
        ).fetchall()
    return {row[0] for row in rows}


@pytest.mark.usefixtures("celery_worker")
def test_it_proves_the_latest_backup_and_drops_the_scratch_database(
    operator: Any, viewer: Any, pg_server: Server, source_db: str, s3: Any, s3_endpoint: str
) -> None:
    source = make_target(pg_server, source_db, make_s3_storage(s3_endpoint), name="Orders DB")
    IntegrityCheck.objects.create(
        target=source, name="invoices", sql="SELECT count(*) FROM billing.invoices", max_value=2
    )
    back_up(operator, source)
    latest = Backup.objects.get(operation=back_up(operator, source))
    before = scratch_databases(pg_server)

    operation = run(operator, "backups.test_restore", source, {"backup": None})

    assert operation.state == State.SUCCEEDED, operation.error
    proof = RestoreRun.objects.get(operation=operation)
    assert proof.kind == RestoreKind.TEST and proof.state == RestoreState.PASSED
    assert proof.backup == latest and proof.target == source
    assert proof.database.startswith(SCRATCH_PREFIX)
    assert proof.server == f"{pg_server.host}:{pg_server.port}"
    assert proof.restore_seconds is not None and proof.restore_seconds > 0
    assert len(proof.checks) == len(EXPECTED_COUNTS) + 1
    assert proof.checks_passed == len(proof.checks)
    assert scratch_databases(pg_server) == before  # dropped
    log = log_of(operation)
    assert f"Created the scratch database {proof.database}" in log
    assert f"Dropped the scratch database {proof.database}." in log
    assert "✔ check “invoices”: 2, expected ≤ 2" in log
    assert operation.status_text.startswith(f"Verified: backup #{latest.pk} restores in")

    page = client_for(viewer).get(f"/backups/targets/{source.pk}/").content.decode()
    assert "bi-patch-check-fill" in page  # an icon and a word, not colour alone
    assert "Verified</span>" in page
    assert "restore took" in page


@pytest.mark.usefixtures("celery_worker")
def test_it_fails_on_an_altered_backup_before_creating_anything(
    operator: Any, viewer: Any, pg_server: Server, source_db: str, backup_dir: Path
) -> None:
    source = make_target(pg_server, source_db, make_local_storage(backup_dir))
    backup = Backup.objects.get(operation=back_up(operator, source))
    path = backup_dir / backup.key
    stored = bytearray(path.read_bytes())
    stored[-10] ^= 0x01
    path.write_bytes(bytes(stored))
    before = scratch_databases(pg_server)

    operation = run(operator, "backups.test_restore", source, {"backup": backup.pk})

    assert operation.state == State.FAILED
    assert operation.error == CHECKSUM_MISMATCH
    proof = RestoreRun.objects.get(operation=operation)
    assert proof.state == RestoreState.FAILED and proof.database == ""
    assert scratch_databases(pg_server) == before
    page = client_for(viewer).get(f"/backups/targets/{source.pk}/").content.decode()
    assert "The last test restore failed" in page
    assert "bi-exclamation-triangle-fill" in page
    assert CHECKSUM_MISMATCH in page


def test_the_scratch_database_goes_to_the_configured_server(
    operator: Any,
    pg_server: Server,
    source_db: str,
    backup_dir: Path,
    password_server: Callable[[], Server],
    start_worker: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = password_server()
    url = f"postgres://{scratch.user}:{scratch.password}@{scratch.host}:{scratch.port}/postgres"
    monkeypatch.setenv("BACKUP_SCRATCH_DATABASE_URL", f"{url}?sslmode=disable")
    start_worker()
    source = make_target(pg_server, source_db, make_local_storage(backup_dir))
    back_up(operator, source)
    before_here = scratch_databases(pg_server)

    operation = run(operator, "backups.test_restore", source, {"backup": None})

    assert operation.state == State.SUCCEEDED, operation.error
    proof = RestoreRun.objects.get(operation=operation)
    assert proof.server == f"{scratch.host}:{scratch.port}"
    assert proof.passed
    assert scratch_databases(scratch) == set()
    assert scratch_databases(pg_server) == before_here
    assert scratch.password not in log_of(operation)


def test_a_target_without_a_good_backup_cannot_be_tested(
    operator: Any, pg_server: Server, backup_dir: Path
) -> None:
    from apps.operations import actions

    source = make_target(pg_server, "postgres", make_local_storage(backup_dir))
    with pytest.raises(actions.InvalidParameters) as refused:
        actions.do_start_operation(operator, "backups.test_restore", str(source.pk), {}, "")
    assert "has no good backup yet: take one first" in refused.value.message
    assert not DatabaseTarget.objects.get(pk=source.pk).restore_runs.exists()
