"""The PostgreSQL console: the runbooks' psql checks as one read-only snapshot of a server,
and the few statements of its operations (cancel, terminate, VACUUM).

Every connection says who it is (application_name ``opsportal-console``, so that people
looking at pg_stat_activity know, and so that the portal never terminates itself), and every
read runs in a READ ONLY transaction with a statement timeout: a console on a struggling
server must neither write nor wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.rows import dict_row

from apps.backups.models import DatabaseTarget
from apps.backups.postgres import (
    CONNECT_TIMEOUT_SECONDS,
    DatabaseProblem,
    describe_connection_error,
)

APPLICATION_NAME = "opsportal-console"
# Every console statement stops here: a page must come back even from a server in trouble.
STATEMENT_TIMEOUT_MS = 3000
WARNING_PERCENT = 80
CRITICAL_PERCENT = 95
LONG_QUERY = timedelta(minutes=5)
ROWS_SHOWN = 15
ACTIVITY_SHOWN = 100


def connect(target: DatabaseTarget, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A connection to the target as the console; DatabaseProblem (in words) otherwise."""
    try:
        return psycopg.connect(
            host=target.host,
            port=target.port,
            dbname=target.database,
            user=target.user,
            password=target.password() or None,
            sslmode=target.ssl_mode,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=APPLICATION_NAME,
            autocommit=autocommit,
            row_factory=dict_row,  # type: ignore[arg-type]
        )
    except psycopg.Error as exc:
        raise DatabaseProblem(describe_connection_error(target, exc)) from None


def begin_read_only(connection: psycopg.Connection[Any], timeout_ms: int) -> None:
    """Make the connection's transaction READ ONLY with a statement timeout (SET LOCAL: both
    end with the transaction)."""
    connection.read_only = True
    connection.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout_ms))


@dataclass
class Snapshot:
    """What the console shows of one server, read in one transaction."""

    version: str = ""
    database: str = ""
    own_pid: int = 0
    in_recovery: bool = False
    max_connections: int = 0
    connections: int = 0
    activity: list[dict[str, Any]] = field(default_factory=list)
    blocking: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    indexes: list[dict[str, Any]] = field(default_factory=list)
    unused_indexes: list[dict[str, Any]] = field(default_factory=list)
    statements: list[dict[str, Any]] = field(default_factory=list)
    statements_note: str = ""
    replicas: list[dict[str, Any]] = field(default_factory=list)
    replay_lag: timedelta | None = None
    vacuums: list[dict[str, Any]] = field(default_factory=list)
    blocked_count: int = 0  # backends waiting for another's lock (the headline's figure)

    @property
    def connections_percent(self) -> float:
        return 100.0 * self.connections / self.max_connections if self.max_connections else 0.0

    @property
    def connections_state(self) -> str:
        percent = self.connections_percent
        if percent >= CRITICAL_PERCENT:
            return "critical"
        if percent >= WARNING_PERCENT:
            return "warning"
        return "ok"

    @property
    def longest(self) -> dict[str, Any] | None:
        return self.activity[0] if self.activity else None


_SERVER = """
SELECT current_setting('server_version') AS version, current_database() AS database,
       pg_backend_pid() AS own_pid, pg_is_in_recovery() AS in_recovery,
       current_setting('max_connections')::int AS max_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
           AS connections
"""

# Everything not idle (idle in transaction included: that is what holds locks), longest
# first, with the pids each one waits for.
_ACTIVITY_OF = """
SELECT pid, datname, usename, application_name, client_addr::text AS client, state,
       wait_event_type, wait_event, query, backend_type,
       now() - coalesce(query_start, xact_start, backend_start) AS duration,
       now() - xact_start AS xact_duration,
       pg_blocking_pids(pid) AS blocked_by
FROM pg_stat_activity
WHERE state IS NOT NULL AND state <> 'idle' AND pid <> pg_backend_pid() {scope}
ORDER BY coalesce(query_start, xact_start, backend_start) ASC NULLS LAST
LIMIT %s
"""
_ACTIVITY = _ACTIVITY_OF.format(scope="")
# The service page's panel is about its own database, not the server's others.
_ACTIVITY_HERE = _ACTIVITY_OF.format(scope="AND datname = current_database()")

