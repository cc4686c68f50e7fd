from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tracker.core.runs import create_run
from tracker.core.studies import create_study
from trainer.pathologies import PATHOLOGIES, with_instrumentation

DEMO_PROJECT = "demo"
# Sized so that a run lasts about 40-55 s on one core (72,000 steps at ~0.6 ms):
# long enough to watch its charts fill in, short enough to finish the study.
LONG_RUN: dict[str, Any] = {
    "model": {"kind": "mlp", "hidden": [256, 128], "activation": "relu"},
    "data": {"name": "digits"},
    "batch_size": 8,
    "epochs": 400,
    "seed": 0,
}
LONG_RUNS: list[tuple[str, dict[str, Any]]] = [
    ("digits-mlp sgd", {**LONG_RUN, "optimizer": {"name": "sgd", "lr": 0.01}}),
    ("digits-mlp adam", {**LONG_RUN, "optimizer": {"name": "adam", "lr": 0.0003}}),
    ("digits-mlp momentum", {**LONG_RUN, "optimizer": {"name": "momentum", "lr": 0.01, "momentum": 0.9}}),
]


class Command(BaseCommand):
    help = (
        "Create the demo login, queue the compare-optimizers study (7 optimizers x 3 seeds on the digits MLP) "
        "and three long runs to watch live."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password", default="trainwatch-demo")
        parser.add_argument("--no-runs", action="store_true", help="only create the login")
        parser.add_argument(
            "--pathologies",
            action="store_true",
            help="also queue one run per pathology the diagnosis knows (project 'pathologies')",
        )

    def handle(self, *args, **options):
        users = get_user_model()
        user, created = users.objects.get_or_create(username="demo", defaults={"is_staff": True, "is_superuser": True})
        user.set_password(options["password"])
        user.is_staff = user.is_superuser = True
        user.save()
        self.stdout.write(f"{'created' if created else 'updated'} login: demo / {options['password']}")
        if options["no_runs"]:
            return
        study = create_study(DEMO_PROJECT, "compare optimizers", user=user, preset="compare-optimizers")
        self.stdout.write(
            f"queued study #{study.pk} {study.name}: {study.runs.count()} runs (its page: /studies/{study.pk}/)"
        )
        # long runs to watch live, after the study (lower priority)
        for name, config in LONG_RUNS:
            run = create_run(DEMO_PROJECT, config, name, user, priority=-10)
            self.stdout.write(f"queued run #{run.pk} {run.name}")
        if options["pathologies"]:
            for name, (config, rule) in PATHOLOGIES.items():
                run = create_run("pathologies", with_instrumentation(config), f"{name} (expect {rule})", user)
                self.stdout.write(f"queued run #{run.pk} {run.name}")
