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
from apps.datastores.models import RedisTarget
from apps.incidents.models import EscalationPolicy, Severity
from apps.operations.choices import State
from apps.services.choices import ClusterAccess
from apps.services.models import (
    Cluster,
    DeployFreeze,
    DeploymentTarget,
    Environment,
    Service,
)
from apps.statuspage.models import StatusComponent
from tests.factories import make_incident, make_operation, make_user

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
    "metrics:target-panel": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 405, 405, 405),
    },
    # Metrics (issue 4, part A): viewers read the definitions, admins configure.
    "metrics:definitions": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 405, 405, 405),
    },
    **{
        f"metrics:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 400),
        }
        for name in ("connection", "definition-create", "definition-edit")
    },
    "metrics:connection-check": {
        "GET": signed_in(403, 403, 403, 405),
        "POST": signed_in(403, 403, 403, 302),
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
    # A restore starts from the page of one good backup (admins); admins manage the integrity
    # checks (an empty POST is a form with errors).
    "backups:backup-restore": {
        "GET": signed_in(403, 403, 403, 200),
        "POST": signed_in(403, 403, 403, 405),
    },
    **{
        f"backups:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 400),
        }
        for name in ("check-create", "check-edit")
    },
    "backups:check-delete": {
        "GET": signed_in(403, 403, 403, 405),
        "POST": signed_in(403, 403, 403, 302),
    },
    # Admins download a backup (its object missing here: back to the target with why).
    "backups:backup-download": {
        "GET": signed_in(403, 403, 403, 302),
        "POST": signed_in(403, 403, 403, 405),
    },
    # The datastore consoles: everyone with a role reads them (the catalog's targets are on
    # ports nothing listens on, so the pages say "Unreachable"); admins manage Redis targets.
    **{
        f"datastores:{name}": {
            "GET": signed_in(403, 200, 200, 200),
            "POST": signed_in(403, 405, 405, 405),
        }
        for name in ("list", "postgres", "redis")
    },
    # The service page's datastore panels (htmx fragments): read like the consoles.
    **{
        f"datastores:{name}": {
            "GET": signed_in(403, 200, 200, 200),
            "POST": signed_in(403, 405, 405, 405),
        }
        for name in ("postgres-panel", "redis-panel")
    },
    **{
        f"datastores:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 400),
        }
        for name in ("redis-create", "redis-edit")
    },
    "datastores:redis-check": {
        "GET": signed_in(403, 403, 403, 405),
        "POST": signed_in(403, 403, 403, 302),
    },
    # Checking the chain is the admins' (issue 8: "an admin page").
    "audit:integrity": {
        "GET": signed_in(403, 403, 403, 200),
        "POST": signed_in(403, 403, 403, 405),
    },
    # The review queue: managers hold the viewer role; an empty POST names no event (400).
    "audit:review": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 400, 400, 400),
    },
    # The history of one user (what they did, what was done to the account): admins only.
    "audit:user-history": {
        "GET": signed_in(403, 403, 403, 200),
        "POST": signed_in(403, 403, 403, 405),
    },
    "reports:index": {"GET": signed_in(403, 200, 200, 200), "POST": signed_in(403, 405, 405, 405)},
    # The incident pages: viewers read, operators declare and change. An empty form is
    # refused with its errors (400); acknowledging needs no input, nor does an unchanged list
    # of affected services; closing an open incident is refused (400).
    **{
        f"incidents:{name}": {
            "GET": signed_in(403, 200, 200, 200),
            "POST": signed_in(403, 405, 405, 405),
        }
        for name in ("list", "detail")
    },
    "incidents:declare": {
        "GET": signed_in(403, 403, 200, 200),
        "POST": signed_in(403, 403, 400, 400),
    },
    **{
        f"incidents:{name}": {
            "GET": signed_in(403, 403, 405, 405),
            "POST": signed_in(403, 403, 400, 400),
        }
        for name in ("note", "update", "state", "severity", "role", "resolve", "close")
    },
    **{
        f"incidents:{name}": {
            "GET": signed_in(403, 403, 405, 405),
            "POST": signed_in(403, 403, 302, 302),
        }
        for name in ("acknowledge", "affected")
    },
    # Post-mortems, follow-up and figures: read by viewers, written by operators. The
    # fixture's post-mortem is a draft without a summary: completing it is refused (302).
    **{
        f"incidents:{name}": {
            "GET": signed_in(403, 200, 200, 200),
            "POST": signed_in(403, 405, 405, 405),
        }
        for name in ("follow_up", "figures", "postmortem_markdown")
    },
    "incidents:postmortem": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 403, 302, 302),
    },
    **{
        f"incidents:{name}": {
            "GET": signed_in(403, 403, 405, 405),
            "POST": signed_in(403, 403, 302, 302),
        }
        for name in ("postmortem_complete", "action_done")
    },
    # An empty action item is a form with errors.
    "incidents:action_add": {
        "GET": signed_in(403, 403, 405, 405),
        "POST": signed_in(403, 403, 400, 400),
    },
    # Severities and escalation policies: admins only; an empty POST is a form with errors.
    **{
        f"incidents:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 405),
        }
        for name in ("severities", "policies")
    },
    **{
        f"incidents:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 400),
        }
        for name in ("severity_edit", "policy_edit", "policy_add")
    },
    # The public status page: everyone reads it, nobody posts to it.
    "statuspage:page": {"GET": everyone(200), "POST": everyone(405)},
    "statuspage:json": {"GET": everyone(200), "POST": everyone(405)},
    # Admins choose its components; an empty POST is a form with errors.
    "statuspage:components": {
        "GET": signed_in(403, 403, 403, 200),
        "POST": signed_in(403, 403, 403, 405),
    },
    **{
        f"statuspage:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 400),
        }
        for name in ("component-create", "component-edit")
    },
    # Without a direction, the move says so and goes back to the list.
    **{
        f"statuspage:{name}": {
            "GET": signed_in(403, 403, 403, 405),
            "POST": signed_in(403, 403, 403, 302),
        }
        for name in ("component-move", "component-remove")
    },
    # Maintenance windows: viewers read, operators schedule and run them. An empty form is
    # refused with its errors (400); the buttons say what happened and go back (302).
    **{
        f"maintenance:{name}": {
            "GET": signed_in(403, 200, 200, 200),
            "POST": signed_in(403, 405, 405, 405),
        }
        for name in ("list", "calendar", "detail", "feed_link")
    },
    **{
        f"maintenance:{name}": {
            "GET": signed_in(403, 403, 200, 200),
            "POST": signed_in(403, 403, 400, 400),
        }
        for name in ("create", "edit", "move")
    },
    **{
        f"maintenance:{name}": {
            "GET": signed_in(403, 403, 405, 405),
            "POST": signed_in(403, 403, 302, 302),
        }
        for name in ("cancel", "start", "end", "extend", "skip", "tick")
    },
    # The calendar feed: its secret link is the credential.
    "maintenance:feed": {"GET": everyone(200), "POST": everyone(405)},
    "maintenance:week": {
        "GET": signed_in(403, 200, 200, 200),
        "POST": signed_in(403, 405, 405, 405),
    },
    "maintenance:test_message": {
        "GET": signed_in(403, 403, 405, 405),
        "POST": signed_in(403, 403, 302, 302),
    },
    # Subscriptions are public (double opt-in); their secret links are the credential.
    "maintenance:subscribe": {"GET": everyone(200), "POST": everyone(400)},
    "maintenance:confirm": {"GET": everyone(200), "POST": everyone(302)},
    "maintenance:unsubscribe": {"GET": everyone(200), "POST": everyone(302)},
    # Runbooks: every role reads; admins import and re-import (an empty form is a 400).
    **{
        f"runbooks:{name}": {
            "GET": signed_in(403, 200, 200, 200),
            "POST": signed_in(403, 405, 405, 405),
        }
        for name in ("list", "detail", "versions", "coverage")
    },
    **{
        f"runbooks:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 400),
        }
        for name in ("import", "reimport")
    },
    # Guided runs: every role reads them; operators start and work them. Without a section the
    # start page says so (400); an empty stop is refused with a message, an empty tick is fine.
    **{
        f"runbooks:{name}": {
            "GET": signed_in(403, 200, 200, 200),
            "POST": signed_in(403, 405, 405, 405),
        }
        for name in ("runs", "run")
    },
    "runbooks:run-start": {
        "GET": signed_in(403, 403, 400, 400),
        "POST": signed_in(403, 403, 400, 400),
    },
    **{
        f"runbooks:{name}": {
            "GET": signed_in(403, 403, 405, 405),
            "POST": signed_in(403, 403, 302, 302),
        }
        for name in ("run-stop", "run-step")
    },
    # Custom HTTP actions: admins define them (an empty form is a 400); running one is the
    # operations engine's start page.
    **{
        f"http_actions:{name}": {
            "GET": signed_in(403, 403, 403, 200),
            "POST": signed_in(403, 403, 403, 400),
        }
        for name in ("create", "edit")
    },
    # Alerts (apps/metrics/alert_views.py): viewers read, operators acknowledge and silence,
    # admins switch a service's automatic incidents; an empty silence POST is a form error.
    "metrics:alerts": {"GET": signed_in(403, 200, 200, 200), "POST": signed_in(403, 405, 405, 405)},
    "metrics:alert-acknowledge": {
        "GET": signed_in(403, 403, 405, 405),
        "POST": signed_in(403, 403, 302, 302),
    },
    "metrics:alert-silence": {
        "GET": signed_in(403, 403, 200, 200),
        "POST": signed_in(403, 403, 400, 400),
    },
    "metrics:silence-lift": {
        "GET": signed_in(403, 403, 405, 405),
        "POST": signed_in(403, 403, 302, 302),
    },
    "metrics:service-alerting": {
        "GET": signed_in(403, 403, 403, 405),
        "POST": signed_in(403, 403, 403, 302),
    },
    # The Alertmanager receiver: its bearer token is the credential; without ALERTMANAGER_TOKEN
    # (as here) it is off and says so with a 503.
    "metrics:alertmanager": {"GET": everyone(405), "POST": everyone(503)},
}


