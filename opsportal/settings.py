"""OpsPortal settings: read only from the environment (see .env.example for every variable).

The embedded defaults serve one machine with no servers: SQLite under var/, Celery's
filesystem broker under var/, backups under var/backups/. Production sets DATABASE_URL,
CELERY_BROKER_URL, SECRET_KEY and the rest.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from apps.common.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("OPSPORTAL_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)

# --- Secrets: real ones are required unless DEBUG is on ----------------------------------


def _development_secret(name: str, generate: Callable[[], str]) -> str:
    """DEBUG only: a secret generated once and kept under var/, so sessions and encrypted
    values survive restarts of the demo."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(generate(), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def _secret_key() -> str:
    key = env_str("SECRET_KEY", "")
    if key:
        weak = len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure")
        if weak and not DEBUG:
            raise ImproperlyConfigured(
                "SECRET_KEY is too weak: use at least 50 random characters "
                '(python -c "import secrets; print(secrets.token_urlsafe(64))").'
            )
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off.")
    return _development_secret("dev-secret-key", lambda: secrets.token_urlsafe(64))


SECRET_KEY = _secret_key()


def _field_encryption_key() -> str:
    """The Fernet key that encrypts credentials at rest (kubeconfigs, database passwords)."""
    key = env_str("FIELD_ENCRYPTION_KEY", "")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY is required when DEBUG is off (python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())").'
        )
    return _development_secret("dev-field-encryption-key", lambda: Fernet.generate_key().decode())


FIELD_ENCRYPTION_KEY = _field_encryption_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

PORTAL_ENVIRONMENT = env_str("PORTAL_ENVIRONMENT", "development")
PORTAL_IS_PRODUCTION = env_bool("PORTAL_IS_PRODUCTION", PORTAL_ENVIRONMENT == "production")

# --- Applications ------------------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "axes",
    "apps.common",
    "apps.accounts",
    "apps.audit",
    "apps.operations",
    "apps.services",
    "apps.backups",
    "apps.datastores",
    "apps.incidents",
    "apps.statuspage",
    "apps.maintenance",
    "apps.metrics",
    "apps.runbooks",
    "apps.http_actions",
]

MIDDLEWARE = [
    "apps.common.middleware.RequestIdMiddleware",
    "apps.common.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.common.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.accounts.middleware.IdleSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "opsportal.urls"
WSGI_APPLICATION = "opsportal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.common.context_processors.portal",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

# Each process keeps what is expensive to render and never changes (an incident's timeline
# entries): nothing shared, so nothing to run or to invalidate across processes.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 5000},
    }
}

# --- Database ----------------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'opsportal.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and immediate transactions let the web server and the worker share the file
    # without "database is locked" errors.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so that a worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = "opsportal"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Authentication and sessions ---------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

SESSION_IDLE_TIMEOUT = env_int("SESSION_IDLE_TIMEOUT", 30 * 60, minimum=60)
SESSION_COOKIE_AGE = SESSION_IDLE_TIMEOUT
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
REAUTH_MAX_AGE = timedelta(minutes=env_int("REAUTH_MINUTES", 10, minimum=1))

AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_VERBOSE = False

# --- HTTPS and headers -------------------------------------------------------------------

HTTPS_ONLY = env_bool("HTTPS_ONLY", not DEBUG)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS_ONLY
# Probes and scrapers talk plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^health", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 31536000 if HTTPS_ONLY else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS_ONLY
SECURE_HSTS_PRELOAD = HTTPS_ONLY
SESSION_COOKIE_SECURE = HTTPS_ONLY
CSRF_COOKIE_SECURE = HTTPS_ONLY
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Internationalisation ----------------------------------------------------------------

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Email -------------------------------------------------------------------------------

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "opsportal@localhost")
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", "http://127.0.0.1:8000")

