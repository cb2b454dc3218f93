"""The deploy gate: freezes stop rollouts and flag changes (audited), an admin may override
with a reason (audited), and what restores or contains service always goes through. The
worker checks the gate again, for what was queued before a freeze."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.operations import actions, runner
from apps.operations.choices import State
from apps.services.cluster import KubeDeployment
from apps.services.models import DeployFreeze, DeploymentTarget
from tests.services.conftest import Catalog

# Transactional: two tests play the worker in this process, and the runner manages its own
# connection as a worker does.
pytestmark = pytest.mark.django_db(transaction=True)

IMAGE = "registry.example.com/shop/api:2.0.0"
ROLLOUT = {"image": IMAGE, "auto_rollback": True, "healthy_checks": 1}


def freeze(admin: Any, **scope: Any) -> DeployFreeze:
    now = timezone.now()
    return DeployFreeze.objects.create(
        reason="Black Friday", created_by=admin, expires_at=now + timedelta(hours=2), **scope
    )


def test_a_freeze_refuses_a_rollout_and_audits_the_refusal(
    operator: Any, admin: Any, catalog: Catalog
) -> None:
    freeze(admin, environment=catalog.production)

    with pytest.raises(actions.OperationRefused, match="frozen until .* Black Friday"):
        actions.do_start_operation(
            operator, "services.rollout", str(catalog.production_target.pk), ROLLOUT, "ship it"
        )

    denied = AuditEvent.objects.get(action="operation.refused")
    assert denied.outcome == "denied"
    assert "Black Friday" in denied.reason
    # Staging is not covered by this freeze.
    staging = actions.do_start_operation(
        operator, "services.rollout", str(catalog.target.pk), ROLLOUT, "ship it"
    )
    assert staging.state == State.QUEUED


def test_a_freeze_never_stands_in_the_way_of_a_rollback(
    operator: Any, admin: Any, catalog: Catalog
) -> None:
    freeze(admin)
    operation = actions.do_start_operation(
        operator, "services.rollback", str(catalog.target.pk), {"healthy_checks": 1}, "undo"
    )
    assert operation.state == State.QUEUED


def test_only_an_admin_overrides_and_the_override_is_audited(
    operator: Any, admin: Any, catalog: Catalog
) -> None:
    freeze(admin, service=catalog.service)
    target = str(catalog.target.pk)
    with pytest.raises(actions.OperationRefused, match="Only an admin"):
        actions.do_start_operation(
            operator, "services.rollout", target, ROLLOUT, "urgent", override_gate=True
        )
    with pytest.raises(actions.OperationRefused, match="reason is required"):
        actions.do_start_operation(
            admin, "services.rollout", target, ROLLOUT, "", override_gate=True
        )

    operation = actions.do_start_operation(
        admin, "services.rollout", target, ROLLOUT, "hotfix for the outage", override_gate=True
    )

    assert operation.gate_overridden
    override = AuditEvent.objects.get(action="operation.gate_overridden")
    assert override.reason == "hotfix for the outage"
    assert "Black Friday" in override.data["blockers"][0]


def test_a_lifted_or_expired_freeze_blocks_nothing(admin: Any, catalog: Catalog) -> None:
    lifted = freeze(admin)
    lifted.lifted_at = timezone.now()
    lifted.save(update_fields=["lifted_at"])
    DeployFreeze.objects.create(
        reason="old",
        created_by=admin,
        starts_at=timezone.now() - timedelta(days=2),
        expires_at=timezone.now() - timedelta(days=1),
    )
    operation = actions.do_start_operation(
        admin, "services.rollout", str(catalog.target.pk), ROLLOUT, "ship"
    )
    assert operation.state == State.QUEUED


def test_the_worker_refuses_what_was_queued_before_a_freeze(
    operator: Any, admin: Any, catalog: Catalog
) -> None:
    # No worker runs here: the operation waits in the queue while the freeze is set, then
    # this process plays the worker.
    operation = actions.do_start_operation(
        operator, "services.rollout", str(catalog.target.pk), ROLLOUT, "ship"
    )
    freeze(admin)

    runner.execute(operation.pk, worker="test-worker", task_id="t-1")

    operation.refresh_from_db()
    assert operation.state == State.FAILED
    assert "Black Friday" in operation.error
    assert DeploymentTarget.objects.get(pk=catalog.target.pk).observed_image != IMAGE
    assert AuditEvent.objects.filter(action="operation.refused", outcome="denied").exists()


def test_bounds_narrowed_after_the_request_are_checked_again_before_sending(
    operator: Any, catalog: Catalog
) -> None:
    operation = actions.do_start_operation(
        operator, "services.scale", str(catalog.target.pk), {"replicas": 4}, "more"
    )
    DeploymentTarget.objects.filter(pk=catalog.target.pk).update(max_replicas=3)

    runner.execute(operation.pk, worker="test-worker", task_id="t-2")

    operation.refresh_from_db()
    assert operation.state == State.FAILED
    assert "outside the bounds" in operation.error
    assert "nothing was sent" in operation.error
    target = catalog.target
    deployment = KubeDeployment(
        target.cluster.connection(), target.namespace, target.deployment, target.container
    )
    assert deployment.read().desired_replicas == 2
