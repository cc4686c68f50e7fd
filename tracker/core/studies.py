"""Studies in the tracker: create one (its first stage's runs, all or nothing), advance it
when a stage ends (coarse-to-fine narrows the ranges; the study ends after its last
stage), read its results (leaderboard, edge warnings), early stopping, promotion and
ensembles. The logic of specs lives in trainer.search; this module stores and dispatches."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import transaction
from django.utils import timezone

from tracker.core import checkpoints
from tracker.core.runs import (
    acting_user,
    check_name,
    check_project,
    create_run,
    project_for,
    reads_any_path,
    resolve_config,
)
from tracker.core.storage import read_key_of_runs, read_series
from tracker.models import Run, Study
from trainer.config import ConfigError, RunConfig
from trainer.presets import PRESETS
from trainer.search import (
    EarlyStopping,
    Param,
    PlannedRun,
    Resolver,
    Result,
    edge_warnings,
    median_stopping,
    narrow,
    parse_spec,
    plan_stage,
)

if TYPE_CHECKING:
    from tracker.core.runs import AnyUser

log = logging.getLogger(__name__)
MAX_NAME = 200
MAX_NOTES = 20_000
MAX_PROMOTED = 50
MAX_EPOCHS = 10_000
SCORED = (Run.Status.SUCCEEDED, Run.Status.STOPPED)


def _params_of(stage_params: list[dict[str, Any]]) -> tuple[Param, ...]:
    return tuple(
        Param(p["key"], p["distribution"], p.get("low", 0.0), p.get("high", 0.0), tuple(p.get("values", ())))
        for p in stage_params
    )


def _params_json(params: tuple[Param, ...]) -> list[dict[str, Any]]:
    return [{"key": p.key, **p.to_dict()} for p in params]


def resolver(user: AnyUser | None) -> Resolver:
    """Validates a generated config as create_run will: a run config, or an entry-point job
    against what the workers have (its params searched like config keys: "params.lr")."""

    def resolve(config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        resolved, _, _ = resolve_config(config, user, errors)
        if errors:
            raise ConfigError({key.removeprefix("config."): message for key, message in errors.items()})
        return resolved

    return resolve


def check_notes(notes: Any, errors: dict[str, str]) -> str:
    if notes is None:
        return ""
    if not isinstance(notes, str) or len(notes) > MAX_NOTES or "\x00" in notes:
        errors["notes"] = f"must be text of at most {MAX_NOTES} characters, without NUL (\\u0000) characters"
        return ""
    return notes


def create_study(
    project_name: Any, name: Any, spec: Any = None, user: AnyUser | None = None, preset: Any = None, notes: Any = ""
) -> Study:
    """Validate the request (a spec or a preset, the name, the notes, the project) and the spec
    with every config it generates, then create the study and queue its first stage in one
    transaction; raises ConfigError naming each bad field. The web form, the admin, the API and
    the CLI all call this."""
    errors: dict[str, str] = {}
    if preset is not None and preset != "" and preset not in PRESETS:
        errors["preset"] = f"unknown preset {preset!r}; one of {', '.join(PRESETS)}"
    elif (preset in (None, "")) == (spec is None):
        errors["spec"] = "give a spec or a preset (one of them)"
    elif preset:
        spec = PRESETS[preset]["spec"]
    clean_name = check_name(name or preset, "name", errors, required=True, max_length=MAX_NAME)
    clean_notes = check_notes(notes, errors)
    project = check_project(project_name, user, errors)
    if "spec" not in errors and "preset" not in errors:
        try:
            parsed = parse_spec(spec, resolve=resolver(user))
        except ConfigError as error:
            errors.update({f"spec.{key}": message for key, message in error.errors.items()})
    if errors:
        raise ConfigError(errors)
    with transaction.atomic():
        study = Study.objects.create(
            project=project_for(project, user),
            name=clean_name,
            kind=parsed.kind,
            spec=parsed.to_dict(),
            stage_params=[_params_json(parsed.params)] if parsed.params else [],
            preset=preset or "",
            notes=clean_notes,
            created_by=acting_user(user),
            reads_any_path=reads_any_path(user),
        )
        _queue(study, plan_stage(parsed, 0, resolve=resolver(user)), 0, user)
    return study


def set_notes(study: Study, notes: Any) -> None:
    errors: dict[str, str] = {}
    clean = check_notes(notes, errors)
    if errors:
        raise ConfigError(errors)
    Study.objects.filter(pk=study.pk).update(notes=clean)


def _queue(study: Study, planned: list[PlannedRun], stage: int, user: AnyUser | None) -> None:
    for run in planned:
        create_run(
            study.project.name,
            run.config,
            f"{study.name}: {run.name}"[:MAX_NAME],
            user,
            study=study,
            stage=stage,
            study_values=run.values,
        )


def results(study: Study, stage: int | None = None) -> list[Result]:
    """What the study varied and the metric (best validation accuracy) of each run; runs
    that diverged, failed or were lost have no metric."""
    runs = study.runs.all() if stage is None else study.runs.filter(stage=stage)
    return [Result(run.study_values, run.best_val_accuracy if run.status in SCORED else None) for run in runs]


def _creator_gone(study: Study) -> bool:
    """A member's study whose creator's account was deleted (a study created on the server's
    command line has no creator from the start)."""
    return study.created_by_id is None and not study.reads_any_path


def advance(run_id: int) -> None:
    """A run of the study (if it has one) has ended: the study moves on when its stage is done."""
    study_id = Run.objects.filter(pk=run_id).values_list("study_id", flat=True).first()
    if study_id is None:
        return
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)  # one advance at a time
        if study.status != Study.Status.RUNNING:
            return
        if study.runs.filter(stage=study.stage).exclude(status__in=Run.FINISHED).exists():
            return
        spec = parse_spec(study.spec, check_runs=False)
        if spec.kind == "coarse_to_fine" and study.stage + 1 < len(spec.stages) and _creator_gone(study):
            # queued as nobody, its runs would read what only staff and the server's operator may
            study.status = Study.Status.CANCELLED
            study.message = f"stage {study.stage + 2} not queued: the account that created the study was deleted"
            study.finished_at = timezone.now()
            study.save(update_fields=["status", "message", "finished_at"])
            log.warning("study %s: %s", study.pk, study.message)
            return
        if spec.kind == "coarse_to_fine" and study.stage + 1 < len(spec.stages):
            current = _params_of(study.stage_params[study.stage])
            narrowed = narrow(current, results(study, study.stage), spec.top_k)
            study.stage += 1
            study.stage_params = [*study.stage_params, _params_json(narrowed)]
            study.save(update_fields=["stage", "stage_params"])
            _queue(
                study,
                plan_stage(spec, study.stage, narrowed, resolve=resolver(study.created_by)),
                study.stage,
                study.created_by,
            )
            log.info(
                "study %s: stage %s queued with ranges narrowed around the top %s", study.pk, study.stage, spec.top_k
            )
            return
        study.status = Study.Status.FINISHED
        study.finished_at = timezone.now()
        study.save(update_fields=["status", "finished_at"])
    if spec.ensemble_k:
        # here, on the worker that trained the study's last run: a few forward passes over
        # the validation set, not worth a queued job that would wait behind long runs
        try:
            evaluate_ensemble(study, spec.ensemble_k)
        except (ConfigError, ValueError) as error:
            log.warning("study %s: no ensemble: %s", study.pk, error)


def promote(study: Study, k: int, epochs: int, user: AnyUser | None = None) -> list[Run]:
    """Train the top k runs of the study again for `epochs` epochs, as a new stage."""
    errors = {}
    if not isinstance(k, int) or not 1 <= k <= MAX_PROMOTED:
        errors["k"] = f"must be a whole number from 1 to {MAX_PROMOTED}"
    if not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        errors["epochs"] = f"must be a whole number from 1 to {MAX_EPOCHS}"
    if errors:
        raise ConfigError(errors)
    best = list(
        study.runs.filter(status__in=SCORED, best_val_accuracy__isnull=False).order_by("-best_val_accuracy")[:k]
    )
    if not best:
        raise ConfigError({"k": "the study has no finished run with a validation accuracy yet"})
    created = []
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        locked.stage += 1
        locked.status = Study.Status.RUNNING
        locked.finished_at = None
        locked.save(update_fields=["stage", "status", "finished_at"])
        for run in best:
            config = {**run.config, "epochs": epochs}
            created.append(
                create_run(
                    study.project.name,
                    config,
                    f"{study.name}: promoted #{run.pk} to {epochs} epochs",
                    user,
                    study=locked,
                    stage=locked.stage,
                    study_values=run.study_values,
                )
            )
    return created


def early_stopping_of(run: Run) -> EarlyStopping | None:
    if run.study_id is None:
        return None
    spec = Study.objects.filter(pk=run.study_id).values_list("spec", flat=True).first() or {}
    early = spec.get("early_stopping")
    return EarlyStopping(**early) if early else None


def early_stop_reason(run: Run, rule: EarlyStopping) -> str | None:
    """The median stopping rule against the study's other runs of the same stage."""
    if run.study_id is None:
        return None
    mine = read_series(run.pk, "val_acc")[1].tolist()
    peers = list(
        Run.objects.filter(study_id=run.study_id, stage=run.stage).exclude(pk=run.pk).values_list("pk", flat=True)
    )
    others = [values.tolist() for _, values in read_key_of_runs(peers, "val_acc").values()]
    return median_stopping(mine, [other for other in others if other], rule)


