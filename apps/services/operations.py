"""The runbooks' kubectl steps as operation kinds: roll out an image, roll back, restart,
scale, block traffic, set environment flags, and read logs. Each is followed to its end and
verified; a cluster's refusal ends the operation with the cluster's words."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn

from django.utils import timezone

from apps.operations.models import Operation
from apps.operations.progress import OperationFailed, Reporter
from apps.operations.registry import OperationKind, Target, TargetNotFound, register
from apps.services.cluster import ClusterError, DeploymentState, KubeDeployment
from apps.services.gate import operation_gate
from apps.services.models import DeploymentTarget
from apps.services.observe import deployment_of, remember
from apps.services.operation_forms import (
    FlagsForm,
    LogsForm,
    RollbackForm,
    RolloutForm,
    ScaleForm,
    parse_flag_lines,
)
from apps.services.rollouts import follow, load_target, verify_ready

Handler = Callable[[Operation, Reporter], None]


def resolve_target(target_id: str) -> Target:
    target = (
        DeploymentTarget.objects.select_related("service", "environment")
        .filter(pk=int(target_id))
        .first()
        if target_id.isdigit()
        else None
    )
    if target is None:
        raise TargetNotFound(f"There is no deployment target {target_id!r}.")
    return target.as_operation_target()


def cluster_failures_fail(handler: Handler) -> Handler:
    """A cluster that refuses or cannot be reached ends the operation as failed, with the
    cluster's words, not as an error with a traceback."""

    @wraps(handler)
    def wrapper(operation: Operation, reporter: Reporter) -> None:
        try:
            handler(operation, reporter)
        except ClusterError as exc:
            raise OperationFailed(exc.message) from None

    return wrapper


def _opened(operation: Operation, reporter: Reporter) -> tuple[DeploymentTarget, KubeDeployment]:
    target = load_target(operation)
    reporter.step(5, f"Reading deployment {target.deployment} in {target.namespace}")
    return target, deployment_of(target)


def _healthy_checks(operation: Operation) -> int:
    return int(operation.params.get("healthy_checks") or 3)


def _see_through(
    operation: Operation,
    reporter: Reporter,
    target: DeploymentTarget,
    deployment: KubeDeployment,
    *,
    deadline_seconds: int,
    start: int,
    checks: int = 0,
) -> DeploymentState:
    """Follow a change to its end, then (``checks`` > 0) the readiness URL must answer healthy
    that many times in a row. What the cluster says is kept on the target either way; a change
    that did not work raises OperationFailed saying why."""
    end = 75 if checks else 95
    status = follow(deployment, reporter, start=start, end=end, deadline_seconds=deadline_seconds)
    problem = status.message if status.failed else ""
    if not problem and checks:
        reporter.step(80, "Checking readiness")
        problem = verify_ready(target, reporter, checks)
    state = deployment.read()
    remember(target, state, operation)
    if problem:
        raise OperationFailed(problem)
    return state


@cluster_failures_fail
def roll_out(operation: Operation, reporter: Reporter) -> None:
    target, deployment = _opened(operation, reporter)
    image = str(operation.params["image"])
    before = deployment.read()
    reporter.log(
        f"Now running {before.image} (revision {before.revision}, "
        f"{before.ready_replicas}/{before.desired_replicas} ready)."
    )
    if before.image == image:
        remember(target, before)
        reporter.step(100, f"{target.deployment} already runs {image}: nothing to roll out.")
        return
    reporter.step(10, f"Setting the image of {target.container} to {image}")
    started = deployment.set_image(
        image, change_cause=f"OpsPortal #{operation.pk}: set image {image}"
    )
    try:
        state = _see_through(
            operation,
            reporter,
            target,
            deployment,
            deadline_seconds=started.progress_deadline_seconds,
            start=15,
            checks=_healthy_checks(operation),
        )
    except OperationFailed as failure:
        if not operation.params.get("auto_rollback"):
            raise OperationFailed(f"{failure} The deployment was left as it is.") from None
        _roll_back_after(str(failure), operation, reporter, target, deployment, before.revision)
    reporter.step(
        100,
        f"Rolled out {image}: revision {state.revision}, "
        f"{state.ready_replicas}/{state.desired_replicas} ready.",
    )


def _roll_back_after(
    problem: str,
    operation: Operation,
    reporter: Reporter,
    target: DeploymentTarget,
    deployment: KubeDeployment,
    revision: int,
) -> NoReturn:
    """The automatic rollback of a failed rollout; always ends the operation as failed."""
    reporter.log(f"{problem} Rolling back automatically to revision {revision}.", "warning")
    deployment.undo(to_revision=revision)
    deadline = deployment.read().progress_deadline_seconds
    try:
        state = _see_through(
            operation, reporter, target, deployment, deadline_seconds=deadline, start=85
        )
    except OperationFailed as failure:
        raise OperationFailed(f"{problem} The automatic rollback failed too: {failure}") from None
    raise OperationFailed(
        f"{problem} Rolled back automatically: {state.image} runs again "
        f"(now revision {state.revision})."
    )


