"""/reports/: the delivery and incident-response figures on a fixed fixture of rollouts,
repairs, incidents and backups, each compared with values computed by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit import reports
from apps.backups.models import Backup, BackupStorage, DatabaseTarget, RestoreRun
from apps.incidents import figures
from apps.incidents.actions import do_acknowledge_incident, do_resolve_incident
from apps.incidents.postmortems import do_add_action_item, do_complete_postmortem
from apps.operations.choices import State
from apps.services.models import DeploymentTarget, Service
from tests.audit.test_history import make_service_target
from tests.conftest import client_for
from tests.factories import make_incident, make_operation

pytestmark = pytest.mark.core

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)  # a Thursday; 7d = [13 Mar 12:00, 20 Mar 12:00)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def rollout(user: Any, target: DeploymentTarget, finished: datetime, **fields: Any) -> Any:
    fields.setdefault("state", State.SUCCEEDED)
    return make_operation(
        user,
        kind="services.rollout",
        target_key=f"services.target:{target.pk}",
        created_at=finished - timedelta(minutes=5),
        finished_at=finished,
        **fields,
    )


def repair(user: Any, target: DeploymentTarget, kind: str, when: datetime, **fields: Any) -> Any:
    fields.setdefault("state", State.SUCCEEDED)
    return make_operation(
        user,
        kind=f"services.{kind}",
        target_key=f"services.target:{target.pk}",
        created_at=when,
        finished_at=when + timedelta(minutes=1),
        **fields,
    )


def incident(
    user: Any, declared: datetime, resolved: datetime, *, ack: datetime | None = None, **kw: Any
) -> Any:
    with time_machine.travel(declared, tick=False):
        declared_incident = make_incident(user, **kw)
    if ack:
        with time_machine.travel(ack, tick=False):
            do_acknowledge_incident(user, declared_incident)
    with time_machine.travel(resolved, tick=False):
        return do_resolve_incident(user, declared_incident, current_status="Fixed.")


class World:
    def __init__(self, operator: Any) -> None:
        self.api = make_service_target("api")  # team ops
        self.web = make_service_target("web")
        Service.objects.filter(pk=self.web.service_id).update(team="shop")
        self.web.service.refresh_from_db()
        a, b = self.api, self.web
        # Current week span [13 Mar 12:00, 20 Mar 12:00).
        rollout(operator, a, at(14, 10))  # r1: rolled back 10 h later (and restarted): failed
        repair(operator, a, "rollback", at(14, 20))
        repair(operator, a, "restart", at(14, 21))
        rollout(operator, a, at(15, 10))  # r2: restarted 25 h later: not a failure
        repair(operator, a, "restart", at(16, 11))
        rollout(operator, a, at(17, 10))  # r3: incident on api 12 h later: failed
        rollout(operator, a, at(18, 10))  # r4: a rejected rollback says nothing: fine
        repair(operator, a, "rollback", at(18, 13), state=State.REJECTED)
        rollout(operator, a, at(18, 12), state=State.FAILED)  # not a deployment
        rollout(operator, b, at(16, 9))  # r6 on web: the api incident is not its service
        # Previous span [6 Mar 12:00, 13 Mar 12:00): one rollout, rolled back.
        rollout(operator, a, at(10, 10))
        repair(operator, a, "rollback", at(10, 11))
        # Incidents: the current period resolves three, the previous one.
        self.i1 = incident(
            operator, at(17, 22), at(18, 0), ack=at(17, 22, 10), services=[a.service]
        )  # SEV-2 on api: 2 h to restore, 10 min to acknowledge
        incident(
            operator,
            at(18, 8),
            at(18, 14),
            ack=at(18, 8, 30),
            severity="SEV-3",
            services=[b.service],
        )  # 6 h, 30 min
        incident(operator, at(19, 0), at(19, 1), severity="SEV-3")  # 1 h; acknowledged by resolving
        incident(operator, at(8, 10), at(8, 14), ack=at(8, 10, 5), severity="SEV-3")  # before


@pytest.fixture
def world(operator: Any) -> World:
    return World(operator)


def report(scope: reports.Scope | None = None) -> reports.Report:
    with time_machine.travel(NOW, tick=False):
        return reports.build_report("7d", scope or reports.Scope())


def card(built: reports.Report, label: str) -> figures.Trend:
    return next(item.trend for item in built.cards if item.trend.label.startswith(label))


def test_it_computes_the_delivery_figures_by_hand(world: World) -> None:
    built = report()
    frequency = card(built, "Deployment frequency")
    assert (frequency.current, frequency.previous) == ("5.0 per week", "1.0 per week")
    assert frequency.verdict == "better"
    failure = card(built, "Change failure rate")
    assert (failure.current, failure.previous, failure.note) == ("40 %", "100 %", "2 of 5 rollouts")
    assert (failure.change, failure.verdict) == ("−60 points", "better")


def test_the_change_failure_rule(world: World, operator: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        period = figures.period_bounds("7d")
        marked = {
            op.finished_at: op.failed  # type: ignore[attr-defined]
            for op in reports.rollouts(reports.Scope(), period.start, period.end)
        }
    assert marked == {
        at(14, 10): True,  # rollback within 24 h (and a restart: counted once)
        at(15, 10): False,  # restart after 25 h
        at(17, 10): True,  # incident on its service within 24 h
        at(18, 10): False,  # rejected rollback
        at(16, 9): False,  # the incident is on another service
    }


def test_it_narrows_the_delivery_figures_to_a_team_or_a_service(world: World) -> None:
    team = report(reports.Scope(team="ops"))
    assert card(team, "Change failure rate").note == "2 of 4 rollouts"
    web = report(reports.Scope(service=world.web.service))
    assert card(web, "Change failure rate").note == "0 of 1 rollouts"
    assert card(web, "Time to restore").note == "median 6 h, over 1 resolved"


def test_it_computes_time_to_restore_and_reuses_the_incident_figures(world: World) -> None:
    built = report()
    restore = card(built, "Time to restore")
    assert (restore.current, restore.previous) == ("3 h", "4 h")
    assert restore.note == "median 2 h, over 3 resolved"
    acknowledge = card(built, "Mean time to acknowledge")
    # Resolving acknowledges an incident nobody acknowledged: (10 + 30 + 60) / 3 min.
    assert acknowledge.current == "33 min"
    assert acknowledge.note == "over 3 acknowledged"
    compliance = card(built, "Post-mortems")
    assert (compliance.current, compliance.note) == ("0 %", "0 of 1 on time")
    # The mean is the incident desk's own (apps.incidents.figures).
    with time_machine.travel(NOW, tick=False):
        period = figures.period_bounds("7d")
        desk = figures.incident_figures(period.start, period.end)
    assert desk.mean_time_to_resolve == timedelta(hours=3)


def test_the_weekly_bars(world: World) -> None:
    built = report()
    deploys = next(item.chart for item in built.cards if item.trend.label.startswith("Deploy"))
    assert deploys is not None
    # Mondays 10 Mar and 17 Mar: r1, r2, r6 (from 13 Mar 12:00) then r3, r4.
    assert [week.text for week in deploys.weeks] == ["3", "2"]
    assert "failed" in deploys.aria_label or "Deployments" in deploys.aria_label


def test_backups_per_target_and_last_verified_restore(operator: Any) -> None:
    storage = BackupStorage.objects.create(name="s", kind="s3", bucket="reports-bucket")
    orders, users = (
        DatabaseTarget.objects.create(
            name=name, host="127.0.0.1", port=9, database=name, user="u", storage=storage
        )
        for name in ("orders", "users")
    )

    def backup(target: DatabaseTarget, state: str, started: datetime) -> Backup:
        return Backup.objects.create(
            target=target, storage=storage, key=f"k{started:%d%H}", state=state, started_at=started
        )

    backup(orders, "succeeded", at(14, 1))
    backup(orders, "succeeded", at(15, 1))
    first = backup(orders, "failed", at(16, 1))
    backup(orders, "succeeded", at(10, 1))  # previous period
    backup(users, "running", at(19, 1))
    for finished, state in ((at(15, 3), "passed"), (at(16, 3), "failed"), (at(12, 3), "passed")):
        RestoreRun.objects.create(
            kind="test",
            backup=first,
            target=orders,
            database="scratch",
            state=state,
            finished_at=finished,
        )
    rows = {row.target.name: row for row in report().backups}
    assert (rows["orders"].succeeded, rows["orders"].failed) == (2, 1)
    assert (rows["orders"].previous_succeeded, rows["orders"].previous_failed) == (1, 0)
    assert rows["orders"].last_verified == at(15, 3)
    assert (rows["users"].succeeded, rows["users"].failed, rows["users"].last_verified) == (
        0,
        0,
        None,
    )


def test_the_number_of_queries_does_not_grow_with_the_data(operator: Any, viewer: Any) -> None:
    target = make_service_target("api")
    client = client_for(viewer)

    def queries() -> int:
        with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as captured:
            assert client.get("/reports/?period=30d&team=ops").status_code == 200
        return len(captured)

    rollout(operator, target, at(18, 10))
    queries()  # the first request of a session costs a few more
    one = queries()
    for hour in range(19):
        rollout(operator, target, at(12, hour))
        repair(operator, target, "rollback", at(12, hour, 30))
    incident(operator, at(17, 1), at(17, 2), services=[target.service])
    assert queries() == one


def test_the_page_shows_the_figures_and_ignores_bad_choices(world: World, viewer: Any) -> None:
    client = client_for(viewer)
    with time_machine.travel(NOW, tick=False):
        response = client.get("/reports/?period=7d&service=api")
        assert response.status_code == 200
        content = response.content.decode()
        assert "service api" in content
        assert content.count('data-testid="report-chart"') >= 4
        assert 'media="print"' in content and "Print" in content
        bad = client.get("/reports/?period=1y&team=<script>x</script>&service=nope")
        printable = client.get("/reports/?period=quarter&print=1")
        fragment = client.get("/reports/?period=30d", headers={"HX-Request": "true"})
    assert bad.status_code == 200
    text = bad.content.decode()
    assert "<script>x</script>" not in text
    assert "Select a valid choice" in text and "No service &quot;nope&quot;" in text
    assert "the last 30 days" in text  # the default period
    assert printable.status_code == 200 and 'media="all"' in printable.content.decode()
    assert fragment.status_code == 200 and b'<nav class="navbar' not in fragment.content


def test_the_audit_page_links_to_the_reports(viewer: Any) -> None:
    assert b'href="/reports/"' in client_for(viewer).get("/audit/").content


def test_acknowledgement_and_post_mortems_are_narrowed_to_the_scope(
    world: World, operator: Any
) -> None:
    # A SEV-2 on web, acknowledged after 20 min, its post-mortem done 24 h after resolving.
    late_night = incident(
        operator,
        at(13, 20),
        at(14, 0),
        ack=at(13, 20, 20),
        services=[world.web.service],
    )
    with time_machine.travel(at(15, 0), tick=False):
        do_add_action_item(
            operator, late_night, title="Follow up", owner=operator, due_date=date(2025, 12, 31)
        )
        do_complete_postmortem(
            operator, late_night, {"summary": "s", "impact": "i", "root_cause": "r"}
        )

    def figures_of(scope: reports.Scope) -> tuple[str, str, str, str]:
        built = report(scope)
        acknowledge, compliance = card(built, "Mean time to acknowledge"), card(built, "Post")
        return acknowledge.current, acknowledge.note, compliance.current, compliance.note

    # Everything: 10, 30, 60 (acknowledged by resolving) and 20 min; i1 late, the new one
    # on time.
    assert figures_of(reports.Scope()) == (
        "30 min",
        "over 4 acknowledged",
        "50 %",
        "1 of 2 on time",
    )
    # api (team ops) has only i1: 10 min, its post-mortem missing after 60 h.
    assert figures_of(reports.Scope(team="ops")) == (
        "10 min",
        "over 1 acknowledged",
        "0 %",
        "0 of 1 on time",
    )
    # web (team shop): i2 (30 min, SEV-3: no post-mortem) and the new one (20 min, on time).
    shop = ("25 min", "over 2 acknowledged", "100 %", "1 of 1 on time")
    assert figures_of(reports.Scope(team="shop")) == shop
    assert figures_of(reports.Scope(service=world.web.service)) == shop
    # The incidents chart is narrowed the same way.
    web = report(reports.Scope(service=world.web.service))
    assert sum(week.total for week in web.incidents_chart.weeks) == 2
    assert sum(week.total for week in report().incidents_chart.weeks) == 4


def test_the_page_narrows_the_incident_figures_too(world: World, viewer: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        content = client_for(viewer).get("/reports/?period=7d&team=ops").content.decode()
    assert "over 1 acknowledged" in content
    assert "not narrowed by team or service" not in content
