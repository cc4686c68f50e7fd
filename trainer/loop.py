"""The training loop: `train` at the end of this file, read top to bottom, calls the phases of
`_Training` (set up, restore, a step, a hand-off, a checkpoint, an epoch's end).

Host synchronisation happens only at a hand-off (about every
`handoff_seconds`, and at each epoch end), where the recorder copies every
pending measurement to the host at once and the sink is asked whether to stop;
and once an epoch for the validation numbers the schedule and the summary need.

Checkpoints (trainer.checkpoint) are taken at a hand-off, so that everything measured
before the checkpoint has reached the sink before the checkpoint does: a run resumed
from it logs every step after it once, and none before it again.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from trainer import checkpoint
from trainer.config import RunConfig
from trainer.data import load_dataset
from trainer.instrument import (
    DeviceRecorder,
    HistogramProbe,
    ParameterProbe,
    filter_roughness,
    first_layer_tiles,
    parameter_kinds,
    tile_grid,
)
from trainer.models import build_loss, build_model
from trainer.optim import build_optimizer
from trainer.schedules import Schedule
from trainer.sink import ImageRecord, Progress, RunInfo, Sink
from trainer.tensor_names import ROUGHNESS_KEY

# A loss this many times its first value means the run has blown up even if it
# is still finite (e.g. cross-entropy of 23 against ln(10) = 2.3 at the start).
EXPLOSION_FACTOR = 10.0
EXPLOSION_WINDOW = 20
# Train accuracy is measured each epoch on a fixed training subset as large as the
# validation set (at most this many), so both accuracies are equally noisy and the
# gap between them reads fairly; a full pass would cost more than the epoch on small sets.
TRAIN_EVAL_LIMIT = 10_000
# Evaluation in batches of this many examples, so that large data sets fit in memory.
EVAL_BATCH = 4096


@dataclass(frozen=True)
class RunResult:
    status: str  # succeeded | diverged | cancelled | stopped (early, by the sink's reason)
    message: str
    steps: int
    epochs: int
    device: str
    final_loss: float | None
    best_val_accuracy: float | None
    final_train_accuracy: float | None
    final_val_accuracy: float | None
    seconds: float


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' was requested but this worker has no CUDA device")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def mixed_precision(
    config: RunConfig, device: torch.device
) -> tuple[contextlib.AbstractContextManager, torch.amp.GradScaler, str]:
    """The forward pass's autocast, the gradient scaler (enabled for float16 only: bfloat16 has
    float32's range, so its gradients need no scaling) and words for the run's message."""
    off = torch.amp.GradScaler("cuda", enabled=False)
    if config.precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext(), off, "float32"
    has_bf16 = torch.cuda.is_bf16_supported()
    if config.precision == "bf16" and not has_bf16:
        raise RuntimeError(
            f"precision: bf16 needs a GPU with bfloat16 (compute capability 8.0 or newer); "
            f"{torch.cuda.get_device_name(device)} has none: use amp or fp16"
        )
    dtype = torch.bfloat16 if config.precision == "bf16" or (config.precision == "amp" and has_bf16) else torch.float16
    autocast = torch.autocast(device_type="cuda", dtype=dtype)
    if dtype == torch.bfloat16:
        return autocast, off, "bfloat16 mixed precision"
    return autocast, torch.amp.GradScaler("cuda"), "float16 mixed precision with a gradient scaler"


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Scores in evaluation mode (dropout off, batch-norm running statistics), in chunks."""
    was_training = model.training
    model.eval()
    scores = torch.cat([model(x[start : start + EVAL_BATCH]).float() for start in range(0, len(x), EVAL_BATCH)])
    model.train(was_training)
    return scores


