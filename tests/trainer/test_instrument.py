import math

import numpy as np
import pytest
import torch
from torch import nn

from trainer.config import RunConfig
from trainer.instrument import (
    HISTOGRAM_SAMPLE,
    DeviceRecorder,
    HistogramProbe,
    _count_indices,
    batched_histograms,
    dead_fractions,
    filter_roughness,
    first_layer_tiles,
    live_fraction,
    parameter_kinds,
    tile_grid,
)
from trainer.loop import train
from trainer.models import build_model
from trainer.sink import MemorySink


def test_batched_histograms_match_numpy_for_each_tensor():
    torch.manual_seed(0)
    tensors = [torch.randn(1000), torch.rand(50, 7) * 3 - 1, torch.tensor([0.0, 0.0, 1.0, 2.0])]
    counts, stats = batched_histograms(tensors, 10, [None, None, None]).to_host()
    for tensor, row, stat in zip(tensors, counts, stats):
        values = tensor.numpy().ravel()
        expected, _ = np.histogram(values, bins=10, range=(values.min(), values.max()))
        np.testing.assert_array_equal(row, expected)
        low, high, mean, std, zero, _, nonfinite = stat.tolist()
        assert nonfinite == 0
        assert (low, high) == pytest.approx((values.min(), values.max()))
        assert (mean, std) == pytest.approx((values.mean(), values.std()), rel=1e-4, abs=1e-6)
        assert zero == pytest.approx((values == 0).mean())


def test_a_large_tensor_is_binned_from_a_sample_with_its_exact_range_and_its_size_in_counts():
    torch.manual_seed(0)
    large = torch.randn(64, 64, 3, 3 * 30) * 0.05  # 1.1M values, a conv layer's weights
    large[0, 0, 0, 0] = 1.5  # one outlier: the range is the tensor's, not the sample's
    small = torch.randn(100)
    histograms = batched_histograms([large, small], 20, [None, None])
    assert histograms.binned == (HISTOGRAM_SAMPLE, 100)
    counts, stats = histograms.to_host()
    values = large.numpy().ravel()
    exact, _ = np.histogram(values, bins=20, range=(values.min(), values.max()))
    assert abs(counts[0].sum() - values.size) <= 20  # scaled to the size, rounded per bin
    assert np.abs(counts[0] - exact).max() < 0.01 * values.size
    low, high, mean, std, zero, _, _ = stats[0].tolist()
    assert (low, high) == pytest.approx((values.min(), 1.5))
    assert mean == pytest.approx(values.mean(), abs=0.001) and std == pytest.approx(values.std(), rel=0.02)
    assert zero == 0.0
    expected, _ = np.histogram(small.numpy(), bins=20, range=(small.min().item(), small.max().item()))
    np.testing.assert_array_equal(counts[1], expected)  # small tensors are counted whole
    # the same values are sampled at every pass, so that a histogram changes only when the tensor does
    again, _ = batched_histograms([large, small], 20, [None, None]).to_host()
    np.testing.assert_array_equal(again, counts)


