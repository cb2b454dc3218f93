"""Backups (``--only backups``): on a generated database of random text (``--backup-mb``,
1 GB by default; hex of random numbers, not pgbench's blank filler, which flatters
compression), in the same run:

1. the portal's backup (the backups.backup operation on a real worker, into the S3 of this
   run) against the runbooks' bare ``pg_dump --format=custom`` to a local file (target: at
   least 2x faster, output at most 10 % larger) and against ``pg_dump --format=custom
   --compress=0`` to /dev/null, the limit of producing the dump at all (target: at most
   1.3x its time), and the same backup into a directory, which shows what the portal's
   stream adds without the S3 endpoint (moto shares this machine's two cores);
2. the worker's peak memory (the largest VmHWM among its processes) backing up a 100 MB
   database and the main one (target: under 200 MB and about the same for both);
3. the portal's restore (the backups.restore operation into a new empty database) against
   bare ``pg_restore`` of the runbooks' dump (target: at most 1.15x its time).

Beside the times, the CPU the whole machine spent on the bare dump and on the portal's backup
to S3, and the S3 endpoint's own share of it when it is the moto server of this machine: with
two cores, 1.3x the bare dump's time holds 2 x 1.3 x that time of CPU for everything.

The generated databases are kept between runs (named by their size); the restored ones, the
bench's targets and storage are removed at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from psycopg import sql

from apps.accounts.roles import ADMIN
from apps.backups import postgres
from apps.backups.choices import StorageKind
from apps.backups.dumps import human_bytes
from apps.backups.models import Backup, BackupStorage, DatabaseTarget, RestoreRun
from apps.backups.storage import s3_client
from apps.operations import actions
from apps.operations.models import Operation
from bench import procfs
from bench.report import heading, table, verdict
from tests.support.waiting import wait_for
from tests.support.worker import Worker

ROW_TEXT_BYTES = 512  # 16 md5 hex strings per row
SMALL_MB = 100
BUCKET = "opsportal-bench-backups"
MIB = 1024 * 1024


@dataclass
class Figures:
    size_mb: int
    database_bytes: int
    portal_seconds: float
    portal_bytes: int
    directory_seconds: float
    plain_seconds: float
    plain_bytes: int
    raw_seconds: float
    memory_idle_mib: float
    memory_small_mib: float
    memory_big_mib: float
    restore_seconds: float
    plain_restore_seconds: float
    s3_upload_seconds: float
    s3_download_seconds: float
    raw_cpu: float
    portal_cpu: float
    portal_s3_cpu: float | None


def _s3_endpoint_pid() -> int | None:
    """The moto server answering S3_ENDPOINT_URL on this machine, if that is what it is."""
    port = re.search(r":(\d+)/?$", os.environ.get("S3_ENDPOINT_URL", ""))
    if port is None:
        return None
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(word.endswith("moto_server") for word in words) and port[1] in words:
            return int(cmdline.parent.name)
    return None


@dataclass
class Cpu:
    """CPU seconds spent while it was open: by the whole machine and by one process."""

    pid: int | None = None
    machine: float = 0.0
    process: float | None = None

    def __enter__(self) -> Cpu:
        self._machine, self._process = procfs.machine_cpu(), procfs.process_cpu(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.machine = procfs.machine_cpu() - self._machine
        after = procfs.process_cpu(self.pid)
        if after is not None and self._process is not None:
            self.process = after - self._process


def _server() -> dict[str, Any]:
    db = connection.settings_dict
    return {
        "host": db.get("HOST") or "127.0.0.1",
        "port": int(db.get("PORT") or 5432),
        "user": db.get("USER") or "postgres",
        "password": db.get("PASSWORD") or None,
    }


def _connect(database: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(dbname=database, autocommit=True, **_server())


def generated_database(size_mb: int) -> str:
    """``opsportal_bench_backups_<size>mb``, made once: rows of random hex text."""
    name = f"opsportal_bench_backups_{size_mb}mb"
    building = sql.Identifier(f"{name}_building")
    with _connect() as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return name
        # Built under another name and renamed when complete: an interrupted run leaves no
        # half-filled database behind under the final name.
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(building))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(building))
    rows = size_mb * MIB // (ROW_TEXT_BYTES + 40)
    payload = " || ".join(["md5(random()::text)"] * (ROW_TEXT_BYTES // 32))
    with _connect(f"{name}_building") as db:
        db.execute("CREATE TABLE documents (id bigint PRIMARY KEY, body text NOT NULL)")
        db.execute("ALTER TABLE documents ALTER body SET STORAGE EXTERNAL")  # no TOAST zlib
        for start in range(0, rows, 200_000):
            db.execute(
                f"INSERT INTO documents SELECT g, {payload} "  # noqa: S608 (constant SQL)
                "FROM generate_series(%s, %s) AS g",
                [start + 1, min(rows, start + 200_000)],
            )
        db.execute("VACUUM ANALYZE documents")
    with _connect() as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(building, sql.Identifier(name))
        )
    return name


def _drop(name: str) -> None:
    with _connect() as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _environment() -> dict[str, str]:
    server = _server()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(PGHOST=server["host"], PGPORT=str(server["port"]), PGUSER=server["user"])
    if server["password"]:
        env["PGPASSWORD"] = server["password"]
    return env


def _checkpoint() -> None:
    """Before each timed step: the server, then the kernel, write out what the previous step
    dirtied, so that no step pays for another's writes (a restore right after another ran
    1.3 s against 0.85 s)."""
    with _connect() as server:
        server.execute("CHECKPOINT")
    os.sync()


def _timed(command: list[str], stdout: Any, cpu: Cpu | None = None) -> float:
    _checkpoint()
    with cpu or Cpu():
        clock = time.perf_counter()
        subprocess.run(command, stdout=stdout, env=_environment(), check=True)
        return time.perf_counter() - clock


def _admin() -> Any:
    user, _ = get_user_model().objects.get_or_create(
        username="bench-backups-admin", defaults={"email": "bench-admin@example.com"}
    )
    user.groups.add(Group.objects.get(name=ADMIN))
    return user


def _storage() -> BackupStorage:
    import boto3

    endpoint = os.environ["S3_ENDPOINT_URL"]
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    storage = BackupStorage(
        name=f"bench-{uuid.uuid4().hex[:6]}",
        kind=StorageKind.S3,
        bucket=BUCKET,
        region="us-east-1",
        endpoint_url=endpoint,
        prefix=f"bench/{uuid.uuid4().hex[:6]}",
    )
    storage.set_credentials("testing", "testing")
    storage.save()
    return storage


def _directory_storage(directory: str) -> BackupStorage:
    storage = BackupStorage(
        name=f"bench-{uuid.uuid4().hex[:6]}", kind=StorageKind.LOCAL, directory=directory
    )
    storage.save()
    return storage


def _empty(storage: BackupStorage) -> None:
    """Delete this run's objects: the S3 endpoint keeps them in memory and slows down as they
    pile up run after run."""
    client = s3_client(storage)
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=storage.bucket, Prefix=f"{storage.prefix}/"
    )
    for page in pages:
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=storage.bucket, Delete={"Objects": keys})


def _target(database: str, storage: BackupStorage) -> DatabaseTarget:
    server = _server()
    target = DatabaseTarget(
        name=f"bench {database} {storage.kind}"[:90].replace("_", "-"),
        host=server["host"],
        port=server["port"],
        database=database,
        user=server["user"],
        storage=storage,
        ssl_mode="disable",
    )
    target.set_password(server["password"] or "")
    target.save()
    return target


def _run(
    actor: Any,
    kind: str,
    target: DatabaseTarget,
    reason: str = "",
    cpu: Cpu | None = None,
    **params: Any,
) -> Operation:
    """Run the operation on the worker and wait for its end; ``cpu`` counts the CPU spent
    from its request to its end."""
    _checkpoint()
    with cpu or Cpu():
        operation = actions.do_start_operation(actor, kind, str(target.pk), params, reason)
        wait_for(
            lambda: Operation.objects.get(pk=operation.pk).is_final,
            timeout=3 * 3600,
            what=f"{kind} of {target.database}",
        )
    operation.refresh_from_db()
    if operation.error:
        raise RuntimeError(f"{kind} failed: {operation.error}")
    return operation


def _s3_alone(storage: BackupStorage, key: str, size: int) -> tuple[float, float]:
    """What the S3 endpoint itself takes to accept ``size`` bytes in parts of the portal's
    size, one after the other, and to give back the object at ``key``: (upload, download)
    seconds, with the portal's client settings and nothing else in the way."""
    client = s3_client(storage)
    block = os.urandom(settings.BACKUP_S3_PART_SIZE_MB * MIB)
    bare = f"{storage.prefix}/bare-upload"
    _checkpoint()
    clock = time.perf_counter()
    upload = client.create_multipart_upload(Bucket=storage.bucket, Key=bare)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, size, len(block)), start=1):
        body = block[: min(len(block), size - start)]
        answer = client.upload_part(
            Bucket=storage.bucket, Key=bare, UploadId=upload, PartNumber=number, Body=body
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    client.complete_multipart_upload(
        Bucket=storage.bucket, Key=bare, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    uploading = time.perf_counter() - clock
    client.delete_object(Bucket=storage.bucket, Key=bare)
    clock = time.perf_counter()
    body = client.get_object(Bucket=storage.bucket, Key=key)["Body"]
    while body.read(MIB):
        pass
    return uploading, time.perf_counter() - clock


def _session_peak_mib(worker: Worker) -> float:
    """The largest peak RSS (VmHWM) among the worker's processes (its session)."""
    assert worker.process is not None
    peak = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            if os.getsid(int(status.parent.name)) != worker.process.pid:
                continue
        except (OSError, ProcessLookupError):
            continue
        peak = max(peak, procfs.peak_mib(text) or 0.0)
    return peak


def _backup_on_fresh_worker(
    actor: Any, target: DatabaseTarget, cpu: Cpu | None = None
) -> tuple[Backup, float, float]:
    """The backup, the worker's peak memory before it (idle, ready) and after it; ``cpu``
    counts the CPU spent while the operation ran."""
    worker = Worker(name=f"bench-backups-{uuid.uuid4().hex[:6]}@localhost")
    worker.log_path = Path(settings.VAR_DIR) / "bench" / f"worker-{worker.name}.log"
    worker.start()
    try:
        idle = _session_peak_mib(worker)
        operation = _run(actor, "backups.backup", target, cpu=cpu)
        memory = _session_peak_mib(worker)
    finally:
        worker.stop()
    return Backup.objects.get(operation=operation), idle, memory


def measure(operator: Any, size_mb: int = 1024) -> Figures:
    admin = _admin()
    storage = _storage()
    Path(settings.BACKUP_DIR).mkdir(parents=True, exist_ok=True)
    backup_directory = tempfile.mkdtemp(prefix="bench-", dir=settings.BACKUP_DIR)
    directory_storage = _directory_storage(backup_directory)
    small, big = generated_database(SMALL_MB), generated_database(size_mb)
    targets: list[DatabaseTarget] = []
    restored = f"opsportal_bench_restored_{uuid.uuid4().hex[:6]}"
    plain_restored = f"opsportal_bench_plain_{uuid.uuid4().hex[:6]}"
    try:
        small_target, big_target = _target(small, storage), _target(big, storage)
        targets += [small_target, big_target]
        with _connect(big) as db:
            size = db.execute("SELECT pg_database_size(current_database())").fetchone()
            database_bytes = int(size[0]) if size else 0
            major = db.info.server_version // 10000
        pg_dump = postgres.find_pg_dump(major).path
        pg_restore = postgres.find_client("pg_restore", major).path

        _, memory_idle, memory_small = _backup_on_fresh_worker(admin, small_target)
        portal_cpu = Cpu(pid=_s3_endpoint_pid())
        backup, _, memory_big = _backup_on_fresh_worker(admin, big_target, portal_cpu)
        assert backup.duration is not None
        s3_upload, s3_download = _s3_alone(storage, backup.key, backup.size_bytes or 0)
        # The same stream into a directory: what the portal adds to producing the dump, without
        # the S3 endpoint, which shares this machine's cores here.
        directory_target = _target(big, directory_storage)
        targets.append(directory_target)
        on_disk, _, _ = _backup_on_fresh_worker(admin, directory_target)
        assert on_disk.duration is not None

        with tempfile.TemporaryDirectory(dir=settings.VAR_DIR) as directory:
            dump = Path(directory) / "runbooks.dump"
            with dump.open("wb") as out:
                plain = _timed([pg_dump, "--format=custom", "-d", big], out)
            raw_cpu = Cpu()
            with open(os.devnull, "wb") as out:
                raw = _timed([pg_dump, "--format=custom", "--compress=0", "-d", big], out, raw_cpu)
            with _connect() as server:
                server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(plain_restored)))
                server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(restored)))
            plain_restore = _timed(
                [pg_restore, "--no-owner", "-d", plain_restored, str(dump)], subprocess.DEVNULL
            )
            plain_bytes = dump.stat().st_size
        # Gone before the portal's restore: autovacuum would otherwise go through its freshly
        # loaded table meanwhile, on the same two cores.
        _drop(plain_restored)

        destination = _target(restored, storage)
        targets.append(destination)
        worker = Worker(name=f"bench-restore-{uuid.uuid4().hex[:6]}@localhost")
        worker.start()
        try:
            _run(
                admin,
                "backups.restore",
                destination,
                "bench",
                backup=backup.pk,
                confirm_database=restored,
                skip_safety_backup=True,
            )
        finally:
            worker.stop()
        run = RestoreRun.objects.filter(target=destination).latest("pk")
        return Figures(
            size_mb=size_mb,
            database_bytes=database_bytes,
            portal_seconds=backup.duration.total_seconds(),
            portal_bytes=backup.size_bytes or 0,
            directory_seconds=on_disk.duration.total_seconds(),
            plain_seconds=plain,
            plain_bytes=plain_bytes,
            raw_seconds=raw,
            memory_idle_mib=memory_idle,
            memory_small_mib=memory_small,
            memory_big_mib=memory_big,
            restore_seconds=run.restore_seconds or 0.0,
            s3_upload_seconds=s3_upload,
            s3_download_seconds=s3_download,
            plain_restore_seconds=plain_restore,
            raw_cpu=raw_cpu.machine,
            portal_cpu=portal_cpu.machine,
            portal_s3_cpu=portal_cpu.process,
        )
    finally:
        _drop(restored)
        _drop(plain_restored)
        for target in targets:
            RestoreRun.objects.filter(target=target).delete()
            Backup.objects.filter(target=target).delete()
            target.delete()
        _empty(storage)
        storage.delete()
        directory_storage.delete()
        shutil.rmtree(backup_directory, ignore_errors=True)


