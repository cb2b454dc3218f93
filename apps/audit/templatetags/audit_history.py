"""``{% object_history type id %}``: the History section of any object's page, from its
audit target type and id alone, so that a page includes it in one line
(templates/audit/_object_history.html) without its view knowing about the audit trail."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.http import urlencode

from apps.audit.history import recent_history

register = template.Library()

# The section's id: "history" is taken on some pages (a backup target's list of backups).
ANCHOR = "audit-history"


@register.inclusion_tag("audit/_history.html", takes_context=True)
def object_history(context: template.Context, target_type: str, target_id: Any) -> dict[str, Any]:
    """The newest events about the object (one query) and the link to all of them in the
    audit history, filtered to it."""
    query = urlencode({"target_type": target_type, "target_id": str(target_id)})
    return {
        "history": recent_history([(target_type, target_id)]),
        "history_url": f"{reverse('audit:list')}?{query}",
        "history_anchor": ANCHOR,
        "request": context.get("request"),
        "perms": context.get("perms"),
    }
