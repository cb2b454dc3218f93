"""The public pages of subscriptions (no sign-in: people outside the company subscribe too):
ask, confirm (the second opt-in, a button so that a mail scanner opening the link confirms
nothing), and unsubscribe (one click; mail clients POST to it without a CSRF token, RFC
8058, so the secret link is the credential)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.maintenance import subscriptions
from apps.maintenance.forms import SubscribeForm
from apps.maintenance.models import Subscriber

PAGE_TITLE = "Service status"


def _page(
    request: HttpRequest, name: str, context: dict[str, object], status: int = 200
) -> HttpResponse:
    return render(
        request, f"maintenance/{name}.html", {"page_title": PAGE_TITLE, **context}, status=status
    )


@require_http_methods(["GET", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    form = SubscribeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        everything = form.cleaned_data["scope"] == "all"
        subscriptions.do_request_subscription(
            form.cleaned_data["email"],
            [] if everything else list(form.cleaned_data["components"]),
            all_components=everything,
        )
        return redirect(f"{reverse('maintenance:subscribe')}?sent=1")
    return _page(
        request,
        "subscribe",
        {"form": form, "sent": request.GET.get("sent") == "1"},
        status=400 if form.is_bound else 200,
    )


@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = Subscriber.objects.filter(token=token).first()
    if subscriber is None:
        raise Http404("This link is unknown or was replaced by a newer one.")
    if request.method == "POST" and subscriber.confirmed_at is None:
        fresh = subscriptions.pending(token)
        if fresh is None:
            return _page(request, "confirm", {"subscriber": subscriber, "expired": True}, 410)
        subscriptions.do_confirm_subscription(fresh)
    if request.method == "POST":
        return redirect("maintenance:confirm", token=token)
    return _page(request, "confirm", {"subscriber": subscriber, "expired": False})


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = Subscriber.objects.filter(token=token).first()
    if request.method == "POST":
        if subscriber is not None:
            subscriptions.do_unsubscribe(subscriber)
        return redirect("maintenance:unsubscribe", token=token)
    return _page(request, "unsubscribe", {"subscriber": subscriber})
