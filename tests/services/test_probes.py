"""The health probe cycle against real HTTP(S) servers on loopback, and the rollups, uptime and
history read back from its results."""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext

from apps.common.locks import Lock
from apps.services import probes, tasks
from apps.services.choices import ClusterAccess, Health
from apps.services.models import (
    Cluster,
    DeploymentTarget,
    Environment,
    HealthCheck,
    HealthRollup,
    Service,
)
from tests.support.database import another_connection
from tests.support.loopback import Served

SLOW_SECONDS = 2.5  # longer than the 1 s timeout the tests set
HEALTHY = {"status": "ok", "checks": {"database": {"status": "pass", "output": "3 ms"}}}
DEGRADED = {
    "status": "degraded",
    "checks": [
        {"name": "redis", "status": "fail", "detail": "timeout"},
        {"name": "database", "status": "ok"},
    ],
}
OK_WITH_FAILING_CHECK = {
    "status": "pass",
    "checks": {"queue": {"ok": False, "detail": "12000 jobs waiting"}, "database": True},
}
PORTAL_REPORT = {
    "status": "degraded",
    "checks": [
        {"name": "database", "ok": True, "detail": "postgresql 15", "milliseconds": 1.2},
        {"name": "broker", "ok": False, "detail": "ConnectionError: refused", "milliseconds": 3},
    ],
}


class _Handler(BaseHTTPRequestHandler):
    """The endpoints of a few imaginary services, healthy and not."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real services answer

    def do_GET(self) -> None:
        path = self.path
        if path == "/live":
            self._send(200, b"ok", "text/plain")
        elif path in ("/ready", "/health"):
            self._json(200, HEALTHY)
        elif path == "/degraded":
            self._json(200, DEGRADED)
        elif path == "/ok-with-failing-check":
            self._json(200, OK_WITH_FAILING_CHECK)
        elif path == "/unavailable":
            self._json(503, {"status": "unavailable"})
        elif path == "/report-503":  # the shape of the portal's own /health
            self._json(503, PORTAL_REPORT)
        elif path == "/slow":
            time.sleep(SLOW_SECONDS)
            self._json(200, HEALTHY)
        elif path == "/not-json":
            self._send(200, b"<html><body>OK</body></html>", "text/html")
        elif path == "/huge":
            self._send(200, b"[" + b" " * (1024 * 1024) + b"]", "application/json")
        elif match := re.fullmatch(r"/hop/(\d+)", path):
            left = int(match.group(1))
            self.send_response(302)
            self.send_header("Location", f"/hop/{left - 1}" if left > 1 else "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"not found", "text/plain")

    def _json(self, status: int, document: object) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the probe gave up (timeout, body limit): a broken pipe here is expected


def _serve(server: ThreadingHTTPServer) -> Iterator[str]:
    served = Served(server, "probed-web")
    try:
        yield f"127.0.0.1:{served.port}"
    finally:
        served.stop()


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    """Base URL of a plain HTTP server on a free loopback port."""
    yield from (f"http://{address}" for address in _serve(_Server(("127.0.0.1", 0), _Handler)))


@dataclass(frozen=True)
class TlsServer:
    base: str
    ca_bundle: Path
    not_after: datetime


@pytest.fixture(scope="module")
def tls_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """The same endpoints over HTTPS, with a self-signed certificate made now and valid for
    10 days: what a probe sees of a certificate nobody renewed."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC).replace(microsecond=0)
    not_after = now + timedelta(days=10)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for address in _serve(server):
        yield TlsServer(f"https://{address}", cert_path, not_after)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _quick_probes(settings: Any) -> None:
    settings.HEALTH_PROBE_TIMEOUT_SECONDS = 1
    settings.HEALTH_PROBE_CONCURRENCY = 8
    settings.HEALTH_PROBE_INTERVAL = timedelta(seconds=30)
    settings.HEALTH_TLS_WARNING_DAYS = 30
    settings.HEALTH_RAW_RETENTION = timedelta(hours=48)
    settings.HEALTH_PROBE_CA_BUNDLE = None


