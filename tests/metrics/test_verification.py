"""Checks after a change, against a real Prometheus holding the counters and histograms
written here (the services' default error-rate and p95-latency definitions read them): an
unchanged service passes, one whose error rate tripled and latency rose fails, the verdict is
in the operation's log, the incident's timeline and the audit trail, and a failed rollout
that asked for it is rolled back by a new operation from the same incident."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.incidents.hooks import origin_of
from apps.incidents.models import TimelineEntry
from apps.metrics import verification
from apps.metrics.client import Prometheus
from apps.metrics.models import MetricDefinition, PrometheusConnection
from apps.operations import runner
from apps.operations.choices import State
from apps.operations.models import Operation, OperationLogLine
from apps.services.models import TARGET_TYPE, DeploymentTarget, Environment, Service
from tests.factories import make_incident, make_operation
from tests.services.conftest import make_cluster
from tests.support.prometheus import OpenMetrics, PrometheusServer
from tests.support.waiting import wait_for
from tests.support.worker import Worker

CHANGED_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PERIOD = timedelta(minutes=5)
NAMESPACE = "shop"
STEP = 15
PER_STEP = 1500  # requests every 15 s: 100 per second


def write_service(
    data: OpenMetrics,
    job: str,
    *,
    start: float,
    end: float,
    change: float,
    errors_before: int,
    errors_after: int,
    slow_after: bool,
) -> None:
    """http_requests_total by code and the latency histogram of ``job``: every request takes
    between 100 and 250 ms, or (``slow_after``) between 500 ms and 1 s after ``change``."""
    labels = {"job": job, "namespace": NAMESPACE}
    ok: list[tuple[float, float]] = []
    failed: list[tuple[float, float]] = []
    fast: list[tuple[float, float]] = []  # le=0.25 (and 0.5)
    all_: list[tuple[float, float]] = []  # le=1 and +Inf
    counts = {"ok": 0, "failed": 0, "fast": 0, "all": 0}
    at = start
    while at <= end:
        ok.append((at, counts["ok"]))
        failed.append((at, counts["failed"]))
        fast.append((at, counts["fast"]))
        all_.append((at, counts["all"]))
        after = at >= change
        errors = errors_after if after else errors_before
        counts["ok"] += PER_STEP - errors
        counts["failed"] += errors
        counts["fast"] += 0 if (after and slow_after) else PER_STEP
        counts["all"] += PER_STEP
        at += STEP
    data.counter("http_requests", {**labels, "code": "200"}, ok)
    data.counter("http_requests", {**labels, "code": "500"}, failed)
    zero = [(when, 0.0) for when, _ in all_]
    data.histogram(
        "http_request_duration_seconds",
        labels,
        {0.1: zero, 0.25: fast, 0.5: fast, 1.0: all_, math.inf: all_},
    )


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    data = OpenMetrics()
    window = {
        "start": (CHANGED_AT - timedelta(minutes=30)).timestamp(),
        "end": (CHANGED_AT + timedelta(minutes=30)).timestamp(),
        "change": CHANGED_AT.timestamp(),
    }
    write_service(data, "api-steady", errors_before=15, errors_after=15, slow_after=False, **window)
    write_service(data, "api-broken", errors_before=15, errors_after=45, slow_after=True, **window)
    server = PrometheusServer.start(Path(tmp_path_factory.mktemp("prometheus")), data)
    yield server
    server.stop()


@pytest.fixture
def connected(prometheus: PrometheusServer, db: None) -> PrometheusConnection:
    return PrometheusConnection.objects.create(url=prometheus.url)


def make_target(job: str, environment: str = "production") -> DeploymentTarget:
    """A service with the default metric definitions (created with it) and one target whose
    deployment is ``job``."""
    service = Service.objects.create(name=job, slug=job, team="Shop")
    env, _ = Environment.objects.get_or_create(
        slug=environment, defaults={"name": environment, "is_production": True}
    )
    cluster = make_cluster(f"cluster-{job}", "apiVersion: v1\nkind: Config\n")
    return DeploymentTarget.objects.create(
        service=service,
        environment=env,
        cluster=cluster,
        namespace=NAMESPACE,
        deployment=job,
        container="api",
    )


def rollout_of(
    target: DeploymentTarget, user: Any, *, auto_rollback: bool = True, **fields: Any
) -> Operation:
    fields.setdefault("finished_at", CHANGED_AT)
    return make_operation(
        user,
        kind="services.rollout",
        state=fields.pop("state", State.SUCCEEDED),
        target_key=f"{TARGET_TYPE}:{target.pk}",
        params={
            "image": "registry.example.com/shop/api:2.0.0",
            "auto_rollback": auto_rollback,
            "healthy_checks": 3,
        },
        **fields,
    )


def log_of(operation: Operation) -> list[str]:
    return list(
        OperationLogLine.objects.filter(operation=operation).values_list("message", flat=True)
    )


def test_the_default_definitions_are_the_ones_checked(connected: PrometheusConnection) -> None:
    target = make_target("api-steady")
    keys = [d.key for d in verification._definitions(target)]
    assert keys == ["error_rate", "latency_p95"]


def test_an_unchanged_service_passes(connected: PrometheusConnection) -> None:
    target = make_target("api-steady")

    result = verification.verify(target, changed_at=CHANGED_AT, period=PERIOD)

    assert result.outcome == verification.PASSED
    errors, latency = result.figures
    assert (errors.key, errors.verdict) == ("error_rate", "passed")
    assert errors.before == pytest.approx(1.0)
    assert errors.after == pytest.approx(1.0)
    assert (latency.key, latency.verdict) == ("latency_p95", "passed")
    # All requests between 100 and 250 ms: the 95th percentile interpolates to 242.5 ms.
    assert latency.before == pytest.approx(242.5)
    assert latency.after == pytest.approx(242.5)
    assert result.sentence == (
        "Checks after the change passed: Error rate 1 % before, 1 % after; Latency p95 "
        "242 ms before, 242 ms after (5 min after the change against the 5 min before)."
    )


def test_a_tripled_error_rate_and_a_slower_service_fail(connected: PrometheusConnection) -> None:
    target = make_target("api-broken")

    result = verification.verify(target, changed_at=CHANGED_AT, period=PERIOD)

    assert result.outcome == verification.FAILED
    errors, latency = result.figures
    assert errors.verdict == latency.verdict == "failed"
    assert errors.before == pytest.approx(1.0)
    assert errors.after == pytest.approx(3.0)
    assert latency.before == pytest.approx(242.5)
    assert latency.after == pytest.approx(975.0)
    assert result.sentence == (
        "Checks after the change failed: Error rate 1 % before, 3 % after (3.0× before, past "
        "the warning threshold of 1 %); Latency p95 242 ms before, 975 ms after (4.0× before, "
        "past the warning threshold of 500 ms) (5 min after the change against the 5 min "
        "before)."
    )


def test_the_before_window_ends_at_the_change(connected: PrometheusConnection) -> None:
    """Checked 5 minutes before the change, the broken service was still fine."""
    target = make_target("api-broken")
    result = verification.verify(target, changed_at=CHANGED_AT - PERIOD, period=PERIOD)
    assert result.outcome == verification.PASSED


def test_a_pass_is_logged_in_the_operation_and_audited(
    connected: PrometheusConnection, operator: Any
) -> None:
    target = make_target("api-steady")
    rollout = rollout_of(target, operator)

    result = verification.check_operation(rollout, period=PERIOD)

    assert result is not None and result.outcome == verification.PASSED
    assert log_of(rollout) == [result.sentence]
    event = AuditEvent.objects.get(action="operation.verified")
    assert (event.outcome, event.operation_id, event.reason) == (
        "succeeded",
        rollout.pk,
        result.sentence,
    )
    assert event.data["figures"][0] == {
        "key": "error_rate",
        "before": pytest.approx(1.0),
        "after": pytest.approx(1.0),
        "verdict": "passed",
    }
    # Delivered twice, it is recorded once.
    assert verification.check_operation(rollout, period=PERIOD) is None
    assert len(log_of(rollout)) == 1
    assert not Operation.objects.filter(kind="services.rollback").exists()


def test_a_failed_check_goes_into_the_incident_and_rolls_the_rollout_back(
    connected: PrometheusConnection, operator: Any
) -> None:
    target = make_target("api-broken")
    incident = make_incident(operator, services=[target.service])
    rollout = rollout_of(target, operator, origin=origin_of(incident))

    result = verification.check_operation(rollout, period=PERIOD)

    assert result is not None and result.outcome == verification.FAILED
    rollback = Operation.objects.get(kind="services.rollback")
    assert (rollback.target_id, rollback.origin, rollback.state) == (
        str(target.pk),
        origin_of(incident),
        State.QUEUED,
    )
    assert rollback.requested_by == operator
    assert rollback.params == {"to_revision": None, "healthy_checks": 3}
    assert rollback.reason.startswith(f"Automatic rollback of rollout #{rollout.pk}: ")
    assert log_of(rollout) == [
        result.sentence,
        f"Rolling back automatically: operation #{rollback.pk}.",
    ]
    entry = TimelineEntry.objects.get(incident=incident, data__phase="verification")
    assert entry.operation == rollout
    assert entry.text == f"Rollout #{rollout.pk} on api-broken (production): {result.sentence}"
    assert entry.data["outcome"] == "failed"
    assert [f["after"] for f in entry.data["figures"]] == [
        pytest.approx(3.0),
        pytest.approx(975.0),
    ]
    # The rollback, started from the same incident, is in its timeline too.
    assert TimelineEntry.objects.filter(
        incident=incident, operation=rollback, data__phase="requested"
    ).exists()


def test_a_failed_rollout_without_auto_rollback_is_only_reported(
    connected: PrometheusConnection, operator: Any
) -> None:
    target = make_target("api-broken")
    rollout = rollout_of(target, operator, auto_rollback=False)

    result = verification.check_operation(rollout, period=PERIOD)

    assert result is not None and result.outcome == verification.FAILED
    assert log_of(rollout) == [result.sentence]
    assert not Operation.objects.filter(kind="services.rollback").exists()


def test_a_later_change_is_not_rolled_back_over(
    connected: PrometheusConnection, operator: Any
) -> None:
    target = make_target("api-broken")
    rollout = rollout_of(target, operator)
    later = rollout_of(target, operator, finished_at=CHANGED_AT + timedelta(minutes=2))

    verification.check_operation(rollout, period=PERIOD)

    assert not Operation.objects.filter(kind="services.rollback").exists()
    assert log_of(rollout)[-1] == (
        f"Not rolled back automatically: operation #{later.pk} has changed the target since."
    )


def test_prometheus_down_is_inconclusive_never_a_pass(operator: Any) -> None:
    target = make_target("api-broken")
    rollout = rollout_of(target, operator)
    down = Prometheus("http://127.0.0.1:9", timeout=1)

    result = verification.check_operation(rollout, period=PERIOD, prometheus=down)

    assert result is not None and result.outcome == verification.INCONCLUSIVE
    assert result.sentence == (
        "Checks after the change could not conclude: metrics unavailable: Cannot reach "
        "Prometheus at http://127.0.0.1:9 (connection refused)."
    )
    assert log_of(rollout) == [result.sentence]
    assert not Operation.objects.filter(kind="services.rollback").exists()


def test_no_data_after_the_change_is_inconclusive(connected: PrometheusConnection) -> None:
    target = make_target("api-steady")
    # Long after the data ends: nothing after, nothing before.
    result = verification.verify(target, changed_at=CHANGED_AT + timedelta(hours=2), period=PERIOD)
    assert result.outcome == verification.INCONCLUSIVE
    # The change at the end of the data: values before it, none 20 minutes later.
    result = verification.verify(
        target, changed_at=CHANGED_AT + timedelta(minutes=30), period=timedelta(minutes=20)
    )
    assert result.outcome == verification.INCONCLUSIVE
    assert "Error rate 1 % before, no data after (no data after the change)" in result.sentence


@pytest.mark.parametrize(
    ("before", "after", "verdict"),
    [
        (1.0, 1.2, "passed"),  # a little worse, still fine
        (0.1, 0.9, "passed"),  # 9× worse but under the warning threshold
        (1.0, 3.0, "failed"),  # 3× worse and past the warning threshold
        (4.5, 5.5, "failed"),  # newly critical
        (8.0, 6.0, "passed"),  # still critical, but the change made it better
        (0.0, 2.0, "failed"),  # from nothing to past the warning threshold
    ],
)
def test_the_rule(before: float, after: float, verdict: str) -> None:
    definition = MetricDefinition(
        key="error_rate", name="Error rate", unit="%", warning=1, critical=5
    )
    assert verification.judge(definition, before, after).verdict == verdict


def test_a_service_without_those_metrics_logs_that_it_is_not_checked(
    connected: PrometheusConnection, operator: Any
) -> None:
    target = make_target("api-steady")
    MetricDefinition.objects.filter(service=target.service).update(enabled=False)
    rollout = rollout_of(target, operator, state=State.RUNNING, finished_at=None)

    runner.finish(rollout, State.SUCCEEDED, "Rolled out")

    assert log_of(rollout) == [
        "No checks after the change: api-steady has no enabled error rate or p95 latency metric."
    ]


def test_a_failed_change_is_not_checked(connected: PrometheusConnection, operator: Any) -> None:
    target = make_target("api-steady")
    rollout = rollout_of(target, operator, state=State.RUNNING, finished_at=None)

    runner.finish(rollout, State.FAILED, "It stalled", "It stalled")

    assert not any(line.startswith("Watching") for line in log_of(rollout))


# --- The whole path: the signal schedules the task, a real worker runs it -----------------


@pytest.fixture
def prometheus_now(tmp_path: Path) -> Iterator[PrometheusServer]:
    """The steady service's series over the last 40 minutes of the real clock."""
    now = timezone.now().timestamp()
    data = OpenMetrics()
    end = math.floor(now / STEP) * STEP
    write_service(
        data,
        "api-steady",
        start=end - 40 * 60,
        end=end,
        change=end,
        errors_before=15,
        errors_after=15,
        slow_after=False,
    )
    server = PrometheusServer.start(tmp_path / "prometheus-now", data)
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_records_the_verdict_one_period_after_the_change(
    prometheus_now: PrometheusServer,
    start_worker: Callable[..., Worker],
    operator: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.VERIFICATION_SECONDS = 1
    monkeypatch.setenv("VERIFICATION_SECONDS", "1")  # the worker's settings
    worker = start_worker()
    PrometheusConnection.objects.create(url=prometheus_now.url)
    target = make_target("api-steady")
    rollout = rollout_of(target, operator, state=State.RUNNING, finished_at=None)

    runner.finish(rollout, State.SUCCEEDED, "Rolled out")

    assert log_of(rollout)[0] == (
        "Watching the error rate and p95 latency of api-steady (production): they are "
        "compared 1 s after the change with the 1 s before it."
    )
    verdict = wait_for(
        lambda: OperationLogLine.objects.filter(
            operation=rollout, message__startswith=verification.RESULT_PREFIX
        ).first(),
        timeout=60,
        what=f"the verdict in the log (worker log: {worker.log_path})",
    )
    assert verdict is not None
    assert verdict.message.startswith("Checks after the change passed: Error rate 1 % before")
    assert verdict.level == "info"