def evaluate_ensemble(study: Study, k: int) -> dict[str, Any]:
    """The top k runs' checkpoints as an ensemble: its validation accuracy next to the best
    single run's; stored on the study."""
    # imported here, not above: it loads models with torch, which a web process (that
    # shows this module's summaries) must not import until someone asks for an ensemble
    from trainer.ensemble import ensemble_accuracy  # noqa: PLC0415

    best = list(
        study.runs.filter(status=Run.Status.SUCCEEDED, checkpoints__isnull=False, best_val_accuracy__isnull=False)
        .distinct()
        .order_by("-best_val_accuracy")[:k]
    )
    if any(run.is_entry_job for run in best):
        raise ConfigError({"k": "an ensemble is of Trainwatch's own models; this study trains a function of a package"})
    if len(best) < 2:
        raise ConfigError({"k": "an ensemble needs at least 2 succeeded runs with a checkpoint"})
    # each run's last checkpoint holds its trained model
    members = [(RunConfig.from_dict(run.config), checkpoints.read_latest(run.pk)) for run in best]
    outcome = ensemble_accuracy(members)
    study.ensemble = {
        "k": len(best),
        "runs": [run.pk for run in best],
        "accuracy": outcome["accuracy"],
        "members": outcome["members"],
        "best_single": max(outcome["members"]),
        "examples": outcome["examples"],
        "evaluated_at": timezone.now().isoformat(),
    }
    study.save(update_fields=["ensemble"])
    return study.ensemble


