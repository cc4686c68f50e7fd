"""System checks: a missing server URL is reported with what to do about it."""

from django.conf import settings
from django.core.checks import Error, register


@register()
def server_urls(app_configs, **kwargs):
    errors = []
    if not settings.DATABASES:
        errors.append(Error(
            "DATABASE_URL is not set and no embedded PostgreSQL is running.",
            hint="Run `python manage.py services start` (or use `make demo` / `make test`), "
                 "or set DATABASE_URL=postgresql://user:password@host:5432/dbname",
            id="tracker.E001",
        ))
    if not settings.REDIS_URL:
        errors.append(Error(
            "REDIS_URL is not set and no embedded Redis is running.",
            hint="Run `python manage.py services start`, or set REDIS_URL=redis://host:6379/0",
            id="tracker.E002",
        ))
    return errors
