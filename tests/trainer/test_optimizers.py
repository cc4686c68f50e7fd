"""Each optimizer, a few steps on a small problem, against the notes' update rule
(docs/training-dynamics.md, section 3) written out in NumPy."""

import numpy as np
import pytest
import torch

from trainer.config import RunConfig
from trainer.optim import build_optimizer

rng = np.random.default_rng(0)
A = rng.standard_normal((8, 5))
B = rng.standard_normal(8)
X0 = rng.standard_normal(5)
STEPS = 6


def gradient(x: np.ndarray) -> np.ndarray:
    """of f(x) = 0.5 * ||A x - b||^2"""
    return A.T @ (A @ x - B)


def torch_iterates(optimizer_config: dict) -> list[np.ndarray]:
    x = torch.nn.Parameter(torch.tensor(X0, dtype=torch.float64))
    optimizer = build_optimizer(RunConfig.from_dict({"optimizer": optimizer_config}).optimizer, [x])
    a, b = torch.tensor(A), torch.tensor(B)
    out = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        (0.5 * (a @ x - b).square().sum()).backward()
        optimizer.step()
        out.append(x.detach().numpy().copy())
    return out


def notes_iterates(update) -> list[np.ndarray]:
    x, state, out = X0.copy(), {}, []
    for t in range(1, STEPS + 1):
        x = update(x, gradient(x), state, t)
        out.append(x.copy())
    return out


def assert_same(optimizer_config: dict, update) -> None:
    for ours, notes in zip(torch_iterates(optimizer_config), notes_iterates(update)):
        np.testing.assert_allclose(ours, notes, rtol=1e-10, atol=1e-12)


def test_vanilla_sgd():
    assert_same({"name": "sgd", "lr": 0.05}, lambda x, dx, s, t: x - 0.05 * dx)


def test_sgd_with_l2_weight_decay_adds_lambda_w_to_the_gradient():
    # the notes' lambda/2 * ||w||^2 has gradient lambda * w
    assert_same({"name": "sgd", "lr": 0.05, "weight_decay": 0.1}, lambda x, dx, s, t: x - 0.05 * (dx + 0.1 * x))


def momentum_rule(mu: float, lr: float):
    def update(x, dx, s, t):
        s["v"] = mu * s.get("v", 0.0) - lr * dx  # v = mu * v - lr * dx
        return x + s["v"]  # x += v

    return update


def test_momentum_matches_the_notes_despite_torch_keeping_the_velocity_without_lr():
    # torch: v' = mu v' + g, x -= lr v'; the same iterates with v = -lr v'
    assert_same({"name": "momentum", "lr": 0.02, "momentum": 0.9}, momentum_rule(0.9, 0.02))


def test_nesterov_matches_the_notes_implementation_form():
    mu, lr = 0.9, 0.02

    def update(x, dx, s, t):
        v_prev = s.get("v", 0.0)
        s["v"] = mu * v_prev - lr * dx
        return x - mu * v_prev + (1 + mu) * s["v"]

    assert_same({"name": "nesterov", "lr": lr, "momentum": mu}, update)


def test_adagrad():
    lr, eps = 0.3, 1e-8

    def update(x, dx, s, t):
        s["cache"] = s.get("cache", 0.0) + dx**2
        return x - lr * dx / (np.sqrt(s["cache"]) + eps)

    assert_same({"name": "adagrad", "lr": lr, "eps": eps}, update)


@pytest.mark.parametrize("decay", [0.9, 0.99, 0.999])
def test_rmsprop(decay):
    lr, eps = 0.01, 1e-8

    def update(x, dx, s, t):
        s["cache"] = decay * s.get("cache", 0.0) + (1 - decay) * dx**2
        return x - lr * dx / (np.sqrt(s["cache"]) + eps)

    assert_same({"name": "rmsprop", "lr": lr, "decay": decay, "eps": eps}, update)


def adam_rule(lr: float, b1: float, b2: float, eps: float, amsgrad: bool = False, decoupled: float = 0.0):
    def update(x, dx, s, t):
        x = x * (1 - lr * decoupled)  # decoupled weight decay shrinks the weights directly
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * dx
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * dx**2
        v = s["v"]
        if amsgrad:
            s["vmax"] = np.maximum(s.get("vmax", 0.0), s["v"])
            v = s["vmax"]
        mt, vt = s["m"] / (1 - b1**t), v / (1 - b2**t)  # bias correction
        return x - lr * mt / (np.sqrt(vt) + eps)

    return update


def test_adam_with_bias_correction():
    assert_same({"name": "adam", "lr": 0.01}, adam_rule(0.01, 0.9, 0.999, 1e-8))


def test_adam_with_amsgrad():
    assert_same(
        {"name": "adam", "lr": 0.01, "amsgrad": True, "betas": [0.8, 0.99]},
        adam_rule(0.01, 0.8, 0.99, 1e-8, amsgrad=True),
    )


def test_adamw_and_adam_with_decoupled_weight_decay_shrink_the_weights_outside_the_gradient():
    assert_same({"name": "adamw", "lr": 0.01, "weight_decay": 0.1}, adam_rule(0.01, 0.9, 0.999, 1e-8, decoupled=0.1))
    assert_same(
        {"name": "adam", "lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
        adam_rule(0.01, 0.9, 0.999, 1e-8, decoupled=0.1),
    )


def test_adadelta_needs_no_global_rate_ratio_of_rms_of_updates_to_rms_of_gradients():
    rho, eps = 0.9, 1e-6

    def update(x, dx, s, t):
        s["g2"] = rho * s.get("g2", 0.0) + (1 - rho) * dx**2
        step = -np.sqrt(s.get("dx2", 0.0) + eps) / np.sqrt(s["g2"] + eps) * dx
        s["dx2"] = rho * s.get("dx2", 0.0) + (1 - rho) * step**2
        return x + step

    assert_same({"name": "adadelta", "lr": 1.0, "rho": rho, "eps": eps}, update)
