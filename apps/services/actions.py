"""Every change to the catalog: services, environments, clusters, targets and freezes. One
transaction and one audit record each, with the fields changed (secrets masked)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import models, transaction
from django.utils import timezone

from apps.audit.records import AuditTarget, field_changes, record, save_form_recorded
from apps.services.choices import ClusterAccess
from apps.services.cluster import ClusterError, kubeconfig_server, server_version
from apps.services.forms import ClusterForm
from apps.services.models import TARGET_TYPE, Cluster, DeployFreeze, DeploymentTarget


def audit_target(instance: models.Model) -> AuditTarget:
    # A target is "services.target" everywhere: its operations are recorded under that name.
    kind = (
        TARGET_TYPE
        if isinstance(instance, DeploymentTarget)
        else f"services.{instance._meta.model_name}"
    )
    return AuditTarget(kind, str(instance.pk), str(instance))


def do_save_catalog_entry(actor: User, form: Any) -> Any:
    """Create or change a service, environment, target or freeze from its valid form."""
    if form.instance.pk is None and isinstance(form.instance, DeployFreeze):
        form.instance.created_by = actor
    return save_form_recorded(
        actor,
        form,
        target_of=audit_target,
        changes=field_changes(form),
        reason=getattr(form.instance, "reason", ""),
    )


def do_save_cluster(actor: User, form: ClusterForm) -> Cluster:
    """Create or change a cluster; a new kubeconfig is encrypted before it is stored, and the
    audit record says only that it changed."""
    changes = field_changes(form)
    changes.pop("kubeconfig_file", None)
    cluster: Cluster = form.instance
    text = form.cleaned_data.get("kubeconfig") or ""
    if cluster.access == ClusterAccess.IN_CLUSTER:
        cluster.set_kubeconfig("")
        cluster.server = "in-cluster"
    elif text:
        cluster.set_kubeconfig(text)
        cluster.server = kubeconfig_server(text, cluster.context)[:500]
        changes["kubeconfig"] = ["", "replaced"]
    saved: Cluster = save_form_recorded(actor, form, target_of=audit_target, changes=changes)
    return saved


def do_check_cluster(actor: User, cluster: Cluster) -> Cluster:
    """Ask the cluster for its version with the stored credentials, and keep the answer."""
    try:
        version = server_version(cluster.connection())
    except ClusterError as exc:
        ok, detail = False, exc.message
    else:
        ok, detail = True, f"Kubernetes {version}"
    cluster.check_ok = ok
    cluster.check_detail = detail[:500]
    cluster.checked_at = timezone.now()
    with transaction.atomic():
        cluster.save(update_fields=["check_ok", "check_detail", "checked_at"])
        record(
            "cluster.checked",
            actor=actor,
            outcome="succeeded" if ok else "failed",
            target=audit_target(cluster),
            reason=detail,
        )
    return cluster


def do_lift_freeze(actor: User, freeze: DeployFreeze, reason: str) -> DeployFreeze:
    """End a freeze before it expires."""
    with transaction.atomic():
        freeze = DeployFreeze.objects.select_for_update().get(pk=freeze.pk)
        if freeze.lifted_at is None:
            freeze.lifted_at = timezone.now()
            freeze.lifted_by = actor  # type: ignore[assignment]
            freeze.save(update_fields=["lifted_at", "lifted_by"])
            record(
                "deployfreeze.lifted",
                actor=actor,
                target=audit_target(freeze),
                reason=reason.strip(),
            )
    return freeze
