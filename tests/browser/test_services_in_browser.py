"""An operator's night, in a real browser: open the services dashboard, roll out a new image
of a service, watch it to the end, roll it back from the revision history, and find both in
the service's history and in the audit trail. A viewer sees no buttons and gets a 403 when
posting the form by hand. A real Celery worker does the work against the Kubernetes API
emulator. Screenshots go to var/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from apps.accounts.roles import OPERATOR, VIEWER
from apps.audit.models import AuditEvent
from apps.operations.choices import State
from apps.operations.models import Operation
from tests.factories import make_user
from tests.services.conftest import IMAGE_V1, Catalog, catalog, kube  # noqa: F401 (fixtures)
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

IMAGE_V2 = "registry.example.com/shop/api:2.0.0"
OPERATION_TIMEOUT_MS = 60_000


def _watch_to_the_end(page: Page) -> int:
    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
    match = re.search(r"/operations/(\d+)/$", page.url)
    assert match is not None
    expect(page.get_by_test_id("progress-text")).to_have_text("100 %", timeout=OPERATION_TIMEOUT_MS)
    expect(page.locator("#op-live .state")).to_have_text("Succeeded")
    return int(match.group(1))


def test_an_operator_rolls_out_and_back_and_finds_both_in_the_history(
    page: Page,
    page_problems: PageProblems,
    celery_worker: Worker,
    catalog: Catalog,  # noqa: F811
    screenshot_dir: Path,
) -> None:
    make_user("olga-operator", OPERATOR)
    sign_in(page, "olga-operator")
    page.get_by_role("link", name="Services").first.click()
    grid = page.get_by_test_id("service-grid")
    expect(grid).to_contain_text("shop-api")
    expect(page.locator("th.env-production-head")).to_contain_text("production")
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "services-dashboard.png")

    grid.get_by_role("link", name="shop-api", exact=True).click()
    page.get_by_role("link", name="staging").click()
    panel = page.locator("#deployment-panel")
    expect(panel.get_by_test_id("deployment-image")).to_have_text(IMAGE_V1)
    expect(panel.get_by_test_id("rollout-status")).to_contain_text("successfully rolled out")
    save_screenshot(page, screenshot_dir / "services-service-page.png")

    # Roll out.
    page.get_by_role("link", name="Roll out an image").click()
    page.get_by_label("Image").fill(IMAGE_V2)
    page.get_by_label("Reason").fill("Release 2.0 (browser test)")
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_test_id("command")).to_contain_text(
        f"kubectl set image deployment/api-staging api={IMAGE_V2} -n shop"
    )
    save_screenshot(page, screenshot_dir / "services-rollout-confirm.png")
    page.get_by_test_id("confirm").click()
    rollout = _watch_to_the_end(page)
    expect(page.get_by_test_id("status-text")).to_contain_text(f"Rolled out {IMAGE_V2}")
    expect(page.locator("#op-log")).to_contain_text("successfully rolled out")
    save_screenshot(page, screenshot_dir / "services-rollout-done.png")

    # Roll back, from the revision history.
    page.get_by_role("link", name="shop-api (staging)").click()
    panel = page.locator("#deployment-panel")
    expect(panel.get_by_test_id("deployment-image")).to_have_text(IMAGE_V2)
    revisions = panel.get_by_test_id("revisions")
    revisions.locator("tr", has_text=IMAGE_V1).get_by_role("link", name="Roll back to this").click()
    expect(page.get_by_label("Revision")).to_have_value("1")
    page.get_by_label("Reason").fill("2.0 misbehaves (browser test)")
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_test_id("command")).to_contain_text(
        "kubectl rollout undo deployment/api-staging --to-revision=1 -n shop"
    )
    page.get_by_test_id("confirm").click()
    rollback = _watch_to_the_end(page)
    save_screenshot(page, screenshot_dir / "services-rollback-done.png")

    # Both in the service's history…
    page.get_by_role("link", name="shop-api (staging)").click()
    expect(page.locator("#deployment-panel").get_by_test_id("deployment-image")).to_have_text(
        IMAGE_V1
    )
    history = page.get_by_test_id("recent-operations")
    for pk, label in ((rollout, "Roll out an image"), (rollback, "Roll back")):
        row = history.locator("tr", has=page.get_by_role("link", name=f"#{pk}", exact=True))
        expect(row).to_contain_text(label)
        expect(row).to_contain_text("Succeeded")
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "services-history.png")

    # …and in the audit trail.
    page.get_by_role("link", name="Audit trail of this target").click()
    for pk in (rollout, rollback):
        row = (
            page.locator("tbody tr")
            .filter(has_text="operation.succeeded")
            .filter(has=page.get_by_role("link", name=f"#{pk}", exact=True))
        )
        expect(row).to_have_count(1)
    save_screenshot(page, screenshot_dir / "services-audit.png")

    assert [Operation.objects.get(pk=pk).state for pk in (rollout, rollback)] == [
        State.SUCCEEDED,
        State.SUCCEEDED,
    ]
    assert page_problems.all() == [], page_problems.all()


def test_a_viewer_sees_no_buttons_and_cannot_post_the_form(
    page: Page,
    page_problems: PageProblems,
    catalog: Catalog,  # noqa: F811
    screenshot_dir: Path,
) -> None:
    make_user("victor-viewer", VIEWER)
    sign_in(page, "victor-viewer")
    page.goto("/services/shop-api/?env=staging")
    expect(page.locator("#deployment-panel").get_by_test_id("deployment-image")).to_have_text(
        IMAGE_V1
    )
    expect(page.locator("a[href*='/operations/start/']")).to_have_count(0)
    expect(page.get_by_role("heading", name="Actions")).to_have_count(0)
    save_screenshot(page, screenshot_dir / "services-viewer.png")

    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        "/operations/start/services.rollout/",
        form={
            "target": str(catalog.target.pk),
            "p-image": IMAGE_V2,
            "p-healthy_checks": "1",
            "confirmed": "1",
        },
        headers={"X-CSRFToken": csrf, "Referer": page.url},
    )
    assert response.status == 403
    assert "Your role does not allow this" in response.text()
    assert not Operation.objects.exists()
    assert AuditEvent.objects.filter(action="access.denied", actor_label="victor-viewer").exists()
    assert page_problems.all() == [], page_problems.all()
