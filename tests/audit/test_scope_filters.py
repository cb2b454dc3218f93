"""The service and environment filters of the audit history: events have no such columns,
so they are found through the objects they are about (a service, its targets, its database
and Redis targets, an environment and its targets; an operation's events carry its target)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from apps.audit.filters import filtered_events, read_filters
from apps.audit.records import AuditTarget, record
from apps.backups.models import TARGET_TYPE as DATABASE_TYPE
from apps.backups.models import DatabaseTarget
from apps.services.choices import ClusterAccess
from apps.services.models import TARGET_TYPE, Cluster, DeploymentTarget, Environment, Service
from tests.backups.conftest import make_local_storage
from tests.conftest import client_for
from tests.factories import make_operation

pytestmark = pytest.mark.core


def _target(service: Service, environment: Environment) -> DeploymentTarget:
    cluster, _ = Cluster.objects.get_or_create(
        name="main", defaults={"access": ClusterAccess.IN_CLUSTER}
    )
    return DeploymentTarget.objects.create(
        service=service,
        environment=environment,
        cluster=cluster,
        namespace=environment.slug,
        deployment=service.slug,
        container="app",
    )


def _about(action: str, target_type: str, pk: Any, actor: Any = None, **kwargs: Any) -> None:
    record(
        action,
        actor=actor,
        actor_label="bot",
        target=AuditTarget(target_type, str(pk), f"{target_type} {pk}"),
        **kwargs,
    )


@pytest.fixture
def catalog(admin: Any) -> dict[str, Any]:
    production = Environment.objects.create(name="Production", slug="production")
    staging = Environment.objects.create(name="Staging", slug="staging")
    api = Service.objects.create(name="API", slug="api", team="ops")
    billing = Service.objects.create(name="Billing", slug="billing", team="pay")
    api_prod, api_staging = _target(api, production), _target(api, staging)
    billing_prod = _target(billing, production)
    operation = make_operation(admin, target_key=f"{TARGET_TYPE}:{api_prod.pk}")
    _about("operation.queued", TARGET_TYPE, api_prod.pk, operation_id=operation.pk)
    _about("services.target.updated", TARGET_TYPE, api_staging.pk)
    _about("operation.queued", TARGET_TYPE, billing_prod.pk)
    _about("service.changed", "services.service", api.pk)
    _about("environment.changed", "services.environment", staging.pk)
    _about("auth.login", "", "")
    return {"api": api, "api_prod": api_prod, "api_staging": api_staging, "operation": operation}


def _shown(cleaned: dict[str, Any]) -> list[str]:
    return [f"{event.action}:{event.target_id}" for event in filtered_events(cleaned)]


def test_it_filters_by_service_through_its_targets(catalog: dict[str, Any]) -> None:
    assert _shown({"service": "api"}) == [
        f"service.changed:{catalog['api'].pk}",
        f"services.target.updated:{catalog['api_staging'].pk}",
        f"operation.queued:{catalog['api_prod'].pk}",
    ]


def test_it_filters_by_environment_through_its_targets(catalog: dict[str, Any]) -> None:
    shown = _shown({"environment": "staging"})
    assert [entry.split(":")[0] for entry in shown] == [
        "environment.changed",
        "services.target.updated",
    ]
    assert len(_shown({"environment": "production"})) == 2


def test_service_and_environment_together_are_that_services_targets_there(
    catalog: dict[str, Any],
) -> None:
    assert _shown({"service": "api", "environment": "production"}) == [
        f"operation.queued:{catalog['api_prod'].pk}"
    ]


def test_the_scope_combines_with_the_other_filters(catalog: dict[str, Any]) -> None:
    operation = catalog["operation"]
    assert _shown({"service": "api", "action": "operation."}) == [
        f"operation.queued:{catalog['api_prod'].pk}"
    ]
    assert _shown({"service": "api", "operation": operation.pk}) == [
        f"operation.queued:{catalog['api_prod'].pk}"
    ]
    assert _shown({"service": "billing", "environment": "staging"}) == []
    assert _shown({"service": "billing", "outcome": "failed"}) == []


def test_a_service_without_objects_matches_nothing(catalog: dict[str, Any]) -> None:
    Service.objects.create(name="Lonely", slug="lonely", team="ops")
    assert _shown({"service": "lonely"}) == []
    assert _shown({"service": "lonely", "environment": "staging"}) == []


def test_database_targets_of_a_service_count_as_the_service(
    catalog: dict[str, Any], tmp_path: Path
) -> None:
    storage = make_local_storage(tmp_path)
    database = DatabaseTarget.objects.create(
        name="orders",
        service=catalog["api"],
        host="127.0.0.1",
        port=5432,
        database="orders",
        user="app",
        storage=storage,
    )
    _about("backup.changed", DATABASE_TYPE, database.pk)
    assert _shown({"service": "api"})[0] == f"backup.changed:{database.pk}"
    assert f"backup.changed:{database.pk}" not in _shown({"service": "billing"})


def test_the_page_filters_and_keeps_the_choice_in_the_url(
    catalog: dict[str, Any], viewer: Any
) -> None:
    client = client_for(viewer)
    response = client.get("/audit/?service=api&environment=production")
    assert response.status_code == 200
    assert [event.action for event in response.context["events"]] == ["operation.queued"]
    content = response.content.decode()
    assert '<option value="api" selected>API</option>' in content
    assert '<option value="production" selected>Production</option>' in content
    assert response.context["export_csv_url"].endswith("?service=api&environment=production")


def test_unknown_values_are_named_with_a_reason_and_the_rest_applies(
    catalog: dict[str, Any], viewer: Any
) -> None:
    response = client_for(viewer).get("/audit/?service=nope&environment=<b>x</b>&action=service.")
    assert response.status_code == 200
    problems = [str(problem) for problem in response.context["audit_filter"].problems]
    assert any(p.startswith('Service "nope" ignored: Select a valid choice.') for p in problems)
    assert any(p.startswith('Environment "<b>x</b>" ignored') for p in problems)
    content = response.content.decode()
    assert "<b>x</b>" not in content and "&lt;b&gt;x&lt;/b&gt;" in content
    assert [event.action for event in response.context["events"]] == ["service.changed"]


def test_the_csv_export_carries_the_scope(catalog: dict[str, Any], viewer: Any) -> None:
    response = client_for(viewer).get("/audit/export.csv?service=api&environment=staging")
    text = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    assert "service is api; environment is staging" in text.splitlines()[0]
    rows = list(csv.reader(io.StringIO("\n".join(text.splitlines()[1:]))))
    actions = [row[rows[0].index("action")] for row in rows[1:]]
    assert actions == ["services.target.updated"]


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the per-object union is PostgreSQL's; SQLite takes one plain condition",
)
def test_a_page_looks_each_object_up_in_its_own_index_range(catalog: dict[str, Any]) -> None:
    cleaned = read_filters(QueryDict("service=api")).cleaned
    with CaptureQueriesContext(connection) as captured:
        list(filtered_events(cleaned, page_size=51))
    union = next(q["sql"] for q in captured.captured_queries if "UNION ALL" in q["sql"])
    # One branch per object of the service (itself, two targets), each a page long at most,
    # merged newest first and cut to a page again.
    assert union.count("LIMIT 51") == 4 and union.endswith(") AS about ORDER BY 1 DESC LIMIT 51")
    assert union.count('"audit_auditevent"."target_id" =') == 3
    last = captured.captured_queries[-1]["sql"]
    assert '"audit_auditevent"."seq" IN (' in last and "UNION" not in last


def _pages(client: Any, query: str) -> list[int]:
    seqs: list[int] = []
    url = f"/audit/?{query}"
    while True:
        response = client.get(url)
        assert response.status_code == 200
        seqs += [event.seq for event in response.context["events"]]
        if not response.context["next_query"]:
            return seqs
        url = f"/audit/?{response.context['next_query']}"


@pytest.mark.parametrize(
    "query",
    [
        "service=api",
        "environment=production",
        "service=api&environment=staging",
        "service=api&actor=bot&outcome=failed",
        "environment=production&action=operation.&q=needle",
        "service=api&kind=diagnostics.ping",
        "service=api&kind=backups.restore",
        "service=api&since=2000-01-01&until=2999-12-31&before=100000",
    ],
)
def test_paging_a_scope_shows_exactly_what_the_export_holds(
    catalog: dict[str, Any], viewer: Any, query: str
) -> None:
    targets = [catalog["api_prod"], catalog["api_staging"]]
    for number in range(130):
        target = targets[number % 3 % 2]
        _about(
            "operation.queued" if number % 4 else "services.target.updated",
            TARGET_TYPE,
            target.pk,
            outcome="failed" if number % 5 == 0 else "succeeded",
            reason="needle" if number % 7 == 0 else "",
        )
    client = client_for(viewer)
    shown = _pages(client, query)
    cleaned = read_filters(QueryDict(query)).cleaned
    everything = [event.seq for event in filtered_events(cleaned)]
    assert shown == everything and len(shown) == len(set(shown))
    assert shown == sorted(shown, reverse=True)
    assert len(everything) > 0 or "backups.restore" in query  # no restore in the catalogue
