from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from apps.backups.choices import (
    BackupState,
    Compression,
    DatabaseEngine,
    RestoreKind,
    RestoreState,
    ServerSideEncryption,
    SslMode,
    StorageKind,
)
from apps.backups.cron import validate as validate_cron
from apps.common.crypto import decrypt, encrypt
from apps.operations.registry import Target

TARGET_TYPE = "backups.target"

# Names that end up in object keys, file paths and PostgreSQL connections: a small, safe
# alphabet, so that none of them can climb out of a prefix or mean something to a shell.
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")
_PG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_PREFIX_PART = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

bucket_name = RegexValidator(
    r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    "A bucket name has 3–63 lowercase letters, digits, '.' and '-'.",
)


def validate_target_name(value: str) -> None:
    if ".." in value or not _TARGET_NAME.match(value) or not slugify(value):
        raise ValidationError(
            "Use letters, digits, spaces, '.', '_' and '-', starting with a letter or digit; "
            "'/' and '..' are refused (the name becomes part of the backups' keys)."
        )


def validate_pg_name(value: str) -> None:
    """Database and user names: refused rather than quoted, so that a name with quotes, ';',
    '/', spaces or shell characters never reaches a connection string or a program."""
    if ".." in value or not _PG_NAME.match(value):
        raise ValidationError(
            f"{value!r} is refused: use letters, digits, '_', '-' and '.', starting with a "
            "letter or '_' (at most 63 characters); quotes, ';', '/', '..', spaces and shell "
            "characters are not allowed."
        )


