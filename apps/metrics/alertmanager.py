"""POST /api/alertmanager/: Alertmanager's webhook receiver (payload version 4, see
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).

Configure Alertmanager with ``http_config: {authorization: {credentials: <token>}}`` (a bearer
token) where the portal has ALERTMANAGER_TOKEN. The whole payload is checked before anything
is written; then every alert of it is fired or resolved in one transaction (all or nothing),
by its fingerprint, so a replayed payload changes nothing. Every answer is JSON: 2xx with what
was done, or 4xx with a sentence saying what is wrong; every call is audited.

An alert whose labels match no service is kept, unmatched (it is listed on /alerts/ and never
opens an incident), rather than refused: refusing would also refuse the other alerts of its
group, and Alertmanager would retry the payload for nothing."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from apps.audit.choices import Outcome
from apps.audit.records import record
from apps.metrics import alerts
from apps.metrics.models import AlertSeverity, AlertSource
from apps.services.models import DeploymentTarget, Service

MAX_BODY_BYTES = 1024 * 1024
MAX_ALERTS = 1000
SUPPORTED_VERSION = "4"
# Alertmanager's "not set" time for endsAt.
ZERO_TIME_YEAR = 1
SEVERITIES = {
    "critical": AlertSeverity.CRITICAL,
    "page": AlertSeverity.CRITICAL,
    "error": AlertSeverity.CRITICAL,
    "warning": AlertSeverity.WARNING,
}
ENVIRONMENT_LABELS = ("environment", "env")


class PayloadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ReceivedAlert:
    status: str
    fingerprint: str
    name: str
    severity: AlertSeverity
    summary: str
    labels: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise PayloadError(400, f"{where} must be an object of strings.")
    return value


def _time(value: Any, where: str) -> datetime | None:
    """An RFC 3339 time, or None for Alertmanager's zero time."""
    if not isinstance(value, str):
        raise PayloadError(400, f"{where} must be an RFC 3339 time.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(400, f"{where} is not an RFC 3339 time: {value[:40]!r}.") from None
    if parsed.tzinfo is None:
        raise PayloadError(400, f"{where} has no time zone: {value[:40]!r}.")
    return None if parsed.year == ZERO_TIME_YEAR else parsed


def _alert(item: Any, index: int) -> ReceivedAlert:
    where = f"alerts[{index}]"
    if not isinstance(item, dict):
        raise PayloadError(400, f"{where} must be an object.")
    missing = [name for name in ("status", "labels", "startsAt", "fingerprint") if name not in item]
    if missing:
        raise PayloadError(400, f"{where} lacks {', '.join(missing)}.")
    status = item["status"]
    if status not in ("firing", "resolved"):
        raise PayloadError(400, f"{where}.status must be firing or resolved, not {status!r}.")
    fingerprint = item["fingerprint"]
    if not isinstance(fingerprint, str) or not fingerprint.strip() or len(fingerprint) > 200:
        raise PayloadError(400, f"{where}.fingerprint must be a non-empty string.")
    labels = _string_map(item["labels"], f"{where}.labels")
    annotations = _string_map(item.get("annotations") or {}, f"{where}.annotations")
    starts_at = _time(item["startsAt"], f"{where}.startsAt")
    if starts_at is None:
        raise PayloadError(400, f"{where}.startsAt is not set.")
    ends_at = _time(item.get("endsAt", "0001-01-01T00:00:00Z"), f"{where}.endsAt")
    return ReceivedAlert(
        status=status,
        fingerprint=fingerprint.strip(),
        name=labels.get("alertname") or fingerprint,
        severity=SEVERITIES.get(labels.get("severity", "").lower(), AlertSeverity.INFO),
        summary=annotations.get("summary") or annotations.get("description", ""),
        labels=labels,
        starts_at=starts_at,
        ends_at=ends_at,
    )


def parse(body: bytes) -> list[ReceivedAlert]:
    """The alerts of a version 4 payload; PayloadError (400) on anything else."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise PayloadError(400, "The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise PayloadError(400, "The payload must be a JSON object.")
    version = payload.get("version")
    if version is None:
        raise PayloadError(400, 'The payload lacks its version (Alertmanager sends "4").')
    if version != SUPPORTED_VERSION:
        raise PayloadError(400, f'Payload version {version!r} is not supported: only "4".')
    items = payload.get("alerts")
    if not isinstance(items, list):
        raise PayloadError(400, "The payload lacks its list of alerts.")
    if len(items) > MAX_ALERTS:
        raise PayloadError(413, f"At most {MAX_ALERTS} alerts per payload.")
    return [_alert(item, index) for index, item in enumerate(items)]


def match_service(labels: dict[str, str]) -> tuple[Service | None, DeploymentTarget | None]:
    """The service (and, when the labels single one out, the target) an alert is about: the
    ``service`` label (a slug or name), else ``job`` (or ``deployment``) and ``namespace``
    matched to a target's deployment and namespace; ``environment``/``env`` narrows to one
    environment. (None, None) when nothing, or more than one service, matches."""
    targets = DeploymentTarget.objects.select_related("service", "environment")
    service = None
    if name := labels.get("service"):
        service = Service.objects.filter(Q(slug=name) | Q(name__iexact=name)).first()
    if service is not None:
        targets = targets.filter(service=service)
    else:
        deployment = labels.get("deployment") or labels.get("job")
        if not deployment:
            return None, None
        targets = targets.filter(deployment=deployment)
    if namespace := labels.get("namespace"):
        targets = targets.filter(namespace=namespace)
    environment = next((labels[key] for key in ENVIRONMENT_LABELS if labels.get(key)), "")
    if environment:
        targets = targets.filter(
            Q(environment__slug=environment) | Q(environment__name__iexact=environment)
        )
    found = list(targets[:2])
    if service is None:
        services = {target.service_id for target in found}
        if len(services) != 1:
            return None, None
        service = found[0].service
    return service, (found[0] if len(found) == 1 else None)


def _bearer(request: HttpRequest) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _error(status: int, message: str, *, audit: str = "", outcome: str = Outcome.FAILED) -> Any:
    if audit:
        record(
            f"alertmanager.{audit}",
            actor=None,
            actor_label="alertmanager",
            outcome=outcome,
            reason=message,
        )
    return JsonResponse({"error": message}, status=status)


def _read_body(request: HttpRequest) -> bytes:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit():
        raise PayloadError(400, "The Content-Length header is not a number.")
    if int(declared) > MAX_BODY_BYTES:
        raise PayloadError(413, f"The body is larger than {MAX_BODY_BYTES} bytes.")
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(413, f"The body is larger than {MAX_BODY_BYTES} bytes.")
    return body


@csrf_exempt
def receive(request: HttpRequest) -> JsonResponse:
    """Alertmanager's webhook: fire or resolve each alert of the payload."""
    if request.method != "POST":
        response = _error(405, "Use POST with Alertmanager's JSON payload.")
        response["Allow"] = "POST"
        return response
    token = settings.ALERTMANAGER_TOKEN
    if not token:
        return _error(
            503,
            "The Alertmanager receiver is off: set ALERTMANAGER_TOKEN to turn it on.",
            audit="refused",
            outcome=Outcome.DENIED,
        )
    given = _bearer(request)
    if not given:
        return _error(
            401,
            'Send the token as "Authorization: Bearer <token>".',
            audit="refused",
            outcome=Outcome.DENIED,
        )
    if not hmac.compare_digest(given.encode(), token.encode()):
        return _error(401, "The token is wrong.", audit="refused", outcome=Outcome.DENIED)
    content_type = request.content_type or ""
    if content_type != "application/json":
        return _error(415, "Send JSON (Content-Type: application/json).", audit="rejected")
    try:
        received = parse(_read_body(request))
    except PayloadError as exc:
        return _error(exc.status, exc.message, audit="rejected")
    counts = apply(received)
    return JsonResponse({"status": "ok", **counts})


def apply(received: list[ReceivedAlert]) -> dict[str, int]:
    """Fire or resolve every alert, all in one transaction, and audit what was done."""
    counts = {"fired": 0, "resolved": 0, "unmatched": 0, "already_resolved": 0}
    now = timezone.now()
    with transaction.atomic():
        for item in received:
            if item.status == "resolved":
                ended = alerts.resolve(
                    source=AlertSource.ALERTMANAGER,
                    fingerprint=item.fingerprint,
                    ended_at=item.ends_at or now,
                )
                counts["resolved" if ended is not None else "already_resolved"] += 1
                continue
            service, target = match_service(item.labels)
            alerts.fire(
                service=service,
                target=target,
                source=AlertSource.ALERTMANAGER,
                fingerprint=item.fingerprint,
                name=item.name,
                severity=item.severity,
                summary=item.summary,
                labels=item.labels,
                started_at=item.starts_at,
                now=now,
            )
            counts["fired"] += 1
            counts["unmatched"] += service is None
        record(
            "alertmanager.received",
            actor=None,
            actor_label="alertmanager",
            data={**counts, "fingerprints": [item.fingerprint for item in received][:50]},
        )
    return counts