@cluster_failures_fail
def roll_back(operation: Operation, reporter: Reporter) -> None:
    target, deployment = _opened(operation, reporter)
    before = deployment.read()
    wanted = operation.params.get("to_revision")
    reporter.step(
        10,
        f"Rolling back from revision {before.revision} ({before.image}) to "
        + (f"revision {wanted}" if wanted else "the previous revision"),
    )
    restored = deployment.undo(to_revision=int(wanted) if wanted else None)
    reporter.log(f"Restoring revision {restored.number}: {restored.image}")
    state = _see_through(
        operation,
        reporter,
        target,
        deployment,
        deadline_seconds=before.progress_deadline_seconds,
        start=15,
        checks=_healthy_checks(operation),
    )
    reporter.step(
        100,
        f"Rolled back to {state.image} (revision {restored.number}, now revision "
        f"{state.revision}).",
    )


@cluster_failures_fail
def restart(operation: Operation, reporter: Reporter) -> None:
    target, deployment = _opened(operation, reporter)
    reporter.step(10, "Restarting every pod, one by one")
    started = deployment.restart(timezone.now())
    state = _see_through(
        operation,
        reporter,
        target,
        deployment,
        deadline_seconds=started.progress_deadline_seconds,
        start=15,
    )
    reporter.step(100, f"Restarted: {state.ready_replicas}/{state.desired_replicas} ready.")


def _scale_to(
    operation: Operation, reporter: Reporter, replicas: int, *, check_bounds: bool
) -> None:
    target, deployment = _opened(operation, reporter)
    if check_bounds and not target.min_replicas <= replicas <= target.max_replicas:
        # The bounds may have changed since the request: checked again before sending.
        raise OperationFailed(
            f"{replicas} replicas is outside the bounds of {target} "
            f"({target.min_replicas}–{target.max_replicas}); nothing was sent."
        )
    before = deployment.read()
    reporter.step(10, f"Scaling from {before.desired_replicas} to {replicas} replicas")
    deployment.scale(replicas)
    state = _see_through(
        operation,
        reporter,
        target,
        deployment,
        deadline_seconds=before.progress_deadline_seconds,
        start=15,
    )
    reporter.step(100, f"Scaled to {replicas}: {state.ready_replicas} ready.")


@cluster_failures_fail
def scale(operation: Operation, reporter: Reporter) -> None:
    _scale_to(operation, reporter, int(operation.params["replicas"]), check_bounds=True)


@cluster_failures_fail
def block_traffic(operation: Operation, reporter: Reporter) -> None:
    _scale_to(operation, reporter, 0, check_bounds=False)


@cluster_failures_fail
def set_flags(operation: Operation, reporter: Reporter) -> None:
    target, deployment = _opened(operation, reporter)
    to_set = parse_flag_lines(str(operation.params.get("set_flags") or ""))
    to_unset = str(operation.params.get("unset_flags") or "").split()
    before = deployment.read()
    changes = {name: value for name, value in to_set.items() if before.env.get(name) != value}
    removals = [name for name in to_unset if name in before.env]
    if not changes and not removals:
        remember(target, before)
        reporter.step(100, "The flags are already as asked: nothing to change.")
        return
    described = [f"{name}={value}" for name, value in changes.items()] + [
        f"{name}-" for name in removals
    ]
    reporter.step(10, f"Changing {', '.join(described)}")
    started = deployment.set_env(changes, removals)
    state = _see_through(
        operation,
        reporter,
        target,
        deployment,
        deadline_seconds=started.progress_deadline_seconds,
        start=15,
        checks=3,
    )
    reporter.step(100, f"Flags changed ({', '.join(described)}): revision {state.revision}.")


@cluster_failures_fail
def show_logs(operation: Operation, reporter: Reporter) -> None:
    target = load_target(operation)
    pod = str(operation.params.get("pod") or "") or None
    tail = int(operation.params.get("tail") or 100)
    reporter.step(10, f"Reading the last {tail} lines of {pod or 'every pod'}")
    lines = deployment_of(target).logs(pod, tail)
    for pod_name, line in lines:
        reporter.log(f"{pod_name}  {line}")
    pods = len({pod_name for pod_name, _ in lines})
    reporter.step(100, f"{len(lines)} lines from {pods} pod{'s' if pods != 1 else ''}.")


# --- How each kind describes itself on the confirmation page ------------------------------


def _deployment(target: Target) -> DeploymentTarget:
    return DeploymentTarget.objects.select_related("service", "environment").get(pk=target.id)


def _kubectl(target: Target, words: Callable[[DeploymentTarget], list[str]]) -> str:
    found = _deployment(target)
    return shlex.join(["kubectl", *words(found), "-n", found.namespace])


def _ref(found: DeploymentTarget) -> str:
    return f"deployment/{found.deployment}"


def _rollout_command(target: Target, params: dict[str, Any]) -> str:
    return " && ".join(
        [
            _kubectl(
                target,
                lambda d: ["set", "image", _ref(d), f"{d.container}={params['image']}"],
            ),
            _kubectl(target, lambda d: ["rollout", "status", _ref(d)]),
        ]
    )


