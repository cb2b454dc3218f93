"""Badges on the dashboard's tiles: a freeze now, an open incident or a running maintenance
window once those apps are installed (they add a provider with ``register_provider``).

A provider answers for all the tiles of a page at once, in a fixed number of queries, so the
dashboard stays as fast with 600 tiles as with 6."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from apps.services.models import DeployFreeze, DeploymentTarget


@dataclass(frozen=True)
class Badge:
    label: str
    icon: str  # a Bootstrap icon name
    tone: str  # a Bootstrap colour: danger, warning, info
    title: str
    url: str = ""
    # A badge that also colours its tile (a metric past its threshold): a Health value.
    health: str = ""


Provider = Callable[[Sequence[DeploymentTarget], datetime], dict[int, list[Badge]]]

_PROVIDERS: list[Provider] = []


def register_provider(provider: Provider) -> Provider:
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)
    return provider


def for_targets(targets: Sequence[DeploymentTarget], now: datetime) -> dict[int, list[Badge]]:
    found: dict[int, list[Badge]] = defaultdict(list)
    for provider in _PROVIDERS:
        for target_id, badges in provider(targets, now).items():
            found[target_id].extend(badges)
    return found


@register_provider
def freezes(targets: Sequence[DeploymentTarget], now: datetime) -> dict[int, list[Badge]]:
    in_force = list(DeployFreeze.objects.in_force(now))
    found: dict[int, list[Badge]] = defaultdict(list)
    if not in_force:
        return found
    for target in targets:
        for freeze in in_force:
            if freeze.service_id in (None, target.service_id) and freeze.environment_id in (
                None,
                target.environment_id,
            ):
                found[target.pk].append(
                    Badge("Frozen", "snow", "info", f"Changes frozen: {freeze.reason}")
                )
                break
    return found