def _maintenance_objects(user: Any, service: Service) -> dict[str, dict[str, object]]:
    """A window in ten days, its first occurrence and a checklist step, and a feed token."""
    from apps.maintenance.actions import WindowData, do_create_window
    from apps.maintenance.models import Subscriber
    from apps.maintenance.views import feed_token

    start = timezone.now() + timedelta(days=10)
    window = do_create_window(
        user,
        WindowData(
            title="perm-window",
            services=[service],
            environments=[],
            time_zone="UTC",
            start_at=start,
            end_at=start + timedelta(hours=1),
            recurrence="",
            impact="none",
            message="perm",
            maintenance_mode=False,
            short_notice_reason="",
        ),
    )
    occurrence = window.occurrences.get()
    step = occurrence.steps.first()
    assert step is not None
    return {
        **{f"maintenance:{name}": {"pk": window.pk} for name in ("detail", "edit", "cancel")},
        **{
            f"maintenance:{name}": {"pk": occurrence.pk}
            for name in ("start", "end", "extend", "skip", "move")
        },
        "maintenance:tick": {"pk": step.pk},
        "maintenance:feed": {"token": feed_token(user.pk)},
        "maintenance:test_message": {"pk": window.pk},
        "maintenance:confirm": {"token": Subscriber.objects.create(email="c@x.org").token},
        "maintenance:unsubscribe": {"token": Subscriber.objects.create(email="u@x.org").token},
    }


