from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from apps.accounts.roles import role_of
from apps.common.navigation import declare_incident_url, items_for


def portal(request: HttpRequest) -> dict[str, Any]:
    """The environment banner, the signed-in user's role, and their pending approvals."""
    user = request.user
    context: dict[str, Any] = {
        "portal_environment": settings.PORTAL_ENVIRONMENT,
        "portal_is_production": settings.PORTAL_IS_PRODUCTION,
        "user_role": role_of(user),
        "approvals_waiting": 0,
        "nav_items": items_for(user),
        "declare_incident_url": declare_incident_url(),
    }
    if user.is_authenticated and user.has_perm("operations.approve_operation"):
        from apps.operations.choices import State
        from apps.operations.models import Operation

        context["approvals_waiting"] = (
            Operation.objects.filter(state=State.AWAITING_APPROVAL)
            .exclude(requested_by=user)
            .count()
        )
    return context
