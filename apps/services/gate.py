"""The deploy gate: the one function that says whether a change may start on a target now,
and why not.

Rules are plain functions of (target, now, origin) returning sentences; an empty list means the
rule lets the change through. ``origin`` names where the change was started from
(``"incident:12"``, see apps/operations/origins.py): an incident's own mitigations pass the
rule its incident adds. This module knows the manual freezes; the incidents and maintenance
apps add their rules with ``register_rule`` when they are installed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.utils import timezone
from django.utils.formats import date_format

from apps.operations.registry import Target
from apps.services.models import DeployFreeze, DeploymentTarget

Rule = Callable[[DeploymentTarget, datetime, str], list[str]]

_RULES: list[Rule] = []


def register_rule(rule: Rule) -> Rule:
    if rule not in _RULES:
        _RULES.append(rule)
    return rule


def blockers(target: DeploymentTarget, now: datetime | None = None, origin: str = "") -> list[str]:
    """Every reason a change started from ``origin`` may not start on ``target`` now; empty
    when it may."""
    now = now or timezone.now()
    return [sentence for rule in _RULES for sentence in rule(target, now, origin)]


def operation_gate(target: Target, origin: str) -> list[str]:
    """The gate as the operations registry calls it, with the operation's target."""
    deployment_target = (
        DeploymentTarget.objects.select_related("service", "environment")
        .filter(pk=target.id)
        .first()
    )
    if deployment_target is None:
        return []  # the kind's own lookup reports the missing target
    return blockers(deployment_target, origin=origin)


def _when(moment: datetime) -> str:
    return date_format(timezone.localtime(moment), "j M Y H:i T")


@register_rule
def manual_freezes(target: DeploymentTarget, now: datetime, origin: str) -> list[str]:
    freezes = DeployFreeze.objects.in_force(now).covering(target).select_related("created_by")
    return [
        f"Changes to {freeze.scope_label} are frozen until {_when(freeze.expires_at)} "
        f"by {freeze.created_by.get_username()}: {freeze.reason}"
        for freeze in freezes
    ]
