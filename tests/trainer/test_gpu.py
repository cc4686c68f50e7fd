"""On CUDA (run on a GPU machine; skipped where there is none)."""

import pytest
import torch

from trainer.config import RunConfig
from trainer.loop import train
from trainer.sink import MemorySink

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "amp"])
def test_training_on_cuda_keeps_data_model_and_measurements_on_the_gpu(precision):
    torch.cuda.reset_peak_memory_stats()
    sink = MemorySink()
    config = RunConfig.from_dict(
        {
            "epochs": 3,
            "device": "cuda",
            "precision": precision,
            "model": {"kind": "cnn", "channels": [8]},
            "instrument": {"histogram_every": 10, "ratio_every": 5},
        }
    )
    result = train(config, sink)
    assert result.status == "succeeded" and result.device.startswith("cuda")
    assert sink.info.device.startswith("cuda")
    # the data set, the model and the histogram pass lived in GPU memory
    assert torch.cuda.max_memory_allocated() > 1_000_000
    assert result.best_val_accuracy > 0.8
    assert len(sink.histogram_records) > 0 and len(sink.get("update_ratio/conv1.weight")[0]) > 0


@needs_cuda
def test_the_same_seed_gives_the_same_first_losses_on_cuda():
    curves = []
    for _ in range(2):
        sink = MemorySink()
        train(RunConfig.from_dict({"epochs": 1, "device": "cuda", "seed": 3}), sink)
        curves.append(sink.get("loss")[1][:5])
    assert curves[0].tolist() == pytest.approx(curves[1].tolist(), rel=1e-5)
