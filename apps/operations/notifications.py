"""Telling approvers that an operation waits for them (the page shows it too)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q

from apps.operations.models import Operation

logger = logging.getLogger(__name__)


def approvers_for(operation: Operation) -> list[str]:
    """Email addresses of the active admins who may approve, never the requester."""
    user_model = get_user_model()
    holders = (
        user_model.objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(groups__permissions__codename="approve_operation")
            | Q(user_permissions__codename="approve_operation")
        )
        .exclude(pk=operation.requested_by_id)
        .exclude(email="")
        .distinct()
    )
    return sorted(holders.values_list("email", flat=True))


def notify_approvers(operation: Operation) -> None:
    recipients = approvers_for(operation)
    if not recipients:
        logger.warning("operation %s awaits approval but no approver has an email", operation.pk)
        return
    link = f"{settings.PORTAL_BASE_URL}{operation.get_absolute_url()}"
    body = (
        f"{operation.requested_by.get_username()} asks to run {operation.kind} on "
        f"{operation.target_label} ({operation.environment}).\n\n"
        f"Reason: {operation.reason or '(none given)'}\n\n"
        f"Approve or reject it here: {link}\n"
    )
    try:
        send_mail(
            f"[OpsPortal] Approval needed: #{operation.pk} {operation.kind} on "
            f"{operation.target_label}",
            body,
            None,
            recipients,
        )
    except OSError:
        logger.exception("could not email approvers of operation %s", operation.pk)
