"""Builders for test objects: one object each, related objects passed in explicitly."""

from __future__ import annotations

import functools
import importlib
import uuid
from typing import Any

from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
from django.utils import timezone

from apps.accounts.roles import ROLE_PERMISSIONS, ROLES, grant
from apps.operations.choices import State
from apps.operations.models import Operation, hash_params

PASSWORD = "correct-horse-battery-staple"


def ensure_roles() -> None:
    """The roles come from a data migration; transactional tests empty the tables between
    tests, so they are put back the same way the migration makes them."""
    if Group.objects.filter(name__in=ROLES).count() == len(ROLES):
        return
    for role, permissions in ROLE_PERMISSIONS.items():
        grant(django_apps, role, permissions)


@functools.cache
def _password_hash() -> str:
    """PASSWORD, hashed once per run: hashing is slow on purpose (PBKDF2, a million rounds,
    about a second here), and most tests make two or three people."""
    return make_password(PASSWORD)


def make_user(username: str, role: str | None = None, **fields: Any) -> User:
    ensure_roles()
    fields.setdefault("email", f"{username}@example.com")
    user = get_user_model().objects.create(username=username, password=_password_hash(), **fields)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user


def make_operation(
    requested_by: User,
    *,
    kind: str = "diagnostics.ping",
    state: str = State.QUEUED,
    target_key: str | None = None,
    params: dict[str, Any] | None = None,
    **fields: Any,
) -> Operation:
    params = params if params is not None else {"pause_seconds": 0}
    key = target_key or f"portal:{uuid.uuid4().hex[:8]}"
    target_type, target_id = key.split(":", 1)
    return Operation.objects.create(
        kind=kind,
        target_type=target_type,
        target_id=target_id,
        target_label=f"Target {target_id}",
        target_key=key,
        environment="development",
        params=params,
        params_hash=hash_params(params),
        requested_by=requested_by,
        state=state,
        queued_at=timezone.now() if state == State.QUEUED else None,
        **fields,
    )


def ensure_incident_defaults() -> None:
    """The severities and the default escalation policy come from a data migration;
    transactional tests empty the tables, so they are put back the same way."""
    from apps.incidents.models import Severity

    if Severity.objects.exists():
        return
    seed = importlib.import_module("apps.incidents.migrations.0002_seed_roles_immutable").seed
    seed(django_apps, None)


def make_incident(actor: User, severity: str = "SEV-2", services: Any = (), **fields: Any) -> Any:
    """An incident declared by ``actor`` through the action, as a person would."""
    from apps.incidents.actions import do_declare_incident
    from apps.incidents.models import Severity

    ensure_incident_defaults()
    fields.setdefault("title", f"Incident {uuid.uuid4().hex[:6]}")
    return do_declare_incident(
        actor, severity=Severity.objects.get(key=severity), services=services, **fields
    )
