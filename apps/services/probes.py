"""The health probe cycle of the deployment targets, and what is read back from its results.

Every ``HEALTH_PROBE_INTERVAL`` the beat runs :func:`probe_all`: each target's liveness,
readiness and health JSON URLs are fetched over HTTP, concurrently, and the verdicts written
in bulk (one ``HealthCheck`` row per target, and the latest verdict denormalized onto the
target for the dashboard). :func:`roll_up` counts the raw rows per hour into ``HealthRollup``
and deletes the ones older than ``HEALTH_RAW_RETENTION``; :func:`uptime`, :func:`history` and
:func:`history_chart` read them back for the service page.

Threads only do HTTP: every database query runs in the calling thread, so a cycle holds one
database connection whatever its concurrency.
"""

from __future__ import annotations

import json
import math
import ssl
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import BigIntegerField, Count, Max, Q, Sum
from django.db.models.functions import Coalesce, TruncHour
from django.utils import timezone
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.ssl_ import create_urllib3_context

from apps.services.choices import Health
from apps.services.models import DeploymentTarget, HealthCheck, HealthRollup

BODY_LIMIT = 64 * 1024
MAX_REDIRECTS = 3
READ_CHUNK = 8 * 1024
DETAIL_LENGTH = 300  # HealthCheck.detail and DeploymentTarget.health_detail
CHECK_DETAIL_LENGTH = 200
MAX_CHECKS = 50
USER_AGENT = "OpsPortal-health-probe/1"

HOUR = timedelta(hours=1)
# Probes of the last complete hours are counted again on every roll-up: a cycle that started
# at 10:59:58 may commit its rows after the roll-up of 11:00:01 has read that hour.
RECOUNT_HOURS = 2
UPTIME_WINDOWS: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}

# Up, for uptime: a degraded service still serves.
UP_STATUSES = (Health.OK, Health.WARNING)
_SEVERITY: dict[str, int] = {Health.OK: 0, Health.WARNING: 1, Health.CRITICAL: 2}
_OK_WORDS = frozenset({"ok", "pass", "passed", "up", "healthy"})
_WARNING_WORDS = frozenset({"degraded", "warn", "warning"})
_DETAIL_KEYS = ("detail", "output", "message", "error", "description")


def _worse(first: str, second: str) -> str:
    return first if _SEVERITY.get(first, 2) >= _SEVERITY.get(second, 2) else second


