"""Studies in the database: creation (all or nothing), coarse-to-fine stages on the stored
specs, the end of a study, early stopping through the sink, the pages and the CLI."""

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from tracker.core.storage import ChunkWriter
from tracker.core.studies import advance, create_study, summary
from tracker.models import Run, Study
from tracker.worker.sink import DatabaseSink
from trainer.config import ConfigError
from trainer.presets import PRESETS
from trainer.search import parse_spec

pytestmark = pytest.mark.django_db

BASE = {"epochs": 2, "data": {"name": "digits"}}
COARSE = {
    "kind": "coarse_to_fine",
    "base": BASE,
    "top_k": 2,
    "params": {"optimizer.lr": {"distribution": "log_uniform", "low": 1e-5, "high": 1}},
    "stages": [{"runs": 6, "epochs": 1}, {"runs": 3, "epochs": 5}],
}


def finish(run: Run, accuracy: float | None, status: str = "succeeded") -> None:
    Run.objects.filter(pk=run.pk).update(status=status, best_val_accuracy=accuracy)
    advance(run.pk)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_spec(name):
    spec = parse_spec(PRESETS[name]["spec"])
    assert spec.kind == PRESETS[name]["spec"]["kind"]


def test_the_optimizer_preset_compares_all_seven_optimizers_with_three_seeds(user):
    study = create_study("demo", "optimizers", user=user, preset="compare-optimizers")
    runs = list(study.runs.all())
    assert len(runs) == 21
    assert {run.config["optimizer"]["name"] for run in runs} == {
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "rmsprop",
        "adam",
        "adadelta",
    }
    assert sorted(run.config["seed"] for run in runs) == sorted([0, 1, 2] * 7)
    assert {run.config["data"]["seed"] for run in runs} == {0}


def test_a_bad_spec_creates_nothing_and_names_the_field(user):
    bad = {**COARSE, "params": {"optimizer.lr": {"distribution": "log_uniform", "low": -1, "high": 1}}}
    with pytest.raises(ConfigError) as error:
        create_study("p", "bad", bad, user)
    assert "spec.params.optimizer.lr.low" in error.value.errors
    assert not Study.objects.exists() and not Run.objects.exists()


def test_coarse_to_fine_queues_stage_two_around_the_best_of_stage_one():
    study = create_study("p", "c2f", COARSE)
    first = list(study.runs.order_by("pk"))
    assert len(first) == 6 and all(run.config["epochs"] == 1 and run.stage == 0 for run in first)
    by_lr = sorted(first, key=lambda run: run.study_values["optimizer.lr"])
    # planted: the two middle learning rates are best; the largest diverged
    for rank, run in enumerate(by_lr):
        finish(run, None if rank == 5 else (0.95 if rank in (2, 3) else 0.3), "diverged" if rank == 5 else "succeeded")
        if rank < 5:
            assert Study.objects.get(pk=study.pk).stage == 0  # not before the whole stage has ended
    study.refresh_from_db()
    assert study.stage == 1 and len(study.stage_params) == 2
    [narrowed] = study.stage_params[1]
    best = sorted(by_lr[i].study_values["optimizer.lr"] for i in (2, 3))
    assert narrowed["low"] <= best[0] and best[1] <= narrowed["high"]
    assert narrowed["high"] / narrowed["low"] < 1e5 / 10  # much narrower than the 5 decades searched
    second = list(study.runs.filter(stage=1))
    assert len(second) == 3 and all(run.config["epochs"] == 5 for run in second)
    assert all(narrowed["low"] <= run.config["optimizer"]["lr"] <= narrowed["high"] for run in second)
    for run in second:
        finish(run, 0.97)
    study.refresh_from_db()
    assert study.status == "finished" and study.finished_at is not None