_BLOCKING = """
SELECT blocked.pid AS blocked_pid, blocked.usename AS blocked_user,
       blocked.query AS blocked_query, now() - blocked.query_start AS blocked_for,
       blocker.pid AS blocker_pid, blocker.usename AS blocker_user, blocker.state AS blocker_state,
       blocker.application_name AS blocker_application,
       blocker.query AS blocker_query, now() - blocker.xact_start AS blocker_xact_duration
FROM pg_stat_activity AS blocked
CROSS JOIN LATERAL unnest(pg_blocking_pids(blocked.pid)) AS b(pid)
JOIN pg_stat_activity AS blocker ON blocker.pid = b.pid
ORDER BY blocked.query_start ASC NULLS LAST, blocker.pid
LIMIT %s
"""

_BLOCKED_COUNT_HERE = """
SELECT count(*) AS blocked FROM pg_stat_activity
WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0
"""

# Sizes cost a file lookup per relation and fork: over 2,000 tables and their indexes that
# alone took 400 ms. So candidates are picked from the catalog's page counts (relpages, as of
# the last VACUUM or ANALYZE, which autovacuum keeps recent), and only the candidates get
# their exact size from the files.
_TABLES = """
SELECT schema, name, pg_total_relation_size(oid) AS total_bytes,
       pg_relation_size(oid) AS table_bytes, estimated_rows
FROM (
    SELECT c.oid, n.nspname AS schema, c.relname AS name, c.reltuples::bigint AS estimated_rows
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN (
        SELECT x.indrelid, sum(i.relpages) AS pages
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid GROUP BY x.indrelid
    ) AS idx ON idx.indrelid = c.oid
    WHERE c.relkind IN ('r', 'm', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
    ORDER BY c.relpages + coalesce(idx.pages, 0) DESC, 2, 3
    LIMIT %s
) AS biggest
ORDER BY total_bytes DESC, schema, name
"""

_INDEXES = """
SELECT schema, table_name, name, pg_relation_size(indexrelid) AS bytes, scans
FROM (
    SELECT s.indexrelid, s.schemaname AS schema, s.relname AS table_name,
           s.indexrelname AS name, s.idx_scan AS scans
    FROM pg_stat_user_indexes s JOIN pg_class i ON i.oid = s.indexrelid
    ORDER BY i.relpages DESC, 2, 4
    LIMIT %s
) AS biggest
ORDER BY bytes DESC, schema, name
"""

# Never scanned since the statistics were reset, and not there to enforce a constraint.
_UNUSED_INDEXES = """
SELECT s.schemaname AS schema, s.relname AS table_name, s.indexrelname AS name,
       pg_relation_size(s.indexrelid) AS bytes
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
ORDER BY pg_relation_size(s.indexrelid) DESC, 1, 3
LIMIT %s
"""

_STATEMENTS = """
SELECT query, calls, mean_exec_time AS mean_ms, total_exec_time AS total_ms, rows
FROM pg_stat_statements
ORDER BY mean_exec_time DESC
LIMIT %s
"""

_REPLICAS = """
SELECT application_name, client_addr::text AS client, state, sync_state,
       write_lag, flush_lag, replay_lag,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes
FROM pg_stat_replication
ORDER BY application_name
"""

_VACUUMS = """
SELECT p.pid, p.datname, p.relid::regclass::text AS relation, p.phase,
       p.heap_blks_total, p.heap_blks_scanned, p.heap_blks_vacuumed
FROM pg_stat_progress_vacuum p
ORDER BY p.pid
"""


def _rows(connection: psycopg.Connection[Any], query: str, *params: object) -> list[dict[str, Any]]:
    return list(connection.execute(query, params or None).fetchall())


