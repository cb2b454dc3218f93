"""Checking permissions in views: anonymous users go to the login page, users without the
permission get a 403, and every refusal is audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils import timezone

from apps.audit.choices import Outcome
from apps.audit.records import record

View = TypeVar("View", bound=Callable[..., HttpResponseBase])

REAUTH_SESSION_KEY = "reauthenticated_at"


def require_permission(permission: str) -> Callable[[View], View]:
    """Decorator: the signed-in user must hold ``permission`` ("app_label.codename")."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(permission):
                record(
                    "access.denied",
                    actor=request.user,
                    outcome=Outcome.DENIED,
                    reason=f"Missing permission {permission}",
                    data={"path": request.path, "method": request.method, "view": view.__name__},
                )
                raise PermissionDenied(f"Your role does not allow this ({permission}).")
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def mark_reauthenticated(request: HttpRequest) -> None:
    request.session[REAUTH_SESSION_KEY] = timezone.now().isoformat()


def reauthentication_is_fresh(request: HttpRequest) -> bool:
    """Whether the user typed their password within REAUTH_MAX_AGE (login counts)."""
    stamp = request.session.get(REAUTH_SESSION_KEY)
    if not stamp:
        return False
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return False
    return timezone.now() - when < settings.REAUTH_MAX_AGE
