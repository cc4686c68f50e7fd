"""Studies in the tracker: create one (its first stage's runs, all or nothing), advance it
when a stage ends (coarse-to-fine narrows the ranges; the study ends after its last
stage), read its results (leaderboard, edge warnings), early stopping, promotion and
ensembles. The logic of specs lives in trainer.search; this module stores and dispatches."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from trainer.config import ConfigError, RunConfig
from trainer.presets import PRESETS
from trainer.search import EarlyStopping, Param, Result, edge_warnings, median_stopping, narrow, parse_spec, plan_stage

log = logging.getLogger(__name__)
MAX_NAME = 200


def _params_of(stage_params: list[dict[str, Any]]) -> tuple[Param, ...]:
    return tuple(Param(p["key"], p["distribution"], p.get("low"), p.get("high"), tuple(p.get("values", ())))
                 for p in stage_params)


def _params_json(params: tuple[Param, ...]) -> list[dict[str, Any]]:
    return [{"key": p.key, **p.to_dict()} for p in params]


def create_study(project_name: Any, name: Any, spec: Any, user=None, preset: str = "", notes: str = ""):
    """Validate the spec (every generated config included), then create the study and queue
    its first stage in one transaction; raises ConfigError naming each bad field."""
    from tracker.models import Study
    from tracker.runs import create_run, project_for, validate_project

    errors: dict[str, str] = {}
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        errors["name"] = f"must be a study name of 1 to {MAX_NAME} characters"
    validate_project(project_name, user, errors)
    try:
        parsed = parse_spec(spec)
    except ConfigError as error:
        errors.update({f"spec.{key}": message for key, message in error.errors.items()})
    if errors:
        raise ConfigError(errors)
    with transaction.atomic():
        study = Study.objects.create(
            project=project_for(project_name, user), name=name.strip(), kind=parsed.kind, spec=parsed.to_dict(),
            stage_params=[_params_json(parsed.params)] if parsed.params else [], preset=preset, notes=notes,
            created_by=user if user is not None and user.is_authenticated else None)
        for planned in plan_stage(parsed, 0):
            create_run(project_name, planned.config, f"{study.name}: {planned.name}"[:200], user,
                       study=study, stage=0, study_values=planned.values)
    return study


def create_preset(preset: str, project_name: str, user=None, name: str | None = None):
    if preset not in PRESETS:
        raise ConfigError({"preset": f"unknown preset {preset!r}; one of {', '.join(PRESETS)}"})
    return create_study(project_name, name or preset, PRESETS[preset]["spec"], user, preset=preset)


def results(study, stage: int | None = None) -> list[Result]:
    """What the study varied and the metric (best validation accuracy) of each run; runs
    that diverged, failed or were lost have no metric."""
    runs = study.runs.all() if stage is None else study.runs.filter(stage=stage)
    return [Result(run.study_values, run.best_val_accuracy if run.status in ("succeeded", "stopped") else None)
            for run in runs]


def on_run_finished(run_id: int) -> None:
    """Called by the worker once a run has ended: the study moves on when its stage is done."""
    from tracker.models import Run, Study

    study_id = Run.objects.filter(pk=run_id).values_list("study_id", flat=True).first()
    if study_id is None:
        return
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)  # one advance at a time
        if study.status != Study.Status.RUNNING:
            return
        stage_runs = study.runs.filter(stage=study.stage)
        if stage_runs.exclude(status__in=Run.FINISHED).exists():
            return
        spec = parse_spec(study.spec, check_runs=False)
        if spec.kind == "coarse_to_fine" and study.stage + 1 < len(spec.stages):
            current = _params_of(study.stage_params[study.stage])
            narrowed = narrow(current, results(study, study.stage), spec.top_k)
            study.stage += 1
            study.stage_params = [*study.stage_params, _params_json(narrowed)]
            study.save(update_fields=["stage", "stage_params"])
            _queue(study, plan_stage(spec, study.stage, narrowed), study.stage)
            log.info("study %s: stage %s queued with ranges narrowed around the top %s", study.pk, study.stage,
                     spec.top_k)
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


def _queue(study, planned, stage: int) -> None:
    from tracker.runs import create_run

    for run in planned:
        create_run(study.project.name, run.config, f"{study.name}: {run.name}"[:200], study.created_by,
                   study=study, stage=stage, study_values=run.values)


def promote(study, k: int, epochs: int, user=None) -> list:
    """Train the top k runs of the study again for `epochs` epochs, as a new stage."""
    from tracker.models import Study
    from tracker.runs import create_run

    errors = {}
    if not isinstance(k, int) or not 1 <= k <= 50:
        errors["k"] = "must be a whole number from 1 to 50"
    if not isinstance(epochs, int) or not 1 <= epochs <= 10_000:
        errors["epochs"] = "must be a whole number from 1 to 10000"
    if errors:
        raise ConfigError(errors)
    best = list(study.runs.filter(status__in=("succeeded", "stopped"), best_val_accuracy__isnull=False)
                .order_by("-best_val_accuracy")[:k])
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
            created.append(create_run(study.project.name, config, f"{study.name}: promoted #{run.pk} to {epochs} epochs",
                                      user, study=locked, stage=locked.stage, study_values=run.study_values))
    return created


def early_stopping_of(run) -> EarlyStopping | None:
    if run.study_id is None:
        return None
    from tracker.models import Study

    spec = Study.objects.filter(pk=run.study_id).values_list("spec", flat=True).first() or {}
    early = spec.get("early_stopping")
    return EarlyStopping(**early) if early else None


def early_stop_reason(run, rule: EarlyStopping) -> str | None:
    """The median stopping rule against the study's other runs of the same stage."""
    from tracker.ingest import read_many
    from tracker.models import Run

    mine = read_many(run.pk, {"val_acc": None})["val_acc"][1].tolist()
    peers = Run.objects.filter(study_id=run.study_id, stage=run.stage).exclude(pk=run.pk).values_list("pk", flat=True)
    others = [read_many(peer, {"val_acc": None})["val_acc"][1].tolist() for peer in peers]
    return median_stopping(mine, [other for other in others if other], rule)