def test_a_tensor_with_a_nan_or_an_inf_gets_its_count_and_leaves_the_others_alone():
    tensors = [
        torch.tensor([1.0, math.nan, 2.0]),
        torch.tensor([0.0, 1.0, 2.0, 3.0]),
        torch.tensor([1.0, math.inf, -math.inf, 2.0]),
    ]
    counts, stats = batched_histograms(tensors, 4, [None, None, None]).to_host()
    assert counts.tolist() == [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert np.isnan(stats[0, :5]).all() and stats[1, :3].tolist() == [0.0, 3.0, 1.5]
    assert stats[:, 6].tolist() == [1, 0, 2]  # NaN and infinite values
    # a sampled tensor's count is scaled to its size
    large = torch.zeros(200_000)
    large[:100_000] = math.nan
    _, stats = batched_histograms([large], 4, [None]).to_host()
    assert 0.45 < stats[0, 6] / 200_000 < 0.55


def test_the_cpu_and_gpu_ways_of_counting_bin_indices_agree():
    # the CPU counts with bincount, a GPU with histc (no sync): both are run here, on whole
    # numbers as the binning makes them, the first and last bins included
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(0, 90, (5000,), generator=generator).float()
    index[:5] = torch.tensor([0.0, 89.0, 89.0, math.nan, math.nan])  # NaN: a diverged tensor's values
    by_bincount = _count_indices(index, 90, by_bincount=True)
    by_histc = _count_indices(index, 90, by_bincount=False)
    assert by_bincount.dtype == by_histc.dtype == torch.float32
    assert by_bincount.shape == by_histc.shape == (91,)  # the 91st is no bin: the host drops it
    assert torch.equal(by_bincount[:90], by_histc[:90]) and by_bincount[:90].sum().item() == 4998


def test_saturation_counts_tanh_units_near_plus_or_minus_one():
    activations = torch.tensor([-1.0, -0.999, 0.0, 0.5, 0.9999, 0.2])
    _, stats = batched_histograms([activations, activations], 4, [None, "tanh"]).to_host()
    assert stats[:, 5].tolist() == pytest.approx([0.0, 3 / 6])


def test_saturation_counts_sigmoid_units_near_zero_or_one_and_keeps_each_tensor_its_own():
    outputs = torch.tensor([0.0, 0.005, 0.5, 0.995, 1.0, 0.3, 0.7, 0.2])
    tanh_like = torch.tensor([0.9995, 0.0])
    _, stats = batched_histograms([outputs, torch.ones(3), tanh_like], 4, ["sigmoid", None, "tanh"]).to_host()
    assert stats[:, 5].tolist() == pytest.approx([4 / 8, 0.0, 1 / 2])


def test_dead_fraction_counts_units_never_active_over_the_batch():
    activations = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]).relu()
    assert dead_fractions(live_fraction(activations)).item() == pytest.approx(2 / 3)
    maps = torch.zeros(2, 4, 3, 3)
    maps[1, 0, 2, 2] = 1.0  # one channel fires once
    assert dead_fractions(live_fraction(maps)).item() == pytest.approx(3 / 4)


def run(config: dict, **kwargs) -> MemorySink:
    sink = MemorySink()
    train(RunConfig.from_dict(config), sink, **kwargs)
    return sink


def test_histograms_of_activations_gradients_and_weights_every_h_steps():
    sink = run({"epochs": 1, "model": {"hidden": [32]}, "instrument": {"histogram_every": 10, "histogram_bins": 16}})
    keys = {r.key for r in sink.histogram_records}
    assert keys == {
        "activation/act1",
        "gradient/fc1.weight",
        "gradient/fc1.bias",
        "gradient/out.weight",
        "gradient/out.bias",
        "weight/fc1.weight",
        "weight/fc1.bias",
        "weight/out.weight",
        "weight/out.bias",
    }
    steps = sorted({r.step for r in sink.histogram_records})
    assert steps == [0, 10, 20]
    weight = next(r for r in sink.histogram_records if r.key == "weight/fc1.weight" and r.step == 0)
    assert weight.counts.sum() == 32 * 64 and len(weight.counts) == 16
    np.testing.assert_array_equal(sink.get("dead_fraction/act1")[0], [0, 10, 20])


def test_a_relu_layer_with_a_huge_negative_bias_is_reported_dead():
    config = RunConfig.from_dict({"model": {"hidden": [16]}, "epochs": 1})
    model = build_model(config.model, 64, 10, (1, 8, 8))
    with torch.no_grad():
        model.fc1.bias.fill_(-100.0)
    activation = model.act1(model.fc1(torch.randn(64, 64)))
    assert live_fraction(activation).item() == 0.0


def test_huge_tanh_weights_saturate_and_it_shows():
    sink = run(
        {
            "epochs": 1,
            "model": {"activation": "tanh", "init": "normal", "init_std": 5.0},
            "instrument": {"histogram_every": 5},
        }
    )
    _, saturated = sink.get("saturated_fraction/act1")
    assert saturated[0] > 0.8