def _cpu_line(figures: Figures) -> str:
    cores = os.cpu_count() or 1
    budget = cores * 1.3 * figures.raw_seconds
    endpoint = (
        f", of which the S3 endpoint {figures.portal_s3_cpu:.1f}"
        if figures.portal_s3_cpu is not None
        else ""
    )
    return (
        f"  CPU: pg_dump -Z0 > /dev/null kept the machine busy {figures.raw_cpu:.1f} CPU-s "
        f"({figures.raw_cpu / figures.raw_seconds:.1f} of {cores} cores); the portal's backup "
        f"to S3 {figures.portal_cpu:.1f} CPU-s{endpoint}. 1.3x the bare dump's time holds "
        f"{budget:.1f} CPU-s on {cores} cores"
    )


def render(figures: Figures) -> str:
    speedup = figures.plain_seconds / figures.portal_seconds
    larger = figures.portal_bytes / figures.plain_bytes - 1
    limit = figures.portal_seconds / figures.raw_seconds
    directory_limit = figures.directory_seconds / figures.raw_seconds
    restore = figures.restore_seconds / figures.plain_restore_seconds
    memory = max(figures.memory_small_mib, figures.memory_big_mib)
    flat = abs(figures.memory_big_mib - figures.memory_small_mib) < 20
    rows = [
        [
            "portal backup to S3",
            f"{figures.portal_seconds:.1f} s",
            human_bytes(figures.portal_bytes),
        ],
        ["portal backup to a directory", f"{figures.directory_seconds:.1f} s", "same"],
        [
            "pg_dump -Fc to a file",
            f"{figures.plain_seconds:.1f} s",
            human_bytes(figures.plain_bytes),
        ],
        ["pg_dump -Fc -Z0 > /dev/null", f"{figures.raw_seconds:.1f} s", "-"],
        ["S3 endpoint alone: upload", f"{figures.s3_upload_seconds:.1f} s", "same"],
        ["S3 endpoint alone: download", f"{figures.s3_download_seconds:.1f} s", "same"],
        ["portal restore", f"{figures.restore_seconds:.1f} s", "-"],
        ["pg_restore of pg_dump -Fc", f"{figures.plain_restore_seconds:.1f} s", "-"],
    ]
    return "\n".join(
        [
            heading(
                f"Backups: a {figures.size_mb} MB database of random text "
                f"({human_bytes(figures.database_bytes)} on disk)"
            ),
            table(["", "time", "output"], rows),
            f"  portal vs pg_dump -Fc: {speedup:.2f}x faster (target >= 2x: "
            f"{verdict(speedup >= 2)}), output {larger:+.1%} (target <= +10 %: "
            f"{verdict(larger <= 0.10)})",
            f"  portal vs pg_dump -Z0 to /dev/null: {limit:.2f}x its time (target <= 1.3x: "
            f"{verdict(limit <= 1.3)}); to a directory {directory_limit:.2f}x. The S3 endpoint "
            f"(moto, on this machine's cores) alone takes {figures.s3_upload_seconds:.1f} s to "
            "take the same bytes",
            _cpu_line(figures),
            f"  worker peak memory: {figures.memory_small_mib:.0f} MiB for {SMALL_MB} MB, "
            f"{figures.memory_big_mib:.0f} MiB for {figures.size_mb} MB, "
            f"{figures.memory_idle_mib:.0f} MiB idle before (target < 200 MB and "
            f"flat: {verdict(memory < 200 and flat)})",
            f"  portal restore vs pg_restore: {restore:.2f}x its time (target <= 1.15x: "
            f"{verdict(restore <= 1.15)}); the S3 endpoint alone takes "
            f"{figures.s3_download_seconds:.1f} s to give the backup back",
        ]
    )
