"""The datastore consoles (``--only datastores``):

1. the PostgreSQL console page (``GET /datastores/postgres/<pk>/``) against a throwaway
   PostgreSQL server the bench starts for itself (initdb + pg_ctl in a temporary directory,
   loopback, a free port, ``max_connections = 300``, as scripts/services.sh starts its
   throwaway one), holding 2,000 tables (each with a primary key, so 2,000 indexes too) and
   200 extra connections (half of them idle in a transaction, so that they are listed as
   activity): server time over 20 requests after 2 unmeasured ones, and the SQL queries the
   portal itself makes on its own database;
2. delete by pattern of 100,000 keys among 200,000, on a throwaway redis-server (a free
   loopback port, nothing on disk): the total time, the batches, the longest single command
   timed from the client (Python and the round trip included), and each command's duration
   as the server measured it: the slowlog logs every command for the run
   (``slowlog-log-slower-than 0``, a long enough ``slowlog-max-len``, ``SLOWLOG RESET``
   before; the previous values are restored after), and the SCAN and UNLINK entries of the
   deleting client give the max and p99 in µs.

Targets: the page under 300 ms at p95; the longest Redis command (on the server) under 10 ms.
Both throwaway servers are stopped and their directories removed at the end; the target rows
are removed from the portal's database.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis
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
MAX_CONNECTIONS = 300
REQUESTS = 20
PAGE_TARGET_SECONDS = 0.300
KEYS = 100_000
OTHER_KEYS = 100_000
COMMAND_TARGET_MS = 10.0
NAME = "bench-datastores"
DELETE_CLIENT = "opsportal-bench-delete"
# Every command of the run must stay in the slowlog: SCANs and UNLINKs of 100,000 keys by
# batches of about a thousand are a few hundred entries.
SLOWLOG_LENGTH = 100_000


@dataclass(frozen=True)
class Result:
    tables: int
    connections: int
    max_connections: int
    page_seconds: list[float]
    page_queries: set[int]
    page_ok: bool
    deleted: int
    delete_seconds: float
    batches: int
    calls: int
    slowest_call_ms: float
    smallest_count: int
    server_logged: list[tuple[int, str]]  # (µs, command) of each SCAN and UNLINK

    @property
    def server_micros(self) -> list[int]:
        return [micros for micros, _ in self.server_logged]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- a throwaway PostgreSQL server --------------------------------------------------------------


def _pg_bin() -> Path:
    """The newest versioned bin directory with initdb and pg_ctl (Debian keeps them off PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]), reverse=True
    )
    for directory in [*found, os.path.dirname(shutil.which("initdb") or "")]:
        if directory and os.access(Path(directory) / "initdb", os.X_OK):
            return Path(directory)
    raise RuntimeError("bench: no initdb/pg_ctl on this machine (apt-get install postgresql)")


def _as_owner(*command: str | Path) -> list[str]:
    """initdb refuses to run as root: as root, run as the postgres system user."""
    argv = [str(part) for part in command]
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(what: str, argv: list[str]) -> None:
    """An argument list (never a shell), from / (the postgres user may not enter the working
    directory); its own error output when it fails."""
    done = subprocess.run(argv, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode:
        raise RuntimeError(f"bench: {what} failed: {done.stderr.decode(errors='replace')}")


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[dict[str, Any]]:
    """A PostgreSQL server of its own for the bench, with room for 200 more connections than
    a default server; its connection arguments. Stopped and removed on the way out."""
    bindir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="opsportal-bench-pg."))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    started = False
    try:
        _run(
            "initdb",
            _as_owner(bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust")
            + ["-E", "UTF8", "--no-locale", "-N"],
        )
        settings = (
            "\n# --- bench/datastores.py (throwaway) ---\n"
            f"listen_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{data}'\nmax_connections = {MAX_CONNECTIONS}\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(settings)
        started = True  # from here on, stop it on the way out (pg_ctl stop of none is harmless)
        _run(
            "pg_ctl start",
            _as_owner(bindir / "pg_ctl", "start", "-w", "-t", "60", "-D", data)
            + ["-l", str(root / "postgres.log")],
        )
        yield {"host": "127.0.0.1", "port": port, "user": "postgres", "password": None}
    finally:
        if started:
            subprocess.run(
                _as_owner(bindir / "pg_ctl", "stop", "-D", data, "-m", "fast", "-w"),
                cwd="/",
                check=False,
                stdout=subprocess.DEVNULL,
            )
        shutil.rmtree(root, ignore_errors=True)


def _tables(server: dict[str, Any], database: str) -> None:
    """The tables in batches: one transaction for 2,000 would need more lock slots than a
    default server has."""
    with psycopg.connect(**server, dbname=database, autocommit=True) as pg:
        pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        for start in range(0, TABLES, 200):
            with pg.transaction():
                for number in range(start, start + 200):
                    table = sql.Identifier(SCHEMA, f"t{number:04d}")
                    pg.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY)").format(table))
        pg.execute("ANALYZE")


def _open_connections(server: dict[str, Any], database: str) -> list[psycopg.Connection]:
    opened: list[psycopg.Connection] = []
    for number in range(WANTED_CONNECTIONS):
        session = psycopg.connect(**server, dbname=database, application_name=f"bench-{number}")
        if number % 2:
            session.execute("SELECT 1")  # idle in transaction from now on
        else:
            session.commit()
        opened.append(session)
    return opened


def _clean_targets() -> None:
    DatabaseTarget.objects.filter(name=NAME).delete()
    BackupStorage.objects.filter(name=NAME).delete()


def measure_console(client: Client) -> tuple[int, int, list[float], set[int], bool]:
    _clean_targets()
    with throwaway_postgres() as server:
        database = "postgres"
        _tables(server, database)
        storage = BackupStorage.objects.create(name=NAME, kind="local", directory="/tmp")
        target = DatabaseTarget(
            name=NAME,
            host=server["host"],
            port=server["port"],
            database=database,
            user=server["user"],
            storage=storage,
        )
        target.save()
        sessions = _open_connections(server, database)
        try:
            with psycopg.connect(**server, dbname=database) as pg:
                row = pg.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                ).fetchone()
                connections = int(row[0]) - 1 if row else 0  # not this one
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
            return connections, MAX_CONNECTIONS, seconds, queries, ok
        finally:
            for session in sessions:
                session.close()
            _clean_targets()