MakeTarget = Callable[..., DeploymentTarget]


@pytest.fixture
def make_target(db: None) -> MakeTarget:
    """One service in production per call, with the health URLs given."""
    environment = Environment.objects.create(
        name="Production", slug="production", is_production=True
    )
    cluster = Cluster.objects.create(name="main", access=ClusterAccess.IN_CLUSTER)
    numbers = itertools.count(1)

    def make(liveness: str = "", readiness: str = "", health: str = "") -> DeploymentTarget:
        number = next(numbers)
        service = Service.objects.create(name=f"svc-{number}", slug=f"svc-{number}", team="ops")
        return DeploymentTarget.objects.create(
            service=service,
            environment=environment,
            cluster=cluster,
            namespace="prod",
            deployment=f"svc-{number}",
            container="app",
            liveness_url=liveness,
            readiness_url=readiness,
            health_url=health,
        )

    return make


def _probed(target: DeploymentTarget) -> tuple[DeploymentTarget, HealthCheck]:
    target.refresh_from_db()
    return target, HealthCheck.objects.get(target=target)


# --- Verdicts -----------------------------------------------------------------------------------


def test_it_marks_a_healthy_target_ok(make_target: MakeTarget, web: str) -> None:
    target = make_target(f"{web}/live", f"{web}/ready", f"{web}/health")
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    cycle = probes.probe_all(now=now)

    target, check = _probed(target)
    assert (cycle.targets, cycle.ok, cycle.warning, cycle.critical) == (1, 1, 0, 0)
    assert target.health == Health.OK
    assert re.fullmatch(r"Ready 200 in \d+ ms; health: ok", target.health_detail)
    assert target.health_checked_at == now
    assert target.health_latency_ms is not None
    assert target.tls_expires_at is None
    assert check.status == Health.OK
    assert check.http_status == 200
    assert check.checked_at == now
    assert check.latency_ms == target.health_latency_ms
    assert check.checks == {"database": {"status": "ok", "detail": "3 ms"}}


def test_it_warns_when_the_health_json_is_degraded(make_target: MakeTarget, web: str) -> None:
    target = make_target(f"{web}/live", f"{web}/ready", f"{web}/degraded")

    probes.probe_all()

    target, check = _probed(target)
    assert target.health == Health.WARNING
    assert target.health_detail.endswith("; health: degraded (redis: timeout)")
    assert check.checks == {
        "redis": {"status": "critical", "detail": "timeout"},
        "database": {"status": "ok", "detail": ""},
    }


def test_it_warns_when_a_check_fails_under_an_ok_status(make_target: MakeTarget, web: str) -> None:
    target = make_target(health=f"{web}/ok-with-failing-check")

    probes.probe_all()

    target, check = _probed(target)
    assert target.health == Health.WARNING
    assert re.fullmatch(
        r"Health 200 in \d+ ms; health: pass \(queue: 12000 jobs waiting\)", target.health_detail
    )
    assert check.checks["queue"] == {"status": "critical", "detail": "12000 jobs waiting"}
    assert check.checks["database"]["status"] == "ok"


def test_it_is_critical_when_readiness_answers_503(make_target: MakeTarget, web: str) -> None:
    target = make_target(f"{web}/live", f"{web}/unavailable", f"{web}/health")

    probes.probe_all()

    target, check = _probed(target)
    assert target.health == Health.CRITICAL
    assert target.health_detail == "Readiness: HTTP 503"
    assert check.http_status == 503


def test_it_is_critical_when_the_health_json_answers_503(make_target: MakeTarget, web: str) -> None:
    target = make_target(f"{web}/live", health=f"{web}/report-503")

    probes.probe_all()

    target, check = _probed(target)
    assert target.health == Health.CRITICAL
    assert target.health_detail == "Health: HTTP 503, degraded (broker: ConnectionError: refused)"
    assert check.checks == {
        "database": {"status": "ok", "detail": "postgresql 15"},
        "broker": {"status": "critical", "detail": "ConnectionError: refused"},
    }


