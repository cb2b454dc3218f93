"""The datastore consoles (``--only datastores``):

1. the PostgreSQL console page (``GET /datastores/postgres/<pk>/``) against the bench's own
   database with 2,000 extra tables (each with a primary key, so 2,000 indexes too) in a
   schema ``bench_datastores`` and as many extra connections as the server allows (up to
   200; half of them idle in a transaction, so that they are listed as activity): server time
   over 20 requests after 2 unmeasured ones, and the SQL queries the portal itself makes;
2. delete by pattern of 100,000 keys among 200,000 in a database number of its own (12) of
   REDIS_URL: the total time, the batches, the longest single Redis command timed from the
   client, and the server's SLOWLOG entries (over 10 ms by default) made during the run.

Targets: the page under 300 ms at p95; the longest Redis command under 10 ms. The schema,
the connections, the target rows and the Redis database are removed at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from psycopg import sql

from apps.backups.models import BackupStorage, DatabaseTarget
from apps.datastores.redis_client import delete_pattern
from bench.report import heading, ms, percentile, table, verdict

TABLES = 2000
SCHEMA = "bench_datastores"
WANTED_CONNECTIONS = 200
REQUESTS = 20
PAGE_TARGET_SECONDS = 0.300
KEYS = 100_000
OTHER_KEYS = 100_000
REDIS_DB = 12
COMMAND_TARGET_MS = 10.0
NAME = "bench-datastores"


@dataclass(frozen=True)
class Result:
    tables: int
    connections: int
    page_seconds: list[float]
    page_queries: set[int]
    page_ok: bool
    deleted: int
    delete_seconds: float
    batches: int
    slowest_call_ms: float
    slowlog_entries: list[tuple[int, str]]


def _server(database: str) -> dict[str, Any]:
    db = connection.settings_dict
    return {
        "host": db.get("HOST") or "127.0.0.1",
        "port": int(db.get("PORT") or 5432),
        "user": db.get("USER") or "postgres",
        "password": db.get("PASSWORD") or None,
        "dbname": database,
    }


def _tables(action: str) -> None:
    """Create or drop the tables in batches: one transaction for 2,000 would need more lock
    slots than a default server has."""
    with psycopg.connect(**_server(connection.settings_dict["NAME"]), autocommit=True) as pg:
        if action == "create":
            pg.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        for start in range(0, TABLES, 200):
            with pg.transaction():
                for number in range(start, start + 200):
                    table = sql.Identifier(SCHEMA, f"t{number:04d}")
                    if action == "create":
                        pg.execute(
                            sql.SQL(
                                "CREATE TABLE IF NOT EXISTS {} (id integer PRIMARY KEY)"
                            ).format(table)
                        )
                    else:
                        pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        if action == "drop":
            pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


def _open_connections() -> list[psycopg.Connection]:
    database = connection.settings_dict["NAME"]
    with psycopg.connect(**_server(database), autocommit=True) as pg:
        row = pg.execute(
            "SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity"
        ).fetchone()
    # Leave room for the portal, the console and everyone else on this server.
    room = max(0, int(row[0]) - 15) if row else 0
    opened: list[psycopg.Connection] = []
    for number in range(min(WANTED_CONNECTIONS, room)):
        session = psycopg.connect(**_server(database), application_name=f"bench-{number}")
        if number % 2:
            session.execute("SELECT 1")  # idle in transaction from now on
        else:
            session.commit()
        opened.append(session)
    return opened


def _clean_targets() -> None:
    DatabaseTarget.objects.filter(name=NAME).delete()
    BackupStorage.objects.filter(name=NAME).delete()


def measure_console(client: Client) -> tuple[int, list[float], set[int], bool]:
    _clean_targets()
    db = _server(connection.settings_dict["NAME"])
    storage = BackupStorage.objects.create(name=NAME, kind="local", directory="/tmp")
    target = DatabaseTarget(
        name=NAME,
        host=db["host"],
        port=db["port"],
        database=db["dbname"],
        user=db["user"],
        storage=storage,
    )
    target.set_password(db["password"] or "")
    target.save()
    _tables("create")
    sessions = _open_connections()
    try:
        url = reverse("datastores:postgres", args=[target.pk])
        ok = True
        for _ in range(2):
            client.get(url)
        seconds: list[float] = []
        queries: set[int] = set()
        for _ in range(REQUESTS):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url)
                seconds.append(time.perf_counter() - started)
            queries.add(len(captured))
            ok = ok and response.status_code == 200 and b"Unreachable." not in response.content
        return len(sessions), seconds, queries, ok
    finally:
        for session in sessions:
            session.close()
        _tables("drop")
        _clean_targets()


def measure_delete() -> tuple[int, float, int, float, list[tuple[int, str]]]:
    parts = urlsplit(settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    client = redis.Redis(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=REDIS_DB,
        password=parts.password,
        decode_responses=True,
    )
    client.flushdb(asynchronous=True)
    try:
        pipe = client.pipeline(transaction=False)
        for number in range(KEYS):
            pipe.set(f"bench:doomed:{number}", "x")
            if number % 10_000 == 9_999:
                pipe.execute()
        for number in range(OTHER_KEYS):
            pipe.set(f"bench:kept:{number}", "x")
            if number % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        threshold = client.config_get("slowlog-log-slower-than").get("slowlog-log-slower-than")
        newest = client.slowlog_get(1)
        since = newest[0]["id"] if newest else -1
        started = time.perf_counter()
        outcome = delete_pattern(client, "bench:doomed:*")
        seconds = time.perf_counter() - started
        slow = [
            (int(entry["duration"]), str(entry["command"])[:60])
            for entry in client.slowlog_get(128)
            if entry["id"] > since
        ]
        assert client.dbsize() == OTHER_KEYS, "delete by pattern left or took the wrong keys"
        slow.insert(0, (int(threshold or -1), "(the server's slowlog threshold, µs)"))
        return outcome.deleted, seconds, outcome.batches, outcome.slowest_call_ms, slow
    finally:
        client.flushdb(asynchronous=True)
        client.close()


def measure(client: Client) -> Result:
    connections, seconds, queries, ok = measure_console(client)
    deleted, delete_seconds, batches, slowest, slowlog = measure_delete()
    return Result(
        TABLES,
        connections,
        seconds,
        queries,
        ok,
        deleted,
        delete_seconds,
        batches,
        slowest,
        slowlog,
    )


def render(result: Result) -> str:
    p95 = percentile(result.page_seconds, 95)
    lines = [
        heading("Datastore consoles"),
        f"  PostgreSQL console with {result.tables} extra tables and {result.connections} extra "
        f"connections (asked for {WANTED_CONNECTIONS}; the server's max_connections limits it)",
        table(
            ["", "median", "p95", "max", "portal SQL queries", "rendered"],
            [
                [
                    "console page",
                    ms(percentile(result.page_seconds, 50)),
                    ms(p95),
                    ms(max(result.page_seconds)),
                    ", ".join(str(n) for n in sorted(result.page_queries)),
                    "yes" if result.page_ok else "NO (unreachable?)",
                ]
            ],
        ),
        f"  target p95 < {ms(PAGE_TARGET_SECONDS)}: {verdict(p95 < PAGE_TARGET_SECONDS)}",
        f"  Delete by pattern: {result.deleted} keys of {KEYS + OTHER_KEYS} in "
        f"{result.delete_seconds:.2f} s, {result.batches} batches (SCAN COUNT 1000 + UNLINK)",
        f"  longest single command (client-timed, round trip): {result.slowest_call_ms:.2f} ms; "
        f"target < {COMMAND_TARGET_MS:.0f} ms: "
        f"{verdict(result.slowest_call_ms < COMMAND_TARGET_MS)}",
        f"  server SLOWLOG entries during the run (commands slower than "
        f"{result.slowlog_entries[0][0]} µs on the server): {len(result.slowlog_entries) - 1}"
        + "".join(f"\n    {micros} µs {command}" for micros, command in result.slowlog_entries[1:]),
    ]
    return "\n".join(lines)
