"""Metrics in a real browser: a real Prometheus holds two hours of a service's requests whose
error rate jumps from 0.5 % to 7 % twenty minutes ago. The evaluator (apps.metrics.evaluator)
runs over that data: the service's dashboard tile, not red while the rate was low, turns red
(Critical) once the error rate has been past 5 % for longer than its 5 minutes; the service
page's metrics panel shows the value against the thresholds and the chart with its threshold
lines and the deploy mark. Screenshots: var/screenshots/metrics-*.png."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from apps.accounts.roles import OPERATOR
from apps.metrics import evaluator
from apps.metrics.models import PrometheusConnection
from apps.operations.choices import State
from apps.services.models import TARGET_TYPE, DeploymentTarget, Environment, Service
from tests.factories import make_operation, make_user
from tests.metrics.test_verification import STEP, write_service
from tests.services.conftest import make_cluster
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in
from tests.support.prometheus import OpenMetrics, PrometheusServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB = "api-production"


@pytest.fixture
def recent(tmp_path: Path) -> Iterator[tuple[PrometheusServer, float]]:
    """The last two hours of the real clock; the error rate jumps 20 minutes ago."""
    end = math.floor(timezone.now().timestamp() / STEP) * STEP
    change = end - 20 * 60
    data = OpenMetrics()
    write_service(
        data,
        JOB,
        start=end - 2 * 3600,
        end=end,
        change=change,
        errors_before=7,  # 0.47 %
        errors_after=105,  # 7 %
        slow_after=False,
    )
    server = PrometheusServer.start(tmp_path / "prometheus", data)
    yield server, end
    server.stop()


def _catalog() -> DeploymentTarget:
    service = Service.objects.create(name="shop-api", slug="shop-api", team="Shop")  # + defaults
    production = Environment.objects.create(
        name="production", slug="production", is_production=True
    )
    return DeploymentTarget.objects.create(
        service=service,
        environment=production,
        cluster=make_cluster("emulated", "apiVersion: v1\nkind: Config\n"),
        namespace="shop",
        deployment=JOB,
        container="api",
    )


def test_a_tile_turns_red_past_the_critical_threshold_and_the_chart_shows_it(
    page: Page,
    page_problems: PageProblems,
    recent: tuple[PrometheusServer, float],
    screenshot_dir: Path,
) -> None:
    server, end = recent
    PrometheusConnection.objects.create(url=server.url)
    target = _catalog()
    user = make_user("olga-operator", OPERATOR)
    now = datetime.fromtimestamp(end, UTC)
    deployed_at = now - timedelta(minutes=20)
    make_operation(
        user,
        kind="services.rollout",
        state=State.SUCCEEDED,
        target_key=f"{TARGET_TYPE}:{target.pk}",
        params={"image": "registry.example.com/shop/api:2.0.0", "auto_rollback": False},
        finished_at=deployed_at,
    )
    # Before the jump: every metric that has data is fine.
    evaluator.evaluate(now=now - timedelta(minutes=30))

    sign_in(page, "olga-operator")
    page.goto("/services/")
    tile = page.locator("td.tile").filter(
        has=page.get_by_role("link", name="shop-api in production")
    )
    expect(tile).to_be_visible()
    expect(tile).not_to_have_class("tile tile-critical")
    assert_assets_applied(page)
    save_screenshot(page, screenshot_dir / "metrics-dashboard-before.png")

    # Past 5 % since the jump: pending for its 5 minutes, then critical.
    evaluator.evaluate(now=now - timedelta(minutes=15))
    evaluator.evaluate(now=now)

    page.reload()
    expect(tile).to_have_class("tile tile-critical")
    expect(tile).to_contain_text("Critical")
    expect(tile).to_contain_text("Error rate")
    save_screenshot(page, screenshot_dir / "metrics-dashboard-critical.png")

    tile.get_by_role("link", name="shop-api in production").click()
    panel = page.locator("#metrics-panel")
    row = panel.locator("tr[data-metric=error_rate]")
    expect(row).to_contain_text("Critical")
    expect(row).to_contain_text("7 %")
    expect(row).to_contain_text("warning > 1 %, critical > 5 %")
    chart = panel.locator("figure[data-metric=error_rate] svg")
    expect(chart.locator("[data-testid=threshold-critical]")).to_have_count(1)
    expect(chart.locator("[data-testid=threshold-warning]")).to_have_count(1)
    expect(chart.locator("[data-testid=deploy-mark]")).to_have_count(1)
    expect(chart).to_have_attribute(
        "aria-label",
        re.compile(
            r"^Error rate: latest 7 %, highest 7 %, lowest 0\.467 %; warning threshold: 1 %; "
            r"critical threshold: 5 %; 1 deploy marked$"
        ),
    )
    # The threshold line is drawn at 5 % on the chart's own scale, above the 0.5 % line and
    # below the 7 % one.
    threshold_box = chart.locator("[data-testid=threshold-critical]").bounding_box()
    svg_box = chart.bounding_box()
    assert threshold_box is not None and svg_box is not None
    assert svg_box["y"] < threshold_box["y"] < svg_box["y"] + svg_box["height"]
    panel.scroll_into_view_if_needed()
    save_screenshot(page, screenshot_dir / "metrics-service-page.png")

    # Another window, swapped in by htmx.
    panel.get_by_role("link", name="1h", exact=True).click()
    expect(panel.get_by_role("link", name="1h", exact=True)).to_have_attribute(
        "aria-current", "true"
    )
    expect(panel).to_contain_text("charts over the last 1 hour")
    expect(page.get_by_role("heading", name="Health")).to_be_visible()  # still the service page
    chart.screenshot(path=screenshot_dir / "metrics-chart-1h.png", animations="disabled")
    assert page_problems.all() == []
