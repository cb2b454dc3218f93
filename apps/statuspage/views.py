from __future__ import annotations

from django.contrib import messages
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
    require_safe,
)

from apps.accounts.access import require_permission
from apps.common.editing import edit_page
from apps.common.http import PortalRequest
from apps.statuspage import actions
from apps.statuspage.choices import ComponentStatus
from apps.statuspage.forms import ComponentForm
from apps.statuspage.models import StatusComponent
from apps.statuspage.sources import HISTORY_DAYS, build_report
from apps.statuspage.summary import as_json, summarize

# Public pages may be cached by browsers and proxies for a short while: a burst of visitors
# during an outage costs one rendering per half minute.
PUBLIC_CACHE = cache_control(public=True, max_age=30)
PAGE_TITLE = "Service status"
# A phone shows the last 30 days of the history (status.css hides the older cells).
PHONE_DAYS = 30


# --- Public (no login) -------------------------------------------------------------------


@require_safe
@PUBLIC_CACHE
def status_page(request: HttpRequest) -> HttpResponse:
    """The public status page. Rendered without the request: no user, no session data, no
    CSRF token and no portal navigation can reach it, so every visitor gets the same page."""
    summary = summarize()
    context = {
        "page_title": PAGE_TITLE,
        "summary": summary,
        "report": summary.report,
        "statuses": list(ComponentStatus),
        "days": HISTORY_DAYS,
        "phone_days": PHONE_DAYS,
        "zone_name": summary.report.zone.key,
    }
    return HttpResponse(render_to_string("statuspage/page.html", context))


@require_safe
@PUBLIC_CACHE
def status_json(request: HttpRequest) -> JsonResponse:
    """The same, for machines (in the shape of Statuspage's summary.json)."""
    response = JsonResponse(as_json(summarize()), encoder=DjangoJSONEncoder)
    # Public data: other sites' dashboards may read it from the browser.
    response["Access-Control-Allow-Origin"] = "*"
    return response


# --- Components (admins) -----------------------------------------------------------------


def _components() -> QuerySet[StatusComponent]:
    return StatusComponent.objects.select_related("service").only(
        "name", "description", "position", "updated_at", "service__name", "service__slug"
    )


def _list_context() -> dict[str, object]:
    components = list(_components())
    report = build_report(components, timezone.now(), days=1)
    return {"rows": report.components, "report": report}


@require_permission("statuspage.change_statuscomponent")
@require_GET
def component_list(request: PortalRequest) -> HttpResponse:
    return render(request, "statuspage/components.html", _list_context())


@require_permission("statuspage.add_statuscomponent")
@require_http_methods(["GET", "POST"])
def component_create(request: PortalRequest) -> HttpResponse:
    form = ComponentForm(request.POST or None)
    return edit_page(
        request,
        form,
        title="Show a service on the status page",
        back=reverse("statuspage:components"),
        save=actions.do_save_component,
    )


@require_permission("statuspage.change_statuscomponent")
@require_http_methods(["GET", "POST"])
def component_edit(request: PortalRequest, pk: int) -> HttpResponse:
    component = get_object_or_404(StatusComponent.objects.select_related("service"), pk=pk)
    form = ComponentForm(request.POST or None, instance=component)
    return edit_page(
        request,
        form,
        title=f"Edit {component.name} ({component.service.name})",
        back=reverse("statuspage:components"),
        save=actions.do_save_component,
    )


@require_permission("statuspage.change_statuscomponent")
@require_POST
def component_move(request: PortalRequest, pk: int) -> HttpResponse:
    """Up or down one place; an htmx request gets the table back, others a redirect."""
    component = get_object_or_404(StatusComponent, pk=pk)
    direction = request.POST.get("direction", "")
    note = ""
    if direction not in (actions.UP, actions.DOWN):
        note = "Say whether to move it up or down."
    elif not actions.do_move_component(request.user, component, direction):
        note = f"{component.name} is already {'first' if direction == actions.UP else 'last'}."
    if request.htmx and not request.htmx.boosted:
        # The moved row keeps the focus on its button (htmx focuses ``autofocus``), so that
        # pressing Enter again moves it further.
        context = {**_list_context(), "note": note, "moved": component.pk, "direction": direction}
        return render(request, "statuspage/components.html#table", context)
    if note:
        messages.warning(request, note)
    return redirect("statuspage:components")


@require_permission("statuspage.delete_statuscomponent")
@require_POST
def component_remove(request: PortalRequest, pk: int) -> HttpResponse:
    component = get_object_or_404(StatusComponent.objects.select_related("service"), pk=pk)
    actions.do_remove_component(request.user, component)
    messages.success(
        request,
        f"{component.name} is no longer on the status page; the service {component.service.name} "
        "itself is unchanged.",
    )
    return redirect("statuspage:components")
