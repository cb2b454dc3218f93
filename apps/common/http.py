"""Request types for views, so that type checkers know what the middleware added."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class PortalRequest(HttpRequest):
    """A request that passed the permission decorators: signed in, with htmx details."""

    user: User  # type: ignore[assignment]
    htmx: HtmxDetails