def validate_host(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOST_NAME.match(value):
            raise ValidationError(
                "Give a host name (letters, digits, '-' and '.') or an IP address."
            ) from None


def clean_prefix(value: str) -> str:
    """The prefix without leading or trailing '/', or ValidationError: every part a plain name,
    none of them '.' or '..', so that nothing under it can climb out."""
    stripped = value.strip().strip("/")
    if not stripped:
        return ""
    parts = stripped.split("/")
    if any(part in (".", "..") or not _PREFIX_PART.match(part) for part in parts):
        raise ValidationError(
            "A prefix is names separated by '/', each of letters, digits, '.', '_' and '-'; "
            "'..' and empty parts are refused: a backup can never leave its prefix."
        )
    return stripped


def validate_prefix(value: str) -> None:
    clean_prefix(value)


class BackupStorage(models.Model):
    """Where backups go: a local directory or an S3 bucket (or an S3-compatible store). The
    S3 access keys are encrypted at rest and never shown again; without them the worker uses
    boto3's default credential chain (environment, instance role)."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=StorageKind.choices, default=StorageKind.S3)
    prefix = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_prefix],
        help_text="Keys start with it: <prefix>/<target>/<YYYY>/<MM>/<target>_<time>.dump.",
    )
    directory = models.CharField(
        max_length=500,
        blank=True,
        help_text="Local directory: an absolute path inside one of BACKUP_LOCAL_ROOTS.",
    )
    bucket = models.CharField(max_length=63, blank=True, validators=[bucket_name])
    region = models.CharField(max_length=50, blank=True)
    endpoint_url = models.URLField(
        "Endpoint URL",
        max_length=500,
        blank=True,
        help_text="Only for S3-compatible stores (MinIO, Ceph, …); empty for AWS.",
    )
    server_side_encryption = models.CharField(
        max_length=10, choices=ServerSideEncryption.choices, blank=True, default=""
    )
    kms_key_id = models.CharField("KMS key id", max_length=300, blank=True)
    access_key_id_encrypted = models.TextField(blank=True, editable=False)
    secret_access_key_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def root(self) -> str:
        """Where its keys start, as a path or an s3:// URL ending in '/'."""
        prefix = f"/{self.prefix}" if self.prefix else ""
        if self.kind == StorageKind.LOCAL:
            return f"{self.directory.rstrip('/')}{prefix}/"
        return f"s3://{self.bucket}{prefix}/"

    @property
    def location(self) -> str:
        """Where it is, as people would write it."""
        if self.kind == StorageKind.S3 and self.endpoint_url:
            return f"{self.root} at {self.endpoint_url}"
        return self.root

    def set_credentials(self, access_key_id: str, secret_access_key: str) -> None:
        self.access_key_id_encrypted = encrypt(access_key_id) if access_key_id else ""
        self.secret_access_key_encrypted = encrypt(secret_access_key) if secret_access_key else ""

    @property
    def has_credentials(self) -> bool:
        return bool(self.access_key_id_encrypted and self.secret_access_key_encrypted)

    def credentials(self) -> tuple[str, str] | None:
        """The stored access key pair, decrypted into memory, or None for the default chain."""
        if not self.has_credentials:
            return None
        return decrypt(self.access_key_id_encrypted), decrypt(self.secret_access_key_encrypted)


class DatabaseTargetQuerySet(models.QuerySet["DatabaseTarget"]):
    def with_last_good_backup_id(self) -> DatabaseTargetQuerySet:
        newest = Backup.objects.good().filter(target=OuterRef("pk")).order_by("-finished_at", "-pk")
        return self.annotate(last_good_backup_id=Subquery(newest.values("pk")[:1]))


class DatabaseTarget(models.Model):
    """A PostgreSQL database the portal backs up. The password is encrypted at rest and only
    ever decrypted into memory for a connection or into pg_dump's environment: no page, log or
    audit record shows it."""

    name = models.CharField(max_length=100, unique=True, validators=[validate_target_name])
    service = models.ForeignKey(
        "services.Service",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="database_targets",
        help_text="The service whose data this is (optional).",
    )
    engine = models.CharField(
        max_length=12, choices=DatabaseEngine.choices, default=DatabaseEngine.POSTGRESQL
    )
    # For a SQLite target: the database file, read through SQLite's online backup API (host,
    # database and user then only name it).
    sqlite_path = models.CharField("SQLite file", max_length=500, blank=True)
    host = models.CharField(max_length=253, validators=[validate_host])
    port = models.PositiveIntegerField(
        default=5432, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    database = models.CharField(max_length=63, validators=[validate_pg_name])
    user = models.CharField(max_length=63, validators=[validate_pg_name])
    password_encrypted = models.TextField(blank=True, editable=False)
    ssl_mode = models.CharField(
        "SSL mode", max_length=12, choices=SslMode.choices, default=SslMode.PREFER
    )
    storage = models.ForeignKey(
        BackupStorage,
        on_delete=models.PROTECT,
        related_name="targets",
        help_text="Where its backups go unless another storage is chosen for one backup.",
    )
    is_production = models.BooleanField(default=False)
    is_scratch = models.BooleanField(
        "Scratch database",
        default=False,
        help_text="Its contents may be thrown away (a copy for tests or analysis): a restore "
        "into it may skip the safety backup.",
    )
    schedule = models.CharField(
        "Backup schedule",
        max_length=100,
        blank=True,
        validators=[validate_cron],
        help_text="When backups start on their own, as cron in UTC: minute hour day-of-month "
        "month day-of-week, e.g. '15 2 * * *' (02:15 every day) or @daily. Empty: none.",
    )
    # The due time the scheduler starts next; claimed by a conditional UPDATE so that two
    # beats (or a late tick) start each due backup once.
    schedule_next_at = models.DateTimeField(null=True, blank=True, editable=False)
    keep_daily = models.PositiveSmallIntegerField(
        default=7, validators=[MaxValueValidator(1000)], help_text="Days with a backup to keep."
    )
    keep_weekly = models.PositiveSmallIntegerField(
        default=4, validators=[MaxValueValidator(1000)], help_text="Weeks with a backup to keep."
    )
    keep_monthly = models.PositiveSmallIntegerField(
        default=12,
        validators=[MaxValueValidator(1000)],
        help_text="Months with a backup to keep.",
    )
    # Pruning on its own: an admin's standing consent to the destructive prune operation,
    # given with a reason; each hourly run is requested in that admin's name
    # (apps.backups.pruning.start_due_prunes) and stops if the admin may no longer prune.
    auto_prune = models.BooleanField(
        "Prune automatically",
        default=False,
        help_text="Every hour, delete the backups the policy lets go, as a prune operation "
        "requested in your name; the newest good backup and any backup a restore is using "
        "are always kept.",
    )
    auto_prune_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    auto_prune_reason = models.CharField(max_length=500, blank=True, editable=False)
    auto_prune_since = models.DateTimeField(null=True, blank=True, editable=False)
    freshness_hours = models.PositiveIntegerField(
        "Freshness objective (hours)",
        default=26,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 366)],
        help_text="Red, with an alert, when the newest good backup is older than this.",
    )
    checked_at = models.DateTimeField(null=True, blank=True)
    check_ok = models.BooleanField(null=True)
    check_detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = DatabaseTargetQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("backups:target", args=[self.pk])

    @property
    def slug(self) -> str:
        """The name as it appears in object keys."""
        return slugify(self.name)

    @property
    def dsn_label(self) -> str:
        """Where it is, without the password: what people and logs may see."""
        if self.is_sqlite:
            return f"sqlite:{self.sqlite_path}"
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def is_sqlite(self) -> bool:
        return self.engine == DatabaseEngine.SQLITE

    def set_password(self, password: str) -> None:
        self.password_encrypted = encrypt(password) if password else ""

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def password(self) -> str:
        return decrypt(self.password_encrypted) if self.password_encrypted else ""

    def as_operation_target(self) -> Target:
        return Target(
            type=TARGET_TYPE,
            id=str(self.pk),
            label=f"{self.name} ({self.database} on {self.host})",
            environment="production" if self.is_production else "",
            is_production=self.is_production,
            url=self.get_absolute_url(),
        )