def _runbook_objects(user: Any) -> dict[str, dict[str, object]]:
    """A runbook with one version, and a run of another's one-step section."""
    from apps.runbooks.actions import do_import_runbook
    from apps.runbooks.runs import do_start_run

    runbook = do_import_runbook(user, title="perm-runbook", service=None, source="# x")
    steps = do_import_runbook(user, title="perm-steps", service=None, source="## s\n\n1. a\n")
    run = do_start_run(user, steps, "s-s")
    return {
        **{
            f"runbooks:{name}": {"slug": runbook.slug}
            for name in ("detail", "versions", "coverage", "reimport", "run-start")
        },
        **{f"runbooks:{name}": {"pk": run.pk} for name in ("run", "run-stop")},
        "runbooks:run-step": {"pk": run.steps.get().pk},
    }


@dataclass
class _Catalog:
    service: Service
    target: DeploymentTarget
    freeze: DeployFreeze
    database: DatabaseTarget


def _alert_objects(user: Any, service: Service) -> dict[str, dict[str, object]]:
    """A firing alert with an active silence of it."""
    from apps.metrics import alerts

    alert = alerts.fire(
        service=service,
        source="metrics",
        fingerprint="perm-alert",
        name="perm-alert",
        severity="warning",
        summary="",
        labels={},
        started_at=timezone.now(),
    )
    silence = alerts.do_silence_alert(user, alert, duration=timedelta(hours=1), reason="perm")
    return {
        "metrics:alert-acknowledge": {"pk": alert.pk},
        "metrics:alert-silence": {"pk": alert.pk},
        "metrics:silence-lift": {"pk": silence.pk},
        "metrics:service-alerting": {"pk": service.pk},
    }


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


def _reviewed_incident(user: Any) -> tuple[Any, Any]:
    """A resolved incident with a draft post-mortem (no summary yet) and one action item."""
    from apps.incidents.actions import do_resolve_incident
    from apps.incidents.postmortems import do_add_action_item

    incident = do_resolve_incident(
        user, make_incident(user, "SEV-2", title="perm-incident"), current_status="Fixed"
    )
    item = do_add_action_item(
        user, incident, title="perm-item", owner=user, due_date=timezone.localdate()
    )
    return incident, item


