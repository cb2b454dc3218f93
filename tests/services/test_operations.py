"""The services operations end to end: requested through the operations engine, carried out
by a real Celery worker, against the Kubernetes API emulator over HTTP."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.operations import actions
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.services.cluster import KubeDeployment
from apps.services.models import DeploymentTarget
from tests.conftest import client_for
from tests.services.conftest import IMAGE_V1, NAMESPACE, Catalog, make_cluster
from tests.support.kube_emulator import KubeEmulator
from tests.support.waiting import wait_for

pytestmark = pytest.mark.usefixtures("celery_worker")

IMAGE_V2 = "registry.example.com/shop/api:2.0.0"
IMAGE_V3 = "registry.example.com/shop/api:3.0.0"
IMAGE_BROKEN = "registry.example.com/shop/api:2.1.0-fail"


def run(
    actor: Any, kind: str, target: DeploymentTarget, reason: str = "test", **params: Any
) -> Operation:
    """Start an operation as ``actor`` and wait for it to end on the worker."""
    operation = actions.do_start_operation(actor, kind, str(target.pk), params, reason)
    wait_for(
        lambda: Operation.objects.get(pk=operation.pk).is_final,
        timeout=60,
        what=f"{kind} to end",
    )
    operation.refresh_from_db()
    return operation


def deployment(target: DeploymentTarget) -> KubeDeployment:
    return KubeDeployment(target.cluster.connection(), target.namespace, target.deployment, "api")


def outcomes(operation: Operation) -> list[tuple[str, str]]:
    return list(
        AuditEvent.objects.filter(operation_id=operation.pk)
        .order_by("seq")
        .values_list("action", "outcome")
    )


def rollout(
    actor: Any, target: DeploymentTarget, image: str, auto_rollback: bool = True
) -> Operation:
    return run(
        actor,
        "services.rollout",
        target,
        image=image,
        auto_rollback=auto_rollback,
        healthy_checks=2,
    )


def test_it_rolls_out_a_good_image_and_verifies_it(operator: Any, catalog: Catalog) -> None:
    operation = rollout(operator, catalog.target, IMAGE_V2)

    assert operation.state == State.SUCCEEDED, operation.error
    state = deployment(catalog.target).read()
    assert state.image == IMAGE_V2
    assert state.revision == 2
    assert state.ready_replicas == 2
    log = list(operation.log_lines.values_list("message", flat=True))
    assert any("successfully rolled out" in line for line in log)
    assert any(line.startswith("Readiness 2/2") for line in log)
    target = DeploymentTarget.objects.get(pk=catalog.target.pk)
    assert target.observed_image == IMAGE_V2
    assert target.observed_revision == 2
    assert target.last_change_id == operation.pk
    assert outcomes(operation) == [
        ("operation.queued", "succeeded"),
        ("operation.succeeded", "succeeded"),
    ]


def test_it_rolls_back_automatically_when_the_rollout_stalls(
    operator: Any, catalog: Catalog
) -> None:
    operation = rollout(operator, catalog.target, IMAGE_BROKEN)

    assert operation.state == State.FAILED
    assert "exceeded its progress deadline" in operation.error
    assert "Rolled back automatically" in operation.error
    assert IMAGE_V1 in operation.error
    state = deployment(catalog.target).read()
    assert state.image == IMAGE_V1
    assert outcomes(operation)[-1] == ("operation.failed", "failed")


def test_without_automatic_rollback_a_stalled_rollout_is_left_for_people(
    operator: Any, catalog: Catalog
) -> None:
    operation = rollout(operator, catalog.target, IMAGE_BROKEN, auto_rollback=False)

    assert operation.state == State.FAILED
    assert "left as it is" in operation.error
    assert deployment(catalog.target).read().image == IMAGE_BROKEN


def test_it_rolls_back_to_a_chosen_revision(operator: Any, catalog: Catalog) -> None:
    assert rollout(operator, catalog.target, IMAGE_V2).state == State.SUCCEEDED
    assert rollout(operator, catalog.target, IMAGE_V3).state == State.SUCCEEDED

    operation = run(operator, "services.rollback", catalog.target, to_revision=1, healthy_checks=1)

    assert operation.state == State.SUCCEEDED, operation.error
    state = deployment(catalog.target).read()
    assert state.image == IMAGE_V1
    # As on a real cluster, revision 1 is reused and becomes the newest one.
    assert state.revision == 4
    assert [revision.number for revision in deployment(catalog.target).revisions()] == [4, 3, 2]


def test_it_rolls_back_to_the_previous_revision(operator: Any, catalog: Catalog) -> None:
    assert rollout(operator, catalog.target, IMAGE_V2).state == State.SUCCEEDED

    operation = run(operator, "services.rollback", catalog.target, healthy_checks=1)

    assert operation.state == State.SUCCEEDED, operation.error
    assert deployment(catalog.target).read().image == IMAGE_V1


def test_rolling_back_to_a_revision_that_does_not_exist_fails_clearly(
    operator: Any, catalog: Catalog
) -> None:
    operation = run(operator, "services.rollback", catalog.target, to_revision=7, healthy_checks=1)

    assert operation.state == State.FAILED
    assert "Revision 7 was not found" in operation.error
    assert deployment(catalog.target).read().image == IMAGE_V1


def test_a_rolling_restart_makes_a_new_revision_and_waits_for_it(
    operator: Any, catalog: Catalog
) -> None:
    operation = run(operator, "services.restart", catalog.target)

    assert operation.state == State.SUCCEEDED, operation.error
    state = deployment(catalog.target).read()
    assert state.revision == 2
    assert state.image == IMAGE_V1
    assert state.ready_replicas == 2


def test_it_scales_within_the_bounds(operator: Any, catalog: Catalog) -> None:
    operation = run(operator, "services.scale", catalog.target, replicas=4)

    assert operation.state == State.SUCCEEDED, operation.error
    state = deployment(catalog.target).read()
    assert (state.desired_replicas, state.ready_replicas) == (4, 4)
    assert state.revision == 1  # scaling is no new revision


def test_scaling_outside_the_bounds_is_refused_before_anything_is_sent(
    operator: Any, catalog: Catalog
) -> None:
    with pytest.raises(actions.InvalidParameters, match="between 1 and 4 replicas"):
        actions.do_start_operation(
            operator, "services.scale", str(catalog.target.pk), {"replicas": 9}, "more"
        )

    assert not Operation.objects.exists()
    assert deployment(catalog.target).read().desired_replicas == 2
    refusal = AuditEvent.objects.get(action="operation.invalid")
    assert refusal.outcome == "failed"
    assert "between 1 and 4 replicas" in refusal.reason


def test_scaling_production_to_zero_needs_the_emergency_action(
    operator: Any, admin: Any, catalog: Catalog
) -> None:
    with pytest.raises(actions.InvalidParameters, match="Block traffic"):
        actions.do_start_operation(
            operator, "services.scale", str(catalog.production_target.pk), {"replicas": 0}, "x"
        )
    with pytest.raises(actions.OperationRefused, match="does not allow"):
        actions.do_start_operation(
            operator, "services.block_traffic", str(catalog.production_target.pk), {}, "breach"
        )
    with pytest.raises(actions.OperationRefused, match="reason is required"):
        actions.do_start_operation(
            admin, "services.block_traffic", str(catalog.production_target.pk), {}, ""
        )

    operation = run(admin, "services.block_traffic", catalog.production_target, "token leak")

    assert operation.state == State.SUCCEEDED, operation.error
    state = deployment(catalog.production_target).read()
    assert (state.desired_replicas, state.ready_replicas) == (0, 0)
    assert deployment(catalog.production_target).pods() == []


def test_it_sets_and_unsets_allowed_flags(operator: Any, catalog: Catalog) -> None:
    operation = run(
        operator,
        "services.set_flags",
        catalog.target,
        set_flags="MAINTENANCE_MESSAGE=Back at 04:00\nFEATURE_NEW_CHECKOUT=on",
        unset_flags="MAINTENANCE_MODE",
    )

    assert operation.state == State.SUCCEEDED, operation.error
    env = deployment(catalog.target).read().env
    assert env == {"MAINTENANCE_MESSAGE": "Back at 04:00", "FEATURE_NEW_CHECKOUT": "on"}


def test_flags_off_the_allow_list_are_refused(operator: Any, catalog: Catalog) -> None:
    with pytest.raises(actions.InvalidParameters, match="not on this service's allow-list"):
        actions.do_start_operation(
            operator,
            "services.set_flags",
            str(catalog.target.pk),
            {"set_flags": "DATABASE_URL=postgres://evil", "unset_flags": ""},
            "x",
        )
    assert not Operation.objects.exists()


def test_logs_are_read_beside_a_running_change(operator: Any, catalog: Catalog) -> None:
    # A stalled rollout holds the target; reading logs must still be possible.
    stalled = actions.do_start_operation(
        operator,
        "services.rollout",
        str(catalog.target.pk),
        {"image": IMAGE_BROKEN, "auto_rollback": False, "healthy_checks": 1},
        "will stall",
    )
    logs = run(operator, "services.logs", catalog.target, tail=5)

    assert logs.state == State.SUCCEEDED, logs.error
    # The stalled rollout keeps replacing pods while the logs are read, so which pods answer
    # is not fixed (nor how old, so how long, their logs are). Every pod's line is prefixed
    # with a pod of the deployment, no pod gives more than the tail asked for, and the
    # summary counts exactly those lines.
    prefix = f"{deployment(catalog.target).name}-"
    messages = list(logs.log_lines.values_list("message", flat=True))
    per_pod = Counter(
        message.split("  ", 1)[0] for message in messages if message.startswith(prefix)
    )
    assert per_pod and all(1 <= count <= 5 for count in per_pod.values()), messages
    lines = sum(per_pod.values())
    pods = f"{len(per_pod)} pod{'s' if len(per_pod) != 1 else ''}"
    assert logs.status_text == f"{lines} lines from {pods}.", messages
    Operation.objects.filter(pk=stalled.pk).update(cancel_requested_at=logs.finished_at)
    wait_for(lambda: Operation.objects.get(pk=stalled.pk).is_final, what="the cancel")


def test_only_one_change_at_a_time_per_target(operator: Any, catalog: Catalog) -> None:
    first = actions.do_start_operation(
        operator,
        "services.rollout",
        str(catalog.target.pk),
        {"image": IMAGE_V2, "auto_rollback": True, "healthy_checks": 1},
        "first",
    )
    with pytest.raises(actions.OperationRefused, match=f"Operation #{first.pk}"):
        actions.do_start_operation(operator, "services.restart", str(catalog.target.pk), {}, "x")
    wait_for(lambda: Operation.objects.get(pk=first.pk).is_final, timeout=60, what="the rollout")


# --- Faults: each ends failed, with a clear message and an audit record --------------------


def _assert_failed_clearly(operator: Any, operation: Operation, words: str) -> None:
    assert operation.state == State.FAILED
    assert words in operation.error
    assert "Traceback" not in operation.error
    assert outcomes(operation)[-1] == ("operation.failed", "failed")
    page = client_for(operator).get(operation.get_absolute_url())
    assert page.status_code == 200
    assert words in page.content.decode()


def test_an_unreachable_cluster_fails_clearly(
    operator: Any, catalog: Catalog, kube: KubeEmulator
) -> None:
    unreachable = make_cluster("gone", kube.kubeconfig().replace(kube.url, "http://127.0.0.1:9"))
    DeploymentTarget.objects.filter(pk=catalog.target.pk).update(cluster=unreachable)

    operation = run(operator, "services.restart", catalog.target)

    _assert_failed_clearly(operator, operation, "Cannot reach the cluster")


def test_a_forbidden_request_fails_with_the_clusters_words(
    operator: Any, catalog: Catalog, kube: KubeEmulator
) -> None:
    forbidden = make_cluster("read-only", kube.kubeconfig(token=kube.forbidden_token))
    DeploymentTarget.objects.filter(pk=catalog.target.pk).update(cluster=forbidden)

    operation = run(operator, "services.rollout", catalog.target, image=IMAGE_V2, healthy_checks=1)

    _assert_failed_clearly(operator, operation, "forbidden")
    assert "HTTP 403" in operation.error
    assert deployment(catalog.production_target).read().image == IMAGE_V1


def test_a_deployment_that_does_not_exist_fails_clearly(operator: Any, catalog: Catalog) -> None:
    DeploymentTarget.objects.filter(pk=catalog.target.pk).update(deployment="no-such-api")

    operation = run(operator, "services.scale", catalog.target, replicas=3)

    _assert_failed_clearly(operator, operation, "not found")
    assert NAMESPACE in operation.error
