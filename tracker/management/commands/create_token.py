from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tracker.models import ApiToken


class Command(BaseCommand):
    help = "Issue an API token for a user: manage.py create_token --user alice --name nightly-script"

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True)
        parser.add_argument("--name", required=True, help="what the token is for, e.g. the script's name")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"--user: no user named {options['user']!r}")
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("--name: 1 to 100 characters")
        _, token = ApiToken.issue(user, name)
        self.stdout.write(f"{token}\n(shown once; send it as 'Authorization: Bearer <token>')")
