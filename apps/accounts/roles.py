"""The three roles and what each may do. Each role includes the one before it.

Apps that add permissions grant them to roles in a data migration of their own, through
``grant``, so that this module stays the one description of a role.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = [VIEWER, OPERATOR, ADMIN]

# Permissions each role adds on top of the one before it ("app_label.codename").
ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: [
        "operations.view_operation",
        "audit.view_auditevent",
        "audit.review_auditevent",
        "services.view_service",
        "backups.view_backup",
        "datastores.view_datastore",
        "incidents.view_incident",
        "maintenance.view_window",
        "metrics.view_metricdefinition",
        "metrics.view_alert",
        "runbooks.view_runbook",
        "runbooks.view_runbookrun",
    ],
    OPERATOR: [
        "operations.run_operation",
        "incidents.add_incident",
        "incidents.change_incident",
        "maintenance.add_window",
        "maintenance.change_window",
        "metrics.change_alert",
        "metrics.add_silence",
        "metrics.change_silence",
        "runbooks.add_runbookrun",
        "runbooks.change_runbookrun",
    ],
    ADMIN: [
        "operations.run_destructive_operation",
        "operations.approve_operation",
        "operations.override_gate",
        "audit.verify_auditevent",
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
        "services.add_service",
        "services.change_service",
        "services.delete_service",
        "services.add_environment",
        "services.change_environment",
        "services.add_cluster",
        "services.change_cluster",
        "services.add_deploymenttarget",
        "services.change_deploymenttarget",
        "services.delete_deploymenttarget",
        "services.add_deployfreeze",
        "services.change_deployfreeze",
        "backups.add_databasetarget",
        "backups.change_databasetarget",
        "backups.add_backupstorage",
        "backups.change_backupstorage",
        "backups.add_integritycheck",
        "backups.change_integritycheck",
        "datastores.add_redistarget",
        "datastores.change_redistarget",
        "backups.delete_integritycheck",
        "incidents.add_severity",
        "incidents.change_severity",
        "incidents.add_escalationpolicy",
        "incidents.change_escalationpolicy",
        "statuspage.add_statuscomponent",
        "statuspage.change_statuscomponent",
        "statuspage.delete_statuscomponent",
        "metrics.change_prometheusconnection",
        "metrics.add_metricdefinition",
        "metrics.change_metricdefinition",
        "metrics.change_servicealerting",
        "runbooks.add_runbook",
        "runbooks.change_runbook",
        "http_actions.add_httpaction",
        "http_actions.change_httpaction",
    ],
}


def roles_including(role: str) -> list[str]:
    """The roles that hold everything ``role`` holds: itself and those above it."""
    return ROLES[ROLES.index(role) :]


def create_permissions_now(apps: Any) -> None:
    """In a data migration: permissions are normally created after all migrations ran."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def grant(apps: Any, role: str, permissions: list[str]) -> None:
    """Give ``permissions`` to ``role`` and every role above it (``apps`` is the migration's
    app registry, or django.apps.apps)."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name in permissions:
        app_label, codename = name.split(".", 1)
        permission = permission_model.objects.get(
            content_type__app_label=app_label, codename=codename
        )
        for holder in roles_including(role):
            group, _ = group_model.objects.get_or_create(name=holder)
            group.permissions.add(permission)


def role_of(user: AbstractBaseUser | AnonymousUser) -> str:
    """The highest role a user holds, for display."""
    if not user.is_authenticated:
        return "anonymous"
    if getattr(user, "is_superuser", False):
        return "superuser"
    names = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
    for role in reversed(ROLES):
        if role in names:
            return role
    return "no role"
