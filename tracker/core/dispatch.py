"""Work for the workers, sent by task name: code that creates runs imports the Celery app,
never the worker's task module (which imports the trainer, and so torch)."""

from __future__ import annotations

from django.db import transaction

from tracker.celery import app

# tracker.worker.tasks registers its task under this name
TRAIN_NEXT = "tracker.train_next"


def send_train_token(queue: str, task_id: str) -> None:
    """One token to the queue (see tracker.worker.execute.claim_next), sent only once the
    transaction that queued the run has committed, so the worker always finds the run."""
    transaction.on_commit(lambda: app.send_task(TRAIN_NEXT, args=[queue], queue=queue, task_id=task_id))
