"""The services dashboard colours each tile by its worst metric state, read from the stored
states (no Prometheus at all here), in a number of queries that does not grow."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.metrics.choices import MetricStatus
from apps.metrics.models import MetricState
from apps.services.choices import Health
from apps.services.models import DeploymentTarget
from tests.conftest import client_for
from tests.metrics.conftest import make_service

pytestmark = pytest.mark.django_db


def set_state(target: DeploymentTarget, key: str, state: str, value: float | None) -> None:
    MetricState.objects.update_or_create(
        definition=target.service.metric_definitions.get(key=key),
        target=target,
        defaults={"state": state, "value": value, "checked_at": timezone.now()},
    )


def tile_of(content: str, slug: str) -> str:
    start = content.index(f'href="/services/{slug}/?env=')
    return content[content.rindex("<td", 0, start) : content.index("</td>", start)]


def test_a_tile_takes_the_colour_of_its_worst_metric(viewer: Any) -> None:
    _, target = make_service("shop-api")
    DeploymentTarget.objects.filter(pk=target.pk).update(
        health=Health.OK, health_checked_at=timezone.now()
    )
    set_state(target, "request_rate", MetricStatus.OK, 12)
    set_state(target, "latency_p95", MetricStatus.WARNING, 620)
    set_state(target, "error_rate", MetricStatus.CRITICAL, 7.2)
    tile = tile_of(client_for(viewer).get("/services/").content.decode(), "shop-api")
    assert 'class="tile tile-critical"' in tile
    assert "Error rate" in tile and "Error rate: Critical (7.2%)" in tile
    assert "Latency p95: Warning (620 ms)" in tile


def test_no_data_and_unavailable_never_colour_a_tile_ok_or_red(viewer: Any) -> None:
    _, target = make_service("shop-api")
    DeploymentTarget.objects.filter(pk=target.pk).update(
        health=Health.OK, health_checked_at=timezone.now()
    )
    set_state(target, "error_rate", MetricStatus.UNAVAILABLE, None)
    tile = tile_of(client_for(viewer).get("/services/").content.decode(), "shop-api")
    assert 'class="tile tile-ok"' in tile  # the probe's verdict stands…
    assert "Metrics unavailable" in tile  # …and the tile says metrics could not be read


def test_the_dashboard_query_count_does_not_grow_with_metric_states(viewer: Any) -> None:
    client = client_for(viewer)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/services/").status_code == 200
        return len(captured)

    _, first = make_service("svc-0")
    set_state(first, "error_rate", MetricStatus.CRITICAL, 9)
    queries()
    few = queries()
    for number in range(1, 15):
        _, target = make_service(f"svc-{number}")
        set_state(target, "error_rate", MetricStatus.CRITICAL, 9)
        set_state(target, "cpu", MetricStatus.WARNING, 85)
    assert queries() == few
