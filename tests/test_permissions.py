"""Every URL of the project, for every persona, with a client that enforces CSRF, against a
table of expected outcomes. An endpoint missing from the table fails the test, so a new one
cannot slip in without someone deciding who may use it."""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django.utils.crypto import get_random_string

from apps.audit.models import AuditEvent
from apps.backups.models import BackupStorage, DatabaseTarget
from apps.operations.choices import State
from apps.services.choices import ClusterAccess
from apps.services.models import (
    Cluster,
    DeployFreeze,
    DeploymentTarget,
    Environment,
    Service,
)
from tests.factories import make_operation, make_user

pytestmark = pytest.mark.core

LOGIN = "login"  # redirected to the sign-in page
PERSONAS = ["anonymous", "nobody", "viewer", "operator", "admin"]


def everyone(status: int | str) -> dict[str, int | str]:
    return dict.fromkeys(PERSONAS, status)


def signed_in(nobody: int, viewer: int, operator: int, admin: int) -> dict[str, int | str]:
    return {
        "anonymous": LOGIN,
        "nobody": nobody,
        "viewer": viewer,
        "operator": operator,
        "admin": admin,
    }


# url name → method → persona → expected status. The POSTs carry a valid CSRF token and no
# form data: a refusal must come before any validation.
EXPECTED: dict[str, dict[str, dict[str, int | str]]] = {
    "home": {"GET": signed_in(200, 200, 200, 200), "POST": signed_in(405, 405, 405, 405)},
    "health-live": {"GET": everyone(200), "POST": everyone(405)},
    "health-ready": {"GET": everyone(200), "POST": everyone(405)},
    "health": {"GET": everyone(200), "POST": everyone(405)},
    "metrics": {"GET": everyone(200), "POST": everyone(405)},
    "accounts:login": {
        "GET": {"anonymous": 200, "nobody": 302, "viewer": 302, "operator": 302, "admin": 302},
        "POST": {"anonymous": 200, "nobody": 302, "viewer": 302, "operator": 302, "admin": 302},
    },
    "accounts:logout": {"GET": everyone(405), "POST": everyone(LOGIN)},
    "operations:list": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 405, 405, 405),
    },
    "operations:start": {
        "GET": signed_in(403, 403, 200, 200),
        "POST": signed_in(403, 403, 400, 400),
    },
    "operations:detail": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 405, 405, 405),
    },
    "operations:cancel": {
        "GET": signed_in(403, 403, 405, 405),
        "POST": signed_in(403, 403, 302, 302),
    },
    "operations:approve": {
        "GET": signed_in(403, 403, 403, 405),
        "POST": signed_in(403, 403, 403, 302),
    },
    "operations:reject": {
        "GET": signed_in(403, 403, 403, 405),
        "POST": signed_in(403, 403, 403, 302),
    },
    "operations:run": {"GET": signed_in(403, 403, 405, 405), "POST": signed_in(403, 403, 302, 302)},
    "operations:edit": {
        "GET": signed_in(403, 403, 200, 200),
        "POST": signed_in(403, 403, 302, 302),
    },
    "audit:list": {"GET": signed_in(403, 200, 200, 200), "POST": signed_in(403, 405, 405, 405)},
    "audit:export-csv": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 405, 405, 405),
    },
    "audit:export-jsonl": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 405, 405, 405),
    },
    **{
        f"services:{name}": {
            "GET": signed_in(403, 200, 200, 200),
            "POST": signed_in(403, 405, 405, 405),
        }
        for name in ("dashboard", "detail", "environments", "clusters", "freezes", "deployment")
    },
    # Admins manage the catalog; an empty POST is a form with errors.
    **{
        f"services:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 400),
        }
        for name in (
            "create",
            "edit",
            "environment-create",
            "environment-edit",
            "cluster-create",
            "cluster-edit",
            "target-create",
            "target-edit",
            "freeze-create",
        )
    },
    **{
        f"services:{name}": {
            "GET": signed_in(403, 403, 403, 405),
            "POST": signed_in(403, 403, 403, 302),
        }
        for name in ("cluster-check", "freeze-lift")
    },
    **{
        f"backups:{name}": {
            "GET": signed_in(403, 200, 200, 200),
            "POST": signed_in(403, 405, 405, 405),
        }
        for name in ("list", "target", "storage")
    },
    # Admins manage targets and storage; an empty POST is a form with errors.
    **{
        f"backups:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 400),
        }
        for name in ("target-create", "target-edit", "storage-create", "storage-edit")
    },
    "backups:target-check": {
        "GET": signed_in(403, 403, 403, 405),
        "POST": signed_in(403, 403, 403, 302),
    },
    "audit:integrity": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 405, 405, 405),
    },
}


@dataclass
class _Catalog:
    service: Service
    target: DeploymentTarget
    freeze: DeployFreeze
    database: DatabaseTarget


