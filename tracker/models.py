"""What Trainwatch stores. Metric storage (chunks) is written and read by
tracker.core.storage with raw SQL; the models here define the tables and the
per-run summaries that pages read without touching the series."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.validators import URLValidator
from django.db import models
from django.db.models import F, OrderBy
from django.urls import reverse
from django.utils import timezone

from tracker.lib.outbound import validate_webhook_url


class Project(models.Model):
    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="projects",
        help_text="who sees this project's runs (staff see every project)",
    )
    # where an error finding, a divergence, a lost or a failed run is announced (tracker.core.alerts)
    alert_emails = ArrayField(models.EmailField(), default=list, blank=True, help_text="e-mail addresses")
    alert_webhooks = ArrayField(
        models.URLField(max_length=500, validators=[URLValidator(schemes=["http", "https"]), validate_webhook_url]),
        default=list,
        blank=True,
        help_text="http(s) URLs that get a JSON POST (public addresses, or TRAINWATCH_WEBHOOK_ALLOW)",
    )
    # the latest "Send a test alert": {"started", "by", "targets", "outcomes": {target: '' or error}, "done"}
    alert_test = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.name


PRIORITY_MIN, PRIORITY_MAX = -100, 100


class Study(models.Model):
    """A named set of runs generated from a base config and a spec (trainer.search)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        FINISHED = "finished"
        CANCELLED = "cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="studies")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32)
    spec = models.JSONField(help_text="the validated spec (trainer.search.StudySpec.to_dict)")
    stage_params = models.JSONField(
        default=list, blank=True, help_text="per stage, the searched ranges (coarse-to-fine narrows them)"
    )
    stage = models.IntegerField(default=0, help_text="the stage in progress")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    preset = models.CharField(max_length=64, blank=True)
    notes = models.TextField(blank=True, help_text="the team's notes; shown in the report")
    ensemble = models.JSONField(null=True, blank=True, help_text="the last ensemble evaluation")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # created by staff or on the server's command line: its later stages, queued as its creator,
    # may read any path (tracker.core.runs.reads_any_path); a member's study never, even once the
    # member's account is gone
    reads_any_path = models.BooleanField(default=False)
    message = models.CharField(max_length=500, blank=True, help_text="why the study ended before its last stage")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return f"study #{self.pk} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("study", args=[self.pk])


class RunDict(TypedDict):
    id: int
    name: str
    tags: list[str]
    status: str
    priority: int
    attempts: int
    resumed_from_step: int | None
    finished: bool
    device: str
    worker: str
    epoch: int
    epochs: int
    steps_done: int
    total_steps: int
    steps_per_epoch: int
    best_val_accuracy: float | None
    final_loss: float | None
    message: str
    error: str
    health: str
    findings: list
    finding_history: list
    rules_waiting: list
    created_at: str
    started_at: str | None
    finished_at: str | None
    seconds: float | None
    kind: str
    source: dict[str, Any]


class HistogramDict(TypedDict):
    step: int
    low: float
    high: float
    counts: list[int]
    mean: float
    std: float
    zero_fraction: float
    saturated_fraction: float
    nonfinite: int


@dataclass(frozen=True)
class RunSort:
    """A sortable column of the runs table (?sort=<name> or ?sort=-<name>), ties broken by id in
    the same direction. A column that can be empty shows its empty values last either way,
    which takes one index per direction; one that never is takes one index scanned both ways."""

    expression: Any
    nullable: bool
    # final_loss changes at every flush of a training run: an index on it would make each of
    # those row updates rewrite every index (no HOT update), so that sort reads the table
    indexed: bool = True


RUN_SORTS: dict[str, RunSort] = {
    "created": RunSort(F("created_at"), nullable=False),
    "name": RunSort(F("name"), nullable=False),
    "status": RunSort(F("status"), nullable=False),
    "health": RunSort(F("health"), nullable=False),
    "best_val_accuracy": RunSort(F("best_val_accuracy"), nullable=True),
    "final_loss": RunSort(F("final_loss"), nullable=True, indexed=False),
    "duration": RunSort(F("finished_at") - F("started_at"), nullable=True),
    # config JSON, read through an expression index rather than from every row
    "optimizer": RunSort(F("config__optimizer__name"), nullable=True),
    "lr": RunSort(F("config__optimizer__lr"), nullable=True),
}


