"""The job queue: priorities, positions, the claim that runs each job once, and the admin."""

import json

import numpy as np
import pytest

from tracker.core.runs import create_run, queue_positions, set_priority
from tracker.core.storage import ChunkWriter, read_series, truncate_run, write_histograms
from tracker.models import Histogram, Project, Run, Series
from tracker.worker.execute import claim_next
from trainer.config import ConfigError
from trainer.sink import HistogramRecord

pytestmark = pytest.mark.django_db


def queued(name: str, priority: int = 0, queue: str = "cpu") -> Run:
    return Run.objects.create(
        project=Project.objects.get_or_create(name="q")[0],
        name=name,
        config={"epochs": 1},
        priority=priority,
        queue=queue,
    )


def test_workers_take_the_highest_priority_first_then_the_oldest():
    old, new, urgent, gpu = queued("old"), queued("new"), queued("urgent", 5), queued("gpu", 9, "gpu")
    assert queue_positions("cpu") == {urgent.pk: 1, old.pk: 2, new.pk: 3}
    assert queue_positions()[gpu.pk] == 1  # each queue has its own order
    assert [claim_next("cpu", "w@h") for _ in range(4)] == [urgent.pk, old.pk, new.pk, None]
    assert Run.objects.get(pk=urgent.pk).status == "running" and Run.objects.get(pk=urgent.pk).attempts == 1


def test_a_priority_changed_while_queued_takes_effect_at_the_next_claim():
    first, second = queued("first"), queued("second")
    assert set_priority(second, 3)
    assert queue_positions("cpu") == {second.pk: 1, first.pk: 2}
    assert claim_next("cpu", "w@h") == second.pk
    assert not set_priority(second, 10)  # running: no longer in the queue
    assert Run.objects.get(pk=second.pk).priority == 3


@pytest.mark.parametrize("bad", [101, -101, 1.5, "high", True])
def test_a_priority_out_of_range_or_of_the_wrong_type_is_refused(bad):
    run = queued("q")
    with pytest.raises(ConfigError) as error:
        set_priority(run, bad)
    assert "priority" in error.value.errors and "-100 to 100" in error.value.errors["priority"]
    with pytest.raises(ConfigError):
        create_run("p", {"epochs": 1}, priority=bad)
    assert Run.objects.count() == 1  # nothing half-created


def test_a_second_claim_of_the_same_token_finds_the_run_taken():
    queued("only")
    assert claim_next("cpu", "w1@h") is not None
    assert claim_next("cpu", "w2@h") is None


def test_truncating_at_a_checkpoint_keeps_every_step_before_it_and_none_after():
    run = queued("resumed")
    writer = ChunkWriter(run.pk)
    for start in range(0, 100, 25):  # four chunks, the checkpoint inside the third
        writer.write(
            {
                "loss": (np.arange(start, start + 25), np.arange(start, start + 25, dtype=float)),
                "late": (np.array([start + 24]), np.array([1.0])),
            }
        )
    write_histograms(
        run.pk, [HistogramRecord("weight/fc1", step, -1, 1, np.ones(4, np.int64), 0, 1) for step in (0, 50, 60, 90)]
    )
    truncate_run(run.pk, 60)
    steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(60))
    summary = Series.objects.get(run=run, key="loss")
    assert (summary.count, summary.last_step, summary.last_value, summary.max_value) == (60, 59, 59.0, 59.0)
    assert list(read_series(run.pk, "late")[0]) == [24, 49]
    assert sorted(Histogram.objects.filter(run=run).values_list("step", flat=True)) == [0, 50]
    # a new writer (the resumed attempt's) stores the steps from the checkpoint on again
    ChunkWriter(run.pk).write({"loss": (np.arange(60, 100), np.zeros(40))})
    np.testing.assert_array_equal(read_series(run.pk, "loss")[0], np.arange(100))
    truncate_run(run.pk, 0)
    assert not Series.objects.filter(run=run).exists()


def test_the_admin_job_queue_shows_positions_and_edits_a_queued_runs_priority(client, staff):
    client.force_login(staff)
    first, second = queued("first"), queued("second")
    running = queued("running")
    Run.objects.filter(pk=running.pk).update(status="running")
    html = client.get("/admin/tracker/run/").content.decode()
    assert "1 in cpu" in html and "2 in cpu" in html
    form = {"form-TOTAL_FORMS": "3", "form-INITIAL_FORMS": "3", "_save": "Save"}
    for index, (run, priority) in enumerate([(running, 7), (second, 4), (first, 0)]):
        form.update({f"form-{index}-id": str(run.pk), f"form-{index}-priority": str(priority)})
    response = client.post("/admin/tracker/run/", form)
    assert "priority only changes while it is queued" in response.content.decode()  # nothing saved
    assert Run.objects.get(pk=second.pk).priority == 0
    form["form-0-priority"] = "0"
    response = client.post("/admin/tracker/run/", form)
    assert response.status_code == 302
    assert queue_positions("cpu") == {second.pk: 1, first.pk: 2}
    assert Run.objects.get(pk=running.pk).status == "running"  # the save wrote only the priority


def test_clone_and_edit_queues_a_validated_copy_with_the_edited_config(client, staff):
    client.force_login(staff)
    source = create_run("clones", {"epochs": 2, "optimizer": {"name": "adam"}}, "original", tags=["a"])
    response = client.post("/admin/tracker/run/", {"action": "clone", "_selected_action": [source.pk]})
    assert response.status_code == 302 and response["Location"].endswith(f"/admin/tracker/run/{source.pk}/clone/")
    page = client.get(response["Location"]).content.decode()
    assert "original (clone)" in page and "&quot;adam&quot;" in page

    edited = {**source.config, "optimizer": {"name": "sgd", "lr": 2.0e9}}
    form = {"project": "clones", "name": "copy", "tags": "a, b", "priority": "2", "config": json.dumps(edited)}
    response = client.post(f"/admin/tracker/run/{source.pk}/clone/", form)
    assert response.status_code == 200 and "config.optimizer.lr" in response.content.decode()
    assert Run.objects.count() == 1  # refused: nothing created
    assert (
        "not valid JSON"
        in client.post(f"/admin/tracker/run/{source.pk}/clone/", {**form, "config": "{oops"}).content.decode()
    )

    edited["optimizer"]["lr"] = 0.05
    response = client.post(f"/admin/tracker/run/{source.pk}/clone/", {**form, "config": json.dumps(edited)})
    clone = Run.objects.exclude(pk=source.pk).get()
    assert response.status_code == 302 and response["Location"].endswith(f"/admin/tracker/run/{clone.pk}/change/")
    assert clone.config["optimizer"] == {"name": "sgd", "lr": 0.05, "weight_decay": 0.0}
    assert (clone.name, clone.tags, clone.priority, clone.status) == ("copy", ["a", "b"], 2, "queued")
