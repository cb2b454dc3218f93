"""An admin in a real browser: back up a database with known rows into moto's S3 (a real
worker, the real pg_dump) and watch the operation's progress, prove the backup with a test
restore and see "Verified" on the target, then restore it over the database with its name
typed to confirm and see the integrity checks pass. Screenshots go to var/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from apps.accounts.roles import ADMIN
from apps.backups.choices import RestoreKind, RestoreState
from apps.backups.models import Backup, RestoreRun
from tests.backups.conftest import (  # noqa: F401 (fixtures)
    EXPECTED_COUNTS,
    Server,
    make_s3_storage,
    make_target,
    pg_server,
    s3,
    s3_endpoint,
    source_db,
    table_rows,
)
from tests.factories import PASSWORD, make_user
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def confirm(page: Page) -> None:
    """The engine's confirmation page: the password again when the sign-in is not fresh."""
    password = page.get_by_label("Your password")
    if password.count():
        password.fill(PASSWORD)
    page.get_by_test_id("confirm").click()
    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))


def test_an_admin_backs_up_verifies_and_restores(
    page: Page,
    page_problems: PageProblems,
    celery_worker: Worker,
    pg_server: Server,  # noqa: F811
    source_db: str,  # noqa: F811
    s3: Any,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    screenshot_dir: Path,
) -> None:
    target = make_target(
        pg_server, source_db, make_s3_storage(s3_endpoint, name="s3-nightly"), name="Orders DB"
    )
    before = table_rows(pg_server, source_db)
    make_user("dana-admin", ADMIN)
    sign_in(page, "dana-admin")

    page.goto(f"/backups/targets/{target.pk}/")
    assert_assets_applied(page)
    expect(page.get_by_test_id("verified")).to_contain_text("Never verified")
    page.get_by_role("link", name="Back up now").click()
    page.get_by_role("button", name="Review").click()
    confirm(page)
    expect(page.get_by_test_id("progress-text")).to_have_text("100 %", timeout=90_000)
    body = page.locator("body")
    # The bytes dumped and stored (a backup this small ends before the first periodic line).
    expect(body).to_contain_text(
        re.compile(r"pg_dump finished: [\d.]+ \w+ dumped, [\d.]+ \w+ stored")
    )
    expect(body).to_contain_text(re.compile(r"Committing [\d.]+ \w+ to the storage"))
    expect(body).to_contain_text("Backed up Orders DB")
    save_screenshot(page, screenshot_dir / "backups-backup-progress.png")
    backup = Backup.objects.get(target=target)
    assert backup.is_good and backup.row_counts == EXPECTED_COUNTS

    page.goto(f"/backups/targets/{target.pk}/")
    page.get_by_role("link", name="Test restore").first.click()
    page.get_by_role("button", name="Review").click()
    confirm(page)
    expect(page.get_by_test_id("progress-text")).to_have_text("100 %", timeout=120_000)
    expect(body).to_contain_text(f"Verified: backup #{backup.pk} restores in")
    page.goto(f"/backups/targets/{target.pk}/")
    expect(page.get_by_test_id("verified")).to_contain_text("Verified")
    save_screenshot(page, screenshot_dir / "backups-target-verified.png")

    page.get_by_role("link", name="Restore…").first.click()
    expect(page.locator("#id_target")).to_be_visible()
    save_screenshot(page, screenshot_dir / "backups-restore-choose.png")
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Type the database name to confirm").fill("wrong_name")
    page.get_by_label("Reason").fill("drill: restore last night's backup")
    page.get_by_role("button", name="Review").click()
    expect(body).to_contain_text("is not the name of the database to overwrite")
    save_screenshot(page, screenshot_dir / "backups-restore-refused.png")
    page.get_by_label("Type the database name to confirm").fill(source_db)
    reason = page.get_by_label("Reason")
    if not reason.input_value():
        reason.fill("drill: restore last night's backup")
    page.get_by_role("button", name="Review").click()
    expect(body).to_contain_text("pg_restore --clean")
    save_screenshot(page, screenshot_dir / "backups-restore-confirm.png")
    confirm(page)
    expect(page.get_by_test_id("progress-text")).to_have_text("100 %", timeout=120_000)
    expect(body).to_contain_text("integrity checks passed")
    save_screenshot(page, screenshot_dir / "backups-restore-done.png")

    run = RestoreRun.objects.get(kind=RestoreKind.RESTORE, target=target)
    assert run.state == RestoreState.PASSED
    assert run.safety_backup is not None
    assert table_rows(pg_server, source_db) == before

    # The S3 storage offers to back up a bucket (and, to an admin, to restore one).
    page.goto("/backups/storage/")
    expect(page.get_by_role("link", name="Back up a bucket")).to_be_visible()
    expect(page.get_by_role("link", name="Restore a bucket…")).to_be_visible()
    save_screenshot(page, screenshot_dir / "backups-storage.png")

    # Pruning on its own: the admin ticks the box, says why, and the target page says so.
    page.goto(f"/backups/targets/{target.pk}/edit/")
    page.get_by_role("checkbox", name="Prune automatically").check()
    page.get_by_label("Why prune automatically").fill("The bucket is billed by the gigabyte.")
    save_screenshot(page, screenshot_dir / "backups-target-auto-prune-form.png")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("auto-prune")).to_contain_text(
        "Pruned automatically every hour, as dana-admin consented"
    )
    save_screenshot(page, screenshot_dir / "backups-target-auto-prune.png")
    # The one refusal above answers 400 (the form again, with its message): expected.
    refused = "/operations/start/backups.restore/"
    unexpected = [line for line in page_problems.all() if refused not in line or "400" not in line]
    assert not unexpected, unexpected
    assert len(page_problems.failed_responses) == 1
