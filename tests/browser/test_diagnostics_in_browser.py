"""The whole path through a real browser: sign in, run diagnostics from the home page, watch
the live progress page update itself (htmx polling) while a real Celery worker runs the
operation, then find the outcome in the audit history. Screenshots go to var/screenshots/."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Response, expect

from apps.accounts.roles import OPERATOR
from apps.audit.models import AuditEvent
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.factories import make_user
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The worker pauses 1 s before each of three checks; polls come every 2 s.
OPERATION_TIMEOUT_MS = 60_000


def test_it_runs_diagnostics_from_the_browser_and_shows_it_live_and_audited(
    page: Page,
    page_problems: PageProblems,
    celery_worker: Worker,
    screenshot_dir: Path,
) -> None:
    make_user("olga-operator", OPERATOR)
    sign_in(page, "olga-operator")
    assert_assets_applied(page)

    page.get_by_role("link", name="Run diagnostics").click()
    expect(page).to_have_url(re.compile(r"/operations/start/diagnostics\.ping/\?target=self$"))
    page.get_by_label("Pause between checks").fill("1")
    page.get_by_label("Reason").fill("Browser test: proving the engine end to end")
    page.get_by_role("button", name="Review").click()

    expect(page.get_by_role("heading", name="Confirm: Run diagnostics")).to_be_visible()
    expect(page.get_by_test_id("command")).to_contain_text("redis-cli ping")
    expect(page.locator(".facts")).to_contain_text("Browser test: proving the engine end to end")
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "diagnostics-confirm.png")

    # Every htmx poll of the live block (its body is gone once the page reloads at the end).
    polls: list[Response] = []
    page.on(
        "response",
        lambda response: polls.append(response) if "?after=" in response.url else None,
    )
    page.get_by_test_id("confirm").click()

    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
    match = re.search(r"/operations/(\d+)/$", page.url)
    assert match is not None
    pk = int(match.group(1))
    progress = page.get_by_test_id("progress-text")
    # The worker needs at least 3 s (three 1 s pauses); the page arrives well before that.
    first_seen = int(progress.inner_text().removesuffix(" %"))
    assert first_seen < 100
    expect(page.locator("#op-live")).to_have_attribute("hx-trigger", "every 2s")
    save_screenshot(page, screenshot_dir / "diagnostics-operation-running.png")

    # Read the bar as a person would, while it moves: the values only ever go up.
    seen = [first_seen]
    deadline = time.monotonic() + OPERATION_TIMEOUT_MS / 1000
    while seen[-1] < 100 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        with contextlib.suppress(PlaywrightError):  # the final reload may be under way
            value = int(progress.inner_text(timeout=1000).removesuffix(" %"))
            if value != seen[-1]:
                seen.append(value)
    expect(progress).to_have_text("100 %", timeout=OPERATION_TIMEOUT_MS)
    live = page.locator("#op-live")
    expect(live.locator(".state")).to_have_text("Succeeded")
    expect(page.get_by_test_id("status-text")).to_have_text("All checks passed")
    # A final state renders without the trigger: the page stops polling by itself.
    expect(live).not_to_have_attribute("hx-trigger", re.compile(".*"))
    log = page.locator("#op-log")
    for check in ("Database", "Broker", "Backup storage"):
        expect(log).to_contain_text(f"{check}: OK in")

    assert polls, "the page should have polled while the operation ran"
    assert all(poll.ok for poll in polls), [(poll.status, poll.url) for poll in polls]
    assert len(seen) >= 3, f"the bar should have moved in steps while polling: {seen}"
    assert seen == sorted(seen), seen
    assert seen[-1] == 100, seen
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "diagnostics-operation.png")

    operation = Operation.objects.get(pk=pk)
    assert operation.state == State.SUCCEEDED
    assert operation.requested_by.get_username() == "olga-operator"
    assert AuditEvent.objects.filter(operation_id=pk, action="operation.succeeded").exists()

    page.goto("/audit/")
    row = (
        page.locator("tbody tr")
        .filter(has_text="operation.succeeded")
        .filter(has=page.get_by_role("link", name=f"#{pk}", exact=True))
    )
    expect(row).to_have_count(1)
    expect(row.get_by_role("link", name=f"#{pk}", exact=True)).to_have_attribute(
        "href", f"/operations/{pk}/"
    )
    expect(row.locator(".state")).to_be_visible()
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "diagnostics-audit.png")

    assert page_problems.all() == [], page_problems.all()
