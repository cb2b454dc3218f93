from __future__ import annotations

from django import forms
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.accounts.access import require_permission
from apps.audit.choices import Outcome
from apps.audit.models import AuditEvent
from apps.audit.records import verify_chain
from apps.common.http import PortalRequest
from apps.common.paging import keyset_page


class AuditFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", max_length=200)
    actor = forms.CharField(required=False, max_length=150)
    action = forms.CharField(required=False, max_length=100)
    outcome = forms.ChoiceField(required=False, choices=[("", "Any outcome"), *Outcome.choices])
    operation = forms.IntegerField(required=False, min_value=1)
    target_type = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)
    target_id = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


@require_permission("audit.view_auditevent")
@require_GET
def event_list(request: PortalRequest) -> HttpResponse:
    """Newest first, filtered by the URL, paged by sequence number (keyset)."""
    form = AuditFilterForm(request.GET)
    events = AuditEvent.objects.newest_first()
    if form.is_valid():
        filters = form.cleaned_data
        if filters["q"]:
            events = events.filter(
                Q(target_label__icontains=filters["q"]) | Q(reason__icontains=filters["q"])
            )
        if filters["actor"]:
            events = events.filter(actor_label=filters["actor"])
        if filters["action"]:
            events = events.filter(action__startswith=filters["action"])
        if filters["outcome"]:
            events = events.filter(outcome=filters["outcome"])
        if filters["operation"]:
            events = events.filter(operation_id=filters["operation"])
        if filters["target_type"]:
            events = events.filter(target_type=filters["target_type"])
        if filters["target_id"]:
            events = events.filter(target_id=filters["target_id"])
    before = form.cleaned_data.get("before") if form.is_valid() else None
    page = keyset_page(request, events, "seq", before)
    context = {
        "form": form,
        "events": page.rows,
        "next_query": page.next_query,
        "filtered": any(
            request.GET.get(name)
            for name in ("q", "actor", "action", "outcome", "operation", "target_type", "target_id")
        ),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "audit/list.html#results", context)
    return render(request, "audit/list.html", context)


@require_permission("audit.view_auditevent")
@require_GET
def chain(request: PortalRequest) -> HttpResponse:
    """Check the hash chain now and say whether it is intact."""
    return render(request, "audit/chain.html", {"report": verify_chain()})
