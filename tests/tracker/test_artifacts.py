"""Artifacts over the API: chunked uploads that resume and are checked against their digest,
versions made only when content changes, aliases with their history, lineage, access by
project, and bad input named by field with nothing half-created."""

import hashlib
import os

import pytest

from tests.conftest import member_of
from tracker.core import artifacts, blobs
from tracker.models import ApiToken, Artifact, ArtifactAliasEvent, ArtifactVersion, Blob, Run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch, settings, tmp_path):
    monkeypatch.setattr(blobs, "CHUNK_BYTES", 1024)
    settings.TRAINWATCH_ARTIFACTS_DIR = tmp_path / "store"
    blobs._store.cache_clear()
    yield
    blobs._store.cache_clear()


@pytest.fixture
def token(user):
    return ApiToken.issue(user, "script")[1]


@pytest.fixture
def run(user):
    return Run.objects.create(project=member_of(user, "vision"), name="trainer", config={}, status="running")


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def put(client, token, digest, size, offset, data):
    return client.put(
        f"/api/blobs/{digest}/upload/?size={size}&offset={offset}",
        data,
        content_type="application/octet-stream",
        **auth(token),
    )


def upload(client, token, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    state = client.get(f"/api/blobs/{digest}/upload/", **auth(token)).json()
    while not state["stored"]:
        offset = state["received"]
        answer = put(client, token, digest, len(data), offset, data[offset : offset + state["chunk_bytes"]])
        assert answer.status_code == 200, answer.json()
        state = {**state, **answer.json()}
    return digest


def log(client, token, run, name, files, **extra):
    return client.post(
        f"/api/runs/{run.pk}/artifacts/",
        {"name": name, "type": "model", "files": files, **extra},
        content_type="application/json",
        **auth(token),
    )


def test_an_upload_cut_off_goes_on_from_the_last_chunk_kept_and_is_checked_against_its_digest(client, token):
    data = os.urandom(5000)
    digest = hashlib.sha256(data).hexdigest()
    assert put(client, token, digest, 5000, 0, data[:1024]).json() == {
        "stored": False,
        "received": 1024,
        "chunk_bytes": 1024,
    }
    # the client lost the answer of the next chunk and sends the first again: told where to go on
    again = put(client, token, digest, 5000, 0, data[:1024])
    assert again.status_code == 409 and again.json()["received"] == 1024
    assert client.get(f"/api/blobs/{digest}/upload/", **auth(token)).json()["received"] == 1024
    short = put(client, token, digest, 5000, 1024, data[1024:1500])
    assert short.status_code == 400 and "a chunk is 1024 bytes" in short.json()["errors"]["body"]
    assert upload(client, token, data) == digest
    assert Blob.objects.get(digest=digest).size == 5000
    assert b"".join(blobs.store().read(digest)) == data
    # a file whose bytes are not those of its digest is refused, and nothing of it kept
    forged = hashlib.sha256(b"something else").hexdigest()
    for offset in range(0, 4096, 1024):
        put(client, token, forged, 5000, offset, data[offset : offset + 1024])
    last = put(client, token, forged, 5000, 4096, data[4096:])
    assert last.status_code == 400 and "has SHA-256" in last.json()["errors"]["body"]
    assert not Blob.objects.filter(digest=forged).exists() and blobs.store().received(forged) == 0


def test_a_version_is_new_only_when_its_files_change_and_latest_follows_the_newest(client, token, run, user):
    weights, config = upload(client, token, b"w" * 3000), upload(client, token, b'{"lr": 0.1}')
    files = [
        {"path": "model.pt", "digest": weights, "size": 3000},
        {"path": "config/train.json", "digest": config, "size": 11},
    ]
    first = log(client, token, run, "resnet", files, aliases=["best"], metadata={"val_acc": 0.91})
    assert first.status_code == 201 and first.json()["created"]
    assert first.json()["version"]["version"] == 1 and first.json()["version"]["aliases"] == ["best", "latest"]
    same = log(client, token, run, "resnet", list(reversed(files)))
    assert same.status_code == 200 and not same.json()["created"] and same.json()["version"]["version"] == 1
    changed = upload(client, token, b"v" * 3000)
    second = log(client, token, run, "resnet", [{"path": "model.pt", "digest": changed, "size": 3000}])
    assert second.json()["version"]["version"] == 2 and second.json()["version"]["aliases"] == ["latest"]
    resolved = client.get("/api/artifacts/resolve/?project=vision&ref=resnet:best", **auth(token)).json()
    assert resolved["version"]["version"] == 1 and resolved["version"]["metadata"] == {"val_acc": 0.91}
    # a person moves an alias; its history says who and when
    moved = client.post(
        f"/api/artifacts/{first.json()['version']['artifact_id']}/aliases/production/",
        {"version": 2},
        content_type="application/json",
        **auth(token),
    )
    assert moved.status_code == 200 and moved.json()["aliases"] == {"best": 1, "latest": 2, "production": 2}
    history = [(e.name, e.version.version, e.by) for e in ArtifactAliasEvent.objects.order_by("at", "id")]
    assert history == [("best", 1, user), ("latest", 1, user), ("latest", 2, user), ("production", 2, user)]
    latest = client.post(
        f"/api/artifacts/{first.json()['version']['artifact_id']}/aliases/latest/",
        {"version": 1},
        content_type="application/json",
        **auth(token),
    )
    assert latest.status_code == 400 and "always names the newest" in latest.json()["errors"]["alias"]


def test_the_lineage_is_kept_both_ways(client, token, run, user):
    digest = upload(client, token, b"data" * 100)
    log(client, token, run, "digits", [{"path": "train.npz", "digest": digest, "size": 400}], type="dataset")
    reader = Run.objects.create(project=run.project, name="reader", config={}, status="running")
    used = client.post(
        f"/api/runs/{reader.pk}/artifacts/used/", {"ref": "digits:v1"}, content_type="application/json", **auth(token)
    )
    assert used.status_code == 200 and used.json()["version"]["files"][0]["path"] == "train.npz"
    assert [v.artifact.name for v in artifacts.versions_of_run(run)["produced"]] == ["digits"]
    assert [v.artifact.name for v in artifacts.versions_of_run(reader)["used"]] == ["digits"]
    client.force_login(user)
    page = client.get(f"/artifacts/{Artifact.objects.get().pk}/").content.decode()
    assert f"#{run.pk} trainer" in page and f"#{reader.pk} reader" in page
    assert "digits:v1" in client.get(f"/runs/{reader.pk}/").content.decode() or "digits" in page
    download = client.get(f"/artifacts/files/{ArtifactVersion.objects.get().pk}/train.npz")
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"data" * 100
    assert 'filename="train.npz"' in download["Content-Disposition"]
    ranged = client.get(f"/api/blobs/{digest}/", HTTP_RANGE="bytes=396-")
    assert ranged.status_code == 206 and b"".join(ranged.streaming_content) == b"data"


def test_bad_input_is_named_by_field_and_nothing_is_created(client, token, run):
    digest = upload(client, token, b"x" * 10)
    bad = log(
        client,
        token,
        run,
        "../escape",
        [
            {"path": "../../etc/passwd", "digest": digest, "size": 10},
            {"path": "/abs", "digest": "0" * 64, "size": 10},
            {"path": "a\\b", "digest": "nothex", "size": -1},
            {"path": "ok", "digest": digest, "size": 11},
        ],
        metadata=["not", "an", "object"],
    )
    errors = bad.json()["errors"]
    assert bad.status_code == 400
    assert {
        "name",
        "files[0].path",
        "files[1].path",
        "files[1].digest",
        "files[2].path",
        "files[2].digest",
        "files[2].size",
        "files[3].size",
        "metadata",
    } <= set(errors), errors
    assert "no file with this digest has been uploaded" in errors["files[1].digest"]
    assert not Artifact.objects.exists() and not ArtifactVersion.objects.exists()
    wrong_type = log(client, token, run, "m", [{"path": "a", "digest": digest, "size": 10}], type="weights")
    assert "must be one of model, dataset, checkpoint, file" in wrong_type.json()["errors"]["type"]
    assert put(client, token, "XYZ", 10, 0, b"x" * 10).json()["errors"]["digest"].startswith("must be a SHA-256")


def test_a_file_is_reached_only_through_the_projects_that_hold_it(client, token, run, django_user_model):
    secret = upload(client, token, b"secret weights")
    log(client, token, run, "private", [{"path": "w.pt", "digest": secret, "size": 14}])
    outsider = django_user_model.objects.create_user("mallory", password="x")
    theirs = Run.objects.create(project=member_of(outsider, "other"), name="theirs", config={}, status="running")
    their_token = ApiToken.issue(outsider, "script")[1]
    # knowing the digest lets them neither download the file nor name it in an artifact of theirs
    assert client.get(f"/api/blobs/{secret}/", **auth(their_token)).status_code == 404
    assert client.get(f"/api/blobs/{secret}/upload/", **auth(their_token)).json()["stored"] is False
    stolen = log(client, their_token, theirs, "stolen", [{"path": "w.pt", "digest": secret, "size": 14}])
    assert stolen.status_code == 400 and "no file with this digest" in stolen.json()["errors"]["files[0].digest"]
    assert client.get(f"/api/artifacts/{Artifact.objects.get().pk}/", **auth(their_token)).status_code == 404
    hidden = client.get("/api/artifacts/resolve/?project=vision&ref=private", **auth(their_token))
    assert hidden.status_code == 404
    # sending the whole file proves they have it: then it is theirs to name (stored once all the same)
    assert upload(client, their_token, b"secret weights") == secret
    assert log(client, their_token, theirs, "mine", [{"path": "w.pt", "digest": secret, "size": 14}]).status_code == 201
    assert Blob.objects.filter(digest=secret).count() == 1
