"""The service page's datastore panels in a real browser: htmx loads each panel's figures
(connections and the longest query of a real PostgreSQL with a blocked query; memory and
queue depths of a real Redis), and a Redis that is down says so in its own panel while the
rest of the page works. Screenshot under var/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from playwright.sync_api import Page, expect

from apps.accounts.roles import VIEWER
from apps.backups.models import DatabaseTarget
from apps.datastores.models import RedisTarget
from apps.services.models import Service
from tests.datastores.conftest import Blocked
from tests.factories import make_user
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_viewer_reads_the_datastore_panels_on_the_service_page(
    page: Page,
    page_problems: PageProblems,
    database_target: DatabaseTarget,
    blocked: Blocked,
    redis_target: RedisTarget,
    redis_db: redis.Redis,
    screenshot_dir: Path,
) -> None:
    service = Service.objects.create(name="Orders", slug="orders", team="payments")
    database_target.service = service
    database_target.save(update_fields=["service"])
    redis_target.service = service
    redis_target.save(update_fields=["service"])
    redis_db.rpush("bull:emails:wait", *[f"job{i}" for i in range(1200)])
    redis_db.rpush("celery", "{}", "{}", "{}")
    down = RedisTarget.objects.create(
        name="sessions", url="redis://127.0.0.1:1", service=service, celery_queues="celery"
    )
    make_user("vic-viewer", VIEWER)
    sign_in(page, "vic-viewer")
    page.goto(f"/services/{service.slug}/")
    assert_assets_applied(page)
    pg_panel = page.get_by_test_id(f"postgres-panel-{database_target.pk}")
    expect(pg_panel.get_by_test_id("panel-connections")).to_contain_text("OK")
    expect(pg_panel.get_by_test_id("panel-longest")).to_contain_text(f"pid {blocked.blocker_pid}")
    expect(pg_panel.get_by_test_id("panel-blocked")).to_contain_text("1 blocked")
    redis_panel = page.get_by_test_id(f"redis-panel-{redis_target.pk}")
    expect(redis_panel.get_by_test_id("panel-queue-emails")).to_contain_text("wait 1200")
    expect(redis_panel.get_by_test_id("panel-queue-emails")).to_contain_text("Warning")
    expect(redis_panel.get_by_test_id("panel-queue-celery")).to_contain_text("list 3")
    down_panel = page.get_by_test_id(f"redis-panel-{down.pk}")
    expect(down_panel.get_by_test_id("panel-problem")).to_contain_text("does not answer")
    # The rest of the page is there and works.
    expect(page.get_by_role("heading", level=1)).to_contain_text("Orders")
    save_screenshot(page, screenshot_dir / "datastores-service-panels.png")
    assert page_problems.all() == []
