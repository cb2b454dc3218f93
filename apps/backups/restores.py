"""Reading a backup back and restoring it: storage → SHA-256 → a file → pg_restore.

The choice made here: the stored object is read once, in chunks, into a file under
BACKUP_RESTORE_DIR while its SHA-256 and size are computed, and only when both match the
backup's record does anything touch the target. A mismatch deletes the file and stops: "the
target was not touched". Restoring from that file restores exactly the bytes that were
verified; a first hashing pass followed by a second streaming read could not promise that (the
object may change in between) and would read the storage twice.

A dump the portal compressed (zstd) is restored one of two ways:

- several tables: decompressed on the way into the file, so that pg_restore can run parallel
  jobs (-j), which it cannot do from a pipe. The cost is disk: room for one uncompressed dump.
- one table (one job anyway): kept compressed in the file, and decompressed into pg_restore's
  standard input beside it, in one transaction (--single-transaction), so that a failure
  half-way leaves the target as it was. Measured with a 1 GB table on 2 cores, writing the
  uncompressed dump first added about two seconds to a seven-second restore.

pg_restore runs with an argument list (never a shell), the connection in its environment
(PGPASSWORD, never on the command line), and the database name validated beforehand.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import dj_database_url
import psycopg
import zstandard
from botocore.exceptions import BotoCoreError
from django.conf import settings
from django.core.exceptions import ValidationError
from psycopg import errors, sql

from apps.backups import postgres
from apps.backups.choices import Compression
from apps.backups.dumps import (
    CHUNK_BYTES,
    STDERR_KEPT_BYTES,
    STEP_SECONDS,
    Progress,
    human_bytes,
)
from apps.backups.models import Backup, DatabaseTarget, validate_pg_name
from apps.backups.storage import StorageError, backend_for
from apps.operations.choices import LogLevel

CANCEL_CHECK_SECONDS = 0.5
SCRATCH_PREFIX = "opsportal_scratch_"
CHECKSUM_MISMATCH = (
    "checksum mismatch: the backup was altered or damaged; the target was not touched"
)


class RestoreFailed(Exception):
    """Reading, verifying or restoring failed; the message says why for people."""


class Phase:
    """A slice of the progress bar for one step of a longer operation: the step reports 0–100
    and the bar moves from ``start`` to ``end``."""

    def __init__(self, reporter: Progress, start: int, end: int) -> None:
        self.reporter, self.start, self.end = reporter, start, end

    def step(self, progress: int, status: str) -> None:
        share = max(0, min(100, progress)) / 100
        self.reporter.step(self.start + int((self.end - self.start) * share), status)

    def log(self, message: str, level: str = LogLevel.INFO) -> None:
        self.reporter.log(message, level)

    def check_cancelled(self) -> None:
        self.reporter.check_cancelled()


# --- Reading a backup back ----------------------------------------------------------------


def _read(reader: IO[bytes], key: str) -> bytes:
    try:
        return reader.read(CHUNK_BYTES)
    except (BotoCoreError, OSError) as exc:
        raise StorageError(f"Reading {key} from the storage failed: {exc}") from None


# Chunks read ahead of the hashing and writing: at most this many MiB in memory.
READ_AHEAD_CHUNKS = 8


def _read_ahead(reader: IO[bytes], key: str) -> Iterator[bytes]:
    """The object's chunks, read by a thread of their own while the ones before are hashed
    and written, so that the network and the disk overlap. A read failure is raised here."""
    ahead: queue.Queue[bytes | StorageError] = queue.Queue(maxsize=READ_AHEAD_CHUNKS)
    done = threading.Event()

    def hand_over(item: bytes | StorageError) -> None:
        while not done.is_set():
            with contextlib.suppress(queue.Full):
                ahead.put(item, timeout=CANCEL_CHECK_SECONDS)
                return

    def read() -> None:
        try:
            while not done.is_set():
                chunk = _read(reader, key)
                hand_over(chunk)
                if not chunk:
                    return
        except StorageError as exc:
            hand_over(exc)
        except Exception as exc:  # the stream, closed under a reader left behind
            hand_over(StorageError(f"Reading {key} from the storage failed: {exc}"))

    thread = threading.Thread(target=read, name="restore-read-ahead", daemon=True)
    thread.start()
    try:
        while item := ahead.get():
            if isinstance(item, StorageError):
                raise item
            yield item
    finally:
        done.set()  # a reader left behind (a cancel, a failure) stops at its next chunk


@dataclass(frozen=True)
class VerifiedDump:
    """A file whose bytes matched the backup's size and SHA-256, and the tables it holds.
    ``zstd``: the file is the portal's zstd stream as stored, which pg_restore reads
    decompressed through a pipe."""

    path: Path
    tables: int
    zstd: bool


@contextlib.contextmanager
def verified_dump(backup: Backup, reporter: Progress) -> Iterator[VerifiedDump]:
    """The dump of ``backup`` in a file, once its size and SHA-256 matched the record;
    RestoreFailed (CHECKSUM_MISMATCH) otherwise. The file is deleted when the block ends,
    whatever happens."""
    piped = through_pipe(backup)
    if not backup.sha256 or backup.size_bytes is None:
        raise RestoreFailed(f"Backup #{backup.pk} has no recorded checksum: it cannot be verified.")
    directory = Path(settings.BACKUP_RESTORE_DIR)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _sweep_stale_dumps(directory, reporter)
        handle, name = tempfile.mkstemp(
            prefix=f"restore-{backup.pk}-", suffix=".dump", dir=directory
        )
    except OSError as exc:
        raise RestoreFailed(
            f"Cannot write in {directory} (BACKUP_RESTORE_DIR): {exc.strerror or exc}."
        ) from None
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            size, digest = _copy_verifying(backup, out, reporter, decompress=not piped)
        if size != backup.size_bytes or digest != backup.sha256:
            reporter.log(
                f"Read {size} bytes with SHA-256 {digest}; the backup recorded "
                f"{backup.size_bytes} bytes with SHA-256 {backup.sha256}.",
                LogLevel.ERROR,
            )
            raise RestoreFailed(CHECKSUM_MISMATCH)
        reporter.step(100, f"Checksum verified: SHA-256 {digest[:16]}… over {human_bytes(size)}")
        yield VerifiedDump(path, len(backup.row_counts), piped)
    finally:
        path.unlink(missing_ok=True)


def _sweep_stale_dumps(directory: Path, reporter: Progress) -> None:
    """Remove the files of restores whose worker died (SIGKILL leaves them): none can still
    be in use once it is older than the restores' hard time limit."""
    limit = settings.BACKUP_RESTORE_TIME_LIMIT_SECONDS + 600
    for stale in directory.glob("restore-*.dump"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > limit:
                stale.unlink()
                reporter.log(f"Removed {stale.name}, left behind by a restore that died.")


def _copy_verifying(
    backup: Backup, out: IO[bytes], reporter: Progress, *, decompress: bool
) -> tuple[int, str]:
    """Copy the stored object into ``out`` (decompressed when the portal compressed it and
    ``decompress``) and return the size and SHA-256 of the stored bytes."""
    decompressor = (
        zstandard.ZstdDecompressor().decompressobj()
        if decompress and backup.compression == Compression.ZSTD
        else None
    )
    undecodable = ""
    checksum = hashlib.sha256()
    size = 0
    total = max(backup.size_bytes or 0, 1)
    next_step = next_check = time.monotonic()
    reporter.step(0, f"Reading {backup.key} from {backup.storage.name} and verifying its SHA-256")
    reader = backend_for(backup.storage).open_reader(backup.key)
    try:
        for chunk in _read_ahead(reader, backup.key):
            checksum.update(chunk)
            size += len(chunk)
            if decompressor is not None and not undecodable:
                try:
                    chunk = decompressor.decompress(chunk)
                except zstandard.ZstdError as exc:
                    # Keep hashing: the checksum, not the decoder, says what went wrong.
                    undecodable = str(exc)
                    continue
            if not undecodable:
                _write(out, chunk)
            now = time.monotonic()
            if now >= next_check:
                reporter.check_cancelled()
                next_check = now + CANCEL_CHECK_SECONDS
            if now >= next_step:
                reporter.step(
                    int(100 * size / total),
                    f"{human_bytes(size)} of {human_bytes(total)} read and hashed",
                )
                next_step = now + STEP_SECONDS
    finally:
        with contextlib.suppress(Exception):
            reader.close()
    digest = checksum.hexdigest()
    if undecodable and digest == backup.sha256:
        raise RestoreFailed(
            f"The backup matches its checksum but cannot be decompressed: {undecodable}"
        )
    return size, digest


def _write(out: IO[bytes], data: bytes) -> None:
    try:
        out.write(data)
    except OSError as exc:
        raise RestoreFailed(
            f"Writing the dump under {settings.BACKUP_RESTORE_DIR} (BACKUP_RESTORE_DIR) failed: "
            f"{exc.strerror or exc}. The target was not touched."
        ) from None


# --- The database restored into -----------------------------------------------------------

_USER_RELATIONS = """
SELECT count(*)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
"""


def user_relations(target: DatabaseTarget) -> int:
    """How many tables, views and sequences the database holds outside the system schemas:
    zero means empty, and a restore into it may skip the safety backup."""
    with postgres.connect(target, autocommit=True) as connection:
        row = connection.execute(_USER_RELATIONS).fetchone()
    return int(row[0]) if row else 0


def check_database_name(target: DatabaseTarget) -> None:
    """The name pg_restore gets as --dbname: validated again here (the row may have been
    changed behind the forms), so that a quote, ';' or '=' never reaches a program."""
    try:
        validate_pg_name(target.database)
    except ValidationError as exc:
        raise RestoreFailed(" ".join(exc.messages)) from None


def scratch_server(target: DatabaseTarget) -> DatabaseTarget:
    """Where a test restore of ``target`` creates its scratch database, as an unsaved target
    whose database is the one to connect to for CREATE and DROP: BACKUP_SCRATCH_DATABASE_URL,
    else the target's own server with its own credentials."""
    url = settings.BACKUP_SCRATCH_DATABASE_URL
    if not url:
        return DatabaseTarget(
            name=f"{target.name} (scratch)",
            host=target.host,
            port=target.port,
            database=target.database,
            user=target.user,
            ssl_mode=target.ssl_mode,
            password_encrypted=target.password_encrypted,
        )
    parsed = dj_database_url.parse(url)
    server = DatabaseTarget(
        name="scratch server",
        host=str(parsed.get("HOST") or "127.0.0.1"),
        port=int(parsed.get("PORT") or 5432),
        database=str(parsed.get("NAME") or "postgres"),
        user=str(parsed.get("USER") or "postgres"),
        ssl_mode=str(parsed.get("OPTIONS", {}).get("sslmode", "prefer")),
    )
    server.set_password(str(parsed.get("PASSWORD") or ""))
    return server


def _on(server: DatabaseTarget, database: str) -> DatabaseTarget:
    return DatabaseTarget(
        name=f"{database} on {server.host}",
        host=server.host,
        port=server.port,
        database=database,
        user=server.user,
        ssl_mode=server.ssl_mode,
        password_encrypted=server.password_encrypted,
    )


@contextlib.contextmanager
def scratch_database(server: DatabaseTarget, reporter: Progress) -> Iterator[DatabaseTarget]:
    """A database created for one test restore (``opsportal_scratch_<random>``) and dropped
    when the block ends, whatever happens; a failed drop is logged with the name to drop."""
    name = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    where = f"{server.host}:{server.port}"
    try:
        with postgres.connect(server, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except errors.InsufficientPrivilege:
        raise RestoreFailed(
            f"User {server.user} may not create databases on {where}: give it CREATEDB, or "
            "set BACKUP_SCRATCH_DATABASE_URL to a server where test restores may."
        ) from None
    except psycopg.Error as exc:
        raise RestoreFailed(f"Creating the scratch database on {where} failed: {exc}") from None
    reporter.log(f"Created the scratch database {name} on {where}.")
    try:
        yield _on(server, name)
    finally:
        try:
            with postgres.connect(server, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        except (psycopg.Error, postgres.DatabaseProblem) as exc:
            reporter.log(
                f"The scratch database {name} on {where} could not be dropped: {exc}. "
                "Drop it by hand.",
                LogLevel.ERROR,
            )
        else:
            reporter.log(f"Dropped the scratch database {name}.")


# --- pg_restore -----------------------------------------------------------------------------


def restore_jobs(tables: int) -> int:
    """pg_restore's parallel jobs: BACKUP_RESTORE_JOBS, but never more than the tables to load.
    A job loads one table at a time, so more only cost: one table of 200 MB restored in
    0.79 s with one job and 1.00 s with four, on 2 cores."""
    return max(1, min(settings.BACKUP_RESTORE_JOBS, tables))


def through_pipe(backup: Backup) -> bool:
    """Whether pg_restore reads ``backup`` decompressed through a pipe (a dump the portal
    compressed, of one table) rather than from an uncompressed file: see the module's text."""
    return backup.compression == Compression.ZSTD and restore_jobs(len(backup.row_counts)) == 1


def pg_restore_command(client: postgres.PgClient, database: str, dump: VerifiedDump) -> list[str]:
    """From the file with parallel jobs; or, for a piped dump, from standard input in one
    transaction (pg_restore runs no jobs from a pipe)."""
    how = (
        ["--single-transaction"]
        if dump.zstd
        else [f"--jobs={restore_jobs(dump.tables)}", str(dump.path)]
    )
    return [
        client.path,
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-password",
        "--verbose",
        f"--dbname={database}",
        *how,
    ]


class ZstdFeeder(threading.Thread):
    """Decompresses a verified zstd file into pg_restore's standard input, beside it. When
    pg_restore stops reading (it failed, or was killed) the feeder stops too: pg_restore's
    exit code and words say why."""

    def __init__(self, path: Path, stdin: IO[bytes]) -> None:
        super().__init__(name="pg_restore-stdin", daemon=True)
        self.path, self.stdin = path, stdin
        self.error = ""

    def run(self) -> None:
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        try:
            with self.path.open("rb") as source:
                while chunk := source.read(CHUNK_BYTES):
                    self.stdin.write(decompressor.decompress(chunk))
            if not decompressor.eof:
                self.error = "the dump ends in the middle of its zstd stream"
        except BrokenPipeError:
            pass
        except (OSError, zstandard.ZstdError) as exc:
            self.error = f"the dump could not be decompressed into pg_restore: {exc}"
        finally:
            with contextlib.suppress(OSError):
                self.stdin.close()


class RestoreStderr(threading.Thread):
    """Reads pg_restore's --verbose stderr as it comes: counts the tables whose data was
    loaded (for progress) and keeps the last few kilobytes of what is not routine."""

    ROUTINE = (
        "pg_restore: processing",
        "pg_restore: creating",
        "pg_restore: dropping",
        "pg_restore: launching",
        "pg_restore: finished",
        "pg_restore: connecting",
        "pg_restore: executing",
        "pg_restore: entering",
    )

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(name="pg_restore-stderr", daemon=True)
        self.stream = stream
        self.kept = bytearray()
        self.tables_loaded = 0

    def run(self) -> None:
        for raw in self.stream:
            line = raw.decode("utf-8", "replace")
            if "processing data for table" in line:
                self.tables_loaded += 1
            if line.startswith(self.ROUTINE):
                continue
            self.kept += raw
            del self.kept[:-STDERR_KEPT_BYTES]

    @property
    def text(self) -> str:
        return self.kept.decode("utf-8", "replace").strip()


def _kill(process: subprocess.Popen[bytes]) -> None:
    # pg_restore -j forks workers: the whole session goes.
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def run_pg_restore(
    dump: VerifiedDump, destination: DatabaseTarget, reporter: Progress, *, server_major: int
) -> None:
    """pg_restore --clean --if-exists --no-owner of ``dump`` into ``destination``; a cancel or
    time limit kills it. RestoreFailed with pg_restore's own words when it fails."""
    check_database_name(destination)
    client = postgres.find_client("pg_restore", server_major)
    reporter.log(f"Using {client.path} ({client.version}): {client.why}.")
    command = pg_restore_command(client, destination.database, dump)
    shown = (
        f"zstd -dc <verified dump> | {' '.join(command)}"
        if dump.zstd
        else " ".join([*command[:-1], "<verified dump>"])
    )
    reporter.step(0, f"Running {shown}")
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if dump.zstd else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=postgres.client_environment(destination),
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise RestoreFailed(f"pg_restore could not start: {exc}") from None
    feeder = None
    if dump.zstd:
        assert process.stdin is not None
        feeder = ZstdFeeder(dump.path, process.stdin)
        feeder.start()
    assert process.stderr is not None
    stderr = RestoreStderr(process.stderr)
    stderr.start()
    started = next_step = time.monotonic()
    try:
        while True:
            try:
                code = process.wait(timeout=CANCEL_CHECK_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            reporter.check_cancelled()
            now = time.monotonic()
            if now >= next_step:
                loaded = min(stderr.tables_loaded, dump.tables)
                reporter.step(
                    int(100 * loaded / max(dump.tables, 1)),
                    f"pg_restore: data of {loaded} of {dump.tables} tables loading or loaded, "
                    f"{now - started:.0f} s",
                )
                next_step = now + STEP_SECONDS
        stderr.join(timeout=10)
    except BaseException:
        _kill(process)
        raise
    finally:
        process.stderr.close()
        if feeder is not None:
            feeder.join(timeout=10)
    fed = f" ({feeder.error})" if feeder is not None and feeder.error else ""
    if code != 0:
        why = stderr.text or "no message"
        raise RestoreFailed(f"pg_restore failed (exit code {code}): {why}{fed}")
    if fed:
        raise RestoreFailed(f"pg_restore ended, but{fed}")
    if stderr.text:
        reporter.log(f"pg_restore said: {stderr.text}", LogLevel.WARNING)
    reporter.step(100, f"pg_restore finished in {time.monotonic() - started:.1f} s")
