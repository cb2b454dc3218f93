"""``python -m bench``: every benchmark of OpsPortal, printed as tables on stdout.

1. dispatch latency (``bench.dispatch``): POST of an action → operation running on a real
   Celery worker, over 200 operations on the Redis broker;
2. the operations list (``bench.operations_list``): server time and SQL queries at 100 and at
   10,000 operations;
3. the services dashboard (``bench.dashboard``): server time and SQL queries at 30 and 300
   services in 2 environments;
4. one health probe cycle over 600 targets (``bench.probes``) against a local HTTP server;
5. the audit history (``bench.audit``) with 1,000,000 events: filtered pages at the first and a
   deep cursor, free-text search, and a CSV export of all of them (time and peak memory);

then the peak memory of this process and the run time. Run it through ``make bench`` (which
runs ``scripts/bench.sh``): it must not run against a database that matters, since it empties
the operations table at the start, between the two parts and at the end.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import time
from pathlib import Path

import django


def _peak_memory_mib() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


BENCHMARKS = [
    "dispatch",
    "list",
    "dashboard",
    "probes",
    "audit",
    "incidents",
    "maintenance",
    "datastores",
    "metrics",
    "runbooks",
    "backups",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--operations", type=int, default=200, help="for dispatch latency")
    parser.add_argument("--requests", type=int, default=50, help="per page of the list")
    parser.add_argument(
        "--only",
        choices=BENCHMARKS,
        help="run one benchmark",
    )
    parser.add_argument("--backup-mb", type=int, default=1024, help="size of the backups' database")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    django.setup()
    # After django.setup(): these import models.
    from django.conf import settings
    from django.db import connection

    from bench import audit, dashboard, dispatch, incidents, operations_list, probes
    from bench.fixtures import bench_operator, empty_operations_table, signed_in_client
    from tests.support.worker import Worker

    # As opsportal/wsgi.py does in every web process.
    gc.freeze()

    if connection.vendor != "postgresql":
        print("bench: needs PostgreSQL (run it with `make bench`)", file=sys.stderr)
        return 2
    began = time.perf_counter()
    db = connection.settings_dict
    print(
        f"OpsPortal benchmarks, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
        f"  PostgreSQL database {db['NAME']} on {db['HOST']}:{db['PORT']}, broker "
        f"{settings.CELERY_BROKER_URL} (queue {settings.CELERY_TASK_DEFAULT_QUEUE})\n"
        f"  Python {platform.python_version()}, Django {django.get_version()}, "
        f"{os.cpu_count()} CPUs, DEBUG={settings.DEBUG}",
        flush=True,
    )

    empty_operations_table()
    operator = bench_operator()
    client = signed_in_client(operator)

    if args.only in (None, "dispatch"):
        worker = Worker(name="bench@localhost", log_dir=Path(settings.VAR_DIR) / "bench")
        try:
            worker.start()
            result = dispatch.measure(client, args.operations, worker.name)
        except Exception:
            print(f"bench: dispatch failed; worker log tail:\n{worker.log_tail()}", file=sys.stderr)
            raise
        finally:
            worker.stop()
        print(dispatch.render(result), flush=True)

    if args.only in (None, "list"):
        results, loads = operations_list.measure(client, operator, args.requests)
        print(operations_list.render(results, loads, args.requests), flush=True)

    if args.only in (None, "dashboard"):
        dashboard_results = dashboard.measure(client, operator, args.requests)
        print(dashboard.render(dashboard_results, args.requests), flush=True)

    if args.only in (None, "probes"):
        print(probes.render(probes.measure()), flush=True)

    if args.only in (None, "audit"):
        print(audit.render(audit.measure(client, args.requests)), flush=True)

    if args.only in (None, "incidents"):
        incident_result = incidents.measure(client, operator, args.requests)
        print(incidents.render(incident_result, args.requests), flush=True)
    if args.only in (None, "maintenance"):
        from bench import maintenance

        print(maintenance.render(maintenance.measure(operator)), flush=True)
    if args.only in (None, "datastores"):
        from bench import datastores

        print(datastores.render(datastores.measure(client)), flush=True)

    if args.only in (None, "metrics"):
        from bench import metrics

        print(metrics.render(metrics.measure(client, operator)), flush=True)
    if args.only in (None, "runbooks"):
        from bench import runbooks

        print(runbooks.render(runbooks.measure(client, operator)), flush=True)
    if args.only in (None, "backups"):
        from bench import backups

        print(backups.render(backups.measure(operator, args.backup_mb)), flush=True)

    empty_operations_table()
    print(
        f"\nPeak memory of the bench process (maxrss): {_peak_memory_mib():.1f} MiB\n"
        f"Run time of python -m bench: {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
