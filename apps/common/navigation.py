"""The top navigation. An area shows once its app provides the URL, so the menu never links
to something that is not there."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.contrib.auth.models import AnonymousUser, User
from django.urls import NoReverseMatch, reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    permission: str
    icon: str


AREAS = [
    NavItem("Services", "services:dashboard", "services.view_service", "hdd-network"),
    NavItem("Incidents", "incidents:list", "incidents.view_incident", "fire"),
    NavItem("Alerts", "metrics:alerts", "metrics.view_alert", "bell"),
    NavItem("Maintenance", "maintenance:list", "maintenance.view_window", "tools"),
    NavItem("Backups", "backups:list", "backups.view_backup", "archive"),
    NavItem("Datastores", "datastores:list", "datastores.view_datastore", "database"),
    NavItem("Runbooks", "runbooks:list", "runbooks.view_runbook", "journal-text"),
    NavItem("Operations", "operations:list", "operations.view_operation", "gear-wide-connected"),
    NavItem("Audit", "audit:list", "audit.view_auditevent", "journal-check"),
]


@cache
def _url(url_name: str) -> str | None:
    try:
        return reverse(url_name)
    except NoReverseMatch:
        return None


def items_for(user: User | AnonymousUser) -> list[tuple[NavItem, str]]:
    if not user.is_authenticated:
        return []
    return [
        (item, url)
        for item in AREAS
        if (url := _url(item.url_name)) is not None and user.has_perm(item.permission)
    ]


def declare_incident_url() -> str | None:
    return _url("incidents:declare")