def test_norms_per_tensor_every_k_steps():
    sink = run({"epochs": 1, "instrument": {"ratio_every": 5, "dense_steps": 0}})
    for kind in ("update_ratio", "grad_norm", "weight_norm"):
        steps, values = sink.get(f"{kind}/fc1.weight")
        np.testing.assert_array_equal(steps, np.arange(0, 23, 5))
        assert (values > 0).all()


def test_the_start_is_measured_four_times_as_often():
    sink = run({"epochs": 3, "instrument": {"ratio_every": 8, "histogram_every": 40, "dense_steps": 20}})
    steps, _ = sink.get("update_ratio/fc1.weight")
    np.testing.assert_array_equal(steps, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 24, 32, 40, 48, 56, 64])
    # the dense start's extra histograms are of the activations alone
    assert sorted({h.step for h in sink.histogram_records if h.key == "activation/act1"}) == [0, 5, 10, 15, 40]
    np.testing.assert_array_equal(sink.get("dead_fraction/act1")[0], [0, 5, 10, 15, 40])
    for key in ("weight/fc1.weight", "gradient/fc1.weight"):
        assert sorted({h.step for h in sink.histogram_records if h.key == key}) == [0, 40]


def test_the_l2_part_of_the_loss_is_logged_separately():
    sink = run(
        {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 0.01}, "instrument": {"ratio_every": 1}}
    )
    steps, reg = sink.get("loss_reg")
    assert len(steps) == len(sink.get("loss")[0])
    # lambda/2 * sum of squared weight norms, before each step
    norms = [sink.get(f"weight_norm/{n}")[1] for n in ("fc1.weight", "fc1.bias", "out.weight", "out.bias")]
    expected = 0.5 * 0.01 * sum(n**2 for n in norms)
    np.testing.assert_allclose(reg, expected, rtol=1e-5)
    assert "loss_reg" not in run({"epochs": 1}).series


def test_first_layer_weights_become_one_tile_per_unit():
    sink = run({"epochs": 2, "model": {"hidden": [64]}})
    assert [r.step for r in sink.image_records] == [22, 45]  # the first and last epochs always
    pixels = sink.image_records[0].pixels
    assert pixels.dtype == np.uint8 and pixels.shape == (8 * 9 + 1, 8 * 9 + 1)  # 8 x 8 tiles of 8 x 8 px
    rgb = build_model(RunConfig.from_dict({"model": {"kind": "cnn", "channels": [6]}}).model, 3072, 10, (3, 32, 32))
    grid = tile_grid(first_layer_tiles(rgb, (3, 32, 32)).cpu().numpy())
    assert grid.shape == (2 * 4 + 1, 3 * 4 + 1, 3)  # 6 filters of 3 x 3: 2 rows of 3
    assert "first_layer_roughness" not in sink.series  # 8 x 8 tiles are too small to judge


def test_tiles_are_laid_out_row_by_row_with_white_gaps_and_border():
    tiles = np.array([[[[0.0, 0.5]]], [[[1.0, 0.2]]], [[[0.4, 0.0]]]], dtype=np.float32)  # 3 tiles of 1 x 2
    white = 255
    assert tile_grid(tiles).tolist() == [
        [white] * 7,
        [white, 0, 128, white, 255, 51, white],
        [white] * 7,
        [white, 102, 0, white, white, white, white],  # the 4th cell of the 2 x 2 grid is empty (white)
        [white] * 7,
    ]


def test_the_roughness_of_filters_is_one_for_white_noise_and_near_zero_for_smooth_ones():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(50, 3, 28, 28, generator=generator)
    assert filter_roughness(noise).item() == pytest.approx(1.0, abs=0.03)
    ramp = torch.linspace(0, 1, 28)
    smooth = (torch.sin(6 * ramp)[None, :] * torch.cos(4 * ramp)[:, None]).expand(50, 3, 28, 28)
    assert filter_roughness(smooth).item() < 0.02
    # the measure ignores each tile's scale and offset, so the page's scaled tiles read the same
    assert filter_roughness(noise * 7 + 3).item() == pytest.approx(filter_roughness(noise).item(), rel=1e-4)
    assert filter_roughness(torch.randn(8, 1, 7, 7)) is None  # too few neighbours to say


