"""Celery tasks and worker signals: thin wrappers that take ids and call plain functions."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import torch
from celery import Task, shared_task
from celery.signals import worker_process_init, worker_ready, worker_shutting_down
from django.conf import settings
from django.utils import timezone

from tracker.core import checkpoints
from tracker.core.alerts import deliver_due
from tracker.core.dispatch import END_RUN, REFRESH_RUN, TRAIN_NEXT
from tracker.core.lifecycle import end_as_reported
from tracker.core.lifecycle import reap_lost_runs as reap
from tracker.core.live import upkeep
from tracker.models import Run, Worker
from tracker.worker.execute import execute_next
from trainer.entry import describe_registered

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, name=TRAIN_NEXT)
def train_next(self: Task, queue: str) -> str:
    """One token per queued run: train the queue's next run (tracker.worker.execute.claim_next)."""
    return execute_next(queue, self.request.hostname or "unknown")


@shared_task(name=REFRESH_RUN, ignore_result=True)
def refresh_run(run_id: int) -> None:
    """A client's running run: its small chunks rolled up, then its live diagnosis."""
    upkeep(run_id)


@shared_task(name=END_RUN, ignore_result=True)
def end_run(run_id: int) -> str | None:
    """A client's run whose last payload reported its end: written (once) as reported."""
    return end_as_reported(run_id)


@shared_task(name="tracker.reap_lost_runs", ignore_result=True)
def reap_lost_runs() -> list[tuple[int, str]]:
    """Periodic (Celery beat): requeue or mark `lost` the runs whose worker went silent."""
    done = reap(settings.TRAINWATCH_LOST_SECONDS, settings.TRAINWATCH_MAX_ATTEMPTS)
    for run_id, what in done:
        log.warning("run %s: no heartbeat for %s s: %s", run_id, settings.TRAINWATCH_LOST_SECONDS, what)
    return done


@shared_task(name="tracker.sweep_files", ignore_result=True)
def sweep_files() -> int:
    """Periodic (Celery beat): stored files that nothing holds any more, a day after."""
    return checkpoints.sweep(timezone.now())


@shared_task(name="tracker.deliver_alerts", ignore_result=True)
def deliver_alerts() -> int:
    """Periodic (Celery beat): alerts whose sending failed (or whose sender died), once due."""
    return deliver_due()


@worker_process_init.connect
def _share_cpu_cores(**_: object) -> None:
    """Each pool process trains on its share of the cores rather than all of them,
    so that concurrent runs do not thrash each other."""
    processes = int(os.environ.get("TRAINWATCH_WORKER_CONCURRENCY", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, processes)))


def describe_device() -> str:
    if torch.cuda.is_available():
        names = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            names.append(f"{props.name} ({props.total_memory / 2**30:.0f} GiB)")
        return ", ".join(names)
    return f"CPU ({os.cpu_count()} cores)"


@worker_ready.connect
def _record_worker(sender: Any = None, **_: object) -> None:
    """What this worker is: the workers view of the job queue shows it."""
    now = timezone.now()
    queues = sorted(queue.name for queue in sender.task_consumer.queues) if sender is not None else []
    Worker.objects.update_or_create(
        name=sender.hostname,
        defaults={
            "hostname": socket.gethostname(),
            "queues": queues,
            "device": describe_device(),
            "torch_version": torch.__version__,
            # imported once here, so that the server can validate a job's params without importing anything
            "entry_points": describe_registered(),
            "started_at": now,
            "seen_at": now,
        },
    )


@worker_shutting_down.connect
def _stop_runs_of_this_worker(sender: str | None = None, **_: object) -> None:
    """On a warm shutdown, ask this worker's runs to stop so that it exits within seconds
    instead of waiting for every run to finish."""
    stopped = Run.objects.filter(status=Run.Status.RUNNING, worker=sender).update(cancel_requested=True)
    if stopped:
        log.warning("worker %s shutting down: asked %d running run(s) to stop", sender, stopped)
