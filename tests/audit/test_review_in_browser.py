"""The review queue in a real browser: a manager (viewer role) sees a production restore and
an approval waiting, marks the restore reviewed with a comment (htmx, Enter submits), and
finds it under Reviewed. Screenshots go to var/screenshots/audit-review-*.png."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from apps.accounts.roles import ADMIN, VIEWER
from apps.audit.models import AuditEvent
from apps.audit.records import AuditTarget, record
from tests.factories import make_operation, make_user
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_manager_clears_the_review_queue(
    page: Page,
    page_problems: PageProblems,
    screenshot_dir: Path,
) -> None:
    rita = make_user("rita-dba", ADMIN)
    make_user("mona-manager", VIEWER)
    operation = make_operation(
        rita, kind="backups.restore", params={"backup": 7}, is_production=True
    )
    target = AuditTarget("backups.target", "1", "orders")
    record(
        "operation.requested",
        actor=rita,
        target=target,
        reason="Restore before the <b>bad</b> migration",
        data={"kind": "backups.restore", "params": {"backup": 7}},
        operation_id=operation.pk,
    )
    record("operation.approved", actor=rita, target=target, operation_id=operation.pk)

    sign_in(page, "mona-manager")
    page.goto("/audit/")
    page.get_by_role("link", name="Review queue").click()
    expect(page).to_have_url(re.compile(r"/audit/review/$"))
    summary = page.get_by_test_id("queue-summary")
    expect(summary).to_contain_text("2 events still to review")
    rows = page.locator("#queue tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.last).to_contain_text("Production restore")
    expect(rows.last).to_contain_text("Restore before the <b>bad</b> migration")  # as text
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "audit-review-queue.png")

    seq = AuditEvent.objects.get(action="operation.requested").seq
    comment = page.get_by_label(f"Comment on event #{seq}")
    comment.fill("Matches change ticket CHG-1234")
    comment.press("Enter")
    expect(summary).to_contain_text("1 event still to review")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Approval")

    page.get_by_role("link", name="Reviewed").click()
    expect(page).to_have_url(re.compile(r"state=reviewed"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Matches change ticket CHG-1234")
    expect(rows.first).to_contain_text("mona-manager")
    save_screenshot(page, screenshot_dir / "audit-review-reviewed.png")
    assert AuditEvent.objects.filter(
        action="audit.reviewed", actor__username="mona-manager"
    ).exists()
    assert page_problems.all() == []
