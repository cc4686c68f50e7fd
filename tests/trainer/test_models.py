import math

import pytest
import torch

from trainer.config import RunConfig
from trainer.loop import train
from trainer.models import Maxout, build_loss, build_model
from trainer.sink import MemorySink


def model_for(model: dict, features: int = 64, classes: int = 10, image_shape=(1, 8, 8)):
    torch.manual_seed(0)
    return build_model(RunConfig.from_dict({"model": model}).model, features, classes, image_shape)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "prelu", "rrelu", "elu", "tanh", "sigmoid", "maxout"])
def test_every_activation_builds_and_trains_a_step(activation):
    model = model_for({"hidden": [16, 16], "activation": activation})
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    loss = build_loss("cross_entropy")(model(x), y)
    loss.backward()
    assert math.isfinite(loss.item()) and all(p.grad is not None for p in model.parameters())


def test_maxout_takes_the_max_of_k_pieces():
    x = torch.tensor([[1.0, 5.0, -2.0, 3.0, 0.0, 4.0]])  # 3 units x 2 pieces
    assert Maxout(2)(x).tolist() == [[5.0, 3.0, 4.0]]
    model = model_for({"hidden": [16], "activation": "maxout", "maxout_pieces": 3})
    assert model.fc1.out_features == 48 and model.out.in_features == 16


def test_xavier_uniform_stays_within_its_bound():
    model = model_for({"hidden": [100], "init": "xavier_uniform"})
    bound = math.sqrt(6 / (64 + 100))
    assert model.fc1.weight.abs().max() <= bound and model.fc1.weight.abs().max() > 0.9 * bound
    assert (model.fc1.bias == 0).all()


def test_kaiming_normal_has_variance_two_over_fan_in():
    model = model_for({"hidden": [2000], "init": "kaiming_normal"}, features=500)
    assert model.fc1.weight.var().item() == pytest.approx(2 / 500, rel=0.05)


def test_normal_init_uses_the_given_std_and_zeros_make_units_identical():
    assert model_for({"init": "normal", "init_std": 0.01}).fc1.weight.std().item() == pytest.approx(0.01, rel=0.1)
    zeros = model_for({"hidden": [8], "init": "zeros"})
    assert (zeros.fc1.weight == 0).all()
    constant = model_for({"hidden": [8], "init": "constant", "init_value": 0.5})
    assert (constant.fc1.weight == 0.5).all()


def test_dropout_is_inverted_and_off_in_evaluation():
    model = model_for({"hidden": [1000], "dropout": 0.5, "activation": "relu"})
    x = torch.randn(4, 64)
    model.eval()
    assert torch.equal(model(x), model(x))
    dropout = model.drop1
    dropout.train()
    ones = torch.ones(10_000)
    kept = dropout(ones)
    assert set(kept.unique().tolist()) == {0.0, 2.0}  # survivors scaled by 1/(1-p)
    assert kept.mean().item() == pytest.approx(1.0, abs=0.05)


def test_batch_norm_layers_are_inserted_when_asked():
    model = model_for({"hidden": [16], "batch_norm": True})
    assert isinstance(model.bn1, torch.nn.BatchNorm1d)


def test_the_cnn_reads_flattened_images_and_names_its_layers():
    model = model_for(
        {"kind": "cnn", "channels": [4, 8], "hidden": [16]}, features=3 * 32 * 32, image_shape=(3, 32, 32)
    )
    assert model(torch.randn(2, 3 * 32 * 32)).shape == (2, 10)
    assert model.conv1.in_channels == 3 and model.fc1.in_features == 8 * 8 * 8


def test_small_weights_give_the_initial_loss_the_notes_expect():
    # softmax: ln(C); multiclass SVM: C - 1
    model = model_for({"hidden": [], "init": "normal", "init_std": 1e-4})
    x, y = torch.randn(500, 64), torch.randint(0, 10, (500,))
    assert build_loss("cross_entropy")(model(x), y).item() == pytest.approx(math.log(10), abs=0.01)
    assert build_loss("svm")(model(x), y).item() == pytest.approx(9.0, abs=0.01)


def test_an_svm_run_trains():
    sink = MemorySink()
    result = train(RunConfig.from_dict({"loss": "svm", "epochs": 3, "optimizer": {"name": "adam"}}), sink)
    losses = sink.get("loss")[1]
    assert result.status == "succeeded" and result.best_val_accuracy > 0.8
    assert losses[-10:].mean() < losses[:3].mean()
