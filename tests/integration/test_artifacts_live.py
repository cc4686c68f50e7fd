"""Artifacts end to end: a script's client against gunicorn, with the filesystem store and with an
S3-compatible server the suite starts (moto's standalone server): files and folders logged and
read back by another run, stored once, a 1 GB file with the client's memory in bounds, an upload
cut off by killing the server that goes on after its restart, and a job on a real worker."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, WebServer, member_of, wait_until
from tracker.models import ArtifactUse, ArtifactVersion, Blob, Run

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

BUCKET = "trainwatch-artifacts"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """moto's standalone S3-compatible server on a loopback port, with the store's bucket."""
    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    try:
        wait_until(answers, 30, "moto's server to listen")
        os.environ.update(S3_CREDENTIALS)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(params=["filesystem", "s3"])
def store_server(request, django_db_setup, tmp_path) -> Iterator[WebServer]:
    """gunicorn with the artifact store under test."""
    web = WebServer()
    if request.param == "s3":
        web.environment.update(
            S3_CREDENTIALS,
            TRAINWATCH_ARTIFACTS_S3_BUCKET=BUCKET,
            TRAINWATCH_ARTIFACTS_S3_ENDPOINT=request.getfixturevalue("s3_server"),
            TRAINWATCH_ARTIFACTS_S3_PREFIX=f"{tmp_path.name}/",
        )
    else:
        web.environment["TRAINWATCH_ARTIFACTS_DIR"] = str(tmp_path / "store")
    web.start()
    yield web
    web.stop()


@pytest.fixture
def client_of(store_server, token, tmp_path, monkeypatch, user):
    member_of(user, "vision")
    monkeypatch.setenv("TRAINWATCH_URL", store_server.url)
    monkeypatch.setenv("TRAINWATCH_TOKEN", token)
    monkeypatch.setenv("TRAINWATCH_DIR", str(tmp_path / "client"))
    monkeypatch.setenv("TRAINWATCH_ARTIFACT_TIMEOUT", "60")
    return store_server


def folder_of_files(root: Path) -> Path:
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "model.pt").write_bytes(os.urandom(3 * 2**20 + 17))  # a partial chunk at its end
    (root / "config.json").write_text(json.dumps({"lr": 0.1}))
    (root / "empty.txt").write_bytes(b"")
    return root


def test_a_folder_logged_by_one_run_is_read_back_by_another_and_stored_once(client_of, tmp_path):
    import trainwatch

    folder = folder_of_files(tmp_path / "out")
    with trainwatch.init(project="vision", name="trains") as producer:
        logged = producer.log_artifact(folder, name="resnet", type="model", aliases=["best"], metadata={"acc": 0.9})
    assert logged is not None and logged.ref == "resnet:v1" and logged.created and logged.sent > 3 * 2**20
    with trainwatch.init(project="vision", name="evaluates") as consumer:
        path = consumer.use_artifact("resnet:best")
        again = consumer.log_artifact(folder, name="resnet", type="model")  # the same content
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == [
        "config.json",
        "empty.txt",
        "weights/model.pt",
    ]
    for name in ("config.json", "empty.txt", "weights/model.pt"):
        assert (path / name).read_bytes() == (folder / name).read_bytes()
    assert again is not None and not again.created and again.ref == "resnet:v1" and again.sent == 0
    assert Blob.objects.count() == 3  # each file stored once
    version = ArtifactVersion.objects.get()
    assert version.run.name == "trains" and version.metadata == {"acc": 0.9}
    assert [use.run.name for use in ArtifactUse.objects.all()] == ["evaluates"]


def test_an_upload_cut_off_by_a_server_restart_goes_on_from_what_it_kept(client_of, tmp_path, monkeypatch):
    import trainwatch
    from tracker.core import blobs

    big = tmp_path / "checkpoint.pt"
    size = 6 * blobs.CHUNK_BYTES + 1000
    with open(big, "wb") as out:
        for _ in range(7):
            out.write(os.urandom(blobs.CHUNK_BYTES))
    os.truncate(big, size)
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    sent_chunks: list[int] = []
    real_put = trainwatch.transport.Connection.put_chunk

    def put_and_count(self, digest_, size_, offset, data):
        answer = real_put(self, digest_, size_, offset, data)
        sent_chunks.append(offset)
        if len(sent_chunks) == 3:  # the server dies after the third chunk, and comes back 2 s later
            client_of.stop()
            threading.Timer(2.0, client_of.start).start()
        return answer

    monkeypatch.setattr(trainwatch.transport.Connection, "put_chunk", put_and_count)
    monkeypatch.setenv("TRAINWATCH_ARTIFACT_TIMEOUT", "120")
    with trainwatch.init(project="vision", name="interrupted") as run:
        logged = run.log_artifact(big, name="ckpt", type="checkpoint")
    assert logged is not None and logged.created
    # every chunk sent once: the upload went on from the fourth after the restart
    assert sent_chunks == [n * blobs.CHUNK_BYTES for n in range(7)]
    assert logged.sent == size and Blob.objects.get(digest=digest).size == size


def test_a_1_gb_file_goes_and_comes_back_with_the_clients_memory_in_bounds(store_server, token, tmp_path, user):
    member_of(user, "vision")
    script = ROOT / "bench" / "artifact_round_trip.py"
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")},
        "TRAINWATCH_URL": store_server.url,
        "TRAINWATCH_TOKEN": token,
        "TRAINWATCH_DIR": str(tmp_path / "client"),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "big.bin"), str(2**30)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["same_digest"] and figures["rss_growth_mb"] < 100, figures
    assert Run.objects.get(name="round trip").produced.get().size == 2**30


def test_a_scripts_checkpoints_are_kept_and_a_new_run_resumes_from_the_latest(client_of):
    import numpy as np
    import torch

    import trainwatch
    from tracker.core import checkpoints

    model = torch.nn.Linear(4, 2)
    with trainwatch.init(project="vision", name="first") as first:
        for step in range(12):
            first.log({"loss": 1.0 / (step + 1), "val_acc": [0.2, 0.9, 0.4][step // 4]}, step=step)
            if step % 4 == 3:
                with torch.no_grad():
                    model.weight.add_(1.0)
                assert first.checkpoint({"model": model.state_dict(), "step": step + 1})
        with pytest.raises(TypeError, match="a checkpoint holds tensors"):
            first.checkpoint({"data": np.zeros(3)})
    # the latest two (8 and 12) and the best by val_acc (0.9, at 8) are kept; 4 is let go
    kept = {row["step"]: row["kept_as"] for row in checkpoints.rows(Run.objects.get(pk=first.id))}
    assert kept == {12: ["latest"], 8: ["latest", "best"]}
    with trainwatch.init(project="vision", name="second", resume=first.id) as second:
        state = second.restore()
    assert state["step"] == 12 and torch.equal(state["model"]["weight"], model.weight)
