"""`run.watch(model, optimizer)`: the worker's own measurements (trainer.instrument) on any
model, taken at its optimizer's steps through torch's step hooks.

- every `ratio_every` optimizer steps, four times as often during the first `dense_steps` (100):
  per parameter tensor, the update-to-weight ratio
  norm(W_after - W_before) / norm(W_before) of the update actually applied, the gradient norm
  and the weight norm (ParameterProbe, around optimizer.step());
- every `histogram_every` steps: histograms of weights, gradients (just before the step) and
  of the outputs of activation modules in the forward pass that led to it (forward hooks armed
  for that one step), with dead and saturated fractions (HistogramProbe); at the start also
  every quarter of `dense_steps`, the activations alone;
- every `image_every` (by default IMAGES_PER_RUN spread over the planned run, every
  IMAGE_EVERY steps when its length is unknown): the first layer's weights as an image,
  scaled on the device;
- every step: the learning rate of the first parameter group (a host number);
- forward passes without gradients (an evaluation) while the model is in training mode, when
  it has dropout or batch norm: counted, and recorded at the next step (model.eval() forgotten);
- at the steps the ratios are measured: how much of the gradient of the smallest weight matrix
  was carried over from earlier steps (optimizer.zero_grad() forgotten), from a gradient hook
  armed from the step before.

An optimizer stepped with a closure (optimizer.step(closure), as Lightning does) computes its
gradients inside step(): its "before the update" measurements are then taken by whoever
knows the gradients are ready (before="manual", then before_update(); the Lightning callback
calls it from on_before_optimizer_step).

Activations called as functions (F.relu, F.gelu inside a module's forward) have no module to
hook: their layers get no activation histogram, dead or saturated fraction; every parameter
still gets its ratio, norms and histograms.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainer.config import InstrumentConfig
from trainer.instrument import (
    HistogramProbe,
    ParameterProbe,
    activation_kind,
    filter_roughness,
    first_layer_tiles,
    parameter_kinds,
)
from trainer.tensor_names import CARRIED_GRADIENT_KEY, EVAL_IN_TRAIN_MODE_KEY, ROUGHNESS_KEY

if TYPE_CHECKING:
    from trainwatch.run import Run


# layers that compute differently in training mode: a forward pass without gradients through
# them in training mode is an evaluation that forgot model.eval() (dropout of p = 0 does nothing)
TRAIN_MODE_LAYERS = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)

IMAGES_PER_RUN = 10
IMAGE_EVERY = 1000  # when the run's length is unknown


def optimizer_facts(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer in the words of the diagnosis (sgd, momentum, nesterov, adam, ...) and its rate."""
    group = optimizer.param_groups[0]
    name = type(optimizer).__name__.lower()
    if name == "sgd" and float(group.get("momentum", 0) or 0) > 0:
        name = "nesterov" if group.get("nesterov") else "momentum"
    return {"optimizer": name, "lr": float(group["lr"])}


