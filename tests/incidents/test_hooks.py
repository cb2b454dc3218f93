"""Incidents in the rest of the portal: an open SEV-1/SEV-2 closes the deploy gate of its
services except to its own mitigations, and what is started from an incident is written
into its timeline as it starts and as it ends (on a real worker, against the Kubernetes API
emulator)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.incidents.actions import do_resolve_incident
from apps.incidents.choices import EntryKind
from apps.incidents.hooks import origin_of
from apps.incidents.models import Incident, TimelineEntry
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.services import badges
from tests.factories import make_incident
from tests.services.conftest import Catalog
from tests.support.waiting import wait_for

IMAGE = "registry.example.com/shop/api:2.0.0"
ROLLOUT = {"image": IMAGE, "auto_rollback": True, "healthy_checks": 1}


def operation_entries(incident: Incident) -> list[tuple[str, str]]:
    return [
        (entry.data["phase"], entry.data["state"])
        for entry in TimelineEntry.objects.filter(incident=incident, kind=EntryKind.OPERATION)
    ]


@pytest.mark.usefixtures("celery_worker")
def test_a_rollback_started_from_the_incident_lands_in_its_timeline(
    operator: Any, catalog: Catalog
) -> None:
    incident = make_incident(operator, "SEV-1", services=[catalog.service], title="Checkout down")

    operation = actions.do_start_operation(
        operator,
        "services.rollback",
        str(catalog.production_target.pk),
        {"healthy_checks": 1},
        "mitigate the outage",
        origin=origin_of(incident),
    )
    wait_for(lambda: Operation.objects.get(pk=operation.pk).is_final, timeout=60, what="rollback")

    operation.refresh_from_db()
    assert operation.origin == f"incident:{incident.pk}"
    entries = list(
        TimelineEntry.objects.filter(incident=incident, kind=EntryKind.OPERATION).order_by("id")
    )
    assert [(entry.data["phase"], entry.data["state"]) for entry in entries] == [
        ("requested", State.QUEUED),
        ("finished", operation.state),
    ]
    assert all(entry.operation_id == operation.pk for entry in entries)
    assert entries[0].author == operator
    assert entries[1].author is None  # the worker wrote it
    assert entries[0].data["reason"] == "mitigate the outage"


def test_an_open_sev1_refuses_a_rollout_from_elsewhere_naming_the_incident(
    operator: Any, catalog: Catalog
) -> None:
    incident = make_incident(operator, "SEV-1", services=[catalog.service], title="Checkout down")

    with pytest.raises(actions.OperationRefused) as refused:
        actions.do_start_operation(
            operator, "services.rollout", str(catalog.production_target.pk), ROLLOUT, "ship"
        )

    assert f"incident #{incident.pk}" in refused.value.message
    assert "Checkout down" in refused.value.message
    denied = AuditEvent.objects.filter(action="operation.refused").latest("seq")
    assert denied.outcome == "denied" and f"#{incident.pk}" in denied.reason
    assert not Operation.objects.filter(kind="services.rollout").exists()


def test_the_incident_itself_may_roll_out_a_fix(operator: Any, catalog: Catalog) -> None:
    incident = make_incident(operator, "SEV-2", services=[catalog.service])

    operation = actions.do_start_operation(
        operator,
        "services.rollout",
        str(catalog.production_target.pk),
        ROLLOUT,
        "hotfix",
        origin=origin_of(incident),
    )

    assert operation.state == State.QUEUED
    assert not operation.gate_overridden


def test_another_incident_does_not_open_the_gate(operator: Any, catalog: Catalog) -> None:
    blocking = make_incident(operator, "SEV-1", services=[catalog.service])
    other = make_incident(operator, "SEV-3", services=[catalog.service])

    with pytest.raises(actions.OperationRefused, match=f"#{blocking.pk}"):
        actions.do_start_operation(
            operator,
            "services.rollout",
            str(catalog.target.pk),
            ROLLOUT,
            "ship",
            origin=origin_of(other),
        )


def test_minor_resolved_and_other_environment_incidents_leave_the_gate_open(
    operator: Any, catalog: Catalog
) -> None:
    make_incident(operator, "SEV-3", services=[catalog.service])
    staging_only = make_incident(operator, "SEV-1", services=[catalog.service])
    staging_only.environments.set([catalog.staging])
    resolved = make_incident(operator, "SEV-1", services=[catalog.service])
    do_resolve_incident(operator, resolved, current_status="Fixed")

    operation = actions.do_start_operation(
        operator, "services.rollout", str(catalog.production_target.pk), ROLLOUT, "ship"
    )

    assert operation.state == State.QUEUED


def test_an_admin_may_override_the_incident_with_a_reason(
    operator: Any, admin: Any, catalog: Catalog
) -> None:
    make_incident(operator, "SEV-1", services=[catalog.service])

    operation = actions.do_start_operation(
        admin,
        "services.rollout",
        str(catalog.target.pk),
        ROLLOUT,
        "security fix cannot wait",
        override_gate=True,
    )

    assert operation.gate_overridden
    assert AuditEvent.objects.filter(action="operation.gate_overridden").exists()


def test_an_origin_that_names_nothing_is_refused(operator: Any, catalog: Catalog) -> None:
    for origin in ("incident:999999", "incident:abc", "nothing:1"):
        with pytest.raises(actions.OperationRefused, match="no such thing"):
            actions.do_start_operation(
                operator,
                "services.restart",
                str(catalog.target.pk),
                {"healthy_checks": 1},
                "restart",
                origin=origin,
            )
    assert not Operation.objects.exists()


def test_the_dashboard_shows_the_worst_open_incident_of_each_target(
    operator: Any, catalog: Catalog
) -> None:
    make_incident(operator, "SEV-3", services=[catalog.service])
    worst = make_incident(operator, "SEV-1", services=[catalog.service], title="Down")
    worst.environments.set([catalog.production])

    found = badges.for_targets([catalog.target, catalog.production_target], timezone.now())

    assert [badge.label for badge in found[catalog.production_target.pk]] == ["SEV-1"]
    assert found[catalog.production_target.pk][0].url == worst.get_absolute_url()
    assert [badge.label for badge in found[catalog.target.pk]] == ["SEV-3"]