def _restore_objects(database: DatabaseTarget) -> dict[str, dict[str, object]]:
    """A good backup of the catalog's database and two integrity checks (one to remove)."""
    from apps.backups.models import Backup, IntegrityCheck

    backup = Backup.objects.create(
        target=database,
        storage=database.storage,
        key="perm/perm.dump",
        state="succeeded",
        size_bytes=1,
        sha256="0" * 64,
        finished_at=timezone.now(),
    )
    kept, doomed = (
        IntegrityCheck.objects.create(target=database, name=name, sql="SELECT 1", min_value=1)
        for name in ("perm-check", "perm-doomed")
    )
    local = BackupStorage.objects.create(
        name="perm-local", kind="local", directory=str(settings.BACKUP_DIR)
    )
    download = Backup.objects.create(
        target=database,
        storage=local,
        key="perm/download.dump",
        state="succeeded",
        size_bytes=1,
        sha256="0" * 64,
        finished_at=timezone.now(),
    )
    return {
        "backups:backup-restore": {"pk": backup.pk},
        "backups:check-create": {"pk": database.pk},
        "backups:check-edit": {"pk": kept.pk},
        "backups:check-delete": {"pk": doomed.pk},
        "backups:backup-download": {"pk": download.pk},
    }


def _datastore_objects() -> dict[str, dict[str, object]]:
    """A Redis target on a port nothing listens on: its console says so, fast."""
    from apps.datastores.models import RedisTarget

    redis_target = RedisTarget.objects.create(name="perm-redis", url="redis://127.0.0.1:9")
    return {
        f"datastores:{name}": {"pk": redis_target.pk}
        for name in ("redis", "redis-edit", "redis-check")
    }


def _http_action(service: Service) -> Any:
    from apps.http_actions.models import HttpAction

    environment = Environment.objects.get(slug="perm-env")
    return HttpAction.objects.create(
        service=service,
        environment=environment,
        name="perm-action",
        url_template="https://perm.example.com/jobs/{id}",
        parameters=[{"name": "id", "type": "integer", "pattern": ""}],
        expected_statuses=[200],
    )


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
    open_incident = make_incident(requester, "SEV-2", title="perm-open-incident")
    component = StatusComponent.objects.create(service=catalog.service, name="perm-component")
    reviewed, action_item = _reviewed_incident(requester)
    kwargs_for: dict[str, dict[str, object]] = {
        "operations:start": {"kind_name": "diagnostics.ping"},
        "services:detail": {"slug": catalog.service.slug},
        "services:edit": {"slug": catalog.service.slug},
        "services:target-create": {"slug": catalog.service.slug},
        "services:target-edit": {"pk": catalog.target.pk},
        "services:deployment": {"pk": catalog.target.pk},
        "metrics:target-panel": {"pk": catalog.target.pk},
        "metrics:definitions": {"service_id": catalog.service.pk},
        "metrics:definition-create": {"service_id": catalog.service.pk},
        "metrics:definition-edit": {
            "service_id": catalog.service.pk,
            "pk": catalog.service.metric_definitions.get(key="error_rate").pk,
        },
        "services:environment-edit": {"pk": catalog.target.environment_id},
        "services:cluster-edit": {"pk": catalog.target.cluster_id},
        "services:cluster-check": {"pk": catalog.target.cluster_id},
        "services:freeze-lift": {"pk": catalog.freeze.pk},
        "backups:target": {"pk": catalog.database.pk},
        "backups:target-edit": {"pk": catalog.database.pk},
        "backups:target-check": {"pk": catalog.database.pk},
        "backups:storage-edit": {"pk": catalog.database.storage_id},
        "datastores:postgres": {"pk": catalog.database.pk},
        **_datastore_objects(),
        "datastores:postgres-panel": {"pk": catalog.database.pk},
        "datastores:redis-panel": {"pk": RedisTarget.objects.get(name="perm-redis").pk},
        **{
            f"incidents:{name}": {"pk": open_incident.pk}
            for name in (
                *("detail", "acknowledge", "note", "update", "state", "severity"),
                *("role", "affected", "resolve", "close"),
            )
        },
        **_restore_objects(catalog.database),
        "statuspage:component-edit": {"pk": component.pk},
        "statuspage:component-move": {"pk": component.pk},
        "statuspage:component-remove": {"pk": component.pk},
        **{
            f"incidents:{name}": {"pk": reviewed.pk}
            for name in ("postmortem", "postmortem_complete", "action_add", "postmortem_markdown")
        },
        "incidents:action_done": {"item_pk": action_item.pk},
        "audit:user-history": {"pk": requester.pk},
        "incidents:severity_edit": {"pk": Severity.objects.get(key="SEV-1").pk},
        "incidents:policy_edit": {"pk": EscalationPolicy.objects.get(is_default=True).pk},
        **_maintenance_objects(requester, catalog.service),
        **_alert_objects(requester, catalog.service),
        "http_actions:create": {"slug": catalog.service.slug},
        "http_actions:edit": {"pk": _http_action(catalog.service).pk},
        **_runbook_objects(requester),
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
