from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register


class TrackerConfig(AppConfig):
    name = "tracker"
    verbose_name = "Trainwatch"
    default_auto_field = "django.db.models.BigAutoField"


@register()
def server_urls(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A missing server URL is reported with what to do about it."""
    errors: list[CheckMessage] = []
    if not settings.DATABASES:
        errors.append(
            Error(
                "DATABASE_URL is not set and no embedded PostgreSQL is running.",
                hint="Run `python manage.py services start` (or use `make demo` / `make test`), "
                "or set DATABASE_URL=postgresql://user:password@host:5432/dbname",
                id="tracker.E001",
            )
        )
    if not settings.REDIS_URL:
        errors.append(
            Error(
                "REDIS_URL is not set and no embedded Redis is running.",
                hint="Run `python manage.py services start`, or set REDIS_URL=redis://host:6379/0",
                id="tracker.E002",
            )
        )
    return errors
