"""Guided runs: start one on a section (operators), work through its steps, stop it; every
role reads runs, the open ones to resume and the past ones."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import require_permission
from apps.common.http import PortalRequest
from apps.common.paging import keyset_page
from apps.runbooks import run_hooks, runs
from apps.runbooks.binding import Binder, Binding, Link
from apps.runbooks.forms import StartRunForm, StepForm, StopRunForm
from apps.runbooks.models import Runbook, RunbookRun, RunState, RunStep
from apps.runbooks.procedures import procedure
from apps.runbooks.recognition import recognize
from apps.runbooks.rendering import parse


def _runbook(slug: str) -> Runbook:
    return get_object_or_404(Runbook.objects.select_related("service", "current"), slug=slug)


@require_permission("runbooks.add_runbookrun")
@require_http_methods(["GET", "POST"])
def run_start(request: PortalRequest, slug: str) -> HttpResponse:
    """The steps a run of the section will have, the incident it is for, and Start."""
    runbook = _runbook(slug)
    section = (request.POST.get("section") or request.GET.get("section") or "")[:220]
    initial = {"section": section, "incident": request.GET.get("incident", "")[:20]}
    form = StartRunForm(request.POST or None, initial=initial)
    found = (
        procedure(parse(runbook.current.source), section)
        if runbook.current is not None and section
        else None
    )
    context = {"runbook": runbook, "form": form, "procedure": found, "error": ""}
    if request.method == "POST" and form.is_valid():
        try:
            run = runs.do_start_run(
                request.user, runbook, form.cleaned_data["section"], form.cleaned_data["incident"]
            )
        except runs.RunRefused as exc:
            context["error"] = exc.message
        else:
            messages.success(request, f"Run #{run.pk} started: {run.title}.")
            return redirect(run)
    elif request.method == "GET" and found is not None:
        return render(request, "runbooks/run_start.html", context)
    if not context["error"] and found is None:
        context["error"] = "This runbook has no such section: pick one on the runbook's page."
    return render(request, "runbooks/run_start.html", context, status=400)


@dataclass
class StepView:
    step: RunStep
    commands: list[tuple[str, Binding, list[Link]]]


def _step_views(run: RunbookRun, steps: list[RunStep]) -> list[StepView]:
    """Each step with its commands' "Run in portal" links, started from the step."""
    binder = Binder(run.runbook.service)
    views = []
    for step in steps:
        origin = run_hooks.origin_of(step)
        commands = []
        for text in step.commands:
            binding = binder.bind(recognize(text))
            links = [
                Link(link.label, f"{link.url}{'&' if '?' in link.url else '?'}origin={origin}")
                for link in binding.links
                if binding.recognition.kind
            ]
            commands.append((text, binding, links))
        views.append(StepView(step, commands))
    return views


@require_permission("runbooks.view_runbookrun")
@require_GET
def run_detail(request: PortalRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(
        RunbookRun.objects.select_related("runbook__service", "version", "incident", "started_by"),
        pk=pk,
    )
    steps = list(run.steps.select_related("done_by", "operation"))
    finished = sum(1 for step in steps if step.is_finished)
    context = {
        "run": run,
        "steps": _step_views(run, steps),
        "finished": finished,
        "total": len(steps),
        "may_work": run.is_open and request.user.has_perm("runbooks.change_runbookrun"),
        "may_run": request.user.has_perm("operations.run_operation"),
        "stop_form": StopRunForm(),
    }
    return render(request, "runbooks/run_detail.html", context)


@require_permission("runbooks.change_runbookrun")
@require_POST
def step_finish(request: PortalRequest, pk: int) -> HttpResponse:
    """Tick a step done (``skip`` in the form: skip it, with a note saying why)."""
    step = get_object_or_404(RunStep.objects.select_related("run"), pk=pk)
    form = StepForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    if not form.is_valid():
        messages.error(request, "The note is longer than 2,000 characters.")
    else:
        try:
            runs.do_finish_step(request.user, step, skipped="skip" in request.POST, note=note)
        except runs.RunRefused as exc:
            messages.error(request, exc.message)
    return redirect(f"{step.run.get_absolute_url()}#step-{step.number}")


@require_permission("runbooks.change_runbookrun")
@require_POST
def run_stop(request: PortalRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(RunbookRun, pk=pk)
    form = StopRunForm(request.POST)
    try:
        runs.do_stop_run(request.user, run, form.data.get("reason", "")[:2000])
    except runs.RunRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Run #{run.pk} stopped.")
    return redirect(run)


@require_permission("runbooks.view_runbookrun")
@require_GET
def run_list(request: PortalRequest) -> HttpResponse:
    """Open runs to resume, then every past run, newest first."""
    rows = RunbookRun.objects.select_related("runbook", "incident", "started_by").order_by("-pk")
    state = request.GET.get("state", "")
    if state in RunState.values:
        rows = rows.filter(state=state)
    before = request.GET.get("before", "")
    page = keyset_page(request, rows, "pk", int(before) if before.isdigit() else None)
    context = {
        "page": page,
        "state": state,
        "states": RunState.choices,
        "list_url": reverse("runbooks:runs"),
    }
    return render(request, "runbooks/run_list.html", context)
