"""Dispatch latency: from the POST that starts an operation to the operation being ``running``
on a real worker.

Each operation is started the way a person starts it, with the confirmed start form posted to
``/operations/start/diagnostics.ping/`` through Django's test client in this process. ``t0`` is
``timezone.now()`` just before the POST; the operation is running once the worker's claim
(the conditional UPDATE queued → running) has set ``started_at``, so the latency is
``started_at - t0``, both read from this machine's clock. Only one operation may be active per
target, so each one finishes before the next starts. Target: p95 under 250 ms.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import resolve, reverse
from django.utils import timezone

from apps.operations.choices import FINAL_STATES, State
from apps.operations.models import Operation
from bench.report import heading, ms, percentile, table, verdict

KIND = "diagnostics.ping"
TARGET_ID = "self"
TARGET_P95_SECONDS = 0.250
POLL_SECONDS = 0.002
TIMEOUT_SECONDS = 30.0


class DispatchFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Sample:
    operation_id: int
    latency: float  # t0 → started_at: what the brief calls dispatch latency
    post: float  # the POST, from the client's call to its 302
    before_row: float  # t0 → queued_at: the request up to the action creating the row
    after_row: float  # queued_at → started_at: commit, audit, publish, broker, pool, claim
    after_response: float  # the 302 back in hand → started_at (negative: the worker was first)
    queries: int  # SQL queries of the POST, the publish on commit included
    state: str
    error: str


@dataclass
class DispatchResult:
    samples: list[Sample] = field(default_factory=list)
    worker: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> list[Sample]:
        return [sample for sample in self.samples if sample.state != State.SUCCEEDED]


def _post_start(client: Client) -> tuple[int, float, int]:
    """POST the confirmed form; the new operation's id, how long the POST took and how many
    SQL queries it made."""
    url = reverse("operations:start", args=[KIND])
    data = {
        "target": TARGET_ID,
        "p-pause_seconds": "0",
        "reason": "bench",
        "idempotency_key": uuid.uuid4().hex,
        "confirmed": "1",
    }
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        response = client.post(url, data)
        elapsed = time.perf_counter() - started
    if response.status_code != 302:
        body = response.content.decode(errors="replace")[:1500]
        raise DispatchFailed(f"POST {url} answered {response.status_code}, not 302:\n{body}")
    match = resolve(urlsplit(response["Location"]).path)
    if match.view_name != "operations:detail":
        raise DispatchFailed(f"POST {url} redirected to {response['Location']}, not an operation")
    # The success message would pile up in the cookie, and then the session, of a client
    # that never renders a page: drop it so that every POST carries the same weight.
    client.cookies.pop("messages", None)
    return int(match.kwargs["pk"]), elapsed, len(captured.captured_queries)


def _wait_for(
    operation_id: int, what: str, done: Callable[[Mapping[str, Any]], bool]
) -> Mapping[str, Any]:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        row = Operation.objects.filter(pk=operation_id).values(
            "state", "queued_at", "started_at", "finished_at", "error"
        )[0]
        if done(row):
            return row
        if time.monotonic() > deadline:
            raise DispatchFailed(
                f"operation #{operation_id} not {what} after {TIMEOUT_SECONDS:.0f} s "
                f"(state {row['state']}): is the worker consuming the queue?"
            )
        time.sleep(POLL_SECONDS)


def run_one(client: Client) -> Sample:
    t0 = timezone.now()
    operation_id, post_seconds, queries = _post_start(client)
    responded = timezone.now()
    _wait_for(operation_id, "running", lambda row: row["started_at"] is not None)
    row = _wait_for(operation_id, "finished", lambda row: row["state"] in FINAL_STATES)
    started_at: datetime = row["started_at"]
    queued_at: datetime = row["queued_at"]
    return Sample(
        operation_id=operation_id,
        latency=(started_at - t0).total_seconds(),
        post=post_seconds,
        before_row=(queued_at - t0).total_seconds(),
        after_row=(started_at - queued_at).total_seconds(),
        after_response=(started_at - responded).total_seconds(),
        queries=queries,
        state=str(row["state"]),
        error=str(row["error"] or ""),
    )


def measure(client: Client, count: int, worker: str) -> DispatchResult:
    result = DispatchResult(worker=worker)
    started = time.perf_counter()
    for _ in range(count):
        result.samples.append(run_one(client))
    result.seconds = time.perf_counter() - started
    return result


def render(result: DispatchResult) -> str:
    samples = result.samples
    n = len(samples)
    rows: list[list[object]] = []
    for label, values in [
        ("POST -> running (started_at - t0)", [s.latency for s in samples]),
        ("  the POST itself (302 in hand)", [s.post for s in samples]),
        ("  t0 -> row created (queued_at)", [s.before_row for s in samples]),
        ("  queued_at -> started_at", [s.after_row for s in samples]),
        ("  302 in hand -> started_at", [s.after_response for s in samples]),
    ]:
        rows.append(
            [label, ms(percentile(values, 50)), ms(percentile(values, 95)), ms(max(values))]
        )
    latencies = [s.latency for s in samples]
    p95 = percentile(latencies, 95)
    before_response = sum(1 for s in samples if s.after_response < 0)
    lines = [
        heading("1. Dispatch latency: POST of an action -> operation running on a worker"),
        f"  {n} operations of {KIND} on target {TARGET_ID!r}, one at a time, posted through "
        "the confirmed start form;",
        f"  worker {result.worker} (prefork, concurrency 2) on the Redis broker; "
        f"{result.seconds:.1f} s in all.",
        "",
        table(["measure", "p50", "p95", "max"], rows),
        "",
        "  SQL queries per POST: "
        + ", ".join(
            f"{count} ({times} of {n})"
            for count, times in sorted(Counter(s.queries for s in samples).items())
        ),
        f"  first operation (cold worker pool): {ms(samples[0].latency)}",
        f"  worker claimed it before the 302 was back in hand: {before_response} of {n}",
        f"  ended other than succeeded: {len(result.failed)} of {n}"
        + (
            f" (first: #{result.failed[0].operation_id} {result.failed[0].state}: "
            f"{result.failed[0].error[:200]})"
            if result.failed
            else ""
        ),  # fmt: skip
        f"  target p95 < {ms(TARGET_P95_SECONDS)}: {verdict(p95 < TARGET_P95_SECONDS)} "
        f"(p95 {ms(p95)})",
    ]
    return "\n".join(lines)
