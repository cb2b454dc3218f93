from __future__ import annotations

from django.db import models


class SslMode(models.TextChoices):
    """libpq's sslmode, from least to most checked."""

    DISABLE = "disable", "disable (no TLS)"
    PREFER = "prefer", "prefer (TLS when the server offers it)"
    REQUIRE = "require", "require (TLS, certificate not checked)"
    VERIFY_CA = "verify-ca", "verify-ca (TLS, certificate signed by a trusted CA)"
    VERIFY_FULL = "verify-full", "verify-full (TLS, certificate matches the host name)"


class DatabaseEngine(models.TextChoices):
    POSTGRESQL = "postgresql", "PostgreSQL"
    # The embedded default: a file copied with SQLite's online backup API.
    SQLITE = "sqlite", "SQLite file"


class StorageKind(models.TextChoices):
    LOCAL = "local", "Local directory"
    S3 = "s3", "S3 bucket (or an S3-compatible store)"


class ServerSideEncryption(models.TextChoices):
    NONE = "", "None (the bucket's default)"
    AES256 = "AES256", "SSE-S3 (AES256)"
    KMS = "aws:kms", "SSE-KMS (aws:kms)"


class BackupState(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # It was good; its stored object was deleted by the retention policy (pruning).
    PRUNED = "pruned", "Pruned"


class Compression(models.TextChoices):
    """How the bytes of the stored object are compressed, so that a restore knows how to read
    them back."""

    # The whole custom-format dump (made with --compress=0) is one zstd stream: decompress it
    # (zstandard) and feed the result to pg_restore.
    ZSTD = "zstd", "zstd stream around the dump (decompress, then pg_restore)"
    # pg_dump 16+ compressed the data itself (--compress=zstd): pg_restore reads it as it is.
    PG_DUMP_ZSTD = "pg_dump_zstd", "zstd inside the custom format (pg_restore reads it)"
    # A SQLite database file (from its online backup API) as one zstd stream.
    SQLITE_ZSTD = "sqlite_zstd", "zstd stream around a SQLite database file"


class RestoreKind(models.TextChoices):
    # A backup restored over a target's database (an admin's destructive operation).
    RESTORE = "restore", "Restore"
    # A backup restored into a scratch database made for it and dropped after: the proof.
    TEST = "test", "Test restore"


class RestoreState(models.TextChoices):
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
