"""The portal's one form page: show a form, and on a valid POST hand it to the action that
saves it, then go on; an invalid POST shows the errors with a 400."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


def edit_page(
    request: HttpRequest,
    form: BaseForm,
    *,
    title: str,
    back: str,
    save: Callable[[Any, Any], Any],
    done: Callable[[Any], str] | None = None,
) -> HttpResponse:
    """``save(user, form)`` is the app's action; ``done(saved)`` where to go after (else
    ``back``, the page the Cancel link returns to)."""
    if request.method == "POST" and form.is_valid():
        saved = save(request.user, form)
        messages.success(request, f"Saved {saved}.")
        return redirect(done(saved) if done else back)
    status = 400 if request.method == "POST" else 200
    return render(
        request, "_form.html", {"form": form, "title": title, "back": back}, status=status
    )