# --- Celery ------------------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "opsportal")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery" / "queue"
    _control_dir = VAR_DIR / "celery" / "control"  # else kombu writes ./control/ in the cwd
    for _folder in (_queue_dir, _control_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(_control_dir),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
# A request that starts an operation must not hang on a dead broker: the reaper sends again.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# The database, not the broker, holds an operation's state: no result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

REDIS_URL = env_str("REDIS_URL", "")

# --- Operations engine -------------------------------------------------------------------

OPERATIONS_HEARTBEAT_SECONDS = env_int("OPERATIONS_HEARTBEAT_SECONDS", 10, minimum=1)
# A running operation whose heartbeat is older than this is failed as "worker lost".
OPERATIONS_WORKER_LOST_AFTER = timedelta(
    seconds=env_int("OPERATIONS_WORKER_LOST_SECONDS", 60, minimum=5)
)
OPERATIONS_REAPER_INTERVAL_SECONDS = env_int("OPERATIONS_REAPER_INTERVAL_SECONDS", 30, minimum=1)
# A queued operation no worker claimed is sent again after this, and failed after the next.
OPERATIONS_QUEUED_RESEND_AFTER = timedelta(
    seconds=env_int("OPERATIONS_QUEUED_RESEND_SECONDS", 120, minimum=5)
)
OPERATIONS_QUEUED_MAX_SENDS = env_int("OPERATIONS_QUEUED_MAX_SENDS", 3, minimum=1)
OPERATIONS_APPROVAL_TTL = timedelta(minutes=env_int("OPERATIONS_APPROVAL_MINUTES", 60, minimum=1))
# Kinds that need a second admin's approval wherever they run, beyond what the kinds declare.
OPERATIONS_REQUIRE_APPROVAL = env_list("OPERATIONS_REQUIRE_APPROVAL", [])
BACKUP_DIR = Path(env_str("BACKUP_DIR", str(VAR_DIR / "backups")))

# --- Backups -------------------------------------------------------------------------------

# Directory storages must lie inside one of these (an admin cannot point the workers anywhere).
BACKUP_LOCAL_ROOTS = env_list("BACKUP_LOCAL_ROOTS", [str(BACKUP_DIR)])
# S3 multipart part size; parts grow by this much every 1000 parts (S3 allows 10,000).
BACKUP_S3_PART_SIZE_MB = env_int("BACKUP_S3_PART_SIZE_MB", 8, minimum=8)
# zstd level of the dumps. 1 compresses Python source 4.6 % worse than pg_dump's gzip -6 at
# ten times its speed; 3 is 7 % better on such text but seven times slower than 1 on text of
# random characters (1.1 s against 0.16 s for 200 MiB), for no gain there.
BACKUP_ZSTD_LEVEL = env_int("BACKUP_ZSTD_LEVEL", 1, minimum=1)
# The exact row counts taken at the start of a backup stop after this (statement_timeout).
BACKUP_COUNT_TIMEOUT_SECONDS = env_int("BACKUP_COUNT_TIMEOUT_SECONDS", 300, minimum=1)
BACKUP_TIME_LIMIT_SECONDS = env_int("BACKUP_TIME_LIMIT_SECONDS", 6 * 3600, minimum=60)
# Where versioned PostgreSQL clients live: the pg_dump matching the server's major is used.
BACKUP_PG_BIN_GLOB = env_str("BACKUP_PG_BIN_GLOB", "/usr/lib/postgresql/*/bin")
# Restores download the backup here while checking its SHA-256, before touching the target
# (and pg_restore -j needs a seekable file): room for one uncompressed dump.
BACKUP_RESTORE_DIR = Path(env_str("BACKUP_RESTORE_DIR", str(VAR_DIR / "restores")))
BACKUP_RESTORE_JOBS = env_int("BACKUP_RESTORE_JOBS", 4, minimum=1)
BACKUP_RESTORE_TIME_LIMIT_SECONDS = env_int(
    "BACKUP_RESTORE_TIME_LIMIT_SECONDS", 6 * 3600, minimum=60
)
# Test restores create their scratch database on this server
# (postgres://user:password@host:port/maintenance_db?sslmode=…); empty: the target's own.
BACKUP_SCRATCH_DATABASE_URL = env_str("BACKUP_SCRATCH_DATABASE_URL", "")
# Statement timeout of each admin-defined integrity check.
BACKUP_CHECK_TIMEOUT_SECONDS = env_int("BACKUP_CHECK_TIMEOUT_SECONDS", 60, minimum=1)
# A test restore of each target this often (quarterly), and soon after its first good backup;
# a target without a passed one this recent shows amber.
BACKUP_TEST_RESTORE_DAYS = env_int("BACKUP_TEST_RESTORE_DAYS", 90, minimum=2)
BACKUP_VERIFIED_RESTORE_MAX_AGE_DAYS = env_int(
    "BACKUP_VERIFIED_RESTORE_MAX_AGE_DAYS", 90, minimum=1
)

# --- Services: health probes and the deployments' observed state ---------------------------

HEALTH_PROBE_INTERVAL = timedelta(seconds=env_int("HEALTH_PROBE_SECONDS", 30, minimum=5))
HEALTH_PROBE_TIMEOUT_SECONDS = env_int("HEALTH_PROBE_TIMEOUT_SECONDS", 5, minimum=1)
HEALTH_PROBE_CONCURRENCY = env_int("HEALTH_PROBE_CONCURRENCY", 32, minimum=1)
# Raw probe results are kept this long; hourly rollups keep the uptime for longer.
HEALTH_RAW_RETENTION = timedelta(hours=env_int("HEALTH_RAW_RETENTION_HOURS", 48, minimum=25))
HEALTH_TLS_WARNING_DAYS = env_int("HEALTH_TLS_WARNING_DAYS", 30, minimum=1)
# A CA bundle trusted besides the system's, for health URLs behind an internal CA.
HEALTH_PROBE_CA_BUNDLE = env_str("HEALTH_PROBE_CA_BUNDLE", "") or None
DEPLOYMENTS_REFRESH_SECONDS = env_int("DEPLOYMENTS_REFRESH_SECONDS", 30, minimum=5)

# --- Maintenance windows (the runbooks' communication plan) ---------------------------
MAINTENANCE_NOTICE = timedelta(days=env_int("MAINTENANCE_NOTICE_DAYS", 7, minimum=0))
MAINTENANCE_REMIND_BEFORE = timedelta(hours=env_int("MAINTENANCE_REMIND_HOURS", 24, minimum=1))
# Sent more than this after its due time, a message says it is late.
MAINTENANCE_LATE_AFTER = timedelta(minutes=env_int("MAINTENANCE_LATE_MINUTES", 5, minimum=1))
# A message claimed this long ago and never recorded is marked unconfirmed (never re-sent).
MAINTENANCE_CLAIM_TIMEOUT = timedelta(minutes=env_int("MAINTENANCE_CLAIM_MINUTES", 10, minimum=1))
MAINTENANCE_OCCURRENCES_AHEAD = env_int("MAINTENANCE_OCCURRENCES_AHEAD", 8, minimum=1)
MAINTENANCE_NOTIFY_EMAILS = env_list("MAINTENANCE_NOTIFY_EMAILS", [])
MAINTENANCE_WEBHOOK_URL = env_str("MAINTENANCE_WEBHOOK_URL", "")

# The backup storage (by name) that receives the signed audit chain head every hour, locked
# for this many days where the bucket has S3 object lock; "" keeps checkpoints in the database.
AUDIT_HEAD_STORAGE = env_str("AUDIT_HEAD_STORAGE", "")
AUDIT_HEAD_RETAIN_DAYS = env_int("AUDIT_HEAD_RETAIN_DAYS", 400, minimum=1)

CELERY_BEAT_SCHEDULE = {
    "reap-operations": {
        "task": "apps.operations.tasks.reap_operations",
        "schedule": float(OPERATIONS_REAPER_INTERVAL_SECONDS),
    },
    "probe-health": {
        "task": "apps.services.tasks.probe_health",
        "schedule": HEALTH_PROBE_INTERVAL.total_seconds(),
    },
    "roll-up-health": {
        "task": "apps.services.tasks.roll_up_health",
        "schedule": 600.0,
    },
    "verify-audit-chain": {
        "task": "apps.audit.tasks.verify_audit_chain",
        "schedule": crontab(hour=3, minute=17),  # nightly, off the hour
    },
    "write-audit-checkpoint": {
        "task": "apps.audit.tasks.write_audit_checkpoint",
        "schedule": crontab(minute=7),  # hourly: a signed chain head, copied to AUDIT_HEAD_STORAGE
    },
    "refresh-deployments": {
        "task": "apps.services.tasks.refresh_deployments",
        "schedule": float(DEPLOYMENTS_REFRESH_SECONDS),
    },
    "start-due-test-restores": {
        "task": "apps.backups.tasks.start_due_test_restores",
        "schedule": crontab(minute=41),  # hourly: a new target's first proof comes soon
    },
    "start-due-prunes": {
        "task": "apps.backups.tasks.start_due_prunes",
        "schedule": crontab(minute=47),  # hourly: targets an admin set to prune automatically
    },
    # Scheduled backups (each due time claimed once) and backup freshness alerts.
    "tick-backups": {
        "task": "apps.backups.tasks.tick_backups",
        "schedule": crontab(),  # every minute
    },
    # Acknowledgement deadlines and overdue updates (a SEV-1 has 5 minutes to be acknowledged).
    "watch-incidents": {
        "task": "apps.incidents.tasks.watch_incidents",
        "schedule": 30.0,
    },
    # Maintenance windows: start, end and each message of the communication plan on time.
    "tick-maintenance": {
        "task": "apps.maintenance.tasks.tick_maintenance",
        "schedule": crontab(),  # every minute
    },
    # Metrics: every definition of every service, in one query per template (apps.metrics).
    "evaluate-metrics": {
        "task": "apps.metrics.tasks.evaluate_metrics",
        "schedule": crontab(),  # every minute
    },
}

# --- Metrics endpoint --------------------------------------------------------------------

# When set, GET /metrics needs "Authorization: Bearer <token>".
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# POST /api/alertmanager/ needs "Authorization: Bearer <token>"; empty: the receiver is off.
ALERTMANAGER_TOKEN = env_str("ALERTMANAGER_TOKEN", "")
# Checks after a change: error rate and p95 latency this long after a change vs. before it.
VERIFICATION_SECONDS = env_int("VERIFICATION_SECONDS", 300, minimum=1)

# --- Logging: JSON lines carrying the request id -----------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.common.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "apps.common.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
