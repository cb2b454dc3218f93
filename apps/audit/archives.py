"""Archiving a period of the audit history: the export of its events (the same streamed
JSON Lines or CSV as /audit/export.*, header and hash of its newest event included) written
to a backup storage, compressed. The portal never deletes audit events; an archive is a copy
to keep elsewhere (for instance in a bucket with object lock), not a way to trim the table."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.http import QueryDict

from apps.audit import exports
from apps.audit.filters import read_filters
from apps.audit.records import record
from apps.backups.models import BackupStorage
from apps.backups.storage import backend_for

ARCHIVE_FOLDER = "audit-archive"


class ArchiveRefused(Exception):
    """The period or the format cannot be archived; the message says why."""


@dataclass(frozen=True)
class Archive:
    key: str
    events: int
    last_seq: int | None
    last_hash: str | None
    compressed_bytes: int


def archive_key(storage: BackupStorage, since: date, until: date, file_format: str) -> str:
    name = f"audit-{since:%Y%m%d}-{until:%Y%m%d}.{file_format}.gz"
    return "/".join(part for part in (storage.prefix, ARCHIVE_FOLDER, name) if part)


def do_archive_period(
    actor: AbstractBaseUser | None,
    storage: BackupStorage,
    since: date,
    until: date,
    file_format: str = "jsonl",
) -> Archive:
    """Stream the events of [since, until] (days in the portal's zone, inclusive) as a gzip
    file into ``storage``, then record "audit.archived" with where it went and the hash of
    its newest event; memory stays flat whatever the size of the period."""
    if file_format not in exports.FORMATS:
        raise ArchiveRefused(f"Unknown format {file_format!r}: use csv or jsonl.")
    if since > until:
        raise ArchiveRefused("The start date is after the end date.")
    query = QueryDict(mutable=True)
    query["since"], query["until"] = since.isoformat(), until.isoformat()
    export = exports.prepare_export(read_filters(query), query.urlencode(), file_format)
    key = archive_key(storage, since, until, file_format)
    lines, _ = exports.FORMATS[file_format]
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    writer = backend_for(storage).open_writer(key)
    written = 0
    try:
        for piece in lines(export):
            chunk = compressor.compress(piece.encode())
            if chunk:
                writer.write(chunk)
                written += len(chunk)
        tail = compressor.flush()
        writer.write(tail)
        written += len(tail)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    count = export.events.count()
    header = export.header
    record(
        "audit.archived",
        actor=actor,
        actor_label="audit_archive" if actor is None else "",
        reason=f"{file_format.upper()} archive of {header.summary} to {storage.name}: {key}",
        data={
            "storage": storage.name,
            "key": key,
            "events": count,
            "last_seq": header.last_seq,
            "last_hash": header.last_hash,
        },
    )
    return Archive(key, count, header.last_seq, header.last_hash, written)
