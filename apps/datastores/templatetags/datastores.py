from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from apps.backups.models import DatabaseTarget
from apps.datastores.models import RedisTarget

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """A duration as people read it at a glance: 42 s, 6 min 3 s, 2 h 5 min."""
    if value is None:
        return "—"
    seconds = max(0, int(value.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


@register.filter
def seconds(value: int) -> str:
    return duration(timedelta(seconds=int(value)))


@register.simple_tag
def datastores_of(service: Any) -> dict[str, list[Any]]:
    """The PostgreSQL and Redis targets linked to ``service``, for the panels of its page:
    two queries whatever their number (the figures themselves load with each panel)."""
    return {
        "databases": list(DatabaseTarget.objects.filter(service=service).order_by("name")),
        "redis_targets": list(RedisTarget.objects.filter(service=service).order_by("name")),
    }
