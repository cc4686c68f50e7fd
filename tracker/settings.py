"""Django settings: every value from the environment, through strict helpers.

DATABASE_URL and REDIS_URL name the servers; `python -m tracker.launcher`
(what `make demo` and `make test` run) starts embedded ones and sets both when
they are not given.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from tracker.services import recorded_urls

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
]

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
            ],
        },
    },
]

# Without DATABASE_URL / REDIS_URL, use the embedded servers if they are running
# (`python manage.py services start`); otherwise tracker.checks reports what to do.
_embedded_database_url, _embedded_redis_url = recorded_urls()
DATABASE_URL = os.getenv("DATABASE_URL") or _embedded_database_url or ""
DATABASES = {}
if DATABASE_URL:
    DATABASES["default"] = dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", "60"))
    if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
        raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgresql://...); other databases are not supported")
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

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", "0")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ---------------------------------------------------------------
REDIS_URL = os.getenv("REDIS_URL") or _embedded_redis_url or ""
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
CELERY_TASK_CREATE_MISSING_QUEUES = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = False
# The reaper (tracker.reap_lost_runs) runs from Celery beat: `celery worker -B` for one
# worker, or one `celery beat` process for a cluster.
CELERY_BEAT_SCHEDULE = {
    "reap-lost-runs": {"task": "tracker.reap_lost_runs", "schedule": envint("TRAINWATCH_REAP_EVERY", "30")},
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