def test_it_is_critical_when_liveness_is_refused(make_target: MakeTarget, closed_port: int) -> None:
    base = f"http://127.0.0.1:{closed_port}"
    target = make_target(f"{base}/live", f"{base}/ready", f"{base}/health")

    probes.probe_all()

    target, check = _probed(target)
    assert target.health == Health.CRITICAL
    assert target.health_detail == "Liveness: connection refused"
    assert check.http_status is None


def test_it_gives_up_on_an_endpoint_slower_than_the_timeout(
    make_target: MakeTarget, web: str
) -> None:
    target = make_target(readiness=f"{web}/ready", health=f"{web}/slow")

    cycle = probes.probe_all()

    target, _ = _probed(target)
    assert cycle.critical == 1
    assert target.health_detail == "Health: no answer within 1 s"
    # The slowest URL sets the latency: here, the time waited for it.
    assert target.health_latency_ms is not None
    assert 1000 <= target.health_latency_ms < SLOW_SECONDS * 1000


def test_it_is_critical_when_the_health_body_is_not_json(make_target: MakeTarget, web: str) -> None:
    target = make_target(health=f"{web}/not-json")

    probes.probe_all()

    target, _ = _probed(target)
    assert target.health == Health.CRITICAL
    assert re.fullmatch(r"Health 200 in \d+ ms; health: not JSON", target.health_detail)


def test_it_reads_at_most_64_kib_of_a_body(make_target: MakeTarget, web: str) -> None:
    target = make_target(health=f"{web}/huge")

    probes.probe_all()

    target, _ = _probed(target)
    assert target.health == Health.CRITICAL
    assert target.health_detail.endswith("; health: body over 64 KiB")


def test_it_follows_three_redirects_and_no_more(make_target: MakeTarget, web: str) -> None:
    three = make_target(health=f"{web}/hop/3")
    four = make_target(health=f"{web}/hop/4")

    probes.probe_all()

    three.refresh_from_db()
    four.refresh_from_db()
    assert three.health == Health.OK
    assert four.health == Health.CRITICAL
    assert four.health_detail == "Health: HTTP 302"


def test_it_probes_every_target_with_a_url_and_counts_the_verdicts(
    make_target: MakeTarget, web: str, closed_port: int
) -> None:
    make_target(f"{web}/live", f"{web}/ready", f"{web}/health")
    make_target(health=f"{web}/degraded")
    make_target(readiness=f"{web}/unavailable")
    make_target(liveness=f"http://127.0.0.1:{closed_port}/live")
    silent = make_target()  # no URL: nothing to probe

    cycle = probes.probe_all()

    assert (cycle.targets, cycle.ok, cycle.warning, cycle.critical) == (4, 1, 1, 2)
    assert cycle.workers == 4
    assert HealthCheck.objects.count() == 4
    silent.refresh_from_db()
    assert silent.health == Health.NO_DATA
    assert silent.health_checked_at is None


def test_it_writes_in_as_many_queries_for_50_targets_as_for_5(
    make_target: MakeTarget, web: str
) -> None:
    for _ in range(5):
        make_target(f"{web}/live", f"{web}/ready", f"{web}/health")
    with CaptureQueriesContext(connection) as five:
        probes.probe_all()
    for _ in range(45):
        make_target(f"{web}/live", f"{web}/ready", f"{web}/degraded")
    with CaptureQueriesContext(connection) as fifty:
        cycle = probes.probe_all()

    assert (cycle.targets, cycle.ok, cycle.warning) == (50, 5, 45)
    assert len(five.captured_queries) == len(fifty.captured_queries)
    assert len(fifty.captured_queries) <= 6  # savepoints of the test's transaction included
    assert HealthCheck.objects.count() == 55


