"""The services pages: dashboard, service page, the cluster's view, and the catalog forms,
for each persona; htmx requests get their fragment; bad input never gives a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.services.models import Cluster, DeployFreeze, DeploymentTarget, Environment, Service
from tests.conftest import client_for
from tests.services.conftest import IMAGE_V1, Catalog, make_target
from tests.support.kube_emulator import KubeEmulator

HTMX = {"HX-Request": "true"}


def test_it_shows_the_dashboard_to_a_viewer(viewer: Any, catalog: Catalog) -> None:
    response = client_for(viewer).get("/services/")
    content = response.content.decode()
    assert response.status_code == 200
    assert "shop-api" in content
    assert "production" in content
    assert "No data" in content  # not probed yet: said in words, not colour alone
    assert "<html" in content


def test_the_dashboard_refresh_gets_only_the_grid(viewer: Any, catalog: Catalog) -> None:
    response = client_for(viewer).get("/services/?q=shop", headers=HTMX)
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<div id="grid"')
    assert "<html" not in content
    assert "shop-api" in content


def test_the_dashboard_filters_and_says_when_nothing_matches(viewer: Any, catalog: Catalog) -> None:
    response = client_for(viewer).get("/services/?q=nothing-like-this")
    assert "No service matches these filters" in response.content.decode()
    problems = client_for(viewer).get("/services/?problems=on")
    assert "shop-api" not in problems.content.decode().split('id="grid"')[1]


def test_the_dashboard_refuses_a_user_without_a_role_and_other_methods(
    nobody: Any, viewer: Any, catalog: Catalog
) -> None:
    assert client_for(nobody).get("/services/").status_code == 403
    assert client_for(viewer).post("/services/").status_code == 405


def test_the_dashboard_query_count_does_not_grow_with_the_services(
    viewer: Any, catalog: Catalog, kube: KubeEmulator
) -> None:
    client = client_for(viewer)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/services/").status_code == 200
        return len(captured)

    queries()  # the first request of a session warms caches up
    few = queries()
    for number in range(20):
        service = Service.objects.create(name=f"svc-{number}", slug=f"svc-{number}", team="T")
        for environment in (catalog.staging, catalog.production):
            make_target(service, environment, catalog.cluster, kube, deployment=f"d{number}")
    DeployFreeze.objects.create(reason="x", created_by=viewer, expires_at="2999-01-01T00:00:00Z")
    assert queries() == few


def test_the_service_page_shows_operators_the_actions(operator: Any, catalog: Catalog) -> None:
    response = client_for(operator).get("/services/shop-api/")
    content = response.content.decode()
    assert response.status_code == 200
    assert response.context["target"] == catalog.production_target  # production first
    assert "Roll out an image" in content
    assert "Block traffic" not in content  # an admin's emergency action
    assert f"/operations/start/services.rollout/?target={catalog.production_target.pk}" in content


def test_a_viewer_sees_no_action_buttons(viewer: Any, catalog: Catalog) -> None:
    response = client_for(viewer).get("/services/shop-api/?env=staging")
    content = response.content.decode()
    assert response.status_code == 200
    assert response.context["target"] == catalog.target
    assert "/operations/start/" not in content


def test_a_viewer_posting_the_operation_form_directly_gets_403(
    viewer: Any, catalog: Catalog
) -> None:
    response = client_for(viewer).post(
        "/operations/start/services.rollout/",
        {"target": catalog.target.pk, "p-image": "registry.example.com/x:1", "confirmed": "1"},
    )
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="access.denied", actor=viewer).exists()


def test_an_unknown_service_is_404(viewer: Any, catalog: Catalog) -> None:
    assert client_for(viewer).get("/services/nope/").status_code == 404


def test_the_deployment_panel_shows_what_the_cluster_reports(viewer: Any, catalog: Catalog) -> None:
    response = client_for(viewer).get(f"/services/targets/{catalog.target.pk}/deployment/")
    content = response.content.decode()
    assert response.status_code == 200
    assert IMAGE_V1 in content
    assert "successfully rolled out" in content
    assert content.count("api-staging-") >= 2  # the pods, by name
    assert "Roll back to this" not in content  # one revision, and a viewer


def test_the_deployment_panel_says_why_the_cluster_cannot_answer(
    viewer: Any, catalog: Catalog, kube: KubeEmulator
) -> None:
    DeploymentTarget.objects.filter(pk=catalog.target.pk).update(deployment="missing")
    response = client_for(viewer).get(f"/services/targets/{catalog.target.pk}/deployment/")
    assert response.status_code == 200
    assert "was not found in namespace" in response.content.decode()


@pytest.mark.parametrize(
    "image, words",
    [
        ("registry.example.com/shop/api:2.0;rm -rf /", "cannot contain"),
        ("registry.example.com/shop/api:2.0 && curl evil", "cannot contain spaces"),
        ("registry.example.com/Shop/API:2.0", "must be lowercase"),
        ("registry.example.com/shop/api:" + "9" * 300, "at most 128"),
        ("registry.example.com/shop/api:$(id)", "cannot contain"),
    ],
)
def test_a_malformed_image_is_refused_on_the_page_and_audited(
    operator: Any, catalog: Catalog, image: str, words: str
) -> None:
    response = client_for(operator).post(
        "/operations/start/services.rollout/",
        {
            "target": catalog.target.pk,
            "p-image": image,
            "p-auto_rollback": "on",
            "p-healthy_checks": "3",
            "idempotency_key": "k" * 32,
        },
    )
    assert response.status_code == 400
    assert words in response.content.decode()
    event = AuditEvent.objects.get(action="operation.invalid")
    assert event.outcome == "failed"
    assert event.data["submitted"]["p-image"] == image


def test_the_confirmation_shows_the_runbook_command(operator: Any, catalog: Catalog) -> None:
    response = client_for(operator).post(
        "/operations/start/services.rollout/",
        {
            "target": catalog.production_target.pk,
            "p-image": "registry.example.com/shop/api:2.0.0",
            "p-auto_rollback": "on",
            "p-healthy_checks": "3",
            "reason": "release 2.0",
            "idempotency_key": "c" * 32,
        },
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert (
        "kubectl set image deployment/api-production api=registry.example.com/shop/api:2.0.0"
        " -n shop" in content
    )
    assert "production" in content


def test_a_rollback_link_prefills_the_revision(operator: Any, catalog: Catalog) -> None:
    response = client_for(operator).get(
        f"/operations/start/services.rollback/?target={catalog.target.pk}&p-to_revision=3"
    )
    assert response.status_code == 200
    assert 'value="3"' in response.content.decode()


# --- The catalog, managed in the portal's own forms ---------------------------------------


def test_an_admin_creates_a_service_and_it_is_audited(admin: Any, db: None) -> None:
    response = client_for(admin).post(
        "/services/new/",
        {
            "name": "Billing",
            "slug": "billing",
            "team": "Payments",
            "tier": "1",
            "flag_allowlist": "MAINTENANCE_MODE",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/services/billing/"
    event = AuditEvent.objects.get(action="service.created")
    assert event.data["changes"]["name"] == ["", "Billing"]


def test_an_operator_cannot_manage_the_catalog(operator: Any, catalog: Catalog) -> None:
    client = client_for(operator)
    assert client.get("/services/new/").status_code == 403
    assert client.post("/services/new/", {"name": "x"}).status_code == 403
    assert client.get(f"/services/targets/{catalog.target.pk}/edit/").status_code == 403
    assert not Service.objects.filter(name="x").exists()


def test_a_reserved_slug_and_a_duplicate_target_are_refused(admin: Any, catalog: Catalog) -> None:
    client = client_for(admin)
    response = client.post("/services/new/", {"name": "N", "slug": "new", "team": "T", "tier": "2"})
    assert response.status_code == 400
    assert "is a page of the portal" in response.content.decode()
    response = client.post(
        "/services/shop-api/targets/new/",
        {
            "environment": catalog.staging.pk,
            "cluster": catalog.cluster.pk,
            "namespace": "shop",
            "deployment": "other",
            "container": "api",
            "min_replicas": 1,
            "max_replicas": 2,
        },
    )
    assert response.status_code == 400
    assert "already has a target in staging" in response.content.decode()


def test_a_target_with_bad_names_and_bounds_is_refused(admin: Any, catalog: Catalog) -> None:
    Environment.objects.create(name="qa", slug="qa")
    response = client_for(admin).post(
        "/services/shop-api/targets/new/",
        {
            "environment": Environment.objects.get(slug="qa").pk,
            "cluster": catalog.cluster.pk,
            "namespace": "Shop NS",
            "deployment": "api;reboot",
            "container": "api",
            "min_replicas": 5,
            "max_replicas": 2,
        },
    )
    content = response.content.decode()
    assert response.status_code == 400
    assert "as Kubernetes requires" in content
    assert "The maximum must be at least the minimum" in content
    assert DeploymentTarget.objects.count() == 2


def test_a_kubeconfig_is_stored_encrypted_and_never_shown_again(
    admin: Any, db: None, kube: KubeEmulator
) -> None:
    kubeconfig = kube.kubeconfig()
    client = client_for(admin)
    response = client.post(
        "/services/clusters/new/",
        {"name": "prod-eu", "access": "kubeconfig", "kubeconfig": kubeconfig},
    )
    assert response.status_code == 302
    cluster = Cluster.objects.get(name="prod-eu")
    assert cluster.server == kube.url
    assert kube.token not in cluster.kubeconfig_encrypted
    assert cluster.connection().kubeconfig == kubeconfig.strip()
    event = AuditEvent.objects.get(action="cluster.created")
    assert kube.token not in str(event.data)
    edit = client.get(f"/services/clusters/{cluster.pk}/edit/").content.decode()
    listing = client.get("/services/clusters/").content.decode()
    assert kube.token not in edit
    assert kube.token not in listing
    assert kube.url in listing
    # Saving again without pasting keeps the stored kubeconfig.
    response = client.post(
        f"/services/clusters/{cluster.pk}/edit/", {"name": "prod-eu-1", "access": "kubeconfig"}
    )
    assert response.status_code == 302
    assert Cluster.objects.get(pk=cluster.pk).connection().kubeconfig == kubeconfig.strip()


def test_a_broken_kubeconfig_is_refused_with_a_reason(admin: Any, db: None) -> None:
    response = client_for(admin).post(
        "/services/clusters/new/",
        {"name": "bad", "access": "kubeconfig", "kubeconfig": "this: [is not: a kubeconfig"},
    )
    assert response.status_code == 400
    assert not Cluster.objects.filter(name="bad").exists()


def test_testing_a_cluster_connection_reports_the_version_or_the_failure(
    admin: Any, catalog: Catalog, kube: KubeEmulator
) -> None:
    client = client_for(admin)
    response = client.post(f"/services/clusters/{catalog.cluster.pk}/check/", follow=True)
    assert "answers: Kubernetes" in response.content.decode()
    gone = Cluster(name="gone", access="kubeconfig")
    gone.set_kubeconfig(kube.kubeconfig().replace(kube.url, "http://127.0.0.1:9"))
    gone.save()
    response = client.post(f"/services/clusters/{gone.pk}/check/", follow=True)
    assert "Cannot reach the cluster" in response.content.decode()
    assert AuditEvent.objects.filter(action="cluster.checked", outcome="failed").exists()
    assert client.get(f"/services/clusters/{gone.pk}/check/").status_code == 405


def test_an_admin_freezes_and_lifts(admin: Any, catalog: Catalog) -> None:
    client = client_for(admin)
    response = client.post(
        "/services/freezes/new/",
        {"environment": catalog.production.pk, "reason": "Year-end freeze", "hours": "48"},
    )
    assert response.status_code == 302
    freeze = DeployFreeze.objects.get()
    assert freeze.created_by == admin
    page = client.get("/services/shop-api/").content.decode()
    assert "Year-end freeze" in page
    client.post(f"/services/freezes/{freeze.pk}/lift/", {"reason": "done early"})
    freeze.refresh_from_db()
    assert freeze.lifted_by == admin
    actions_seen = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"deployfreeze.created", "deployfreeze.lifted"} <= actions_seen


def test_a_closed_gate_offers_the_override_to_admins_only(
    operator: Any, admin: Any, catalog: Catalog
) -> None:
    DeployFreeze.objects.create(
        reason="Launch day", created_by=admin, expires_at="2999-01-01T00:00:00Z"
    )
    url = f"/operations/start/services.rollout/?target={catalog.target.pk}"
    as_operator = client_for(operator).get(url).content.decode()
    as_admin = client_for(admin).get(url).content.decode()
    assert "Launch day" in as_operator
    assert "Ask an admin" in as_operator
    assert 'name="override_gate"' not in as_operator
    assert 'name="override_gate"' in as_admin


def test_the_service_page_shows_its_history_with_the_field_changes(
    admin: Any, catalog: Catalog
) -> None:
    client = client_for(admin)
    response = client.post(
        f"/services/targets/{catalog.target.pk}/edit/",
        {
            "environment": catalog.staging.pk,
            "cluster": catalog.cluster.pk,
            "namespace": "shop",
            "deployment": "api-staging",
            "container": "api",
            "min_replicas": 2,
            "max_replicas": 6,
        },
    )
    assert response.status_code == 302
    page = client.get("/services/shop-api/?env=staging").content.decode()
    history = page.split('data-testid="history"')[1]
    assert "deploymenttarget.changed" in history
    assert "<del>4</del> → <ins>6</ins>" in history
    assert "<del>1</del> → <ins>2</ins>" in history
    event = AuditEvent.objects.get(action="deploymenttarget.changed")
    assert (event.target_type, event.target_id) == ("services.target", str(catalog.target.pk))
