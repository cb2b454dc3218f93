"""The runbook pages: the list (searchable), import and re-import for admins, a runbook
rendered with its commands' portal buttons, its versions with a diff, and its coverage."""

from __future__ import annotations

import difflib
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.access import require_permission
from apps.common.editing import edit_page
from apps.common.http import PortalRequest
from apps.runbooks import actions
from apps.runbooks.binding import Binder
from apps.runbooks.coverage import coverage_of
from apps.runbooks.forms import ImportForm, SourceForm
from apps.runbooks.models import Runbook, RunbookVersion, RunState
from apps.runbooks.rendering import render_runbook

MAX_DIFF_LINES = 2000


def _runbook(slug: str) -> Runbook:
    runbook = get_object_or_404(
        Runbook.objects.select_related("service", "current__imported_by"), slug=slug
    )
    if runbook.current is None:
        raise Http404("This runbook has no text yet.")
    return runbook


@require_permission("runbooks.view_runbook")
@require_GET
def runbook_list(request: PortalRequest) -> HttpResponse:
    query = request.GET.get("q", "")[:200]
    runbooks = Runbook.objects.search(query).select_related("service", "current")
    incident = request.GET.get("incident", "")
    # Coming from an incident: the runbooks' procedures are started for it.
    context = {
        "runbooks": runbooks,
        "query": query,
        "incident": incident if incident.isdigit() and len(incident) <= 12 else "",
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "runbooks/list.html#results", context)
    return render(request, "runbooks/list.html", context)


@require_permission("runbooks.add_runbook")
@require_http_methods(["GET", "POST"])
def runbook_import(request: PortalRequest) -> HttpResponse:
    return edit_page(
        request,
        ImportForm(request.POST or None, request.FILES or None),
        title="Import a runbook",
        back=reverse("runbooks:list"),
        save=lambda user, form: actions.do_import_runbook(
            user,
            title=form.cleaned_data["title"],
            service=form.cleaned_data["service"],
            source=form.cleaned_data["source"],
            filename=form.cleaned_data["filename"],
        ),
        done=lambda runbook: runbook.get_absolute_url(),
    )


@require_permission("runbooks.change_runbook")
@require_http_methods(["GET", "POST"])
def runbook_reimport(request: PortalRequest, slug: str) -> HttpResponse:
    runbook = _runbook(slug)
    form = SourceForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        version = actions.do_reimport_runbook(
            request.user,
            runbook,
            source=form.cleaned_data["source"],
            filename=form.cleaned_data["filename"],
        )
        if version is None:
            messages.info(request, "The text is the same as the current version: nothing saved.")
            return redirect(runbook)
        messages.success(request, f"Imported version {version.number}.")
        return redirect(f"{reverse('runbooks:versions', args=[runbook.slug])}?v={version.number}")
    status = 400 if request.method == "POST" else 200
    context = {
        "form": form,
        "title": f"Re-import {runbook.title}",
        "back": runbook.get_absolute_url(),
    }
    return render(request, "_form.html", context, status=status)


@require_permission("runbooks.view_runbook")
@require_GET
def runbook_detail(request: PortalRequest, slug: str) -> HttpResponse:
    runbook = _runbook(slug)
    assert runbook.current is not None
    start_link = None
    incident = request.GET.get("incident", "")
    if request.user.has_perm("runbooks.add_runbookrun"):
        start_url = reverse("runbooks:run-start", args=[runbook.slug])
        extra = {"incident": incident} if incident.isdigit() else {}

        def start_link(anchor: str) -> str:
            return f"{start_url}?{urlencode({'section': anchor, **extra})}"

    rendered = render_runbook(runbook.current.source, Binder(runbook.service), start_link)
    context = {
        "runbook": runbook,
        "version": runbook.current,
        "rendered": rendered,
        "recognized": sum(1 for c in rendered.commands if c.binding.recognition.recognized),
        "open_runs": runbook.runs.filter(state=RunState.OPEN).select_related("started_by")[:10],
    }
    return render(request, "runbooks/detail.html", context)


@require_permission("runbooks.view_runbook")
@require_GET
def runbook_versions(request: PortalRequest, slug: str) -> HttpResponse:
    """Every version, and the diff of one (``?v=N``, the newest by default) against the one
    before it."""
    runbook = _runbook(slug)
    versions = list(runbook.versions.select_related("imported_by").defer("source"))
    wanted = request.GET.get("v", "")
    number = int(wanted) if wanted.isdigit() else versions[0].number
    shown = get_object_or_404(RunbookVersion, runbook=runbook, number=number)
    previous = RunbookVersion.objects.filter(runbook=runbook, number__lt=number).first()
    diff: list[str] = []
    if previous is not None:
        diff = list(
            difflib.unified_diff(
                previous.source.splitlines(),
                shown.source.splitlines(),
                f"version {previous.number}",
                f"version {shown.number}",
                lineterm="",
            )
        )
    context = {
        "runbook": runbook,
        "versions": versions,
        "shown": shown,
        "previous": previous,
        "diff": diff[:MAX_DIFF_LINES],
        "diff_cut": len(diff) > MAX_DIFF_LINES,
    }
    return render(request, "runbooks/versions.html", context)


@require_permission("runbooks.view_runbook")
@require_GET
def runbook_coverage(request: PortalRequest, slug: str) -> HttpResponse:
    runbook = _runbook(slug)
    assert runbook.current is not None
    coverage = coverage_of(runbook.current.source, Binder(runbook.service))
    return render(request, "runbooks/coverage.html", {"runbook": runbook, "coverage": coverage})
