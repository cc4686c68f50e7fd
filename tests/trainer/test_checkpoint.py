"""A run resumed from a checkpoint goes on exactly as the uninterrupted run would have."""

import numpy as np
import pytest

from trainer import checkpoint
from trainer.config import RunConfig
from trainer.loop import train
from trainer.sink import MemorySink

# dropout and a schedule, so that the RNG and the scheduler state matter too
CONFIG = {
    "epochs": 3,
    "batch_size": 64,
    "model": {"hidden": [32], "dropout": 0.3},
    "optimizer": {"name": "momentum", "lr": 0.05},
    "schedule": {"name": "step", "step_size": 1, "gamma": 0.5},
    "instrument": {"ratio_every": 5, "histogram_every": 10},
}


def full_run(extra: dict) -> MemorySink:
    sink = MemorySink()
    result = train(RunConfig.from_dict({**CONFIG, **extra}), sink, handoff_seconds=0.0, checkpoint_seconds=0.0)
    assert result.status == "succeeded"
    return sink


def resumed(extra: dict, blob: bytes) -> MemorySink:
    sink = MemorySink()
    result = train(
        RunConfig.from_dict({**CONFIG, **extra}), sink, handoff_seconds=0.0, checkpoint_seconds=0.0, resume=blob
    )
    assert result.status == "succeeded" and result.steps == sink.info.total_steps
    return sink


def assert_same_after(whole: MemorySink, rest: MemorySink, from_step: int) -> None:
    for key in ("loss", "lr", "val_acc", "update_ratio/fc1.weight"):
        steps, values = whole.get(key)
        keep = steps >= from_step
        rest_steps, rest_values = rest.get(key)
        np.testing.assert_array_equal(rest_steps, steps[keep], err_msg=key)  # each step once, none before
        np.testing.assert_array_equal(rest_values, values[keep], err_msg=key)  # the same trajectory
    whole_histograms = {(r.key, r.step) for r in whole.histogram_records if r.step >= from_step}
    assert {(r.key, r.step) for r in rest.histogram_records} == whole_histograms


def test_checkpoints_at_each_epoch_end_resume_to_the_same_trajectory():
    whole = full_run({})
    assert [(step, epoch) for step, epoch, _ in whole.checkpoints] == [(23, 1), (46, 2), (69, 3)]
    step, _, blob = whole.checkpoints[0]
    rest = resumed({}, blob)
    assert rest.info.start_step == 23
    assert_same_after(whole, rest, step)
    assert rest.checkpoints[-1][0] == 69


def test_a_checkpoint_in_the_middle_of_an_epoch_resumes_at_that_batch():
    whole = full_run({"checkpoint_every": 10})
    assert [step for step, _, _ in whole.checkpoints] == [10, 20, 30, 40, 50, 60, 69]
    step, epoch, blob = whole.checkpoints[2]  # step 30: batch 7 of epoch 1
    assert epoch == 1 and checkpoint.load(blob)["loop"].batch == 7
    assert_same_after(whole, resumed({"checkpoint_every": 10}, blob), step)


def test_the_last_checkpoint_holds_the_trained_model():
    whole = full_run({})
    state = checkpoint.load(whole.checkpoints[-1][2])
    assert state["loop"].best_val == pytest.approx(max(whole.get("val_acc")[1]))
    assert set(state["model"]) == {"fc1.weight", "fc1.bias", "out.weight", "out.bias"}


def test_a_checkpoint_of_another_format_is_refused():
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"format": 99}, buffer)
    with pytest.raises(ValueError, match="format 99"):
        checkpoint.load(buffer.getvalue())
