from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.access import require_permission
from apps.audit import checkpoints, exports, reports, review
from apps.audit.actions import COMMENT_MAX_LENGTH, ReviewRefused, do_review_event
from apps.audit.filters import CURSOR, read_filters
from apps.audit.history import HISTORY_LENGTH, USER_TYPE, changes_of
from apps.audit.links import object_urls
from apps.audit.models import AuditEvent, ReviewItem
from apps.audit.records import record, verify_chain
from apps.common.http import PortalRequest
from apps.common.paging import PAGE_SIZE, keyset_page
from apps.incidents.figures import DEFAULT_PERIOD, PERIOD_CHOICES
from apps.services.models import Service

User = get_user_model()


@require_permission("audit.view_auditevent")
@require_GET
def event_list(request: PortalRequest) -> HttpResponse:
    """Newest first, filtered by the URL, paged by sequence number (keyset). A filter with a
    value that cannot be used is dropped, and the page says which and why."""
    audit_filter = read_filters(request.GET)
    # One more than a page: keyset_page reads it to know whether an older page exists.
    events = audit_filter.events(page_size=PAGE_SIZE + 1)
    page = keyset_page(request, events, "seq", audit_filter.cleaned.get(CURSOR))
    urls = object_urls(page.rows)
    filters_query = audit_filter.query_string()
    suffix = f"?{filters_query}" if filters_query else ""
    context = {
        "form": audit_filter.form,
        "audit_filter": audit_filter,
        "events": page.rows,
        "rows": [(event, urls.get(event.seq, "")) for event in page.rows],
        "next_query": page.next_query,
        "filtered": audit_filter.active,
        "export_csv_url": reverse("audit:export-csv") + suffix,
        "export_jsonl_url": reverse("audit:export-jsonl") + suffix,
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "audit/list.html#results", context)
    return render(request, "audit/list.html", context)


