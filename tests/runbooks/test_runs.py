"""Guided runs: a section's numbered steps, checklist and commands become a run; each step is
ticked with a note, skipped with a reason, or done through its "Run in portal" button (on a
real worker); the run and every step are audited and, started from an incident, written into
its timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.incidents.actions import do_resolve_incident
from apps.incidents.choices import EntryKind
from apps.incidents.hooks import open_incidents
from apps.incidents.models import TimelineEntry
from apps.operations import actions as operations
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.runbooks.actions import do_import_runbook
from apps.runbooks.models import Runbook, RunbookRun, RunState, RunStep, StepState
from apps.runbooks.procedures import procedure
from apps.runbooks.rendering import parse
from apps.runbooks.run_hooks import origin_of
from apps.runbooks.runs import RunRefused, do_finish_step, do_start_run
from apps.services.choices import ClusterAccess
from apps.services.models import Cluster, DeploymentTarget, Environment, Service
from tests.conftest import client_for
from tests.factories import make_incident
from tests.support.waiting import wait_for

DATA = Path(__file__).parent / "data"
ROSTERHUB = (DATA / "rosterhub-operations-runbook.md").read_text()
DB_ERRORS = "s-52-database-connection-errors"
SMALL = """# Ops

## Health check

Prose that is not a step.

1. Ping the portal
   ```bash
   kubectl get pods -n shop
   ```
2. **Look** at the logs:
   - the API's
   - the worker's

- [ ] Tell the team
- [x] Open the dashboard

## Notes

