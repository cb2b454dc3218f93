"""Whom the portal writes to."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Q


def admin_emails(excluding: int | None = None) -> list[str]:
    """Email addresses of the active admins (those who may approve operations), without the
    user ``excluding`` (a requester does not approve their own operation)."""
    holders = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(groups__permissions__codename="approve_operation")
            | Q(user_permissions__codename="approve_operation")
        )
        .exclude(email="")
        .distinct()
    )
    if excluding is not None:
        holders = holders.exclude(pk=excluding)
    return sorted(holders.values_list("email", flat=True))