def _catalog(user: Any) -> _Catalog:
    """One of each services object, for the URLs that name one. The cluster is "in-cluster",
    which this machine is not: its pages say so instead of answering with a 500."""
    service = Service.objects.create(name="perm-svc", slug="perm-svc", team="T")
    environment = Environment.objects.create(name="perm-env", slug="perm-env")
    cluster = Cluster.objects.create(name="perm-cluster", access=ClusterAccess.IN_CLUSTER)
    target = DeploymentTarget.objects.create(
        service=service,
        environment=environment,
        cluster=cluster,
        namespace="ns",
        deployment="perm",
        container="app",
    )
    freeze = DeployFreeze.objects.create(
        reason="perm", created_by=user, expires_at=timezone.now() + timedelta(hours=1)
    )
    # A database on a port nothing listens on: its connection test fails fast, and says so.
    storage = BackupStorage.objects.create(name="perm-storage", kind="s3", bucket="perm-bucket")
    database = DatabaseTarget.objects.create(
        name="perm-db", host="127.0.0.1", port=9, database="perm", user="perm", storage=storage
    )
    return _Catalog(service, target, freeze, database)


def _url_names(patterns: list[Any], namespace: str = "") -> list[tuple[str, URLPattern]]:
    found: list[tuple[str, URLPattern]] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found.extend(_url_names(entry.url_patterns, inner))
        elif entry.name:
            found.append((f"{namespace}{entry.name}", entry))
        else:
            found.append((f"<unnamed {entry.pattern}>", entry))
    return found


def test_every_url_pattern_is_in_the_expected_table() -> None:
    names = {name for name, _ in _url_names(get_resolver().url_patterns)}
    assert names == set(EXPECTED), (
        f"missing from the table: {sorted(names - set(EXPECTED))}; "
        f"in the table but gone: {sorted(set(EXPECTED) - names)}"
    )


CSRF_SECRET = get_random_string(32, string.ascii_letters + string.digits)


def _client(user: Any) -> Client:
    """A client that enforces CSRF and holds a valid token, as a browser would."""
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    client.cookies[settings.CSRF_COOKIE_NAME] = CSRF_SECRET
    return client


def _status(response: Any) -> int | str:
    if response.status_code == 302 and "/accounts/login/" in response["Location"]:
        return LOGIN
    return response.status_code


@pytest.mark.parametrize("persona", PERSONAS)
def test_each_persona_gets_the_expected_outcome_everywhere(persona: str, db: None) -> None:
    requester = make_user("rita-requester", "operator")
    user = (
        None
        if persona == "anonymous"
        else make_user(f"{persona}-user", None if persona == "nobody" else persona)
    )
    catalog = _catalog(requester)
    kwargs_for: dict[str, dict[str, object]] = {
        "operations:start": {"kind_name": "diagnostics.ping"},
        "services:detail": {"slug": catalog.service.slug},
        "services:edit": {"slug": catalog.service.slug},
        "services:target-create": {"slug": catalog.service.slug},
        "services:target-edit": {"pk": catalog.target.pk},
        "services:deployment": {"pk": catalog.target.pk},
        "services:environment-edit": {"pk": catalog.target.environment_id},
        "services:cluster-edit": {"pk": catalog.target.cluster_id},
        "services:cluster-check": {"pk": catalog.target.cluster_id},
        "services:freeze-lift": {"pk": catalog.freeze.pk},
        "backups:target": {"pk": catalog.database.pk},
        "backups:target-edit": {"pk": catalog.database.pk},
        "backups:target-check": {"pk": catalog.database.pk},
        "backups:storage-edit": {"pk": catalog.database.storage_id},
    }
    mismatches = []
    for name, pattern in _url_names(get_resolver().url_patterns):
        for method, expected_by_persona in EXPECTED[name].items():
            # A fresh operation each time: a successful POST may change its state.
            operation = make_operation(requester, state=State.AWAITING_APPROVAL)
            kwargs = kwargs_for.get(name) or (
                {"pk": operation.pk} if "pk" in pattern.pattern.converters else {}
            )
            url = reverse(name, kwargs=kwargs)
            client = _client(user)
            if method == "GET":
                response = client.get(url)
            else:
                response = client.post(url, {}, headers={"X-CSRFToken": CSRF_SECRET})
            got = _status(response)
            if got != expected_by_persona[persona]:
                mismatches.append(
                    f"{method} {url} as {persona}: {got}, expected {expected_by_persona[persona]}"
                )
    assert not mismatches, "\n".join(mismatches)


def test_a_refused_request_is_audited_as_denied(viewer: Any) -> None:
    client = _client(viewer)
    response = client.get("/operations/start/diagnostics.ping/?target=self")
    assert response.status_code == 403
    event = AuditEvent.objects.get(action="access.denied")
    assert event.outcome == "denied"
    assert event.actor == viewer
    assert event.data["path"] == "/operations/start/diagnostics.ping/"
    assert "operations.run_operation" in event.reason


def test_a_post_without_csrf_token_is_refused(operator: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post("/operations/start/diagnostics.ping/", {"target": "self"})
    assert response.status_code == 403