Nothing to do here.
"""


@pytest.fixture
def target(db: None) -> DeploymentTarget:
    service = Service.objects.create(name="RosterHub", slug="rosterhub", team="Ops")
    environment = Environment.objects.create(name="Production", slug="prod", is_production=True)
    cluster = Cluster.objects.create(name="main", access=ClusterAccess.IN_CLUSTER)
    return DeploymentTarget.objects.create(
        service=service,
        environment=environment,
        cluster=cluster,
        namespace="rosterhub",
        deployment="rosterhub-api",
        container="api",
    )


@pytest.fixture
def runbook(admin: Any) -> Runbook:
    return do_import_runbook(admin, title="RosterHub", service=None, source=ROSTERHUB)


def test_a_section_becomes_numbered_steps_checklist_and_commands() -> None:
    found = procedure(parse(SMALL), "s-health-check")

    assert found is not None and found.title == "Health check"
    assert [(step.kind, step.text) for step in found.steps] == [
        ("step", "Ping the portal"),
        ("step", "Look at the logs:"),
        ("check", "Tell the team"),
        ("check", "Open the dashboard"),
    ]
    assert found.steps[0].commands == ["kubectl get pods -n shop"]
    assert found.steps[1].details == ["the API's", "the worker's"]
    notes = procedure(parse(SMALL), "s-notes")
    assert notes is not None and notes.steps == []


def test_the_database_errors_section_has_its_checks_then_its_resolution() -> None:
    found = procedure(parse(ROSTERHUB), DB_ERRORS)

    assert found is not None
    assert [step.kind for step in found.steps] == ["command"] * 3 + ["step"] * 3
    assert found.steps[0].text == "Check DB connection"
    assert found.steps[0].commands == ['psql -h localhost -U rosterhub -d rosterhub -c "SELECT 1"']
    assert found.steps[3].text == "Terminate long-running queries: SELECT pg_terminate_backend(PID)"


def test_the_runbook_page_offers_to_start_only_sections_with_steps(
    operator: Any, viewer: Any, runbook: Runbook
) -> None:
    page = client_for(operator).get(f"{runbook.get_absolute_url()}?incident=7").content.decode()
    start = reverse("runbooks:run-start", args=[runbook.slug])

    assert f'href="{start}?section={DB_ERRORS}&amp;incident=7"' in page
    assert f"{start}?section=s-overview" not in page  # prose and a table, no steps
    assert (
        "Start this procedure"
        not in client_for(viewer).get(runbook.get_absolute_url()).content.decode()
    )


def test_from_an_incident_the_runbook_list_leads_to_runbooks_for_it(
    operator: Any, viewer: Any, runbook: Runbook
) -> None:
    incident = make_incident(operator)
    link = f'href="{reverse("runbooks:list")}?incident={incident.pk}"'
    assert link in client_for(operator).get(incident.get_absolute_url()).content.decode()
    assert link not in client_for(viewer).get(incident.get_absolute_url()).content.decode()
    page = client_for(operator).get(reverse("runbooks:list") + "?incident=12").content.decode()
    ignored = client_for(operator).get(reverse("runbooks:list") + "?incident=x").content.decode()

    assert f'href="{runbook.get_absolute_url()}?incident=12"' in page
    assert "?incident=" not in ignored


def test_an_operator_starts_a_run_from_an_incident(operator: Any, runbook: Runbook) -> None:
    incident = make_incident(operator, title="DB refused")
    url = reverse("runbooks:run-start", args=[runbook.slug])

    preview = client_for(operator).get(f"{url}?section={DB_ERRORS}&incident={incident.pk}")
    response = client_for(operator).post(url, {"section": DB_ERRORS, "incident": incident.pk})

    assert preview.status_code == 200 and "Check DB connection" in preview.content.decode()
    run = RunbookRun.objects.get()
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert (run.title, run.incident, run.started_by, run.state) == (
        "5.2 Database Connection Errors",
        incident,
        operator,
        RunState.OPEN,
    )
    assert run.steps.count() == 6
    event = AuditEvent.objects.get(action="runbooks.run_started")
    assert event.actor == operator and event.data["incident"] == incident.pk
    entry = TimelineEntry.objects.filter(incident=incident, kind=EntryKind.NOTE).latest("id")
    assert entry.author == operator and entry.data == {"runbook_run": run.pk, "phase": "started"}
    assert "5.2 Database Connection Errors" in entry.text and "6 steps" in entry.text


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("s-no-such-section", "no such section"),
        ("s-overview", "has no numbered steps"),
    ],
)
def test_a_section_without_steps_is_refused_with_a_message(
    operator: Any, runbook: Runbook, section: str, message: str
) -> None:
    response = client_for(operator).post(
        reverse("runbooks:run-start", args=[runbook.slug]), {"section": section}
    )

    assert response.status_code == 400 and message in response.content.decode()
    assert not RunbookRun.objects.exists()
    assert AuditEvent.objects.filter(action="runbooks.run_refused", outcome="denied").exists()


def test_a_resolved_incident_takes_no_new_run(operator: Any, runbook: Runbook) -> None:
    incident = make_incident(operator)
    do_resolve_incident(operator, incident, current_status="fixed")
    incident.refresh_from_db()

    with pytest.raises(RunRefused, match="open incident"):
        do_start_run(operator, runbook, DB_ERRORS, incident)
    assert not RunbookRun.objects.exists()


def test_steps_ticked_and_skipped_are_audited_and_in_the_timeline(
    operator: Any, runbook: Runbook
) -> None:
    incident = make_incident(operator)
    run = do_start_run(operator, runbook, DB_ERRORS, incident)
    first = run.steps.get(number=1)
    client = client_for(operator)

    response = client.post(
        reverse("runbooks:run-step", args=[first.pk]), {"note": "SELECT 1 answered"}
    )
    refused = client.post(
        reverse("runbooks:run-step", args=[run.steps.get(number=2).pk]), {"skip": ""}, follow=True
    )

    first.refresh_from_db()
    assert response.status_code == 302 and response["Location"].endswith("#step-1")
    assert (first.state, first.note, first.done_by) == (
        StepState.DONE,
        "SELECT 1 answered",
        operator,
    )
    assert "Say why step 2 is skipped" in refused.content.decode()
    assert run.steps.get(number=2).state == StepState.PENDING
    assert AuditEvent.objects.filter(action="runbooks.run_step_refused", outcome="denied").exists()
    done = AuditEvent.objects.get(action="runbooks.run_step_done")
    assert done.reason == "SELECT 1 answered" and done.data["step"] == 1
    texts = [
        entry.text for entry in TimelineEntry.objects.filter(incident=incident, kind=EntryKind.NOTE)
    ]
    assert any(
        text.startswith("Step 1 of runbook run") and "SELECT 1 answered" in text for text in texts
    )


def test_the_last_step_completes_the_run_and_a_finished_step_stays(
    operator: Any, runbook: Runbook
) -> None:
    run = do_start_run(operator, runbook, DB_ERRORS)
    steps = list(run.steps.all())
    for step in steps[:-1]:
        do_finish_step(operator, step, skipped=False, note="")
    do_finish_step(operator, steps[-1], skipped=True, note="not the last resort yet")

    run.refresh_from_db()
    assert run.state == RunState.COMPLETED and run.finished_at is not None
    assert AuditEvent.objects.filter(action="runbooks.run_completed").count() == 1
    with pytest.raises(RunRefused, match="completed"):
        do_finish_step(operator, steps[0], skipped=False, note="again")


def test_a_run_is_stopped_only_with_a_reason(operator: Any, runbook: Runbook) -> None:
    run = do_start_run(operator, runbook, DB_ERRORS)
    url = reverse("runbooks:run-stop", args=[run.pk])

    without = client_for(operator).post(url, {"reason": " "}, follow=True)
    run.refresh_from_db()
    assert run.state == RunState.OPEN and "Say why the run stops" in without.content.decode()

    client_for(operator).post(url, {"reason": "moved to the replica"})
    run.refresh_from_db()
    assert (run.state, run.stop_reason) == (RunState.STOPPED, "moved to the replica")
    assert AuditEvent.objects.get(action="runbooks.run_stopped").data == {"steps_left": 6}


def test_a_left_run_is_resumed_from_the_runbook_page_and_the_run_list(
    operator: Any, viewer: Any, runbook: Runbook
) -> None:
    run = do_start_run(operator, runbook, DB_ERRORS)
    do_finish_step(operator, run.steps.get(number=1), skipped=False, note="ok")

    page = client_for(operator).get(runbook.get_absolute_url()).content.decode()
    listed = client_for(viewer).get(reverse("runbooks:runs")).content.decode()
    shown = client_for(viewer).get(run.get_absolute_url()).content.decode()

    assert run.get_absolute_url() in page and "In progress" in page
    assert run.get_absolute_url() in listed
    assert "1 of 6 steps finished" in shown
    assert 'name="note"' not in shown  # viewers read, they do not tick
    tick = reverse("runbooks:run-step", args=[run.steps.get(number=2).pk])
    assert client_for(viewer).post(tick).status_code == 403


def test_a_step_button_carries_the_step_as_the_operations_origin(
    operator: Any, runbook: Runbook, target: DeploymentTarget
) -> None:
    source = (
        "# Deploys\n\n## Undo\n\n1. Roll back\n   ```bash\n"
        "   kubectl rollout undo deployment/rosterhub-api -n rosterhub\n   ```\n"
    )
    small = do_import_runbook(operator, title="Undo", service=None, source=source)
    run = do_start_run(operator, small, "s-undo")
    step = run.steps.get()

    page = client_for(operator).get(run.get_absolute_url()).content.decode()

    assert f"origin={origin_of(step)}" in page
    assert f"target={target.pk}" in page


def test_a_step_of_a_run_from_the_incident_passes_the_incidents_deploy_gate(
    operator: Any, target: DeploymentTarget
) -> None:
    # An open SEV-1 stops changes on its service except those started from it: a step of a
    # runbook run started from the incident is started from it too; another run's is not.
    incident = make_incident(operator, "SEV-1", services=[target.service])
    source = "## Undo\n\n1. Roll back\n"
    small = do_import_runbook(operator, title="Undo", service=None, source=source)
    inside = do_start_run(operator, small, "s-undo", incident).steps.get()
    outside = do_start_run(operator, small, "s-undo").steps.get()
    now = timezone.now()

    assert open_incidents(target, now, origin_of(inside)) == []
    refused = open_incidents(target, now, origin_of(outside))
    assert len(refused) == 1 and f"incident #{incident.pk}" in refused[0]


@pytest.mark.usefixtures("celery_worker")
def test_an_operation_started_from_a_step_is_linked_and_done_on_a_real_worker(
    operator: Any,
) -> None:
    incident = make_incident(operator)
    source = "## Check\n\n1. Ping the portal\n2. Tell the team\n"
    small = do_import_runbook(operator, title="Ping", service=None, source=source)
    run = do_start_run(operator, small, "s-check", incident)
    step = run.steps.get(number=1)

    operation = operations.do_start_operation(
        operator, "diagnostics.ping", "self", {}, "step 1", origin=origin_of(step)
    )
    step.refresh_from_db()
    assert (step.state, step.operation_id) == (StepState.RUNNING, operation.pk)
    wait_for(lambda: Operation.objects.get(pk=operation.pk).is_final, timeout=60, what="ping")

    step.refresh_from_db()
    operation.refresh_from_db()
    assert operation.state == State.SUCCEEDED
    assert (step.state, step.done_by) == (StepState.DONE, operator)
    entries = TimelineEntry.objects.filter(incident=incident, kind=EntryKind.OPERATION)
    assert [(e.data["phase"], e.data["step"], e.operation_id) for e in entries] == [
        ("requested", 1, operation.pk),
        ("finished", 1, operation.pk),
    ]
    assert AuditEvent.objects.filter(action="runbooks.run_step_operation").count() == 1
    assert RunStep.objects.get(pk=step.pk).run.state == RunState.OPEN  # step 2 is left