class Watcher:
    def __init__(
        self,
        run: Run,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        ratio_every: int,
        histogram_every: int,
        bins: int,
        image_every: int | None,
        image_shape: tuple[int, int, int] | None,
        before: str = "step",
        dense_steps: int = InstrumentConfig.dense_steps,
    ):
        for name, value in (
            ("ratio_every", ratio_every),
            ("histogram_every", histogram_every),
            ("image_every", IMAGE_EVERY if image_every is None else image_every),
        ):
            if not isinstance(value, int) or value < 0 or (name == "ratio_every" and value == 0):
                raise ValueError(
                    f"watch: {name} must be a whole number of steps >= {1 if name == 'ratio_every' else 0}"
                    f" (0: never), got {value!r}"
                )
        self.run = run
        self.model = model
        self.optimizer = optimizer
        named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
        if not named:
            raise ValueError("watch: the model has no parameter that requires a gradient")
        watched = {id(param) for _, param in named}
        stepped = {id(param) for group in optimizer.param_groups for param in group["params"]}
        if not watched & stepped:
            raise ValueError("watch: the optimizer does not step this model's parameters")
        every_kind = parameter_kinds(model)
        # every parameter in the model's order, and those that do not learn (requires_grad off,
        # or left out of the optimizer): the diagnosis reads where they lie
        self.every_name = tuple(name for name, _ in model.named_parameters())
        self.kinds = tuple(every_kind[name] for name in self.every_name)
        self.frozen = tuple(
            name for name, param in model.named_parameters() if not param.requires_grad or id(param) not in stepped
        )
        self.parameters = ParameterProbe(named)
        # the gradient carried over between steps (optimizer.zero_grad() forgotten), on the
        # smallest weight matrix the optimizer steps (any parameter where there is none): cheap
        stepped_named = [param for _, param in named if id(param) in stepped]
        matrices = [param for param in stepped_named if param.dim() >= 2] or stepped_named
        self._carry_param = min(matrices, key=lambda param: param.numel())
        self._carry_brought: torch.Tensor | None = None  # what the backward passes since the last step brought
        self._carry_handle: torch.utils.hooks.RemovableHandle | None = None
        # an evaluation in training mode (model.eval() forgotten) changes what a model with dropout
        # or batch norm computes: its forward passes without gradients are counted
        self._evaluated_in_train_mode = 0
        self.histograms = HistogramProbe(model, named, bins) if histogram_every else None
        # the worker's schedule of measurements, dense start included
        self.schedule = InstrumentConfig(
            ratio_every=ratio_every, histogram_every=histogram_every, histogram_bins=bins, dense_steps=dense_steps
        )
        self.image_every = image_every
        self.image_shape = image_shape
        self.steps = 0  # optimizer steps taken since watch()
        # the step a measurement is stamped with, when the caller knows it (a trainer's global
        # step: the Lightning and Hugging Face callbacks); else Run._measured_step
        self.step_of: Callable[[], int] | None = None
        self._measuring: int | None = None
        if before not in ("step", "manual"):
            raise ValueError(f"watch: before must be 'step' or 'manual', got {before!r}")
        self._handles = [optimizer.register_step_post_hook(self._after)]
        if before == "step":
            self._handles.append(optimizer.register_step_pre_hook(self._before))
        if any(isinstance(m, TRAIN_MODE_LAYERS) and getattr(m, "p", 1.0) != 0 for m in model.modules()):
            self._handles.append(model.register_forward_pre_hook(self._forward))
        if self.histograms is not None:
            self.histograms.arm()  # step 0 is measured: its forward pass comes next

    def facts(self) -> dict[str, Any]:
        """What the diagnosis needs to know: the optimizer, its rate, the model's main activation."""
        kinds = Counter(type(module).__name__.lower() for module in self.model.modules() if activation_kind(module))
        return {**optimizer_facts(self.optimizer), "activation": kinds.most_common(1)[0][0] if kinds else None}

    def _before(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.before_update()

    def before_update(self) -> None:
        """Gradients are ready and the weights not yet updated: gradient and weight histograms,
        activations of the forward pass, and the weights' copy for the update-to-weight ratio."""
        step = self.step_of() if self.step_of is not None else self.run._measured_step(self.steps)
        if self.histograms is not None and self.schedule.measures_histograms(self.steps):
            with self.run._lock:  # the gradients of this step and the activations of its forward pass
                parameters = self.schedule.measures_parameter_histograms(self.steps)
                self.histograms.collect(self.run._recorder, step, parameters=parameters)
        if self.schedule.measures_parameters(self.steps):
            self.parameters.before_step()
            self._measuring = step
        if self._carry_handle is not None:  # armed at the step before: this step is measured
            self._carried(step)

    def _after(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        step = self.step_of() if self.step_of is not None else self.run._measured_step(self.steps)
        with self.run._lock:
            if self._measuring is not None:
                self.parameters.after_step(self.run._recorder, self._measuring)
                self._measuring = None
            self.run._recorder.add_host("lr", step, float(optimizer.param_groups[0]["lr"]))
            if self._evaluated_in_train_mode:
                self.run._recorder.add_host(EVAL_IN_TRAIN_MODE_KEY, step, float(self._evaluated_in_train_mode))
                self._evaluated_in_train_mode = 0
        every = self._image_every()
        if every and self.steps % every == 0:
            tiles = first_layer_tiles(self.model, self.image_shape)
            if tiles is not None:
                self.run._add_image(step, tiles)
                roughness = filter_roughness(tiles)
                if roughness is not None:
                    with self.run._lock:
                        self.run._recorder.add(ROUGHNESS_KEY, step, roughness)
        self.steps += 1
        if self.histograms is not None and self.schedule.measures_histograms(self.steps):
            self.histograms.arm()  # the next step is measured: catch its forward pass
        if self.schedule.measures_parameters(self.steps) and self._carry_handle is None:
            self._carry_brought = None
            self._carry_handle = self._carry_param.register_hook(self._bring)

    def _forward(self, module: nn.Module, args: Any) -> None:
        if module.training and not torch.is_grad_enabled():
            self._evaluated_in_train_mode += 1

    def _bring(self, grad: torch.Tensor) -> None:
        """A backward pass's gradient of the watched matrix, before it is added to its .grad."""
        brought = grad.detach()
        self._carry_brought = brought.clone() if self._carry_brought is None else self._carry_brought.add_(brought)

    @torch.no_grad()
    def _carried(self, step: int) -> None:
        """At a measured step (whose previous step armed the hook): the share of the watched
        matrix's gradient that its backward passes since that step did not bring, as the norm of
        what is left of .grad once its projection on what they brought is taken away (so that a
        gradient scaled since, by unscaling or clipping, counts as brought), over .grad's norm."""
        assert self._carry_handle is not None
        self._carry_handle.remove()
        self._carry_handle = None
        grad, brought = self._carry_param.grad, self._carry_brought
        self._carry_brought = None
        if grad is None or brought is None:
            return
        g, b = grad.detach().float().reshape(-1), brought.float().reshape(-1)
        along = torch.dot(g, b) / torch.dot(b, b).clamp_min(1e-30)
        left = torch.linalg.vector_norm(g - along * b) / torch.linalg.vector_norm(g).clamp_min(1e-30)
        with self.run._lock:
            self.run._recorder.add(CARRIED_GRADIENT_KEY, step, left)

    def _image_every(self) -> int:
        """The given `image_every`, or IMAGES_PER_RUN over the run's planned steps."""
        if self.image_every is not None:
            return self.image_every
        total = self.run._total_steps
        return max(1, total // IMAGES_PER_RUN) if total else IMAGE_EVERY

    def close(self) -> None:
        if self._evaluated_in_train_mode:  # an evaluation after the last step
            with self.run._lock:
                step = max(0, self.run._last_step)
                self.run._recorder.add_host(EVAL_IN_TRAIN_MODE_KEY, step, float(self._evaluated_in_train_mode))
            self._evaluated_in_train_mode = 0
        if self._carry_handle is not None:
            self._carry_handle.remove()
            self._carry_handle = None
        for handle in self._handles:
            handle.remove()
        if self.histograms is not None:
            self.histograms.disarm()
