"""An on-call admin at 3 a.m., in a real browser: the database console shows a query blocked
behind an idle transaction; terminate the blocker from the console (form, confirmation with
the blocker's query, password), a real worker does it, and the console no longer lists it.
Then the Redis console shows the queue depths. Screenshots go to var/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Page, expect

from apps.accounts.roles import ADMIN
from apps.backups.models import DatabaseTarget
from apps.datastores.models import RedisTarget
from tests.datastores.conftest import (  # noqa: F401 (fixtures)
    Blocked,
    blocked,
    database_target,
    pg_database,
    redis_db,
    redis_target,
)
from tests.factories import PASSWORD, make_user
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_terminates_a_blocker_and_reads_the_queues(
    page: Page,
    page_problems: PageProblems,
    celery_worker: Worker,
    database_target: DatabaseTarget,  # noqa: F811
    blocked: Blocked,  # noqa: F811
    redis_target: RedisTarget,  # noqa: F811
    redis_db: redis.Redis,  # noqa: F811
    screenshot_dir: Path,
) -> None:
    make_user("dana-admin", ADMIN)
    sign_in(page, "dana-admin")
    page.get_by_role("link", name="Datastores").click()
    page.get_by_role("link", name=database_target.name).click()
    assert_assets_applied(page)
    blocking = page.get_by_test_id("blocking")
    expect(blocking).to_contain_text(str(blocked.blocker_pid))
    expect(blocking).to_contain_text("UPDATE accounts SET balance = 0 WHERE id = 1")
    save_screenshot(page, screenshot_dir / "datastores-postgres-blocked.png")

    blocking.get_by_role("link", name="Terminate blocker").click()
    page.get_by_label("Reason").fill("idle transaction blocks the accounts row")
    page.get_by_role("button", name="Review").click()
    expect(page.locator("body")).to_contain_text("UPDATE accounts SET balance = balance + 1")
    expect(page.get_by_test_id("command")).to_contain_text(
        f"pg_terminate_backend({blocked.blocker_pid})"
    )
    # Signing in just now counts as a fresh re-authentication: the password is asked only
    # when it is not.
    password = page.get_by_label("Your password")
    if password.count():
        password.fill(PASSWORD)
    save_screenshot(page, screenshot_dir / "datastores-terminate-confirm.png")
    page.get_by_test_id("confirm").click()
    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
    expect(page.locator("body")).to_contain_text("terminated", timeout=60_000)

    page.goto(f"/datastores/postgres/{database_target.pk}/")
    expect(page.get_by_test_id("console")).to_contain_text("No session waits for another's lock")
    expect(page.get_by_test_id("console")).not_to_contain_text(f"blocked by {blocked.blocker_pid}")
    save_screenshot(page, screenshot_dir / "datastores-postgres-after.png")

    redis_db.rpush("bull:emails:wait", *[f"j{i}" for i in range(12)])
    redis_db.zadd("bull:emails:failed", {"f1": 1, "f2": 2})
    redis_db.rpush("celery", "a", "b", "c")
    page.goto("/datastores/")
    page.get_by_role("link", name=redis_target.name).click()
    expect(page.get_by_test_id("depth-emails-wait")).to_contain_text("12")
    expect(page.get_by_test_id("depth-emails-failed")).to_contain_text("2")
    expect(page.get_by_test_id("depth-celery-list")).to_contain_text("3")
    page.set_viewport_size({"width": 390, "height": 844})
    save_screenshot(page, screenshot_dir / "datastores-redis-phone.png")
    assert not page_problems.all(), page_problems.all()
