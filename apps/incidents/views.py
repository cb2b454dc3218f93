"""The incident pages: the list, declaring one, and the incident's own page with its live
timeline and the forms that change it. Every change goes through one action of
apps.incidents.actions; a refusal is shown where the person typed, and nothing is saved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from apps.accounts.access import require_permission
from apps.audit.history import history_context
from apps.common.http import PortalRequest
from apps.common.paging import keyset_page
from apps.incidents import actions, timeline
from apps.incidents.actions import IncidentRefused
from apps.incidents.choices import OPEN_STATES, EntryKind, IncidentState, Role
from apps.incidents.forms import (
    AcknowledgeForm,
    AffectedForm,
    CloseForm,
    DeclareForm,
    IncidentFilterForm,
    IncidentForm,
    NoteForm,
    ResolveForm,
    RoleForm,
    SeverityForm,
    StateForm,
    UpdateForm,
)
from apps.incidents.hooks import origin_of
from apps.incidents.models import INCIDENT_TYPE, Incident, Severity, TimelineEntry
from apps.incidents.postmortems import duration_words
from apps.operations.registry import get_kind
from apps.services.models import DeploymentTarget, Environment, Service

# What can be done from an incident's page to its services, in the order people reach for them.
INCIDENT_KINDS = [
    "services.rollback",
    "services.restart",
    "services.scale",
    "services.set_flags",
]
# Entries that change what the page's header shows: a poll bringing one refreshes it.
HEADER_KINDS = {
    EntryKind.STATE,
    EntryKind.SEVERITY,
    EntryKind.ROLE,
    EntryKind.SERVICES,
    EntryKind.ACKNOWLEDGED,
    EntryKind.ESCALATED,
    EntryKind.UPDATE,  # the next update is due later
}
NOTIFICATIONS_SHOWN = 50


class Look(NamedTuple):
    """How a state or severity is drawn: a tone, an icon and a word (never colour alone)."""

    tone: str
    icon: str
    word: str


STATE_LOOKS = {
    IncidentState.INVESTIGATING: Look("danger", "search", "Investigating"),
    IncidentState.IDENTIFIED: Look("warning", "crosshair", "Identified"),
    IncidentState.MITIGATING: Look("warning", "bandaid", "Mitigating"),
    IncidentState.MONITORING: Look("info", "eye", "Monitoring"),
    IncidentState.RESOLVED: Look("success", "check-circle-fill", "Resolved"),
    IncidentState.CLOSED: Look("secondary", "archive", "Closed"),
}
SEVERITY_LOOKS = {
    1: Look("danger", "fire", ""),
    2: Look("warning", "exclamation-triangle-fill", ""),
    3: Look("info", "exclamation-circle", ""),
}


def state_look(state: str) -> Look:
    return STATE_LOOKS.get(state, Look("secondary", "circle", state))  # type: ignore[call-overload]


def severity_look(severity: Severity) -> Look:
    tone, icon, _ = SEVERITY_LOOKS.get(severity.rank, Look("secondary", "info-circle", ""))
    return Look(tone, icon, severity.key)


class Row(NamedTuple):
    incident: Incident
    state: Look
    severity: Look
    ack_after: str


def _row(incident: Incident) -> Row:
    to_ack = incident.time_to_acknowledge
    return Row(
        incident,
        state_look(incident.state),
        severity_look(incident.severity),
        duration_words(to_ack) if to_ack is not None else "",
    )


def _editable(request: PortalRequest, incident: Incident) -> bool:
    """Whether this user may correct the entries of this incident's timeline from the page."""
    return incident.state != IncidentState.CLOSED and request.user.has_perm(
        "incidents.change_incident"
    )


def _is_fragment(request: PortalRequest) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


# --- The list ----------------------------------------------------------------------------


