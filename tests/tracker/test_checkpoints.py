"""A run's checkpoints live in the artifact store, a small row each in PostgreSQL; the run's
retention keeps the latest few, the best by its metric and one every K steps, and the files of
the others go."""

import os

import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import member_of
from tracker.core import blobs, checkpoints
from tracker.models import Blob, Checkpoint, Run, Series

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_store(settings, tmp_path):
    settings.TRAINWATCH_ARTIFACTS_DIR = tmp_path / "store"
    blobs._store.cache_clear()
    yield
    blobs._store.cache_clear()


def a_run(user, **retention):
    return Run.objects.create(
        project=member_of(user, "ckpt"), name="resnet", config={"checkpoints": retention}, status="running"
    )


def measured(run, value):
    Series.objects.update_or_create(run=run, key="val_acc", defaults={"count": 1, "last_step": 0, "last_value": value})


def test_the_retention_keeps_the_latest_the_best_and_every_kth_and_deletes_the_other_files(user):
    run = a_run(user, keep_latest=2, best_metric="val_acc", keep_every=4)
    contents = {}
    for step, accuracy in zip(range(1, 9), [0.1, 0.5, 0.9, 0.3, 0.2, 0.4, 0.35, 0.3]):
        measured(run, accuracy)
        contents[step] = os.urandom(10_000)
        checkpoints.save(run.pk, step, 0, contents[step], timezone.now())
    kept = {c.step: c for c in Checkpoint.objects.filter(run=run)}
    assert sorted(kept) == [3, 4, 7, 8]  # best (0.9), every 4th, the latest two
    assert checkpoints.best(run.pk).step == 3 and checkpoints.latest(run.pk).step == 8
    assert checkpoints.read(kept[3]) == contents[3]
    # the files of the checkpoints let go are gone from the store and its index
    assert Blob.objects.count() == 4
    store = blobs.store()
    assert sum(store.has(c.blob_id) for c in kept.values()) == 4
    assert len([path for path in (store.root / "blobs").rglob("*") if path.is_file()]) == 4


def test_postgresql_grows_by_a_small_row_per_checkpoint_whatever_its_size(user):
    run = a_run(user, keep_latest=2, best_metric="")

    def database_bytes():
        with connection.cursor() as cursor:
            cursor.execute(
                "select pg_total_relation_size('tracker_checkpoint') + pg_total_relation_size('tracker_blob')"
            )
            return cursor.fetchone()[0]

    checkpoints.save(run.pk, 0, 0, os.urandom(1_000_000), timezone.now())
    before = database_bytes()
    for step in range(1, 21):  # 20 MB of checkpoints
        checkpoints.save(run.pk, step, 0, os.urandom(1_000_000), timezone.now())
    grown = database_bytes() - before
    assert grown / 20 < 4096, f"{grown} bytes for 20 checkpoints of 1 MB"
    assert Checkpoint.objects.filter(run=run).count() == 2


def test_a_checkpoint_is_listed_and_downloaded_by_the_runs_project_only(client, user, django_user_model):
    run = a_run(user, keep_latest=1, best_metric="val_acc")
    measured(run, 0.8)
    checkpoints.save(run.pk, 10, 1, b"the model at step 10", timezone.now())
    client.force_login(user)
    listed = client.get(f"/api/runs/{run.pk}/checkpoints/").json()
    assert [(c["step"], c["kept_as"], c["metric"]) for c in listed["checkpoints"]] == [(10, ["latest", "best"], 0.8)]
    download = client.get(f"/runs/{run.pk}/checkpoints/10/")
    assert b"".join(download.streaming_content) == b"the model at step 10"
    assert 'filename="resnet-step10.pt"' in download["Content-Disposition"]
    assert "checkpoints-table" in client.get(f"/runs/{run.pk}/").content.decode()
    client.force_login(django_user_model.objects.create_user("mallory", password="x"))
    assert client.get(f"/runs/{run.pk}/checkpoints/10/").status_code == 404
    assert client.get(f"/api/blobs/{listed['checkpoints'][0]['digest']}/").status_code == 404
    assert client.get(f"/api/runs/{run.pk}/checkpoints/").status_code == 404


def test_a_retention_is_validated_where_a_run_is_queued(client, user):
    client.force_login(user)
    answer = client.post(
        "/api/runs/",
        {"project": "ckpt", "config": {"epochs": 1, "checkpoints": {"keep_latest": 0, "best_mode": "up"}}},
        content_type="application/json",
    )
    errors = answer.json()["errors"]
    assert answer.status_code == 400 and {"config.checkpoints.keep_latest", "config.checkpoints.best_mode"} <= set(
        errors
    )