# --- a throwaway Redis server -------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_redis() -> Iterator[redis.Redis]:
    """A redis-server of its own on a free loopback port, nothing kept on disk (as
    scripts/services.sh starts one), so that its slowlog holds the bench's commands only."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("bench: no redis-server on this machine (apt-get install redis-server)")
    directory = tempfile.mkdtemp(prefix="opsportal-bench-redis.")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, decode_responses=True, client_name=DELETE_CLIENT)
    try:
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def every_command_logged(client: redis.Redis) -> Iterator[None]:
    """The server logs every command's duration while inside; its previous slowlog settings
    are put back after."""
    names = ("slowlog-log-slower-than", "slowlog-max-len")
    before = {name: str(client.config_get(name)[name]) for name in names}
    client.config_set("slowlog-max-len", SLOWLOG_LENGTH)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    try:
        yield
    finally:
        for name, value in before.items():
            client.config_set(name, value)


def _fill(client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=False)
    for prefix, count in (("doomed", KEYS), ("kept", OTHER_KEYS)):
        for number in range(count):
            pipe.set(f"bench:{prefix}:{number}", "x")
            if number % 10_000 == 9_999:
                pipe.execute()
    pipe.execute()


def _text(value: Any) -> str:
    # redis-py leaves the slowlog's command and client name as bytes even when decoding.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def measure_delete() -> tuple[int, float, int, int, float, int, list[tuple[int, str]]]:
    with throwaway_redis() as client:
        _fill(client)
        with every_command_logged(client):
            started = time.perf_counter()
            outcome = delete_pattern(client, "bench:doomed:*")
            seconds = time.perf_counter() - started
            entries = client.slowlog_get(SLOWLOG_LENGTH)
        assert client.dbsize() == OTHER_KEYS, "delete by pattern left or took the wrong keys"
    logged = [
        (int(entry["duration"]), _describe(_text(entry["command"])))
        for entry in entries
        if _text(entry.get("client_name")) == DELETE_CLIENT
        and _text(entry["command"]).split(" ", 1)[0].upper() in ("SCAN", "UNLINK")
    ]
    return (
        outcome.deleted,
        seconds,
        outcome.batches,
        outcome.calls,
        outcome.slowest_call_ms,
        outcome.smallest_count,
        logged,
    )


def _describe(command: str) -> str:
    """A SCAN as it was sent; an UNLINK by its number of keys (the slowlog keeps 32 args)."""
    words = command.split(" ")
    if words[0].upper() != "UNLINK":
        return command
    more = re.search(r"\.\.\. \((\d+) more arguments\)$", command)
    if more is None:
        return f"UNLINK of {len(words) - 1} keys"
    return f"UNLINK of {len(words) - 5 + int(more.group(1))} keys"


def measure(client: Client) -> Result:
    connections, max_connections, seconds, queries, ok = measure_console(client)
    deleted, delete_seconds, batches, calls, slowest, smallest, logged = measure_delete()
    return Result(
        TABLES,
        connections,
        max_connections,
        seconds,
        queries,
        ok,
        deleted,
        delete_seconds,
        batches,
        calls,
        slowest,
        smallest,
        logged,
    )


def render(result: Result) -> str:
    p95 = percentile(result.page_seconds, 95)
    server_max_ms = max(result.server_micros, default=0) / 1000
    lines = [
        heading("Datastore consoles"),
        f"  PostgreSQL console against a throwaway server (max_connections "
        f"{result.max_connections}) with {result.tables} extra tables and "
        f"{result.connections} other client connections (asked for {WANTED_CONNECTIONS})",
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
        f"  Delete by pattern on a throwaway redis-server: {result.deleted} keys of "
        f"{KEYS + OTHER_KEYS} in {result.delete_seconds:.2f} s, {result.batches} UNLINK "
        f"batches, {result.calls} commands (SCAN + UNLINK)",
    ]
    if result.server_micros:
        lines += [
            f"  server-side duration of those commands (SLOWLOG, all {len(result.server_micros)} "
            f"logged): max {max(result.server_micros)} µs, "
            f"p99 {percentile(result.server_micros, 99)} µs, "
            f"median {percentile(result.server_micros, 50)} µs",
            f"  target longest command < {COMMAND_TARGET_MS:.0f} ms on the server: "
            f"{verdict(server_max_ms < COMMAND_TARGET_MS)} ("
            f"{sum(m > COMMAND_TARGET_MS * 1000 for m in result.server_micros)} over it); "
            f"smallest SCAN COUNT used: {result.smallest_count}",
            "  slowest on the server:"
            + "".join(
                f"\n    {micros} µs {command}"
                for micros, command in sorted(result.server_logged, reverse=True)[:3]
            ),
        ]
    else:
        lines.append("  server-side durations: NONE logged (the slowlog did not record the run)")
    lines.append(
        f"  longest single command timed from the client (Python and the round trip "
        f"included): {result.slowest_call_ms:.2f} ms"
    )
    return "\n".join(lines)
