"""A maintenance window from a browser, as an operator runs one: schedule it to start in a
couple of minutes (short notice, with a reason), find it on the calendar, start it now (a
real Celery worker switches maintenance mode on in the Kubernetes API emulator, and the
window page shows the operations), tick the checklist, verify health (real probes of the
emulator's apps), end it early; the public status page shows the maintenance while it runs
and not after. Screenshots go to var/screenshots/maintenance-*.png."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from apps.accounts.roles import OPERATOR
from apps.maintenance.models import Window
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.statuspage.models import StatusComponent
from tests.factories import make_user
from tests.maintenance.helpers import LONDON
from tests.services.conftest import Catalog, catalog, kube  # noqa: F401 (fixtures)
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OPERATION_TIMEOUT_MS = 60_000
SCRIPT = "<script>alert('x')</script>"


def test_an_operator_runs_a_short_notice_window_from_the_browser(
    page: Page,
    page_problems: PageProblems,
    celery_worker: Worker,
    catalog: Catalog,  # noqa: F811
    screenshot_dir: Path,
) -> None:
    catalog.service.flag_allowlist = "MAINTENANCE_MODE\nMAINTENANCE_MESSAGE"
    catalog.service.save(update_fields=["flag_allowlist"])
    StatusComponent.objects.create(service=catalog.service, name="Shop API", position=1)
    make_user("mia-operator", OPERATOR)
    sign_in(page, "mia-operator")

    # Schedule: starting in two minutes (London wall clock), for an hour, in production (what
    # the public status page reflects).
    start = (timezone.now() + timedelta(minutes=2)).astimezone(LONDON).replace(second=0)
    end = start + timedelta(hours=1)
    page.goto("/maintenance/")
    page.get_by_role("link", name="Schedule a window").click()
    page.get_by_label("Title").fill("Database upgrade")
    page.get_by_label("Services").select_option(label="shop-api")
    page.get_by_label("production").check()
    page.get_by_label("Time zone").fill("Europe/London")
    page.get_by_label("Start").fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("End").fill(end.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Impact").select_option(label="Degraded")
    page.get_by_label("Message").fill(f"The shop is read-only {SCRIPT}")
    page.get_by_label("Switch maintenance mode").check()
    save_screenshot(page, screenshot_dir / "maintenance-form.png")
    page.get_by_role("button", name="Schedule").click()
    # Less than 7 days' notice: refused with a clear message until a reason is given.
    expect(page.locator("body")).to_contain_text("less than the 7 days")
    # The refusal is a 400, as the form pages answer invalid input: expected, not a defect.
    assert page_problems.failed_responses == [f"400 {page.url}"], page_problems.all()
    page_problems.failed_responses.clear()
    page_problems.console_errors.clear()  # the browser's own line about that 400
    page.get_by_label("Reason for short notice").fill("Security patch for the database")
    page.get_by_role("button", name="Schedule").click()
    expect(page).to_have_url(re.compile(r"/maintenance/\d+/$"))
    window = Window.objects.get()
    expect(page.get_by_test_id("message")).to_have_text(f"The shop is read-only {SCRIPT}")
    expect(page.get_by_test_id("current")).to_contain_text("Next")
    expect(page.get_by_test_id("zone-time").first).to_contain_text("(Europe/London)")
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "maintenance-scheduled.png")

    # The calendar (month, then week) shows it on its day.
    page.get_by_role("link", name="Calendar", exact=True).click()
    calendar = page.get_by_test_id("calendar")
    expect(calendar.get_by_role("link", name=re.compile("Database upgrade"))).to_be_visible()
    save_screenshot(page, screenshot_dir / "maintenance-calendar.png")
    page.get_by_role("link", name="Week", exact=True).click()
    expect(page.get_by_test_id("week")).to_contain_text("Database upgrade")
    save_screenshot(page, screenshot_dir / "maintenance-week.png")
    # (a window crossing midnight shows on both days)
    page.get_by_test_id("week").get_by_role(
        "link", name=re.compile("Database upgrade")
    ).first.click()
    expect(page).to_have_url(re.compile(rf"/maintenance/{window.pk}/$"))

    # The public status page before: nothing under maintenance.
    status = page.context.new_page()
    status.goto("/status/")
    expect(status.locator("body")).to_contain_text("All systems operational")

    # Start now: maintenance mode reaches the deployment through an audited operation.
    page.get_by_role("button", name="Start now").click()
    expect(page.get_by_test_id("current")).to_contain_text("In progress")
    operations = page.get_by_test_id("operations")
    expect(operations).to_contain_text("Succeeded", timeout=OPERATION_TIMEOUT_MS)
    switch_on = Operation.objects.get(origin=window.origin)
    assert switch_on.state == State.SUCCEEDED, switch_on.error
    save_screenshot(page, screenshot_dir / "maintenance-started.png")

    status.reload()
    component = status.locator("li.component", has_text="Shop API")
    expect(component.locator(".status-badge")).to_have_text("Under maintenance")
    expect(status.locator("body")).not_to_contain_text("All systems operational")
    save_screenshot(status, screenshot_dir / "maintenance-status-page.png")

    # The checklist: tick the steps with notes, then verify health (real probes).
    checklist = page.get_by_test_id("checklist")
    for label, note in [
        ("Announce", "Announced by the beat"),
        ("Enable maintenance mode", "Flags are on"),
        ("Perform the work", f"Upgraded to 16.4 {SCRIPT}"),
    ]:
        page.get_by_label(f"Note for {label}").fill(note)
        item = checklist.locator("li", has=page.get_by_label(f"Note for {label}"))
        item.get_by_role("button", name="Tick").click()
        expect(checklist).to_contain_text(f"{label} — done by mia-operator")
    expect(checklist).to_contain_text(f"Upgraded to 16.4 {SCRIPT}")
    page.get_by_label("Note for Verify health").fill("After the upgrade")
    page.get_by_role("button", name="Run probes & tick").click()
    result = page.get_by_test_id("health-result")
    expect(result).to_contain_text("OK")
    expect(result).to_contain_text("shop-api (production)")
    expect(result).not_to_contain_text("Failing")
    save_screenshot(page, screenshot_dir / "maintenance-checklist.png")

    # End early: maintenance mode off, the window completed, the status page back to normal.
    page.get_by_role("button", name="End early").click()
    expect(page.get_by_test_id("summary")).to_contain_text("Completed")
    rows = page.get_by_test_id("operations").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Succeeded")).to_have_count(2, timeout=OPERATION_TIMEOUT_MS)
    switch_off = Operation.objects.filter(origin=window.origin).order_by("-pk").first()
    assert switch_off is not None and switch_off.state == State.SUCCEEDED, switch_off
    save_screenshot(page, screenshot_dir / "maintenance-ended.png")
    status.reload()
    expect(status.locator("body")).to_contain_text("All systems operational")
    expect(component.locator(".status-badge")).to_have_text("Operational")
    assert page_problems.all() == [], page_problems.all()
