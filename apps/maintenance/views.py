"""Maintenance pages: the list (upcoming and past), a month calendar, each window's page
(occurrences, stages, checklist, operations), the form, and the iCalendar feed."""

from __future__ import annotations

import calendar as calendar_module
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import require_permission
from apps.common.http import PortalRequest
from apps.maintenance import actions, ical
from apps.maintenance.actions import MaintenanceRefused
from apps.maintenance.choices import OccurrenceState
from apps.maintenance.forms import ExtendForm, MoveForm, NoteForm, ReasonForm, WindowForm
from apps.maintenance.models import ChecklistStep, Occurrence, Window
from apps.maintenance.recurrence import zone_choices
from apps.operations.models import Operation

VIEW = "maintenance.view_window"
ADD = "maintenance.add_window"
CHANGE = "maintenance.change_window"
LIST_LIMIT = 100
FEED_SALT = "maintenance.feed"


def _occurrences() -> Any:
    return Occurrence.objects.select_related("window__owner").only(
        "start_at",
        "end_at",
        "state",
        "window__title",
        "window__impact",
        "window__time_zone",
        "window__owner__username",
    )


@require_permission(VIEW)
@require_GET
def window_list(request: PortalRequest) -> HttpResponse:
    now = timezone.now()
    upcoming = list(
        _occurrences()
        .filter(state__in=[OccurrenceState.SCHEDULED, OccurrenceState.IN_PROGRESS])
        .order_by("start_at", "pk")[:LIST_LIMIT]
    )
    past = list(
        _occurrences()
        .exclude(state__in=[OccurrenceState.SCHEDULED, OccurrenceState.IN_PROGRESS])
        .order_by("-start_at", "-pk")[:LIST_LIMIT]
    )
    return render(
        request, "maintenance/list.html", {"upcoming": upcoming, "past": past, "now": now}
    )


def _month(value: str, today: date) -> date:
    try:
        year, month = (int(part) for part in value.split("-", 1))
        return date(year, month, 1)
    except ValueError:
        return today.replace(day=1)


