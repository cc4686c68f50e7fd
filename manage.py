#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["services"]:
        # The embedded servers are what makes the settings loadable (DATABASE_URL,
        # REDIS_URL), so this command runs before Django is set up.
        from tracker import services

        sys.exit(services.main(sys.argv[2:]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
