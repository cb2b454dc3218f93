"""The reviews after an incident: the post-mortem page (read by anyone who sees
incidents, written by those who change them), its action items and Markdown export, the
managers' follow-up list and the figures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import require_permission
from apps.common.http import PortalRequest
from apps.incidents.actions import IncidentRefused
from apps.incidents.choices import IncidentState
from apps.incidents.figures import PERIOD_CHOICES, figures_report
from apps.incidents.models import ActionItem, Incident, PostMortem
from apps.incidents.postmortems import (
    SECTIONS,
    TEXT_FIELDS,
    WRITABLE_STATES,
    do_add_action_item,
    do_complete_action_item,
    do_complete_postmortem,
    do_export_postmortem,
    do_save_postmortem,
    duration_words,
    timeline_excerpt,
)
from apps.incidents.review_forms import (
    ActionItemForm,
    FiguresPeriodForm,
    FollowUpFilterForm,
    PostMortemForm,
)

# The follow-up list shows this many open action items, overdue first.
FOLLOW_UP_ITEMS = 200


def _incident(pk: int) -> Incident:
    return get_object_or_404(
        Incident.objects.select_related("severity", "commander", "declared_by"), pk=pk
    )


def _page_url(incident: Incident) -> str:
    return reverse("incidents:postmortem", args=[incident.pk])


def _url_or_none(name: str, *args: Any) -> str | None:
    # The incident pages are another part of the app: link to them when they exist.
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def incident_link(incident: Incident) -> str:
    """The incident's page, or its post-mortem where there is no incident page."""
    return _url_or_none("incidents:detail", incident.pk) or _page_url(incident)


def _postmortem_context(
    request: PortalRequest,
    incident: Incident,
    *,
    form: PostMortemForm | None = None,
    action_form: ActionItemForm | None = None,
    saved_item: ActionItem | None = None,
) -> dict[str, Any]:
    postmortem = (
        PostMortem.objects.filter(incident=incident)
        .select_related("author")
        .prefetch_related("actions__owner")
        .first()
    )
    writable = incident.state in WRITABLE_STATES
    can_edit = writable and request.user.has_perm("incidents.change_incident")
    if form is None and can_edit:
        initial = (
            {name: getattr(postmortem, name) for name in TEXT_FIELDS}
            if postmortem is not None
            else {"timeline": timeline_excerpt(incident)}
        )
        form = PostMortemForm(initial=initial)
    if action_form is None and can_edit:
        action_form = ActionItemForm(initial={"owner": request.user.pk})
    complete = postmortem is not None and postmortem.is_complete
    return {
        "incident": incident,
        "incident_url": _url_or_none("incidents:detail", incident.pk),
        "list_url": _url_or_none("incidents:list"),
        "postmortem": postmortem,
        "sections": [
            (label, getattr(postmortem, name) if postmortem else "") for name, label in SECTIONS
        ],
        "items": list(postmortem.actions.all()) if postmortem else [],
        "today": timezone.localdate(),
        "now": timezone.now(),
        "time_to_acknowledge": duration_words(incident.time_to_acknowledge),
        "time_to_resolve": duration_words(incident.time_to_resolve),
        "writable": writable,
        "can_edit": can_edit,
        "form": form,
        "action_form": action_form,
        "saved_item": saved_item,
        "close_url": (
            _url_or_none("incidents:close", incident.pk)
            if complete and can_edit and incident.state == IncidentState.RESOLVED
            else None
        ),
    }


def _render_postmortem(
    request: PortalRequest, incident: Incident, status: int = 200, **kw: Any
) -> HttpResponse:
    context = _postmortem_context(request, incident, **kw)
    return render(request, "incidents/postmortem.html", context, status=status)


@require_permission("incidents.view_incident")
@require_http_methods(["GET", "POST"])
def postmortem(request: PortalRequest, pk: int) -> HttpResponse:
    """The post-mortem of an incident: a draft (its timeline excerpt generated from the
    entries) until it is marked complete. Anyone who sees incidents reads it."""
    if request.method == "POST":
        return _save_postmortem(request, pk)
    return _render_postmortem(request, _incident(pk))


@require_permission("incidents.change_incident")
def _save_postmortem(request: PortalRequest, pk: int) -> HttpResponse:
    incident = _incident(pk)
    form = PostMortemForm(request.POST)
    if not form.is_valid():
        return _render_postmortem(request, incident, status=400, form=form)
    try:
        do_save_postmortem(request.user, incident, form.cleaned_data)
    except IncidentRefused as exc:
        messages.error(request, exc.message)
        return _render_postmortem(request, incident, status=400, form=form)
    messages.success(request, "Post-mortem saved.")
    return redirect(_page_url(incident))


@require_permission("incidents.change_incident")
@require_POST
def postmortem_complete(request: PortalRequest, pk: int) -> HttpResponse:
    """Mark the post-mortem complete, with the sections posted along (the page's form), or
    as saved. Refused with the reason, and the typed text kept, when something is missing."""
    incident = _incident(pk)
    form: PostMortemForm | None = None
    if any(name in request.POST for name in TEXT_FIELDS):
        form = PostMortemForm(request.POST)
        if not form.is_valid():
            return _render_postmortem(request, incident, status=400, form=form)
    try:
        do_complete_postmortem(request.user, incident, form.cleaned_data if form else None)
    except IncidentRefused as exc:
        messages.error(request, exc.message)
        if form is not None:
            return _render_postmortem(request, incident, status=400, form=form)
        return redirect(_page_url(incident))
    closing = " It can now be closed." if incident.state == IncidentState.RESOLVED else ""
    messages.success(request, f"Post-mortem of incident #{incident.pk} complete.{closing}")
    return redirect(_page_url(incident))


