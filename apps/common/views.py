from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.shortcuts import render
from django.template import loader
from django.views.decorators.http import require_GET

from apps.common.http import PortalRequest
from apps.operations.choices import State
from apps.operations.models import Operation
from apps.operations.registry import all_kinds


@login_required
@require_GET
def home(request: PortalRequest) -> HttpResponse:
    """The start page: what is running, what waits for approval, and what can be run."""
    user = request.user
    can_view = user.has_perm("operations.view_operation")
    recent = Operation.objects.for_list()[:10] if can_view else []
    waiting = (
        Operation.objects.for_list()
        .filter(state=State.AWAITING_APPROVAL)
        .exclude(requested_by=user)[:20]
        if user.has_perm("operations.approve_operation")
        else []
    )
    kinds = [
        kind
        for kind in all_kinds()
        if kind.default_target is not None and user.has_perm(kind.permission)
    ]
    return render(
        request, "common/home.html", {"recent": recent, "waiting": waiting, "kinds": kinds}
    )


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    message = str(exception) if exception and str(exception) else "Your role does not allow this."
    return render(request, "errors/403.html", {"message": message}, status=403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "errors/404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    # No request context: the database may be what failed.
    return HttpResponseServerError(loader.get_template("errors/500.html").render())
