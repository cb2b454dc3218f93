"""Redis servers the portal looks into. PostgreSQL targets are the backups app's
DatabaseTarget: a database registered once serves both its backups and its console."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.common.crypto import decrypt, encrypt
from apps.operations.registry import Target

REDIS_TARGET_TYPE = "datastores.redis"
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:{}@-]{1,200}$")


def validate_redis_url(value: str) -> None:
    """redis:// or rediss:// with a host and no password (that goes in its own, encrypted
    field, so that it never shows up in a page, a log or an audit record)."""
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValidationError("Give a URL like redis://cache.internal:6379.")
    if parts.password:
        raise ValidationError(
            "Leave the password out of the URL: put it in the password field, which is "
            "encrypted at rest."
        )
    if parts.path.strip("/") or parts.query:
        raise ValidationError("Leave the database number out of the URL: it has its own field.")


def split_names(value: str) -> list[str]:
    """Names typed one per line or comma-separated, in order, without duplicates."""
    seen: list[str] = []
    for name in re.split(r"[\s,]+", value):
        if name and name not in seen:
            seen.append(name)
    return seen


def validate_names(value: str) -> None:
    for name in split_names(value):
        if not _QUEUE_NAME.match(name):
            raise ValidationError(
                f"{name!r} is refused: a queue or key name is letters, digits and "
                "'_ . : - @ { }' (no '*' or spaces)."
            )


class RedisTarget(models.Model):
    """A Redis server (one database number of it) with the queues it holds: BullMQ queues,
    Celery queues and any key an admin wants to watch. The password is encrypted at rest
    and only decrypted into memory for a connection."""

    name = models.CharField(max_length=100, unique=True)
    service = models.ForeignKey(
        "services.Service",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="redis_targets",
    )
    url = models.CharField(
        "URL",
        max_length=300,
        validators=[validate_redis_url],
        help_text="redis://host:6379 (rediss:// for TLS), without the password.",
    )
    db = models.PositiveSmallIntegerField(
        "Database number", default=0, validators=[MinValueValidator(0), MaxValueValidator(255)]
    )
    tls = models.BooleanField("TLS", default=False, help_text="Also implied by rediss://.")
    password_encrypted = models.TextField(blank=True, editable=False)
    bullmq_queues = models.TextField(
        "BullMQ queues",
        blank=True,
        validators=[validate_names],
        help_text="Queue names, one per line: bull:<name>:wait, active, failed, delayed.",
    )
    celery_queues = models.TextField(
        "Celery queues",
        blank=True,
        validators=[validate_names],
        help_text="Queue names, one per line (the list Celery pushes to, e.g. celery).",
    )
    extra_keys = models.TextField(
        "Other keys",
        blank=True,
        validators=[validate_names],
        help_text="Any key to watch, one per line: its size is read by its type.",
    )
    is_production = models.BooleanField(default=False)
    checked_at = models.DateTimeField(null=True, blank=True)
    check_ok = models.BooleanField(null=True)
    check_detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        # The console pages (PostgreSQL and Redis) are seen with this one permission.
        permissions = [("view_datastore", "Can see the datastore consoles")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("datastores:redis", args=[self.pk])

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.url.startswith("rediss://")

    @property
    def label(self) -> str:
        return f"{self.url.rstrip('/')}/{self.db}"

    def set_password(self, password: str) -> None:
        self.password_encrypted = encrypt(password) if password else ""

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def password(self) -> str:
        return decrypt(self.password_encrypted) if self.password_encrypted else ""

    @property
    def bullmq_names(self) -> list[str]:
        return split_names(self.bullmq_queues)

    @property
    def celery_names(self) -> list[str]:
        return split_names(self.celery_queues)

    @property
    def extra_names(self) -> list[str]:
        return split_names(self.extra_keys)

    def as_operation_target(self) -> Target:
        return Target(
            type=REDIS_TARGET_TYPE,
            id=str(self.pk),
            label=f"{self.name} (Redis {self.label})",
            environment="production" if self.is_production else "",
            is_production=self.is_production,
            url=self.get_absolute_url(),
        )
