"""Backups of a SQLite database (the portal's embedded default) through SQLite's online
backup API (``sqlite3.Connection.backup``): a consistent copy made page by page while the
database stays in use, its tables counted, then streamed compressed with zstd into the same
storages as pg_dump's output, with its SHA-256 and size. The copy is a temporary file under
BACKUP_RESTORE_DIR (the backup API writes to a database, not to a stream), removed after."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import tempfile
from pathlib import Path

import zstandard
from django.conf import settings

from apps.backups.choices import Compression
from apps.backups.dumps import DumpFailed, DumpOutcome, Progress, human_bytes
from apps.backups.models import DatabaseTarget
from apps.backups.storage import Backend, StorageError

CHUNK_BYTES = 1024 * 1024
PAGES_PER_STEP = 1024


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    tables = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ).fetchall()
    return {
        f"main.{name}": int(
            connection.execute(f"SELECT count(*) FROM {_quoted(name)}").fetchone()[0]
        )
        for (name,) in tables
    }


def snapshot(source: Path, copy: Path, reporter: Progress) -> dict[str, int]:
    """Copy ``source`` into ``copy`` with the online backup API; the copy's row counts."""
    try:
        origin = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise DumpFailed(f"Cannot open {source}: {exc}") from None
    try:
        with sqlite3.connect(copy) as destination:

            def progress(status: int, remaining: int, total: int) -> None:
                reporter.check_cancelled()
                done = total - remaining
                reporter.step(5 + int(45 * done / max(total, 1)), f"{done} of {total} pages copied")

            origin.backup(destination, pages=PAGES_PER_STEP, progress=progress)
            counts = _row_counts(destination)
        destination.close()
    except sqlite3.Error as exc:
        raise DumpFailed(f"SQLite's backup of {source} failed: {exc}") from None
    finally:
        origin.close()
    return counts


def stream_sqlite(
    target: DatabaseTarget, backend: Backend, key: str, reporter: Progress
) -> DumpOutcome:
    """Back up the target's SQLite file into ``backend`` under ``key``; nothing is left in
    the storage on failure. Raises DumpFailed or StorageError with a message for people."""
    source = Path(target.sqlite_path)
    if not source.is_file():
        raise DumpFailed(f"The SQLite file {source} does not exist.")
    if backend.exists(key):
        raise StorageError(f"{key} already exists: a backup is never overwritten.")
    work = Path(settings.BACKUP_RESTORE_DIR)
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="sqlite-") as directory:
        copy = Path(directory) / "copy.sqlite3"
        reporter.step(2, f"Copying {source} with SQLite's online backup API")
        counts = snapshot(source, copy, reporter)
        raw = copy.stat().st_size
        reporter.log(
            f"SQLite {sqlite3.sqlite_version}: {human_bytes(raw)}, {len(counts)} tables, "
            f"{sum(counts.values())} rows in the copy."
        )
        writer = backend.open_writer(key)
        checksum = hashlib.sha256()
        size = 0
        compressor = zstandard.ZstdCompressor(level=settings.BACKUP_ZSTD_LEVEL).compressobj()

        def emit(data: bytes) -> None:
            nonlocal size
            checksum.update(data)
            size += len(data)
            writer.write(data)

        try:
            with copy.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    emit(compressor.compress(chunk))
                    reporter.check_cancelled()
            emit(compressor.flush())
            reporter.step(97, f"Committing {human_bytes(size)} to the storage")
            writer.commit()
        except BaseException:
            with contextlib.suppress(StorageError):
                writer.abort()
            raise
    version = f"SQLite {sqlite3.sqlite_version}"
    return DumpOutcome(
        size_bytes=size,
        sha256=checksum.hexdigest(),
        compression=Compression.SQLITE_ZSTD,
        pg_dump_version=f"sqlite3 online backup API ({version})",
        server_version=version,
        row_counts=counts,
    )