@require_permission("incidents.view_incident")
@require_GET
def incident_list(request: PortalRequest) -> HttpResponse:
    """Open incidents first (worst first), then the others newest first, paged by id. A
    filter value that is not valid is ignored rather than failing the page."""
    form = IncidentFilterForm(request.GET)
    form.is_valid()
    filters = getattr(form, "cleaned_data", {})
    state = filters.get("state") or "all"
    incidents = Incident.objects.for_list().order_by("-pk")
    if severity := filters.get("severity"):
        incidents = incidents.filter(severity=severity)
    if service := filters.get("service"):
        incidents = incidents.filter(services=service)
    before = filters.get("before")
    open_rows: list[Row] = []
    if state == "all":
        if not before:
            open_rows = [
                _row(incident)
                for incident in incidents.open().order_by("severity__rank", "-declared_at")
            ]
        rest = incidents.exclude(state__in=OPEN_STATES)
    elif state == "open":
        rest = incidents.open()
    else:
        rest = incidents.filter(state=state)
    page = keyset_page(request, rest, "pk", before)
    context = {
        "form": form,
        "state": state,
        "open_rows": open_rows,
        "rows": [_row(incident) for incident in page.rows],
        "next_query": page.next_query,
        "paged": bool(before),
        "filtered": bool(filters.get("severity") or filters.get("service"))
        or state not in ("all", ""),
    }
    if _is_fragment(request):
        return render(request, "incidents/list.html#results", context)
    return render(request, "incidents/list.html", context)


# --- Declaring -------------------------------------------------------------------------------


def _prefilled_services(request: PortalRequest) -> tuple[list[int], list[str]]:
    """The services named by ``?service=<id>`` (from a service page or an alert), and the
    values that name none, to say so."""
    wanted = request.GET.getlist("service")
    ids = [int(value) for value in wanted if value.isdigit()]
    found = set(Service.objects.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()
    unknown = [value for value in wanted if not value.isdigit() or int(value) not in found]
    return sorted(found), unknown


def _prefilled(request: PortalRequest, service_ids: list[int]) -> dict[str, Any]:
    """What a link may fill in (an alert: its title, severity and environment); a value
    that names nothing is left out, and the form asks for it as usual."""
    initial: dict[str, Any] = {"services": service_ids}
    title = request.GET.get("title", "").replace("\x00", "").strip()
    if title:
        initial["title"] = title[: Incident._meta.get_field("title").max_length]
    severity = Severity.objects.filter(key=request.GET.get("severity", "")).first()
    if severity is not None:
        initial["severity"] = severity.pk
    environments = [value for value in request.GET.getlist("environment") if value.isdigit()]
    if environments:
        initial["environments"] = list(
            Environment.objects.filter(pk__in=environments).values_list("pk", flat=True)
        )
    return initial


def _severity_guide() -> list[tuple[Severity, str, str]]:
    """Each severity with what it asks, in words, beside the declaration form."""
    guide = []
    for severity in Severity.objects.all():
        acknowledge = duration_words(severity.acknowledge_within)
        if severity.business_days:
            acknowledge += " (business days)"
        every = severity.update_every
        guide.append((severity, acknowledge, duration_words(every) if every else ""))
    return guide


@require_permission("incidents.add_incident")
@require_http_methods(["GET", "POST"])
def declare(request: PortalRequest) -> HttpResponse:
    """Open an incident: the declarer commands it unless someone else is named."""
    unknown: list[str] = []
    if request.method == "POST":
        form = DeclareForm(request.POST, declarer=request.user)
    else:
        service_ids, unknown = _prefilled_services(request)
        form = DeclareForm(declarer=request.user, initial=_prefilled(request, service_ids))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            incident = actions.do_declare_incident(
                request.user,
                title=data["title"],
                severity=data["severity"],
                services=data["services"],
                environments=data["environments"],
                customer_impact=data["customer_impact"],
                commander=data["commander"],
            )
        except IncidentRefused as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                f"Incident #{incident.pk} is declared ({incident.severity.key}). "
                "Acknowledge it when someone is on it.",
            )
            if _is_fragment(request):
                return HttpResponseClientRedirect(incident.get_absolute_url())
            return redirect(incident)
    context = {"form": form, "unknown_services": unknown, "severities": _severity_guide()}
    if _is_fragment(request):
        return render(request, "incidents/declare.html#form", context)
    status = 400 if request.method == "POST" else 200
    return render(request, "incidents/declare.html", context, status=status)


# --- The incident's page -------------------------------------------------------------------