def run_ordering(name: str, descending: bool) -> list[OrderBy]:
    sort = RUN_SORTS[name]
    # NULLS LAST only where there can be nulls: an index matches the clause as written
    nulls_last = True if sort.nullable else None
    if descending:
        return [sort.expression.desc(nulls_last=nulls_last), F("id").desc()]
    return [sort.expression.asc(nulls_last=nulls_last), F("id").asc()]


def _sort_indexes() -> list[models.Index]:
    """The runs table's pages in each sort order, read in index order (LIMIT 50 OFFSET n)."""
    indexes = []
    for name, sort in RUN_SORTS.items():
        if not sort.indexed:
            continue
        directions = (True, False) if sort.nullable else (True,)
        for descending in directions:
            suffix = "desc" if descending else "asc"
            indexes.append(models.Index(*run_ordering(name, descending), name=f"run_sort_{name[:12]}_{suffix}"))
    return indexes


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        DIVERGED = "diverged"
        LOST = "lost"
        STOPPED = "stopped", "stopped early"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.DIVERGED, Status.LOST, Status.STOPPED)

    class Kind(models.TextChoices):
        JOB = "job", "trained by a worker"
        EXTERNAL = "external", "sent by the trainwatch client"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=200, blank=True)
    tags = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    config = models.JSONField(help_text="the resolved, validated RunConfig")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    queue = models.CharField(max_length=32, default="cpu")
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.CASCADE, related_name="runs")
    stage = models.IntegerField(default=0, help_text="the study stage that queued it")
    study_values = models.JSONField(default=dict, blank=True, help_text="what the study varied: key -> value")
    priority = models.IntegerField(
        default=0, help_text=f"{PRIORITY_MIN} to {PRIORITY_MAX}; higher runs first; editable while the run is queued"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reads_any_path = models.BooleanField(
        default=False,
        help_text="queued by staff or an operator's CLI: its job may read files outside TRAINWATCH_DATA_DIRS",
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="Celery node name of the worker")
    device = models.CharField(max_length=64, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.IntegerField(default=0, help_text="times a worker has started this run")
    resumed_from_step = models.IntegerField(
        null=True, blank=True, help_text="the checkpoint's step the latest attempt went on from"
    )
    # progress and summary, updated at each flush so list pages never read series
    epoch = models.IntegerField(default=0)
    steps_done = models.IntegerField(default=0)
    total_steps = models.IntegerField(default=0)
    steps_per_epoch = models.IntegerField(default=0)
    classes = models.IntegerField(null=True, blank=True, help_text="classes in the data, as the trainer loaded it")
    best_val_accuracy = models.FloatField(null=True, blank=True)
    final_loss = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True, help_text="how the run ended, in words")
    checks = models.JSONField(null=True, blank=True, help_text="results of the preflight or check job")
    findings = models.JSONField(
        default=list,
        blank=True,
        help_text="the diagnosis's findings shown now, the most severe first (with when raised)",
    )
    finding_state = models.JSONField(
        default=dict, blank=True, help_text="findings seen but not yet shown, and shown ones lately not seen"
    )
    finding_history = models.JSONField(
        default=list, blank=True, help_text="each finding raised, changed or retracted, with the step and the reason"
    )
    rules_waiting = models.JSONField(
        default=list,
        blank=True,
        help_text="rules of the diagnosis that cannot read the run (yet): what they need, how to log it",
    )
    health = models.CharField(
        max_length=16, blank=True, help_text="the worst finding's severity (ok, info, warning, error); '' before any"
    )
    error = models.TextField(blank=True, help_text="traceback of a failed run")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.JOB)
    # external runs: where they train, and what the diagnosis needs to know of them
    source = models.JSONField(default=dict, blank=True, help_text="host, Python, torch, git commit of an external run")
    context = models.JSONField(
        default=dict,
        blank=True,
        help_text="external runs: optimizer, lr, loss, classes, activation (for the diagnosis)",
    )
    client_id = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        unique=True,
        help_text="the client's id for the run: a retried creation finds it again",
    )
    ingest_seq = models.BigIntegerField(default=-1, help_text="the last payload stored from the client")
    # payloads refused for what they held (their place in the order taken, the rest of the run
    # stored): [{"seq", "error", "at"}], the latest MAX_REFUSED_PAYLOADS
    ingest_refused = models.JSONField(default=list, blank=True)
    tensors = models.JSONField(default=list, blank=True, help_text="parameter tensors in the model's order")
    tensor_kinds = models.JSONField(
        default=dict, blank=True, help_text="each parameter tensor's kind (weight, bias, norm_scale, ...)"
    )
    diagnosed_at = models.DateTimeField(null=True, blank=True)
    # its console output kept (tracker.core.console), and what was cut once over the cap
    console_bytes = models.BigIntegerField(default=0)
    console_dropped = models.BigIntegerField(default=0, help_text="bytes of console output past the cap, not kept")
    # the end a client's last payload reported ({"status", "message", "error", "finished_at"}),
    # until a task on the upkeep queue (or the reaper, should that task be lost) writes it
    ending = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [
            *_sort_indexes(),
            # runs list filtered by status, newest first
            models.Index(fields=["status", "-created_at"], name="run_status_created_idx"),
            # the dashboard's "ended badly since your last visit": finished_at >= since, newest first
            models.Index(F("finished_at").desc(), F("id").desc(), name="run_finished_idx"),
            # the dashboard's best run of each project: one index lookup per project
            models.Index(
                F("project_id"),
                F("best_val_accuracy").desc(),
                F("id"),
                name="run_project_best_idx",
                condition=models.Q(best_val_accuracy__isnull=False),
            ),
            # a worker claims the next run of its queue: highest priority, then oldest
            models.Index(
                fields=["queue", "-priority", "created_at"],
                name="run_queued_order_idx",
                condition=models.Q(status="queued"),
            ),
            # runs table: ?tag= (tags @> ARRAY[tag])
            GinIndex(fields=["tags"], name="run_tags_gin"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("run", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    # A job's config is a validated RunConfig; an external run's is whatever its script logged,
    # so what the pages show of its optimizer comes from what the client saw (context).

    @property
    def optimizer_name(self) -> str:
        if self.measured_by_client:
            return str(self.context.get("optimizer") or "")
        return str(self.config.get("optimizer", {}).get("name", ""))

    @property
    def learning_rate(self) -> float | None:
        if self.measured_by_client:
            return self.context.get("lr")
        return self.config.get("optimizer", {}).get("lr")

    @property
    def schedule_name(self) -> str:
        return "" if self.measured_by_client else str(self.config.get("schedule", {}).get("name", "fixed"))

    @property
    def epochs(self) -> int:
        """Epochs planned: a job's config says; an external run's progress says, when it knows (a
        run that succeeded ran what it ran; one cancelled or stopped early keeps its plan)."""
        if self.is_external:
            planned = self.total_steps // self.steps_per_epoch if self.steps_per_epoch and self.total_steps else 0
            return self.epoch if not planned or self.status == self.Status.SUCCEEDED else max(planned, self.epoch)
        return int(self.config.get("epochs", 0))

    @property
    def is_external(self) -> bool:
        return self.kind == self.Kind.EXTERNAL

    @property
    def is_entry_job(self) -> bool:
        """A queued run of a registered training function (trainer.entry), not of a run config."""
        return self.config.get("job") == "entry"

    @property
    def measured_by_client(self) -> bool:
        """Its measurements came through the client's run object (a script's, or an entry
        point's on a worker): what the pages and the diagnosis know of its model comes from run.watch."""
        return self.is_external or self.is_entry_job

    @property
    def is_check_job(self) -> bool:
        return self.config.get("job") == "check"

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    def to_dict(self) -> RunDict:
        return RunDict(
            id=self.pk,
            name=self.name,
            tags=list(self.tags),
            status=self.status,
            priority=self.priority,
            attempts=self.attempts,
            resumed_from_step=self.resumed_from_step,
            finished=self.is_finished,
            device=self.device,
            worker=self.worker,
            epoch=self.epoch,
            epochs=self.epochs,
            steps_done=self.steps_done,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            best_val_accuracy=self.best_val_accuracy,
            final_loss=self.final_loss,
            message=self.message,
            error=self.error,
            health=self.health,
            findings=self.findings,
            finding_history=self.finding_history,
            rules_waiting=self.rules_waiting,
            created_at=self.created_at.isoformat(),
            started_at=self.started_at.isoformat() if self.started_at else None,
            finished_at=self.finished_at.isoformat() if self.finished_at else None,
            seconds=self.seconds,
            kind=self.kind,
            source=self.source,
        )


class Series(models.Model):
    """One row per (run, key): the summary of a stored series, kept current by ingest."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="series")
    key = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0)
    last_step = models.BigIntegerField()
    last_value = models.FloatField(null=True)
    min_value = models.FloatField(null=True)
    max_value = models.FloatField(null=True)

    class Meta:
        constraints = [
            # ingest upserts by (run, key); the run page lists a run's keys through it
            models.UniqueConstraint(fields=["run", "key"], name="series_run_key_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.key} of run {self.run_id}"


class SeriesChunk(models.Model):
    """Immutable block of one series: one row per flush per (run, key).

    `steps` and `values` are packed little-endian int64 / float64 arrays: one
    bytea each instead of a row (and an index entry) per point.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="chunks")
    key = models.CharField(max_length=200)
    first_step = models.BigIntegerField()
    last_step = models.BigIntegerField()
    count = models.IntegerField()
    steps = models.BinaryField()
    values = models.BinaryField()
    # tracker.lib.summaries: the points grouped by 128, 2048 and 32768 (null where the chunk has
    # fewer); a chart of a long series reads these instead of the points
    groups_128 = models.BinaryField(null=True)
    groups_2048 = models.BinaryField(null=True)
    groups_32768 = models.BinaryField(null=True)

    class Meta:
        constraints = [
            # reading a series scans (run, key) in first_step order; a retried flush
            # hits this key and is dropped (ON CONFLICT DO NOTHING)
            models.UniqueConstraint(fields=["run", "key", "first_step"], name="chunk_run_key_step_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.key} of run {self.run_id}, steps {self.first_step}-{self.last_step}"


class Histogram(models.Model):
    """One histogram of one quantity (e.g. activations of fc1) at one step."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="histograms")
    key = models.CharField(max_length=200)
    step = models.BigIntegerField()
    low = models.FloatField()
    high = models.FloatField()
    counts = models.BinaryField(help_text="packed little-endian int64 counts of equal bins over [low, high]")
    mean = models.FloatField()
    std = models.FloatField()
    zero_fraction = models.FloatField(default=0.0)
    saturated_fraction = models.FloatField(default=0.0)
    nonfinite = models.BigIntegerField(
        default=0, help_text="values that were NaN or infinite; then low, high, mean and std are NaN, the counts zero"
    )

    class Meta:
        constraints = [
            # idempotent ingest, and a key's histograms read in step order
            models.UniqueConstraint(fields=["run", "key", "step"], name="histogram_run_key_step_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.key} of run {self.run_id} at step {self.step}"

    def to_dict(self) -> HistogramDict:
        return HistogramDict(
            step=self.step,
            low=self.low,
            high=self.high,
            counts=np.frombuffer(bytes(self.counts), dtype="<i8").tolist(),
            mean=self.mean,
            std=self.std,
            zero_fraction=self.zero_fraction,
            saturated_fraction=self.saturated_fraction,
            nonfinite=self.nonfinite,
        )


class RunImage(models.Model):
    """An image at a step, e.g. the first layer's weights as a tile grid."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="images")
    key = models.CharField(max_length=200)
    step = models.BigIntegerField()
    height = models.IntegerField()
    width = models.IntegerField()
    channels = models.IntegerField(help_text="1 (grey) or 3 (RGB)")
    pixels = models.BinaryField(help_text="uint8, row-major (H, W) or (H, W, 3)")

    class Meta:
        constraints = [
            # idempotent ingest; the run page reads a key's images in step order
            models.UniqueConstraint(fields=["run", "key", "step"], name="image_run_key_step_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.key} of run {self.run_id} at step {self.step}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "pixels": base64.b64encode(bytes(self.pixels)).decode("ascii"),
        }


class DashboardVisit(models.Model):
    """When each user last opened the dashboard: its "since your last visit" starts there."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dashboard_visit")
    seen_at = models.DateTimeField(help_text="the last time the user looked at the dashboard")
    since = models.DateTimeField(help_text="where this visit's 'since your last visit' starts")

    def __str__(self) -> str:
        return f"{self.user} since {self.since:%Y-%m-%d %H:%M}"


class ApiToken(models.Model):
    """A user's token for scripts: `Authorization: Bearer <token>`. Only its SHA-256 is stored."""

    PREFIX = "tw_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)  # the lookup of every token request uses it
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} / {self.name}"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, user, name: str) -> tuple[ApiToken, str]:
        """A new token; the clear text is returned once and never stored."""
        token = cls.PREFIX + secrets.token_urlsafe(32)
        return cls.objects.create(user=user, name=name, digest=cls.hash(token)), token


class Alert(models.Model):
    """One message about one run, sent once to its project's addresses and webhooks: an error
    finding, a divergence, a lost or a failed run (tracker.core.alerts)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="alerts")
    key = models.CharField(max_length=120, help_text="what it is about: divergence, failed, lost, finding:<rule>")
    subject = models.CharField(max_length=300)
    body = models.TextField()
    payload = models.JSONField(help_text="what the webhooks get")
    emails = ArrayField(models.EmailField(), default=list, blank=True)
    webhooks = ArrayField(models.URLField(max_length=500), default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    deliveries = models.JSONField(
        default=dict, blank=True, help_text="per target (e-mail, or each webhook): sent, error, attempts"
    )
    attempts = models.IntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="null once every target is done")
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="alert_once_per_run_and_key")]
        indexes = [models.Index(fields=["next_attempt_at"], name="alert_pending_idx")]

    def __str__(self) -> str:
        return self.subject


class Worker(models.Model):
    """A Celery worker as it described itself when it started, and when it was last heard of."""

    name = models.CharField(max_length=200, unique=True, help_text="Celery node name, e.g. gpu0@host")
    hostname = models.CharField(max_length=200)
    queues = ArrayField(models.CharField(max_length=64), default=list)
    device = models.CharField(max_length=200, help_text="GPU name and memory, or CPU and cores")
    torch_version = models.CharField(max_length=64, blank=True)
    entry_points = models.JSONField(
        default=list, blank=True, help_text="the training functions it can run (trainer.entry.describe_registered)"
    )
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(help_text="start, or the last flush of a run it trained")

    def __str__(self) -> str:
        return self.name


class Blob(models.Model):
    """One stored file's content, by its SHA-256, in the artifact store (tracker.core.blobs):
    content-addressed, so the same file logged by any number of runs is stored once."""

    digest = models.CharField(max_length=64, primary_key=True, help_text="SHA-256, hex")
    size = models.BigIntegerField(help_text="bytes")
    created_at = models.DateTimeField(default=timezone.now)
    # who sent the whole file: a digest alone never lets anyone name (and so read) a file
    # that was sent by someone else and that they cannot see in their projects
    senders = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")

    def __str__(self) -> str:
        return f"{self.digest[:12]} ({self.size} bytes)"


class Artifact(models.Model):
    """A named, versioned set of files of a project: a model, a dataset, a checkpoint, files."""

    class Type(models.TextChoices):
        MODEL = "model"
        DATASET = "dataset"
        CHECKPOINT = "checkpoint"
        FILE = "file"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=Type.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="artifact_name_unique")]

    def __str__(self) -> str:
        return f"{self.project.name}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("artifact", args=[self.pk])


class ArtifactVersion(models.Model):
    """One content of an artifact (v1, v2, ...): a new one only when the files changed."""

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    digest = models.CharField(max_length=64, help_text="SHA-256 of the manifest: each file's path, digest and size")
    size = models.BigIntegerField(help_text="bytes, all files")
    file_count = models.IntegerField()
    metadata = models.JSONField(default=dict, blank=True)
    run = models.ForeignKey(
        Run,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="produced",
        help_text="the run that logged it",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["artifact", "version"], name="artifact_version_unique"),
            models.UniqueConstraint(fields=["artifact", "digest"], name="artifact_content_unique"),
        ]
        ordering = ["artifact", "-version"]

    def __str__(self) -> str:
        return f"{self.artifact.name}:v{self.version}"

    @property
    def label(self) -> str:
        return f"v{self.version}"


class ArtifactFile(models.Model):
    """A file of a version: its path inside the artifact and its content."""

    version = models.ForeignKey(ArtifactVersion, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1000)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="+")
    size = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "path"], name="artifact_file_unique")]
        ordering = ["version", "path"]

    def __str__(self) -> str:
        return self.path


class ArtifactAlias(models.Model):
    """A name a person (or a run) gives one version of an artifact: production, staging, best."""

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=64)
    version = models.ForeignKey(ArtifactVersion, on_delete=models.CASCADE, related_name="aliases")
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    set_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["artifact", "name"], name="artifact_alias_unique")]

    def __str__(self) -> str:
        return f"{self.artifact.name}:{self.name}"


class ArtifactAliasEvent(models.Model):
    """An alias's history: set to a version, or removed (version null), by whom and when."""

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="alias_events")
    name = models.CharField(max_length=64)
    version = models.ForeignKey(ArtifactVersion, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} -> {self.version_id or 'removed'}"


class ArtifactUse(models.Model):
    """A run read a version (run.use_artifact): the lineage's other edge."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="used_artifacts")
    version = models.ForeignKey(ArtifactVersion, on_delete=models.CASCADE, related_name="uses")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "version"], name="artifact_use_unique")]

    def __str__(self) -> str:
        return f"run {self.run_id} used {self.version_id}"


class Checkpoint(models.Model):
    """One of a run's checkpoints, its bytes in the artifact store (tracker.core.blobs): the
    latest is what a requeued run resumes from, the best by the run's retention metric is its
    model; the retention (trainer.config.RetentionConfig) deletes the others as new ones come."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.BigIntegerField(help_text="steps trained when it was taken")
    epoch = models.IntegerField(help_text="the epoch in progress (epochs done, at an epoch end)")
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="+")
    size = models.BigIntegerField(help_text="bytes")
    metric = models.FloatField(null=True, blank=True, help_text="the retention's best_metric when it was taken")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="checkpoint_step_unique")]
        ordering = ["run", "-step"]

    def __str__(self) -> str:
        return f"checkpoint of run {self.run_id} at step {self.step}"


