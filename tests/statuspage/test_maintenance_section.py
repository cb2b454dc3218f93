"""The status page's "Scheduled maintenance" section (apps/maintenance/templatetags): the
running and announced windows of public components, escaped, in one query whatever the
number of windows; the page as a whole stays within its fixed number of queries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.maintenance import beat
from apps.maintenance.choices import OccurrenceState
from apps.maintenance.models import Occurrence
from apps.services.models import Environment, Service
from apps.statuspage.models import StatusComponent
from tests.factories import make_user
from tests.maintenance.helpers import schedule

SCHEDULED_AT = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
SEEN_AT = SCHEDULED_AT + timedelta(hours=1, minutes=1)
# The page's queries: four without the maintenance section (components, the two status
# sources' spans, the public incidents with their updates), and the section's one.
PAGE_QUERIES = 5


@pytest.fixture
def owner(db: None) -> Any:
    return make_user("olga-operator", "operator")


@pytest.fixture
def shop(db: None) -> StatusComponent:
    service = Service.objects.create(name="shop-api", slug="shop-api", team="Shop")
    return StatusComponent.objects.create(service=service, name="Shop", position=1)


@pytest.fixture
def web(db: None) -> StatusComponent:
    service = Service.objects.create(name="web", slug="web", team="Web")
    return StatusComponent.objects.create(service=service, name="Website", position=2)


def plan(
    owner: Any, services: list[Service], count: int, title: str = "Window", **fields: Any
) -> None:
    """``count`` windows at short notice (announced at the next tick), the first starting an
    hour after scheduling, the others three hours apart; then the tick that starts the
    first and sends the announcements."""
    fields.setdefault("short_notice_reason", "Security fix")
    with time_machine.travel(SCHEDULED_AT, tick=False):
        for number in range(count):
            start = SCHEDULED_AT + timedelta(hours=1 + 3 * number)
            end = start + timedelta(hours=2)
            schedule(owner, services, start, end, title=f"{title} {number}", **fields)
    with time_machine.travel(SEEN_AT, tick=False):
        beat.tick(SEEN_AT)


def status_page() -> tuple[str, list[str]]:
    with time_machine.travel(SEEN_AT, tick=False), CaptureQueriesContext(connection) as seen:
        response = Client().get("/status/")
    assert response.status_code == 200
    return response.content.decode(), [query["sql"] for query in seen.captured_queries]


def section(content: str) -> str:
    found = re.search(r'<section[^>]*data-testid="maintenance-notices".*?</section>', content, re.S)
    return found.group(0) if found else ""


@pytest.mark.parametrize("windows", [1, 20])
def test_the_section_costs_one_query_with_1_or_20_windows(
    owner: Any, shop: StatusComponent, web: StatusComponent, windows: int
) -> None:
    plan(owner, [shop.service, web.service], windows)
    assert Occurrence.objects.filter(state=OccurrenceState.IN_PROGRESS).count() == 1
    content, queries = status_page()
    shown = section(content)
    assert shown.count("<article") == min(windows, 10)
    assert "Window 0" in shown and "Affects Shop, Website" in shown
    assert "Under maintenance" in shown
    if windows > 1:
        assert "Window 1" in shown and "Scheduled" in shown
    assert len(queries) == PAGE_QUERIES
    # Two read the windows: the components' status source, and the section.
    assert sum("maintenance_occurrence" in sql for sql in queries) == 2


def test_without_windows_the_page_costs_the_same(shop: StatusComponent) -> None:
    content, queries = status_page()
    assert "Scheduled maintenance" not in content
    assert "/maintenance/subscribe/" in content
    assert len(queries) == PAGE_QUERIES


def test_only_public_components_and_production_windows_show_escaped(
    owner: Any, shop: StatusComponent, db: None
) -> None:
    hidden = Service.objects.create(name="internal", slug="internal", team="Ops")
    staging = Environment.objects.create(name="staging", slug="staging", order=0)
    plan(owner, [shop.service, hidden], 1, message="<b>read-only</b> & slow")
    plan(owner, [shop.service], 1, title="Staging only", environments=[staging])
    shown = section(status_page()[0])
    assert "Affects Shop</p>" in shown
    assert "internal" not in shown
    assert "Staging only" not in shown
    assert "&lt;b&gt;read-only&lt;/b&gt; &amp; slow" in shown and "<b>read-only" not in shown


def test_a_window_not_yet_announced_is_not_shown(owner: Any, shop: StatusComponent) -> None:
    with time_machine.travel(SCHEDULED_AT, tick=False):
        start = SCHEDULED_AT + timedelta(days=10)
        schedule(owner, [shop.service], start, start + timedelta(hours=2))
    assert "Scheduled maintenance" not in status_page()[0]
