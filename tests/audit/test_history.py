"""The audit history page: every filter, the ones that cannot be applied, the links to the
objects, and what the page does with hostile input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext, override_settings

from apps.audit.filters import REVERSED_RANGE, filtered_events, read_filters
from apps.audit.links import object_url
from apps.audit.models import AuditEvent
from apps.audit.records import AuditTarget, record, verify_chain
from apps.services.choices import ClusterAccess
from apps.services.models import TARGET_TYPE, Cluster, DeploymentTarget, Environment, Service
from tests.conftest import client_for
from tests.factories import make_operation

pytestmark = pytest.mark.core


def shown(response: Any) -> list[str]:
    """The actions on the page, in order, but for the sign-in that client_for records."""
    return [event.action for event in response.context["events"] if event.action != "auth.login"]


def make_service_target(slug: str = "api") -> DeploymentTarget:
    environment, _ = Environment.objects.get_or_create(
        slug="production", defaults={"name": "Production", "is_production": True}
    )
    cluster, _ = Cluster.objects.get_or_create(
        name="main", defaults={"access": ClusterAccess.IN_CLUSTER}
    )
    service = Service.objects.create(name=slug, slug=slug, team="ops")
    return DeploymentTarget.objects.create(
        service=service,
        environment=environment,
        cluster=cluster,
        namespace="prod",
        deployment=slug,
        container="app",
    )


@pytest.fixture
def events(admin: Any, operator: Any) -> None:
    record("operation.queued", actor=operator, target=AuditTarget(TARGET_TYPE, "7", "api (prod)"))
    record("operation.succeeded", actor=operator, outcome="failed", operation_id=12)
    record("services.service.updated", actor=admin, reason="New runbook link")
    record("access.denied", actor=None, actor_label="mallory", outcome="denied")


def test_it_filters_by_exact_actor(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/?actor=alice-admin")
    assert shown(response) == ["services.service.updated"]
    # Exact, not a prefix or a substring.
    assert shown(client_for(viewer).get("/audit/?actor=alice")) == []


def test_it_filters_by_action_prefix(viewer: Any, events: None) -> None:
    client = client_for(viewer)
    assert shown(client.get("/audit/?action=operation.")) == [
        "operation.succeeded",
        "operation.queued",
    ]
    assert shown(client.get("/audit/?action=services")) == ["services.service.updated"]


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("succeeded", ["services.service.updated", "operation.queued"]),
        ("failed", ["operation.succeeded"]),
        ("denied", ["access.denied"]),
    ],
)
def test_it_filters_by_outcome(
    viewer: Any, events: None, outcome: str, expected: list[str]
) -> None:
    assert shown(client_for(viewer).get(f"/audit/?outcome={outcome}")) == expected


def test_it_ignores_an_unknown_outcome_and_says_so(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/?outcome=exploded&actor=alice-admin")
    assert response.status_code == 200
    # The other filters still apply.
    assert shown(response) == ["services.service.updated"]
    content = response.content.decode()
    assert 'data-testid="filter-problems"' in content
    assert "Outcome &quot;exploded&quot; ignored" in content
    assert "not one of the available choices" in content


def test_it_filters_by_object_as_the_services_pages_link(viewer: Any, events: None) -> None:
    response = client_for(viewer).get(f"/audit/?target_type={TARGET_TYPE}&target_id=7")
    assert shown(response) == ["operation.queued"]
    assert "Only events about" in response.content.decode()
    assert shown(client_for(viewer).get(f"/audit/?target_type={TARGET_TYPE}&target_id=8")) == []


def test_it_filters_by_operation(viewer: Any, events: None) -> None:
    assert shown(client_for(viewer).get("/audit/?operation=12")) == ["operation.succeeded"]


def test_it_ignores_an_operation_that_is_not_a_number(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/?operation=twelve")
    assert len(shown(response)) == 4
    assert "Operation &quot;twelve&quot; ignored" in response.content.decode()


def test_it_searches_target_label_and_reason(viewer: Any, events: None) -> None:
    client = client_for(viewer)
    assert shown(client.get("/audit/?q=API")) == ["operation.queued"]
    assert shown(client.get("/audit/?q=runbook")) == ["services.service.updated"]


def test_it_combines_filters(viewer: Any, events: None) -> None:
    response = client_for(viewer).get(
        "/audit/?actor=olga-operator&action=operation.&outcome=failed"
    )
    assert shown(response) == ["operation.succeeded"]


def test_it_treats_sql_in_the_search_as_text(viewer: Any, events: None) -> None:
    attack = "'; DROP TABLE audit_auditevent; --"
    record("test.hostile", actor=None, reason=f"pasted {attack}")
    response = client_for(viewer).get("/audit/", {"q": attack})
    assert response.status_code == 200
    assert shown(response) == ["test.hostile"]
    assert AuditEvent.objects.filter(action="test.hostile").count() == 1
    assert verify_chain().ok


def test_it_escapes_html_in_the_search_and_the_rows(viewer: Any, events: None) -> None:
    script = "<script>alert(1)</script>"
    record("test.hostile", actor=None, target=AuditTarget("x", "1", script), reason=script)
    response = client_for(viewer).get("/audit/", {"q": script})
    content = response.content.decode()
    assert shown(response) == ["test.hostile"]
    assert script not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<table" in content


def test_it_says_which_value_was_too_long(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/", {"actor": "x" * 151})
    assert len(shown(response)) == 4
    assert "Actor" in response.content.decode()
    assert "at most 150 characters" in response.content.decode()


def test_a_null_character_in_the_search_is_refused_not_sent_to_the_database(
    viewer: Any, events: None
) -> None:
    response = client_for(viewer).get("/audit/", {"q": "api\x00"})
    assert response.status_code == 200
    assert len(shown(response)) == 4
    assert "Null characters are not allowed" in response.content.decode()


def test_it_names_parameters_that_are_not_filters(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/?colour=red")
    assert len(shown(response)) == 4
    assert "not a filter of this page" in response.content.decode()


@override_settings(TIME_ZONE="Europe/Paris")
def test_it_filters_by_inclusive_days_in_the_portal_time_zone(viewer: Any) -> None:
    # 23:30 UTC on 1 March is already 2 March in Paris.
    for action, moment in [
        ("test.feb", datetime(2026, 2, 28, 22, 59, tzinfo=UTC)),  # 23:59 on 28 Feb in Paris
        ("test.march-first", datetime(2026, 2, 28, 23, 0, tzinfo=UTC)),  # 00:00 on 1 March
        ("test.march-second", datetime(2026, 3, 1, 23, 30, tzinfo=UTC)),
    ]:
        with time_machine.travel(moment, tick=False):
            record(action, actor=None)
    client = client_for(viewer)
    assert shown(client.get("/audit/?since=2026-03-01&until=2026-03-01")) == ["test.march-first"]
    assert shown(client.get("/audit/?until=2026-02-28")) == ["test.feb"]
    assert shown(client.get("/audit/?since=2026-03-02")) == ["test.march-second"]
    assert len(shown(client.get("/audit/?since=2026-02-28&until=2026-03-02"))) == 3


def test_a_reversed_date_range_shows_nothing_and_says_why(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/?since=2026-03-02&until=2026-03-01")
    assert response.status_code == 200
    assert shown(response) == []
    content = response.content.decode()
    assert REVERSED_RANGE in content
    assert "No event matches" not in content


@pytest.mark.parametrize("value", ["yesterday", "2026-02-30", "99999-01-01"])
def test_it_ignores_a_date_it_cannot_read(viewer: Any, events: None, value: str) -> None:
    response = client_for(viewer).get(f"/audit/?since={value}")
    assert response.status_code == 200
    assert len(shown(response)) == 4
    assert "From" in response.content.decode()


def test_the_last_day_of_the_calendar_does_not_overflow(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/?since=0001-01-01&until=9999-12-31")
    assert len(shown(response)) == 4


@pytest.mark.parametrize("cursor", ["abc", "-5", "0", "1e3", "99999999999999999999999"])
def test_a_tampered_cursor_is_ignored_with_a_message(
    viewer: Any, events: None, cursor: str
) -> None:
    response = client_for(viewer).get(f"/audit/?before={cursor}")
    assert response.status_code == 200
    assert len(shown(response)) == 4
    assert "Page cursor" in response.content.decode()


def test_a_cursor_past_the_end_says_there_is_nothing_older(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/?before=1")
    assert shown(response) == []
    assert "No older event" in response.content.decode()


def test_the_cursor_keeps_the_filters(viewer: Any) -> None:
    for index in range(120):
        record("test.event", actor=None, outcome="denied" if index % 2 else "succeeded")
    client = client_for(viewer)
    first = client.get("/audit/?outcome=denied")
    assert len(first.context["events"]) == 50
    next_query = first.context["next_query"]
    assert "outcome=denied" in next_query
    assert "before=" in next_query
    second = client.get(f"/audit/?{next_query}")
    assert len(second.context["events"]) == 10
    assert {event.outcome for event in second.context["events"]} == {"denied"}
    # The largest cursor a bigint holds is just a cursor.
    huge = client.get(f"/audit/?outcome=denied&before={2**63 - 1}")
    assert len(huge.context["events"]) == 50


def test_htmx_gets_only_the_results_with_the_messages(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/?outcome=nope", headers={"HX-Request": "true"})
    content = response.content.decode()
    assert content.lstrip().startswith('<div id="results">')
    assert "<nav" not in content
    assert "<form" not in content
    assert "Outcome &quot;nope&quot; ignored" in content
    assert "/audit/export.csv" in content


def test_the_export_links_carry_the_filters_but_not_the_cursor(viewer: Any, events: None) -> None:
    response = client_for(viewer).get("/audit/?outcome=failed&before=3&outcome2=x")
    assert response.context["export_csv_url"] == "/audit/export.csv?outcome=failed"
    assert response.context["export_jsonl_url"] == "/audit/export.jsonl?outcome=failed"
    assert 'href="/audit/export.csv?outcome=failed"' in response.content.decode()


def test_the_page_works_without_javascript(viewer: Any, events: None) -> None:
    content = client_for(viewer).get("/audit/").content.decode()
    assert 'method="get" action="/audit/"' in content
    assert 'type="date" name="since"' in content


def test_rows_link_to_their_objects_in_one_query_per_kind(viewer: Any, admin: Any) -> None:
    api, web = make_service_target("api"), make_service_target("web")
    operation = make_operation(admin)
    for target in (api, web, api):
        record(
            "operation.queued", actor=admin, target=AuditTarget(TARGET_TYPE, str(target.pk), "t")
        )
    record(
        "services.service.updated",
        actor=admin,
        target=AuditTarget("services.service", str(web.service.pk), "web"),
    )
    record("operation.started", actor=None, operation_id=operation.pk)
    record("auth.user.created", actor=admin, target=AuditTarget("auth.user", str(admin.pk), "a"))
    record("odd.event", actor=None, target=AuditTarget(TARGET_TYPE, "not-a-number", "odd"))
    record("gone.event", actor=None, target=AuditTarget(TARGET_TYPE, "999999", "gone"))

    with CaptureQueriesContext(connection) as queries:
        response = client_for(viewer).get("/audit/")
    # The filter form's service and environment choices are two more, without an IN.
    lookups = [
        q["sql"]
        for q in queries.captured_queries
        if "services_" in q["sql"] and " IN (" in q["sql"]
    ]
    assert len(lookups) == 2  # targets (with their service and environment), services
    urls = {event.action: url for event, url in response.context["rows"]}
    assert urls["operation.queued"] == api.get_absolute_url()
    assert urls["services.service.updated"] == "/services/web/"
    assert urls["operation.started"] == f"/operations/{operation.pk}/"
    assert urls["auth.user.created"] == ""
    assert urls["odd.event"] == ""
    assert urls["gone.event"] == ""
    assert f'href="{api.get_absolute_url()}"' in response.content.decode()


def test_object_url_of_one_event(admin: Any) -> None:
    target = make_service_target("api")
    event = record("x", actor=admin, target=AuditTarget(TARGET_TYPE, str(target.pk), "api"))
    assert object_url(event) == "/services/api/?env=production"


def test_filtered_events_takes_cleaned_values(events: None) -> None:
    audit_filter = read_filters(QueryDict("outcome=denied"))
    assert [event.action for event in filtered_events(audit_filter.cleaned)] == ["access.denied"]
    assert audit_filter.summary() == "outcome is denied"


def test_a_user_without_a_role_may_not_see_the_history(nobody: Any) -> None:
    assert client_for(nobody).get("/audit/").status_code == 403


def test_the_list_refuses_post(viewer: Any) -> None:
    assert client_for(viewer).post("/audit/").status_code == 405


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL plans only")
def test_the_filters_have_indexes_on_postgresql(db: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'audit_auditevent'")
        names = {row[0] for row in cursor.fetchall()}
    assert {"audit_event_actor_seq", "audit_event_outcome_seq"} <= names
    # The test server's user is a superuser, so pg_trgm could be created.
    assert {"audit_event_label_trgm", "audit_event_reason_trgm"} <= names


def test_date_filters_keep_an_event_stamped_by_a_machine_whose_clock_lags(viewer: Any) -> None:
    # The date filters also bound the sequence numbers (fast pages far back); an event written
    # later by a machine whose clock is 30 minutes behind must still fall on its own day.
    stamps = [
        ("early", datetime(2026, 3, 9, 12, 0, tzinfo=UTC)),
        ("on-time", datetime(2026, 3, 10, 0, 10, tzinfo=UTC)),
        ("lagging", datetime(2026, 3, 9, 23, 50, tzinfo=UTC)),  # written after "on-time"
        ("late", datetime(2026, 3, 11, 9, 0, tzinfo=UTC)),
    ]
    for label, moment in stamps:
        with time_machine.travel(moment, tick=False):
            record("test.clock", actor=None, actor_label=label)

    def labels(query: str) -> list[str]:
        return [event.actor_label for event in read_filters(QueryDict(query)).events()]

    with override_settings(TIME_ZONE="UTC"):
        assert labels("since=2026-03-10&until=2026-03-10") == ["on-time"]
        assert labels("until=2026-03-09") == ["lagging", "early"]
        assert labels("since=2026-03-11") == ["late"]
        assert labels("since=2027-01-01") == []
