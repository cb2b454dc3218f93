"""A runbook that runs, in a real browser: an admin imports the team's RosterHub runbook,
registers its namespace and deployment as a target of the service, clicks "Run in portal" on
the runbook's ``kubectl rollout undo`` line, confirms, and watches the rollback run against
the Kubernetes API emulator on a real Celery worker. Then, during an incident, a guided run of
the "API Not Responding" section: one step ticked with a note, one done through its own
"Run in portal" button, and all of it in the incident's timeline. Screenshots go to
var/screenshots/runbooks-*.png."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from apps.accounts.roles import ADMIN
from apps.incidents.choices import EntryKind
from apps.incidents.models import TimelineEntry
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.runbooks.models import RunbookRun, StepState
from apps.services.models import DeploymentTarget, Environment, Service
from tests.factories import make_incident, make_user
from tests.services.conftest import kube, make_cluster  # noqa: F401 (fixtures)
from tests.support.browser import PageProblems, assert_assets_applied, save_screenshot, sign_in
from tests.support.kube_emulator import KubeEmulator
from tests.support.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RUNBOOK = Path(__file__).parents[1] / "runbooks" / "data" / "rosterhub-operations-runbook.md"
IMAGE_V1 = "registry.example.com/rosterhub/api:1.0.0"
IMAGE_V2 = "registry.example.com/rosterhub/api:1.1.0"
UNDO = "kubectl rollout undo deployment/rosterhub-api -n rosterhub"
OPERATION_TIMEOUT_MS = 60_000


def _emulated_rosterhub(kube: KubeEmulator) -> None:  # noqa: F811
    """rosterhub-api at revision 2 (1.1.0), so that undoing goes back to 1.0.0."""
    kube.reset()
    kube.add_deployment("rosterhub", "rosterhub-api", IMAGE_V1, container="api")
    kube.api.patch_deployment(
        "rosterhub",
        "rosterhub-api",
        "application/strategic-merge-patch+json",
        {"spec": {"template": {"spec": {"containers": [{"name": "api", "image": IMAGE_V2}]}}}},
    )


def _watch_to_the_end(page: Page) -> int:
    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
    match = re.search(r"/operations/(\d+)/$", page.url)
    assert match is not None
    expect(page.locator("#op-live .state")).to_have_text("Succeeded", timeout=OPERATION_TIMEOUT_MS)
    return int(match.group(1))


def test_a_runbook_line_rolls_back_and_a_guided_run_lands_in_the_incident(
    page: Page,
    page_problems: PageProblems,
    celery_worker: Worker,
    kube: KubeEmulator,  # noqa: F811
    screenshot_dir: Path,
) -> None:
    _emulated_rosterhub(kube)
    admin = make_user("ada-admin", ADMIN)
    Service.objects.create(name="RosterHub", slug="rosterhub", team="Roster")
    Environment.objects.create(name="staging", slug="staging")
    make_cluster("emulated", kube.kubeconfig())
    sign_in(page, "ada-admin")

    # Import the team's runbook, pasted.
    page.goto("/runbooks/")
    page.get_by_role("link", name="Import a runbook").click()
    page.get_by_label("Title").fill("RosterHub operations")
    page.get_by_label("Service").select_option(label="RosterHub")
    page.get_by_label("Or paste the Markdown").fill(RUNBOOK.read_text())
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="RosterHub operations", exact=True)).to_be_visible()
    undo_line = page.locator("li.runbook-command", has_text=UNDO).first
    expect(undo_line.locator(".runbook-missing")).to_contain_text(
        "Register deployment rosterhub-api in namespace rosterhub"
    )

    # Register its namespace and deployment as the service's target.
    page.goto("/services/rosterhub/targets/new/")
    page.get_by_label("Environment").select_option(label="staging")
    page.get_by_label("Cluster").select_option(label="emulated")
    page.get_by_label("Namespace").fill("rosterhub")
    page.locator("#id_deployment").fill("rosterhub-api")
    page.get_by_label("Container").fill("api")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("rosterhub-api").first).to_be_visible()
    target = DeploymentTarget.objects.get(namespace="rosterhub", deployment="rosterhub-api")

    # "Run in portal" on the runbook's rollout undo line.
    page.goto("/runbooks/rosterhub-operations/")
    undo_line = page.locator("li.runbook-command", has_text=UNDO).first
    expect(undo_line.locator("a.runbook-run")).to_contain_text("Run in portal")
    assert_assets_applied(page)
    undo_line.scroll_into_view_if_needed()
    # The page is long: the part around the line is what matters.
    page.screenshot(path=screenshot_dir / "runbooks-page.png", animations="disabled")
    undo_line.locator("a.runbook-run").first.click()
    expect(page).to_have_url(
        re.compile(rf"/operations/start/services\.rollback/\?target={target.pk}")
    )
    page.get_by_label("Reason").fill("The runbook says: undo the bad release (browser test)")
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_test_id("command")).to_contain_text(UNDO)
    save_screenshot(page, screenshot_dir / "runbooks-rollback-confirm.png")
    page.get_by_test_id("confirm").click()
    rollback = _watch_to_the_end(page)
    expect(page.locator("#op-log")).to_contain_text("Restoring revision 1")
    save_screenshot(page, screenshot_dir / "runbooks-rollback-done.png")
    deployment = kube.api.get_deployment("rosterhub", "rosterhub-api")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V1

    # An incident: a guided run of "API Not Responding", started from it.
    incident = make_incident(admin, title="RosterHub API times out")
    page.goto(f"/runbooks/rosterhub-operations/?incident={incident.pk}")
    expect(page.get_by_test_id("for-incident")).to_contain_text(f"incident #{incident.pk}")
    start = page.locator("#s-51-api-not-responding + p.runbook-start").get_by_role(
        "link", name="Start this procedure"
    )
    page.locator("#s-51-api-not-responding").scroll_into_view_if_needed()
    page.screenshot(path=screenshot_dir / "runbooks-section.png", animations="disabled")
    start.click()
    expect(page.get_by_role("heading", name="Start “5.1 API Not Responding”")).to_be_visible()
    expect(page.get_by_label("For incident")).to_have_value(str(incident.pk))
    save_screenshot(page, screenshot_dir / "runbooks-run-start.png")
    page.get_by_role("button", name="Start the run").click()
    expect(
        page.get_by_role("heading", name=re.compile(r"Run #\d+: 5.1 API Not Responding"))
    ).to_be_visible()
    run = RunbookRun.objects.get()

    # Step 1 ticked with a note.
    step_1 = page.get_by_test_id("step-1")
    step_1.get_by_label("Note on step 1").fill("3/3 pods Running")
    step_1.get_by_role("button", name="Done").click()
    expect(page.get_by_test_id("step-1")).to_contain_text("Done by ada-admin")
    expect(page.get_by_test_id("step-1")).to_contain_text("3/3 pods Running")

    # Step 3 ("Check logs", kubectl logs --tail=100) done through its own button.
    step_3 = page.get_by_test_id("step-3")
    expect(step_3).to_contain_text("kubectl logs deployment/rosterhub-api -n rosterhub --tail=100")
    step_3.locator("a.runbook-run").first.click()
    expect(page.get_by_test_id("origin")).to_contain_text(f"Run #{run.pk}")
    page.get_by_label("Reason").fill("Runbook step: check the logs")
    page.get_by_role("button", name="Review").click()
    page.get_by_test_id("confirm").click()
    logs = _watch_to_the_end(page)
    page.goto(run.get_absolute_url())
    expect(page.get_by_test_id("step-3")).to_contain_text(f"Operation #{logs}")
    expect(page.get_by_test_id("step-3")).to_contain_text(f"Done by operation #{logs}")
    save_screenshot(page, screenshot_dir / "runbooks-run.png")

    # All of it in the incident's timeline.
    page.goto(incident.get_absolute_url())
    timeline = page.locator("#timeline-list")
    expect(timeline).to_contain_text("Started runbook run")
    expect(timeline).to_contain_text("Step 1 of runbook run")
    expect(timeline).to_contain_text("3/3 pods Running")
    expect(timeline.locator(f"a[href='/operations/{logs}/']").first).to_be_visible()
    timeline.locator(f"a[href='/operations/{logs}/']").first.scroll_into_view_if_needed()
    save_screenshot(page, screenshot_dir / "runbooks-incident-timeline.png")

    assert Operation.objects.get(pk=rollback).state == State.SUCCEEDED
    assert [s.state for s in run.steps.filter(number__in=[1, 3]).order_by("number")] == [
        StepState.DONE,
        StepState.DONE,
    ]
    phases = [
        entry.data.get("phase")
        for entry in TimelineEntry.objects.filter(incident=incident).exclude(
            kind=EntryKind.DECLARED
        )
        if "runbook_run" in entry.data
    ]
    assert phases == ["started", "step_done", "requested", "finished"]
    assert page_problems.all() == [], page_problems.all()
