"""The audit trail is append-only in the database and its hash chain exposes tampering."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from apps.audit import triggers
from apps.audit.models import AuditEvent
from apps.audit.records import AuditTarget, mask_secrets, record, verify_chain

pytestmark = pytest.mark.core


def _three_events(actor: Any) -> list[AuditEvent]:
    return [
        record("test.one", actor=actor, target=AuditTarget("thing", "1", "Thing one")),
        record("test.two", actor=actor, reason="because", data={"n": 2}),
        record("test.three", actor=None, actor_label="system"),
    ]


def _raw(sql: str, params: list[Any] | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def _with_triggers_off(sql: str, params: list[Any]) -> None:
    """What an attacker with the table owner's rights could do; not something the portal has
    a code path for."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A superuser session that skips user triggers for this transaction.
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(sql, params)
            cursor.execute("SET LOCAL session_replication_role = origin")
        else:
            for name in triggers.SQLITE_TRIGGER_NAMES:
                cursor.execute(f"DROP TRIGGER {name}")
            cursor.execute(sql, params)
            for statement in triggers.SQLITE:
                cursor.execute(statement)


def test_it_chains_each_event_to_its_predecessor(admin: Any) -> None:
    first, second, third = _three_events(admin)
    assert first.prev_hash == "0" * 64
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    report = verify_chain()
    assert report.ok, report.message
    assert report.checked == 3


def test_it_refuses_update_issued_as_raw_sql(admin: Any) -> None:
    event = _three_events(admin)[0]
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"UPDATE {triggers.TABLE} SET reason = %s WHERE id = %s", ["edited", event.pk])
    event.refresh_from_db()
    assert event.reason == ""


def test_it_refuses_delete_issued_as_raw_sql(admin: Any) -> None:
    event = _three_events(admin)[0]
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"DELETE FROM {triggers.TABLE} WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite has no TRUNCATE")
@pytest.mark.django_db(transaction=True)
def test_it_refuses_truncate(admin: Any) -> None:
    # Committed rows: within the inserting transaction PostgreSQL refuses for another reason.
    _three_events(admin)
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"TRUNCATE {triggers.TABLE} CASCADE")
    assert AuditEvent.objects.count() == 3


def test_it_refuses_orm_update_and_delete(admin: Any) -> None:
    _three_events(admin)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(action="test.one").update(reason="edited")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(action="test.one").delete()
    assert AuditEvent.objects.filter(action="test.one", reason="").exists()


def test_audit_verify_reports_a_row_altered_with_the_triggers_disabled(admin: Any) -> None:
    _three_events(admin)
    call_command("audit_verify")  # intact: no error
    _with_triggers_off(
        f"UPDATE {triggers.TABLE} SET reason = %s WHERE seq = %s", ["nothing happened", 2]
    )
    with pytest.raises(CommandError, match="#2 was altered"):
        call_command("audit_verify")


def test_audit_verify_reports_a_removed_row(admin: Any) -> None:
    _three_events(admin)
    _with_triggers_off(f"DELETE FROM {triggers.TABLE} WHERE seq = %s", [2])
    with pytest.raises(CommandError, match="#2 is missing"):
        call_command("audit_verify")


def test_audit_verify_reports_the_newest_event_removed(admin: Any) -> None:
    _three_events(admin)
    _with_triggers_off(f"DELETE FROM {triggers.TABLE} WHERE seq = %s", [3])
    report = verify_chain()
    assert not report.ok
    assert "newest events were removed" in report.message


def test_it_masks_secrets_in_recorded_data(admin: Any) -> None:
    event = record(
        "test.secret",
        actor=admin,
        data={
            "password": "hunter2",
            "nested": {"api_key": "k", "host": "db"},
            "list": [{"token": "t"}],
        },
    )
    event.refresh_from_db()
    assert event.data == {
        "password": "********",
        "nested": {"api_key": "********", "host": "db"},
        "list": [{"token": "********"}],
    }
    assert mask_secrets({"kubeconfig": "..."}) == {"kubeconfig": "********"}
