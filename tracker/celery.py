"""The Celery app, configured from Django settings (the CELERY_* block). Its tasks live in
tracker.worker.tasks; the web process sends them by name and never imports them (they
import the trainer, and so torch)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

app = Celery("tracker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tracker.worker"])
