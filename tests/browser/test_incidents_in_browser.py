"""An incident commander's outage, in a real browser: declare a SEV-1 from the header,
acknowledge it, post two updates, roll the service back from the incident page and watch the
operation's entries arrive in the open timeline without reloading, resolve, write the
post-mortem and download it; the public status page shows the outage and then the recovery.
A real Celery worker rolls back against the Kubernetes API emulator. Screenshots go to
var/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from apps.accounts.roles import OPERATOR
from apps.incidents.choices import EntryKind, IncidentState
from apps.incidents.models import Incident, TimelineEntry
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.services.cluster import KubeDeployment
from apps.statuspage.models import StatusComponent
from tests.factories import ensure_incident_defaults, make_user
from tests.services.conftest import Catalog, catalog, kube  # noqa: F401 (fixtures)
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OPERATION_TIMEOUT_MS = 60_000
IMAGE_V2 = "registry.example.com/shop/api:2.0.0"
SCRIPT = "<script>alert('x')</script>"


def _open_card(page: Page, title: str) -> Locator:
    card = page.locator("details", has=page.locator("summary", has_text=title))
    if card.get_attribute("open") is None:
        card.locator("summary").click()
    return card


def test_a_commander_runs_an_outage_from_declaration_to_post_mortem(
    page: Page,
    page_problems: PageProblems,
    celery_worker: Worker,
    catalog: Catalog,  # noqa: F811
    screenshot_dir: Path,
) -> None:
    ensure_incident_defaults()
    # Production runs 2.0, so that there is a revision to roll back to.
    production = catalog.production_target
    KubeDeployment(
        production.cluster.connection(), production.namespace, production.deployment, "api"
    ).set_image(IMAGE_V2)
    StatusComponent.objects.create(service=catalog.service, name="Shop API", position=1)
    make_user("ingrid-commander", OPERATOR)
    sign_in(page, "ingrid-commander")

    # The public status page before: all well.
    status = page.context.new_page()
    status.goto("/status/")
    expect(status.locator("body")).to_contain_text("All systems operational")

    # Declare, from the header's red button.
    page.get_by_role("link", name="Declare incident").click()
    page.get_by_label("Title").fill("Checkout fails for every customer")
    page.get_by_label("Severity").select_option(label="SEV-1 Complete outage")
    page.get_by_label("Affected services").select_option(label="shop-api")
    page.get_by_label("Customer impact").fill("Nobody can pay.")
    save_screenshot(page, screenshot_dir / "incidents-declare.png")
    page.get_by_role("button", name="Declare").click()
    expect(page).to_have_url(re.compile(r"/incidents/\d+/$"))
    incident = Incident.objects.get()
    expect(page.get_by_test_id("severity")).to_contain_text("SEV-1")
    expect(page.get_by_test_id("ack-countdown")).to_contain_text("Acknowledge within")
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "incidents-declared.png")

    # Acknowledge.
    page.get_by_role("button", name="Acknowledge: I am on it").click()
    expect(page.get_by_test_id("acknowledge-box")).to_have_count(0)
    expect(page.locator("#timeline-list")).to_contain_text("Acknowledged")

    # Two updates: a public one (with markup that must stay text) and an internal one.
    card = _open_card(page, "Post a status update")
    card.get_by_role("radio", name="Public").check()
    card.get_by_label("Current status").fill(f"Payments fail at checkout {SCRIPT}")
    card.get_by_label("Findings").fill("The payment gateway times out.")
    card.get_by_label("Next steps").fill("Roll back the 2.0 release.")
    card.get_by_label("ETA").fill("30 minutes")
    card.get_by_role("button", name="Post update").click()
    expect(page.locator("#timeline-list")).to_contain_text(f"Payments fail at checkout {SCRIPT}")
    card = _open_card(page, "Post a status update")
    card.get_by_role("radio", name="Internal").check()
    card.get_by_label("Current status").fill("Connection pool exhausted on the primary.")
    card.get_by_role("button", name="Post update").click()
    expect(page.locator("#timeline-list")).to_contain_text("Connection pool exhausted")

    status.reload()
    expect(status.locator("body")).to_contain_text("Major outage")
    expect(status.locator("body")).to_contain_text(f"Payments fail at checkout {SCRIPT}")
    expect(status.locator("body")).not_to_contain_text("Connection pool exhausted")
    save_screenshot(status, screenshot_dir / "incidents-status-outage.png")

    # Roll back from the incident page, in a second tab; the first one keeps watching.
    act = page.get_by_role("region", name="Act from the incident")
    expect(act.locator("h3", has_text="production")).to_have_count(1)
    rollback_url = act.get_by_role("link", name="Roll back").last.get_attribute("href")
    assert rollback_url is not None and f"origin=incident:{incident.pk}" in rollback_url
    operator_tab = page.context.new_page()
    operator_tab.goto(rollback_url)
    expect(operator_tab.get_by_test_id("origin")).to_contain_text(f"Incident #{incident.pk}")
    operator_tab.get_by_label("Reason").fill("Mitigate the checkout outage")
    operator_tab.get_by_role("button", name="Review").click()
    operator_tab.get_by_test_id("confirm").click()
    expect(operator_tab).to_have_url(re.compile(r"/operations/\d+/$"))
    operation = Operation.objects.get(kind="services.rollback")

    timeline = page.locator("#timeline-list")
    entry_link = timeline.get_by_role("link", name=f"Operation #{operation.pk}")
    expect(entry_link.first).to_be_visible(timeout=OPERATION_TIMEOUT_MS)
    expect(timeline.locator(".entry-operation")).to_have_count(2, timeout=OPERATION_TIMEOUT_MS)
    expect(timeline.locator(".entry-operation").last).to_contain_text(
        "finished", timeout=OPERATION_TIMEOUT_MS
    )
    expect(timeline.locator(".entry-operation").last).to_contain_text("Succeeded")
    operation.refresh_from_db()
    assert operation.origin == f"incident:{incident.pk}"
    assert operation.state == State.SUCCEEDED
    save_screenshot(page, screenshot_dir / "incidents-rollback-in-timeline.png")

    # Resolve with the final public update.
    card = _open_card(page, "Resolve")
    card.get_by_label("Final public update").fill("Checkout works again after the rollback.")
    card.get_by_role("button", name="Resolve with this update").click()
    expect(page.get_by_test_id("state")).to_contain_text("Resolved")

    status.reload()
    expect(status.locator("body")).to_contain_text("All systems operational")
    expect(status.locator("body")).to_contain_text("Checkout works again after the rollback.")
    save_screenshot(status, screenshot_dir / "incidents-status-recovered.png")

    # The post-mortem, then the Markdown.
    page.goto(f"/incidents/{incident.pk}/postmortem/")
    page.get_by_label("Summary").fill(f"A bad release broke payments {SCRIPT}.")
    page.get_by_label("Impact").fill("All customers for 20 minutes.")
    page.get_by_label("Root cause").fill("The 2.0 release exhausted the connection pool.")
    page.get_by_role("button", name="Save draft").click()
    action_form = page.get_by_test_id("action-form")
    action_form.get_by_label("Action").fill("Load-test the pool before releases")
    action_form.get_by_label("Owner").select_option(label="ingrid-commander")
    action_form.get_by_label("Due date").fill("2030-01-31")
    action_form.get_by_role("button", name="Add action item").click()
    expect(page.get_by_test_id("action-items")).to_contain_text("Load-test the pool")
    page.get_by_role("button", name="Mark complete").click()
    expect(page.get_by_test_id("postmortem-status")).to_contain_text("Complete")
    save_screenshot(page, screenshot_dir / "incidents-postmortem.png")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download Markdown").click()
    markdown = Path(download_info.value.path()).read_text()
    assert "Checkout fails for every customer" in markdown
    assert "&lt;script&gt;" in markdown and "<script>" not in markdown

    page.get_by_test_id("close-incident").click()
    incident.refresh_from_db()
    assert incident.state == IncidentState.CLOSED
    kinds = set(TimelineEntry.objects.filter(incident=incident).values_list("kind", flat=True))
    assert {EntryKind.DECLARED, EntryKind.ACKNOWLEDGED, EntryKind.UPDATE} <= kinds
    assert {EntryKind.OPERATION, EntryKind.POSTMORTEM} <= kinds
    assert page_problems.all() == [], page_problems.all()
