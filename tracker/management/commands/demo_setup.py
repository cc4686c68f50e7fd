from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tracker.demo import DEMO_PROJECT, demo_configs
from tracker.runs import create_run
from tracker.studies import create_preset
from trainer.pathologies import PATHOLOGIES, with_instrumentation


class Command(BaseCommand):
    help = ("Create the demo login, queue the compare-optimizers study (7 optimizers x 3 seeds on the digits MLP) "
            "and three long runs to watch live.")

    def add_arguments(self, parser):
        parser.add_argument("--password", default="trainwatch-demo")
        parser.add_argument("--no-runs", action="store_true", help="only create the login")
        parser.add_argument("--pathologies", action="store_true",
                            help="also queue one run per pathology the diagnosis knows (project 'pathologies')")

    def handle(self, *args, **options):
        users = get_user_model()
        user, created = users.objects.get_or_create(username="demo", defaults={"is_staff": True, "is_superuser": True})
        user.set_password(options["password"])
        user.is_staff = user.is_superuser = True
        user.save()
        self.stdout.write(f"{'created' if created else 'updated'} login: demo / {options['password']}")
        if options["no_runs"]:
            return
        study = create_preset("compare-optimizers", DEMO_PROJECT, user, name="compare optimizers")
        self.stdout.write(f"queued study #{study.pk} {study.name}: {study.runs.count()} runs "
                          f"(its page: /studies/{study.pk}/)")
        # long runs to watch live, after the study (lower priority)
        for name, config in demo_configs():
            run = create_run(DEMO_PROJECT, config, name, user, priority=-10)
            self.stdout.write(f"queued run #{run.pk} {run.name}")
        if options["pathologies"]:
            for name, (config, rule) in PATHOLOGIES.items():
                run = create_run("pathologies", with_instrumentation(config), f"{name} (expect {rule})", user)
                self.stdout.write(f"queued run #{run.pk} {run.name}")