@dataclass
class FormCard:
    """One collapsible form of the incident page."""

    name: str
    title: str
    icon: str
    url: str
    button: str
    form: forms.Form
    # The element an htmx answer replaces: the card itself, or the group it changes.
    target: str
    tone: str = "primary"
    open: bool = False
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _incident(pk: int) -> Incident:
    return get_object_or_404(
        Incident.objects.select_related(
            "severity",
            "commander",
            "communications_lead",
            "technical_lead",
            "acknowledged_by",
            "declared_by",
            "postmortem",
        ).prefetch_related("services", "environments"),
        pk=pk,
    )


def _postmortem_url(incident: Incident) -> str:
    # The post-mortem pages may not exist (yet) in this deployment: no link then.
    try:
        return reverse("incidents:postmortem", args=[incident.pk])
    except NoReverseMatch:
        return ""


def _header_context(request: PortalRequest, incident: Incident) -> dict[str, Any]:
    now = timezone.now()
    postmortem = getattr(incident, "postmortem", None)
    return {
        "incident": incident,
        "state_look": state_look(incident.state),
        "severity_look": severity_look(incident.severity),
        "ack_overdue": bool(incident.acknowledge_by and incident.acknowledge_by <= now),
        "update_overdue": bool(incident.next_update_due and incident.next_update_due <= now),
        "postmortem": postmortem,
        "postmortem_url": _postmortem_url(incident),
        "can_change": request.user.has_perm("incidents.change_incident"),
    }


def _cards(
    request: PortalRequest,
    incident: Incident,
    bound: IncidentForm | None,
    bound_name: str,
    message: str,
) -> tuple[list[FormCard], list[FormCard]]:
    """The write cards (note, update) and the manage cards, each with a fresh form except
    the one just submitted (bound, with its errors or its success message)."""
    if not request.user.has_perm("incidents.change_incident"):
        return [], []
    corrects = request.GET.get("corrects", "")
    initial_corrects = {"corrects": int(corrects)} if corrects.isdigit() else {}
    pk = incident.pk

    def card(name: str, form_class: type[IncidentForm], target: str, **kwargs: Any) -> FormCard:
        initial = kwargs.pop("initial", {})
        opened = kwargs.pop("open", False) or name == bound_name
        if name == bound_name and bound is not None and not message:
            form = bound
        else:
            form = form_class(incident=incident, initial=initial, auto_id=f"id_{name}_%s")
        return FormCard(
            name=name,
            form=form,
            url=reverse(f"incidents:{name}", args=[pk]),
            target=target,
            open=opened,
            message=message if name == bound_name else "",
            **kwargs,
        )

    live = incident.state != IncidentState.CLOSED
    resolved = incident.state == IncidentState.RESOLVED
    postmortem = getattr(incident, "postmortem", None)

    def offered(name: str, when: bool) -> bool:
        # A form just refused stays in view with its message, even where it is not offered.
        return when or name == bound_name

    write: list[FormCard] = []
    manage: list[FormCard] = []
    write.append(
        card(
            "note",
            NoteForm,
            "card-note",
            title="Add a note",
            icon="sticky",
            button="Add note",
            initial=initial_corrects,
            open=bool(initial_corrects),
        )
    )
    if offered("update", live):
        write.append(
            card(
                "update",
                UpdateForm,
                "card-update",
                title="Post a status update",
                icon="megaphone",
                button="Post update",
                initial=initial_corrects,
                # What the commander does most: ready without a click.
                open=incident.is_open and not bound_name and not initial_corrects,
            )
        )
    manage.append(
        card(
            "state",
            StateForm,
            "incident-manage",
            **(
                {"title": "Change state", "icon": "signpost-split", "button": "Change state"}
                if incident.is_open
                else {
                    "title": "Reopen",
                    "icon": "arrow-counterclockwise",
                    "button": "Reopen",
                    "tone": "outline-danger",
                }
            ),
        )
    )
    if offered("severity", live):
        manage.append(
            card(
                "severity",
                SeverityForm,
                "incident-manage",
                title="Change severity",
                icon="thermometer-half",
                button="Change severity",
            )
        )
    if offered("role", live):
        manage.append(
            card(
                "role",
                RoleForm,
                "incident-manage",
                title="Hand over a role",
                icon="person-badge",
                button="Hand over",
            )
        )
    if offered("affected", live):
        manage.append(
            card(
                "affected",
                AffectedForm,
                "incident-manage",
                title="Affected services",
                icon="hdd-network",
                button="Save affected",
                initial={
                    "services": [service.pk for service in incident.services.all()],
                    "environments": [each.pk for each in incident.environments.all()],
                },
            )
        )
    if offered("resolve", incident.is_open):
        manage.append(
            card(
                "resolve",
                ResolveForm,
                "incident-manage",
                title="Resolve",
                icon="check2-circle",
                button="Resolve with this update",
                tone="success",
            )
        )
    if offered("close", resolved):
        manage.append(
            card(
                "close",
                CloseForm,
                "incident-manage",
                title="Close",
                icon="archive",
                button="Close the incident",
                tone="outline-secondary",
                extra={
                    "needs_postmortem": incident.severity.requires_postmortem
                    and (postmortem is None or not postmortem.is_complete),
                    "postmortem_url": _postmortem_url(incident),
                },
            )
        )
    return write, manage


