"""Work for the workers, sent by task name: code that creates runs imports the Celery app,
never the worker's task module (which imports the trainer, and so torch)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from tracker.celery import app

# tracker.worker.tasks registers its tasks under these names
TRAIN_NEXT = "tracker.train_next"
# the heavy work of a client's run, out of the web request: its roll-up and live diagnosis ...
REFRESH_RUN = "tracker.refresh_run"
# ... and the end its last payload reported (compaction, final diagnosis, alerts, its study's next step)
END_RUN = "tracker.end_run"


def send_train_token(queue: str, task_id: str) -> None:
    """One token to the queue (see tracker.worker.execute.claim_next), sent only once the
    transaction that queued the run has committed, so the worker always finds the run."""
    transaction.on_commit(lambda: app.send_task(TRAIN_NEXT, args=[queue], queue=queue, task_id=task_id))


def send_upkeep(task: str, run_id: int) -> None:
    """REFRESH_RUN or END_RUN for a run, once the request's transaction has committed, to the
    upkeep queue (TRAINWATCH_UPKEEP_QUEUE): a queue of its own, so that training jobs never
    wait behind it nor it behind them. Should the message be lost, the reaper writes the end."""
    transaction.on_commit(
        lambda: app.send_task(task, args=[run_id], queue=settings.TRAINWATCH_UPKEEP_QUEUE, ignore_result=True)
    )
