from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.accounts.access import require_permission
from apps.audit import exports
from apps.audit.filters import CURSOR, read_filters
from apps.audit.links import object_urls
from apps.audit.records import record, verify_chain
from apps.common.http import PortalRequest
from apps.common.paging import keyset_page


@require_permission("audit.view_auditevent")
@require_GET
def event_list(request: PortalRequest) -> HttpResponse:
    """Newest first, filtered by the URL, paged by sequence number (keyset). A filter with a
    value that cannot be used is dropped, and the page says which and why."""
    audit_filter = read_filters(request.GET)
    page = keyset_page(request, audit_filter.events(), "seq", audit_filter.cleaned.get(CURSOR))
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


@require_permission("audit.view_auditevent")
@require_GET
def chain(request: PortalRequest) -> HttpResponse:
    """Check the hash chain now and say whether it is intact."""
    return render(request, "audit/chain.html", {"report": verify_chain()})