def _actions(
    request: PortalRequest, incident: Incident
) -> list[tuple[DeploymentTarget, list[Any]]]:
    """The deployment targets of the affected services (in the affected environments, or
    all of them) with the operations this user may start on them from here."""
    if incident.state == IncidentState.CLOSED:
        return []
    kinds = [get_kind(name) for name in INCIDENT_KINDS]
    kinds = [kind for kind in kinds if request.user.has_perm(kind.permission)]
    services = list(incident.services.all())
    if not kinds or not services:
        return []
    targets = DeploymentTarget.objects.filter(service__in=services).select_related(
        "service", "environment"
    )
    environments = list(incident.environments.all())
    if environments:
        targets = targets.filter(environment__in=environments)
    return [(target, kinds) for target in targets]


def _detail_context(
    request: PortalRequest,
    incident: Incident,
    *,
    bound: IncidentForm | None = None,
    bound_name: str = "",
    message: str = "",
    with_timeline: bool = True,
    everything: bool = False,
) -> dict[str, Any]:
    write, manage = _cards(request, incident, bound, bound_name, message)
    context = _header_context(request, incident)
    context.update(
        {
            "write_cards": write,
            "manage_cards": manage,
            "live": incident.state != IncidentState.CLOSED,
            "origin": origin_of(incident),
        }
    )
    if with_timeline:
        if everything:
            entries = list(timeline.entries(incident.pk))
            window = timeline.Window(entries, 0, max((entry.pk for entry in entries), default=0))
        else:
            window = timeline.window(incident.pk)
        timeline.prepare(
            window.entries,
            editable=_editable(request, incident),
            page_url=incident.get_absolute_url(),
            complete=everything,
        )
        context.update(
            {
                "entries": window.entries,
                "earlier": window.earlier,
                "cursor": window.cursor,
                "act_targets": _actions(request, incident),
                "notifications": list(incident.notifications.all()[:NOTIFICATIONS_SHOWN]),
                "notifications_limit": NOTIFICATIONS_SHOWN,
                **_history(request, incident.pk),
            }
        )
    return context


def _history(request: PortalRequest, pk: int) -> dict[str, Any]:
    """The audit events about the incident, newest first and paged (one query)."""
    return history_context(request, [(INCIDENT_TYPE, pk)], target_type=INCIDENT_TYPE, target_id=pk)


def _poll(request: PortalRequest, incident_pk: int, after: int) -> HttpResponse:
    """Only the entries after the cursor: nothing at all (204) when there is none, so that
    a poll costs a few hundred bytes; with new entries, those, the new cursor, and the
    header again when one of them changed it."""
    new = list(timeline.entries(incident_pk).filter(pk__gt=after))
    if not new:
        return HttpResponse(status=204)
    incident = _incident(incident_pk)
    # An entry logged afterwards (dated earlier) belongs inside the timeline, not at its end:
    # then the whole timeline is sent again, in order.
    last_shown = (
        TimelineEntry.objects.filter(incident_id=incident_pk, pk__lte=after)
        .order_by("-occurred_at", "-id")
        .values_list("occurred_at", "id")
        .first()
    )
    in_order = last_shown is None or min((e.occurred_at, e.pk) for e in new) > last_shown
    context = _header_context(request, incident)
    earlier = 0
    if in_order:
        entries = new
    else:
        entries, earlier, _ = timeline.window(incident.pk)
    timeline.prepare(
        entries, editable=_editable(request, incident), page_url=incident.get_absolute_url()
    )
    context.update(
        {
            "entries": entries,
            "earlier": earlier,
            "replace_all": not in_order,
            "cursor": max(entry.pk for entry in new),
            "live": incident.state != IncidentState.CLOSED,
            "header_changed": any(entry.kind in HEADER_KINDS for entry in new),
            "poll": True,
        }
    )
    return render(request, "incidents/detail.html#poll", context)


