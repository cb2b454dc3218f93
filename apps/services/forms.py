"""The catalog forms admins use: services, environments, clusters, targets, freezes; and the
dashboard's filters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.db import models
from django.utils import timezone

from apps.services.choices import ClusterAccess, Health, Tier
from apps.services.cluster import parse_kubeconfig
from apps.services.models import (
    Cluster,
    DeployFreeze,
    DeploymentTarget,
    Environment,
    Service,
)

MAX_KUBECONFIG_BYTES = 256 * 1024
# The fixed paths under /services/ (apps/services/urls.py).
RESERVED_SLUGS = {"new", "environments", "clusters", "freezes", "targets"}


def https_urls(field: models.Field[Any, Any], **kwargs: Any) -> forms.Field | None:
    """A URL typed without a scheme is taken as https (Django 6's default, asked for now)."""
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class ServiceForm(forms.ModelForm):
    class Meta:
        model = Service
        fields = [
            "name",
            "slug",
            "description",
            "team",
            "tier",
            "repository_url",
            "runbook_url",
            "dashboard_url",
            "flag_allowlist",
        ]
        formfield_callback = https_urls
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "flag_allowlist": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        }
        help_texts = {"slug": "Used in URLs: lowercase letters, digits and '-'."}

    def clean_slug(self) -> str:
        slug = str(self.cleaned_data["slug"])
        if slug in RESERVED_SLUGS:
            raise forms.ValidationError(f"{slug!r} is a page of the portal: choose another.")
        return slug


class EnvironmentForm(forms.ModelForm):
    class Meta:
        model = Environment
        fields = ["name", "slug", "is_production", "order"]
        labels = {"is_production": "Production (shown in red; changes need a reason)"}


class ClusterForm(forms.ModelForm):
    """The kubeconfig is write-only: it is never put back into the form, and an empty field
    on edit keeps the stored one."""

    kubeconfig = forms.CharField(
        label="Kubeconfig",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text="Paste it here or upload the file below. It is encrypted at rest and never "
        "shown again.",
    )
    kubeconfig_file = forms.FileField(label="…or upload it", required=False)

    class Meta:
        model = Cluster
        fields = ["name", "access", "context"]
        help_texts = {"context": "Leave empty for the kubeconfig's current context."}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload: UploadedFile | None = cleaned.get("kubeconfig_file")
        text = str(cleaned.get("kubeconfig") or "").strip()
        if upload is not None:
            if (upload.size or 0) > MAX_KUBECONFIG_BYTES:
                self.add_error("kubeconfig_file", "A kubeconfig is at most 256 KiB.")
                return cleaned
            try:
                text = upload.read().decode("utf-8").strip()
            except UnicodeDecodeError:
                self.add_error("kubeconfig_file", "The file is not UTF-8 text.")
                return cleaned
        cleaned["kubeconfig"] = text
        if cleaned.get("access") == ClusterAccess.IN_CLUSTER:
            cleaned["kubeconfig"] = ""
            return cleaned
        if not text and not (self.instance.pk and self.instance.has_kubeconfig):
            self.add_error("kubeconfig", "Paste or upload the kubeconfig for this cluster.")
            return cleaned
        if text:
            try:
                contexts = parse_kubeconfig(text)
            except ValueError as exc:
                self.add_error("kubeconfig", str(exc))
                return cleaned
            context = cleaned.get("context") or ""
            if context and context not in contexts:
                self.add_error(
                    "context", f"No context {context!r} in it; it has: {', '.join(contexts)}."
                )
        return cleaned


class TargetForm(forms.ModelForm):
    class Meta:
        model = DeploymentTarget
        fields = [
            "environment",
            "cluster",
            "namespace",
            "deployment",
            "container",
            "liveness_url",
            "readiness_url",
            "health_url",
            "min_replicas",
            "max_replicas",
        ]
        formfield_callback = https_urls

    def __init__(self, *args: Any, service: Service, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.service = service

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        low, high = cleaned.get("min_replicas"), cleaned.get("max_replicas")
        if low is not None and high is not None and low > high:
            self.add_error("max_replicas", "The maximum must be at least the minimum.")
        return cleaned

    def validate_unique(self) -> None:
        # The service is not a form field, so Django would skip this constraint.
        super().validate_unique()
        environment = self.cleaned_data.get("environment")
        taken = DeploymentTarget.objects.filter(
            service=self.instance.service, environment=environment
        ).exclude(pk=self.instance.pk)
        if environment is not None and taken.exists():
            self.add_error(
                "environment",
                f"{self.instance.service.name} already has a target in {environment.name}.",
            )


class FreezeForm(forms.ModelForm):
    hours = forms.IntegerField(
        label="For how many hours",
        min_value=1,
        max_value=24 * 60,
        initial=24,
        help_text="It lifts itself after this; an admin can lift it earlier.",
    )

    class Meta:
        model = DeployFreeze
        fields = ["service", "environment", "reason"]
        widgets = {"reason": forms.Textarea(attrs={"rows": 2})}
        help_texts = {
            "service": "Empty: every service.",
            "environment": "Empty: every environment.",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("hours"):
            self.instance.starts_at = timezone.now()
            self.instance.expires_at = self.instance.starts_at + timedelta(hours=cleaned["hours"])
        return cleaned


class DashboardFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search")
    team = forms.CharField(required=False, max_length=100)
    tier = forms.ChoiceField(required=False, choices=[("", "Any tier"), *Tier.choices])
    problems = forms.BooleanField(required=False, label="Only problems")


HEALTH_ORDER: dict[str, int] = {
    Health.CRITICAL: 0,
    Health.WARNING: 1,
    Health.STALE: 2,
    Health.NO_DATA: 3,
    Health.OK: 4,
}
