"""On CUDA (run on a GPU machine; skipped where there is none)."""

import numpy as np
import pytest
import torch

from trainer import checkpoint
from trainer.config import RunConfig
from trainer.loop import mixed_precision, train
from trainer.sink import MemorySink

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CNN = {"epochs": 3, "device": "cuda", "model": {"kind": "cnn", "channels": [8]}}


def test_mixed_precision_is_off_on_the_cpu():
    _, scaler, words = mixed_precision(RunConfig.from_dict({"device": "cpu"}), torch.device("cpu"))
    assert not scaler.is_enabled() and words == "float32"


@needs_cuda
@pytest.mark.parametrize(
    "precision, words",
    [
        ("fp32", "float32"),
        (
            "amp",
            "bfloat16 mixed precision" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16",
        ),
        ("bf16", "bfloat16 mixed precision"),
        ("fp16", "float16 mixed precision with a gradient scaler"),
    ],
)
def test_training_on_cuda_keeps_data_model_and_measurements_on_the_gpu(precision, words):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    torch.cuda.reset_peak_memory_stats()
    sink = MemorySink()
    config = RunConfig.from_dict(
        {**CNN, "precision": precision, "instrument": {"histogram_every": 10, "ratio_every": 5}}
    )
    result = train(config, sink)
    assert result.status == "succeeded" and result.device.startswith("cuda")
    assert words in result.message
    assert sink.info.device.startswith("cuda")
    # the data set, the model and the histogram pass lived in GPU memory
    assert torch.cuda.max_memory_allocated() > 1_000_000
    assert result.best_val_accuracy > 0.8
    assert len(sink.histogram_records) > 0 and len(sink.get("update_ratio/conv1.weight")[0]) > 0
    # gradients measured unscaled: the float16 run's norms are of fp32's size, not 65536 times it
    assert np.all(np.isfinite(sink.get("grad_norm/conv1.weight")[1]))
    assert np.median(sink.get("grad_norm/out.weight")[1]) < 100


@needs_cuda
def test_mixed_precision_follows_the_float32_loss_curve():
    finals = {}
    for precision in ("fp32", "bf16" if torch.cuda.is_bf16_supported() else "fp16", "fp16"):
        sink = MemorySink()
        train(RunConfig.from_dict({**CNN, "precision": precision, "seed": 1}), sink)
        losses = sink.get("loss")[1]
        finals[precision] = losses[-20:].mean()
        assert losses[-20:].mean() < 0.5 * losses[:5].mean()
    assert max(finals.values()) - min(finals.values()) < 0.1 * max(finals.values()) + 0.05, finals


@needs_cuda
def test_a_float16_checkpoint_keeps_the_loss_scale_and_resumes():
    config = RunConfig.from_dict({**CNN, "precision": "fp16"})
    sink = MemorySink()
    train(config, sink, checkpoint_seconds=0)
    step, _, blob = sink.checkpoints[0]
    assert checkpoint.load(blob)["scaler"]["scale"] > 1
    resumed = MemorySink()
    result = train(config, resumed, resume=blob)
    assert result.status == "succeeded" and resumed.get("loss")[0][0] == step


@needs_cuda
def test_a_step_makes_the_host_wait_for_the_gpu_never_only_hand_offs_and_epoch_ends_do():
    from trainer.syncs import count_host_syncs

    sink = MemorySink()
    config = RunConfig.from_dict({**CNN, "instrument": {"histogram_every": 10, "ratio_every": 5}})
    result, syncs = count_host_syncs(lambda: train(config, sink, handoff_seconds=0.05))
    assert result.status == "succeeded" and result.steps > 60 and sink.handoffs > 3
    assert syncs.phases["step"] == 0, syncs.lines
    # a few copies at each hand-off (the pending measurements) and epoch end, however many steps
    assert syncs.phases["hand-off"] <= 4 * sink.handoffs and syncs.phases["epoch end"] <= 10 * config.epochs, (
        syncs.lines
    )


@needs_cuda
def test_the_same_seed_gives_the_same_first_losses_on_cuda():
    curves = []
    for _ in range(2):
        sink = MemorySink()
        train(RunConfig.from_dict({"epochs": 1, "device": "cuda", "seed": 3}), sink)
        curves.append(sink.get("loss")[1][:5])
    assert curves[0].tolist() == pytest.approx(curves[1].tolist(), rel=1e-5)