def _shorten(text: str, length: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


# --- One HTTP GET ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    truncated: bool
    ms: int
    tls_expires_at: datetime | None


class _FetchFailed(Exception):
    """No HTTP answer at all: ``reason`` is the short phrase the detail shows."""

    def __init__(self, reason: str, ms: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ms = ms


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _certificate_verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """urllib3 wraps ssl's error in its own, sometimes twice: find the original."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend([current.__cause__, current.__context__])
    return None


def _reason(exc: BaseException, timeout: float) -> str:
    """A few words on why a GET got no answer, for a person reading the dashboard."""
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, SSLError | ssl.SSLError):
        verification = _certificate_verification_error(exc)
        if verification is not None:
            why = verification.verify_message or str(verification)
            return _shorten(f"TLS certificate not valid ({why})", 150)
        return _shorten(f"TLS error ({exc})", 150)
    # NameResolutionError and NewConnectionError are subclasses of ConnectTimeoutError.
    if isinstance(exc, NameResolutionError):
        return "host name does not resolve"
    if isinstance(exc, NewConnectionError):
        if isinstance(exc.__cause__, ConnectionRefusedError) or "refused" in str(exc).lower():
            return "connection refused"
        return _shorten(f"cannot connect ({exc})", 150)
    if isinstance(exc, ConnectTimeoutError):
        return f"no connection within {timeout:g} s"
    if isinstance(exc, ReadTimeoutError | TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ProtocolError):
        return "connection dropped before an answer"
    return _shorten(f"{type(exc).__name__}: {exc}", 150)


def _peer_certificate_expiry(response: urllib3.BaseHTTPResponse) -> datetime | None:
    """notAfter of the certificate the server presented (and that was verified), if TLS."""
    sock = getattr(response.connection, "sock", None)
    if not isinstance(sock, ssl.SSLSocket):
        return None
    certificate = sock.getpeercert()
    not_after = certificate.get("notAfter") if certificate else None
    if not isinstance(not_after, str):
        return None
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), tz=UTC)


def _fetch(http: urllib3.PoolManager, url: str, timeout: float) -> _Answer:
    """GET ``url`` and read at most BODY_LIMIT bytes of the body. Raises _FetchFailed when
    there is no HTTP answer; any HTTP status is an answer."""
    started = time.perf_counter()
    # The timeouts are per socket operation: this bounds a body that trickles in.
    deadline = started + 2 * timeout
    try:
        response = http.request("GET", url, preload_content=False)
    except Exception as exc:
        raise _FetchFailed(_reason(exc, timeout), _elapsed_ms(started)) from exc
    chunks: list[bytes] = []
    size = 0
    try:
        tls_expires_at = _peer_certificate_expiry(response)
        while size <= BODY_LIMIT:
            chunk = response.read(READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if time.perf_counter() > deadline:
                raise _FetchFailed(
                    f"no complete answer within {2 * timeout:g} s", _elapsed_ms(started)
                )
    except _FetchFailed:
        response.close()
        raise
    except Exception as exc:
        response.close()
        raise _FetchFailed(_reason(exc, timeout), _elapsed_ms(started)) from exc
    finally:
        if size > BODY_LIMIT:
            # The rest is unread: the connection cannot serve another request.
            response.close()
        response.release_conn()
    body = b"".join(chunks)
    return _Answer(
        status=response.status,
        body=body[:BODY_LIMIT],
        truncated=size > BODY_LIMIT,
        ms=_elapsed_ms(started),
        tls_expires_at=tls_expires_at,
    )


@contextmanager
def _http_client(workers: int, hosts: int) -> Iterator[urllib3.PoolManager]:
    """One connection pool per host, shared by the probe threads (urllib3 pools are
    thread-safe): the liveness, readiness and health URLs of a target reuse one connection."""
    timeout = float(settings.HEALTH_PROBE_TIMEOUT_SECONDS)
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_default_certs()
    # For services behind an internal CA, in addition to the system's CAs.
    ca_bundle = getattr(settings, "HEALTH_PROBE_CA_BUNDLE", None)
    if ca_bundle:
        context.load_verify_locations(cafile=str(ca_bundle))
    retries = urllib3.Retry(
        total=None,
        connect=0,
        read=0,
        status=0,
        other=0,
        redirect=MAX_REDIRECTS,
        raise_on_redirect=False,  # the last 3xx is the answer, judged as not 2xx
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    with urllib3.PoolManager(
        num_pools=max(10, hosts),
        maxsize=workers,
        block=False,
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=retries,
        cert_reqs="CERT_REQUIRED",
        ssl_context=context,
        headers={
            "User-Agent": USER_AGENT,
            "Accept": "application/json, */*;q=0.5",
            "Accept-Encoding": "identity",
        },
    ) as http:
        yield http


# --- The verdict of one target ----------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """What a probe thread needs of a target: plain values, so that no thread ever touches a
    model instance (and through it, the database)."""

    pk: int
    liveness_url: str
    readiness_url: str
    health_url: str
    tls_expires_at: datetime | None

    @property
    def uses_tls(self) -> bool:
        urls = (self.liveness_url, self.readiness_url, self.health_url)
        return any(url.lower().startswith("https://") for url in urls)


@dataclass
class _Outcome:
    status: str
    detail: str
    latency_ms: int | None
    http_status: int | None
    checks: dict[str, dict[str, str]] = field(default_factory=dict)
    tls_expires_at: datetime | None = None


def _word_status(word: object) -> str:
    if isinstance(word, bool):
        return Health.OK if word else Health.CRITICAL
    if isinstance(word, str):
        lowered = word.strip().lower()
        if lowered in _OK_WORDS:
            return Health.OK
        if lowered in _WARNING_WORDS:
            return Health.WARNING
    return Health.CRITICAL


def _check_entry(entry: object) -> dict[str, str]:
    """One check of a health document as {"status": ok|warning|critical, "detail": …}."""
    if isinstance(entry, list):
        # health+json (the IETF draft): a list of observations per component.
        entries = [_check_entry(item) for item in entry if isinstance(item, dict)]
        if not entries:
            return {"status": Health.CRITICAL, "detail": "no status"}
        worst = entries[0]
        for item in entries[1:]:
            if _worse(item["status"], worst["status"]) != worst["status"]:
                worst = item
        return worst
    if isinstance(entry, dict):
        if "status" in entry:
            word: object = entry["status"]
        elif "ok" in entry:
            word = entry["ok"]
        elif "healthy" in entry:
            word = entry["healthy"]
        else:
            word = None
        status = _word_status(word)
        detail = next((entry[k] for k in _DETAIL_KEYS if isinstance(entry.get(k), str)), "")
        if not detail and status != Health.OK:
            detail = str(word) if isinstance(word, str) else "no status"
    else:
        status = _word_status(entry)
        detail = "" if status == Health.OK else str(entry)
    return {"status": status, "detail": _shorten(detail, CHECK_DETAIL_LENGTH)}


def _normalized_checks(raw: object) -> dict[str, dict[str, str]]:
    """``checks`` as a dict of name → {status, …} or a list of {name, status, …}."""
    if isinstance(raw, dict):
        items = [(str(name), entry) for name, entry in raw.items()]
    elif isinstance(raw, list):
        items = [
            (str(entry.get("name") or entry.get("component") or f"check {number}"), entry)
            for number, entry in enumerate(raw, start=1)
            if isinstance(entry, dict)
        ]
    else:
        return {}
    return {_shorten(name, 100): _check_entry(entry) for name, entry in items[:MAX_CHECKS]}


def _failing_phrase(checks: dict[str, dict[str, str]]) -> str:
    failing = [
        f"{name}: {check['detail'] or check['status']}"
        for name, check in checks.items()
        if check["status"] != Health.OK
    ]
    if not failing:
        return ""
    shown = ", ".join(failing[:3])
    return f" ({shown}, {len(failing) - 3} more)" if len(failing) > 3 else f" ({shown})"


def _health_verdict(answer: _Answer) -> tuple[str, str, dict[str, dict[str, str]]]:
    """(status, phrase, normalized checks) of a health JSON answer. The phrase is what
    follows "health: " in the detail, or "Health: " when the answer is not 2xx."""
    failed = not 200 <= answer.status < 300
    prefix = f"HTTP {answer.status}" if failed else ""
    if answer.truncated:
        return Health.CRITICAL, prefix or "body over 64 KiB", {}
    try:
        document: Any = json.loads(answer.body)
    except (ValueError, RecursionError):
        return Health.CRITICAL, prefix or "not JSON", {}
    if not isinstance(document, dict):
        return Health.CRITICAL, prefix or "not a JSON object", {}
    checks = _normalized_checks(document.get("checks"))
    failing = _failing_phrase(checks)
    word = document.get("status")
    if isinstance(word, str) and word.strip():
        shown = _shorten(word.strip().lower(), 30)
    elif isinstance(word, bool):
        shown = "true" if word else "false"
    else:
        shown = "no status"
    if failed:
        return Health.CRITICAL, f"{prefix}, {shown}{failing}", checks
    status = _word_status(word) if word is not None else Health.CRITICAL
    if failing:
        status = _worse(status, Health.WARNING)
    return status, f"{shown}{failing}", checks


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _probe(http: urllib3.PoolManager, target: _Target, now: datetime) -> _Outcome:
    """Liveness, then readiness, then the health JSON, stopping at the first URL that fails:
    a dead or unready service says nothing more useful, and the next target is waiting."""
    timeout = float(settings.HEALTH_PROBE_TIMEOUT_SECONDS)
    latencies: list[int] = []
    expiries: list[datetime] = []
    summary = ""
    last_status: int | None = None
    outcome: _Outcome | None = None

    def fail(label: str, reason: str, ms: int, http_status: int | None) -> _Outcome:
        latencies.append(ms)
        return _Outcome(Health.CRITICAL, f"{label}: {reason}", max(latencies), http_status)

    for label, short, url in (
        ("Liveness", "Live", target.liveness_url),
        ("Readiness", "Ready", target.readiness_url),
    ):
        if not url:
            continue
        try:
            answer = _fetch(http, url, timeout)
        except _FetchFailed as failed:
            outcome = fail(label, failed.reason, failed.ms, None)
            break
        if answer.tls_expires_at is not None:
            expiries.append(answer.tls_expires_at)
        if not 200 <= answer.status < 300:
            outcome = fail(label, f"HTTP {answer.status}", answer.ms, answer.status)
            break
        latencies.append(answer.ms)
        last_status = answer.status
        summary = f"{short} {answer.status} in {answer.ms} ms"

    if outcome is None and target.health_url:
        try:
            answer = _fetch(http, target.health_url, timeout)
        except _FetchFailed as failed:
            outcome = fail("Health", failed.reason, failed.ms, None)
        else:
            if answer.tls_expires_at is not None:
                expiries.append(answer.tls_expires_at)
            latencies.append(answer.ms)
            status, phrase, checks = _health_verdict(answer)
            summary = summary or f"Health {answer.status} in {answer.ms} ms"
            ok_answer = 200 <= answer.status < 300
            detail = f"{summary}; health: {phrase}" if ok_answer else f"Health: {phrase}"
            outcome = _Outcome(status, detail, max(latencies), answer.status, checks)
    if outcome is None:
        outcome = _Outcome(Health.OK, summary, max(latencies, default=None), last_status)

    if expiries:
        outcome.tls_expires_at = min(expiries)
        days_left = (outcome.tls_expires_at - now) // timedelta(days=1)
        if days_left < settings.HEALTH_TLS_WARNING_DAYS:
            outcome.status = _worse(outcome.status, Health.WARNING)
            when = "in less than a day" if days_left < 1 else f"in {_plural(days_left, 'day')}"
            outcome.detail = f"{outcome.detail}; certificate expires {when}"
    elif target.uses_tls:
        outcome.tls_expires_at = target.tls_expires_at  # not reached this time: keep it
    outcome.detail = _shorten(outcome.detail, DETAIL_LENGTH)
    return outcome


def _probe_safely(http: urllib3.PoolManager, target: _Target, now: datetime) -> _Outcome:
    # One odd answer must not cost the whole cycle its results.
    try:
        return _probe(http, target, now)
    except Exception as exc:
        return _Outcome(
            Health.CRITICAL,
            _shorten(f"Probe error: {type(exc).__name__}: {exc}", DETAIL_LENGTH),
            None,
            None,
            tls_expires_at=target.tls_expires_at,
        )


@dataclass(frozen=True)
class UrlProbe:
    """One GET of one URL: whether it answered healthy, the verdict and a short detail."""

    ok: bool
    status: str
    detail: str
    latency_ms: int | None
    http_status: int | None


def probe_url(url: str) -> UrlProbe:
    """GET ``url`` once with the rules of the probe cycle (timeout, TLS verification, no
    retry, at most 3 redirects, 64 KiB read), for checks outside it, such as verifying a
    rollout. ``ok`` when it answers 2xx and, if the body is a JSON object with a ``status``,
    that status is not critical (a degraded service is ready to serve). Never raises."""
    timeout = float(settings.HEALTH_PROBE_TIMEOUT_SECONDS)
    try:
        with _http_client(workers=1, hosts=1) as http:
            answer = _fetch(http, url, timeout)
    except _FetchFailed as failed:
        return UrlProbe(False, Health.CRITICAL, failed.reason, failed.ms, None)
    except Exception as exc:
        detail = _shorten(f"Probe error: {type(exc).__name__}: {exc}", DETAIL_LENGTH)
        return UrlProbe(False, Health.CRITICAL, detail, None, None)
    detail = f"HTTP {answer.status} in {answer.ms} ms"
    if not 200 <= answer.status < 300:
        return UrlProbe(False, Health.CRITICAL, detail, answer.ms, answer.status)
    status: str = Health.OK
    try:
        document = json.loads(answer.body) if not answer.truncated else None
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict) and "status" in document:
        status, phrase, _ = _health_verdict(answer)
        detail = f"{detail}; health: {phrase}"
    return UrlProbe(
        status != Health.CRITICAL,
        status,
        _shorten(detail, DETAIL_LENGTH),
        answer.ms,
        answer.status,
    )


# --- The cycle ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeCycle:
    """What one probe cycle did: how many targets, their verdicts, its duration in seconds,
    and how many threads probed."""

    targets: int
    ok: int
    warning: int
    critical: int
    seconds: float
    workers: int


def _host_count(targets: Iterable[_Target]) -> int:
    hosts = set()
    for target in targets:
        for url in (target.liveness_url, target.readiness_url, target.health_url):
            if url:
                parsed = urllib3.util.parse_url(url)
                hosts.add((parsed.scheme, parsed.host, parsed.port))
    return len(hosts)


def probe_all(now: datetime | None = None) -> ProbeCycle:
    """Probe every target that has at least one health URL, concurrently
    (``HEALTH_PROBE_CONCURRENCY`` threads, ``HEALTH_PROBE_TIMEOUT_SECONDS`` to connect and
    to read, no retry, at most 3 redirects), then write every result at once: the number of
    queries is the same for 5 targets or 5,000. Never raises because of a probe."""
    started = time.perf_counter()
    now = now or timezone.now()
    rows = list(
        DeploymentTarget.objects.exclude(liveness_url="", readiness_url="", health_url="")
        .only("id", "liveness_url", "readiness_url", "health_url", "tls_expires_at")
        .order_by("pk")
    )
    targets = [
        _Target(row.pk, row.liveness_url, row.readiness_url, row.health_url, row.tls_expires_at)
        for row in rows
    ]
    workers = max(1, min(settings.HEALTH_PROBE_CONCURRENCY, len(targets)))
    outcomes: list[_Outcome] = []
    if targets:
        with (
            _http_client(workers, _host_count(targets)) as http,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="health-probe") as pool,
        ):
            outcomes = list(pool.map(lambda target: _probe_safely(http, target, now), targets))
    by_pk = {target.pk: outcome for target, outcome in zip(targets, outcomes, strict=True)}
    _save(rows, by_pk, now)
    statuses = [outcome.status for outcome in outcomes]
    return ProbeCycle(
        targets=len(targets),
        ok=statuses.count(Health.OK),
        warning=statuses.count(Health.WARNING),
        critical=statuses.count(Health.CRITICAL),
        seconds=time.perf_counter() - started,
        workers=workers if targets else 0,
    )


def _save(rows: list[DeploymentTarget], outcomes: dict[int, _Outcome], now: datetime) -> None:
    if not rows:
        return
    with transaction.atomic():
        # A target deleted while it was being probed would fail the insert at commit (the
        # foreign key is checked then); locking the survivors keeps them until the commit.
        alive = set(
            DeploymentTarget.objects.select_for_update(no_key=True)
            .filter(pk__in=outcomes.keys())
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        checks: list[HealthCheck] = []
        updated: list[DeploymentTarget] = []
        for row in rows:
            if row.pk not in alive:
                continue
            outcome = outcomes[row.pk]
            checks.append(
                HealthCheck(
                    target_id=row.pk,
                    checked_at=now,
                    status=outcome.status,
                    latency_ms=outcome.latency_ms,
                    http_status=outcome.http_status,
                    detail=outcome.detail,
                    checks=outcome.checks,
                )
            )
            row.health = outcome.status
            row.health_detail = outcome.detail
            row.health_latency_ms = outcome.latency_ms
            row.health_checked_at = now
            row.tls_expires_at = outcome.tls_expires_at
            updated.append(row)
        HealthCheck.objects.bulk_create(checks)
        DeploymentTarget.objects.bulk_update(
            updated,
            [
                "health",
                "health_detail",
                "health_latency_ms",
                "health_checked_at",
                "tls_expires_at",
            ],
        )


# --- Rollups and uptime ---------------------------------------------------------------------


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def roll_up(now: datetime | None = None) -> int:
    """Count the raw probes of each complete hour into ``HealthRollup`` (probes, up — OK or
    warning —, and the latency total), then delete raw probes older than
    ``HEALTH_RAW_RETENTION``. Returns the number of rollup rows written.

    The counting happens in SQL and is an upsert of the hours since the last rollup (the
    last RECOUNT_HOURS complete hours at least), so running it twice changes nothing. Hours
    whose oldest probes may already be deleted are never counted again."""
    now = now or timezone.now()
    this_hour = _floor_hour(now)
    intact_since = _ceil_hour(now - settings.HEALTH_RAW_RETENTION)
    last = HealthRollup.objects.aggregate(last=Max("hour"))["last"]
    since = this_hour - RECOUNT_HOURS * HOUR
    # After an outage of the worker, catch up from the last hour counted.
    since = intact_since if last is None else min(since, last + HOUR)
    since = max(since, intact_since)
    counted = (
        HealthCheck.objects.filter(checked_at__gte=since, checked_at__lt=this_hour)
        .annotate(hour=TruncHour("checked_at", tzinfo=UTC))
        .order_by()
        .values("target_id", "hour")
        .annotate(
            probes=Count("id"),
            up=Count("id", filter=Q(status__in=UP_STATUSES)),
            latency=Coalesce(Sum("latency_ms"), 0, output_field=BigIntegerField()),
        )
    )
    rollups = [
        HealthRollup(
            target_id=group["target_id"],
            hour=group["hour"],
            probes=group["probes"],
            ok=group["up"],
            latency_ms_total=group["latency"],
        )
        for group in counted
    ]
    with transaction.atomic():
        if rollups:
            HealthRollup.objects.bulk_create(
                rollups,
                update_conflicts=True,
                unique_fields=["target", "hour"],
                update_fields=["probes", "ok", "latency_ms_total"],
            )
        HealthCheck.objects.filter(checked_at__lt=now - settings.HEALTH_RAW_RETENTION).delete()
    return len(rollups)


def uptime(target: DeploymentTarget, now: datetime | None = None) -> dict[str, float | None]:
    """The fraction of probes that found the target up over the last 24 hours, 7 days and
    30 days ({"24h": 0.998, "7d": …, "30d": …}; None when there was no probe in a window).
    Up means OK or warning (a degraded service still serves); critical is down.

    Complete hours come from the rollups (a rolled-up hour counts when it starts inside the
    window), the time since the last rolled-up hour from the raw probes: two queries."""
    now = now or timezone.now()
    starts = {name: now - length for name, length in UPTIME_WINDOWS.items()}
    earliest = min(starts.values())
    rolled_aggregates: dict[str, Any] = {"last": Max("hour")}
    for name, start in starts.items():
        inside = Q(hour__gte=start, hour__lt=now)
        rolled_aggregates[f"probes_{name}"] = Sum("probes", filter=inside)
        rolled_aggregates[f"up_{name}"] = Sum("ok", filter=inside)
    rolled = HealthRollup.objects.filter(target=target, hour__gte=earliest).aggregate(
        **rolled_aggregates
    )
    raw_since = earliest if rolled["last"] is None else rolled["last"] + HOUR
    raw_starts = {name: max(start, raw_since) for name, start in starts.items()}
    raw_aggregates: dict[str, Any] = {}
    for name, start in raw_starts.items():
        inside = Q(checked_at__gte=start)
        raw_aggregates[f"probes_{name}"] = Count("id", filter=inside)
        raw_aggregates[f"up_{name}"] = Count("id", filter=inside & Q(status__in=UP_STATUSES))
    raw = HealthCheck.objects.filter(
        target=target, checked_at__gte=min(raw_starts.values()), checked_at__lte=now
    ).aggregate(**raw_aggregates)
    fractions: dict[str, float | None] = {}
    for name in UPTIME_WINDOWS:
        probes = (rolled[f"probes_{name}"] or 0) + raw[f"probes_{name}"]
        up = (rolled[f"up_{name}"] or 0) + raw[f"up_{name}"]
        fractions[name] = up / probes if probes else None
    return fractions


# --- History, for the service page ----------------------------------------------------------


@dataclass(frozen=True)
class HistoryPoint:
    """One bucket of the health history: the worst verdict in it and the mean latency
    (status "no_data" and latency None when nothing was probed then)."""

    start: datetime
    end: datetime
    status: str
    probes: int
    latency_ms: float | None


def history(
    target: DeploymentTarget,
    hours: int = 24,
    now: datetime | None = None,
    bucket_minutes: int = 15,
) -> list[HistoryPoint]:
    """The target's health over the last ``hours`` in buckets of ``bucket_minutes``, oldest
    first, from the raw probes (one query, at most a few thousand rows; older than
    HEALTH_RAW_RETENTION shows as no data). Buckets are aligned on the clock, so the chart
    does not shift between two renders."""
    now = now or timezone.now()
    bucket = timedelta(minutes=bucket_minutes)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    current = epoch + ((now - epoch) // bucket) * bucket
    count = max(1, math.ceil(timedelta(hours=hours) / bucket))
    start = current - (count - 1) * bucket
    worst: list[str] = [Health.NO_DATA] * count
    probes = [0] * count
    latency_total = [0] * count
    latency_count = [0] * count
    rows = (
        HealthCheck.objects.filter(target=target, checked_at__gte=start, checked_at__lte=now)
        .order_by()
        .values_list("checked_at", "status", "latency_ms")
    )
    for checked_at, status, latency_ms in rows:
        index = min(count - 1, (checked_at - start) // bucket)
        probes[index] += 1
        worst[index] = status if worst[index] == Health.NO_DATA else _worse(status, worst[index])
        if latency_ms is not None:
            latency_total[index] += latency_ms
            latency_count[index] += 1
    return [
        HistoryPoint(
            start=start + index * bucket,
            end=start + (index + 1) * bucket,
            status=worst[index],
            probes=probes[index],
            latency_ms=latency_total[index] / latency_count[index]
            if latency_count[index]
            else None,
        )
        for index in range(count)
    ]


@dataclass(frozen=True)
class ChartBar:
    """One bucket of the strip: where it is drawn, its CSS class, and its tooltip."""

    x: int
    width: int
    css_class: str
    status: str
    title: str


@dataclass(frozen=True)
class HealthChart:
    """What templates/services/_health_chart.html draws: the strip of buckets, coloured by
    CSS class, and a latency line below it; words in the label and every tooltip."""

    width: int
    height: int
    strip_height: int
    bars: list[ChartBar]
    latency_points: str  # the SVG polyline's "points", empty without any latency
    latency_title: str
    aria_label: str


CHART_BAR_STEP = 4
CHART_STRIP_HEIGHT = 24
CHART_LATENCY_TOP = 27
CHART_HEIGHT = 40
_STATUS_WORDS: dict[str, str] = {
    Health.OK: "OK",
    Health.WARNING: "Warning",
    Health.CRITICAL: "Critical",
    Health.NO_DATA: "No data",
}


def _period(hours: int) -> str:
    if hours % 24 == 0 and hours > 24:
        return f"{hours // 24} days"
    return "hour" if hours == 1 else f"{hours} hours"


def history_chart(
    target: DeploymentTarget, now: datetime | None = None, hours: int = 24
) -> HealthChart:
    """The history of :func:`history` as the bars and line of a small server-rendered SVG."""
    points = history(target, hours=hours, now=now)
    bars: list[ChartBar] = []
    for index, point in enumerate(points):
        start, end = point.start.astimezone(UTC), point.end.astimezone(UTC)
        word = _STATUS_WORDS.get(point.status, point.status)
        when = f"{start:%d %b %H:%M}–{end:%H:%M} UTC"
        if point.probes:
            latency = "" if point.latency_ms is None else f", mean {point.latency_ms:.0f} ms"
            title = f"{when}: {word}{latency} ({_plural(point.probes, 'probe')})"
        else:
            title = f"{when}: {word}"
        bars.append(
            ChartBar(
                x=index * CHART_BAR_STEP,
                width=CHART_BAR_STEP - 1,
                css_class=f"health-{point.status.replace('_', '-')}",
                status=point.status,
                title=title,
            )
        )
    latencies = [point.latency_ms for point in points if point.latency_ms is not None]
    highest = max(latencies, default=0.0)
    band = CHART_HEIGHT - CHART_LATENCY_TOP - 1
    line = [
        f"{index * CHART_BAR_STEP + (CHART_BAR_STEP - 1) / 2:g},"
        f"{CHART_HEIGHT - 1 - (point.latency_ms / highest if highest else 0) * band:.1f}"
        for index, point in enumerate(points)
        if point.latency_ms is not None
    ]
    counts = dict.fromkeys(_STATUS_WORDS, 0)
    for point in points:
        counts[point.status] = counts.get(point.status, 0) + 1
    label = (
        f"Health over the last {_period(hours)}: {counts[Health.OK]} OK, "
        f"{counts[Health.WARNING]} warning, {counts[Health.CRITICAL]} critical buckets"
    )
    if counts[Health.NO_DATA]:
        label += f", {counts[Health.NO_DATA]} without data"
    return HealthChart(
        width=len(points) * CHART_BAR_STEP,
        height=CHART_HEIGHT,
        strip_height=CHART_STRIP_HEIGHT,
        bars=bars,
        latency_points=" ".join(line) if len(line) > 1 else "",
        latency_title=f"Mean latency per bucket, highest {highest:.0f} ms",
        aria_label=label,
    )
