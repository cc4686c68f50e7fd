"""The training loop: one function, read top to bottom.

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
from dataclasses import dataclass

import numpy as np
import torch

from trainer import checkpoint
from trainer.config import RunConfig
from trainer.data import Dataset, load_dataset
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
    started = time.monotonic()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    data: Dataset = load_dataset(config.data, config.data_seed).to(device)
    model = build_model(config.model, data.num_features, data.num_classes, data.image_shape).to(device)
    loss_fn = build_loss(config.loss)
    optimizer = build_optimizer(config.optimizer, model.parameters())
    named = [(name, param) for name, param in model.named_parameters()]
    n_train = len(data.y_train)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    schedule = Schedule(config.schedule, optimizer, steps_per_epoch, config.epochs)
    instrument = config.instrument
    parameters = ParameterProbe(named)
    histograms = HistogramProbe(model, named, instrument.histogram_bins)
    recorder = DeviceRecorder()
    autocast, scaler, precision_words = mixed_precision(config, device)
    # coupled L2 (the notes' lambda/2 * ||w||^2) is part of the objective: log it beside the data loss
    l2 = (
        config.optimizer.weight_decay
        if not (config.optimizer.decoupled_weight_decay or config.optimizer.name == "adamw")
        else 0.0
    )
    params = [param for _, param in named]

    generator = torch.Generator(device=device).manual_seed(config.seed)
    # one forward pass an epoch over the fixed training subset followed by the validation set
    n_train_eval = min(n_train, len(data.y_val), TRAIN_EVAL_LIMIT)
    x_eval = torch.cat([data.x_train[:n_train_eval], data.x_val])
    y_eval = torch.cat([data.y_train[:n_train_eval], data.y_val])
    # (2, n) rows that pick the train subset's and the validation set's answers: both counts of
    # correct answers in one product (whole numbers, exact in float32), where slicing and
    # averaging each part costs an op a piece; divided on the host
    parts = torch.zeros(2, len(y_eval), device=device)
    parts[0, :n_train_eval] = 1.0
    parts[1, n_train_eval:] = 1.0

    step = 0
    first_loss: float | None = None
    last_loss: float | None = None
    best_val: float | None = None
    train_acc: float | None = None
    val_acc: float | None = None
    last_handoff = time.monotonic()
    last_image_step: int | None = None
    start_epoch, start_batch, elapsed_before = 0, 0, 0.0
    if resume is not None:
        saved = checkpoint.load(resume)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        checkpoint.restore_rng(saved)
        generator.set_state(saved["epoch_generator"])
        loop_state: checkpoint.LoopState = saved["loop"]
        step, start_epoch, start_batch = loop_state.step, loop_state.epoch, loop_state.batch
        elapsed_before = loop_state.elapsed
        first_loss, last_loss, best_val = loop_state.first_loss, loop_state.last_loss, loop_state.best_val
        train_acc, val_acc, last_image_step = loop_state.train_acc, loop_state.val_acc, loop_state.last_image_step
    last_checkpoint = time.monotonic()
    epoch_generator_state = generator.get_state()

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - started

    def save_checkpoint(epoch: int, batch: int) -> None:
        nonlocal last_checkpoint
        loop_now = checkpoint.LoopState(
            step, epoch, batch, elapsed(), first_loss, last_loss, best_val, train_acc, val_acc, last_image_step
        )
        sink.checkpoint(
            step,
            epoch,
            checkpoint.save(
                model, optimizer, schedule.state_dict(), epoch_generator_state, loop_now, scaler.state_dict()
            ),
        )
        last_checkpoint = time.monotonic()

    def handoff(epochs_done: int) -> RunResult | None:
        """Copy pending measurements to the host (one sync), check divergence, ask about stopping."""
        nonlocal first_loss, last_loss, last_handoff
        batch, records = recorder.drain()
        if records:
            sink.histograms(records)
        if "loss" in batch:
            loss_steps, losses = batch["loss"]
            if first_loss is None and len(losses):
                first_loss = float(losses[0])
            last_loss = float(losses[-1])
            verdict = _diverged_at(loss_steps, losses, first_loss or 0.0)
            if verdict is not None:
                sink.scalars(batch)
                _, detail = verdict
                return finish(
                    "diverged", f"{detail}: lower the learning rate (optimizer.lr={config.optimizer.lr:g})", epochs_done
                )
        sink.scalars(batch)
        sink.progress(Progress(epochs_done, step, total_steps))
        last_handoff = time.monotonic()
        if sink.should_stop():
            reason = sink.stop_reason()
            if reason:  # e.g. a study's early stopping
                return finish("stopped", reason, epochs_done)
            return finish("cancelled", f"cancel requested; stopped at step {step}", epochs_done)
        return None

    def finish(status: str, message: str, epochs_done: int) -> RunResult:
        return RunResult(
            status, message, step, epochs_done, str(device), last_loss, best_val, train_acc, val_acc, elapsed()
        )

    sink.start(
        RunInfo(
            str(device),
            total_steps,
            steps_per_epoch,
            config.epochs,
            parameters.names,
            step,
            classes=data.num_classes,
            parameter_kinds=parameter_kinds(model),
        )
    )
    model.train()
    for epoch in range(start_epoch, config.epochs):
        # epoch_generator_state is the generator's state here: taken before the loop and at each epoch end
        order = torch.randperm(n_train, device=device, generator=generator)
        first_batch = start_batch if epoch == start_epoch else 0
        for batch_start in range(first_batch * config.batch_size, n_train, config.batch_size):
            index = order[batch_start : batch_start + config.batch_size]
            x, y = data.x_train[index], data.y_train[index]
            measure_histograms = instrument.measures_histograms(step)
            measure_parameters = instrument.measures_parameters(step)

            # forward / backward
            if measure_histograms:
                histograms.arm()
            with autocast:
                loss = loss_fn(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if scaler.is_enabled() and (measure_histograms or measure_parameters):
                scaler.unscale_(optimizer)  # the histograms and norms see the true gradients
            if measure_histograms:
                histograms.collect(recorder, step, parameters=instrument.measures_parameter_histograms(step))

            recorder.add("loss", step, loss.detach())
            if l2:  # with the weights this step's forward pass used
                with torch.no_grad():
                    recorder.add(
                        "loss_reg", step, 0.5 * l2 * torch.stack(torch._foreach_norm(list(params))).square().sum()
                    )

            # step, measuring the update actually applied every K steps
            if measure_parameters:
                parameters.before_step()
            lr = schedule.lr  # the rate this step uses
            scaler.step(optimizer)  # float16: skipped when a gradient is inf/NaN (the update ratio reads 0)
            scaler.update()
            if measure_parameters:
                parameters.after_step(recorder, step)
            recorder.add_host("lr", step, lr)
            schedule.after_iteration()
            step += 1

            checkpoint_due = (
                config.checkpoint_every
                and step % config.checkpoint_every == 0
                and time.monotonic() - last_checkpoint >= checkpoint_seconds
            )
            if checkpoint_due or time.monotonic() - last_handoff >= handoff_seconds:
                ended = handoff(epoch)
                if ended is not None:
                    return ended
                if checkpoint_due:
                    save_checkpoint(epoch, batch_start // config.batch_size + 1)

        # end of epoch: accuracies on a fixed train subset and on the validation set
        scores = predict(model, x_eval)
        with torch.no_grad():
            hits = torch.mv(parts, (scores.argmax(dim=1) == y_eval).float())
            val_loss_t = loss_fn(scores[n_train_eval:], data.y_val)
        train_hits, val_hits, val_loss = torch.cat([hits, val_loss_t.view(1)]).tolist()  # sync: once an epoch
        train_acc, val_acc = train_hits / n_train_eval, val_hits / len(data.y_val)
        best_val = val_acc if best_val is None else max(best_val, val_acc)
        last_step = step - 1
        for key, value in (
            ("train_acc", train_acc),
            ("val_acc", val_acc),
            ("val_loss", val_loss),
            ("epoch", float(epoch + 1)),
            ("wall_time", elapsed()),
        ):
            recorder.add_host(key, last_step, value)
        image_due = (
            last_image_step is None
            or epoch == config.epochs - 1
            or last_step - last_image_step >= instrument.histogram_every
        )
        if instrument.first_layer_images and data.image_shape is not None and image_due:
            tiles = first_layer_tiles(model, data.image_shape)
            if tiles is not None:
                roughness = filter_roughness(tiles)
                if roughness is not None:
                    recorder.add(ROUGHNESS_KEY, last_step, roughness)
                sink.images([ImageRecord("first_layer", last_step, tile_grid(tiles.cpu().numpy()))])
                last_image_step = last_step
        schedule.after_epoch(val_loss)
        epoch_generator_state = generator.get_state()  # the next epoch starts from here
        checkpoint_due = epoch == config.epochs - 1 or (
            not config.checkpoint_every and time.monotonic() - last_checkpoint >= checkpoint_seconds
        )
        # epochs shorter than a hand-off interval go out with the next one, not one each, unless the
        # sink already wants the run stopped: a flush outside a hand-off (an image's, a checkpoint's)
        # can judge a study's early stopping, which a short run would otherwise only see at its end
        if checkpoint_due or sink.should_stop() or time.monotonic() - last_handoff >= handoff_seconds:
            ended = handoff(epoch + 1)
            if ended is not None:
                return ended
            if checkpoint_due:
                save_checkpoint(epoch + 1, 0)

    if start_epoch >= config.epochs:  # resumed from the checkpoint of the last epoch's end
        ended = handoff(config.epochs)
        if ended is not None:
            return ended
    return finish(
        "succeeded", f"trained {config.epochs} epochs ({step} steps) on {device} in {precision_words}", config.epochs
    )