@require_permission("incidents.view_incident")
@require_GET
def incident_detail(request: PortalRequest, pk: int) -> HttpResponse:
    after = request.GET.get("after", "")
    if _is_fragment(request) and after.isdigit():
        get_object_or_404(Incident.objects.only("pk"), pk=pk)
        return _poll(request, pk, int(after))
    earlier = request.GET.get("earlier", "")
    if _is_fragment(request) and earlier.isdigit():
        return _earlier(request, pk, int(earlier))
    if _is_fragment(request) and "before" in request.GET:
        # "Older events" of the History section: only that section, a page further back.
        get_object_or_404(Incident.objects.only("pk"), pk=pk)
        return render(request, "audit/_history.html", _history(request, pk))
    incident = _incident(pk)
    context = _detail_context(request, incident, everything=request.GET.get("all") == "1")
    if _is_fragment(request):
        return render(request, "incidents/detail.html#timeline", context)
    return render(request, "incidents/detail.html", context)


def _earlier(request: PortalRequest, incident_pk: int, first_shown: int) -> HttpResponse:
    """The entries that happened before the first one shown, a window at a time."""
    incident = get_object_or_404(Incident.objects.only("pk", "state"), pk=incident_pk)
    first = get_object_or_404(TimelineEntry, incident_id=incident_pk, pk=first_shown)
    entries, earlier, _ = timeline.window(incident_pk, before=first)
    timeline.prepare(
        entries, editable=_editable(request, incident), page_url=incident.get_absolute_url()
    )
    context = {"incident": incident, "entries": entries, "earlier": earlier}
    return render(request, "incidents/detail.html#earlier", context)


# --- Changing it --------------------------------------------------------------------------

# What the htmx answer to each form replaces (a partial of detail.html).
FRAGMENTS = {"acknowledge": "header", "note": "form_card", "update": "form_card"}

Act = Callable[[PortalRequest, Incident, dict[str, Any]], str]


def _change(
    request: PortalRequest, pk: int, name: str, form_class: type[IncidentForm], act: Act
) -> HttpResponse:
    """The one shape of every change: validate the form, call the action, and answer with
    a redirect and a message (or, for htmx, the fragment the form replaces). Bad input and
    refusals are shown beside the form, with nothing saved."""
    incident = _incident(pk)
    form = form_class(request.POST, incident=incident, auto_id=f"id_{name}_%s")
    message = ""
    if form.is_valid():
        try:
            message = act(request, incident, form.cleaned_data)
        except IncidentRefused as exc:
            form.add_error(None, exc.message)
    if message and not _is_fragment(request):
        messages.success(request, message)
        return redirect(incident)
    if message:
        incident = _incident(pk)  # as the action left it
    if not _is_fragment(request):
        context = _detail_context(request, incident, bound=form, bound_name=name)
        return render(request, "incidents/detail.html", context, status=400)
    # htmx swaps only 2xx answers: the errors come back with 200, in the fragment.
    context = _detail_context(
        request, incident, bound=form, bound_name=name, message=message, with_timeline=False
    )
    fragment = FRAGMENTS.get(name, "manage")
    if fragment == "form_card":
        context["card"] = next(card for card in context["write_cards"] if card.name == name)
    content = render_to_string(f"incidents/detail.html#{fragment}", context, request=request)
    if fragment != "header":
        content += render_to_string(
            "incidents/detail.html#header", {**context, "oob": True}, request=request
        )
    response = HttpResponse(content)
    if message:
        # The timeline fetches the new entries at once rather than at its next tick.
        response["HX-Trigger"] = "incident-changed"
    return response


def _acknowledge(request: PortalRequest, incident: Incident, data: dict[str, Any]) -> str:
    if incident.acknowledged_at is not None:
        by = incident.acknowledged_by.get_username() if incident.acknowledged_by else "someone"
        return f"Incident #{incident.pk} was already acknowledged by {by}."
    actions.do_acknowledge_incident(request.user, incident)
    return f"You acknowledged incident #{incident.pk}: escalation stops."