def _export(request: PortalRequest, file_format: str) -> StreamingHttpResponse:
    audit_filter = read_filters(request.GET)
    query = request.GET.copy()
    query.pop(CURSOR, None)  # an export holds every matching event, not one page
    export = exports.prepare_export(audit_filter, query.urlencode(), file_format)
    header = export.header
    # Audited before the first byte leaves: an export that is cut short was still asked for.
    record(
        "audit.exported",
        actor=request.user,
        data={
            "format": file_format,
            "filter": header.filter,
            "last_seq": header.last_seq,
            "last_hash": header.last_hash,
        },
    )
    lines, content_type = exports.FORMATS[file_format]
    response = StreamingHttpResponse(lines(export), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{header.filename}"'
    response["Cache-Control"] = "no-store"
    return response


@require_permission("audit.view_auditevent")
@require_GET
def export_csv(request: PortalRequest) -> StreamingHttpResponse:
    """The filtered history as CSV, newest first, streamed."""
    return _export(request, "csv")


@require_permission("audit.view_auditevent")
@require_GET
def export_jsonl(request: PortalRequest) -> StreamingHttpResponse:
    """The filtered history as JSON Lines, newest first, streamed."""
    return _export(request, "jsonl")


@require_permission("audit.verify_auditevent")
@require_GET
def chain(request: PortalRequest) -> HttpResponse:
    """Check the hash chain now and say whether it is intact, and whether it still matches
    the newest chain head copied to the backup storage."""
    storage = checkpoints.head_storage()
    context = {
        "report": verify_chain(),
        "checkpoint": checkpoints.latest_signed_checkpoint(),
        "storage": storage,
        "stored": checkpoints.check_stored_head(storage) if storage is not None else None,
    }
    return render(request, "audit/chain.html", context)


@require_permission("auth.view_user")
@require_GET
def user_history(request: PortalRequest, pk: int) -> HttpResponse:
    """What one person did (events they are the actor of) and what was done to their account
    (events whose target is the user), in one list newest first, keyset-paged by seq. Two
    indexed conditions (actor, and target type + id), so a page costs the same at any depth."""
    person = get_object_or_404(User, pk=pk)
    events = (
        AuditEvent.objects.filter(
            Q(actor_id=person.pk) | Q(target_type=USER_TYPE, target_id=str(person.pk))
        )
        .select_related("actor")
        .order_by("-seq")
    )
    raw = request.GET.get(CURSOR, "")
    cursor = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
    page = keyset_page(request, events, "seq", cursor or None, HISTORY_LENGTH * 2)
    urls = object_urls(page.rows)
    rows = [
        (
            event,
            urls.get(event.seq, ""),
            event.actor_id == person.pk,
            event.target_type == USER_TYPE and event.target_id == str(person.pk),
            changes_of(event),
        )
        for event in page.rows
    ]
    context = {
        "person": person,
        "rows": rows,
        "next_query": page.next_query,
        "paged": bool(cursor),
        "actor_url": f"{reverse('audit:list')}?{urlencode({'actor': person.get_username()})}",
        "target_url": f"{reverse('audit:list')}?"
        + urlencode({"target_type": USER_TYPE, "target_id": str(person.pk)}),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "audit/user.html#events", context)
    return render(request, "audit/user.html", context)


@require_permission("audit.view_auditevent")
@require_GET
def report(request: PortalRequest) -> HttpResponse:
    """Delivery and incident-response figures for a period and scope chosen in the URL; an
    unknown value is ignored with a message, never a failure."""
    form = reports.ReportForm(request.GET)
    form.is_valid()
    services = list(Service.objects.only("pk", "name", "slug", "team").order_by("name"))
    scope, problems = reports.read_scope(form, services)
    period_key = getattr(form, "cleaned_data", {}).get("period") or DEFAULT_PERIOD
    context = {
        "form": form,
        "report": reports.build_report(period_key, scope),
        "problems": problems,
        "periods": PERIOD_CHOICES,
        "chosen": period_key,
        "services": services,
        "teams": reports.teams_of(services),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "audit/reports.html#report", context)
    return render(request, "audit/reports.html", context)


def _review_context(request: PortalRequest, state: str, problems: list[str]) -> dict[str, Any]:
    raw = request.GET.get(CURSOR, "")
    cursor = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
    if raw and cursor is None:
        problems.append(f'Page cursor "{raw[:60]}" ignored: not a page of this list.')
    page = keyset_page(request, review.queue(state), "pk", cursor or None)
    urls = object_urls([item.event for item in page.rows])
    return {
        "state": state,
        "states": review.STATES,
        "items": [(item, urls.get(item.event.seq, "")) for item in page.rows],
        "next_query": page.next_query,
        "paged": bool(cursor),
        "problems": problems,
        "unreviewed_count": review.queue(review.UNREVIEWED).count(),
        "oldest": review.oldest_unreviewed(),
        "comment_max_length": COMMENT_MAX_LENGTH,
    }


@require_permission("audit.review_auditevent")
@require_http_methods(["GET", "POST"])
def review_queue(request: PortalRequest) -> HttpResponse:
    """Sensitive events (production restores, approvals, gate overrides, production scaled to
    zero, audit exports, changes of roles) waiting for a manager's review, and those reviewed.
    A POST marks one reviewed with a comment, itself an audit event."""
    problems: list[str] = []
    state = request.GET.get("state") or review.UNREVIEWED
    if state not in review.STATES:
        problems.append(f'List "{state[:60]}" ignored: it is "unreviewed" or "reviewed".')
        state = review.UNREVIEWED
    status = 200
    if request.method == "POST":
        raw = request.POST.get("item", "")
        item = (
            ReviewItem.objects.select_related("event").filter(pk=int(raw)).first()
            if raw.isascii() and raw.isdigit() and len(raw) < 19
            else None
        )
        try:
            if item is None:
                raise ReviewRefused("Choose an event of the queue to mark reviewed.")
            do_review_event(request.user, item, request.POST.get("comment", ""))
        except ReviewRefused as refused:
            problems.append(str(refused))
            status = 400
        else:
            done = f"Event #{item.event.seq} marked reviewed."
            if not request.htmx:
                messages.success(request, done)
                return redirect(f"{reverse('audit:review')}?{urlencode({'state': state})}")
    context = _review_context(request, state, problems)
    if request.htmx and not request.htmx.boosted:
        return render(request, "audit/review.html#queue", context, status=status)
    return render(request, "audit/review.html", context, status=status)
