"""The endpoints of the trainwatch client: start a run, send payloads in order, finish it."""

import datetime as dt
import json
import math

import numpy as np
import pytest
from django.utils import timezone

from tracker.core.lifecycle import end_as_reported, reap_lost_runs, request_cancel
from tracker.core.storage import read_series
from tracker.models import ApiToken, Histogram, Project, Run
from trainer import wire
from trainer.sink import HistogramRecord
from trainer.wire import Payload, encode

pytestmark = pytest.mark.django_db


def start(client, token, **fields):
    body = {"project": "mine", "client_id": "c" * 32, "config": {"lr": 0.1}, "source": {"host": "gpu-1"}, **fields}
    return client.post(
        "/api/runs/start/", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def send(client, token, run_id, payload):
    return client.post(
        f"/api/runs/{run_id}/ingest/",
        encode(payload),
        content_type="application/octet-stream",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.fixture
def token(user):
    return ApiToken.issue(user, "script")[1]


@pytest.fixture
def run_id(client, token):
    response = start(client, token)
    assert response.status_code == 201, response.content
    return response.json()["run"]["id"]


def steps(first, count):
    return np.arange(first, first + count, dtype=np.int64)


def test_a_client_starts_an_external_run_and_a_retried_start_finds_it_again(client, token, user):
    first = start(client, token)
    assert first.status_code == 201
    body = first.json()
    assert body["run"]["kind"] == "external" and body["run"]["status"] == "running"
    assert body["run"]["source"] == {"host": "gpu-1"} and body["ingest"]["next_seq"] == 0
    again = start(client, token)
    assert again.status_code == 200 and again.json()["run"]["id"] == body["run"]["id"]
    run = Run.objects.get()
    assert run.project.members.filter(pk=user.pk).exists() and run.config == {"lr": 0.1}


@pytest.mark.parametrize(
    "field, value",
    [
        ("client_id", "short"),
        ("config", [1]),
        ("source", {"hostname": "x"}),
        ("tags", "one"),
        ("project", ""),
        ("project", "mine\nBcc: everyone@example.com"),  # a newline breaks an alert e-mail's header
        ("name", "resnet\r\nSubject: hi"),
        ("name", "resnet\u2028next line"),
    ],
)
def test_a_bad_start_names_the_field_and_creates_nothing(client, token, field, value):
    response = start(client, token, **{field: value})
    assert response.status_code == 400
    assert any(key.startswith(field) for key in response.json()["errors"]), response.json()
    assert Run.objects.count() == 0


def test_payloads_are_stored_once_in_order(client, token, run_id):
    first = Payload(
        0,
        {"loss": (steps(0, 50), np.linspace(2.3, 1.0, 50))},
        progress={"step": 50, "epoch": 0, "total_steps": 500, "steps_per_epoch": 50},
    )
    assert send(client, token, run_id, first).json() == {"seq": 0, "stop": False, "status": "running"}
    assert send(client, token, run_id, first).status_code == 200  # a retry: answered again, stored once
    gap = send(client, token, run_id, Payload(2, {"loss": (steps(100, 10), np.ones(10))}))
    assert gap.status_code == 409 and gap.json()["expected"] == 1
    assert send(client, token, run_id, Payload(1, {"loss": (steps(50, 50), np.ones(50))})).status_code == 200
    loss_steps, _ = read_series(run_id, "loss")
    np.testing.assert_array_equal(loss_steps, np.arange(100))
    run = Run.objects.get(pk=run_id)
    assert (run.steps_done, run.total_steps, run.steps_per_epoch, run.ingest_seq) == (50, 500, 50, 1)


def test_a_long_external_runs_small_chunks_are_rolled_up_when_it_is_diagnosed(
    client, token, run_id, settings, upkeep_here
):
    settings.TRAINWATCH_DIAGNOSE_SECONDS = 3600  # diagnosed at its first payload, then not before the last
    for seq in range(50):  # 50 payloads of 1,000 steps: a chunk each
        progress = {"step": (seq + 1) * 1000, "epoch": 0, "total_steps": 100_000, "steps_per_epoch": 1000}
        payload = Payload(seq, {"loss": (steps(seq * 1000, 1000), np.linspace(2.3, 1.0, 1000))}, progress=progress)
        assert send(client, token, run_id, payload).status_code == 200
    assert Run.objects.get(pk=run_id).chunks.count() == 50
    Run.objects.filter(pk=run_id).update(diagnosed_at=timezone.now() - dt.timedelta(hours=2))
    last = Payload(50, {"loss": (steps(50_000, 1000), np.ones(1000))}, progress={"step": 51_000})
    with upkeep_here() as sent:
        assert send(client, token, run_id, last).status_code == 200
    assert sent == [("tracker.refresh_run", [run_id])]  # out of the request, on the upkeep queue
    # the oldest 41 became one chunk of 41,000 points; the newest 10 stay as they came
    assert sorted(Run.objects.get(pk=run_id).chunks.values_list("count", flat=True)) == [1000] * 10 + [41_000]
    loss_steps, _ = read_series(run_id, "loss")
    np.testing.assert_array_equal(loss_steps, np.arange(51_000))


def test_nan_and_inf_are_stored_and_served_as_in_worker_runs(client, token, run_id, user):
    values = np.array([2.3, float("nan"), float("inf"), 1.0])
    assert send(client, token, run_id, Payload(0, {"loss": (steps(0, 4), values)})).status_code == 200
    stored = read_series(run_id, "loss")[1]
    assert math.isnan(stored[1]) and math.isinf(stored[2])
    client.force_login(user)
    served = client.get(f"/api/runs/{run_id}/series/?series=loss").json()["series"]["loss"]["values"]
    assert served == [2.3, None, None, 1.0]


def rewritten(body: bytes, change) -> bytes:
    """An encoded payload with its JSON header changed by `change`, the bytes it returns put first in the body."""
    (length,) = wire._LENGTH.unpack_from(body, 4)
    header = json.loads(body[8 : 8 + length])
    extra = change(header)
    raw = json.dumps(header).encode()
    return wire.MAGIC + wire._LENGTH.pack(len(raw)) + raw + extra + body[8 + length :]


def test_a_histogram_of_a_diverged_tensor_is_kept_with_its_nan_and_infinite_count(client, token, run_id):
    # a run diverging: its activations hold NaN and have no range; the histogram is kept as what
    # it is, with its count of NaN and infinite values, beside the loss and the other histograms.
    # An older client's entry (9 fields, no count) of such a tensor is left out, the rest stored.
    nan_range = HistogramRecord("activation/relu", 240, math.nan, math.nan, np.zeros(30, np.int64), 0, 0, nonfinite=512)
    weights = HistogramRecord("weight/fc1.weight", 240, -1.0, 1.0, np.ones(30, np.int64), 0.0, 0.5)
    payload = Payload(0, {"loss": (steps(238, 3), np.array([2.1, 40.0, math.nan]))}, histograms=[nan_range, weights])
    body = encode(payload)

    def as_an_older_client_sent_it(header):
        header["histograms"] = [entry[:9] for entry in header["histograms"]]
        header["histograms"][0][0] = "activation/older"
        header["seq"] = 1
        return b""

    older = rewritten(body, as_an_older_client_sent_it)
    for sent in (body, older):
        response = client.post(
            f"/api/runs/{run_id}/ingest/",
            sent,
            content_type="application/octet-stream",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 200, response.content
    assert read_series(run_id, "loss")[0].tolist() == [238, 239, 240]
    kept = Histogram.objects.get(run_id=run_id, key="activation/relu")
    assert kept.nonfinite == 512 and math.isnan(kept.low) and bytes(kept.counts) == bytes(240)
    assert set(Histogram.objects.filter(run_id=run_id).values_list("key", flat=True)) == {
        "activation/relu",
        "weight/fc1.weight",
    }
    served = client.get(
        f"/api/runs/{run_id}/histograms/?key=activation/relu", HTTP_AUTHORIZATION=f"Bearer {token}"
    ).content.decode()
    assert "NaN" not in served and '"low": null' in served and '"nonfinite": 512' in served
    # a range that is not finite needs its count; a finite range the wrong way round is refused
    uncounted = rewritten(body, lambda header: header["histograms"][0].__setitem__(9, 0) or b"")
    with pytest.raises(wire.WireError, match=r"histograms\[0\] \('activation/relu'\): a range of nan, nan needs"):
        wire.decode(uncounted)
    inverted = rewritten(body, lambda header: header["histograms"][1].__setitem__(3, -2.0) or b"")
    with pytest.raises(wire.WireError, match=r"histograms\[1\] \('weight/fc1.weight'\): needs low <= high"):
        wire.decode(inverted)


def test_the_last_payload_finishes_the_run_with_its_diagnosis(client, token, run_id, upkeep_here):
    ratios = np.full(40, 5e-2)
    payload = Payload(
        0,
        {"loss": (steps(0, 400), np.linspace(2.3, 2.2, 400)), "update_ratio/fc1.weight": (steps(0, 40) * 10, ratios)},
        histograms=[HistogramRecord("weight/fc1.weight", 0, -1.0, 1.0, np.ones(30, np.int64), 0, 0.5)],
        describe={"tensors": ["fc1.weight", "fc1.bias"], "context": {"optimizer": "adam", "lr": 0.3}},
        finish={"status": "succeeded", "message": "done", "error": ""},
    )
    with upkeep_here():
        assert send(client, token, run_id, payload).json()["status"] == "succeeded"
        # answered once stored: the end is written by the upkeep queue's task
        assert Run.objects.get(pk=run_id).status == "running"
    run = Run.objects.get(pk=run_id)
    assert run.status == "succeeded" and run.finished_at is not None and run.ending is None
    assert run.tensors == ["fc1.weight", "fc1.bias"] and run.context == {"optimizer": "adam", "lr": 0.3, "frozen": []}
    assert "lr_too_high" in [f["rule"] for f in run.findings] and run.health == "warning"
    assert Histogram.objects.filter(run=run).count() == 1
    assert run.optimizer_name == "adam" and run.learning_rate == 0.3
    # no accuracies, gradient norms, activations or classes were sent: the rules that need them say so
    waiting = {group["needs"]: group for group in run.rules_waiting}
    assert waiting["train_acc and val_acc"]["rules"] == ["overfitting", "underfitting"]
    assert "run.log({'train_acc'" in waiting["train_acc and val_acc"]["how"]
    assert waiting["the loss function and the number of classes"]["rules"] == ["initial_loss"]
    assert {"dead_relus", "vanishing_gradients", "val_loss_stuck"} <= {r for g in run.rules_waiting for r in g["rules"]}
    assert "symmetry" not in str(run.rules_waiting)  # the weight histogram was sent
    assert run.to_dict()["rules_waiting"] == run.rules_waiting
    ended = send(client, token, run_id, Payload(1, {"loss": (steps(400, 1), np.ones(1))}))
    assert ended.status_code == 409 and "has ended" in ended.json()["errors"]["run"]


def test_a_failed_script_leaves_its_traceback(client, token, run_id, upkeep_here):
    finish = {"status": "failed", "message": "RuntimeError: CUDA out of memory", "error": "Traceback ...\nRuntimeError"}
    with upkeep_here():
        send(client, token, run_id, Payload(0, finish=finish))
    run = Run.objects.get(pk=run_id)
    assert run.status == "failed" and run.error.startswith("Traceback") and "out of memory" in run.message


def test_a_cancel_reaches_the_client_in_the_answer_to_its_next_payload(client, token, run_id, upkeep_here):
    assert request_cancel(Run.objects.get(pk=run_id))
    assert send(client, token, run_id, Payload(0, {"loss": (steps(0, 5), np.ones(5))})).json()["stop"] is True
    with upkeep_here():
        send(client, token, run_id, Payload(1, finish={"status": "succeeded", "message": "", "error": ""}))
    assert Run.objects.get(pk=run_id).status == "cancelled"  # it stopped because it was asked to


def test_a_malformed_payload_is_a_400_naming_what_is_wrong(client, token, run_id):
    data = bytearray(encode(Payload(0, {"loss": (steps(0, 10), np.ones(10))})))
    for body, needle in ((b"{}", "TWB1"), (bytes(data[:-8]), "loss"), (b"TWB1\xff\xff\xff\x00{", "header")):
        response = client.post(
            f"/api/runs/{run_id}/ingest/",
            body,
            content_type="application/octet-stream",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 400 and needle in response.json()["errors"]["payload"], response.json()
    bad_key = send(client, token, run_id, Payload(0, {"no spaces please": (steps(0, 1), np.ones(1))}))
    assert bad_key.status_code == 400 and "no spaces please" in bad_key.json()["errors"]["payload"]
    # the first refused payload took its place (payload 0); the same seq again is refused alone
    run = Run.objects.get(pk=run_id)
    assert run.ingest_seq == 0 and [refused["seq"] for refused in run.ingest_refused] == [0]
    assert "8 bytes short" in run.ingest_refused[0]["error"]


def test_an_oversized_payload_is_a_413_naming_the_limit(client, token, run_id, settings):
    settings.TRAINWATCH_INGEST_MAX_BYTES = 1000
    response = send(client, token, run_id, Payload(0, {"loss": (steps(0, 1000), np.ones(1000))}))
    assert response.status_code == 413 and "at most 1,000" in response.json()["errors"]["body"]


def test_a_wrong_or_revoked_token_is_a_401_and_another_projects_run_a_404(client, token, run_id, django_user_model):
    assert send(client, "tw_wrong", run_id, Payload(0)).status_code == 401
    ApiToken.objects.all().delete()
    response = send(client, token, run_id, Payload(0))
    assert response.status_code == 401 and "not valid" in response.json()["errors"]["auth"]
    bob = django_user_model.objects.create_user("bob")
    bobs = ApiToken.issue(bob, "bob's")[1]
    assert send(client, bobs, run_id, Payload(0)).status_code == 404


def test_an_external_run_silent_too_long_is_lost_not_requeued(client, token, run_id):
    Run.objects.filter(pk=run_id).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    assert reap_lost_runs(60, 3) == [(run_id, "lost")]
    run = Run.objects.get(pk=run_id)
    assert run.status == "lost" and "the client on gpu-1 went silent" in run.message


def test_a_job_run_takes_no_payload(client, token, user):
    job = Run.objects.create(project=Project.objects.create(name="jobs"), config={}, status="running")
    job.project.members.add(user)
    response = send(client, token, job.pk, Payload(0))
    assert response.status_code == 400 and "trained by a worker" in response.json()["errors"]["run"]


def test_the_job_queue_does_not_retry_an_external_run(client, token, run_id, staff, upkeep_here):
    with upkeep_here():
        send(client, token, run_id, Payload(0, finish={"status": "failed", "message": "boom", "error": "Traceback"}))
    client.force_login(staff)
    response = client.post("/admin/tracker/run/", {"action": "retry", "_selected_action": [run_id]}, follow=True)
    assert Run.objects.get(pk=run_id).status == "failed"
    assert "their scripts train them, not the workers" in response.content.decode()


def test_the_kinds_the_client_describes_are_kept_and_read_by_the_rules(client, token, run_id):
    # a norm scale of ones at step 0 is how BatchNorm starts, not symmetry
    histograms = [
        HistogramRecord("weight/conv1.weight", 0, -0.1, 0.1, np.ones(10, np.int64), 0, 0.05),
        HistogramRecord("weight/bn1.weight", 0, 1.0, 1.0, np.array([64]), 1.0, 0.0),
        HistogramRecord("weight/fc.weight", 0, -0.1, 0.1, np.ones(10, np.int64), 0, 0.05),
    ]
    describe = {
        "tensors": ["conv1.weight", "bn1.weight", "fc.weight"],
        "kinds": ["weight", "norm_scale", "weight"],
        "context": {"optimizer": "momentum", "lr": 0.05},
    }
    loss = {"loss": (steps(0, 20), np.linspace(2.3, 2.0, 20))}
    send(client, token, run_id, Payload(0, loss, histograms=histograms, describe=describe))
    send(client, token, run_id, Payload(1, finish={"status": "succeeded", "message": "", "error": ""}))
    run = Run.objects.get(pk=run_id)
    assert run.tensor_kinds == {"conv1.weight": "weight", "bn1.weight": "norm_scale", "fc.weight": "weight"}
    assert "symmetry" not in [f["rule"] for f in run.findings]


def test_kinds_that_do_not_match_the_tensors_are_refused(client, token, run_id):
    describe = {"tensors": ["fc.weight", "fc.bias"], "kinds": ["weight", "gain"], "context": {}}
    refused = send(client, token, run_id, Payload(0, describe=describe))
    assert refused.status_code == 400 and "describe.kinds[1]" in json.dumps(refused.json())
    describe = {"tensors": ["fc.weight", "fc.bias"], "kinds": ["weight"], "context": {}}
    assert "describe.kinds" in json.dumps(send(client, token, run_id, Payload(0, describe=describe)).json())
    assert Run.objects.get(pk=run_id).tensor_kinds == {}


def test_a_run_finished_succeeded_whose_loss_became_nan_ends_diverged(client, token, run_id, upkeep_here):
    losses = np.array([2.3, 2.0, math.nan, math.nan])
    send(client, token, run_id, Payload(0, {"loss": (steps(0, 4), losses)}))
    with upkeep_here():
        send(client, token, run_id, Payload(1, finish={"status": "succeeded", "message": "", "error": ""}))
    run = Run.objects.get(pk=run_id)
    assert run.status == "diverged" and "step 2" in run.message


def test_the_learning_rate_shown_is_the_schedules_peak_and_its_last_value(client, token, run_id):
    describe = {"tensors": ["fc.weight"], "context": {"optimizer": "adamw", "lr": 0.0}}  # read at warmup's start
    warmup = np.concatenate([np.linspace(0, 1e-3, 10), np.linspace(1e-3, 1e-5, 10)])
    send(client, token, run_id, Payload(0, {"lr": (steps(0, 10), warmup[:10])}, describe=describe))
    send(client, token, run_id, Payload(1, {"lr": (steps(10, 10), warmup[10:])}))
    run = Run.objects.get(pk=run_id)
    assert run.learning_rate == pytest.approx(1e-3) and run.context["lr_last"] == pytest.approx(1e-5)


def test_a_payload_header_nested_too_deep_is_refused_by_name():
    body = encode(Payload(0, {"loss": (steps(0, 2), np.ones(2))}))
    nested: list = []
    for _ in range(200):  # within json's own recursion, past the bound
        nested = [nested]
    with pytest.raises(wire.WireError, match="nested deeper than 64 levels"):
        wire.decode(rewritten(body, lambda header: header.update(describe={"context": nested}) or b""))


def test_a_reported_end_whose_task_was_lost_is_written_by_the_reaper_and_nothing_follows_it(client, token, run_id):
    # no upkeep worker takes the task here: the end waits in the run, refusing any later payload
    finish = {"status": "succeeded", "message": "done", "error": "", "seconds": 12.0}
    assert (
        send(client, token, run_id, Payload(0, {"loss": (steps(0, 5), np.ones(5))}, finish=finish)).status_code == 200
    )
    late = send(client, token, run_id, Payload(1, {"loss": (steps(5, 5), np.ones(5))}))
    assert late.status_code == 409 and "succeeded" in late.json()["errors"]["run"]
    run = Run.objects.get(pk=run_id)
    assert run.status == "running" and run.ending["status"] == "succeeded"
    assert reap_lost_runs(60, 3) == []  # its end was reported a moment ago: the task may still come
    Run.objects.filter(pk=run_id).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    assert reap_lost_runs(60, 3) == [(run_id, "succeeded")]
    run = Run.objects.get(pk=run_id)
    assert (run.status, run.message, run.ending) == ("succeeded", "done", None)
    assert run.finished_at == run.started_at + dt.timedelta(seconds=12)  # by the script's clock
    assert end_as_reported(run_id) is None  # written once


@pytest.mark.django_db(transaction=True)
def test_a_reported_end_waits_for_a_live_diagnosis_that_holds_the_run_rather_than_skipping_it(client, token, run_id):
    # the upkeep worker's threads: a refresh's diagnosis writes its findings under the run's
    # row lock while the run's end task starts; the end must be written, not left to the reaper
    import threading

    from django.db import connection, transaction

    Run.objects.filter(pk=run_id).update(ending={"status": "succeeded", "message": "done", "error": ""})
    locked, release = threading.Event(), threading.Event()

    def diagnosis() -> None:
        try:
            with transaction.atomic():
                Run.objects.select_for_update().get(pk=run_id)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=diagnosis)
    holder.start()
    assert locked.wait(10)
    threading.Timer(0.5, release.set).start()
    assert end_as_reported(run_id) == "succeeded"
    holder.join()
    assert Run.objects.get(pk=run_id).status == "succeeded"
