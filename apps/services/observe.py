"""What the clusters say about the deployments, kept on the targets so that the dashboard
reads one table: refreshed by a beat task, and by every operation that changes a deployment."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from apps.operations.models import Operation
from apps.services.cluster import ClusterError, DeploymentState, KubeDeployment
from apps.services.models import DeploymentTarget

logger = logging.getLogger(__name__)

OBSERVED_FIELDS = [
    "observed_image",
    "observed_revision",
    "desired_replicas",
    "ready_replicas",
    "observed_at",
    "observed_error",
]


def deployment_of(target: DeploymentTarget) -> KubeDeployment:
    return KubeDeployment(
        target.cluster.connection(), target.namespace, target.deployment, target.container
    )


def _apply(target: DeploymentTarget, state: DeploymentState, now: datetime) -> None:
    target.observed_image = state.image[:500]
    target.observed_revision = state.revision
    target.desired_replicas = state.desired_replicas
    target.ready_replicas = state.ready_replicas
    target.observed_at = now
    target.observed_error = ""


def remember(
    target: DeploymentTarget, state: DeploymentState, operation: Operation | None = None
) -> None:
    """Keep what the cluster just said on the target, and which operation changed it."""
    _apply(target, state, timezone.now())
    fields = {name: getattr(target, name) for name in OBSERVED_FIELDS}
    if operation is not None:
        fields["last_change"] = operation
    DeploymentTarget.objects.filter(pk=target.pk).update(**fields)


def _observe(target: DeploymentTarget) -> DeploymentState | str:
    try:
        with deployment_of(target) as deployment:
            return deployment.read()
    except ClusterError as exc:
        return exc.message
    except Exception as exc:  # one broken cluster must not stop the others
        logger.exception("reading %s failed", target)
        return f"{type(exc).__name__}: {exc}"


def refresh_all() -> int:
    """Read every target's deployment (bounded concurrency) and store the answers in one
    bulk update. Returns how many answered."""
    targets = list(DeploymentTarget.objects.select_related("cluster"))
    with ThreadPoolExecutor(max_workers=settings.HEALTH_PROBE_CONCURRENCY) as pool:
        answers = list(pool.map(_observe, targets))
    now = timezone.now()
    answered = 0
    for target, answer in zip(targets, answers, strict=True):
        if isinstance(answer, str):
            # Keep the last known state, say why it is not fresh.
            target.observed_error = answer[:500]
        else:
            _apply(target, answer, now)
            answered += 1
    DeploymentTarget.objects.bulk_update(targets, OBSERVED_FIELDS, batch_size=500)
    return answered
