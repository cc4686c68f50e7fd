import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tracker.core.runs import create_run
from trainer.config import ConfigError


class Command(BaseCommand):
    help = "Validate a run config (a JSON file) and queue it: manage.py queue_run --config run.json"

    def add_arguments(self, parser):
        parser.add_argument("--config", required=True, help="path to a JSON file with the run config")
        parser.add_argument("--project", default="default")
        parser.add_argument("--name", default="")
        parser.add_argument("--tag", action="append", dest="tags", help="a tag (repeat for several)")
        parser.add_argument("--priority", type=int, default=0, help="-100 to 100; higher runs first (default 0)")
        parser.add_argument(
            "--check",
            action="store_true",
            help="queue the sanity checks and the gradient check of the config instead of training",
        )

    def handle(self, *args, **options):
        path = Path(options["config"])
        try:
            config = json.loads(path.read_text())
        except FileNotFoundError:
            raise CommandError(f"--config: no such file {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CommandError(f"--config: {path} is not valid JSON: {error}") from None
        if options["check"]:
            if not isinstance(config, dict):
                raise CommandError(f"{path} is not a valid run config: it must be a JSON object")
            config = {**config, "job": "check"}
        try:
            run = create_run(
                options["project"], config, options["name"], tags=options["tags"], priority=options["priority"]
            )
        except ConfigError as error:
            lines = "\n".join(f"  {field}: {message}" for field, message in error.errors.items())
            raise CommandError(f"{path} is not a valid run config; nothing was queued:\n{lines}") from None
        self.stdout.write(f"queued run #{run.pk} {run.name} on queue {run.queue}")