def test_it_shows_stale_once_the_last_probe_is_two_intervals_old(
    make_target: MakeTarget, web: str
) -> None:
    target = make_target(f"{web}/live")
    with time_machine.travel(datetime(2026, 3, 10, 12, 0, tzinfo=UTC)) as traveller:
        probes.probe_all()
        target.refresh_from_db()
        assert target.health_now() == Health.OK
        traveller.shift(timedelta(seconds=59))
        assert target.health_now() == Health.OK
        traveller.shift(timedelta(seconds=2))
        assert target.health_now() == Health.STALE


def test_it_probes_one_url_for_a_rollout_check(web: str, closed_port: int) -> None:
    ready = probes.probe_url(f"{web}/ready")
    degraded = probes.probe_url(f"{web}/degraded")
    unavailable = probes.probe_url(f"{web}/unavailable")
    refused = probes.probe_url(f"http://127.0.0.1:{closed_port}/ready")

    assert (ready.ok, ready.status, ready.http_status) == (True, Health.OK, 200)
    assert re.fullmatch(r"HTTP 200 in \d+ ms; health: ok", ready.detail)
    assert (degraded.ok, degraded.status) == (True, Health.WARNING)
    assert (unavailable.ok, unavailable.status, unavailable.http_status) == (False, "critical", 503)
    assert unavailable.detail.startswith("HTTP 503 in ")
    assert (refused.ok, refused.detail) == (False, "connection refused")


# --- TLS -------------------------------------------------------------------------------------


def test_it_records_the_certificate_expiry_and_warns_before_it(
    make_target: MakeTarget, tls_web: TlsServer, settings: Any
) -> None:
    settings.HEALTH_PROBE_CA_BUNDLE = str(tls_web.ca_bundle)
    target = make_target(f"{tls_web.base}/live", f"{tls_web.base}/ready", f"{tls_web.base}/health")

    probes.probe_all()

    target, _ = _probed(target)
    assert target.tls_expires_at == tls_web.not_after
    assert target.health == Health.WARNING
    assert target.health_detail.endswith("; health: ok; certificate expires in 9 days")
    assert target.tls_days_left == 9


def test_it_is_critical_when_the_certificate_is_not_trusted(
    make_target: MakeTarget, tls_web: TlsServer
) -> None:
    target = make_target(f"{tls_web.base}/live")

    probes.probe_all()

    target, _ = _probed(target)
    assert target.health == Health.CRITICAL
    assert target.health_detail.startswith("Liveness: TLS certificate not valid (")
    assert "self-signed" in target.health_detail
    assert target.tls_expires_at is None


# --- Rollups and uptime ------------------------------------------------------------------------

NOW = datetime(2026, 3, 10, 12, 20, tzinfo=UTC)


def _raw(target: DeploymentTarget, at: datetime, status: str, latency_ms: int = 10) -> None:
    HealthCheck.objects.create(target=target, checked_at=at, status=status, latency_ms=latency_ms)


def _rollups() -> dict[tuple[int, datetime], tuple[int, int, int]]:
    return {
        (rollup.target_id, rollup.hour): (rollup.probes, rollup.ok, rollup.latency_ms_total)
        for rollup in HealthRollup.objects.all()
    }