def test_a_run_below_the_median_of_its_peers_is_stopped_by_its_sink():
    spec = {
        "kind": "grid",
        "base": BASE,
        "choices": {"optimizer.lr": [0.1, 0.2, 0.3, 0.4]},
        "early_stopping": {"rule": "median", "min_epochs": 2, "min_runs": 3},
    }
    study = create_study("p", "early", spec)
    *peers, hopeless = list(study.runs.order_by("pk"))
    for peer in peers:
        ChunkWriter(peer.pk).write({"val_acc": (np.array([9, 19, 29]), np.array([0.6, 0.8, 0.9]))})
    Run.objects.filter(pk=hopeless.pk).update(status="running")
    sink = DatabaseSink(Run.objects.get(pk=hopeless.pk), flush_seconds=0.0)
    sink.scalars({"val_acc": (np.array([9]), np.array([0.1]))})
    assert not sink.should_stop()  # one epoch: too early to judge
    sink.scalars({"val_acc": (np.array([19]), np.array([0.2]))})
    assert sink.should_stop()
    assert sink.stop_reason().startswith(
        "stopped early after epoch 2: best validation accuracy 0.2000 is below the median 0.8000 of 3 other runs"
    )


def test_the_study_page_api_report_and_exports(logged_in, user):
    study = create_study(
        "p",
        "random lr",
        {
            "kind": "random",
            "base": BASE,
            "runs": 4,
            "params": {"optimizer.lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1e-1}},
        },
        user,
    )
    runs = list(study.runs.order_by("pk"))
    for run, accuracy in zip(runs, (0.9, 0.5, None, 0.7)):
        Run.objects.filter(pk=run.pk).update(status="succeeded" if accuracy else "diverged", best_val_accuracy=accuracy)
    page = logged_in.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="study-data"' in page and "chartjs-chart-pcp" in page
    data = logged_in.get(f"/api/studies/{study.pk}/").json()
    assert data["log_keys"] == ["optimizer.lr"] and data["total"] == 4 and len(data["rows"]) == 4
    assert [row["best_val_accuracy"] for row in data["rows"] if row["scored"]] == [0.9, 0.7, 0.5]
    markdown = logged_in.get(f"/studies/{study.pk}/report/?format=md").content.decode()
    assert markdown.startswith("# Study: random lr") and "| rank | run | optimizer.lr |" in markdown
    lines = logged_in.get(f"/studies/{study.pk}/report/?format=csv").content.decode().strip().splitlines()
    assert lines[0].startswith("rank,run,name,stage,optimizer.lr,best_val_accuracy") and len(lines) == 5
    assert logged_in.get(f"/studies/{study.pk}/report/").status_code == 200
    assert logged_in.get(f"/runs/?study={study.pk}").content.decode().count('class="run-select"') == 4
    logged_in.post(f"/studies/{study.pk}/notes/", {"notes": "Adam wins; try a wider range."})
    assert "Adam wins" in logged_in.get(f"/studies/{study.pk}/report/?format=md").content.decode()


def test_the_csv_report_quotes_text_a_spreadsheet_would_run_as_a_formula():
    import csv
    import io

    from tracker.core.study_report import report_csv

    row = {"id": 7, "name": '=HYPERLINK("http://evil.example","x")', "stage": "@SUM(A1)", "values": {"tag": "+1+2"}}
    row |= {"best_val_accuracy": 0.5, "final_loss": -0.25, "status": "succeeded", "health": "ok", "seconds": 3.0}
    row["finding"] = "-cmd|' /C calc'!A0"
    data = {"keys": ["tag", "optimizer.lr"], "rows": [{**row, "values": {**row["values"], "optimizer.lr": "-0.5"}}]}
    cells = list(csv.reader(io.StringIO(report_csv(data))))[1]
    assert cells[2] == '\'=HYPERLINK("http://evil.example","x")' and cells[3] == "'@SUM(A1)"
    assert cells[4] == "'+1+2" and cells[5] == "-0.5"  # a number stays a number
    assert cells[7] == "-0.25" and cells[10] == "'-cmd|' /C calc'!A0"


def test_the_web_form_refuses_a_bad_spec_and_creates_a_good_one(logged_in):
    response = logged_in.post("/studies/", {"project": "p", "name": "s", "spec": "kind: random\nruns: 3\nparams: {}"})
    assert response.status_code == 400 and "spec.params" in response.content.decode()
    assert not Study.objects.exists()
    response = logged_in.post("/studies/", {"project": "p", "name": "s", "spec": "{not json: [yaml"})
    assert response.status_code == 400 and "neither JSON" in response.content.decode()
    yaml_spec = "kind: grid\nbase: {epochs: 1}\nchoices:\n  optimizer.lr: [0.1, 0.01]\n"
    response = logged_in.post("/studies/", {"project": "p", "name": "grid", "spec": yaml_spec})
    study = Study.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/studies/{study.pk}/"
    assert study.runs.count() == 2


def test_the_api_creates_a_study_from_a_preset_or_refuses_with_400(logged_in):
    response = logged_in.post(
        "/api/studies/", json.dumps({"project": "p", "preset": "compare-schedules"}), content_type="application/json"
    )
    assert response.status_code == 201 and response.json()["total"] == 15
    response = logged_in.post(
        "/api/studies/",
        json.dumps({"project": "p", "name": "x", "spec": {"kind": "grid"}}),
        content_type="application/json",
    )
    assert response.status_code == 400 and "spec.choices" in response.json()["errors"]


def test_the_cli_creates_a_study_from_a_yaml_file_with_the_same_validation(tmp_path, capsys):
    path = tmp_path / "lr.yaml"
    path.write_text(
        "kind: random\nbase: {epochs: 1}\nruns: 3\nparams:\n"
        "  optimizer.lr: {distribution: log_uniform, low: 1.0e-4, high: 1.0e-1}\n"
    )
    call_command("study", "create", "--spec", str(path), "--project", "cli")
    assert "created study" in capsys.readouterr().out and Study.objects.get().runs.count() == 3
    path.write_text("kind: random\nruns: 3\nparams:\n  optimizer.lr: {distribution: log_uniform, low: 0, high: 1}\n")
    with pytest.raises(CommandError, match=r"spec\.params\.optimizer\.lr\.low"):
        call_command("study", "create", "--spec", str(path))
    assert Study.objects.count() == 1


def test_summary_warns_when_the_best_value_sits_on_the_edge_of_the_range():
    study = create_study(
        "p",
        "edge",
        {
            "kind": "random",
            "base": BASE,
            "runs": 5,
            "params": {"optimizer.lr": {"distribution": "log_uniform", "low": 1e-6, "high": 1e-3}},
        },
    )
    for run in study.runs.all():
        lr = run.study_values["optimizer.lr"]
        Run.objects.filter(pk=run.pk).update(status="succeeded", best_val_accuracy=0.5 if lr < 9e-4 else 0.9)
    Run.objects.filter(pk=study.runs.first().pk).update(study_values={"optimizer.lr": 9.5e-4})
    warnings = summary(study)["warnings"]
    assert len(warnings) == 1 and "high edge" in warnings[0] and "widen the range upwards" in warnings[0]


def test_promote_trains_the_top_k_longer_as_a_new_stage(logged_in, user):
    study = create_study(
        "p", "promote me", {"kind": "grid", "base": BASE, "choices": {"optimizer.lr": [0.1, 0.2, 0.3]}}, user
    )
    for run, accuracy in zip(study.runs.order_by("pk"), (0.8, 0.9, 0.7)):
        finish(run, accuracy)
    study.refresh_from_db()
    assert study.status == "finished"
    response = logged_in.post(f"/studies/{study.pk}/promote/", {"k": "2", "epochs": "12"})
    assert response.status_code == 302
    promoted = list(study.runs.filter(stage=1).order_by("pk"))
    assert [run.config["optimizer"]["lr"] for run in promoted] == [0.2, 0.1]  # best first
    assert all(run.config["epochs"] == 12 and run.status == "queued" for run in promoted)
    assert Study.objects.get(pk=study.pk).status == "running"
    response = logged_in.post(f"/studies/{study.pk}/promote/", {"k": "0", "epochs": "12"})
    assert response.status_code == 400 and "k: must be a whole number" in response.content.decode()


def test_the_admin_adds_a_study_through_the_same_validated_form(client, staff):
    client.force_login(staff)
    response = client.post(
        "/admin/tracker/study/add/",
        {"project": "p", "name": "s", "preset": "", "spec": '{"kind": "grid", "choices": {"optimizer.lr": [-1]}}'},
    )
    assert response.status_code == 200 and "optimizer.lr" in response.content.decode() and not Study.objects.exists()
    response = client.post(
        "/admin/tracker/study/add/", {"project": "p", "name": "schedules study", "preset": "compare-schedules"}
    )
    study = Study.objects.get()
    assert response.status_code == 302 and study.runs.count() == 15 and study.preset == "compare-schedules"
    assert "schedules study" in client.get("/admin/tracker/study/").content.decode()


def test_notes_have_one_limit_on_every_path(logged_in, user):
    """The web page used to cut long notes silently; the API refused them; the form had no limit."""
    from tracker.core.studies import MAX_NOTES

    study = create_study("p", "n", user=user, preset="random-lr")
    response = logged_in.post(f"/studies/{study.pk}/notes/", {"notes": "x" * (MAX_NOTES + 1)})
    assert response.status_code == 400 and f"at most {MAX_NOTES} characters" in response.content.decode()
    study.refresh_from_db()
    assert study.notes == ""
    body = {"project": "p", "preset": "random-lr", "notes": "x" * (MAX_NOTES + 1)}
    refused = logged_in.post("/api/studies/", json.dumps(body), content_type="application/json")
    assert refused.status_code == 400 and "notes" in refused.json()["errors"]
    assert logged_in.post(f"/studies/{study.pk}/notes/", {"notes": "Adam wins."}).status_code == 302
    study.refresh_from_db()
    assert study.notes == "Adam wins."


def test_a_yaml_alias_bomb_and_deep_nesting_are_refused_with_a_message(logged_in):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n"
    response = logged_in.post("/studies/", {"project": "p", "name": "s", "spec": bomb})
    assert response.status_code == 400 and "aliases (*name) are not accepted" in response.content.decode()
    assert len(response.content) < 50_000  # the spec is not expanded into the page
    deep = "[" * 100_000 + "]" * 100_000
    response = logged_in.post("/studies/", {"project": "p", "name": "s", "spec": deep})
    assert response.status_code == 400 and "nested deeper than 64 levels" in response.content.decode()
    api = logged_in.post("/api/runs/", deep, content_type="application/json")
    assert api.status_code == 400 and "nested deeper than 64 levels" in api.json()["errors"]["body"]


def test_a_members_study_stops_before_its_next_stage_once_the_members_account_is_gone(user, client):
    study = create_study("p", "c2f of a member", COARSE, user)
    assert not study.reads_any_path and not study.runs.filter(reads_any_path=True).exists()
    user.delete()
    for run in study.runs.all():
        finish(run, 0.5)
    study.refresh_from_db()
    # queued as nobody, stage 2 would read any path, as the command line's runs do
    assert study.status == "cancelled" and study.stage == 0 and not study.runs.filter(stage=1).exists()
    assert study.message == "stage 2 not queued: the account that created the study was deleted"
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    assert study.message in client.get(f"/studies/{study.pk}/").content.decode()


def test_a_study_of_the_command_line_or_of_staff_goes_on_reading_any_path(staff):
    for creator in (None, staff):
        study = create_study("p", f"c2f of {creator}", COARSE, creator)
        assert study.reads_any_path
        for run in study.runs.all():
            finish(run, 0.5)
        study.refresh_from_db()
        assert study.stage == 1 and study.runs.filter(stage=1, reads_any_path=True).count() == 3