def read_snapshot(target: DatabaseTarget, timeout_ms: int = STATEMENT_TIMEOUT_MS) -> Snapshot:
    """Every section of the console from one connection, closed after; DatabaseProblem when
    the server cannot be reached or a read fails (its timeout, a permission)."""
    return _reading(target, timeout_ms, _read)


def read_headline(target: DatabaseTarget, timeout_ms: int = STATEMENT_TIMEOUT_MS) -> Snapshot:
    """The figures of the service page's panel, in three cheap queries: the server, the
    connections against the limit, and in this database the longest query (``activity``
    holds it alone) and how many backends wait for a lock (``blocked_count``). Same guards
    as read_snapshot."""
    return _reading(target, timeout_ms, _read_headline)


def _reading(
    target: DatabaseTarget,
    timeout_ms: int,
    reader: Callable[[psycopg.Connection[Any], int], Snapshot],
) -> Snapshot:
    with connect(target) as connection:
        try:
            return reader(connection, timeout_ms)
        except errors.QueryCanceled:
            raise DatabaseProblem(
                f"A console query took longer than its {timeout_ms} ms timeout: the server "
                "is slow or very busy."
            ) from None
        except psycopg.Error as exc:
            raise DatabaseProblem(f"Reading {target.database} failed: {exc}") from None


def _read(connection: psycopg.Connection[Any], timeout_ms: int) -> Snapshot:
    begin_read_only(connection, timeout_ms)
    server = connection.execute(_SERVER).fetchone()
    assert server is not None
    snapshot = Snapshot(**server)
    snapshot.activity = _rows(connection, _ACTIVITY, ACTIVITY_SHOWN)
    for row in snapshot.activity:
        row["is_long"] = row["duration"] is not None and row["duration"] > LONG_QUERY
    snapshot.blocking = _rows(connection, _BLOCKING, ACTIVITY_SHOWN)
    snapshot.tables = _rows(connection, _TABLES, ROWS_SHOWN)
    snapshot.indexes = _rows(connection, _INDEXES, ROWS_SHOWN)
    snapshot.unused_indexes = _rows(connection, _UNUSED_INDEXES, ROWS_SHOWN)
    snapshot.vacuums = _rows(connection, _VACUUMS)
    installed = connection.execute(
        "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
    ).fetchone()
    if installed is None:
        snapshot.statements_note = (
            "pg_stat_statements is not installed in this database: add it to "
            "shared_preload_libraries and run CREATE EXTENSION pg_stat_statements to see "
            "the slowest statements here."
        )
    else:
        try:
            # A savepoint: a view that cannot be read (not preloaded) must not end the rest.
            with connection.transaction():
                snapshot.statements = _rows(connection, _STATEMENTS, ROWS_SHOWN)
        except psycopg.Error as exc:
            snapshot.statements_note = f"pg_stat_statements cannot be read: {exc}".strip()
    if snapshot.in_recovery:
        lag = connection.execute("SELECT now() - pg_last_xact_replay_timestamp() AS lag").fetchone()
        snapshot.replay_lag = lag["lag"] if lag else None
    else:
        snapshot.replicas = _rows(connection, _REPLICAS)
    connection.rollback()
    return snapshot


def _read_headline(connection: psycopg.Connection[Any], timeout_ms: int) -> Snapshot:
    begin_read_only(connection, timeout_ms)
    server = connection.execute(_SERVER).fetchone()
    assert server is not None
    snapshot = Snapshot(**server)
    snapshot.activity = _rows(connection, _ACTIVITY_HERE, 1)
    for row in snapshot.activity:
        row["is_long"] = row["duration"] is not None and row["duration"] > LONG_QUERY
    blocked = connection.execute(_BLOCKED_COUNT_HERE).fetchone()
    snapshot.blocked_count = int(blocked["blocked"]) if blocked else 0
    connection.rollback()
    return snapshot


