"""In a real browser (headless Chromium): the backups list with a stale target in red and the
storage each uses, a target's history with its size-over-time chart, and the pruning
confirmation listing what it will delete. Screenshots go to var/screenshots/."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from apps.accounts.roles import ADMIN
from apps.backups.choices import BackupState
from apps.backups.models import Backup
from tests.backups.conftest import (  # noqa: F401 (fixtures)
    Server,
    backup_dir,
    make_local_storage,
    make_target,
    pg_server,
)
from tests.factories import make_user
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_history_chart_freshness_and_prune_confirmation(
    page: Page,
    page_problems: PageProblems,
    pg_server: Server,  # noqa: F811
    backup_dir: Path,  # noqa: F811
    screenshot_dir: Path,
) -> None:
    storage = make_local_storage(backup_dir, name="nightly-dir")
    orders = make_target(pg_server, "postgres", storage, name="Orders DB")
    billing = make_target(pg_server, "postgres", storage, name="Billing DB")
    now = timezone.now()
    for day in range(40):
        Backup.objects.create(
            target=orders,
            storage=storage,
            key=f"nightly/orders-db/{day}.dump",
            state=BackupState.SUCCEEDED,
            started_at=now - timedelta(days=41 - day, minutes=3),
            finished_at=now - timedelta(days=41 - day),
            size_bytes=int((120 + day * 2.5 + (day % 7) * 3) * 1024 * 1024),
        )
    Backup.objects.create(
        target=billing,
        storage=storage,
        key="nightly/billing-db/1.dump",
        state=BackupState.SUCCEEDED,
        finished_at=now - timedelta(hours=2),
        size_bytes=5 * 1024 * 1024,
    )
    make_user("dana-admin", ADMIN)
    sign_in(page, "dana-admin")

    page.goto("/backups/")
    assert_assets_applied(page)
    stale = page.get_by_test_id("target-row").filter(has_text="Orders DB")
    expect(stale.get_by_test_id("freshness")).to_contain_text("Stale")
    fresh = page.get_by_test_id("target-row").filter(has_text="Billing DB")
    expect(fresh.get_by_test_id("freshness")).to_contain_text("Fresh")
    save_screenshot(page, screenshot_dir / "backups-list-freshness.png")

    page.get_by_role("link", name="Orders DB").click()
    chart = page.get_by_test_id("size-chart")
    expect(chart).to_be_visible()
    box = chart.locator("svg").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    save_screenshot(page, screenshot_dir / "backups-target-history-chart.png")

    page.get_by_role("link", name="Prune old backups…").click()
    page.get_by_label("Reason").fill("Apply the retention policy")
    page.get_by_role("button", name="Review").click()
    command = page.get_by_test_id("command")
    expect(command).to_contain_text("rm ")
    expect(page.locator("body")).to_contain_text(re.compile(r"Deletes \d+ backups of Orders DB"))
    save_screenshot(page, screenshot_dir / "backups-prune-confirm.png")
    assert page_problems.all() == []
