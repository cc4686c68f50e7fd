"""The client against a real server: a gunicorn process on the test database, and training
scripts that use trainwatch in processes of their own. Nothing is mocked: the server is
stopped for real, the script is killed for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.conftest import ARTIFACTS, ROOT, WebServer, ended, logged_in_page, wait_until
from tracker.core import blobs, console
from tracker.core.lifecycle import reap_lost_runs
from tracker.core.storage import read_series
from tracker.models import ArtifactVersion, Histogram, Run, RunEnvironment, RunImage
from trainer.config import InstrumentConfig

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
SCRIPT = ROOT / "tests" / "client" / "train_digits.py"


def script(server: WebServer, token: str, tmp_path, *args: str, **env: str) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "TRAINWATCH_URL": server.url,
        "TRAINWATCH_TOKEN": token,
        "TRAINWATCH_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        **env,
    }
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        environment.pop(name, None)  # a training machine knows nothing of the server's insides
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=tmp_path,
        env=environment,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finished(process: subprocess.Popen[str], timeout: float = 120) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def the_run() -> Run:
    return wait_until(lambda: Run.objects.filter(kind="external").first(), 60, "the script's run")


@pytest.mark.browser
def test_a_script_with_the_client_shows_everything_on_its_run_page(server, token, tmp_path, browser, user):
    finished(script(server, token, tmp_path, "--epochs", "4"))
    run = ended(Run.objects.get(kind="external").pk)
    assert run.status == "succeeded" and run.source["script"] == "train_digits.py" and run.source["python"]
    assert (run.steps_done, run.total_steps, run.steps_per_epoch, run.epoch) == (172, 172, 43, 4)
    loss_steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(loss_steps, np.arange(172))
    assert read_series(run.pk, "val_acc")[1][-1] > 0.85 and run.best_val_accuracy > 0.85
    assert len(read_series(run.pk, "system/memory_mb")[0]) >= 1  # the client samples its process too
    printed = "".join(console.as_text(run))  # what the script printed, on its run page too
    assert " stdout run started: " in printed and run.console_bytes > 0
    environment = RunEnvironment.objects.get(run=run).data  # where it trained, as the client saw it
    assert "train_digits.py" in environment["command"] and "torch" in environment["packages"]
    cadence = InstrumentConfig(histogram_every=50)  # the script's watch(): the defaults but histograms
    ratio_steps = [s for s in range(172) if cadence.measures_parameters(s)]  # every 5 steps to 100, then 20
    assert read_series(run.pk, "update_ratio/0.weight")[0].tolist() == ratio_steps
    histogram_steps = sorted(Histogram.objects.filter(run=run, key="activation/1").values_list("step", flat=True))
    assert histogram_steps == [0, 25, 50, 75, 100, 150]
    assert RunImage.objects.filter(run=run).count() == 4
    assert run.health in ("ok", "info") and run.findings is not None and run.context["classes"] == 10
    assert run.rules_waiting == []  # the script logs all the diagnosis reads
    assert run.device == "cpu" and len(read_series(run.pk, "wall_time")[0]) == 4
    # started and finished by the script's clock, not by when the server heard of them
    assert 0 < run.seconds < read_series(run.pk, "wall_time")[1][-1] + 5

    # the server process hashes as in production (the suite's own process uses MD5, for speed)
    user.password = PBKDF2PasswordHasher().encode("correct horse battery", PBKDF2PasswordHasher().salt())
    user.save(update_fields=["password"])
    context, page = logged_in_page(browser, server, "alice", "/accounts/login/", "/")  # the script's server
    page.goto(f"{server.url}/runs/{run.pk}/")
    page.wait_for_function("document.body.dataset.pollingStopped === '1'")
    page.wait_for_function("window.trainwatchHeatmap && window.trainwatchHeatmap.data.datasets[0].data.length > 0")
    charts = page.evaluate("""() => Object.fromEntries(Object.entries(window.trainwatchCharts).map(
        ([name, chart]) => [name, chart.data.datasets.map((d) => d.data.length)]))""")
    assert charts["loss"][0] == 172 and charts["accuracy"] == [4, 4] and len(charts["ratio"]) == 4
    assert page.evaluate("window.trainwatchHeatmap.options.scales.y.labels") == [
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
    ]
    assert "external" in page.text_content("h1") and page.text_content("#run-host") == run.source["host"]
    # the tensor picker opens a tensor's charts; its activations are those of the module after it
    page.fill("#tensor-picker", "0.weight")
    page.dispatch_event("#tensor-picker", "change")
    page.wait_for_function("window.trainwatchDistributions && window.trainwatchDistributions.activation")
    assert page.text_content("#layer-detail-name") == "0.weight"
    assert page.evaluate("window.trainwatchDistributions.activation.data.datasets[0].data.length") > 0
    assert page.text_content("#run-health") == run.health and page.is_hidden("#rules-waiting-panel")
    page.screenshot(path=str(ARTIFACTS / "client-run-page.png"), full_page=True)
    assert page.console_errors == [] and page.failed_responses == []
    context.close()


def test_stopping_the_server_for_a_few_seconds_loses_and_doubles_nothing(server, token, tmp_path):
    process = script(server, token, tmp_path, "--epochs", "6", "--sleep", "0.04")  # about 12 s
    wait_until(lambda: Run.objects.filter(kind="external", steps_done__gt=20).exists(), 60, "the run to report steps")
    server.stop()
    time.sleep(4)  # the script trains on, its client spools
    server.start()
    output = finished(process)
    run = ended(Run.objects.get(kind="external").pk)
    assert run.status == "succeeded", output
    loss_steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(loss_steps, np.arange(6 * 43))  # every step, once
    assert read_series(run.pk, "epoch")[1].tolist() == [1, 2, 3, 4, 5, 6]
    assert "unreachable" in output and "is back" in output


def test_a_killed_script_ends_its_run_lost_after_the_silence(server, token, tmp_path):
    process = script(server, token, tmp_path, "--epochs", "100", "--sleep", "0.01")
    wait_until(lambda: Run.objects.filter(kind="external", steps_done__gt=20).exists(), 60, "the run to report steps")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    run = the_run()
    assert run.status == "running"
    wait_until(lambda: reap_lost_runs(max_silence=3, max_attempts=3), 30, "the reaper to find the run silent")
    run.refresh_from_db()
    assert run.status == "lost" and "the client on" in run.message and "went silent" in run.message


@pytest.mark.parametrize("where", ["api", "page"])
def test_a_members_cancel_stops_the_script(server, token, tmp_path, user, client, where):
    process = script(server, token, tmp_path, "--epochs", "100", "--sleep", "0.01")
    wait_until(lambda: Run.objects.filter(kind="external", steps_done__gt=20).exists(), 60, "the run to report steps")
    run = the_run()
    if where == "api":
        answer = requests.post(
            f"{server.url}/api/runs/{run.pk}/cancel/", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
    else:
        client.force_login(user)  # the run page's Cancel button
        assert client.post(f"/runs/{run.pk}/cancel/").status_code == 302
    output = finished(process, 60)
    run = ended(the_run().pk)
    assert "asked to stop" in output and run.status == "cancelled"
    assert run.steps_done < 100 * 43 and read_series(run.pk, "loss")[0][-1] == run.steps_done - 1
    assert run.epochs == 100 and run.epoch < 100  # its progress says where it stopped


def test_a_run_recorded_offline_is_uploaded_by_sync_with_its_artifact(server, token, tmp_path):
    output = finished(
        script(
            server, token, tmp_path, "--epochs", "3", "--name", "offline run", "--keep-model", TRAINWATCH_MODE="offline"
        )
    )
    assert "trainwatch sync" in output and not Run.objects.exists()
    folders = list((tmp_path / "runs").iterdir())
    sync = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "trainwatch"), "sync", str(folders[0])],
        env={**os.environ, "TRAINWATCH_URL": server.url, "TRAINWATCH_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sync.returncode == 0, sync.stderr
    run = ended(Run.objects.get(kind="external").pk)
    assert run.name == "offline run" and run.status == "succeeded" and f"/runs/{run.pk}/" in sync.stdout
    assert run.finished_at < run.created_at  # trained before the upload, by the script's clock
    np.testing.assert_array_equal(read_series(run.pk, "loss")[0], np.arange(3 * 43))
    assert not folders[0].exists()
    # the model it logged offline went with it: its file, read back, is the one the script saved
    version = ArtifactVersion.objects.get(artifact__name="digits-mlp")
    assert version.run == run and "and 1 artifact uploaded" in sync.stdout
    stored = b"".join(blobs.store().read(version.files.get().blob_id))
    assert stored == (tmp_path / "model.pt").read_bytes()


def test_the_docs_example_runs_as_written(server, token, tmp_path):
    page = (ROOT / "docs" / "client.md").read_text()
    start = page.index("```python", page.index("A complete script")) + len("```python")
    (tmp_path / "example.py").write_text(page[start : page.index("```", start)])
    environment = {
        **os.environ,
        "TRAINWATCH_URL": server.url,
        "TRAINWATCH_TOKEN": token,
        "TRAINWATCH_DIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    run = ended(Run.objects.get(kind="external").pk)
    assert run.name == "readme example" and run.status == "succeeded" and run.project.name == "demo"
    assert len(read_series(run.pk, "loss")[0]) == 500 and len(read_series(run.pk, "val_acc")[0]) == 10
    assert read_series(run.pk, "val_acc")[1][-1] > 0.9 and run.context["classes"] == 2
