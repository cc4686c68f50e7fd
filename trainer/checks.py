"""Checks before and during training (docs/training-dynamics.md, section 2), on any model
and tensors: the worker's preflight (trainer.preflight) and the client both call them.

gradient_check        analytic vs numerical gradients, as the notes prescribe
initial_loss_check    the initial loss against ln(C) (C - 1 for an SVM)
regularisation_check  raising the regularisation strength raises the loss
overfit_check         a fresh model overfits a tiny subset
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.diagnosis import expected_initial_loss
from trainer.models import Maxout, MulticlassSVMLoss

# Relative-error thresholds of the notes
WRONG = 1e-2  # above: the gradient is almost certainly wrong
SUSPICIOUS = 1e-4  # 1e-4 .. 1e-2: suspicious; below: fine only for objectives with kinks
GOOD = 1e-7  # below: good
DEEP_NETWORK_LAYERS = 8  # from this many weight layers ~1e-2 can be acceptable (accumulated error)
# A softmax classifier's initial loss ln(C), an SVM's C - 1, within this relative tolerance
INITIAL_LOSS_TOLERANCE = 0.15
OVERFIT_EXAMPLES = 20
OVERFIT_MAX_STEPS = 500
OVERFIT_TARGET_LOSS = 0.05  # "about zero"


def relative_error(analytic: float, numerical: float) -> float:
    """|fa - fn| / max(|fa|, |fn|), and 0 when both are zero."""
    scale = max(abs(analytic), abs(numerical))
    return 0.0 if scale == 0 else abs(analytic - numerical) / scale


def verdict(max_error: float, kinked: bool, deep: bool) -> str:
    if max_error > WRONG:
        return "suspicious (deep network)" if deep else "wrong"
    if max_error > SUSPICIOUS:
        return "suspicious"
    if max_error > GOOD:
        return "ok" if kinked else "suspicious (too high for a smooth objective)"
    return "good"


@dataclass
class TensorCheck:
    tensor: str
    dims_checked: int
    max_relative_error: float
    median_relative_error: float
    kink_crossings: int
    verdict: str
    worst: dict[str, float] = field(default_factory=dict)  # the worst dimension: index, analytic, numerical


@dataclass
class GradientCheckResult:
    part: str  # "data loss" or "regularisation"
    h: float
    kinked_objective: bool
    tensors: list[TensorCheck]
    verdict: str

    @property
    def max_relative_error(self) -> float:
        return max((t.max_relative_error for t in self.tensors), default=0.0)


class _BranchRecorder:
    """Which branch every kink (ReLU-like max(0, x), maxout, max-pooling, hinge) took
    in one forward pass, so that x+h and x-h can be compared."""

    KINKED_TYPES = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, Maxout, nn.MaxPool2d)

    def __init__(self, model: nn.Module, loss_fn: nn.Module):
        self.branches: list[torch.Tensor] = []
        self.handles = []
        self.loss_kinked = isinstance(loss_fn, MulticlassSVMLoss)
        for module in model.modules():
            if isinstance(module, self.KINKED_TYPES):
                self.handles.append(module.register_forward_hook(self._hook))

    @property
    def kinked(self) -> bool:
        return bool(self.handles) or self.loss_kinked

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0].detach()
        if isinstance(module, Maxout):
            shape = x.shape
            self.branches.append(x.view(shape[0], shape[1] // module.pieces, module.pieces, *shape[2:]).argmax(dim=2))
        elif isinstance(module, nn.MaxPool2d):
            _, indices = F.max_pool2d(
                x,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                module.ceil_mode,
                return_indices=True,
            )
            self.branches.append(indices)
        else:
            self.branches.append(x > 0)

    def hinge(self, scores: torch.Tensor, target: torch.Tensor) -> None:
        if self.loss_kinked:
            correct = scores.gather(1, target[:, None])
            self.branches.append(scores - correct + 1 > 0)

    def take(self) -> list[torch.Tensor]:
        taken, self.branches = self.branches, []
        return taken

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _sample_indices(numel: int, count: int, generator: torch.Generator) -> list[int]:
    if numel <= count:
        return list(range(numel))
    return torch.randperm(numel, generator=generator)[:count].tolist()


def gradient_check(
    model: nn.Module,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    h: float = 1e-5,
    dims_per_tensor: int = 10,
    seed: int = 0,
    l2: float = 0.0,
) -> list[GradientCheckResult]:
    """Check the data loss's gradient with regularisation off, then the L2 term on its own
    (when l2 > 0). Runs in double precision on a copy of the model."""
    model = copy.deepcopy(model).double()
    model.train()  # as in training: dropout on, made deterministic by re-seeding below
    x = x.double()
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    depth = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())
    recorder = _BranchRecorder(model, loss_fn)

    def data_loss() -> torch.Tensor:
        torch.manual_seed(seed)  # dropout / RReLU draw the same masks for f(x+h), f(x-h) and the gradient
        scores = model(x)
        recorder.hinge(scores, y)
        return loss_fn(scores, y)

    def l2_loss() -> torch.Tensor:
        return 0.5 * l2 * torch.stack([p.square().sum() for _, p in params]).sum()

    results = [_check_part("data loss", data_loss, params, recorder, h, dims_per_tensor, seed, depth)]
    if l2 > 0:
        no_kinks = _BranchRecorder(nn.Identity(), nn.Identity())  # the L2 term is smooth
        results.append(_check_part("regularisation", l2_loss, params, no_kinks, h, dims_per_tensor, seed, depth))
    recorder.remove()
    return results


def _check_part(
    part: str, objective, params, recorder: _BranchRecorder, h: float, dims_per_tensor: int, seed: int, depth: int
) -> GradientCheckResult:
    for _, p in params:
        p.grad = None
    objective().backward()
    recorder.take()
    analytic = {name: p.grad.detach().clone().reshape(-1) for name, p in params}
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    with torch.no_grad():
        for name, p in params:
            flat = p.view(-1)
            errors: list[float] = []
            kinks, worst = 0, {}
            for index in _sample_indices(flat.numel(), dims_per_tensor, generator):
                original = flat[index].item()
                flat[index] = original + h
                plus = objective().item()
                branches_plus = recorder.take()
                flat[index] = original - h
                minus = objective().item()
                branches_minus = recorder.take()
                flat[index] = original
                if any(not torch.equal(a, b) for a, b in zip(branches_plus, branches_minus)):
                    kinks += 1  # x+h and x-h on different sides of a kink: the numerical gradient is wrong
                    continue
                numerical = (plus - minus) / (2 * h)  # centred difference: error O(h^2)
                fa = analytic[name][index].item()
                error = relative_error(fa, numerical)
                if not errors or error > max(errors):
                    worst = {"index": index, "analytic": fa, "numerical": numerical}
                errors.append(error)
            top = max(errors, default=0.0)
            tensors.append(
                TensorCheck(
                    name,
                    len(errors) + kinks,
                    top,
                    float(np.median(errors)) if errors else 0.0,
                    kinks,
                    verdict(top, recorder.kinked, depth >= DEEP_NETWORK_LAYERS),
                    worst,
                )
            )
    overall = max((t.max_relative_error for t in tensors), default=0.0)
    return GradientCheckResult(
        part, h, recorder.kinked, tensors, verdict(overall, recorder.kinked, depth >= DEEP_NETWORK_LAYERS)
    )


# --------------------------------------------------------------------------
# sanity checks


@dataclass
class SanityCheck:
    name: str
    passed: bool
    numbers: dict[str, float]
    message: str


def initial_loss_check(
    model: nn.Module, loss_fn: nn.Module, loss_name: str, x: torch.Tensor, y: torch.Tensor, classes: int
) -> SanityCheck:
    with torch.no_grad():
        loss = loss_fn(model(x), y).item()
    expected, formula = expected_initial_loss(loss_name, classes)
    passed = abs(loss - expected) <= INITIAL_LOSS_TOLERANCE * expected
    message = f"initial loss {loss:.4g}, expected about {formula} = {expected:.4g}" + (
        "" if passed else ": look at the initialisation (weights too large?) or the loss"
    )
    return SanityCheck(
        "initial loss", passed, {"loss": loss, "expected": expected, "tolerance": INITIAL_LOSS_TOLERANCE}, message
    )


def regularisation_check(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, l2: float
) -> SanityCheck:
    stronger = max(10 * l2, 1e-3)
    with torch.no_grad():
        data_loss = loss_fn(model(x), y).item()
        squared = sum(p.square().sum().item() for p in model.parameters())
    at_l2, at_stronger = data_loss + 0.5 * l2 * squared, data_loss + 0.5 * stronger * squared
    passed = at_stronger > at_l2
    message = f"loss {at_l2:.6g} at lambda={l2:g}, {at_stronger:.6g} at lambda={stronger:g}" + (
        "" if passed else ": the regularisation has no effect (all weights zero?)"
    )
    numbers = {"lambda": l2, "loss": at_l2, "stronger_lambda": stronger, "stronger_loss": at_stronger}
    return SanityCheck("regularisation raises the loss", passed, numbers, message)


def overfit_check(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> SanityCheck:
    """A fresh model and optimizer (no regularisation) on OVERFIT_EXAMPLES examples: the loss
    must get to about zero."""
    x, y = x[:OVERFIT_EXAMPLES], y[:OVERFIT_EXAMPLES]
    model.train()
    losses = torch.empty(OVERFIT_MAX_STEPS, device=x.device)
    for step in range(OVERFIT_MAX_STEPS):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step] = loss.detach()
    history = losses.cpu().numpy()
    below = np.flatnonzero(history < OVERFIT_TARGET_LOSS)
    passed = bool(len(below))
    first, final = float(history[0]), float(history[-1])
    reached = (
        f"reached {OVERFIT_TARGET_LOSS:g} at step {int(below[0])}"
        if passed
        else f"did not reach {OVERFIT_TARGET_LOSS:g} in {OVERFIT_MAX_STEPS} steps"
    )
    message = f"{len(y)} examples without regularisation: loss {first:.4g} -> {final:.4g}, {reached}" + (
        "" if passed else "; check the learning rate and the model before training on all the data"
    )
    numbers = {
        "examples": float(len(y)),
        "first_loss": first,
        "final_loss": final,
        "steps": float(int(below[0]) if passed else OVERFIT_MAX_STEPS),
    }
    return SanityCheck("overfit a tiny subset", passed, numbers, message)
