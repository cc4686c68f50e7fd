from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tracker.core.tensorboard import export_run
from tracker.models import Run


class Command(BaseCommand):
    help = "Export a run as a TensorBoard event file: manage.py export_tensorboard RUN_ID OUTDIR"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", type=int)
        parser.add_argument("outdir", type=Path, help="a log directory; the run gets a folder of its own in it")

    def handle(self, *args: Any, **options: Any) -> None:
        run = Run.objects.filter(pk=options["run_id"]).first()
        if run is None:
            raise CommandError(f"run_id: no run #{options['run_id']}")
        path = export_run(run, options["outdir"] / f"trainwatch-run-{run.pk}")
        self.stdout.write(f"wrote {path}: tensorboard --logdir {options['outdir']}")
