import math

import numpy as np
import pytest
import torch

from trainer.config import RunConfig
from trainer.instrument import DeviceRecorder, ParameterProbe
from trainer.loop import train
from trainer.sink import MemorySink

ONE_EPOCH = {"epochs": 1, "batch_size": 64, "instrument": {"ratio_every": 4}}


def test_one_epoch_logs_every_step_once_in_order():
    sink = MemorySink()
    result = train(RunConfig.from_dict(ONE_EPOCH), sink, handoff_seconds=0.0)
    assert result.status == "succeeded"
    steps, losses = sink.get("loss")
    per_epoch = sink.info.steps_per_epoch
    assert per_epoch == 23  # 1,437 training images (80 % of 1,797) in batches of 64
    np.testing.assert_array_equal(steps, np.arange(per_epoch))
    assert np.isfinite(losses).all()
    lr_steps, lrs = sink.get("lr")
    np.testing.assert_array_equal(lr_steps, steps)
    assert (lrs == 0.1).all()
    # epoch-level quantities at the epoch's last step
    for key in ("train_acc", "val_acc", "val_loss"):
        np.testing.assert_array_equal(sink.get(key)[0], [per_epoch - 1])
    assert 0.0 <= sink.get("val_acc")[1][0] <= 1.0


def test_the_first_loss_of_a_softmax_classifier_is_about_ln_of_the_classes():
    sink = MemorySink()
    train(RunConfig.from_dict(ONE_EPOCH), sink)
    assert sink.get("loss")[1][0] == pytest.approx(np.log(10), rel=0.1)


def test_update_ratios_are_logged_for_every_parameter_tensor_every_k_steps():
    sink = MemorySink()
    train(RunConfig.from_dict({**ONE_EPOCH, "instrument": {"ratio_every": 4, "dense_steps": 0}}), sink)
    assert sink.info.parameter_names == ("fc1.weight", "fc1.bias", "out.weight", "out.bias")
    for name in sink.info.parameter_names:
        steps, ratios = sink.get(f"update_ratio/{name}")
        np.testing.assert_array_equal(steps, np.arange(0, 23, 4))
        assert (ratios[np.isfinite(ratios)] > 0).all()


def test_the_update_ratio_is_the_norm_of_the_applied_update_over_the_weight_norm():
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 3)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.01)
    before = [p.detach().clone().numpy() for p in layer.parameters()]
    layer(torch.randn(8, 5)).pow(2).mean().backward()
    grads = [p.grad.numpy().copy() for p in layer.parameters()]
    probe = ParameterProbe(list(layer.named_parameters()))
    recorder = DeviceRecorder()
    probe.before_step()
    optimizer.step()
    probe.after_step(recorder, 0)
    batch, _ = recorder.drain()
    measured = np.array([batch[key][1][0] for key in probe.keys])
    after = [p.detach().numpy() for p in layer.parameters()]
    expected_ratios = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(after, before)]
    np.testing.assert_allclose(measured[:2], expected_ratios, rtol=1e-5)
    np.testing.assert_allclose(measured[2:4], [np.linalg.norm(g) for g in grads], rtol=1e-5)
    np.testing.assert_allclose(measured[4:], [np.linalg.norm(b) for b in before], rtol=1e-5)
    assert probe.keys[0] == "update_ratio/weight" and probe.keys[2] == "grad_norm/weight"


def test_a_tensor_of_zeros_has_no_update_ratio_but_its_norms():
    layer = torch.nn.Linear(4, 2)
    torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.ones(3, 4)).sum().backward()
    probe, recorder = ParameterProbe(list(layer.named_parameters())), DeviceRecorder()
    for step in (0, 5):  # two measured steps derived together at the hand-off
        probe.before_step()
        optimizer.step()
        probe.after_step(recorder, step)
    batch, _ = recorder.drain()
    steps, bias_ratios = batch["update_ratio/bias"]
    assert steps.tolist() == [0, 5] and math.isnan(bias_ratios[0]) and bias_ratios[1] > 0
    assert batch["weight_norm/bias"][1][0] == 0.0 and batch["grad_norm/bias"][1][0] == pytest.approx(3 * math.sqrt(2))
    assert np.isfinite(batch["update_ratio/weight"][1]).all()


def test_the_recorder_hands_over_device_and_host_values_together():
    recorder = DeviceRecorder()
    recorder.add("loss", 0, torch.tensor(2.5))
    recorder.add_vector(("a", "b"), 0, torch.tensor([1.0, 2.0]))
    recorder.add("loss", 1, torch.tensor(1.5))
    recorder.add_host("lr", 1, 0.1)
    batch, histograms = recorder.drain()
    assert histograms == []
    np.testing.assert_array_equal(batch["loss"][0], [0, 1])
    np.testing.assert_array_equal(batch["loss"][1], [2.5, 1.5])
    assert batch["b"][1][0] == 2.0 and batch["lr"][1][0] == 0.1
    assert recorder.drain() == ({}, [])


def test_the_same_seed_gives_the_same_loss_curve_bit_for_bit():
    curves = []
    for _ in range(2):
        sink = MemorySink()
        train(RunConfig.from_dict({**ONE_EPOCH, "seed": 7}), sink)
        curves.append(sink.get("loss")[1])
    assert curves[0].tobytes() == curves[1].tobytes()


def test_a_far_too_high_learning_rate_ends_the_run_as_diverged():
    sink = MemorySink()
    config = RunConfig.from_dict({"epochs": 3, "model": {"hidden": [256, 256]}, "optimizer": {"name": "sgd", "lr": 10}})
    result = train(config, sink, handoff_seconds=0.0)
    assert result.status == "diverged"
    assert "lower the learning rate" in result.message and "optimizer.lr=10" in result.message


def test_a_stop_request_ends_the_run_as_cancelled():
    sink = MemorySink(stop_after_handoffs=3)
    result = train(RunConfig.from_dict({"epochs": 5}), sink, handoff_seconds=0.0)
    assert result.status == "cancelled"
    assert result.steps == 3
