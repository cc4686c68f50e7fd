from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tracker.core.runs import check_project
from tracker.core.tensorboard import import_logdir, run_folders


class Command(BaseCommand):
    help = (
        "Import a TensorBoard log directory: every folder holding event files becomes a run (scalars as "
        "series, histograms as histograms): manage.py import_tensorboard LOGDIR --project P"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("logdir", type=Path)
        parser.add_argument("--project", default="tensorboard")

    def handle(self, *args: Any, **options: Any) -> None:
        logdir: Path = options["logdir"]
        if not logdir.is_dir():
            raise CommandError(f"logdir: {logdir} is not a folder")
        errors: dict[str, str] = {}
        project = check_project(options["project"], None, errors)
        if errors:
            raise CommandError(f"--project: {errors['project']}")
        if not run_folders(logdir):
            raise CommandError(f"logdir: no TensorBoard event file (events.out.tfevents.*) under {logdir}")
        for run in import_logdir(logdir, project):
            self.stdout.write(
                f"imported run #{run.pk} {run.name}: {run.series.count()} series, "
                f"{run.histograms.count()} histograms ({run.get_absolute_url()})"
            )
