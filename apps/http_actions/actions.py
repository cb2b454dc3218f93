"""Every change to the custom HTTP actions: one transaction and one audit record each, the
token never in it (only that it was replaced or removed)."""

from __future__ import annotations

from django.contrib.auth.models import User

from apps.audit.records import AuditTarget, field_changes, save_form_recorded
from apps.http_actions.forms import HttpActionForm
from apps.http_actions.models import TARGET_TYPE, HttpAction


def audit_target(action: HttpAction) -> AuditTarget:
    return AuditTarget(TARGET_TYPE, str(action.pk), str(action))


def do_save_http_action(actor: User, form: HttpActionForm) -> HttpAction:
    """Create or change an action from its valid form; a new token is encrypted before it is
    stored and the audit record says only that it changed."""
    changes = field_changes(form)
    for secret in ("bearer_token", "clear_token"):
        changes.pop(secret, None)
    if form.cleaned_data.get("bearer_token"):
        changes["token"] = ["", "replaced"]
    elif form.cleaned_data.get("clear_token"):
        changes["token"] = ["stored", "removed"]
    saved: HttpAction = save_form_recorded(actor, form, target_of=audit_target, changes=changes)
    return saved
