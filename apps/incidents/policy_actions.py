"""Admins' changes to the severities table and the escalation policies: one transaction and
one audit record each, with the fields changed (the webhook URL masked)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import models, transaction
from django.db.models import F
from django.forms import BaseInlineFormSet

from apps.audit.records import MASK, AuditTarget, field_changes, record, save_form_recorded
from apps.incidents.models import EscalationLevel, EscalationPolicy, Severity
from apps.incidents.policy_forms import MAX_LEVEL, PolicyForm, SeverityForm


def audit_target(instance: models.Model) -> AuditTarget:
    return AuditTarget(f"incidents.{instance._meta.model_name}", str(instance.pk), str(instance))


def do_save_severity(actor: User, form: SeverityForm) -> Severity:
    """Change a severity from its valid form. Open incidents keep the deadlines they have;
    the new times apply from their next escalation, update or severity change."""
    saved: Severity = save_form_recorded(
        actor, form, target_of=audit_target, changes=field_changes(form)
    )
    return saved


def describe_levels(policy: EscalationPolicy) -> list[str]:
    """The levels as the audit history shows them: "2 Engineering lead: bob; groups: sre"."""
    if policy.pk is None:
        return []
    described = []
    for level in EscalationLevel.objects.filter(policy=policy).prefetch_related("users", "groups"):
        people = ", ".join(sorted(user.get_username() for user in level.users.all())) or "nobody"
        groups = ", ".join(sorted(group.name for group in level.groups.all()))
        described.append(
            f"{level.level} {level.name}: {people}" + (f"; groups: {groups}" if groups else "")
        )
    return described


def do_save_policy(
    actor: User, form: PolicyForm, levels: BaseInlineFormSet[EscalationLevel, EscalationPolicy, Any]
) -> EscalationPolicy:
    """Create or change an escalation policy and its levels from their valid forms. A new
    webhook URL is encrypted and the audit record says only that it was set or removed;
    making the policy the default takes that from the previous default."""
    policy: EscalationPolicy = form.instance
    created = policy.pk is None
    changes = field_changes(form)
    for name in ("webhook_url", "remove_webhook", "default"):
        changes.pop(name, None)
    had_webhook = bool(policy.webhook_url_encrypted)
    if url := form.cleaned_data.get("webhook_url"):
        policy.webhook_url = url
        changes["webhook_url"] = [MASK if had_webhook else "", MASK]
    elif form.cleaned_data.get("remove_webhook") and had_webhook:
        policy.webhook_url = ""
        changes["webhook_url"] = [MASK, ""]
    with transaction.atomic():
        before = describe_levels(policy)
        if form.cleaned_data.get("default") and not policy.is_default:
            previous = EscalationPolicy.objects.filter(is_default=True)
            if policy.pk is not None:
                previous = previous.exclude(pk=policy.pk)
            previous.update(is_default=False)
            policy.is_default = True
            changes["is_default"] = ["False", "True"]
        policy = form.save()
        # Levels that change number (or go) step aside first, so that 2 and 3 can swap
        # places without meeting the "one level number per policy" constraint halfway.
        leaving = levels.deleted_forms
        moving = [
            level_form.instance.pk
            for level_form in levels.initial_forms
            if level_form.instance.pk is not None
            and ("level" in level_form.changed_data or level_form in leaving)
        ]
        EscalationLevel.objects.filter(pk__in=moving).update(level=F("level") + MAX_LEVEL + 1)
        levels.instance = policy
        levels.save()
        after = describe_levels(policy)
        if before != after:
            changes["levels"] = [before, after]
        record(
            f"escalationpolicy.{'created' if created else 'changed'}",
            actor=actor,
            target=audit_target(policy),
            data={"changes": changes},
        )
    return policy
