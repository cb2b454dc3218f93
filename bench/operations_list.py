"""The operations list (``GET /operations/``): server time and SQL query count with 100 and
with 10,000 operations in the table.

The rows are bulk-created finished operations (2 % failed, 1 % cancelled, the rest
succeeded), then the table is ANALYZEd as autovacuum would have done by the time a real table
held that many. Each page is requested in this process through Django's test client, signed
in as an operator: the first page, the second (``?before=<id>``, the keyset cursor the page
links to), the last, and the failed ones (``?state=failed``). Every figure is over 50
requests after 2 unmeasured ones (templates compiled, connection open); the query count is
taken with ``CaptureQueriesContext``, the time with ``time.perf_counter`` around the request.
The count must not grow with the table, and the p95 must stay under 100 ms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.common.paging import PAGE_SIZE
from apps.operations.choices import State
from apps.operations.models import Operation, hash_params
from bench import tracing
from bench.fixtures import empty_operations_table
from bench.report import heading, ms, percentile, table, verdict

SIZES = (100, 10_000)
BATCH_SIZE = 1_000
WARM_UP_REQUESTS = 2
TARGET_P95_SECONDS = 0.100
KIND = "diagnostics.ping"


@dataclass(frozen=True)
class Page:
    label: str
    query: str  # the query string, without "?"


@dataclass
class PageResult:
    page: Page
    size: int
    seconds: list[float]
    query_counts: set[int]
    rows_shown: int
    queries: list[tracing.TimedQuery]  # of one more request, traced


def state_for(i: int) -> State:
    if i % 50 == 0:
        return State.FAILED
    if i % 97 == 0:
        return State.CANCELLED
    return State.SUCCEEDED


def load_operations(user: Any, count: int) -> float:
    """Replace the table's contents with ``count`` finished operations; seconds it took."""
    started = time.perf_counter()
    empty_operations_table()
    now = timezone.now()
    params: dict[str, Any] = {}
    params_hash = hash_params(params)
    for first in range(1, count + 1, BATCH_SIZE):
        batch = []
        for i in range(first, min(first + BATCH_SIZE, count + 1)):
            state = state_for(i)
            created = now - timedelta(minutes=count - i + 1)
            batch.append(
                Operation(
                    kind=KIND,
                    target_type="portal",
                    target_id=str(i),
                    target_label=f"Bench target {i}",
                    target_key=f"bench:{i}",
                    environment="development",
                    params=params,
                    params_hash=params_hash,
                    reason="bench",
                    requested_by=user,
                    state=state,
                    progress=100 if state == State.SUCCEEDED else 40,
                    status_text="All checks passed" if state == State.SUCCEEDED else str(state),
                    error="Broker: ConnectionError" if state == State.FAILED else "",
                    send_count=1,
                    created_at=created,
                    queued_at=created,
                    started_at=created + timedelta(milliseconds=20),
                    heartbeat_at=created + timedelta(seconds=1),
                    finished_at=created + timedelta(seconds=1),
                )
            )
        Operation.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE operations_operation")
    return time.perf_counter() - started


def pages_for(size: int) -> list[Page]:
    """The pages to request, with keyset cursors taken from the data just loaded."""
    ids = list(Operation.objects.order_by("-id").values_list("id", flat=True))
    second = ids[PAGE_SIZE - 1]  # what the first page's "Older operations" link carries
    last = ids[max(0, size - PAGE_SIZE - 1)]
    return [
        Page("first page", ""),
        Page("second page (?before=)", f"before={second}"),
        Page("last page (?before=)", f"before={last}"),
        Page("filtered (?state=failed)", "state=failed"),
    ]


def measure_page(client: Client, page: Page, size: int, requests: int) -> PageResult:
    url = reverse("operations:list") + (f"?{page.query}" if page.query else "")
    for _ in range(WARM_UP_REQUESTS):
        client.get(url)
    seconds: list[float] = []
    counts: set[int] = set()
    rows_shown = 0
    for _ in range(requests):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        counts.add(len(captured.captured_queries))
        # One <tr> for the header row, one per operation shown.
        rows_shown = max(0, response.content.count(b"<tr>") - 1)
    # Django keeps query times to the millisecond only: one more request, timed per query.
    with tracing.QueryTimer(connection) as timer:
        client.get(url)
    return PageResult(page, size, seconds, counts, rows_shown, timer.queries)


def measure(client: Client, user: Any, requests: int) -> tuple[list[PageResult], dict[int, float]]:
    results: list[PageResult] = []
    load_seconds: dict[int, float] = {}
    for size in SIZES:
        load_seconds[size] = load_operations(user, size)
        for page in pages_for(size):
            results.append(measure_page(client, page, size, requests))
    return results, load_seconds


def _counts(result: PageResult) -> str:
    return "/".join(str(count) for count in sorted(result.query_counts))


def render(results: list[PageResult], load_seconds: dict[int, float], requests: int) -> str:
    rows = [
        [
            result.page.label,
            f"{result.size:,}",
            result.rows_shown,
            ms(percentile(result.seconds, 50)),
            ms(percentile(result.seconds, 95)),
            ms(max(result.seconds)),
            _counts(result),
        ]
        for result in results
    ]
    by_label: dict[str, dict[int, PageResult]] = {}
    for result in results:
        by_label.setdefault(result.page.label, {})[result.size] = result
    small, large = SIZES[0], SIZES[-1]
    growing = [
        f"{label}: {_counts(sizes[small])} -> {_counts(sizes[large])}"
        for label, sizes in by_label.items()
        if sizes[small].query_counts != sizes[large].query_counts
    ]
    worst = max(results, key=lambda result: percentile(result.seconds, 95))
    worst_p95 = percentile(worst.seconds, 95)
    loads = ", ".join(f"{size:,} in {seconds:.1f} s" for size, seconds in load_seconds.items())
    lines = [
        heading("2. Operations list: GET /operations/ at 100 and 10,000 operations"),
        f"  {requests} requests per line after {WARM_UP_REQUESTS} unmeasured, in-process "
        "test client signed in as an operator;",
        f"  rows bulk-created and ANALYZEd ({loads}); 2 % failed, 1 % cancelled.",
        "",
        table(["page", "operations", "rows", "p50", "p95", "max", "queries"], rows),
        "",
        "  query count the same at 100 and 10,000: "
        + ("yes" if not growing else "NO (" + "; ".join(growing) + ")"),
        f"  target p95 < {ms(TARGET_P95_SECONDS)}: {verdict(worst_p95 < TARGET_P95_SECONDS)} "
        f"(worst p95 {ms(worst_p95)}: {worst.page.label} at {worst.size:,})",
        "",
        f"  the {len(by_label['first page'][large].queries)} queries of one GET /operations/ "
        f"at {large:,} operations:",
    ]
    for number, query in enumerate(by_label["first page"][large].queries, start=1):
        lines.append(f"  {number:>3}. {ms(query.seconds):>8}  {query.shortened()}")
    return "\n".join(lines)