# --- the operations' statements -------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """One server process, as the confirmation and the audit record show it."""

    pid: int
    datname: str
    usename: str
    application_name: str
    state: str
    query: str
    duration: timedelta | None

    @property
    def is_portal(self) -> bool:
        return self.application_name.startswith("opsportal")

    def describe(self) -> str:
        how_long = f" for {_short(self.duration)}" if self.duration is not None else ""
        return (
            f"pid {self.pid} ({self.usename or '—'} on {self.datname or '—'}, "
            f"{self.application_name or 'no application name'}, {self.state or 'no state'}"
            f"{how_long})"
        )


def _short(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class BackendRefused(Exception):
    """That pid may not be cancelled or terminated by the portal; the message says why."""


def find_backend(connection: psycopg.Connection[Any], pid: int) -> Backend:
    """The backend ``pid`` of the server, or BackendRefused: it does not exist, or it is the
    portal itself (this connection, or any with an ``opsportal`` application name)."""
    row = connection.execute(
        "SELECT pid, coalesce(datname, '') AS datname, coalesce(usename, '') AS usename,"
        " application_name, coalesce(state, '') AS state, coalesce(query, '') AS query,"
        " now() - coalesce(query_start, backend_start) AS duration,"
        " pid = pg_backend_pid() AS is_self "
        "FROM pg_stat_activity WHERE pid = %s",
        (pid,),
    ).fetchone()
    if row is None:
        raise BackendRefused(
            f"There is no backend with pid {pid} on this server (it may have ended already)."
        )
    is_self = row.pop("is_self")
    backend = Backend(**row)
    if is_self or backend.is_portal:
        raise BackendRefused(
            f"pid {pid} is the portal's own connection ({backend.application_name}): "
            "the portal never cancels or terminates itself."
        )
    return backend


def look_up_backend(target: DatabaseTarget, pid: int) -> Backend:
    with connect(target) as connection:
        begin_read_only(connection, STATEMENT_TIMEOUT_MS)
        return find_backend(connection, pid)


def signal_backend(target: DatabaseTarget, pid: int, *, terminate: bool) -> tuple[Backend, bool]:
    """pg_cancel_backend or pg_terminate_backend of ``pid`` after the checks of find_backend;
    whether the server accepted the signal. Terminate waits up to 5 s for the backend to go."""
    with connect(target, autocommit=True) as connection:
        connection.execute(sql.SQL("SET statement_timeout = {}").format(STATEMENT_TIMEOUT_MS * 3))
        backend = find_backend(connection, pid)
        if terminate:
            row = connection.execute("SELECT pg_terminate_backend(%s, 5000) AS ok", (pid,))
        else:
            row = connection.execute("SELECT pg_cancel_backend(%s) AS ok", (pid,))
        result = row.fetchone()
        return backend, bool(result and result["ok"])


class TableRefused(Exception):
    """No such table: the name is refused, never interpolated."""


def find_table(connection: psycopg.Connection[Any], name: str) -> tuple[str, str]:
    """(schema, table) of an existing table named ``name`` (``table`` in the search path, or
    ``schema.table``), matched as a bound parameter; TableRefused otherwise."""
    found = connection.execute(
        "SELECT n.nspname AS schema, c.relname AS name FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'm', 'p') AND ("
        " n.nspname || '.' || c.relname = %(name)s"
        " OR (c.relname = %(name)s AND n.nspname = ANY (current_schemas(false))))"
        "ORDER BY array_position(current_schemas(false), n.nspname::name) NULLS LAST LIMIT 1",
        {"name": name},
    ).fetchone()
    if found is None:
        raise TableRefused(
            f"There is no table {name!r} in this database: give schema.table of an existing "
            "table, exactly as it is named."
        )
    return str(found["schema"]), str(found["name"])


def look_up_table(target: DatabaseTarget, name: str) -> tuple[str, str]:
    with connect(target) as connection:
        begin_read_only(connection, STATEMENT_TIMEOUT_MS)
        return find_table(connection, name)


def vacuum_statement(table: tuple[str, str] | None) -> sql.SQL | sql.Composed:
    if table is None:
        return sql.SQL("VACUUM (ANALYZE)")
    return sql.SQL("VACUUM (ANALYZE) {}.{}").format(
        sql.Identifier(table[0]), sql.Identifier(table[1])
    )
