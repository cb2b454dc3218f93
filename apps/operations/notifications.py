"""Telling approvers that an operation waits for them (the page shows it too)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

from apps.accounts.contacts import admin_emails
from apps.operations.models import Operation

logger = logging.getLogger(__name__)


def notify_approvers(operation: Operation) -> None:
    recipients = admin_emails(excluding=operation.requested_by_id)
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
