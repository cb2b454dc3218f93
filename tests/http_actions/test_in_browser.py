"""Through a real browser: the service page lists its admin API action, "Run" opens the
usual form, the confirmation shows the curl equivalent (token masked), and a real worker
calls the loopback API. Screenshots go to var/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from apps.accounts.roles import OPERATOR
from apps.services.models import Environment, Service
from tests.factories import make_user
from tests.http_actions.api_server import AdminApi
from tests.http_actions.conftest import TOKEN, make_action
from tests.support.browser import PageProblems, save_screenshot, sign_in
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_runs_an_admin_api_action_from_the_service_page(
    page: Page,
    page_problems: PageProblems,
    celery_worker: Worker,
    api: AdminApi,
    screenshot_dir: Path,
) -> None:
    service = Service.objects.create(name="MaintainUK API", slug="maintainuk-api", team="Ops")
    staging = Environment.objects.create(name="Staging", slug="staging")
    make_action(service, staging, api.origin, description="Runbook: Reprocess dead letter queue.")
    api.answer(202, b'{"reprocessed": 1}')
    make_user("olga-operator", OPERATOR)
    sign_in(page, "olga-operator")

    page.goto(service.get_absolute_url())
    actions = page.get_by_test_id("http-actions")
    expect(actions).to_contain_text("Reprocess dead letter")
    save_screenshot(page, screenshot_dir / "http-actions-service-page.png")
    actions.get_by_role("link", name="Run Reprocess dead letter").click()

    expect(page).to_have_url(re.compile(r"/operations/start/http_actions\.call/\?target=\d+$"))
    page.get_by_label("id").fill("42")
    page.get_by_label("Reason").fill("DLQ item 42 after the fix")
    page.get_by_role("button", name="Review").click()
    command = page.get_by_test_id("command")
    expect(command).to_contain_text("dead-letters/42/reprocess")
    expect(command).to_contain_text("Bearer <token>")
    assert TOKEN not in page.content()
    save_screenshot(page, screenshot_dir / "http-actions-confirm.png")
    page.get_by_test_id("confirm").click()

    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
    expect(page.get_by_text("HTTP 202: Reprocess dead letter done.").first).to_be_visible(
        timeout=60_000
    )
    expect(page.locator("body")).to_contain_text('Response body: {"reprocessed": 1}')
    save_screenshot(page, screenshot_dir / "http-actions-operation.png")
    [request] = api.requests()
    assert request.path == "/api/v1/admin/dead-letters/42/reprocess"
    assert not page_problems.all(), page_problems.all()