class LeaderboardRow(TypedDict):
    id: int
    name: str
    status: str
    stage: int
    values: dict[str, Any]
    best_val_accuracy: float | None
    final_loss: float | None
    seconds: float | None
    health: str
    finding: str
    message: str
    scored: bool
    url: str


class StudySummary(TypedDict):
    id: int
    name: str
    kind: str
    status: str
    stage: int
    preset: str
    question: str
    group_by: list[str]
    keys: list[str]
    log_keys: list[str]
    ranges: list[dict[str, Any]]
    counts: dict[str, int]
    total: int
    finished: int
    rows: list[LeaderboardRow]
    warnings: list[str]
    ensemble: dict[str, Any] | None
    notes: str
    spec: dict[str, Any]
    early_stopping: dict[str, Any] | None


def summary(study: Study) -> StudySummary:
    """Everything the study page, its API and its report show."""
    spec = parse_spec(study.spec, check_runs=False)
    runs = list(study.runs.order_by("-best_val_accuracy", "pk"))
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    searched = _params_of(study.stage_params[-1]) if study.stage_params else ()
    last_stage = [run for run in runs if run.stage == (len(study.stage_params) - 1 if study.stage_params else 0)]
    warnings = (
        edge_warnings(
            searched,
            [Result(run.study_values, run.best_val_accuracy if run.status in SCORED else None) for run in last_stage],
        )
        if searched
        else []
    )
    keys = list(spec.choices) if spec.choices else [p.key for p in spec.params]
    if spec.seeds > 1:
        keys.append("seed")
    rows = [
        LeaderboardRow(
            id=run.pk,
            name=run.name,
            status=run.status,
            stage=run.stage,
            values={key: run.study_values.get(key) for key in keys},
            best_val_accuracy=run.best_val_accuracy,
            final_loss=run.final_loss,
            seconds=run.seconds,
            health=run.health,
            finding=run.findings[0]["title"] if run.findings else "",
            message=run.message,
            scored=run.status in SCORED and run.best_val_accuracy is not None,
            url=run.get_absolute_url(),
        )
        for run in runs
    ]
    preset = PRESETS.get(study.preset, {})
    return StudySummary(
        id=study.pk,
        name=study.name,
        kind=study.kind,
        status=study.status,
        stage=study.stage,
        preset=study.preset,
        question=preset.get("title", ""),
        group_by=preset.get("group_by") or ([keys[0]] if spec.choices else []),
        keys=keys,
        log_keys=[p.key for p in searched if p.log],
        ranges=_params_json(searched),
        counts=counts,
        total=len(runs),
        finished=sum(counts.get(status, 0) for status in Run.FINISHED),
        rows=rows,
        warnings=warnings,
        ensemble=study.ensemble,
        notes=study.notes,
        spec=study.spec,
        early_stopping=study.spec.get("early_stopping"),
    )