class BackupQuerySet(models.QuerySet["Backup"]):
    def good(self) -> BackupQuerySet:
        """Only backups that finished and were committed to their storage."""
        return self.filter(state=BackupState.SUCCEEDED)


class Backup(models.Model):
    """One pg_dump of a target into a storage: where it is, what it holds (row counts at the
    time), how it was made, and whether it is good. Written by the backup operation's handler;
    a failed or cancelled one ends ``failed`` with the reason and is never listed as good."""

    target = models.ForeignKey(DatabaseTarget, on_delete=models.PROTECT, related_name="backups")
    storage = models.ForeignKey(BackupStorage, on_delete=models.PROTECT, related_name="backups")
    key = models.CharField(max_length=1024)
    state = models.CharField(
        max_length=10, choices=BackupState.choices, default=BackupState.RUNNING
    )
    error = models.TextField(blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField("SHA-256", max_length=64, blank=True)
    compression = models.CharField(
        max_length=20, choices=Compression.choices, default=Compression.ZSTD
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    pg_dump_version = models.CharField(max_length=100, blank=True)
    server_version = models.CharField(max_length=100, blank=True)
    # {"schema.table": rows}, counted in the snapshot pg_dump then dumped.
    row_counts = models.JSONField(default=dict, blank=True)
    operation = models.ForeignKey(
        "operations.Operation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    schedule = models.CharField(
        max_length=100, blank=True, help_text="The schedule that started it, if one did."
    )
    # Why it was taken when not by a person's "Back up now" (a restore's safety backup).
    note = models.CharField(max_length=200, blank=True)
    pruned_at = models.DateTimeField(null=True, blank=True)

    objects = BackupQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [
            models.Index(fields=["target", "-id"], name="backup_target_id"),
            models.Index(fields=["target", "state", "-finished_at"], name="backup_target_good"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["storage", "key"], name="one_backup_per_key"),
        ]
        permissions = [("download_backup", "Can download a backup")]

    def __str__(self) -> str:
        return f"{self.target.name} at {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_good(self) -> bool:
        return self.state == BackupState.SUCCEEDED

    @property
    def duration(self) -> timedelta | None:
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def started_by_label(self) -> str:
        if self.schedule:
            return f"schedule {self.schedule}"
        return self.started_by.get_username() if self.started_by else "—"

    @property
    def total_rows(self) -> int:
        return sum(int(count) for count in self.row_counts.values())

    def shown_state(self) -> str:
        """The state people see: a backup still "running" whose operation ended (its worker
        died) is failed, whatever the row says."""
        if (
            self.state == BackupState.RUNNING
            and self.operation is not None
            and self.operation.is_final
        ):
            return BackupState.FAILED
        return self.state


class IntegrityCheck(models.Model):
    """A fact an admin expects of a target's data, as one read-only SELECT returning one number
    and the range it must fall in (the runbooks' ``SELECT COUNT(*) FROM users``). Run after
    every restore and test restore of the target's backups, in a read-only transaction with
    a statement timeout, beside the row counts recorded at backup time."""

    target = models.ForeignKey(
        DatabaseTarget, on_delete=models.CASCADE, related_name="integrity_checks"
    )
    name = models.CharField(max_length=100)
    sql = models.TextField(
        "SQL",
        max_length=5000,
        help_text="One read-only SELECT (or WITH … SELECT) returning one row with one number, "
        "e.g. SELECT count(*) FROM users WHERE active. Tried on the database when saved.",
    )
    min_value = models.DecimalField(
        "At least", max_digits=30, decimal_places=4, null=True, blank=True
    )
    max_value = models.DecimalField(
        "At most", max_digits=30, decimal_places=4, null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["target", "name"], name="one_check_name_per_target"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.target.name})"

    @property
    def expected_label(self) -> str:
        """The range in words: "≥ 1", "≤ 10", "between 1 and 10"."""
        low, high = _plain(self.min_value), _plain(self.max_value)
        if low is not None and high is not None:
            return f"between {low} and {high}"
        if low is not None:
            return f"≥ {low}"
        if high is not None:
            return f"≤ {high}"
        return "any number"

    def accepts(self, value: Decimal) -> bool:
        if self.min_value is not None and value < self.min_value:
            return False
        return not (self.max_value is not None and value > self.max_value)


def _plain(value: Decimal | None) -> str | None:
    """A bound without trailing zeros: 1, not 1.0000."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text


class RestoreRunQuerySet(models.QuerySet["RestoreRun"]):
    def finished(self) -> RestoreRunQuerySet:
        return self.exclude(state=RestoreState.RUNNING)

    def tests(self) -> RestoreRunQuerySet:
        return self.filter(kind=RestoreKind.TEST)


class RestoreRun(models.Model):
    """One restore of a backup, real or test: where it went, how long reading, verifying and
    pg_restore took (the recovery time a real restore would take), and every integrity
    check with its figures. Written by the restore handlers; a run whose worker died shows
    as failed."""

    kind = models.CharField(max_length=10, choices=RestoreKind.choices)
    # SET_NULL: the record of a verification outlives the backup's pruning.
    backup = models.ForeignKey(
        Backup, null=True, on_delete=models.SET_NULL, related_name="restore_runs"
    )
    # The target it belongs to: the one restored over, or, for a test restore, the backup's.
    target = models.ForeignKey(
        DatabaseTarget, on_delete=models.CASCADE, related_name="restore_runs"
    )
    database = models.CharField(max_length=63, help_text="The database restored into.")
    server = models.CharField(max_length=300, blank=True)
    state = models.CharField(
        max_length=10, choices=RestoreState.choices, default=RestoreState.RUNNING
    )
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    restore_seconds = models.FloatField(null=True, blank=True)
    # [{"name", "kind" ("rows" or "sql"), "value", "expected", "passed", "detail"}]
    checks = models.JSONField(default=list, blank=True)
    safety_backup = models.ForeignKey(
        Backup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    operation = models.ForeignKey(
        "operations.Operation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    schedule = models.CharField(max_length=100, blank=True)

    objects = RestoreRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [
            models.Index(fields=["target", "kind", "-started_at"], name="restorerun_target_kind"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_kind_display()} of {self.target.name} at {self.started_at:%Y-%m-%d %H:%M}"
        )

    @property
    def passed(self) -> bool:
        return self.state == RestoreState.PASSED

    @property
    def started_by_label(self) -> str:
        if self.schedule:
            return self.schedule
        return self.started_by.get_username() if self.started_by else "—"

    @property
    def checks_passed(self) -> int:
        return sum(1 for check in self.checks if check.get("passed"))

    @property
    def failed_checks(self) -> list[dict[str, object]]:
        return [check for check in self.checks if not check.get("passed")]

    def shown_state(self) -> str:
        """Failed when still "running" but its operation ended (the worker died)."""
        if (
            self.state == RestoreState.RUNNING
            and self.operation is not None
            and self.operation.is_final
        ):
            return RestoreState.FAILED
        return self.state


def verified_restore_status(last: RestoreRun | None, now: datetime) -> tuple[str, str]:
    """The target's "last verified restore" as a state and words: "ok" when its last test
    restore passed within BACKUP_VERIFIED_RESTORE_MAX_AGE_DAYS, else "warning" (amber)."""
    days = settings.BACKUP_VERIFIED_RESTORE_MAX_AGE_DAYS
    if last is None:
        return "warning", "Never verified: no test restore yet"
    if last.state != RestoreState.PASSED:
        return "warning", "The last test restore failed"
    if last.started_at < now - timedelta(days=days):
        return "warning", f"No verified restore within {days} days"
    return "ok", "Verified"
