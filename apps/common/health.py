"""The portal's own health and metrics endpoints, as the runbooks ask of every service:
/health/live, /health/ready, /health (JSON) and /metrics (Prometheus text)."""

from __future__ import annotations

import hmac
import time
from dataclasses import asdict

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import opsportal
from apps.common.metrics import REGISTRY
from apps.common.probes import check_broker, check_database, run_probe

STARTED = time.time()


def _readiness() -> list:
    return [run_probe("database", check_database), run_probe("broker", check_broker)]


@never_cache
@require_GET
def live(request: HttpRequest) -> HttpResponse:
    """The process is up and serving; nothing else is checked."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request: HttpRequest) -> HttpResponse:
    """Able to serve: the database and the broker answer. 503 otherwise."""
    results = _readiness()
    ok = all(result.ok for result in results)
    body = {"status": "ok" if ok else "unavailable", "checks": {r.name: r.ok for r in results}}
    return JsonResponse(body, status=200 if ok else 503)


@never_cache
@require_GET
def report(request: HttpRequest) -> HttpResponse:
    """Version, uptime and each check with its response time."""
    results = _readiness()
    ok = all(result.ok for result in results)
    return JsonResponse(
        {
            "status": "ok" if ok else "degraded",
            "version": opsportal.__version__,
            "environment": settings.PORTAL_ENVIRONMENT,
            "uptime_seconds": round(time.time() - STARTED, 1),
            "checks": [asdict(result) for result in results],
        },
        status=200 if ok else 503,
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("A bearer token is required.\n", status=401)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
