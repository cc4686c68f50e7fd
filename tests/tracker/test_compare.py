import numpy as np
import pytest

from tests.conftest import member_of
from tracker.core.compare import config_diff, flatten, group_bands, label
from tracker.core.storage import ChunkWriter
from tracker.models import Run


def make(project, optimizer="adam", lr=0.001, seed=0, name="r", values=None, steps=None):
    config = {"optimizer": {"name": optimizer, "lr": lr}, "seed": seed, "epochs": 3}
    run = Run.objects.create(project=project, name=name, config=config, status="succeeded", steps_per_epoch=10)
    if values is not None:
        ChunkWriter(run.pk).write(
            {
                "loss": (np.arange(len(values)) if steps is None else steps, np.asarray(values, float)),
                "lr": (np.arange(len(values)), np.full(len(values), lr)),
            }
        )
    return run


def test_flatten_and_diff_show_only_the_keys_that_differ():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}

    class Fake:
        def __init__(self, config):
            self.config = config

    runs = [
        Fake({"optimizer": {"name": "adam", "lr": 0.1}, "seed": 0}),
        Fake({"optimizer": {"name": "sgd", "lr": 0.1}, "seed": 1}),
    ]
    assert config_diff(runs) == {"optimizer.name": ["adam", "sgd"], "seed": [0, 1]}
    assert label(runs[0], ["optimizer.name", "optimizer.lr"]) == "adam lr=0.1"


def test_group_bands_are_computed_over_every_run_of_the_group():
    series = {
        1: (np.arange(5), np.array([1.0, 2, 3, 4, 5])),
        2: (np.arange(5), np.array([3.0, 4, 5, 6, 7])),
        3: (np.arange(5), np.array([5.0, 6, 7, 8, 9])),
    }
    bands = group_bands(series, {"adam": [1, 2, 3]})["adam"]
    assert bands["steps"] == [0, 1, 2, 3, 4]
    assert bands["mean"] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert bands["min"] == [1.0, 2.0, 3.0, 4.0, 5.0] and bands["max"] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert bands["std"][0] == pytest.approx(np.std([1, 3, 5]))
    assert bands["count"] == [3] * 5


def test_a_run_that_stopped_early_counts_only_where_it_has_points():
    series = {1: (np.arange(10), np.zeros(10)), 2: (np.arange(5), np.ones(5))}
    bands = group_bands(series, {"g": [1, 2]})["g"]
    assert bands["count"][0] == 2 and bands["count"][-1] == 1
    assert bands["mean"][0] == 0.5 and bands["mean"][-1] == 0.0


@pytest.mark.django_db
def test_the_compare_endpoint_overlays_runs_and_groups_them(logged_in, user):
    project = member_of(user, "c")
    runs = [make(project, "adam", 0.001, seed, f"adam {seed}", np.linspace(2, 1, 50) + seed * 0.1) for seed in range(3)]
    runs.append(make(project, "sgd", 0.1, 0, "sgd", np.linspace(2, 1.5, 50)))
    ids = ",".join(str(r.pk) for r in runs)
    body = logged_in.get(f"/api/compare/?runs={ids}&metric=loss&lr=1").json()
    assert [r["label"] for r in body["runs"]] == ["adam lr=0.001", "adam lr=0.001", "adam lr=0.001", "sgd lr=0.1"]
    assert set(body["diff"]) == {"optimizer.name", "optimizer.lr", "seed"}
    assert body["runs"][0]["lr"]["values"][0] == 0.001 and body["keys"] == ["loss", "lr"]
    grouped = logged_in.get(f"/api/compare/?runs={ids}&metric=loss&group=optimizer.name").json()
    assert set(grouped["groups"]) == {"name=adam", "name=sgd"}
    adam = grouped["groups"]["name=adam"]
    assert adam["runs"] == [r.pk for r in runs[:3]] and adam["mean"][0] == pytest.approx(2.1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, field",
    [
        ("runs=", "runs"),
        ("runs=x", "runs"),
        ("runs=999999", "runs"),
        ("runs={id}&metric=bad;key", "metric"),
        ("runs={id}&group=Optimizer Name", "group"),
        ("runs={id}&group=model.nothing", "group"),
        ("runs={id}&max_points=1", "max_points"),
    ],
)
def test_bad_comparison_parameters_are_a_400_naming_the_parameter(logged_in, user, query, field):
    run = make(member_of(user, "c"), values=[1.0, 2.0])
    response = logged_in.get("/api/compare/?" + query.format(id=run.pk))
    assert response.status_code == 400 and field in response.json()["errors"]


@pytest.mark.django_db
def test_labels_leave_out_settings_only_some_optimizers_have(logged_in, user):
    project = member_of(user, "c")
    adam = Run.objects.create(
        project=project,
        name="a",
        status="succeeded",
        config={"optimizer": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999]}},
    )
    sgd = Run.objects.create(
        project=project, name="s", status="succeeded", config={"optimizer": {"name": "sgd", "lr": 0.1}}
    )
    body = logged_in.get(f"/api/compare/?runs={adam.pk},{sgd.pk}").json()
    assert [r["label"] for r in body["runs"]] == ["adam lr=0.001", "sgd lr=0.1"]
    assert body["diff"]["optimizer.betas"] == [[0.9, 0.999], None]


@pytest.mark.django_db
def test_the_comparison_reads_a_fixed_number_of_queries_however_many_runs(logged_in, user):
    """It used to read each run's metric and wall time one query each: 104 queries for 50 runs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    project = member_of(user, "c")
    runs = [make(project, lr=0.001 * (i + 1), values=np.linspace(2, 1, 50)) for i in range(30)]

    def queries(ids: list[int]) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = logged_in.get(f"/api/compare/?runs={','.join(map(str, ids))}&group=optimizer.name&lr=1")
        assert response.status_code == 200 and len(response.json()["runs"]) == len(ids)
        return len(captured)

    assert queries([run.pk for run in runs[:2]]) == queries([run.pk for run in runs]) <= 10