def evaluate_ensemble(study, k: int) -> dict:
    """The top k runs' checkpoints as an ensemble: its validation accuracy next to the best
    single run's; stored on the study."""
    from trainer.ensemble import ensemble_accuracy

    best = list(study.runs.filter(status="succeeded", checkpoint__isnull=False, best_val_accuracy__isnull=False)
                .select_related("checkpoint").order_by("-best_val_accuracy")[:k])
    if len(best) < 2:
        raise ConfigError({"k": "an ensemble needs at least 2 succeeded runs with a checkpoint"})
    members = [(RunConfig.from_dict(run.config), bytes(run.checkpoint.data)) for run in best]
    outcome = ensemble_accuracy(members)
    study.ensemble = {"k": len(best), "runs": [run.pk for run in best], "accuracy": outcome["accuracy"],
                      "members": outcome["members"], "best_single": max(outcome["members"]),
                      "examples": outcome["examples"], "evaluated_at": timezone.now().isoformat()}
    study.save(update_fields=["ensemble"])
    return study.ensemble


def summary(study) -> dict[str, Any]:
    """Everything the study page, its API and its report show."""
    from tracker.models import Run

    spec = parse_spec(study.spec, check_runs=False)
    runs = list(study.runs.order_by("-best_val_accuracy", "pk"))
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    searched = _params_of(study.stage_params[-1]) if study.stage_params else ()
    last_stage = [run for run in runs if run.stage == (len(study.stage_params) - 1 if study.stage_params else 0)]
    warnings = edge_warnings(searched, [Result(run.study_values, run.best_val_accuracy
                                               if run.status in ("succeeded", "stopped") else None)
                                        for run in last_stage]) if searched else []
    keys = list(spec.choices) if spec.choices else [p.key for p in spec.params]
    if spec.seeds > 1:
        keys.append("seed")
    rows = []
    for rank, run in enumerate(runs, 1):
        finding = run.findings[0]["title"] if run.findings else ""
        rows.append({"id": run.pk, "name": run.name, "status": run.status, "stage": run.stage,
                     "values": {key: run.study_values.get(key) for key in keys},
                     "best_val_accuracy": run.best_val_accuracy, "final_loss": run.final_loss,
                     "seconds": run.seconds, "health": run.health, "finding": finding, "message": run.message,
                     "scored": run.status in ("succeeded", "stopped") and run.best_val_accuracy is not None,
                     "url": run.get_absolute_url()})
    finished = sum(counts.get(status, 0) for status in Run.FINISHED)
    return {"id": study.pk, "name": study.name, "kind": study.kind, "status": study.status, "stage": study.stage,
            "preset": study.preset, "question": PRESETS.get(study.preset, {}).get("title", ""),
            "group_by": PRESETS.get(study.preset, {}).get("group_by") or ([keys[0]] if spec.choices else []),
            "keys": keys, "log_keys": [p.key for p in searched if p.log], "ranges": _params_json(searched),
            "counts": counts, "total": len(runs), "finished": finished, "rows": rows, "warnings": warnings,
            "ensemble": study.ensemble, "notes": study.notes, "spec": study.spec,
            "early_stopping": study.spec.get("early_stopping")}
