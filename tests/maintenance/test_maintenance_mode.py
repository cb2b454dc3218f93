"""Maintenance mode on and off, on a real worker, against the Kubernetes API emulator: the
flags are in the pod template after the start and gone after the end; the operations carry
the window's origin and the gate lets them through only from a running window."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.maintenance import actions, hooks
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.services import badges, gate
from tests.maintenance.helpers import schedule
from tests.services.conftest import NAMESPACE, Catalog
from tests.support.kube_emulator import KubeEmulator
from tests.support.waiting import wait_for


def pod_env(kube: KubeEmulator, name: str) -> dict[str, str]:
    deployment = kube.api.get_deployment(NAMESPACE, name)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", "") for item in container.get("env") or []}


def finished(origin: str, count: int) -> bool:
    done = Operation.objects.filter(origin=origin, state__in=[State.SUCCEEDED, State.FAILED])
    return done.count() == count


@pytest.mark.usefixtures("celery_worker")
def test_it_switches_maintenance_mode_on_at_the_start_and_off_at_the_end(
    operator: Any, catalog: Catalog, kube: KubeEmulator
) -> None:
    catalog.service.flag_allowlist = "MAINTENANCE_MODE\nMAINTENANCE_MESSAGE"
    catalog.service.save(update_fields=["flag_allowlist"])
    start = timezone.now() + timedelta(days=8)
    window = schedule(
        operator,
        [catalog.service],
        start,
        start + timedelta(hours=2),
        environments=[catalog.staging],
        maintenance_mode=True,
        message="Back at <b>04:00</b>, sorry.",
    )
    occurrence = window.occurrences.get()
    actions.do_start_occurrence(operator, occurrence)  # "start now"
    wait_for(lambda: finished(window.origin, 1), what="maintenance mode on")
    on = Operation.objects.get(origin=window.origin)
    assert on.state == State.SUCCEEDED, on.error
    env = pod_env(kube, "api-staging")
    assert env["MAINTENANCE_MODE"] == "true"
    assert env["MAINTENANCE_MESSAGE"] == "Back at <b>04:00</b>, sorry."
    assert pod_env(kube, "api-production")["MAINTENANCE_MODE"] == "false"  # not in scope
    # The dashboard badge, while it runs.
    found = badges.for_targets([catalog.target, catalog.production_target], timezone.now())
    assert [badge.label for badge in found[catalog.target.pk]] == ["Maintenance"]
    assert not any(b.label == "Maintenance" for b in found[catalog.production_target.pk])

    occurrence.refresh_from_db()
    actions.do_end_occurrence(operator, occurrence)  # "end early"
    wait_for(lambda: finished(window.origin, 2), what="maintenance mode off")
    off = Operation.objects.filter(origin=window.origin).order_by("-pk").first()
    assert off is not None and off.state == State.SUCCEEDED, off and off.error
    env = pod_env(kube, "api-staging")
    assert "MAINTENANCE_MODE" not in env and "MAINTENANCE_MESSAGE" not in env


def test_the_gate_admits_a_window_origin_only_while_it_runs_on_its_targets(
    operator: Any, catalog: Catalog
) -> None:
    start = timezone.now() + timedelta(days=8)
    window = schedule(
        operator,
        [catalog.service],
        start,
        start + timedelta(hours=1),
        environments=[catalog.staging],
    )
    assert gate.blockers(catalog.target) == []  # nothing else changes in the gate
    assert "is not running" in " ".join(gate.blockers(catalog.target, origin=window.origin))
    actions.do_start_occurrence(operator, window.occurrences.get())
    assert gate.blockers(catalog.target, origin=window.origin) == []
    outside = gate.blockers(catalog.production_target, origin=window.origin)
    assert "is not running on shop-api (production)" in " ".join(outside)
    assert hooks.origins.describe(window.origin) is not None


def test_a_refused_switch_is_shown_and_the_window_still_starts(
    operator: Any, catalog: Catalog
) -> None:
    start = timezone.now() + timedelta(days=8)
    window = schedule(
        operator,
        [catalog.service],
        start,
        start + timedelta(hours=1),
        environments=[catalog.staging],
        maintenance_mode=True,
    )
    # shop-api's allow-list does not name the maintenance flags: the flag change is
    # refused, and the window runs anyway, saying so.
    catalog.service.flag_allowlist = "FEATURE_*"
    catalog.service.save(update_fields=["flag_allowlist"])
    occurrence = actions.do_start_occurrence(operator, window.occurrences.get())
    occurrence.refresh_from_db()
    assert occurrence.state == "in_progress"
    assert "not on this service's allow-list" in occurrence.problems[0]
    assert not Operation.objects.filter(origin=window.origin).exists()