def _rollback_command(target: Target, params: dict[str, Any]) -> str:
    extra = [f"--to-revision={params['to_revision']}"] if params.get("to_revision") else []
    return _kubectl(target, lambda d: ["rollout", "undo", _ref(d), *extra])


def _flags_command(target: Target, params: dict[str, Any]) -> str:
    words = [f"{name}={value}" for name, value in parse_flag_lines(params["set_flags"]).items()]
    words += [f"{name}-" for name in str(params.get("unset_flags") or "").split()]
    return _kubectl(target, lambda d: ["set", "env", _ref(d), "-c", d.container, *words])


def _logs_command(target: Target, params: dict[str, Any]) -> str:
    return _kubectl(
        target,
        lambda d: [
            "logs",
            params.get("pod") or _ref(d),
            "-c",
            d.container,
            f"--tail={params['tail']}",
        ],
    )


def _rollback_summary(target: Target, params: dict[str, Any]) -> str:
    to = (
        f"revision {params['to_revision']}"
        if params.get("to_revision")
        else "its previous revision"
    )
    return f"{target.label} goes back to {to}; pods are replaced one by one."


COMMON: dict[str, Any] = {"resolve_target": resolve_target}

register(
    OperationKind(
        name="services.rollout",
        icon="cloud-upload",
        label="Roll out an image",
        description="Sets the deployment's image, follows the rollout to its end, then checks "
        "that the readiness URL answers healthy several times in a row.",
        handler=roll_out,
        form_class=RolloutForm,
        gate=operation_gate,
        soft_time_limit=1500,
        time_limit=1560,
        summary=lambda target, params: (
            f"{target.label} will run {params['image']}; pods are replaced one by one"
            + (", and rolled back automatically if it fails." if params["auto_rollback"] else ".")
        ),
        command=_rollout_command,
        **COMMON,
    )
)
register(
    OperationKind(
        name="services.rollback",
        icon="arrow-counterclockwise",
        label="Roll back",
        description="Restores an earlier revision of the deployment, like kubectl rollout "
        "undo, and follows and verifies it like a rollout.",
        handler=roll_back,
        form_class=RollbackForm,
        soft_time_limit=1500,
        time_limit=1560,
        summary=_rollback_summary,
        command=_rollback_command,
        **COMMON,
    )
)
register(
    OperationKind(
        name="services.restart",
        icon="arrow-repeat",
        label="Rolling restart",
        description="Replaces every pod one by one with the same image and configuration.",
        handler=restart,
        soft_time_limit=1500,
        time_limit=1560,
        summary=lambda target, params: f"Every pod of {target.label} is replaced, one by one.",
        command=lambda target, params: _kubectl(target, lambda d: ["rollout", "restart", _ref(d)]),
        **COMMON,
    )
)
register(
    OperationKind(
        name="services.scale",
        icon="arrows-expand",
        label="Scale",
        description="Changes the number of replicas, within the bounds set for the target.",
        handler=scale,
        form_class=ScaleForm,
        soft_time_limit=900,
        time_limit=960,
        summary=lambda target, params: f"{target.label} will run {params['replicas']} replicas.",
        command=lambda target, params: _kubectl(
            target, lambda d: ["scale", _ref(d), f"--replicas={params['replicas']}"]
        ),
        **COMMON,
    )
)
register(
    OperationKind(
        name="services.block_traffic",
        icon="sign-stop",
        label="Block traffic (scale to 0)",
        description="Emergency: stops every pod, so the service answers nobody (for a "
        "security incident). Scale it up again to restore service.",
        handler=block_traffic,
        destructive=True,
        soft_time_limit=600,
        time_limit=660,
        summary=lambda target, params: (
            f"Every pod of {target.label} stops: it answers no request until scaled up again."
        ),
        command=lambda target, params: _kubectl(
            target, lambda d: ["scale", _ref(d), "--replicas=0"]
        ),
        **COMMON,
    )
)
register(
    OperationKind(
        name="services.set_flags",
        icon="toggles",
        label="Set environment flags",
        description="Sets or removes environment variables on the allow-list (maintenance "
        "mode, feature flags); this is a rollout, followed and verified like one.",
        handler=set_flags,
        form_class=FlagsForm,
        gate=operation_gate,
        soft_time_limit=1500,
        time_limit=1560,
        summary=lambda target, params: (
            f"The pods of {target.label} are replaced with these environment changes."
        ),
        command=_flags_command,
        **COMMON,
    )
)
register(
    OperationKind(
        name="services.logs",
        icon="file-text",
        label="Show logs",
        description="Reads the last lines of a pod, or of every pod of the deployment.",
        handler=show_logs,
        form_class=LogsForm,
        exclusive=False,
        soft_time_limit=60,
        time_limit=90,
        summary=lambda target, params: (
            f"The last {params['tail']} lines of {params.get('pod') or 'every pod'} of "
            f"{target.label} are copied into this operation's log."
        ),
        command=_logs_command,
        **COMMON,
    )
)
