"""The History section of the pages whose views know nothing of the audit trail (a
maintenance window, a database target), through templates/audit/_object_history.html: the
events about that object only, field changes with secrets masked, refusals included, and
the audit list linking each event back to the object's page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import escape

from apps.audit.links import object_url
from apps.audit.models import AuditEvent
from apps.audit.records import MASK, AuditTarget, record
from apps.backups import actions as backup_actions
from apps.backups.forms import DatabaseTargetForm
from apps.backups.models import BackupStorage, DatabaseTarget
from apps.maintenance import actions as maintenance_actions
from apps.maintenance.models import Window
from apps.services.models import Service
from tests.conftest import client_for
from tests.maintenance.helpers import schedule

pytestmark = pytest.mark.core


@pytest.fixture
def window(operator: Any) -> Window:
    service = Service.objects.create(name="shop-api", slug="shop-api", team="Shop")
    start = timezone.now() + timedelta(days=10)
    return schedule(operator, [service], start, start + timedelta(hours=2))


def history_of(response: Any) -> list[tuple[str, str]]:
    content = response.content.decode()
    assert response.status_code == 200
    assert 'id="audit-history"' in content and "History" in content
    section = content.split('id="audit-history"', 1)[1]
    return [
        (event.action, event.outcome)
        for event, _ in response.context["history"]
        if event.action in section
    ]


def test_the_maintenance_window_page_shows_its_history(
    window: Window, operator: Any, viewer: Any
) -> None:
    start = timezone.now() + timedelta(days=20)
    other = schedule(operator, list(window.services.all()), start, start + timedelta(hours=1))
    with pytest.raises(maintenance_actions.MaintenanceRefused):
        maintenance_actions.do_cancel_window(viewer, window, "not my call")
    maintenance_actions.do_cancel_window(operator, window, "Vendor postponed")
    response = client_for(viewer).get(window.get_absolute_url())
    shown = history_of(response)
    assert shown == [
        ("maintenance.window_cancelled", "succeeded"),
        ("maintenance.refused", "denied"),
        ("maintenance.window_scheduled", "succeeded"),
    ]
    ids = {event.target_id for event, _ in response.context["history"]}
    assert ids == {str(window.pk)} and str(other.pk) not in ids
    content = response.content.decode()
    assert "Vendor postponed" in content
    assert f"target_type=maintenance.window&amp;target_id={window.pk}" in content
    assert content.count('id="audit-history"') == 1


def test_the_database_target_page_shows_changes_with_the_password_masked(
    admin: Any, viewer: Any
) -> None:
    storage = BackupStorage.objects.create(name="dir", kind="local", directory="/tmp/x")
    target = DatabaseTarget.objects.create(
        name="orders", host="127.0.0.1", port=9, database="orders", user="u", storage=storage
    )
    other = DatabaseTarget.objects.create(
        name="users", host="127.0.0.1", port=9, database="users", user="u", storage=storage
    )
    form = DatabaseTargetForm(
        {
            "name": "orders",
            "host": "db.internal",
            "port": 5432,
            "database": "orders",
            "user": "u",
            "ssl_mode": target.ssl_mode,
            "storage": storage.pk,
            "password": "hunter2-secret",
        },
        instance=target,
    )
    assert form.is_valid(), form.errors
    backup_actions.do_save_database_target(admin, form)
    record(
        "backup.step",
        actor=admin,
        target=AuditTarget("backups.target", str(other.pk), "users"),
    )
    response = client_for(viewer).get(target.get_absolute_url())
    events = [event for event, _ in response.context["history"]]
    assert [event.target_id for event in events] == [str(target.pk)]
    content = response.content.decode()
    assert "<del>127.0.0.1</del> → <ins>db.internal</ins>" in content
    assert "hunter2-secret" not in content
    assert f"<strong>password</strong>: <code>{escape(MASK)}</code>" in content
    # Its own list of backups keeps the id "history"; the audit section has its own.
    assert content.count(' id="history"') == 1 and content.count(' id="audit-history"') == 1


def test_an_object_without_events_says_so(viewer: Any) -> None:
    storage = BackupStorage.objects.create(name="dir", kind="local", directory="/tmp/x")
    target = DatabaseTarget.objects.create(
        name="quiet", host="127.0.0.1", port=9, database="q", user="u", storage=storage
    )
    content = client_for(viewer).get(target.get_absolute_url()).content.decode()
    assert "Nothing recorded about it yet." in content


def test_audit_rows_link_to_windows_and_targets(window: Window, viewer: Any) -> None:
    created = AuditEvent.objects.filter(target_type="maintenance.window").first()
    assert created is not None
    assert object_url(created) == window.get_absolute_url()
    storage = BackupStorage.objects.create(name="dir", kind="local", directory="/tmp/x")
    target = DatabaseTarget.objects.create(
        name="orders", host="127.0.0.1", port=9, database="orders", user="u", storage=storage
    )
    event = record("x", actor=None, target=AuditTarget("backups.target", str(target.pk), "o"))
    assert object_url(event) == target.get_absolute_url()
    gone = record("x", actor=None, target=AuditTarget("backups.target", "999999", "gone"))
    assert object_url(gone) == ""
    listed = client_for(viewer).get("/audit/?target_type=backups.target").content.decode()
    assert f'href="{target.get_absolute_url()}"' in listed


def test_the_window_page_history_costs_one_query_however_long(
    window: Window, operator: Any
) -> None:
    client = client_for(operator)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(window.get_absolute_url()).status_code == 200
        return len(captured)

    queries()
    few = queries()
    target = AuditTarget("maintenance.window", str(window.pk), window.title)
    for number in range(25):
        record("test.step", actor=operator, target=target, data={"changes": {"n": [number, 1]}})
    assert queries() == few
