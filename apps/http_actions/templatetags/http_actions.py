from __future__ import annotations

from typing import Any

from django import template

from apps.http_actions.models import HttpAction
from apps.operations.registry import get_kind

register = template.Library()


@register.simple_tag
def http_actions_of(service: Any, user: Any) -> list[dict[str, Any]]:
    """The service's custom HTTP actions, each with whether ``user`` may run it: one query."""
    return [
        {"action": action, "may_run": user.has_perm(get_kind(action.kind_name).permission)}
        for action in HttpAction.objects.for_page().filter(service=service)
    ]
