"""Logins, logouts, failed logins and lockouts go to the audit trail."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from apps.accounts.access import mark_reauthenticated
from apps.audit.choices import Outcome
from apps.audit.records import record


@receiver(user_logged_in)
def audit_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    mark_reauthenticated(request)
    record("auth.login", actor=user)


@receiver(user_logged_out)
def audit_logout(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record("auth.logout", actor=user)


@receiver(user_login_failed)
def audit_login_failed(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
    username = str(credentials.get("username", ""))[:150]
    record(
        "auth.login_failed",
        actor=None,
        actor_label=username,
        outcome=Outcome.FAILED,
        data={"username": username},
    )


@receiver(user_locked_out)
def audit_locked_out(sender: Any, request: HttpRequest, username: str, **kwargs: Any) -> None:
    record(
        "auth.locked_out",
        actor=None,
        actor_label=(username or "")[:150],
        outcome=Outcome.DENIED,
        reason="Too many failed logins: locked out for a while.",
        data={"username": username},
    )
