"""The audit history at 1,000,000 events: filtered pages, free-text search and a full CSV export.

The events are generated in this process with a valid hash chain (each row's hash computed
by ``AuditEvent.compute_hash`` from its predecessor's, continuing the chain already in the
database) and written with one ``COPY`` in one transaction, then the table is VACUUM
ANALYZEd as autovacuum would have done. The mix: 50 actors, 1 % denied and 3 % failed, operations,
catalog changes and sign-ins over a year, and the word "hotfix" in the reason of 0.5 % of
the events (the free-text search looks for it).

Each page is requested in this process through Django's test client, signed in as the
client passed in, over ``requests`` requests after 2 unmeasured ones; the query count comes
from ``CaptureQueriesContext``. A "deep cursor" is the keyset cursor of a page 90 % of the
way down the filtered events. The export is timed in a child process (``CHILD``, run
with ``python -c``) that does nothing but request ``/audit/export.csv`` through the view
and read the stream to its end, so that its peak memory (ru_maxrss) is the exporter's own.

The audit table refuses DELETE and TRUNCATE by trigger. The bench's rows are removed at the
end (and at the start, after an interrupted run) with ``session_replication_role = replica``,
which needs a PostgreSQL superuser, and the chain head is put back where it was: the
chain in the database is intact before and after. Only run it on a throwaway database.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit.filters import KIND_IDS_INLINE
from apps.audit.models import AuditChainHead, AuditEvent
from apps.common.paging import PAGE_SIZE
from apps.operations.models import Operation
from bench import procfs
from bench.fixtures import signed_in_client
from bench.report import heading, ms, percentile, table, verdict

EVENTS = 1_000_000
BATCH_SIZE = 50_000
WARM_UP_REQUESTS = 2
TARGET_PAGE_P95_SECONDS = 0.100
TARGET_SEARCH_P95_SECONDS = 0.300
TARGET_EXPORT_SECONDS = 60.0
TARGET_EXPORT_MIB = 150.0
# Marks the bench's rows, so that an interrupted run's rows can be found and removed.
REQUEST_ID = "bench-audit"
SEARCH_WORD = "hotfix"
# The operation-kind filter ("a user's restores"): one event seq in RESTORE_EVERY has an
# Operation row of this kind under its operation_id (the other operation events have none,
# as if retention had removed their rows): rare, so a deep page walks far.
RESTORE_KIND = "backups.restore"
RESTORE_EVERY = 250
# And a common kind: KIND_IDS_INLINE operations spread over the whole history, the most a
# page of one kind reads through the operation_id index and sorts.
COMMON_KIND = "services.restart"
ACTORS = [f"bench-user-{number:02d}" for number in range(50)]
SERVICES = ["api", "billing", "search", "orders", "auth", "mailer", "ledger", "reports"]
ENVIRONMENTS = ["development", "staging", "production"]
# The service and environment filters map through the catalogue: the bench's events are about
# real targets, CATALOG_SERVICES services in each of the ENVIRONMENTS (300 targets), and one
# rare service whose targets are in one event in RARE_EVERY, so that its deep page is the
# filter's worst case. Their slugs start with CATALOG_PREFIX, for the clean-up.
CATALOG_PREFIX = "bench-audit-"
CATALOG_SERVICES = 100
RARE_SERVICE = f"{CATALOG_PREFIX}rare"
RARE_EVERY = 10_000
ACTIONS = [
    "operation.queued",
    "operation.started",
    "operation.succeeded",
    "services.target.updated",
    "services.service.updated",
    "auth.login",
    "auth.logout",
    "access.denied",
]
COLUMNS = [
    "seq",
    "created_at",
    "actor_id",
    "actor_label",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "target_label",
    "operation_id",
    "reason",
    "data",
    "ip",
    "user_agent",
    "request_id",
    "prev_hash",
    "hash",
]


@dataclass(frozen=True)
class Page:
    label: str
    query: str  # the query string, without "?"
    search: bool = False


@dataclass
class PageResult:
    page: Page
    seconds: list[float]
    query_counts: set[int]
    rows_shown: int

    @property
    def target(self) -> float:
        return TARGET_SEARCH_P95_SECONDS if self.page.search else TARGET_PAGE_P95_SECONDS


@dataclass
class ExportResult:
    seconds: float
    rows: int
    megabytes: float
    peak_mib: float
    baseline_mib: float
    header: dict[str, Any]


@dataclass
class AuditResults:
    events: int
    load_seconds: float
    pages: list[PageResult] = field(default_factory=list)
    export: ExportResult | None = None


def _outcome(rng: random.Random) -> str:
    roll = rng.random()
    return "denied" if roll < 0.01 else "failed" if roll < 0.04 else "succeeded"


@dataclass(frozen=True)
class Catalog:
    """The bench's targets, (pk, label) each: the common ones and the rare service's."""

    targets: list[tuple[int, str]]
    rare: list[tuple[int, str]]


def load_catalog() -> Catalog:
    from apps.services.choices import ClusterAccess
    from apps.services.models import Cluster, DeploymentTarget, Environment, Service

    cluster = Cluster.objects.create(
        name=f"{CATALOG_PREFIX}cluster", access=ClusterAccess.IN_CLUSTER
    )
    environments = [
        Environment.objects.create(name=f"{CATALOG_PREFIX}{name}", slug=f"{CATALOG_PREFIX}{name}")
        for name in ENVIRONMENTS
    ]
    names = [f"{CATALOG_PREFIX}{number:03d}" for number in range(CATALOG_SERVICES)]
    catalog = Catalog([], [])
    for name in [*names, RARE_SERVICE]:
        service = Service.objects.create(name=name, slug=name, team="bench")
        for environment in environments:
            target = DeploymentTarget.objects.create(
                service=service,
                environment=environment,
                cluster=cluster,
                namespace=environment.slug,
                deployment=name,
                container="app",
            )
            row = (target.pk, f"{name} ({environment.slug})")
            (catalog.rare if name == RARE_SERVICE else catalog.targets).append(row)
    return catalog


def remove_catalog() -> None:
    from apps.services.models import Cluster, DeploymentTarget, Environment, Service

    DeploymentTarget.objects.filter(cluster__name__startswith=CATALOG_PREFIX).delete()
    Service.objects.filter(slug__startswith=CATALOG_PREFIX).delete()
    Environment.objects.filter(slug__startswith=CATALOG_PREFIX).delete()
    Cluster.objects.filter(name__startswith=CATALOG_PREFIX).delete()


def _event(
    seq: int, prev_hash: str, now: Any, count: int, rng: random.Random, catalog: Catalog
) -> AuditEvent:
    action = rng.choice(ACTIONS)
    service = rng.choice(SERVICES)
    is_operation = action.startswith("operation.")
    about = is_operation or "target" in action
    target_pk, target_label = rng.choice(
        catalog.rare if rng.randrange(RARE_EVERY) == 0 else catalog.targets
    )
    reason = ""
    if rng.random() < 0.005:
        reason = f"Roll back the {SEARCH_WORD} {rng.randrange(1000)} of {service}"
    elif rng.random() < 0.3:
        reason = rng.choice(["Scheduled deploy", "Scale for the sale", "Nightly restart"])
    event = AuditEvent(
        seq=seq,
        # One event every 30 s: a million of them cover the last year.
        created_at=now - timedelta(seconds=30 * (count - seq)),
        actor_id=None,
        actor_label=rng.choice(ACTORS),
        action=action,
        outcome="denied" if action == "access.denied" else _outcome(rng),
        target_type="services.target" if about else "",
        target_id=str(target_pk) if about else "",
        target_label=target_label,
        operation_id=seq if is_operation else None,
        reason=reason,
        data={"replicas": [rng.randrange(1, 5), rng.randrange(1, 5)]},
        ip=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
        user_agent="bench",
        request_id=REQUEST_ID,
        prev_hash=prev_hash,
    )
    event.hash = event.compute_hash()
    return event


def remove_bench_events() -> None:
    """Remove the rows of this bench (all events from its first one on, including what the
    bench's own requests recorded) and put the chain head back on the event before them."""
    first = (
        AuditEvent.objects.filter(request_id=REQUEST_ID)
        .order_by("seq")
        .values_list("seq", "prev_hash")
        .first()
    )
    if first is None:
        return
    seq, prev_hash = first
    with transaction.atomic(), connection.cursor() as cursor:
        # Superuser only: skips the append-only triggers for this transaction alone.
        cursor.execute("SET LOCAL session_replication_role = replica")
        if seq == 1:
            cursor.execute("TRUNCATE audit_auditevent")
        else:
            cursor.execute("DELETE FROM audit_auditevent WHERE seq >= %s", [seq])
        AuditChainHead.objects.filter(pk=1).update(seq=seq - 1, last_hash=prev_hash)
    Operation.objects.filter(status_text=REQUEST_ID).delete()
    remove_catalog()


def load_events(count: int, catalog: Catalog) -> float:
    """Append ``count`` chained events after the chain's head; seconds it took."""
    started = time.perf_counter()
    rng = random.Random(8)
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().get(pk=1)
        first, prev_hash = head.seq + 1, head.last_hash
        now = timezone.now()
        last = first + count - 1
        with connection.cursor() as cursor:
            copy_sql = f"COPY audit_auditevent ({', '.join(COLUMNS)}) FROM STDIN"
            with cursor.cursor.copy(copy_sql) as copy:
                for seq in range(first, last + 1):
                    event = _event(seq, prev_hash, now, last, rng, catalog)
                    copy.write_row(
                        [
                            json.dumps(event.data) if name == "data" else getattr(event, name)
                            for name in COLUMNS
                        ]
                    )
                    prev_hash = event.hash
        head.seq, head.last_hash = last, prev_hash
        head.save(update_fields=["seq", "last_hash"])
    with connection.cursor() as cursor:
        # What autovacuum does to an insert-only table (PostgreSQL 13+): statistics, and its
        # pages marked all-visible, which the index-only scans of the kind filter rely on.
        cursor.execute("VACUUM ANALYZE audit_auditevent")
    return time.perf_counter() - started


def load_operations(requested_by: Any) -> None:
    """Operation rows under the operation ids of the bench's operation events (marked by
    their status text): RESTORE_KIND for one in RESTORE_EVERY, COMMON_KIND for
    KIND_IDS_INLINE of the others, evenly spread."""
    events = AuditEvent.objects.filter(request_id=REQUEST_ID, operation_id__isnull=False)
    ids = events.order_by("seq").values_list("operation_id", flat=True)
    common_every = events.count() // KIND_IDS_INLINE + 1
    now = timezone.now()

    def operation(operation_id: int | None, kind: str) -> Operation:
        return Operation(
            pk=operation_id,
            kind=kind,
            target_type="backups.target",
            target_id="1",
            target_label="orders",
            target_key=f"bench-audit:{operation_id}",
            params={},
            params_hash="0" * 64,
            requested_by=requested_by,
            state="succeeded",
            status_text=REQUEST_ID,
            created_at=now,
        )

    operations = [
        operation(operation_id, RESTORE_KIND)
        if number % RESTORE_EVERY == 0
        else operation(operation_id, COMMON_KIND)
        for number, operation_id in enumerate(ids.iterator(chunk_size=10_000))
        if number % RESTORE_EVERY == 0 or number % common_every == 1
    ]
    Operation.objects.bulk_create(operations, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE operations_operation")


def _deep_cursor(query: dict[str, Any]) -> int:
    """The cursor of the page 90 % of the way down the events ``query`` matches."""
    events = AuditEvent.objects.filter(**query).order_by("-seq")
    depth = max(PAGE_SIZE, int(events.count() * 0.9))
    seq = events.values_list("seq", flat=True)[depth : depth + 1].first()
    return int(seq or 1)


def _deep_scope_cursor(query: str) -> int:
    """The cursor of the page 90 % of the way down what the page's own filter matches."""
    from django.http import QueryDict

    from apps.audit.filters import read_filters

    events = read_filters(QueryDict(query)).events()
    depth = int(events.count() * 0.9)
    seq = events.values_list("seq", flat=True)[depth : depth + 1].first()
    return int(seq or 1)


def pages_for(catalog: Catalog) -> list[Page]:
    actor = ACTORS[7]
    one_service = f"service={CATALOG_PREFIX}042"
    one_environment = f"environment={CATALOG_PREFIX}production"
    rare = f"service={RARE_SERVICE}"
    both = f"{one_service}&{one_environment}"
    denied = _deep_cursor({"outcome": "denied"})
    by_actor = _deep_cursor({"actor_label": actor})
    operations = _deep_cursor({"action__startswith": "operation."})
    searched = _deep_cursor({"reason__icontains": SEARCH_WORD})
    restores = Operation.objects.filter(kind=RESTORE_KIND).values("pk")
    restored = _deep_cursor({"operation_id__in": restores})
    commons = Operation.objects.filter(kind=COMMON_KIND).values("pk")
    common = _deep_cursor({"operation_id__in": commons})
    week_end = (timezone.localdate() - timedelta(days=120)).isoformat()
    week_start = (timezone.localdate() - timedelta(days=126)).isoformat()
    return [
        Page("no filter, first page", ""),
        Page("outcome=denied, first page", "outcome=denied"),
        Page("outcome=denied, deep cursor", f"outcome=denied&before={denied}"),
        Page(f"actor={actor}, first page", f"actor={actor}"),
        Page(f"actor={actor}, deep cursor", f"actor={actor}&before={by_actor}"),
        Page("action=operation., deep cursor", f"action=operation.&before={operations}"),
        Page("actor + outcome=failed", f"actor={actor}&outcome=failed"),
        Page(
            "one target (services page link)",
            f"target_type=services.target&target_id={catalog.targets[42][0]}",
        ),
        Page("service=one of 100, first page", one_service),
        Page(
            "service=one of 100, deep cursor",
            f"{one_service}&before={_deep_scope_cursor(one_service)}",
        ),
        Page("environment=production, first page", one_environment),
        Page(
            "environment=production, deep cursor",
            f"{one_environment}&before={_deep_scope_cursor(one_environment)}",
        ),
        Page("service + environment, deep cursor", f"{both}&before={_deep_scope_cursor(both)}"),
        Page("service=rare (1 in 10,000), first page", rare),
        Page("service=rare, deep cursor", f"{rare}&before={_deep_scope_cursor(rare)}"),
        Page("service + actor + outcome=failed", f"{one_service}&actor={actor}&outcome=failed"),
        Page("one week, 4 months ago", f"since={week_start}&until={week_end}"),
        Page(f"kind={RESTORE_KIND}, first page", f"kind={RESTORE_KIND}"),
        Page(f"kind={RESTORE_KIND}, deep cursor", f"kind={RESTORE_KIND}&before={restored}"),
        Page(f"kind={COMMON_KIND} (common), first page", f"kind={COMMON_KIND}"),
        Page(f"kind={COMMON_KIND}, deep cursor", f"kind={COMMON_KIND}&before={common}"),
        Page(
            f"actor + kind={RESTORE_KIND} + one week",
            f"actor={actor}&kind={RESTORE_KIND}&since={week_start}&until={week_end}",
        ),
        Page(f"q={SEARCH_WORD}, first page", f"q={SEARCH_WORD}", search=True),
        Page(f"q={SEARCH_WORD}, deep cursor", f"q={SEARCH_WORD}&before={searched}", search=True),
        Page("q=<absent word>", "q=nowhere-to-be-found", search=True),
        Page("q=sale (in 20 %)", "q=sale", search=True),
    ]


def measure_page(client: Client, page: Page, requests: int) -> PageResult:
    url = reverse("audit:list") + (f"?{page.query}" if page.query else "")
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
        rows_shown = max(0, response.content.count(b"<tr>") - 1)
    return PageResult(page, seconds, counts, rows_shown)


def _maxrss_mib() -> float:
    """This process's peak resident memory. VmHWM on Linux: ru_maxrss would carry over the
    peak of the process that started this one (Linux keeps it across exec)."""
    status = Path("/proc/self/status")
    if status.exists() and (peak_mib := procfs.peak_mib(status.read_text())) is not None:
        return peak_mib
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def export_in_this_process(username: str) -> dict[str, Any]:
    """The child's side: GET /audit/export.csv and read it to the end without keeping it."""
    client = signed_in_client(get_user_model().objects.get(username=username))
    baseline = _maxrss_mib()
    started = time.perf_counter()
    response = client.get(reverse("audit:export-csv"))
    size = lines = 0
    first_line = b""
    for piece in response.streaming_content:  # type: ignore[attr-defined]
        if not first_line:
            first_line = bytes(piece).split(b"\n", 1)[0]
        size += len(piece)
        lines += piece.count(b"\n")
    seconds = time.perf_counter() - started
    header = json.loads(first_line[2:].decode()) if first_line.startswith(b"# ") else {}
    return {
        "seconds": seconds,
        # Two lines of header; a reason or data with a newline would add lines, none here.
        "rows": lines - 2,
        "bytes": size,
        "peak_mib": _maxrss_mib(),
        "baseline_mib": baseline,
        "header": header,
    }


# The child configures Django before importing this module, which imports models.
CHILD = """
import json, os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
django.setup()
from bench.audit import export_in_this_process
print(json.dumps(export_in_this_process(sys.argv[1])))
"""


def measure_export(username: str) -> ExportResult:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, username],
        check=True,
        capture_output=True,
        text=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return ExportResult(
        seconds=found["seconds"],
        rows=found["rows"],
        megabytes=found["bytes"] / 1e6,
        peak_mib=found["peak_mib"],
        baseline_mib=found["baseline_mib"],
        header=found["header"],
    )


def measure(client: Client, requests: int, events: int = EVENTS) -> AuditResults:
    """Load ``events`` events, measure the pages and the export, remove the events again."""
    username = get_user_model().objects.get(pk=client.session["_auth_user_id"]).get_username()
    remove_bench_events()
    try:
        catalog = load_catalog()
        results = AuditResults(events, load_events(events, catalog))
        load_operations(get_user_model().objects.get(username=username))
        for page in pages_for(catalog):
            results.pages.append(measure_page(client, page, requests))
        results.export = measure_export(username)
    finally:
        remove_bench_events()
    return results


def render(results: AuditResults) -> str:
    rows = [
        [
            result.page.label,
            result.rows_shown,
            ms(percentile(result.seconds, 50)),
            ms(percentile(result.seconds, 95)),
            ms(max(result.seconds)),
            "/".join(str(count) for count in sorted(result.query_counts)),
            f"< {ms(result.target)}: {verdict(percentile(result.seconds, 95) < result.target)}",
        ]
        for result in results.pages
    ]
    requests = len(results.pages[0].seconds) if results.pages else 0
    pages = [result for result in results.pages if not result.page.search]
    searches = [result for result in results.pages if result.page.search]
    lines = [
        heading(
            f"5. Audit history: GET /audit/ and /audit/export.csv at {results.events:,} events"
        ),
        f"  {requests} requests per line after {WARM_UP_REQUESTS} unmeasured, in-process test "
        "client; events COPYed with a valid hash chain",
        f"  in {results.load_seconds:.1f} s, then VACUUM ANALYZEd; 1 % denied, 3 % failed, "
        f'50 actors, "{SEARCH_WORD}" in 0.5 % of the reasons.',
        "",
        table(["page", "rows", "p50", "p95", "max", "queries", "target"], rows),
        "",
    ]
    for label, group, target in (
        ("filtered pages", pages, TARGET_PAGE_P95_SECONDS),
        ("free-text search", searches, TARGET_SEARCH_P95_SECONDS),
    ):
        if group:
            worst = max(group, key=lambda result: percentile(result.seconds, 95))
            p95 = percentile(worst.seconds, 95)
            lines.append(
                f"  {label}: target p95 < {ms(target)}: {verdict(p95 < target)} "
                f"(worst p95 {ms(p95)}: {worst.page.label})"
            )
    export = results.export
    if export is not None:
        lines += [
            "",
            f"  CSV export of every event through the view, in a child process: {export.rows:,} "
            f"rows, {export.megabytes:,.0f} MB in {export.seconds:.1f} s",
            f"    target < {TARGET_EXPORT_SECONDS:.0f} s: "
            f"{verdict(export.seconds < TARGET_EXPORT_SECONDS)}",
            f"    peak memory of the exporting process {export.peak_mib:.1f} MiB "
            f"(of which {export.baseline_mib:.1f} MiB before the request): "
            f"target < {TARGET_EXPORT_MIB:.0f} MiB: {verdict(export.peak_mib < TARGET_EXPORT_MIB)}",
            f"    header: newest event #{export.header.get('last_seq')} "
            f"hash {str(export.header.get('last_hash'))[:16]}…",
        ]
    return "\n".join(lines)
