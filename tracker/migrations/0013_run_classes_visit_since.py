"""Run.classes (the classes of its data, as the trainer loaded it: the diagnosis checks the
initial loss against it) and DashboardVisit.since (where a visit's "since your last visit"
starts, kept through the visit)."""

from django.db import migrations, models
from django.db.models import F

# What the trainer's loader reports for the runs stored before this field existed (a frozen
# copy for this migration; the loader is the rule from now on).
BUNDLED_CLASSES = {"digits": 10, "mnist": 10, "cifar10": 10, "moons": 2}


def fill(apps, schema_editor):
    Run = apps.get_model("tracker", "Run")
    for name, classes in BUNDLED_CLASSES.items():
        Run.objects.filter(config__data__name=name).update(classes=classes)
    for run in Run.objects.filter(config__data__name__in=["spiral", "blobs"]).only("pk", "config"):
        Run.objects.filter(pk=run.pk).update(classes=run.config["data"].get("classes"))
    apps.get_model("tracker", "DashboardVisit").objects.update(since=F("seen_at"))


class Migration(migrations.Migration):
    dependencies = [("tracker", "0012_studies")]

    operations = [
        migrations.AddField(
            model_name="run", name="classes",
            field=models.IntegerField(blank=True, null=True, help_text="classes in the data, as the trainer loaded it"),
        ),
        migrations.AddField(
            model_name="dashboardvisit", name="since",
            field=models.DateTimeField(null=True, help_text="where this visit's 'since your last visit' starts"),
        ),
        migrations.AlterField(
            model_name="dashboardvisit", name="seen_at",
            field=models.DateTimeField(help_text="the last time the user looked at the dashboard"),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="dashboardvisit", name="since",
            field=models.DateTimeField(help_text="where this visit's 'since your last visit' starts"),
        ),
    ]
