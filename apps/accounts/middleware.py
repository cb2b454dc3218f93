from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

_TOUCH_KEY = "last_seen"
_TOUCH_EVERY_SECONDS = 60


class IdleSessionMiddleware:
    """Sessions expire after SESSION_IDLE_TIMEOUT without a request. Saving the session on
    every request would write on every htmx poll, so it is refreshed once a minute at most."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = int(time.time())
            if now - int(request.session.get(_TOUCH_KEY, 0)) >= _TOUCH_EVERY_SECONDS:
                request.session[_TOUCH_KEY] = now
        return self.get_response(request)