def test_it_rolls_complete_hours_up_idempotently_and_deletes_old_raw_probes(
    make_target: MakeTarget,
) -> None:
    target = make_target("http://127.0.0.1:1/live")
    day_before = NOW - timedelta(days=2)  # 2026-03-08 12:20
    _raw(target, day_before - timedelta(hours=1), Health.OK)  # past retention: deleted
    _raw(target, day_before + timedelta(hours=1), Health.CRITICAL, 7)  # hour 13:00 is intact
    _raw(target, NOW.replace(hour=9, minute=5), Health.OK, 10)
    _raw(target, NOW.replace(hour=9, minute=35), Health.CRITICAL, 30)
    _raw(target, NOW.replace(hour=10, minute=15), Health.WARNING, 20)
    _raw(target, NOW.replace(hour=11, minute=59), Health.OK, 5)
    _raw(target, NOW.replace(hour=12, minute=5), Health.OK, 5)  # this hour: not complete

    with time_machine.travel(NOW, tick=False):
        written = probes.roll_up()
        first = _rollups()
        probes.roll_up()
        second = _rollups()

    hour = NOW.replace(minute=0)
    assert written == 4
    assert first == {
        (target.pk, datetime(2026, 3, 8, 13, tzinfo=UTC)): (1, 0, 7),
        (target.pk, hour.replace(hour=9)): (2, 1, 40),
        (target.pk, hour.replace(hour=10)): (1, 1, 20),
        (target.pk, hour.replace(hour=11)): (1, 1, 5),
    }
    assert second == first
    assert HealthCheck.objects.count() == 6
    assert not HealthCheck.objects.filter(checked_at__lt=day_before).exists()

    # A cycle that began before 12:00 and committed after the roll-up still counts.
    _raw(target, NOW.replace(hour=11, minute=59, second=59), Health.CRITICAL, 1)
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        probes.roll_up()
    third = _rollups()
    assert third[(target.pk, hour.replace(hour=11))] == (2, 1, 6)
    assert third[(target.pk, hour)] == (1, 1, 5)


def test_it_computes_uptime_from_rollups_and_the_raw_probes_after_them(
    make_target: MakeTarget, django_assert_max_num_queries: Any
) -> None:
    target = make_target("http://127.0.0.1:1/live")
    hour = NOW.replace(minute=0)

    def rollup(at: datetime, probes_: int, ok: int) -> None:
        HealthRollup.objects.create(target=target, hour=at, probes=probes_, ok=ok)

    rollup(hour - timedelta(days=40), 100, 0)  # outside every window
    rollup(hour - timedelta(days=20), 120, 60)  # 30 days
    rollup(hour - timedelta(days=3), 120, 120)  # 7 and 30 days
    rollup(hour - timedelta(hours=2), 120, 108)  # every window; the last hour rolled up
    for minute in (30, 40, 50):  # already in the 10:00 rollup: not counted twice
        _raw(target, hour - timedelta(hours=2) + timedelta(minutes=minute), Health.CRITICAL)
    for minute in range(10, 70, 5):  # 11:10 to 12:05: 10 up, 2 down
        status = Health.CRITICAL if minute in (20, 25) else Health.OK
        if minute == 30:
            status = Health.WARNING  # a degraded service still serves
        _raw(target, hour - timedelta(hours=1) + timedelta(minutes=minute), status)

    with django_assert_max_num_queries(2):
        fractions = probes.uptime(target, now=NOW)

    assert fractions == {
        "24h": pytest.approx((108 + 10) / (120 + 12)),
        "7d": pytest.approx((108 + 10 + 120) / (120 + 12 + 120)),
        "30d": pytest.approx((108 + 10 + 120 + 60) / (120 + 12 + 120 + 120)),
    }


def test_it_computes_uptime_from_raw_probes_alone_and_none_without_probes(
    make_target: MakeTarget,
) -> None:
    target = make_target("http://127.0.0.1:1/live")
    quiet = make_target("http://127.0.0.1:1/live")
    _raw(target, NOW - timedelta(hours=30), Health.CRITICAL)
    _raw(target, NOW - timedelta(hours=1), Health.OK)

    assert probes.uptime(target, now=NOW) == {"24h": 1.0, "7d": 0.5, "30d": 0.5}
    assert probes.uptime(quiet, now=NOW) == {"24h": None, "7d": None, "30d": None}


# --- History and its chart ---------------------------------------------------------------------


