"""Custom HTTP actions as operation kinds: one for the harmless ones and one for the
destructive ones (DELETE, or flagged by the admin), which need an admin, a reason and the
password again like every destructive kind. The target is the action itself."""

from __future__ import annotations

from typing import Any

from apps.common.crypto import UnreadableSecret
from apps.http_actions.calls import CallFailed, send
from apps.http_actions.forms import ActionParamsForm
from apps.http_actions.models import DESTRUCTIVE_KIND, KIND, TOKEN_SHOWN, HttpAction
from apps.http_actions.url_templates import UnsafeValue
from apps.operations.models import Operation
from apps.operations.progress import OperationFailed, Reporter
from apps.operations.registry import OperationKind, Target, TargetNotFound, register
from apps.services import gate
from apps.services.models import DeploymentTarget

MAX_LOGGED_BODY = 2000


def _action(target_id: str) -> HttpAction | None:
    if not target_id.isdigit():
        return None
    return HttpAction.objects.for_page().filter(pk=int(target_id)).first()


def _resolver(destructive: bool) -> Any:
    def resolve_target(target_id: str) -> Target:
        action = _action(target_id)
        if action is None:
            raise TargetNotFound(f"There is no custom HTTP action {target_id!r}.")
        if action.is_destructive != destructive:
            raise TargetNotFound(f"{action} runs as {action.kind_name}, not as this kind.")
        return action.as_operation_target()

    return resolve_target


def action_gate(target: Target, origin: str) -> list[str]:
    """The deploy gate of the service's target in the action's environment, when it has one:
    a freeze on the service holds its admin API calls too."""
    action = _action(target.id)
    if action is None:
        return []
    deployment = (
        DeploymentTarget.objects.select_related("service", "environment")
        .filter(service=action.service_id, environment=action.environment_id)
        .first()
    )
    return gate.blockers(deployment, origin=origin) if deployment is not None else []


def redacted(text: str, secret: str) -> str:
    return text.replace(secret, TOKEN_SHOWN) if secret else text


def call_action(operation: Operation, reporter: Reporter) -> None:
    action = _action(operation.target_id)
    if action is None:
        raise OperationFailed("The action was removed since it was requested; nothing was sent.")
    if action.kind_name != operation.kind:
        raise OperationFailed(
            "The action became "
            + ("destructive" if action.is_destructive else "harmless")
            + " since it was requested; request it again. Nothing was sent."
        )
    try:
        url = action.url_for(operation.params)
    except UnsafeValue as exc:
        raise OperationFailed(f"{exc} Nothing was sent.") from None
    try:
        token = action.token()
    except UnreadableSecret as exc:
        raise OperationFailed(f"The bearer token: {exc} Nothing was sent.") from None
    headers = {**action.headers}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    reporter.step(10, f"{action.method} {url} (timeout {action.timeout_seconds} s)")
    try:
        answer = send(action.method, url, headers, action.timeout_seconds)
    except CallFailed as exc:
        raise OperationFailed(redacted(str(exc), token)) from None
    reporter.log(f"HTTP {answer.status} {answer.reason} in {answer.elapsed_ms} ms")
    body = redacted(answer.body, token)
    if body.strip():
        shown = body[:MAX_LOGGED_BODY]
        cut = answer.truncated or len(body) > MAX_LOGGED_BODY
        reporter.log("Response body: " + shown + (" … (truncated)" if cut else ""))
    expected = ", ".join(str(status) for status in action.expected_statuses)
    if answer.status not in action.expected_statuses:
        raise OperationFailed(
            f"Unexpected HTTP {answer.status} {answer.reason} from {action.method} {url} "
            f"(expected {expected})."
        )
    reporter.step(100, f"HTTP {answer.status}: {action.name} done.")


def _summary(target: Target, params: dict[str, Any]) -> str:
    action = _action(target.id)
    if action is None:
        return ""
    try:
        url = action.url_for(params)
    except UnsafeValue:
        url = action.url_template
    token = " with its stored bearer token" if action.has_token else ""
    expected = ", ".join(str(status) for status in action.expected_statuses)
    return (
        f"{action.name}: {action.method} {url} is sent to {action.service.name} in "
        f"{action.environment.name}{token}; HTTP {expected} counts as done."
    )


def _command(target: Target, params: dict[str, Any]) -> str:
    action = _action(target.id)
    return action.curl_command(params) if action is not None else ""


COMMON: dict[str, Any] = {
    "handler": call_action,
    "form_class": ActionParamsForm,
    "gate": action_gate,
    "icon": "send",
    # The longest timeout an admin can set is 120 s; the rest is the engine's margin.
    "soft_time_limit": 180,
    "time_limit": 240,
    "summary": _summary,
    "command": _command,
}

register(
    OperationKind(
        name=KIND,
        label="Call the admin API",
        description="Calls the service's own admin API as an admin defined it, and checks "
        "the answer's status.",
        resolve_target=_resolver(destructive=False),
        **COMMON,
    )
)
register(
    OperationKind(
        name=DESTRUCTIVE_KIND,
        label="Call the admin API (destructive)",
        description="Calls the service's own admin API with a destructive request (DELETE, "
        "or flagged so by an admin): admins only, with a reason.",
        resolve_target=_resolver(destructive=True),
        destructive=True,
        **COMMON,
    )
)
