"""The backups tests' world: throwaway databases with known rows on the real PostgreSQL
server of this run, moto's S3 server over HTTP (reset before each test), directories under
BACKUP_DIR, and the helpers that restore a produced dump with plain pg_restore and compare
every row."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import boto3
import psycopg
import pytest
import zstandard
from django.conf import settings
from psycopg import sql

from apps.backups.choices import Compression, StorageKind
from apps.backups.models import Backup, BackupStorage, DatabaseTarget

BUCKET = "opsportal-backups"

# Known rows: awkward text on purpose (quotes, semicolons, unicode, NULLs, a newline).
SOURCE_SQL = """
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    total numeric(10, 2) NOT NULL,
    note text
);
CREATE TABLE empty_table (id integer);
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (number text PRIMARY KEY, amount numeric, paid boolean);
INSERT INTO customers VALUES
    (1, 'Ada', 'ada@example.com'),
    (2, 'O''Brien; DROP TABLE x', NULL),
    (3, 'Zoë $(id) `uname`', 'zoe@example.com');
INSERT INTO orders (customer_id, total, note)
    SELECT 1 + g % 3, g * 1.25, CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || g || E'\\nline' END
    FROM generate_series(1, 250) AS g;
INSERT INTO billing.invoices VALUES ('INV-1', 10.5, true), ('INV-2', 99, false);
"""
EXPECTED_COUNTS = {
    "billing.invoices": 2,
    "public.customers": 3,
    "public.empty_table": 0,
    "public.orders": 250,
}


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self, prefix: str, schema_sql: str = "") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.connect() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if schema_sql:
            with self.connect(name) as connection:
                connection.execute(schema_sql.encode())
        return name

    def drop_database(self, name: str) -> None:
        with self.connect() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_server() -> Server:
    """The PostgreSQL server of this run (DATABASE_URL), where throwaway databases go."""
    from django.db import connection

    db = connection.settings_dict
    return Server(
        host=db.get("HOST") or "127.0.0.1",
        port=int(db.get("PORT") or 5432),
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or "",
    )


@pytest.fixture(scope="module")
def source_db(pg_server: Server) -> Iterator[str]:
    """A database with a few tables and known rows, for this test module; dropped after."""
    name = pg_server.create_database("opsportal_bk_src", SOURCE_SQL)
    yield name
    pg_server.drop_database(name)


def table_rows(server: Server, database: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every user table, in a stable order."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with server.connect(database) as connection:
        tables = connection.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            rows = connection.execute(
                sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            ).fetchall()
            found[f"{schema}.{table}"] = sorted(rows, key=repr)
    return found


def restore_into_new_database(server: Server, stored: bytes, compression: str) -> str:
    """Plain pg_restore of the stored bytes (decompressed first when the portal compressed
    the stream) into a fresh database; returns its name."""
    name = server.create_database("opsportal_bk_restored")
    dump = (
        zstandard.ZstdDecompressor().decompressobj().decompress(stored)
        if compression == Compression.ZSTD
        else stored
    )
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    if server.password:
        environment["PGPASSWORD"] = server.password
    subprocess.run(
        [
            shutil.which("pg_restore") or "pg_restore",
            "--no-owner",
            "--exit-on-error",
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            server.user,
            "-d",
            name,
        ],
        input=dump,
        env=environment,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return name


# --- S3 (moto's server over HTTP) -----------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    endpoint = os.environ.get("S3_ENDPOINT_URL", "")
    assert endpoint, "S3_ENDPOINT_URL is not set: run the tests through scripts/test_env.sh"
    return endpoint


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A client of moto's server, reset and with an empty backups bucket."""
    urlopen(Request(f"{s3_endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


def open_multipart_uploads(client: Any) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    return uploads


def make_s3_storage(endpoint: str, **fields: Any) -> BackupStorage:
    storage = BackupStorage(
        name=fields.pop("name", f"s3-{uuid.uuid4().hex[:6]}"),
        kind=StorageKind.S3,
        bucket=fields.pop("bucket", BUCKET),
        region="us-east-1",
        endpoint_url=endpoint,
        prefix=fields.pop("prefix", "db"),
        **fields,
    )
    storage.set_credentials("testing", "testing")
    storage.save()
    return storage


@pytest.fixture
def backup_dir() -> Iterator[Path]:
    """A fresh directory inside BACKUP_DIR (the allowed root), removed after the test."""
    directory = Path(settings.BACKUP_DIR) / f"test-{uuid.uuid4().hex[:10]}"
    directory.mkdir(parents=True)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def make_local_storage(directory: Path, **fields: Any) -> BackupStorage:
    return BackupStorage.objects.create(
        name=fields.pop("name", f"dir-{uuid.uuid4().hex[:6]}"),
        kind=StorageKind.LOCAL,
        directory=str(directory),
        prefix=fields.pop("prefix", "nightly"),
        **fields,
    )


def make_target(
    server: Server, database: str, storage: BackupStorage, **fields: Any
) -> DatabaseTarget:
    password = fields.pop("password", server.password)
    target = DatabaseTarget(
        name=fields.pop("name", f"Orders DB {uuid.uuid4().hex[:4]}"),
        host=fields.pop("host", server.host),
        port=fields.pop("port", server.port),
        database=database,
        user=fields.pop("user", server.user),
        storage=storage,
        ssl_mode=fields.pop("ssl_mode", "disable"),
        **fields,
    )
    target.set_password(password)
    target.save()
    return target


def stored_bytes(backup: Backup, s3_client: Any | None = None) -> bytes:
    if backup.storage.kind == StorageKind.S3:
        assert s3_client is not None
        body: bytes = s3_client.get_object(Bucket=backup.storage.bucket, Key=backup.key)[
            "Body"
        ].read()
        return body
    return (Path(backup.storage.directory) / backup.key).read_bytes()


# --- A PostgreSQL server that asks for passwords ---------------------------------------------


def _initdb_dir() -> str | None:
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / "initdb").exists():
            return str(directory)
    found = shutil.which("initdb")
    return str(Path(found).parent) if found else None


def _as_postgres_user(command: list[str]) -> list[str]:
    # initdb refuses to run as root: as root, run the cluster as the postgres user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def password_server() -> Iterator[Callable[[], Server]]:
    """A throwaway PostgreSQL cluster with scram-sha-256 authentication, started on first
    use (the machine's server trusts loopback, so a wrong password would not be noticed)."""
    started: list[tuple[str, str]] = []
    made: list[Server] = []

    def start() -> Server:
        if made:
            return made[0]
        bin_dir = _initdb_dir()
        if bin_dir is None:
            pytest.fail("initdb is not installed: the password tests need a PostgreSQL server")
        root = Path(f"/tmp/opsportal-bk-pg-{uuid.uuid4().hex[:8]}")
        root.mkdir(mode=0o700)
        password = uuid.uuid4().hex
        (root / "pw").write_text(password)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(root / "pw", "postgres", "postgres")
        data = root / "data"
        subprocess.run(
            _as_postgres_user(
                [
                    f"{bin_dir}/initdb",
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "scram-sha-256",
                    "--pwfile",
                    str(root / "pw"),
                    "-N",
                ]
            ),
            check=True,
            capture_output=True,
            cwd="/",
        )
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres_user(
                [
                    f"{bin_dir}/pg_ctl",
                    "start",
                    "-w",
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(root / "log"),
                ]
            ),
            check=True,
            capture_output=True,
            cwd="/",
        )
        started.append((bin_dir, str(root)))
        made.append(Server("127.0.0.1", port, "postgres", password))
        return made[0]

    yield start
    for bin_dir, root in started:
        subprocess.run(
            _as_postgres_user(
                [f"{bin_dir}/pg_ctl", "stop", "-m", "immediate", "-D", f"{root}/data"]
            ),
            capture_output=True,
            cwd="/",
        )
        shutil.rmtree(root, ignore_errors=True)