def test_it_buckets_the_history_by_quarter_hour_with_the_worst_status(
    make_target: MakeTarget,
) -> None:
    target = make_target("http://127.0.0.1:1/live")
    _raw(target, NOW - timedelta(hours=25), Health.CRITICAL)  # before the window
    _raw(target, NOW.replace(minute=10), Health.OK, 10)
    _raw(target, NOW.replace(minute=12), Health.CRITICAL, 30)
    _raw(target, NOW.replace(hour=11, minute=50), Health.WARNING, 7)

    points = probes.history(target, now=NOW)

    assert len(points) == 96
    assert points[-1].start == NOW.replace(minute=15)
    assert points[-1].status == Health.NO_DATA
    assert points[-1].latency_ms is None
    assert (points[-2].start, points[-2].status, points[-2].probes) == (
        NOW.replace(minute=0),
        Health.CRITICAL,
        2,
    )
    assert points[-2].latency_ms == 20
    assert points[-3].status == Health.WARNING
    assert points[0].start == NOW.replace(minute=15) - timedelta(hours=23, minutes=45)
    assert [point.status for point in points].count(Health.NO_DATA) == 94


def test_it_draws_the_history_as_an_accessible_svg(make_target: MakeTarget) -> None:
    target = make_target("http://127.0.0.1:1/live")
    _raw(target, NOW.replace(minute=10), Health.OK, 10)
    _raw(target, NOW.replace(minute=12), Health.CRITICAL, 30)
    _raw(target, NOW.replace(hour=11, minute=50), Health.WARNING, 7)

    html = render_to_string(
        "services/_health_chart.html", {"chart": probes.history_chart(target, now=NOW)}
    )

    assert 'role="img"' in html
    assert (
        'aria-label="Health over the last 24 hours: 0 OK, 1 warning, 1 critical buckets, '
        '94 without data"' in html
    )
    assert html.count("<rect ") == 96
    assert html.count('class="health-chart-bar health-no-data"') == 94
    assert "<title>10 Mar 12:00–12:15 UTC: Critical, mean 20 ms (2 probes)</title>" in html
    assert "<title>10 Mar 11:45–12:00 UTC: Warning, mean 7 ms (1 probe)</title>" in html
    assert "<polyline " in html
    assert "style" not in html
    assert "<script" not in html


def test_it_labels_a_day_of_good_health(make_target: MakeTarget) -> None:
    target = make_target("http://127.0.0.1:1/live")
    start = NOW.replace(minute=15) - timedelta(hours=23, minutes=45)
    HealthCheck.objects.bulk_create(
        HealthCheck(target=target, checked_at=start + i * timedelta(minutes=15), status="ok")
        for i in range(96)
    )

    chart = probes.history_chart(target, now=NOW)

    assert chart.aria_label == "Health over the last 24 hours: 96 OK, 0 warning, 0 critical buckets"
    assert {bar.css_class for bar in chart.bars} == {"health-ok"}
    assert chart.latency_points == ""


# --- Tasks ----------------------------------------------------------------------------------


def test_it_runs_a_cycle_from_the_task(make_target: MakeTarget, web: str) -> None:
    make_target(f"{web}/live", f"{web}/ready", f"{web}/health")

    result = tasks.probe_health()

    assert result["targets"] == 1
    assert result["ok"] == 1
    assert HealthCheck.objects.count() == 1
    assert tasks.roll_up_health() == 0  # nothing in a complete hour yet


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's")
def test_it_skips_a_cycle_while_the_previous_one_runs(make_target: MakeTarget, web: str) -> None:
    make_target(f"{web}/live")
    with another_connection(autocommit=True) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s)", [int(Lock.PROBE_HEALTH)])
        assert tasks.probe_health() == {"skipped": True}
        other_worker.execute("SELECT pg_advisory_unlock(%s)", [int(Lock.PROBE_HEALTH)])

    assert HealthCheck.objects.count() == 0
    assert tasks.probe_health()["targets"] == 1
