"""The runbook pages: import and re-import (admins), reading (every role), the commands'
"Run in portal" links bound to registered targets, and the coverage to-do list."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.runbooks.actions import do_import_runbook
from apps.runbooks.models import Runbook, RunbookVersion
from apps.services.choices import ClusterAccess
from apps.services.models import Cluster, DeploymentTarget, Environment, Service
from tests.conftest import client_for

DATA = Path(__file__).parent / "data"
ROSTERHUB = (DATA / "rosterhub-operations-runbook.md").read_text()


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
        max_replicas=10,
    )


@pytest.fixture
def runbook(admin: Any) -> Runbook:
    return do_import_runbook(admin, title="RosterHub", service=None, source=ROSTERHUB)


def test_it_imports_a_pasted_runbook(admin: Any) -> None:
    response = client_for(admin).post(
        reverse("runbooks:import"), {"title": "RosterHub ops", "text": ROSTERHUB}
    )
    runbook = Runbook.objects.get()
    assert response.status_code == 302
    assert response["Location"] == runbook.get_absolute_url() == "/runbooks/rosterhub-ops/"
    assert runbook.current is not None and runbook.current.number == 1
    event = AuditEvent.objects.get(action="runbooks.imported")
    assert event.actor == admin and event.target_id == str(runbook.pk)
    assert event.data["commands"] == 62 and event.data["recognized"] == 35


def test_it_imports_an_uploaded_file(admin: Any) -> None:
    upload = SimpleUploadedFile("ops.md", ROSTERHUB.encode(), content_type="text/markdown")
    response = client_for(admin).post(reverse("runbooks:import"), {"title": "R", "file": upload})
    assert response.status_code == 302
    assert Runbook.objects.get().current.filename == "ops.md"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"title": "R"}, "Upload a Markdown file or paste its text."),
        ({"title": "R", "text": "# x", "file": "binary"}, "Upload a file or paste the text"),
        ({"title": "R", "file": "binary"}, "The file is not UTF-8 text."),
        ({"text": "# x"}, "This field is required."),
    ],
)
def test_bad_input_is_a_message_and_saves_nothing(
    admin: Any, data: dict[str, Any], message: str
) -> None:
    if data.get("file") == "binary":
        data["file"] = SimpleUploadedFile("x.md", b"\xff\xfe\x00bad")
    response = client_for(admin).post(reverse("runbooks:import"), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Runbook.objects.exists() and not RunbookVersion.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="runbooks.").exists()


def test_it_refuses_import_to_operators_and_audits_it(operator: Any) -> None:
    response = client_for(operator).post(reverse("runbooks:import"), {"title": "R", "text": "x"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="access.denied", actor=operator).exists()
    assert not Runbook.objects.exists()


def test_reimport_keeps_versions_with_a_diff(admin: Any, runbook: Runbook) -> None:
    client = client_for(admin)
    changed = ROSTERHUB.replace("--replicas=5", "--replicas=6")
    response = client.post(reverse("runbooks:reimport", args=[runbook.slug]), {"text": changed})
    assert response.status_code == 302
    assert [v.number for v in runbook.versions.all()] == [2, 1]
    page = client.get(response["Location"]).content.decode()
    assert "<del>-kubectl scale deployment rosterhub-api --replicas=5 -n rosterhub</del>" in page
    assert "<ins>+kubectl scale deployment rosterhub-api --replicas=6 -n rosterhub</ins>" in page
    # The same text again: nothing new.
    again = client.post(reverse("runbooks:reimport", args=[runbook.slug]), {"text": changed})
    assert again.status_code == 302 and runbook.versions.count() == 2
    assert AuditEvent.objects.filter(action="runbooks.reimported").count() == 1


def test_the_page_binds_recognized_commands_to_registered_targets(
    viewer: Any, runbook: Runbook, target: DeploymentTarget
) -> None:
    response = client_for(viewer).get(runbook.get_absolute_url())
    page = response.content.decode()
    assert response.status_code == 200
    start = reverse("operations:start", args=["services.rollback"])
    assert f'href="{start}?target={target.pk}"' in page
    scale = reverse("operations:start", args=["services.scale"])
    assert f'href="{scale}?target={target.pk}&amp;p-replicas=5"' in page
    # A table of contents with anchors, and the things not registered say what to register.
    assert 'href="#s-52-database-connection-errors"' in page
    assert "Register the database rosterhub as a database target." in page
    # Unrecognized commands stay text, without a button.
    assert "<code>docker system df</code></pre>\n    \n  </div>" in page


def test_an_unregistered_deployment_says_what_to_register(viewer: Any, runbook: Runbook) -> None:
    page = client_for(viewer).get(runbook.get_absolute_url()).content.decode()
    assert "Register deployment rosterhub-api in namespace rosterhub as a deployment target" in page
    assert "services.rollback" not in page


def test_the_run_in_portal_link_opens_the_prefilled_form(
    operator: Any, runbook: Runbook, target: DeploymentTarget
) -> None:
    scale = reverse("operations:start", args=["services.scale"])
    response = client_for(operator).get(f"{scale}?target={target.pk}&p-replicas=5")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="p-replicas"' in page and 'value="5"' in page
    query = parse_qs(urlsplit(f"{scale}?target={target.pk}&p-replicas=5").query)
    assert query == {"target": [str(target.pk)], "p-replicas": ["5"]}


def test_the_coverage_lists_what_to_register(viewer: Any, runbook: Runbook) -> None:
    response = client_for(viewer).get(reverse("runbooks:coverage", args=[runbook.slug]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "62 commands: <strong>0</strong> run in the portal" in page
    assert "Register deployment rosterhub-api in namespace rosterhub" in page


def test_the_list_searches_and_answers_htmx_with_its_fragment(
    viewer: Any, runbook: Runbook
) -> None:
    client = client_for(viewer)
    found = client.get(reverse("runbooks:list"), {"q": "pg_stat_activity"})
    assert "RosterHub" in found.content.decode()
    missed = client.get(reverse("runbooks:list"), {"q": "no-such-words"})
    assert "No runbook mentions" in missed.content.decode()
    fragment = client.get(reverse("runbooks:list"), headers={"HX-Request": "true"})
    assert fragment.content.decode().lstrip().startswith('<div id="runbook-results">')


def test_pages_refuse_people_without_a_role_and_wrong_methods(
    nobody: Any, viewer: Any, runbook: Runbook
) -> None:
    assert client_for(nobody).get(runbook.get_absolute_url()).status_code == 403
    assert client_for(viewer).post(runbook.get_absolute_url()).status_code == 405
