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
        # Lightning steps with a closure: the "before the update" measurements come from
        # on_before_optimizer_step, when the closure has computed the gradients
        self.watcher = self.run.watch(pl_module, trainer.optimizers[0], before="manual", **self.watch_options)

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
        values = _numbers({"loss": loss} if isinstance(loss, torch.Tensor) else {})
        if values:
            self.run.log(values, step=max(0, trainer.global_step - 1))
        if self.run.should_stop:
            trainer.should_stop = True  # a cancel from the web page

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.run is not None
        metrics = _numbers(dict(trainer.callback_metrics))
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
