"""The managers' figures: known incidents at controlled times give exact counts, mean times
to acknowledge and resolve, and post-mortem compliance, with their trends; the page shows
them with a server-rendered chart, in a fixed number of queries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.incidents.actions import do_acknowledge_incident, do_resolve_incident
from apps.incidents.figures import (
    figures_report,
    incident_figures,
    period_bounds,
    week_start,
    weekly_chart,
)
from apps.incidents.models import Incident
from apps.incidents.postmortems import do_add_action_item, do_complete_postmortem
from tests.conftest import client_for
from tests.factories import make_incident

pytestmark = pytest.mark.core

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
PERIOD_START = NOW - timedelta(days=30)  # 1 March, 12:00
COMPLETE = {"summary": "s", "impact": "i", "root_cause": "r"}


def incident_at(
    actor: Any,
    severity: str,
    declared: datetime,
    *,
    acknowledged: timedelta | None = None,
    resolved: timedelta | None = None,
    postmortem: timedelta | None = None,
) -> Incident:
    """An incident through the actions, each step at its own time (after the declaration;
    the post-mortem after the resolution)."""
    with time_machine.travel(declared, tick=False):
        incident = make_incident(actor, severity)
    if acknowledged is not None:
        with time_machine.travel(declared + acknowledged, tick=False):
            do_acknowledge_incident(actor, incident)
    if resolved is not None:
        with time_machine.travel(declared + resolved, tick=False):
            incident = do_resolve_incident(actor, incident, current_status="Fixed")
        if postmortem is not None:
            with time_machine.travel(declared + resolved + postmortem, tick=False):
                do_add_action_item(
                    actor, incident, title="Follow up", owner=actor, due_date=date(2026, 12, 31)
                )
                do_complete_postmortem(actor, incident, COMPLETE)
    incident.refresh_from_db()
    return incident


@pytest.fixture
def history(operator: Any) -> dict[str, Incident]:
    day = timedelta(days=1)
    hour = timedelta(hours=1)
    minute = timedelta(minutes=1)
    return {
        # The current period (30 days to 31 March 12:00).
        "sev1_on_time": incident_at(
            operator,
            "SEV-1",
            datetime(2026, 3, 10, 10, 0, tzinfo=UTC),
            acknowledged=4 * minute,
            resolved=60 * minute,
            postmortem=24 * hour,
        ),
        "sev2_late": incident_at(
            operator,
            "SEV-2",
            datetime(2026, 3, 12, 10, 0, tzinfo=UTC),
            acknowledged=10 * minute,
            resolved=120 * minute,
            postmortem=50 * hour,
        ),
        "sev3": incident_at(
            operator,
            "SEV-3",
            datetime(2026, 3, 20, 10, 0, tzinfo=UTC),
            acknowledged=30 * minute,
            resolved=90 * minute,
        ),
        # Resolved 2 hours before NOW: its 48 hours still run, so it counts neither way.
        "sev1_pending": incident_at(
            operator,
            "SEV-1",
            datetime(2026, 3, 30, 10, 0, tzinfo=UTC),
            acknowledged=2 * minute,
            resolved=day,
        ),
        "sev4_open": incident_at(operator, "SEV-4", datetime(2026, 3, 25, 10, 0, tzinfo=UTC)),
        # Declared in the previous period, resolved in this one.
        "sev3_straddling": incident_at(
            operator,
            "SEV-3",
            datetime(2026, 2, 28, 12, 0, tzinfo=UTC),
            acknowledged=10 * minute,
            resolved=2 * day,
        ),
        # The previous period.
        "sev2_before": incident_at(
            operator,
            "SEV-2",
            datetime(2026, 2, 10, 10, 0, tzinfo=UTC),
            acknowledged=20 * minute,
            resolved=3 * hour,
            postmortem=47 * hour,
        ),
        # Before both periods: counted nowhere.
        "ancient": incident_at(
            operator,
            "SEV-1",
            datetime(2025, 12, 1, 10, 0, tzinfo=UTC),
            acknowledged=minute,
            resolved=hour,
        ),
    }


def test_it_computes_exact_figures_for_known_incidents(history: dict[str, Incident]) -> None:
    figures = incident_figures(PERIOD_START, NOW, now=NOW)

    assert [(row.key, row.count) for row in figures.by_severity] == [
        ("SEV-1", 2),
        ("SEV-2", 1),
        ("SEV-3", 1),
        ("SEV-4", 1),
    ]
    assert figures.total == 5
    # Declared in the period and acknowledged: 4, 10, 30 and 2 minutes.
    assert figures.acknowledged == 4
    assert figures.mean_time_to_acknowledge == timedelta(minutes=11, seconds=30)
    # Resolved in the period: 60 min, 120 min, 90 min, 24 h, and 48 h (declared before).
    assert figures.resolved == 5
    assert figures.mean_time_to_resolve == timedelta(minutes=(60 + 120 + 90 + 1440 + 2880) / 5)
    # SEV-1/SEV-2 resolved in the period: on time, late, and one whose 48 hours still run.
    assert figures.postmortems_due == 2
    assert figures.postmortems_on_time == 1
    assert figures.postmortems_pending == 1
    assert figures.compliance == 0.5


def test_the_previous_period_and_the_trends(history: dict[str, Incident]) -> None:
    report = figures_report("30d", now=NOW)
    previous = report.comparison.previous
    assert (report.period.previous_start, report.period.previous_end) == (
        NOW - timedelta(days=60),
        PERIOD_START,
    )
    assert [(row.key, row.count) for row in previous.by_severity if row.count] == [
        ("SEV-2", 1),
        ("SEV-3", 1),
    ]
    assert previous.mean_time_to_acknowledge == timedelta(minutes=15)
    assert previous.resolved == 1
    assert previous.mean_time_to_resolve == timedelta(hours=3)
    assert previous.compliance == 1.0

    trends = {trend.label: trend for trend in report.comparison.headline}
    declared = trends["Incidents declared"]
    assert (declared.current, declared.previous, declared.change) == ("5", "2", "+3")
    assert (declared.direction, declared.verdict) == ("up", "worse")
    acknowledge = trends["Mean time to acknowledge"]
    assert (acknowledge.current, acknowledge.previous) == ("11 min", "15 min")
    assert (acknowledge.direction, acknowledge.verdict, acknowledge.change) == (
        "down",
        "better",
        "−3 min",
    )
    compliance = trends["Post-mortems within 48 h"]
    assert (compliance.current, compliance.previous, compliance.change) == (
        "50 %",
        "100 %",
        "−50 points",
    )
    assert compliance.verdict == "worse"
    assert compliance.note == "1 of 2 on time, 1 still within their 48 h"
    by_severity = {trend.label: trend for trend in report.comparison.by_severity}
    assert by_severity["SEV-1 Complete outage"].change == "+2"
    assert by_severity["SEV-3 Minor degradation"].verdict == "same"


def test_the_weekly_chart_counts_incidents_per_week_by_severity(
    history: dict[str, Incident],
) -> None:
    chart = figures_report("30d", now=NOW).chart
    weeks = {week.start.date(): week.counts for week in chart.weeks}
    assert chart.weeks[0].start == datetime(2026, 2, 23, tzinfo=UTC)  # the Monday before
    assert chart.weeks[-1].start == datetime(2026, 3, 30, tzinfo=UTC)
    assert weeks[date(2026, 3, 9)] == [1, 1, 0, 0]
    assert weeks[date(2026, 3, 16)] == [0, 0, 1, 0]
    assert weeks[date(2026, 3, 23)] == [0, 0, 0, 1]
    assert weeks[date(2026, 3, 30)] == [1, 0, 0, 0]
    # The incident of 28 February belongs to the previous period.
    assert weeks[date(2026, 2, 23)] == [0, 0, 0, 0]
    assert sum(week.total for week in chart.weeks) == 5
    busiest = max(chart.weeks, key=lambda week: week.total)
    assert busiest.segments[0].tone == "text-danger"
    assert "5 in all" in chart.aria_label


def test_a_quarter_compares_with_the_same_days_of_the_previous_quarter() -> None:
    now = datetime(2026, 5, 16, 12, 0, tzinfo=UTC)
    period = period_bounds("quarter", now)
    assert period.start == datetime(2026, 4, 1, tzinfo=UTC)
    assert period.end == now
    assert period.previous_start == datetime(2026, 1, 1, tzinfo=UTC)
    assert period.previous_end == datetime(2026, 1, 1, tzinfo=UTC) + (now - period.start)
    assert period.label.startswith("Q2 2026 so far")
    january = period_bounds("quarter", datetime(2026, 1, 2, tzinfo=UTC))
    assert january.previous_start == datetime(2025, 10, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        period_bounds("forever", now)


def test_no_incident_gives_empty_figures_not_errors(db: None) -> None:
    figures = incident_figures(PERIOD_START, NOW, now=NOW)
    assert figures.total == 0
    assert figures.mean_time_to_acknowledge is None
    assert figures.compliance is None


# --- The page -----------------------------------------------------------------------------


def test_it_shows_the_figures_to_a_viewer(history: dict[str, Incident], viewer: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        response = client_for(viewer).get("/incidents/figures/?period=30d")
    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" in content
    assert "Mean time to acknowledge" in content
    assert "11 min" in content
    assert "50 %" in content
    assert "1 of 2 on time" in content
    assert "worse" in content and "better" in content  # trends in words, not colour alone
    assert 'data-testid="weekly-chart"' in content
    assert "<svg" in content
    assert "<script" not in content.split("</head>")[1]
    assert 'aria-current="page">30 days' in content


def test_the_period_switch_gets_only_the_figures(history: dict[str, Incident], viewer: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        response = client_for(viewer).get(
            "/incidents/figures/?period=7d", headers={"HX-Request": "true"}
        )
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<div id="figures">')
    assert "<html" not in content
    assert 'aria-current="page">7 days' in content
    # Declared on 25 and 30 March.
    assert '<p class="fs-3 fw-semibold mb-1">2</p>' in content


def test_an_unknown_period_falls_back_and_says_so(viewer: Any) -> None:
    response = client_for(viewer).get("/incidents/figures/?period=1y")
    assert response.status_code == 200
    assert "Unknown period" in response.content.decode()
    assert response.context["chosen"] == "30d"
    assert "No incident was declared" in response.content.decode()


def test_the_figures_page_refuses_who_may_not_and_other_methods(nobody: Any, viewer: Any) -> None:
    assert client_for(nobody).get("/incidents/figures/").status_code == 403
    assert client_for(viewer).post("/incidents/figures/").status_code == 405
    anonymous = Client().get("/incidents/figures/")
    assert anonymous.status_code == 302
    assert "/accounts/login/" in anonymous["Location"]


def test_the_figures_take_a_fixed_number_of_queries(operator: Any, viewer: Any) -> None:
    client = client_for(viewer)

    def queries() -> int:
        with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as captured:
            assert client.get("/incidents/figures/?period=90d").status_code == 200
        return len(captured)

    incident_at(operator, "SEV-1", NOW - timedelta(days=3), acknowledged=timedelta(minutes=1))
    queries()  # the first request of a session warms caches up
    few = queries()
    for number in range(8):
        incident_at(
            operator,
            ["SEV-1", "SEV-2", "SEV-3"][number % 3],
            NOW - timedelta(days=5 + 10 * number),
            acknowledged=timedelta(minutes=number + 1),
            resolved=timedelta(hours=2),
            postmortem=timedelta(hours=3) if number % 3 != 2 else None,
        )
    assert queries() == few


def test_the_figures_and_the_chart_cover_the_incidents_given(
    history: dict[str, Incident],
) -> None:
    # Only the SEV-1s: on time (4 min to acknowledge) and pending (2 min).
    sev1 = Incident.objects.filter(severity__key="SEV-1")
    figures = incident_figures(PERIOD_START, NOW, now=NOW, incidents=sev1)
    assert figures.total == 2
    assert figures.mean_time_to_acknowledge == timedelta(minutes=3)
    assert (figures.postmortems_due, figures.postmortems_on_time) == (1, 1)
    assert figures.postmortems_pending == 1
    chart = weekly_chart(PERIOD_START, NOW, incidents=sev1)
    assert sum(week.total for week in chart.weeks) == 2


def test_week_start_is_the_monday_of_the_week_in_utc() -> None:
    assert week_start(datetime(2026, 3, 15, 23, 30, tzinfo=UTC)) == datetime(2026, 3, 9, tzinfo=UTC)
    assert week_start(datetime(2026, 3, 16, 0, 0, tzinfo=UTC)) == datetime(2026, 3, 16, tzinfo=UTC)