def evaluate(
    model: torch.nn.Module, loss_fn: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy, mean loss) as device tensors; the caller decides when to sync."""
    scores = predict(model, x)
    with torch.no_grad():
        return (scores.argmax(dim=1) == y).float().mean(), loss_fn(scores, y)


def _diverged_at(steps: np.ndarray, losses: np.ndarray, first_loss: float) -> tuple[int, str] | None:
    """A non-finite loss, or an explosion: the moving median of EXPLOSION_WINDOW losses
    above EXPLOSION_FACTOR x the first loss (a one-batch spike is not a divergence)."""
    bad = ~np.isfinite(losses)
    if bad.any():
        index = int(np.argmax(bad))
        return int(steps[index]), f"loss became {losses[index]} at step {steps[index]}"
    limit = EXPLOSION_FACTOR * max(first_loss, 1e-12)
    # a window's median is above the limit only if half its losses are: none is, on most hand-offs
    if len(losses) < EXPLOSION_WINDOW or losses.max() <= limit:
        return None
    medians = np.median(np.lib.stride_tricks.sliding_window_view(losses, EXPLOSION_WINDOW), axis=1)
    high = medians > limit
    if not high.any():
        return None
    index = int(np.argmax(high)) + EXPLOSION_WINDOW - 1
    return int(steps[index]), (
        f"the median of {EXPLOSION_WINDOW} losses reached {medians[index - EXPLOSION_WINDOW + 1]:.4g} "
        f"at step {steps[index]}, over {EXPLOSION_FACTOR:g}x the first loss {first_loss:.4g}"
    )


class _Training:
    """One run's parts (data, model, optimizer, schedule, probes) and where it stands; `train`
    below calls its phases in order."""

    def __init__(self, config: RunConfig, sink: Sink, handoff_seconds: float, checkpoint_seconds: float) -> None:
        self.config, self.sink = config, sink
        self.handoff_seconds, self.checkpoint_seconds = handoff_seconds, checkpoint_seconds
        self.started = time.monotonic()
        torch.manual_seed(config.seed)
        self.device = device = resolve_device(config.device)
        self.data = data = load_dataset(config.data, config.data_seed).to(device)
        self.model = build_model(config.model, data.num_features, data.num_classes, data.image_shape).to(device)
        self.loss_fn = build_loss(config.loss)
        self.optimizer = build_optimizer(config.optimizer, self.model.parameters())
        named = [(name, param) for name, param in self.model.named_parameters()]
        self.params = [param for _, param in named]
        self.n_train = len(data.y_train)
        self.steps_per_epoch = math.ceil(self.n_train / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.schedule = Schedule(config.schedule, self.optimizer, self.steps_per_epoch, config.epochs)
        self.instrument = config.instrument
        self.parameters = ParameterProbe(named)
        self.histograms = HistogramProbe(self.model, named, self.instrument.histogram_bins)
        self.recorder = DeviceRecorder()
        self.autocast, self.scaler, self.precision_words = mixed_precision(config, device)
        # coupled L2 (the notes' lambda/2 * ||w||^2) is part of the objective: log it beside the data loss
        self.l2 = (
            config.optimizer.weight_decay
            if not (config.optimizer.decoupled_weight_decay or config.optimizer.name == "adamw")
            else 0.0
        )
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        # one forward pass an epoch over the fixed training subset followed by the validation set
        self.n_train_eval = min(self.n_train, len(data.y_val), TRAIN_EVAL_LIMIT)
        self.x_eval = torch.cat([data.x_train[: self.n_train_eval], data.x_val])
        self.y_eval = torch.cat([data.y_train[: self.n_train_eval], data.y_val])
        # (2, n) rows that pick the train subset's and the validation set's answers: both counts of
        # correct answers in one product (whole numbers, exact in float32), where slicing and
        # averaging each part costs an op a piece; divided on the host
        self.parts = torch.zeros(2, len(self.y_eval), device=device)
        self.parts[0, : self.n_train_eval] = 1.0
        self.parts[1, self.n_train_eval :] = 1.0

        self.step = 0
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.best_val: float | None = None
        self.train_acc: float | None = None
        self.val_acc: float | None = None
        self.last_image_step: int | None = None
        self.start_epoch, self.start_batch, self.elapsed_before = 0, 0, 0.0
        self.last_handoff = self.last_checkpoint = time.monotonic()
        # the generator's state at the start of the current epoch: a checkpoint resumes its order
        self.epoch_generator_state = self.generator.get_state()

    def restore(self, resume: bytes) -> None:
        saved = checkpoint.load(resume)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        if saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        checkpoint.restore_rng(saved)
        self.generator.set_state(saved["epoch_generator"])
        self.epoch_generator_state = self.generator.get_state()
        state: checkpoint.LoopState = saved["loop"]
        self.step, self.start_epoch, self.start_batch = state.step, state.epoch, state.batch
        self.elapsed_before = state.elapsed
        self.first_loss, self.last_loss, self.best_val = state.first_loss, state.last_loss, state.best_val
        self.train_acc, self.val_acc, self.last_image_step = state.train_acc, state.val_acc, state.last_image_step
        self.last_checkpoint = time.monotonic()

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def announce(self) -> None:
        self.sink.start(
            RunInfo(
                str(self.device),
                self.total_steps,
                self.steps_per_epoch,
                self.config.epochs,
                self.parameters.names,
                self.step,
                classes=self.data.num_classes,
                parameter_kinds=parameter_kinds(self.model),
            )
        )
        self.model.train()

    def batches(self, epoch: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(batch number, inputs, labels) of one epoch in its shuffled order; a resumed epoch
        starts at the batch its checkpoint was taken before."""
        size = self.config.batch_size
        order = torch.randperm(self.n_train, device=self.device, generator=self.generator)
        first = self.start_batch if epoch == self.start_epoch else 0
        for number, start in enumerate(range(first * size, self.n_train, size), start=first):
            index = order[start : start + size]
            yield number, self.data.x_train[index], self.data.y_train[index]

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Forward, backward, the optimizer's step, and what this step measures (on the device)."""
        step, instrument, recorder, scaler = self.step, self.instrument, self.recorder, self.scaler
        measure_histograms = instrument.measures_histograms(step)
        measure_parameters = instrument.measures_parameters(step)

        if measure_histograms:
            self.histograms.arm()
        with self.autocast:
            loss = self.loss_fn(self.model(x).float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if scaler.is_enabled() and (measure_histograms or measure_parameters):
            scaler.unscale_(self.optimizer)  # the histograms and norms see the true gradients
        if measure_histograms:
            self.histograms.collect(recorder, step, parameters=instrument.measures_parameter_histograms(step))

        recorder.add("loss", step, loss.detach())
        if self.l2:  # with the weights this step's forward pass used
            with torch.no_grad():
                norms = torch.stack(torch._foreach_norm(list(self.params)))
                recorder.add("loss_reg", step, 0.5 * self.l2 * norms.square().sum())

        # the step, measuring the update actually applied every K steps
        if measure_parameters:
            self.parameters.before_step()
        lr = self.schedule.lr  # the rate this step uses
        scaler.step(self.optimizer)  # float16: skipped when a gradient is inf/NaN (the update ratio reads 0)
        scaler.update()
        if measure_parameters:
            self.parameters.after_step(recorder, step)
        recorder.add_host("lr", step, lr)
        self.schedule.after_iteration()
        self.step += 1

    def handoff_due(self) -> bool:
        return time.monotonic() - self.last_handoff >= self.handoff_seconds

    def checkpoint_due_in_epoch(self) -> bool:
        every = self.config.checkpoint_every
        return bool(every) and self.step % every == 0 and self.checkpoint_waited()

    def checkpoint_due_at_epoch_end(self, epoch: int) -> bool:
        return epoch == self.config.epochs - 1 or (not self.config.checkpoint_every and self.checkpoint_waited())

    def checkpoint_waited(self) -> bool:
        return time.monotonic() - self.last_checkpoint >= self.checkpoint_seconds

    def handoff(self, epochs_done: int) -> RunResult | None:
        """Copy pending measurements to the host (one sync), check divergence, ask about stopping."""
        sink = self.sink
        batch, records = self.recorder.drain()
        if records:
            sink.histograms(records)
        if "loss" in batch:
            loss_steps, losses = batch["loss"]
            if self.first_loss is None and len(losses):
                self.first_loss = float(losses[0])
            self.last_loss = float(losses[-1])
            verdict = _diverged_at(loss_steps, losses, self.first_loss or 0.0)
            if verdict is not None:
                sink.scalars(batch)
                _, detail = verdict
                lr = self.config.optimizer.lr
                return self.finish("diverged", f"{detail}: lower the learning rate (optimizer.lr={lr:g})", epochs_done)
        sink.scalars(batch)
        sink.progress(Progress(epochs_done, self.step, self.total_steps))
        self.last_handoff = time.monotonic()
        if sink.should_stop():
            reason = sink.stop_reason()
            if reason:  # e.g. a study's early stopping
                return self.finish("stopped", reason, epochs_done)
            return self.finish("cancelled", f"cancel requested; stopped at step {self.step}", epochs_done)
        return None

    def save_checkpoint(self, epoch: int, batch: int) -> None:
        state = checkpoint.LoopState(
            self.step,
            epoch,
            batch,
            self.elapsed(),
            self.first_loss,
            self.last_loss,
            self.best_val,
            self.train_acc,
            self.val_acc,
            self.last_image_step,
        )
        blob = checkpoint.save(
            self.model,
            self.optimizer,
            self.schedule.state_dict(),
            self.epoch_generator_state,
            state,
            self.scaler.state_dict(),
        )
        self.sink.checkpoint(self.step, epoch, blob)
        self.last_checkpoint = time.monotonic()

    def end_epoch(self, epoch: int) -> None:
        """Accuracies on a fixed train subset and on the validation set, the first layer's image
        when due, and the schedule's epoch step."""
        scores = predict(self.model, self.x_eval)
        with torch.no_grad():
            hits = torch.mv(self.parts, (scores.argmax(dim=1) == self.y_eval).float())
            val_loss_t = self.loss_fn(scores[self.n_train_eval :], self.data.y_val)
        train_hits, val_hits, val_loss = torch.cat([hits, val_loss_t.view(1)]).tolist()  # sync: once an epoch
        self.train_acc, self.val_acc = train_hits / self.n_train_eval, val_hits / len(self.data.y_val)
        self.best_val = self.val_acc if self.best_val is None else max(self.best_val, self.val_acc)
        last_step = self.step - 1
        for key, value in (
            ("train_acc", self.train_acc),
            ("val_acc", self.val_acc),
            ("val_loss", val_loss),
            ("epoch", float(epoch + 1)),
            ("wall_time", self.elapsed()),
        ):
            self.recorder.add_host(key, last_step, value)
        self.first_layer_image(epoch, last_step)
        self.schedule.after_epoch(val_loss)
        self.epoch_generator_state = self.generator.get_state()  # the next epoch starts from here

    def first_layer_image(self, epoch: int, last_step: int) -> None:
        due = (
            self.last_image_step is None
            or epoch == self.config.epochs - 1
            or last_step - self.last_image_step >= self.instrument.histogram_every
        )
        if not (due and self.instrument.first_layer_images and self.data.image_shape is not None):
            return
        tiles = first_layer_tiles(self.model, self.data.image_shape)
        if tiles is None:
            return
        roughness = filter_roughness(tiles)
        if roughness is not None:
            self.recorder.add(ROUGHNESS_KEY, last_step, roughness)
        self.sink.images([ImageRecord("first_layer", last_step, tile_grid(tiles.cpu().numpy()))])
        self.last_image_step = last_step

    def finish(self, status: str, message: str, epochs_done: int) -> RunResult:
        return RunResult(
            status,
            message,
            self.step,
            epochs_done,
            str(self.device),
            self.last_loss,
            self.best_val,
            self.train_acc,
            self.val_acc,
            self.elapsed(),
        )


def train(
    config: RunConfig,
    sink: Sink,
    handoff_seconds: float = 0.5,
    resume: bytes | None = None,
    checkpoint_seconds: float = 60.0,
) -> RunResult:
    """Train to the end, or from the checkpoint `resume` on. Checkpoints go to the sink at each
    epoch end (or every config.checkpoint_every steps), at most one per `checkpoint_seconds`,
    and always after the last epoch."""
    run = _Training(config, sink, handoff_seconds, checkpoint_seconds)
    if resume is not None:
        run.restore(resume)
    run.announce()
    for epoch in range(run.start_epoch, config.epochs):
        for batch, x, y in run.batches(epoch):
            run.train_step(x, y)
            checkpoint_due = run.checkpoint_due_in_epoch()
            if checkpoint_due or run.handoff_due():
                if (ended := run.handoff(epoch)) is not None:
                    return ended
                if checkpoint_due:
                    run.save_checkpoint(epoch, batch + 1)

        run.end_epoch(epoch)
        checkpoint_due = run.checkpoint_due_at_epoch_end(epoch)
        # epochs shorter than a hand-off interval go out with the next one, not one each, unless the
        # sink already wants the run stopped: a flush outside a hand-off (an image's, a checkpoint's)
        # can judge a study's early stopping, which a short run would otherwise only see at its end
        if checkpoint_due or sink.should_stop() or run.handoff_due():
            if (ended := run.handoff(epoch + 1)) is not None:
                return ended
            if checkpoint_due:
                run.save_checkpoint(epoch + 1, 0)

    # resumed from the checkpoint of the last epoch's end
    if run.start_epoch >= config.epochs and (ended := run.handoff(config.epochs)) is not None:
        return ended
    words = f"trained {config.epochs} epochs ({run.step} steps) on {run.device} in {run.precision_words}"
    return run.finish("succeeded", words, config.epochs)
