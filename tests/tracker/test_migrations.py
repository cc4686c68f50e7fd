"""Migrations that move data: a run's checkpoint kept as a bytea row becomes a file of the
artifact store and a row of the checkpoints' history."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tracker.core import blobs

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_checkpoint_row_moves_into_the_artifact_store(settings, tmp_path):
    settings.TRAINWATCH_ARTIFACTS_DIR = tmp_path / "store"
    blobs._store.cache_clear()
    before, after = [("tracker", "0027_artifacts")], [("tracker", "0028_checkpoints_in_the_store")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    project = old.get_model("tracker", "Project").objects.create(name="old")
    run = old.get_model("tracker", "Run").objects.create(project=project, name="r", config={}, status="succeeded")
    old.get_model("tracker", "RunCheckpoint").objects.create(
        run=run, step=120, epoch=3, data=b"weights" * 1000, size=7000
    )
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
        new = executor.loader.project_state(after).apps
        [checkpoint] = new.get_model("tracker", "Checkpoint").objects.filter(run_id=run.pk)
        assert (checkpoint.step, checkpoint.epoch, checkpoint.size) == (120, 3, 7000)
        assert b"".join(blobs.store().read(checkpoint.blob_id)) == b"weights" * 1000
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        blobs._store.cache_clear()
