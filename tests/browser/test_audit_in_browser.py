"""A manager's review in a real browser: a viewer filters the audit history to one person's
restores last week, opens the restored database's page, follows its History to the
operation and its log, and exports the filtered view as CSV, which parses back to the rows
the page showed. Screenshots go to var/screenshots/audit-*.png."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone
from playwright.sync_api import Page, expect

from apps.accounts.roles import OPERATOR, VIEWER
from apps.audit.records import AuditTarget, record
from apps.backups.models import BackupStorage, DatabaseTarget
from apps.operations.choices import State
from apps.operations.models import Operation, OperationLogLine
from tests.audit.test_exports import parse_csv
from tests.factories import make_operation, make_user
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RESTORE = "backups.restore"


def last_week() -> tuple[date, date]:
    """Monday to Sunday of the week before this one, in the portal's time zone."""
    today = timezone.localdate()
    monday = today - timedelta(days=today.weekday() + 7)
    return monday, monday + timedelta(days=6)


def at(day: date, hour: int) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour)))


def restore(who: object, target: DatabaseTarget, when: datetime, reason: str) -> Operation:
    """A finished restore as the operations engine leaves it: the row, its log, and the
    audit events of its request and its end, stamped when it ran."""
    with time_machine.travel(when, tick=False):
        operation = make_operation(
            who,  # type: ignore[arg-type]
            kind=RESTORE,
            state=State.SUCCEEDED,
            target_key=f"backups.target:{target.pk}",
            reason=reason,
            started_at=when,
            finished_at=when + timedelta(minutes=4),
            params={"backup": 7},
            progress=100,
            status_text="Restored orders from backup #7",
        )
        Operation.objects.filter(pk=operation.pk).update(target_label=target.name)
        for line in ("Downloading backup #7 (12.4 MB)", "pg_restore --clean -d orders", "Done"):
            OperationLogLine.objects.create(operation=operation, message=line, created_at=when)
        audit_target = AuditTarget("backups.target", str(target.pk), target.name)
        record(
            "operation.queued",
            actor=who,  # type: ignore[arg-type]
            target=audit_target,
            reason=reason,
            data={"kind": RESTORE},
            operation_id=operation.pk,
        )
        record(
            "operation.succeeded",
            actor=who,  # type: ignore[arg-type]
            target=audit_target,
            reason="Restored",
            data={"kind": RESTORE},
            operation_id=operation.pk,
        )
    return operation


def test_a_manager_reviews_a_users_restores_from_last_week(
    page: Page, page_problems: PageProblems, screenshot_dir: Path
) -> None:
    rita = make_user("rita-dba", OPERATOR)
    olga = make_user("olga-operator", OPERATOR)
    make_user("mona-manager", VIEWER)
    storage = BackupStorage.objects.create(name="nightly", kind="local", directory="/tmp/x")
    orders = DatabaseTarget.objects.create(
        name="orders", host="db.internal", port=5432, database="orders", user="u", storage=storage
    )
    monday, sunday = last_week()
    # In the order of time: the history's sequence numbers grow with it.
    restore(rita, orders, at(monday - timedelta(days=10), 9), "Older drill")
    wanted = restore(rita, orders, at(monday + timedelta(days=2), 14), "Bad migration <b>x</b>")
    restore(olga, orders, at(monday + timedelta(days=3), 10), "Someone else's restore")
    with time_machine.travel(at(monday + timedelta(days=4), 11), tick=False):
        make_operation(rita, kind="backups.backup", state=State.SUCCEEDED)
        record("operation.queued", actor=rita, data={"kind": "backups.backup"})

    sign_in(page, "mona-manager")
    page.goto("/audit/")
    page.get_by_label("Actor").fill("rita-dba")
    page.get_by_label("Operation kind").select_option(RESTORE)
    page.get_by_label("From").fill(monday.isoformat())
    page.get_by_label("To (inclusive)").fill(sunday.isoformat())
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"kind=backups\.restore"))
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(2)  # the request and the end of one restore
    expect(rows.first).to_contain_text("operation.succeeded")
    expect(page.locator("#results")).to_contain_text("Bad migration <b>x</b>")  # as text
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "audit-filtered.png")
    filtered_url = page.url

    # Open it: the restored database's page, whose History names the restore.
    rows.first.get_by_role("link", name="orders").click()
    expect(page).to_have_url(re.compile(rf"/backups/targets/{orders.pk}/$"))
    history = page.locator("#audit-history")
    expect(history).to_contain_text("operation.succeeded")
    expect(history.get_by_role("link", name="All of it in the audit history")).to_be_visible()
    history.scroll_into_view_if_needed()
    save_screenshot(page, screenshot_dir / "audit-object-history.png")

    # Follow it to the operation and its log.
    history.get_by_role("link", name=f"#{wanted.pk}").first.click()
    expect(page).to_have_url(re.compile(rf"/operations/{wanted.pk}/$"))
    expect(page.locator("body")).to_contain_text("pg_restore --clean -d orders")
    save_screenshot(page, screenshot_dir / "audit-operation-log.png")

    # Back to the filtered view and export it.
    page.goto(filtered_url)
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    header, exported = parse_csv(Path(download.path()).read_bytes().decode())
    assert "actor is rita-dba" in header["summary"]
    assert f"operation kind is {RESTORE}" in header["summary"]
    assert [(row["action"], row["operation_id"]) for row in exported] == [
        ("operation.succeeded", str(wanted.pk)),
        ("operation.queued", str(wanted.pk)),
    ]
    # The export itself is in the history now.
    page.goto("/audit/?action=audit.exported")
    expect(page.locator("#results tbody tr")).to_have_count(1)
    expect(page.locator("#results tbody tr")).to_contain_text(
        f"Exported ?actor=rita-dba&kind={RESTORE}"
    )
    save_screenshot(page, screenshot_dir / "audit-export-recorded.png")
    assert page_problems.all() == []
