"""manage.py study create --spec file.json|yaml | study preset NAME | study list"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tracker.core.studies import create_study
from tracker.models import Study
from trainer.config import ConfigError
from trainer.presets import PRESETS
from trainer.search import parse_spec_text


class Command(BaseCommand):
    help = "Create a study from a spec file (JSON or YAML) or a preset; list studies."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a study from a spec file")
        create.add_argument("--spec", required=True, help="JSON or YAML file: kind, base, choices or params, ...")
        create.add_argument("--project", default="default")
        create.add_argument("--name", help="default: the file's name")
        create.add_argument("--notes", default="")
        preset = sub.add_parser("preset", help="a ready-made study")
        preset.add_argument("name", choices=sorted(PRESETS))
        preset.add_argument("--project", default="default")
        sub.add_parser("list", help="the latest studies")

    def handle(self, *args, **options):
        if options["action"] == "list":
            for study in Study.objects.order_by("-created_at")[:50]:
                self.stdout.write(f"#{study.pk} {study.name} ({study.kind}, {study.status}): {study.runs.count()} runs")
            return
        try:
            if options["action"] == "preset":
                study = create_study(options["project"], options["name"], preset=options["name"])
            else:
                path = Path(options["spec"])
                try:
                    text = path.read_text()
                except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as error:
                    raise CommandError(f"--spec: cannot read {path}: {error}") from None
                try:
                    spec = parse_spec_text(text)
                except ConfigError as error:
                    raise CommandError(f"--spec: {path} {error.errors['spec']}") from None
                study = create_study(options["project"], options["name"] or path.stem, spec, notes=options["notes"])
        except ConfigError as error:
            lines = "\n".join(f"  {field}: {message}" for field, message in error.errors.items())
            raise CommandError(f"the study is not valid; nothing was created:\n{lines}") from None
        self.stdout.write(
            f"created study #{study.pk} {study.name}: {study.runs.count()} runs queued (/studies/{study.pk}/)"
        )