def test_images_of_short_epochs_are_at_least_h_steps_apart():
    sink = run({"epochs": 10, "instrument": {"histogram_every": 50}})  # 23 steps an epoch
    assert [r.step for r in sink.image_records] == [22, 91, 160, 229]


def test_no_images_for_data_that_are_not_images():
    assert run({"epochs": 1, "data": {"name": "spiral"}}).image_records == []


def test_training_synchronises_with_the_host_only_at_hand_offs_and_epoch_ends(monkeypatch):
    calls = {"count": 0}
    for name in ("item", "tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            calls["count"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    sink = run({"epochs": 3, "batch_size": 16, "instrument": {"histogram_every": 20}}, handoff_seconds=3600)
    steps = len(sink.get("loss")[0])
    # per epoch: the validation numbers, the first-layer image and the hand-off's one copy (plus the
    # NumPy views of that copy): a constant, not one per step
    assert steps == 270 and calls["count"] <= 3 * 6


def test_recorder_copies_histograms_with_the_scalars_in_one_transfer():
    recorder = DeviceRecorder()
    recorder.add_histograms(("weight/w",), 7, batched_histograms([torch.arange(10.0)], 5, [None]))
    recorder.add("loss", 7, torch.tensor(1.5))
    batch, records = recorder.drain()
    assert batch["loss"][1].tolist() == [1.5]
    assert records[0].key == "weight/w" and records[0].counts.tolist() == [2, 2, 2, 2, 2]
    assert math.isclose(records[0].mean, 4.5)


def test_each_parameter_gets_its_kind_from_the_module_that_holds_it():
    torchvision = pytest.importorskip("torchvision")
    resnet = parameter_kinds(torchvision.models.resnet18(num_classes=10))
    assert (resnet["conv1.weight"], resnet["bn1.weight"], resnet["bn1.bias"]) == ("weight", "norm_scale", "norm_shift")
    assert (resnet["layer2.0.downsample.1.weight"], resnet["fc.bias"]) == ("norm_scale", "bias")

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte, self.wpe = nn.Embedding(16, 8), nn.Embedding(4, 8)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
            self.pos_embedding = nn.Parameter(torch.zeros(1, 4, 8))
            self.attn = nn.MultiheadAttention(8, 2)
            self.ln = nn.LayerNorm(8)
            self.gru = nn.GRU(8, 8)
            self.act = nn.PReLU()
            self.lm_head = nn.Linear(8, 16, bias=False)
            self.lm_head.weight = self.wte.weight

    kinds = parameter_kinds(Tied())
    assert set(dict(Tied().named_parameters())) <= set(kinds)
    assert (kinds["wte.weight"], kinds["wpe.weight"], kinds["pos_embedding"], kinds["cls_token"]) == (
        "embedding",
        "positional",
        "positional",
        "other",
    )
    assert (kinds["attn.in_proj_weight"], kinds["attn.in_proj_bias"], kinds["attn.out_proj.weight"]) == (
        "weight",
        "bias",
        "weight",
    )
    assert (kinds["gru.weight_hh_l0"], kinds["gru.bias_ih_l0"], kinds["ln.weight"], kinds["act.weight"]) == (
        "recurrent",
        "bias",
        "norm_scale",
        "other",
    )


def test_squeeze_and_excitation_gates_are_not_judged_as_units():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    probe = HistogramProbe(model, list(model.named_parameters()), bins=10)
    measured = {name for name, _ in probe.layers}
    gates = [name for name, module in model.named_modules() if type(module).__name__ == "SqueezeExcitation"]
    assert gates and not any(name.startswith(gate + ".") for gate in gates for name in measured)
    assert "features.1.block.0.2" in measured  # the ReLU before the gate is a layer of units like any
