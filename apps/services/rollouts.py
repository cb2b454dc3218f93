"""What the services handlers share: the target an operation acts on, following a rollout
to its end the way `kubectl rollout status` does, and checking the readiness URL after it."""

from __future__ import annotations

import time

from apps.operations.models import Operation
from apps.operations.progress import OperationFailed, Reporter
from apps.services.cluster import KubeDeployment, RolloutStatus
from apps.services.models import DeploymentTarget
from apps.services.probes import probe_url

POLL_SECONDS = 1.0
# Beyond the deployment's own progress deadline, how long to wait for the cluster to report
# it: a controller that never updates the condition must not hold the operation forever.
DEADLINE_GRACE_SECONDS = 60
HEALTH_CHECK_INTERVAL_SECONDS = 2.0


def load_target(operation: Operation) -> DeploymentTarget:
    target = (
        DeploymentTarget.objects.select_related("service", "environment", "cluster")
        .filter(pk=operation.target_id)
        .first()
    )
    if target is None:
        raise OperationFailed(f"{operation.target_label} is no longer registered.")
    return target


def follow(
    deployment: KubeDeployment,
    reporter: Reporter,
    *,
    start: int,
    end: int,
    deadline_seconds: int,
) -> RolloutStatus:
    """Poll the rollout until it is done or failed, reporting kubectl's words and moving the
    progress bar from ``start`` to ``end`` as replicas are updated and become available."""
    give_up = time.monotonic() + deadline_seconds + DEADLINE_GRACE_SECONDS
    last_message = ""
    while True:
        status = deployment.rollout_status()
        if status.message != last_message:
            desired = max(status.desired, 1)
            share = (min(status.updated, desired) + min(status.available, desired)) / (2 * desired)
            progress = start + int((end - start) * (1 if status.done else share))
            reporter.step(progress, status.message)
            last_message = status.message
        if status.done or status.failed:
            return status
        if time.monotonic() > give_up:
            raise OperationFailed(
                f"The cluster reported no outcome within {deadline_seconds} s "
                f"(+{DEADLINE_GRACE_SECONDS} s): {status.message}"
            )
        reporter.wait(POLL_SECONDS)


def verify_ready(target: DeploymentTarget, reporter: Reporter, healthy_in_a_row: int) -> str:
    """The readiness URL (else the health URL) must answer healthy ``healthy_in_a_row`` times
    in a row; returns "" when it did, else why not. No URL: nothing to check, said in the log."""
    url = target.readiness_url or target.health_url
    if not url:
        reporter.log("No readiness or health URL registered: the rollout is not verified.")
        return ""
    streak = 0
    attempts = healthy_in_a_row * 3
    for attempt in range(1, attempts + 1):
        result = probe_url(url)
        if result.ok:
            streak += 1
            reporter.log(f"Readiness {streak}/{healthy_in_a_row}: {result.detail}")
            if streak >= healthy_in_a_row:
                return ""
        else:
            streak = 0
            reporter.log(f"Readiness check {attempt}: {result.detail}", "warning")
        reporter.wait(HEALTH_CHECK_INTERVAL_SECONDS)
    return (
        f"{url} did not answer healthy {healthy_in_a_row} times in a row within {attempts} checks."
    )
