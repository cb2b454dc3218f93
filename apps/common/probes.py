"""Checks of what the portal depends on; shared by /health and the diagnostics operation.
Each returns a short detail on success and raises on failure."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

_VERSION_QUERY = {"postgresql": "SHOW server_version", "sqlite": "SELECT sqlite_version()"}


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute(_VERSION_QUERY.get(connection.vendor, "SELECT 1"))
        (version,) = cursor.fetchone()
    return f"{connection.vendor} {version}"


def check_broker() -> str:
    from opsportal.celery import app

    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=3)
        return str(broker.transport.driver_type)


def check_backup_storage() -> str:
    folder = Path(settings.BACKUP_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".opsportal-probe-{uuid.uuid4().hex}"
    probe.write_bytes(b"ok")
    try:
        if probe.read_bytes() != b"ok":
            raise OSError("read back something other than what was written")
    finally:
        probe.unlink(missing_ok=True)
    return str(folder)


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ok: bool
    detail: str
    milliseconds: float


def run_probe(name: str, check: Callable[[], str]) -> ProbeResult:
    started = time.perf_counter()
    try:
        detail, ok = check(), True
    except Exception as exc:
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return ProbeResult(name, ok, detail, round((time.perf_counter() - started) * 1000, 1))