@require_permission("incidents.change_incident")
@require_POST
def action_add(request: PortalRequest, pk: int) -> HttpResponse:
    """Add an action item; an htmx request gets the action items back, others a redirect."""
    incident = _incident(pk)
    form = ActionItemForm(request.POST)
    item = None
    if form.is_valid():
        try:
            item = do_add_action_item(
                request.user,
                incident,
                title=form.cleaned_data["title"],
                owner=form.cleaned_data["owner"],
                due_date=form.cleaned_data["due_date"],
            )
        except IncidentRefused as exc:
            form.add_error(None, exc.message)
    if item is None:
        if request.htmx:
            context = _postmortem_context(request, incident, action_form=form)
            return render(request, "incidents/postmortem.html#actions", context)
        return _render_postmortem(request, incident, status=400, action_form=form)
    if request.htmx:
        context = _postmortem_context(request, incident, saved_item=item)
        return render(request, "incidents/postmortem.html#actions", context)
    messages.success(request, f"Action item added: {item.title}.")
    return redirect(f"{_page_url(incident)}#actions")


@require_permission("incidents.change_incident")
@require_POST
def action_done(request: PortalRequest, item_pk: int) -> HttpResponse:
    """Mark an action item done; back to where the button was (the post-mortem page, or
    the follow-up list)."""
    item = get_object_or_404(ActionItem.objects.select_related("postmortem__incident"), pk=item_pk)
    incident = item.postmortem.incident
    item = do_complete_action_item(request.user, item)
    if request.htmx:
        context = _postmortem_context(request, _incident(incident.pk))
        return render(request, "incidents/postmortem.html#actions", context)
    messages.success(request, f"Done: {item.title}.")
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(back)
    return redirect(f"{_page_url(incident)}#actions")


@require_permission("incidents.view_incident")
@require_GET
def postmortem_markdown(request: PortalRequest, pk: int) -> HttpResponse:
    """The post-mortem as a Markdown file to download; each download is audited."""
    incident = _incident(pk)
    try:
        export = do_export_postmortem(request.user, incident)
    except IncidentRefused as exc:
        messages.error(request, exc.message)
        return redirect(_page_url(incident))
    response = HttpResponse(export.content, content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _overdue(incident: Incident, now: datetime) -> bool:
    return incident.postmortem_due is not None and incident.postmortem_due < now


@require_permission("incidents.view_incident")
@require_GET
def follow_up(request: PortalRequest) -> HttpResponse:
    """For managers: post-mortems overdue and due soon, and the open action items, overdue
    first. Three queries whatever the number of incidents."""
    now = timezone.now()
    today = timezone.localdate()
    filters = FollowUpFilterForm(request.GET)
    mine = filters.is_valid() and filters.cleaned_data["mine"]
    waiting = list(
        Incident.objects.filter(postmortem_due__isnull=False, state__in=WRITABLE_STATES)
        .filter(Q(postmortem__isnull=True) | Q(postmortem__completed_at__isnull=True))
        .select_related("severity", "commander", "postmortem")
        .order_by("postmortem_due", "pk")
    )
    items = ActionItem.objects.filter(done_at__isnull=True).select_related(
        "owner", "postmortem__incident__severity"
    )
    if mine:
        items = items.filter(owner=request.user)
    open_items = list(items.order_by("due_date", "pk")[: FOLLOW_UP_ITEMS + 1])
    return render(
        request,
        "incidents/follow_up.html",
        {
            "filters": filters,
            "mine": mine,
            "now": now,
            "today": today,
            "overdue": [(each, incident_link(each)) for each in waiting if _overdue(each, now)],
            "due_soon": [
                (each, incident_link(each)) for each in waiting if not _overdue(each, now)
            ],
            "items": [
                (item, incident_link(item.postmortem.incident))
                for item in open_items[:FOLLOW_UP_ITEMS]
            ],
            "more_items": len(open_items) > FOLLOW_UP_ITEMS,
            "overdue_items": sum(1 for item in open_items if item.due_date < today),
            "can_edit": request.user.has_perm("incidents.change_incident"),
            "here": request.get_full_path(),
        },
    )


@require_permission("incidents.view_incident")
@require_GET
def figures(request: PortalRequest) -> HttpResponse:
    """For managers: counts by severity, mean times to acknowledge and resolve, and
    post-mortem compliance, against the previous period, with incidents per week."""
    form = FiguresPeriodForm(request.GET)
    chosen = form.chosen()
    context = {
        "report": figures_report(chosen),
        "periods": PERIOD_CHOICES,
        "chosen": chosen,
        "unknown_period": bool(request.GET.get("period")) and not form.is_valid(),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "incidents/figures.html#figures", context)
    return render(request, "incidents/figures.html", context)
