from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_http_methods

from apps.accounts.access import require_permission
from apps.common.editing import edit_page
from apps.common.http import PortalRequest
from apps.http_actions import actions
from apps.http_actions.forms import HttpActionForm
from apps.http_actions.models import HttpAction
from apps.services.models import Service


@require_permission("http_actions.add_httpaction")
@require_http_methods(["GET", "POST"])
def action_create(request: PortalRequest, slug: str) -> HttpResponse:
    service = get_object_or_404(Service, slug=slug)
    form = HttpActionForm(request.POST or None, service=service)
    return edit_page(
        request,
        form,
        title=f"New HTTP action for {service.name}",
        back=service.get_absolute_url(),
        save=actions.do_save_http_action,
        done=lambda action: action.get_absolute_url(),
    )


@require_permission("http_actions.change_httpaction")
@require_http_methods(["GET", "POST"])
def action_edit(request: PortalRequest, pk: int) -> HttpResponse:
    action = get_object_or_404(HttpAction.objects.for_page(), pk=pk)
    form = HttpActionForm(request.POST or None, instance=action, service=action.service)
    return edit_page(
        request,
        form,
        title=f"Edit {action}",
        back=action.get_absolute_url(),
        save=actions.do_save_http_action,
        done=lambda saved: saved.get_absolute_url(),
    )
