"""Every change to Redis targets and their connection test: one transaction and one audit
record each; the password is never in a record, only that it changed."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import models, transaction
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import AuditTarget, field_changes, record, save_form_recorded
from apps.datastores.forms import RedisTargetForm
from apps.datastores.models import REDIS_TARGET_TYPE, RedisTarget
from apps.datastores.redis_client import RedisProblem, test_connection


def audit_target(instance: models.Model) -> AuditTarget:
    return AuditTarget(REDIS_TARGET_TYPE, str(instance.pk), str(instance))


def do_save_redis_target(actor: User, form: RedisTargetForm) -> RedisTarget:
    """Create or change a Redis target; a new password is encrypted before it is stored."""
    changes = field_changes(form)
    target: RedisTarget = form.instance
    password = form.cleaned_data.get("password") or ""
    changes.pop("password", None)
    changes.pop("forget_password", None)
    if password:
        target.set_password(password)
        changes["password"] = ["", "replaced"]
    elif form.cleaned_data.get("forget_password"):
        target.set_password("")
        changes["password"] = ["", "removed"]
    saved: RedisTarget = save_form_recorded(actor, form, target_of=audit_target, changes=changes)
    return saved


def do_test_redis_connection(actor: User, target: RedisTarget) -> RedisTarget:
    """PING the target now and keep the answer on it (shown on its page), audited."""
    try:
        detail, ok = test_connection(target), True
    except RedisProblem as exc:
        detail, ok = str(exc), False
    with transaction.atomic():
        target.checked_at = timezone.now()
        target.check_ok = ok
        target.check_detail = detail[:500]
        target.save(update_fields=["checked_at", "check_ok", "check_detail"])
        record(
            "datastores.redis_connection_tested",
            actor=actor,
            outcome=Outcome.SUCCEEDED if ok else Outcome.FAILED,
            target=audit_target(target),
            reason=detail,
        )
    return target
