"""A PyTorch Lightning callback: the run starts with fit, its model is watched, each training
step's loss, the metrics the module logs (self.log: val_acc, val_loss, train_acc, ...) and the
epochs are sent, and the run ends with fit (failed with the traceback if fit raises).

    trainer = lightning.Trainer(callbacks=[TrainwatchCallback(project="vision")])

The diagnosis reads the metrics named val_acc, val_loss and train_acc.
"""

from __future__ import annotations

import math
import traceback
from typing import Any

import lightning.pytorch as pl
import torch

import trainwatch
from trainer.wire import SERIES_KEY
from trainwatch.run import Run
from trainwatch.watch import Watcher


def _numbers(metrics: dict[str, Any]) -> dict[str, float | torch.Tensor]:
    """The metrics Trainwatch can store: one number each, under a key it accepts."""
    kept: dict[str, float | torch.Tensor] = {}
    for key, value in metrics.items():
        if not SERIES_KEY.match(key):
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            kept[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            kept[key] = float(value)
    return kept


class TrainwatchCallback(pl.Callback):
    def __init__(
        self,
        project: str = "default",
        name: str = "",
        config: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        run: Run | None = None,
        **watch: Any,
    ):
        """A run started at fit (or `run`, already started); `watch` goes to run.watch
        (ratio_every, histogram_every, loss, classes, ...)."""
        self.project, self.name, self.config, self.tags = project, name, config or {}, tags
        self.run = run
        self.watch_options = watch
        self.watcher: Watcher | None = None
        self._sent: dict[str, torch.Tensor] = {}  # the last step value sent of each metric

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is None:
            hparams = dict(pl_module.hparams) if pl_module.hparams else {}
            config = {**hparams, **(self.config)}
            steps = trainer.estimated_stepping_batches
            self.run = trainwatch.init(
                self.project,
                self.name or type(pl_module).__name__,
                config,
                self.tags,
                total_steps=int(steps) if math.isfinite(steps) else None,
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.run is not None
        # optimizer steps, from the trainer itself (batches over gradient accumulation)
        per_epoch = trainer.num_training_batches
        if isinstance(per_epoch, int) or (isinstance(per_epoch, float) and math.isfinite(per_epoch)):
            per_epoch = max(1, math.ceil(int(per_epoch) / trainer.accumulate_grad_batches))
            steps = trainer.estimated_stepping_batches
            self.run.plan(total_steps=int(steps) if math.isfinite(steps) else None, steps_per_epoch=per_epoch)
        # Lightning steps with a closure: the "before the update" measurements come from
        # on_before_optimizer_step, when the closure has computed the gradients
        self.watcher = self.run.watch(pl_module, trainer.optimizers[0], before="manual", **self.watch_options)
        self.watcher.step_of = lambda: trainer.global_step  # the step being taken

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.watcher is not None:
            self.watcher.before_update()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        assert self.run is not None
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        stepwise = self._logged_this_step(trainer)
        values = _numbers({**stepwise, **({"loss": loss} if isinstance(loss, torch.Tensor) else {})})
        if values:
            self.run.log(values, step=max(0, trainer.global_step - 1))
        if self.run.should_stop:
            trainer.should_stop = True  # a cancel from the web page

    def _logged_this_step(self, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
        """What the module's self.log(..., on_step=True) gave at this step, under the name it was
        logged with (on_step and on_epoch both make name_step and name_epoch in callback_metrics,
        which the diagnosis would not read). Lightning keeps each metric's last step value: a
        value is new when it is another tensor than the one sent before."""
        results = getattr(trainer, "_results", None)
        if results is None:
            return {}
        fresh: dict[str, torch.Tensor] = {}
        for _, metric in results.valid_items():
            value = metric._forward_cache if metric.meta.on_step else None
            if isinstance(value, torch.Tensor) and self._sent.get(metric.meta.name) is not value:
                self._sent[metric.meta.name] = value
                fresh[metric.meta.name] = value
        return fresh

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.run is not None
        metrics = _numbers(
            {
                key.removesuffix("_epoch"): value
                for key, value in trainer.callback_metrics.items()
                if not key.endswith("_step")
            }
        )
        self.run.log({**metrics, "epoch": trainer.current_epoch + 1}, step=max(0, trainer.global_step - 1))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is not None:
            self.run.finish()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.run is not None:
            if isinstance(exception, KeyboardInterrupt):
                self.run.finish("cancelled", "interrupted (Ctrl-C)")
            else:
                self.run.finish(
                    "failed", f"{type(exception).__name__}: {exception}", "".join(traceback.format_exception(exception))
                )
