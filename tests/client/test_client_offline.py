"""The client without a server: a run recorded offline is a folder of payloads, decoded here
to see what `log` and `watch` measured on models from outside Trainwatch's catalogue."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import trainwatch
from tests.client.models import Functional, ResNet18, Transformer
from trainer.wire import Payload, decode
from trainwatch.transport import split


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWATCH_DIR", str(tmp_path))
    monkeypatch.setenv("TRAINWATCH_MODE", "offline")
    for name in ("TRAINWATCH_URL", "TRAINWATCH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def payloads(run: trainwatch.Run) -> list[Payload]:
    return [decode(path.read_bytes()) for path in run.spool.pending()]


def gathered(run: trainwatch.Run) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list, list, dict]:
    series: dict[str, tuple[list, list]] = {}
    histograms, images, extra = [], [], {}
    for payload in payloads(run):
        for key, (steps, values) in payload.scalars.items():
            series.setdefault(key, ([], []))[0].extend(steps.tolist())
            series[key][1].extend(values.tolist())
        histograms += payload.histograms
        images += payload.images
        for name in ("describe", "checks", "finish"):
            if getattr(payload, name) is not None:
                extra[name] = getattr(payload, name)
    return {k: (np.array(s), np.array(v)) for k, (s, v) in series.items()}, histograms, images, extra


def train(run, model, optimizer, inputs, targets, steps, loss_fn=None):
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    for step in range(steps):
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.log({"loss": loss, "train_acc": (model(inputs).argmax(1) == targets).float().mean()}, step=step)


def test_a_resnet_is_measured_tensor_by_tensor_with_torchvisions_names():
    torch.manual_seed(0)
    model = ResNet18(classes=10, width=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    run = trainwatch.init(project="vision", name="resnet18", config={"lr": 0.05, "batch": 4})
    run.watch(
        model,
        optimizer,
        ratio_every=2,
        histogram_every=5,
        image_every=5,
        dense_steps=0,
        classes=10,
        loss="cross_entropy",
    )
    train(run, model, optimizer, torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)), 10)
    run.finish()
    series, histograms, images, extra = gathered(run)
    names = [name for name, _ in model.named_parameters()]
    assert len(names) == 62 and "layer1.0.conv1.weight" in names and "layer2.0.downsample.0.weight" in names
    for name in names:
        steps, ratios = series[f"update_ratio/{name}"]
        assert steps.tolist() == [0, 2, 4, 6, 8] and np.isfinite(ratios).any(), name
    assert series["loss"][0].tolist() == list(range(10)) and series["lr"][1].tolist() == [0.05] * 10
    keys = {h.key for h in histograms}
    assert {"weight/layer1.0.conv1.weight", "gradient/fc.weight", "activation/layer1.0.relu", "activation/relu"} <= keys
    assert {h.step for h in histograms} == {0, 5}
    assert series["dead_fraction/layer1.0.relu"][0].tolist() == [0, 5]
    # the first convolution's 8 filters (3 x 7 x 7, RGB) as tiles
    assert images[0].key == "first_layer" and images[0].pixels.shape[2] == 3
    assert extra["describe"]["tensors"] == names
    assert extra["describe"]["context"] == {
        "optimizer": "momentum",
        "lr": 0.05,
        "activation": "relu",
        "loss": "cross_entropy",
        "classes": 10,
    }
    assert extra["finish"]["status"] == "succeeded"


def test_a_transformer_with_functional_gelu_gets_ratios_and_histograms_of_every_parameter():
    torch.manual_seed(0)
    model = Transformer()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    run = trainwatch.init(project="text")
    run.watch(model, optimizer, ratio_every=1, histogram_every=3)
    train(run, model, optimizer, torch.randint(0, 50, (8, 12)), torch.randint(0, 4, (8,)), 6)
    run.finish()
    series, histograms, _, extra = gathered(run)
    for name, _ in model.named_parameters():
        assert len(series[f"update_ratio/{name}"][0]) == 6, name
    assert "update_ratio/encoder.layers.0.self_attn.in_proj_weight" in series
    assert not any(h.key.startswith("activation/") for h in histograms)  # F.gelu: no module to hook
    assert {h.key for h in histograms} >= {"weight/encoder.layers.1.linear2.weight", "gradient/head.weight"}
    assert extra["describe"]["context"]["optimizer"] == "adamw" and "activation" not in extra["describe"]["context"]


def test_a_model_with_functional_relu_gets_everything_but_activation_histograms():
    model = Functional()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    run = trainwatch.init()
    run.watch(model, optimizer, ratio_every=1, histogram_every=1)
    train(run, model, optimizer, torch.randn(16, 64), torch.randint(0, 10, (16,)), 3)
    run.finish()
    series, histograms, _, _ = gathered(run)
    assert {f"update_ratio/{n}" for n in ("first.weight", "first.bias", "second.weight", "second.bias")} <= set(series)
    assert {h.key.split("/")[0] for h in histograms} == {"weight", "gradient"}


def test_log_takes_numbers_and_one_element_tensors_and_says_what_it_refuses():
    run = trainwatch.init()
    run.log({"a": 1, "b": torch.tensor([2.5]), "c": np.float32(3.5)}, step=3)
    run.log({"a": 2})  # the next step
    with pytest.raises(ValueError, match="tensor of 3 values"):
        run.log({"v": torch.ones(3)})
    with pytest.raises(ValueError, match="not a key"):
        run.log({"has space": 1.0})
    run.finish()
    series, _, _, _ = gathered(run)
    assert series["a"][0].tolist() == [3, 4] and series["b"][1].tolist() == [2.5] and series["c"][1].tolist() == [3.5]


def test_checks_on_any_model_travel_with_the_run():
    torch.manual_seed(0)
    model = Functional()
    run = trainwatch.init()
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    gradient = trainwatch.gradient_check(model, nn.CrossEntropyLoss(), x[:4], y[:4], run=run)
    sanity = trainwatch.sanity_checks(model, nn.CrossEntropyLoss(), x, y, classes=10, run=run)
    run.finish()
    assert gradient[0]["verdict"] in ("good", "ok") and [c["name"] for c in sanity] == [
        "initial loss",
        "regularisation raises the loss",
        "overfit a tiny subset",
    ]
    checks = gathered(run)[3]["checks"]
    assert checks["gradient"][0]["tensors"][0]["tensor"] == "first.weight" and len(checks["sanity"]) == 3


def test_a_context_manager_ends_the_run_failed_with_its_traceback_or_cancelled_on_ctrl_c():
    with pytest.raises(ZeroDivisionError), trainwatch.init() as failing:
        failing.log({"loss": 1.0})
        _ = 1 / 0
    finish = gathered(failing)[3]["finish"]
    assert finish["status"] == "failed" and "ZeroDivisionError" in finish["error"]
    with pytest.raises(KeyboardInterrupt), trainwatch.init() as interrupted:
        raise KeyboardInterrupt
    assert gathered(interrupted)[3]["finish"]["status"] == "cancelled"


def test_an_offline_run_is_a_folder_that_sync_can_send():
    run = trainwatch.init(project="p", name="offline", config={"lr": torch.tensor(0.1), "layers": (2, 3)})
    run.log({"loss": 1.0}, step=0)
    run.finish()
    state = json.loads((run.spool.folder / "run.json").read_text())
    assert state["run_id"] is None and state["start"]["config"] == {"lr": pytest.approx(0.1), "layers": [2, 3]}
    assert state["start"]["source"]["python"] and state["start"]["source"]["host"]
    assert [p.name for p in run.spool.pending()] == ["000000000000.twb"]


def test_a_large_hand_off_is_split_under_the_size_limit_in_order():
    steps = np.arange(200_000)
    payload = Payload(
        0,
        {"a": (steps, np.ones(len(steps))), "b": (steps[:10], np.zeros(10))},
        finish={"status": "succeeded", "message": "", "error": ""},
    )
    pieces = split(payload, 1024 * 1024)
    assert len(pieces) == 4 and pieces[-1].finish and not pieces[0].finish
    assert np.concatenate([p.scalars["a"][0] for p in pieces if "a" in p.scalars]).tolist() == steps.tolist()
    assert all(sum(16 * len(s) for s, _ in p.scalars.values()) < 1024 * 1024 for p in pieces)


def test_watch_refuses_what_it_cannot_measure():
    model, other = Functional(), Functional()
    run = trainwatch.init()
    with pytest.raises(ValueError, match="does not step this model"):
        run.watch(model, torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="ratio_every"):
        run.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), ratio_every=0)
    run.finish()


def test_a_run_whose_loss_became_nan_ends_diverged_however_the_script_ends_it():
    with trainwatch.init(name="diverging") as run:
        for step, loss in enumerate([2.3, 1.9, float("nan"), float("nan")]):
            run.log({"loss": torch.tensor(loss)}, step=step)
    finish = gathered(run)[3]["finish"]
    assert finish["status"] == "diverged" and finish["message"] == "the loss became nan at step 2"
    assert run.status == "diverged"


def test_a_run_that_is_stopped_keeps_its_own_status():
    with pytest.raises(KeyboardInterrupt), trainwatch.init() as run:
        run.log({"loss": float("inf")}, step=0)
        raise KeyboardInterrupt
    assert gathered(run)[3]["finish"]["status"] == "cancelled" and run.status == "cancelled"


def test_the_watch_describes_each_tensors_kind():
    model = Transformer()
    run = trainwatch.init()
    run.watch(model, torch.optim.AdamW(model.parameters()))
    run.finish()
    describe = gathered(run)[3]["describe"]
    kinds = dict(zip(describe["tensors"], describe["kinds"]))
    assert len(kinds) == len(list(model.parameters()))
    assert kinds["embed.weight"] == "embedding" and kinds["head.weight"] == "weight"
    assert {kind for name, kind in kinds.items() if "norm" in name} == {"norm_scale", "norm_shift"}


def test_first_layer_images_are_spread_over_the_planned_run():
    model = Functional(features=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainwatch.init(total_steps=40)
    run.watch(model, optimizer, image_shape=(1, 8, 8), histogram_every=0)
    train(run, model, optimizer, torch.randn(16, 64), torch.randint(0, 10, (16,)), 40)
    run.finish()
    assert [image.step for image in gathered(run)[2]] == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]


@pytest.mark.parametrize(
    ("loop", "carried"),
    [
        ("zeroed", False),
        ("zeroed after the step", False),
        ("accumulated over 4 micro-batches, zeroed every step", False),
        ("clipped, through a gradient scaler", False),
        ("never zeroed", True),
    ],
)
def test_the_gradient_carried_over_between_steps_is_measured(loop, carried):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=loop.startswith("clipped"))
    inputs, targets = torch.randn(64, 20), torch.randint(0, 5, (64,))
    run = trainwatch.init(project="p")
    run.watch(model, optimizer)
    for _ in range(60):
        if loop == "zeroed":
            optimizer.zero_grad()
        for part in range(4 if "micro" in loop else 1):
            batch = slice(part * 16, part * 16 + 16) if "micro" in loop else slice(None)
            scaler.scale(nn.functional.cross_entropy(model(inputs[batch]), targets[batch])).backward()
        if loop.startswith("clipped"):
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        scaler.step(optimizer)
        scaler.update()
        if loop in ("zeroed after the step", "clipped, through a gradient scaler") or "micro" in loop:
            optimizer.zero_grad()
    run.finish()
    steps, values = gathered(run)[0]["carried_gradient"]
    # every ratio step but the first (its hook is armed at the step before): 5, 10, ... 55
    assert steps.tolist() == list(range(5, 60, 5))
    if carried:
        assert np.median(values) > 0.3, values
    else:
        assert values.max() < 1e-4, values


@pytest.mark.parametrize(
    ("dropout", "evaluate_in_eval_mode", "counted"), [(0.5, False, True), (0.5, True, False), (0.0, False, False)]
)
def test_an_evaluation_in_training_mode_is_counted_where_the_mode_matters(dropout, evaluate_in_eval_mode, counted):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    inputs, targets = torch.randn(64, 20), torch.randint(0, 5, (64,))
    run = trainwatch.init(project="p")
    run.watch(model, optimizer)
    for step in range(30):
        model.train()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
        if step % 10 == 9:  # validation, twice a pass over two batches
            if evaluate_in_eval_mode:
                model.eval()
            with torch.no_grad():
                accuracy = torch.cat([model(inputs[:32]), model(inputs[32:])]).argmax(1).eq(targets).float().mean()
            run.log({"val_acc": accuracy}, step=step)
    run.finish()
    series = gathered(run)[0]
    if counted:
        steps, passes = series["eval_in_train_mode"]
        # at the step after each; the last validation, after the last step, at the run's end
        assert steps.tolist() == [10, 20, 29] and passes.tolist() == [2.0, 2.0, 2.0]
    else:
        assert "eval_in_train_mode" not in series


def test_what_the_script_printed_travels_with_the_first_piece_of_a_split_hand_off():
    lines = [(1000.0, "stdout", "epoch 1"), (1001.0, "stderr", "warning")]
    payload = Payload(0, {"loss": (np.arange(200_000), np.ones(200_000))}, console=lines)
    pieces = split(payload, 1024 * 1024)
    assert len(pieces) > 1 and pieces[0].console == lines and all(not piece.console for piece in pieces[1:])
