import json

import numpy as np
import pytest

from tests.conftest import member_of
from tracker.core.storage import ChunkWriter
from tracker.models import Project, Run

pytestmark = pytest.mark.django_db


def post_json(client, body):
    return client.post(
        "/api/runs/", data=json.dumps(body) if not isinstance(body, str) else body, content_type="application/json"
    )


def test_a_valid_config_creates_a_queued_run_with_the_resolved_config(logged_in):
    response = post_json(logged_in, {"project": "mnist", "config": {"optimizer": {"name": "adam"}, "epochs": 2}})
    assert response.status_code == 201
    run = Run.objects.get()
    assert run.status == "queued" and run.queue == "cpu"
    assert run.config["optimizer"] == {
        "name": "adam",
        "lr": 1e-3,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "amsgrad": False,
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
    }
    assert run.name == "adam lr=0.001"
    assert response.json()["run"]["id"] == run.pk


@pytest.mark.parametrize(
    "config, field",
    [
        ({"optimizer": {"name": "lion"}}, "config.optimizer.name"),
        ({"optimizer": {"lr": -0.01}}, "config.optimizer.lr"),
        ({"batch_size": 0}, "config.batch_size"),
    ],
)
def test_an_invalid_config_is_refused_naming_the_field_and_nothing_is_created(logged_in, config, field):
    response = post_json(logged_in, {"project": "p", "config": config})
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert Run.objects.count() == 0 and Project.objects.count() == 0