@require_permission(VIEW)
@require_GET
def month_calendar(request: PortalRequest) -> HttpResponse:
    """A month as a server-rendered table, in the viewer's zone; one query."""
    zone = timezone.get_current_timezone()
    today = timezone.localdate()
    first = _month(request.GET.get("month", ""), today)
    weeks = calendar_module.Calendar(firstweekday=0).monthdatescalendar(first.year, first.month)
    start = datetime.combine(weeks[0][0], datetime.min.time(), tzinfo=zone)
    end = datetime.combine(weeks[-1][-1] + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    by_day: dict[date, list[Occurrence]] = {}
    for occurrence in (
        _occurrences().filter(start_at__lt=end, end_at__gt=start).order_by("start_at")
    ):
        day = timezone.localtime(occurrence.start_at).date()
        by_day.setdefault(day, []).append(occurrence)
    previous = (first - timedelta(days=1)).replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return render(
        request,
        "maintenance/calendar.html",
        {
            "first": first,
            "today": today,
            "weeks": [[(day, by_day.get(day, [])) for day in week] for week in weeks],
            "previous": f"{previous:%Y-%m}",
            "following": f"{following:%Y-%m}",
            "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            "week_day": f"{today if today.replace(day=1) == first else first:%Y-%m-%d}",
        },
    )


def _day(value: str, today: date) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return today


@require_permission(VIEW)
@require_GET
def week_calendar(request: PortalRequest) -> HttpResponse:
    """A week (Monday first) as seven columns of the day's windows with their hours, in the
    viewer's zone; one query."""
    zone = timezone.get_current_timezone()
    today = timezone.localdate()
    chosen = _day(request.GET.get("day", ""), today)
    monday = chosen - timedelta(days=chosen.weekday())
    days = [monday + timedelta(days=offset) for offset in range(7)]
    start = datetime.combine(monday, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(monday + timedelta(days=7), datetime.min.time(), tzinfo=zone)
    by_day: dict[date, list[Occurrence]] = {day: [] for day in days}
    for occurrence in (
        _occurrences().filter(start_at__lt=end, end_at__gt=start).order_by("start_at")
    ):
        # A window crossing midnight shows on each day it touches.
        first = max(timezone.localtime(occurrence.start_at).date(), monday)
        last = min(
            timezone.localtime(occurrence.end_at - timedelta(microseconds=1)).date(), days[-1]
        )
        day = first
        while day <= last:
            by_day[day].append(occurrence)
            day += timedelta(days=1)
    return render(
        request,
        "maintenance/week.html",
        {
            "monday": monday,
            "sunday": days[-1],
            "today": today,
            "days": [(day, by_day[day]) for day in days],
            "previous": f"{monday - timedelta(days=7):%Y-%m-%d}",
            "following": f"{monday + timedelta(days=7):%Y-%m-%d}",
            "month": f"{monday:%Y-%m}",
        },
    )


def _window(pk: int) -> Window:
    return get_object_or_404(Window.objects.select_related("owner"), pk=pk)


@require_permission(VIEW)
@require_GET
def window_detail(request: PortalRequest, pk: int) -> HttpResponse:
    window = _window(pk)
    occurrences = list(
        window.occurrences.prefetch_related("stages", "steps__done_by").order_by("start_at")
    )
    current = next(
        (o for o in occurrences if o.state == OccurrenceState.IN_PROGRESS),
        next((o for o in occurrences if o.state == OccurrenceState.SCHEDULED), None),
    )
    operations = list(
        Operation.objects.filter(origin=window.origin)
        .select_related("requested_by")
        .order_by("-created_at")[:50]
    )
    context = {
        "window": window,
        "services": list(window.services.order_by("name")),
        "environments": list(window.environments.order_by("order")),
        "occurrences": occurrences,
        "current": current,
        "operations": operations,
        "live": any(op.state in ("queued", "running", "awaiting_approval") for op in operations),
        "extend_form": ExtendForm(),
        "can_change": request.user.has_perm(CHANGE),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "maintenance/detail.html#operations", context)
    return render(request, "maintenance/detail.html", context)


def _form_page(request: PortalRequest, form: WindowForm, window: Window | None) -> HttpResponse:
    return render(
        request,
        "maintenance/form.html",
        {"form": form, "window": window, "zones": zone_choices()},
        status=400 if form.is_bound else 200,
    )


@require_permission(ADD)
@require_http_methods(["GET", "POST"])
def window_create(request: PortalRequest) -> HttpResponse:
    form = WindowForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            window = actions.do_create_window(request.user, form.data_for_action())
        except MaintenanceRefused as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Window #{window.pk} scheduled.")
            return redirect(window)
    return _form_page(request, form, None)


@require_permission(CHANGE)
@require_http_methods(["GET", "POST"])
def window_edit(request: PortalRequest, pk: int) -> HttpResponse:
    window = _window(pk)
    form = WindowForm(request.POST if request.method == "POST" else None, window=window)
    if request.method == "POST" and form.is_valid():
        try:
            actions.do_update_window(request.user, window, form.data_for_action())
        except MaintenanceRefused as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Window saved.")
            return redirect(window)
    return _form_page(request, form, window)


def _done(request: HttpRequest, window: Window, outcome: str | None, error: str | None) -> Any:
    if error:
        messages.error(request, error)
    elif outcome:
        messages.success(request, outcome)
    return redirect(window)


def _occurrence(pk: int) -> Occurrence:
    return get_object_or_404(Occurrence.objects.select_related("window"), pk=pk)


def _run(request: PortalRequest, window: Window, change: Any, success: str) -> HttpResponse:
    try:
        change()
    except MaintenanceRefused as exc:
        return _done(request, window, None, exc.message)
    return _done(request, window, success, None)


@require_permission(CHANGE)
@require_POST
def occurrence_start(request: PortalRequest, pk: int) -> HttpResponse:
    occurrence = _occurrence(pk)
    return _run(
        request,
        occurrence.window,
        lambda: actions.do_start_occurrence(request.user, occurrence),
        "Maintenance started.",
    )


@require_permission(CHANGE)
@require_POST
def occurrence_end(request: PortalRequest, pk: int) -> HttpResponse:
    occurrence = _occurrence(pk)
    return _run(
        request,
        occurrence.window,
        lambda: actions.do_end_occurrence(request.user, occurrence),
        "Maintenance ended.",
    )


@require_permission(CHANGE)
@require_POST
def occurrence_extend(request: PortalRequest, pk: int) -> HttpResponse:
    occurrence = _occurrence(pk)
    form = ExtendForm(request.POST)
    if not form.is_valid():
        return _done(request, occurrence.window, None, "Choose how long to extend by.")
    return _run(
        request,
        occurrence.window,
        lambda: actions.do_extend_occurrence(request.user, occurrence, form.by),
        f"Extended by {form.cleaned_data['minutes']} minutes.",
    )


@require_permission(CHANGE)
@require_POST
def occurrence_skip(request: PortalRequest, pk: int) -> HttpResponse:
    occurrence = _occurrence(pk)
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    return _run(
        request,
        occurrence.window,
        lambda: actions.do_skip_occurrence(request.user, occurrence, reason),
        "Occurrence skipped.",
    )


@require_permission(CHANGE)
@require_http_methods(["GET", "POST"])
def occurrence_move(request: PortalRequest, pk: int) -> HttpResponse:
    occurrence = _occurrence(pk)
    window = occurrence.window
    zone = window.zone
    form = MoveForm(
        request.POST if request.method == "POST" else None,
        initial={
            "start": occurrence.start_at.astimezone(zone).replace(tzinfo=None),
            "end": occurrence.end_at.astimezone(zone).replace(tzinfo=None),
        },
    )
    if request.method == "POST" and form.is_valid():
        start = form.cleaned_data["start"].replace(tzinfo=None).replace(tzinfo=zone)
        end = form.cleaned_data["end"].replace(tzinfo=None).replace(tzinfo=zone)
        try:
            actions.do_move_occurrence(
                request.user, occurrence, start, end, form.cleaned_data["reason"]
            )
        except MaintenanceRefused as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Occurrence moved.")
            return redirect(window)
    return render(
        request,
        "maintenance/move.html",
        {"form": form, "occurrence": occurrence, "window": window},
        status=400 if form.is_bound else 200,
    )


@require_permission(CHANGE)
@require_POST
def window_cancel(request: PortalRequest, pk: int) -> HttpResponse:
    window = _window(pk)
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    return _run(
        request,
        window,
        lambda: actions.do_cancel_window(request.user, window, reason),
        "Window cancelled.",
    )


@require_permission(CHANGE)
@require_POST
def step_tick(request: PortalRequest, pk: int) -> HttpResponse:
    step = get_object_or_404(ChecklistStep.objects.select_related("occurrence__window"), pk=pk)
    form = NoteForm(request.POST)
    if not form.is_valid():
        return _done(request, step.occurrence.window, None, "The note is too long.")
    return _run(
        request,
        step.occurrence.window,
        lambda: actions.do_tick_step(request.user, step, form.cleaned_data["note"]),
        f"{step.get_kind_display()}: ticked.",
    )


@require_permission(CHANGE)
@require_POST
def test_message(request: PortalRequest, pk: int) -> HttpResponse:
    window = _window(pk)
    try:
        reached = actions.do_send_test_message(request.user, window)
    except MaintenanceRefused as exc:
        return _done(request, window, None, exc.message)
    return _done(request, window, f"Test message sent to {' and '.join(reached)}.", None)


def feed_token(user_id: int) -> str:
    return signing.Signer(salt=FEED_SALT).sign(str(user_id)).replace(":", ".")


@require_permission(VIEW)
@require_GET
def feed_link(request: PortalRequest) -> HttpResponse:
    url = request.build_absolute_uri(
        reverse("maintenance:feed", args=[feed_token(request.user.pk)])
    )
    return render(request, "maintenance/feed.html", {"feed_url": url})


@require_GET
def feed(request: HttpRequest, token: str) -> HttpResponse:
    """The calendar feed, for calendar apps that cannot sign in: the secret link names a
    user, who must still be active and allowed to read windows."""
    from django.contrib.auth.models import User

    try:
        user_id = int(signing.Signer(salt=FEED_SALT).unsign(token.replace(".", ":")))
    except (signing.BadSignature, ValueError):
        raise Http404("No such feed.") from None
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not user.has_perm(VIEW):
        raise Http404("No such feed.")
    since = timezone.now() - timedelta(days=90)
    occurrences = (
        Occurrence.objects.filter(end_at__gte=since)
        .exclude(state__in=[OccurrenceState.SKIPPED, OccurrenceState.CANCELLED])
        .select_related("window")
        .order_by("start_at")[:2000]
    )
    body = ical.calendar(occurrences, request.build_absolute_uri("/").rstrip("/"))
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="maintenance.ics"'
    return response
