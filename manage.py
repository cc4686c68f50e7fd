#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["services"] or not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        # Development only: a deployment names its servers, and then nothing of tracker.dev
        # (nor the embedded servers' packages) is imported.
        from tracker.dev import services

        if sys.argv[1:2] == ["services"]:
            # The embedded servers are what makes the settings loadable (DATABASE_URL,
            # REDIS_URL), so this command runs before Django is set up.
            sys.exit(services.main(sys.argv[2:]))
        # Embedded servers started earlier stand in for unset DATABASE_URL / REDIS_URL. The
        # settings never look for them, so a production process never reads their state file.
        database_url, redis_url = services.recorded_urls()
        if database_url:
            os.environ.setdefault("DATABASE_URL", database_url)
        if redis_url:
            os.environ.setdefault("REDIS_URL", redis_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