class ConsoleChunk(models.Model):
    """Lines a run printed on one stream, in order (seq over both streams), kept together: the
    time of each line (seconds since the epoch) and the lines' text joined by newlines."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="console")
    seq = models.IntegerField()
    stream = models.CharField(max_length=6)
    times = ArrayField(models.FloatField())
    text = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="console_seq_unique")]
        ordering = ["run", "seq"]

    def __str__(self) -> str:
        return f"run {self.run_id} console {self.seq}"


class RunEnvironment(models.Model):
    """Where a run trained (trainer.environment): its command line, packages, GPUs and driver,
    uncommitted changes. A table of its own: a few hundred kB that no list of runs reads."""

    run = models.OneToOneField(Run, on_delete=models.CASCADE, primary_key=True, related_name="environment")
    data = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"environment of run {self.run_id}"


class Report(models.Model):
    """What a team learned, as a document: a title and an ordered list of blocks (Markdown, or a
    query of runs drawn as a chart or a table: tracker.core.reports validates them). Every save
    is also a ReportVersion, so that an older one can be restored."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reports")
    title = models.CharField(max_length=200)
    blocks = models.JSONField(default=list)
    version = models.IntegerField(default=1, help_text="the number of its latest ReportVersion")
    # a read-only link for people without an account: the token opens this report and the data of
    # its blocks, nothing else; emptied when revoked
    share_token = models.CharField(max_length=64, blank=True, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"report #{self.pk} {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("report", args=[self.pk])


class ReportVersion(models.Model):
    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="versions")
    number = models.IntegerField()
    title = models.CharField(max_length=200)
    blocks = models.JSONField(default=list)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    what = models.CharField(max_length=200, blank=True, help_text="what changed, in words")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["report", "number"], name="report_version_unique")]
        ordering = ["report", "-number"]

    def __str__(self) -> str:
        return f"report {self.report_id} version {self.number}"
