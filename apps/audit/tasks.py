"""The nightly check of the audit chain (the beat schedule names it): a break is an alarm,
sent to the admins and recorded, not something to find by chance."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from apps.accounts.contacts import admin_emails
from apps.audit.checkpoints import check_stored_head, do_write_checkpoint, head_storage
from apps.audit.choices import Outcome
from apps.audit.records import ChainReport, record, verify_chain

logger = logging.getLogger(__name__)


@shared_task(name="apps.audit.tasks.write_audit_checkpoint", ignore_result=True)
def write_audit_checkpoint() -> dict[str, object]:
    """Hourly: sign the chain head and copy it to the head storage (AUDIT_HEAD_STORAGE)."""
    checkpoint = do_write_checkpoint()
    return {"seq": checkpoint.seq, "stored": checkpoint.stored_key, "error": checkpoint.store_error}


@shared_task(name="apps.audit.tasks.verify_audit_chain", ignore_result=True)
def verify_audit_chain() -> dict[str, object]:
    report = verify_chain()
    if report.ok:
        storage = head_storage()
        stored = check_stored_head(storage) if storage is not None else None
        if stored is not None and not stored.ok:
            # The table agrees with itself but not with the copies outside it: rewritten.
            report = ChainReport(False, report.checked, stored.message, stored.seq)
    if report.ok:
        logger.info("audit chain intact: %s", report.message)
        return {"ok": True, "checked": report.checked}
    logger.error("audit chain broken: %s", report.message)
    record(
        "audit.chain_broken",
        actor=None,
        actor_label="nightly check",
        outcome=Outcome.FAILED,
        reason=report.message,
        data={"checked": report.checked, "first_bad_seq": report.first_bad_seq},
    )
    recipients = admin_emails()
    if recipients:
        link = f"{settings.PORTAL_BASE_URL}{reverse('audit:integrity')}"
        send_mail(
            "[OpsPortal] The audit history was altered",
            f"The nightly check of the audit chain failed after {report.checked} intact "
            f"events:\n\n{report.message}\n\nSee {link}",
            None,
            recipients,
        )
    else:
        logger.error("no admin has an email address to tell about the broken audit chain")
    return {"ok": False, "checked": report.checked, "first_bad_seq": report.first_bad_seq}