def test_malformed_json_is_a_400_with_a_message(logged_in):
    response = post_json(logged_in, "{not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["errors"]["body"]


def test_unknown_top_level_fields_are_refused(logged_in):
    response = post_json(logged_in, {"project": "p", "config": {}, "urgency": 3})
    assert response.status_code == 400 and "urgency" in response.json()["errors"]
    assert "priority" in response.json()["errors"]["urgency"]  # the message lists what is allowed


def test_the_api_needs_a_login(client):
    assert client.get("/api/runs/").status_code == 401
    assert post_json(client, {"config": {}}).status_code == 401


@pytest.fixture
def run_with_series(user):
    run = Run.objects.create(project=member_of(user, "p"), config={"epochs": 1}, status="running")
    writer = ChunkWriter(run.pk)
    writer.write({"loss": (np.arange(0, 50), np.linspace(2.3, 1.0, 50)), "val_acc": (np.array([49]), np.array([0.9]))})
    writer.write({"loss": (np.arange(50, 60), np.array([1.0] * 9 + [np.nan]))})
    return run


def test_the_series_endpoint_serves_the_requested_keys_and_the_run(logged_in, run_with_series):
    body = logged_in.get(f"/api/runs/{run_with_series.pk}/series/?series=loss,val_acc").json()
    assert body["series"]["loss"]["steps"] == list(range(60))
    assert body["series"]["loss"]["values"][-1] is None  # NaN travels as null
    assert body["series"]["val_acc"] == {"steps": [49], "values": [0.9]}
    assert body["keys"] == ["loss", "val_acc"]
    assert body["run"]["status"] == "running" and body["run"]["finished"] is False


def test_polling_with_a_step_returns_only_newer_points(logged_in, run_with_series):
    body = logged_in.get(f"/api/runs/{run_with_series.pk}/series/?series=loss:54,val_acc:49").json()
    assert body["series"]["loss"]["steps"] == [55, 56, 57, 58, 59]
    assert body["series"]["val_acc"]["steps"] == []


def test_a_long_series_is_downsampled_to_the_requested_budget(logged_in, run_with_series):
    body = logged_in.get(f"/api/runs/{run_with_series.pk}/series/?series=loss&max_points=20").json()
    assert len(body["series"]["loss"]["steps"]) <= 20


@pytest.mark.parametrize(
    "query, field",
    [("series=loss;drop", "series"), ("series=loss:abc", "series"), ("series=loss&max_points=0", "max_points")],
)
def test_bad_series_parameters_are_a_400_naming_the_parameter(logged_in, run_with_series, query, field):
    response = logged_in.get(f"/api/runs/{run_with_series.pk}/series/?{query}")
    assert response.status_code == 400 and field in response.json()["errors"]


def test_an_unknown_run_is_a_404(logged_in):
    assert logged_in.get("/api/runs/999999/series/?series=loss").status_code == 404


@pytest.fixture
def run_with_histograms_and_images(user):
    from tracker.core.storage import write_histograms, write_images
    from trainer.sink import HistogramRecord, ImageRecord

    run = Run.objects.create(project=member_of(user, "h"), config={}, status="succeeded")
    write_histograms(
        run.pk,
        [
            HistogramRecord("weight/fc1.weight", step, -1.0, 1.0, np.array([1, 2, 3]), 0.1, 0.5)
            for step in (0, 100, 200)
        ],
    )
    write_images(run.pk, [ImageRecord("first_layer", step, np.full((3, 4), step, dtype=np.uint8)) for step in (9, 19)])
    return run


def test_the_histogram_endpoint_lists_keys_and_serves_a_key_over_time(logged_in, run_with_histograms_and_images):
    run = run_with_histograms_and_images
    assert logged_in.get(f"/api/runs/{run.pk}/histograms/").json() == {"keys": ["weight/fc1.weight"]}
    body = logged_in.get(f"/api/runs/{run.pk}/histograms/?key=weight/fc1.weight").json()
    assert body["steps"] == [0, 100, 200]
    assert body["histograms"][1] == {
        "step": 100,
        "low": -1.0,
        "high": 1.0,
        "counts": [1, 2, 3],
        "mean": 0.1,
        "std": 0.5,
        "zero_fraction": 0.0,
        "saturated_fraction": 0.0,
        "nonfinite": 0,
    }
    at = logged_in.get(f"/api/runs/{run.pk}/histograms/?key=weight/fc1.weight&step=150").json()
    assert [h["step"] for h in at["histograms"]] == [100]
    assert logged_in.get(f"/api/runs/{run.pk}/histograms/?key=w&step=x").status_code == 400


def test_the_image_endpoint_serves_the_latest_or_a_chosen_step(logged_in, run_with_histograms_and_images):
    import base64

    run = run_with_histograms_and_images
    body = logged_in.get(f"/api/runs/{run.pk}/images/?key=first_layer").json()
    assert body["steps"] == [9, 19]
    image = body["image"]
    assert (image["step"], image["height"], image["width"], image["channels"]) == (19, 3, 4, 1)
    assert base64.b64decode(image["pixels"]) == bytes([19] * 12)
    earlier = logged_in.get(f"/api/runs/{run.pk}/images/?key=first_layer&step=10").json()
    assert earlier["image"]["step"] == 9
    assert body["roughness"] is None  # not measured (tiles too small)
    ChunkWriter(run.pk).write({"first_layer_roughness": (np.array([9, 19]), np.array([0.99, 0.62]))})
    assert logged_in.get(f"/api/runs/{run.pk}/images/?key=first_layer").json()["roughness"] == 0.62
    assert logged_in.get(f"/api/runs/{run.pk}/images/?key=first_layer&step=10").json()["roughness"] == 0.99


def test_zooming_asks_for_a_range_at_full_resolution(logged_in, run_with_series):
    body = logged_in.get(f"/api/runs/{run_with_series.pk}/series/?series=loss&from=10&until=19&max_points=10").json()
    assert body["series"]["loss"]["steps"] == list(range(10, 20))
    assert logged_in.get(f"/api/runs/{run_with_series.pk}/series/?series=loss&from=20&until=10").status_code == 400
    assert logged_in.get(f"/api/runs/{run_with_series.pk}/series/?series=loss&from=x").status_code == 400


def test_an_ended_run_may_be_cached_and_a_running_one_not(logged_in, run_with_series):
    url = f"/api/runs/{run_with_series.pk}/series/?series=loss"
    assert logged_in.get(url)["Cache-Control"] == "no-store"
    Run.objects.filter(pk=run_with_series.pk).update(status="succeeded")
    assert "max-age" in logged_in.get(url)["Cache-Control"]


def test_the_layer_matrix_has_a_row_per_tensor_in_model_order_and_log10_cells(logged_in, user):
    run = Run.objects.create(project=member_of(user, "layers"), config={}, status="running")
    steps = np.arange(0, 100, 10)
    ChunkWriter(run.pk).write(
        {
            "update_ratio/out.weight": (steps, np.full(10, 1e-3)),
            "update_ratio/fc10.weight": (steps, np.full(10, 1e-2)),
            "update_ratio/fc2.weight": (steps, np.where(steps < 50, 1e-4, 1e-2)),
            "update_ratio/fc2.bias": (steps, np.zeros(10)),  # no log10 of 0: empty cells
        }
    )
    body = logged_in.get(f"/api/runs/{run.pk}/layers/?quantity=update_ratio&buckets=2").json()
    assert body["rows"] == ["fc2.weight", "fc2.bias", "fc10.weight", "out.weight"]
    assert body["values"][0] == [-4.0, -2.0] and body["values"][1] == [None, None]
    assert body["values"][3] == [-3.0, -3.0] and body["log10"] is True
    assert logged_in.get(f"/api/runs/{run.pk}/layers/?quantity=loss").status_code == 400


def test_the_layer_matrix_holds_a_value_over_the_buckets_between_two_measurements(logged_in, user):
    # ratios every 5 steps for the first 100 (the dense start), then every 20: 65 points on a
    # 1,000-step run, as many equal buckets, some of which hold no measurement
    run = Run.objects.create(project=member_of(user, "layers"), config={}, status="running")
    steps = np.concatenate([np.arange(0, 100, 5), np.arange(100, 1000, 20)])
    ratios = 1e-3 * (1 + steps / 1000)
    diverged = np.where(steps >= 900, np.nan, ratios)  # a tensor whose ratio turned NaN near the end
    ChunkWriter(run.pk).write(
        {"update_ratio/fc1.weight": (steps, ratios), "update_ratio/fc2.weight": (steps[10:], diverged[10:])}
    )
    body = logged_in.get(f"/api/runs/{run.pk}/layers/?quantity=update_ratio&buckets=200").json()
    first, second = body["values"]
    assert len(first) == 65 and None not in first  # no blank columns between measurements
    assert all(a <= b for a, b in zip(first, first[1:]))  # each gap shows the value before it
    assert second[:3] == [None] * 3  # not measured before step 50 (buckets of 15.4 steps)
    assert all(v is not None for v in second[3:58]) and second[-6:] == [None] * 6  # NaN from step 900


def test_histograms_over_time_are_rebinned_on_one_value_grid():
    from tracker.core.layers import histogram_matrix

    histograms = [
        {"step": 0, "low": 0.0, "high": 1.0, "counts": [4, 0]},
        {"step": 10, "low": 0.0, "high": 2.0, "counts": [0, 6]},
    ]
    matrix = histogram_matrix(histograms, rows=4)
    assert matrix["edges"] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert matrix["fractions"][0] == [1.0, 0.0, 0.0, 0.0]  # [0, 0.5) holds the first step's 4
    assert matrix["fractions"][1] == [0.0, 0.0, 0.5, 0.5]  # [1, 2) spreads over two rows
    assert histogram_matrix([]) == {"steps": [], "edges": [], "fractions": []}


def test_tags_are_validated_stored_and_filter_the_runs_list(logged_in):
    response = post_json(logged_in, {"project": "t", "config": {}, "tags": ["baseline", "lr-sweep", "baseline"]})
    assert response.status_code == 201 and response.json()["run"]["tags"] == ["baseline", "lr-sweep"]
    post_json(logged_in, {"project": "t", "config": {}, "name": "untagged"})
    html = logged_in.get("/runs/?tag=lr-sweep").content.decode()
    assert "sgd lr=0.1" in html and "untagged" not in html
    for bad in (["has space"], "baseline", ["x"] * 11, [3]):
        response = post_json(logged_in, {"project": "t", "config": {}, "tags": bad})
        assert response.status_code == 400 and "tags" in response.json()["errors"]
    assert Run.objects.count() == 2


def test_a_run_can_be_queued_with_a_priority(logged_in):
    response = post_json(logged_in, {"project": "p", "config": {"epochs": 1}, "priority": 7})
    assert response.status_code == 201 and response.json()["run"]["priority"] == 7
    response = post_json(logged_in, {"project": "p", "config": {"epochs": 1}, "priority": 1000})
    assert response.status_code == 400 and "-100 to 100" in response.json()["errors"]["priority"]
