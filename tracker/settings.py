"""Django settings: every value from the environment, through strict helpers.

DATABASE_URL and REDIS_URL name the servers. Nothing here looks for the embedded
development servers: `python -m tracker.dev.launcher` (what `make demo` and `make test`
run) starts them and sets both, and `manage.py` sets both from them when they run.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default)
    if value in ("1", "True", "true"):
        return True
    if value in ("0", "False", "false", ""):
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: use 1/true or 0/false")


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", "0")

SECRET_KEY = os.getenv("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (make demo / make test set one for you; "
            "for development use DEBUG=1)"
        )
    SECRET_KEY = "development-only-key-never-used-with-debug-off"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off, e.g. ALLOWED_HOSTS=tracker.example.com")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "axes",
    "csp",
    "tracker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # last, as django-axes asks: it turns a locked-out login into its answer
    "axes.middleware.AxesMiddleware",
]

# Login throttling (django-axes): after TRAINWATCH_LOGIN_FAILURES wrong passwords for one user
# name from one address, its next logins (the site's and the admin's, right or wrong) are refused for
# TRAINWATCH_LOGIN_COOLOFF_MINUTES; a good login clears the count. API tokens are not passwords
# and are not counted.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# axes locks at the failure that reaches its limit: TRAINWATCH_LOGIN_FAILURES are answered as usual
AXES_FAILURE_LIMIT = envint("TRAINWATCH_LOGIN_FAILURES", "10") + 1
AXES_COOLOFF_TIME = datetime.timedelta(minutes=envint("TRAINWATCH_LOGIN_COOLOFF_MINUTES", "15"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

ROOT_URLCONF = "tracker.urls"
WSGI_APPLICATION = "tracker.wsgi.application"

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
            ]
        },
    }
]

# Without DATABASE_URL / REDIS_URL, the system check in tracker.apps says what to do.
DATABASE_URL = os.getenv("DATABASE_URL", "")
DATABASES = {}
if DATABASE_URL:
    DATABASES["default"] = dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", "60"))
    if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
        raise ImproperlyConfigured(
            "DATABASE_URL must point at PostgreSQL (postgresql://...); other databases are not supported"
        )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Set where `collectstatic` runs (the Docker image); without it (demo, tests)
# WhiteNoise serves straight from the static folders.
STATIC_ROOT = os.getenv("STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True

# --- Behind TLS (docs/security.md): a production deployment sets all of these -------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", "0")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# http:// is answered with a redirect to https://
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "0")
# a container's health check asks over plain HTTP from inside
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# browsers use https:// only, for this long (one year: 31536000)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", "0")
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "0")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "0")
# only behind a proxy that terminates TLS and sets X-Forwarded-Proto itself (else a client
# could claim https): links and redirects then say https://
if envbool("SECURE_PROXY_SSL_HEADER", "0"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy (django-csp): scripts, styles, images and requests from this server
# only; no inline script (every page's script is a static file), no plugin, no framing.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # style attributes set by the templates (bar widths, colours); no inline script
        "style-src": ["'self'", "'unsafe-inline'"],
        # first-layer weights travel as PNG data URLs
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- E-mail (alerts) -------------------------------------------------------
# SMTP when EMAIL_HOST is set; otherwise the messages are written to the log (console backend).
# EMAIL_BACKEND overrides, e.g. django.core.mail.backends.filebased.EmailBackend with EMAIL_FILE_PATH.
EMAIL_HOST = os.getenv("EMAIL_HOST", "")
EMAIL_BACKEND = os.getenv(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = envint("EMAIL_PORT", "25")
EMAIL_HOST_USER = os.getenv("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.getenv("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "0")
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", "0")
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", "10")
EMAIL_FILE_PATH = os.getenv("EMAIL_FILE_PATH", "")
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "trainwatch@localhost")

# --- Celery ---------------------------------------------------------------
REDIS_URL = os.getenv("REDIS_URL", "")
CELERY_BROKER_URL = REDIS_URL
# Results live in PostgreSQL (Run rows); Celery's result backend is not used.
CELERY_TASK_IGNORE_RESULT = True
# A training job is long: acknowledge only when it has finished, so a worker
# that dies mid-run leaves the message to be redelivered ...
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# ... and take one job at a time, so a busy worker never hoards queued jobs.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis redelivers an unacknowledged message after visibility_timeout; it must
# exceed the longest run (the task also refuses to start a run twice).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", str(7 * 24 * 3600)),
    # how often kombu looks for unacknowledged messages to redeliver (interval x throttle s)
    "unacked_restore_interval": envint("CELERY_UNACKED_RESTORE_INTERVAL", "10"),
    "unacked_restore_throttle": envint("CELERY_UNACKED_RESTORE_THROTTLE", "10"),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "cpu"
# The heavy work of a client's run (its roll-up, live diagnosis and end) goes to a queue of its
# own, which a worker started with `-Q upkeep` takes (`make demo` and docker-compose start one).
TRAINWATCH_UPKEEP_QUEUE = os.getenv("TRAINWATCH_UPKEEP_QUEUE", "upkeep")
CELERY_TASK_CREATE_MISSING_QUEUES = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = False
# The reaper (tracker.reap_lost_runs) runs from Celery beat: `celery worker -B` for one
# worker, or one `celery beat` process for a cluster.
CELERY_BEAT_SCHEDULE = {
    "reap-lost-runs": {"task": "tracker.reap_lost_runs", "schedule": envint("TRAINWATCH_REAP_EVERY", "30")},
    # alerts whose first sending failed (tracker.core.alerts.RETRY_DELAYS)
    "deliver-alerts": {"task": "tracker.deliver_alerts", "schedule": 60},
    # stored files nothing holds (a deleted run's checkpoints, an upload never made a version)
    "sweep-files": {"task": "tracker.sweep_files", "schedule": 3600},
}

# --- Trainwatch -----------------------------------------------------------
# The sink writes buffered points to PostgreSQL at most this often.
TRAINWATCH_FLUSH_SECONDS = float(os.getenv("TRAINWATCH_FLUSH_SECONDS", "1.0"))
# ... and diagnoses a running run at most this often.
TRAINWATCH_DIAGNOSE_SECONDS = float(os.getenv("TRAINWATCH_DIAGNOSE_SECONDS", "10.0"))
# A running run whose worker wrote no heartbeat (every flush, about 1 s) for this long
# is lost: requeued while it has attempts left, to resume from its latest checkpoint.
TRAINWATCH_LOST_SECONDS = float(os.getenv("TRAINWATCH_LOST_SECONDS", "60"))
# A running run saves a checkpoint at each epoch end (or every config.checkpoint_every
# steps), at most once this often; a lost run resumes from its latest one.
TRAINWATCH_CHECKPOINT_SECONDS = float(os.getenv("TRAINWATCH_CHECKPOINT_SECONDS", "30"))
TRAINWATCH_MAX_ATTEMPTS = envint("TRAINWATCH_MAX_ATTEMPTS", "3")
# A worker keeps training and buffering through a database outage this long, then fails the run.
TRAINWATCH_DB_OUTAGE_SECONDS = float(os.getenv("TRAINWATCH_DB_OUTAGE_SECONDS", "300"))
# A run config's data.path (MNIST, CIFAR-10, .npz files) must lie inside one of these folders
# of the workers' hosts, unless a staff user queued it (comma-separated).
TRAINWATCH_DATA_DIRS = envlist("TRAINWATCH_DATA_DIRS", str(BASE_DIR / "data"))
# Alert webhooks go to public addresses only (tracker.lib.outbound); these host names,
# addresses and networks (comma-separated, e.g. chat.internal,10.20.0.0/16) may be internal.
TRAINWATCH_WEBHOOK_ALLOW = envlist("TRAINWATCH_WEBHOOK_ALLOW", "")
# One delivery to a webhook, connecting, sending and reading its answer, ends within this.
TRAINWATCH_WEBHOOK_DEADLINE_SECONDS = float(os.getenv("TRAINWATCH_WEBHOOK_DEADLINE_SECONDS", "10"))
# Where people reach this server: the run links of alerts (e-mails and webhooks) start with it.
TRAINWATCH_PUBLIC_URL = os.getenv("TRAINWATCH_PUBLIC_URL", "http://localhost:8000")
# The largest payload a client may send in one request (it splits larger hand-offs).
TRAINWATCH_INGEST_MAX_BYTES = envint("TRAINWATCH_INGEST_MAX_BYTES", str(32 * 1024 * 1024))
# A run's console output kept at most (tracker.core.console); past it, a mark and a count.
TRAINWATCH_CONSOLE_MAX_BYTES = envint("TRAINWATCH_CONSOLE_MAX_BYTES", str(16 * 2**20))
# the pages that may frame a shared report's chart (CSP frame-ancestors), comma-separated
TRAINWATCH_EMBED_ANCESTORS = envlist("TRAINWATCH_EMBED_ANCESTORS", "*")
# The artifact store (tracker.core.blobs): files under this folder, or, with a bucket, in any
# S3-compatible object store (credentials from boto3's usual AWS_* variables or files).
TRAINWATCH_ARTIFACTS_DIR = Path(
    os.getenv("TRAINWATCH_ARTIFACTS_DIR")
    or Path(os.getenv("TRAINWATCH_HOME") or BASE_DIR / ".trainwatch") / "artifacts"
)
TRAINWATCH_ARTIFACTS_S3_BUCKET = os.getenv("TRAINWATCH_ARTIFACTS_S3_BUCKET", "")
TRAINWATCH_ARTIFACTS_S3_PREFIX = os.getenv("TRAINWATCH_ARTIFACTS_S3_PREFIX", "")
TRAINWATCH_ARTIFACTS_S3_ENDPOINT = os.getenv("TRAINWATCH_ARTIFACTS_S3_ENDPOINT", "")
# how long a signed download URL of the object store stays valid
TRAINWATCH_ARTIFACTS_URL_SECONDS = envint("TRAINWATCH_ARTIFACTS_URL_SECONDS", "300")
# the largest file an artifact may hold, and the most files a version may hold
TRAINWATCH_ARTIFACT_MAX_FILE_BYTES = envint("TRAINWATCH_ARTIFACT_MAX_FILE_BYTES", str(64 * 2**30))
TRAINWATCH_ARTIFACT_MAX_FILES = envint("TRAINWATCH_ARTIFACT_MAX_FILES", "10000")