def _note(request: PortalRequest, incident: Incident, data: dict[str, Any]) -> str:
    entry = actions.do_add_note(
        request.user,
        incident,
        data["text"],
        occurred_at=data["occurred_at"],
        corrects=data["corrects"],
    )
    if entry.corrects_id:
        return f"Correction of entry #{entry.corrects_id} added (entry #{entry.pk})."
    return f"Note added (entry #{entry.pk})."


def _update(request: PortalRequest, incident: Incident, data: dict[str, Any]) -> str:
    entry = actions.do_post_update(
        request.user,
        incident,
        visibility=data["visibility"],
        current_status=data["current_status"],
        findings=data["findings"],
        next_steps=data["next_steps"],
        eta=data["eta"],
        occurred_at=data["occurred_at"],
        corrects=data["corrects"],
    )
    where = "public (on the status page)" if entry.is_public else "internal"
    return f"Status update posted, {where} (entry #{entry.pk})."


def _state(request: PortalRequest, incident: Incident, data: dict[str, Any]) -> str:
    changed = actions.do_change_state(request.user, incident, data["state"], data["reason"])
    return f"Incident #{incident.pk} is {changed.get_state_display().lower()}."


def _severity(request: PortalRequest, incident: Incident, data: dict[str, Any]) -> str:
    changed = actions.do_change_severity(request.user, incident, data["severity"], data["reason"])
    return f"Incident #{incident.pk} is {changed.severity}."


def _role(request: PortalRequest, incident: Incident, data: dict[str, Any]) -> str:
    role = Role(data["role"])
    holder = data["holder"]
    actions.do_hand_over_role(request.user, incident, role, holder)
    if holder is None:
        return f"Nobody is {role.label.lower()} now."
    return f"{holder.get_username()} is {role.label.lower()} now."


def _affected(request: PortalRequest, incident: Incident, data: dict[str, Any]) -> str:
    actions.do_change_affected(request.user, incident, data["services"], data["environments"])
    names = ", ".join(service.name for service in data["services"]) or "no service"
    return f"Affected services saved: {names}."


def _resolve(request: PortalRequest, incident: Incident, data: dict[str, Any]) -> str:
    resolved = actions.do_resolve_incident(
        request.user,
        incident,
        current_status=data["current_status"],
        findings=data["findings"],
        next_steps=data["next_steps"],
    )
    if resolved.postmortem_due:
        due = timezone.localtime(resolved.postmortem_due).strftime("%Y-%m-%d %H:%M %Z")
        return f"Incident #{incident.pk} is resolved. Its post-mortem is due by {due}."
    return f"Incident #{incident.pk} is resolved."


def _close(request: PortalRequest, incident: Incident, data: dict[str, Any]) -> str:
    actions.do_close_incident(request.user, incident)
    return f"Incident #{incident.pk} is closed."


def _change_view(name: str, form_class: type[IncidentForm], act: Act, doc: str) -> Any:
    @require_permission("incidents.change_incident")
    @require_POST
    def view(request: PortalRequest, pk: int) -> HttpResponse:
        return _change(request, pk, name, form_class, act)

    view.__name__ = view.__qualname__ = f"incident_{name}"
    view.__doc__ = doc
    return view


acknowledge = _change_view(
    "acknowledge", AcknowledgeForm, _acknowledge, "Someone has it: escalation stops."
)
add_note = _change_view("note", NoteForm, _note, "An internal note, possibly dated earlier.")
post_update = _change_view(
    "update", UpdateForm, _update, "A status update (internal or public) as the runbooks write it."
)
change_state = _change_view("state", StateForm, _state, "Move between the open states, or reopen.")
change_severity = _change_view(
    "severity", SeverityForm, _severity, "Raise or lower the severity (lowering needs a reason)."
)
hand_over_role = _change_view("role", RoleForm, _role, "Give a role to someone.")
change_affected = _change_view(
    "affected", AffectedForm, _affected, "Which services and environments it affects."
)
resolve = _change_view("resolve", ResolveForm, _resolve, "The all-clear, with a public update.")
close = _change_view(
    "close", CloseForm, _close, "Close a resolved incident (after its post-mortem when due)."
)
