"""The forms admins use for metrics: the Prometheus connection and a metric definition."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import forms

from apps.metrics.choices import Comparison
from apps.metrics.client import MetricsUnavailable, QueryError
from apps.metrics.definitions import check_query, sentence
from apps.metrics.models import LABELS_PLACEHOLDER, MetricDefinition, PrometheusConnection
from apps.services.models import Service


def prometheus_url(value: str) -> None:
    # Not Django's URLValidator: it refuses the one-word hosts of a cluster's DNS
    # (http://prometheus:9090).
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise forms.ValidationError("Enter an http:// or https:// URL with a host.")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise forms.ValidationError("The port is not a number.") from None


class ConnectionForm(forms.ModelForm):
    """The token and the password are write-only: never put back into the form, and an empty
    field on edit keeps the stored one (tick "remove" to drop it)."""

    token = forms.CharField(
        label="Bearer token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="Encrypted at rest and never shown again. Leave empty to keep the stored one.",
    )
    password = forms.CharField(
        label="Basic-auth password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Encrypted at rest and never shown again. Leave empty to keep the stored one.",
    )
    url = forms.CharField(label="URL", max_length=500, validators=[prometheus_url])
    remove_token = forms.BooleanField(label="Remove the stored bearer token", required=False)
    remove_password = forms.BooleanField(label="Remove the stored password", required=False)

    class Meta:
        model = PrometheusConnection
        fields = ["url", "token", "username", "password", "verify_tls", "timeout_seconds"]
        help_texts = {"url": "The Prometheus HTTP API base, e.g. http://prometheus:9090."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["url"].widget.attrs["placeholder"] = "http://prometheus:9090"
        if not (self.instance.pk and self.instance.has_token):
            del self.fields["remove_token"]
        if not (self.instance.pk and self.instance.has_password):
            del self.fields["remove_password"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("token") and cleaned.get("username"):
            self.add_error("token", "Use a bearer token or basic auth, not both.")
        has_password = cleaned.get("password") or (
            self.instance.pk and self.instance.has_password and not cleaned.get("remove_password")
        )
        if cleaned.get("username") and not has_password:
            self.add_error("password", "Basic auth needs a password.")
        return cleaned


class DefinitionForm(forms.ModelForm):
    """A metric definition. On save, Prometheus is asked to evaluate the query for one of the
    service's targets: a query it rejects is an error next to the template. When Prometheus
    cannot be asked, the definition is saved anyway (`unchecked` says why): admins must be
    able to fix thresholds while Prometheus is down, and the evaluator shows a rejected
    query as "no data" with Prometheus's sentence."""

    class Meta:
        model = MetricDefinition
        fields = [
            "key",
            "name",
            "unit",
            "template",
            "comparison",
            "warning",
            "critical",
            "for_seconds",
            "enabled",
        ]
        widgets = {"template": forms.Textarea(attrs={"rows": 4, "spellcheck": "false"})}
        help_texts = {
            "key": "Lowercase letters, digits, '-' and '_', unique per service "
            "(error_rate and latency_p95 are used by the checks after a change).",
            "template": f"PromQL with {LABELS_PLACEHOLDER} where the target's labels go "
            '(job="<deployment>", namespace="<namespace>"), aggregated '
            "by (job, namespace).",
            "warning": "Leave empty for no warning level.",
            "critical": "Leave empty for no critical level.",
        }

    def __init__(self, *args: Any, service: Service, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service
        self.instance.service = service
        self.unchecked = ""
        self.checked = ""
        if self.instance.pk:
            self.fields["key"].disabled = True

    def clean_key(self) -> str:
        key = str(self.cleaned_data["key"])
        taken = MetricDefinition.objects.filter(service=self.service, key=key)
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"{self.service} already has a metric {key!r}.")
        return key

    def clean_template(self) -> str:
        template = str(self.cleaned_data["template"]).strip()
        if LABELS_PLACEHOLDER not in template:
            raise forms.ValidationError(
                f"Put {LABELS_PLACEHOLDER} where the target's labels go, e.g. "
                f"http_requests_total{{{LABELS_PLACEHOLDER}}}."
            )
        return template

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        warning, critical = cleaned.get("warning"), cleaned.get("critical")
        comparison = cleaned.get("comparison")
        if warning is not None and critical is not None:
            if comparison == Comparison.ABOVE and critical < warning:
                self.add_error("critical", "Above: the critical level is at least the warning.")
            if comparison == Comparison.BELOW and critical > warning:
                self.add_error("critical", "Below: the critical level is at most the warning.")
        if "template" in cleaned and not self.errors:
            probe = MetricDefinition(service=self.service, template=cleaned["template"])
            try:
                self.checked = check_query(probe)
            except QueryError as exc:
                self.add_error("template", f"Prometheus rejects this query: {sentence(exc)}")
            except MetricsUnavailable as exc:
                self.unchecked = exc.message
        return cleaned
