"""The admins' pages for the severities table and the escalation policies."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Prefetch
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.access import require_permission
from apps.common.editing import edit_page
from apps.common.http import PortalRequest
from apps.incidents import policy_actions
from apps.incidents.models import EscalationLevel, EscalationPolicy, Severity
from apps.incidents.policy_forms import LevelFormSet, PolicyForm, SeverityForm, format_period


@require_permission("incidents.change_severity")
@require_GET
def severity_list(request: PortalRequest) -> HttpResponse:
    severities = [
        (severity, format_period(severity.acknowledge_within), format_period(severity.update_every))
        for severity in Severity.objects.all()
    ]
    template = "incidents/severities.html"
    if request.htmx and not request.htmx.boosted:
        template += "#table"
    return render(request, template, {"severities": severities})


@require_permission("incidents.change_severity")
@require_http_methods(["GET", "POST"])
def severity_edit(request: PortalRequest, pk: int) -> HttpResponse:
    severity = get_object_or_404(Severity, pk=pk)
    form = SeverityForm(request.POST or None, instance=severity)
    return edit_page(
        request,
        form,
        title=f"Edit {severity.key}",
        back=reverse("incidents:severities"),
        save=policy_actions.do_save_severity,
    )


@require_permission("incidents.change_escalationpolicy")
@require_GET
def policy_list(request: PortalRequest) -> HttpResponse:
    levels = EscalationLevel.objects.prefetch_related("users", "groups")
    policies = EscalationPolicy.objects.prefetch_related(Prefetch("levels", queryset=levels))
    template = "incidents/policies.html"
    if request.htmx and not request.htmx.boosted:
        template += "#table"
    return render(request, template, {"policies": policies})


def _policy_page(request: PortalRequest, policy: EscalationPolicy, title: str) -> HttpResponse:
    """The policy and its levels on one form: saved together or not at all."""
    data = request.POST if request.method == "POST" else None
    form = PolicyForm(data, instance=policy)
    levels = LevelFormSet(
        data,
        instance=policy,
        prefix="levels",
        queryset=EscalationLevel.objects.prefetch_related("users", "groups"),
        blank=1 if policy.pk else 3,
    )
    if data is not None and form.is_valid() and levels.is_valid():
        saved = policy_actions.do_save_policy(request.user, form, levels)
        messages.success(request, f"Saved the escalation policy {saved}.")
        return redirect("incidents:policies")
    return render(
        request,
        "incidents/policy_form.html",
        {"form": form, "levels": levels, "title": title, "policy": policy},
        status=400 if data is not None else 200,
    )


@require_permission("incidents.add_escalationpolicy")
@require_http_methods(["GET", "POST"])
def policy_add(request: PortalRequest) -> HttpResponse:
    return _policy_page(request, EscalationPolicy(), "New escalation policy")


@require_permission("incidents.change_escalationpolicy")
@require_http_methods(["GET", "POST"])
def policy_edit(request: PortalRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(EscalationPolicy, pk=pk)
    return _policy_page(request, policy, f"Edit the escalation policy {policy.name}")
