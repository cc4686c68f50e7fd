"""A Hugging Face `transformers` TrainerCallback: the run starts with training, the model is
watched at its optimizer's steps, what the Trainer logs (loss, learning_rate, grad_norm,
epoch) and evaluates (eval_loss, eval_accuracy, ...) is sent, and the run ends with training.

    trainer = Trainer(..., callbacks=[TrainwatchCallback(project="nlp")])

Evaluation metrics keep the Trainer's names; eval_loss and eval_accuracy are also sent as
val_loss and val_acc, the names the diagnosis reads.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

import trainwatch
from trainer.wire import SERIES_KEY
from trainwatch.run import Run
from trainwatch.watch import Watcher

RENAMED = {"learning_rate": "lr", "eval_loss": "val_loss", "eval_accuracy": "val_acc"}


class TrainwatchCallback(TrainerCallback):
    def __init__(
        self,
        project: str = "default",
        name: str = "",
        config: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        run: Run | None = None,
        **watch: Any,
    ):
        self.project, self.name, self.config, self.tags = project, name, config or {}, tags
        self.run = run
        self.watch_options = watch
        self.watcher: Watcher | None = None

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        optimizer: Any = None,
        **kwargs: Any,
    ) -> None:
        if self.run is None:
            config = {
                key: value
                for key, value in args.to_dict().items()
                if isinstance(value, (int, float, str, bool)) and key not in ("hub_token", "push_to_hub_token")
            }
            config.update(self.config)
            self.run = trainwatch.init(
                self.project, self.name or args.run_name or "", config, self.tags, total_steps=state.max_steps or None
            )
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        loader = kwargs.get("train_dataloader")
        if loader is not None and hasattr(loader, "__len__"):
            # optimizer steps an epoch: the loader's batches over the gradient accumulation
            per_epoch = max(1, math.ceil(len(loader) / max(1, args.gradient_accumulation_steps)))
            self.run.plan(total_steps=state.max_steps or None, steps_per_epoch=per_epoch)
        if model is not None and inner is not None:
            self.watcher = self.run.watch(model, inner, **self.watch_options)
            # the step being taken: measurements never collide when the Trainer logs every N steps
            self.watcher.step_of = lambda: state.global_step

    def _log(self, logs: dict[str, Any], state: TrainerState) -> None:
        assert self.run is not None
        values: dict[str, float] = {}
        for key, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                if key in RENAMED:
                    values[RENAMED[key]] = float(value)
                if SERIES_KEY.match(key) and key not in ("learning_rate",):
                    values[key] = float(value)
        if values:
            # global_step counts the optimizer steps done: the step that produced these is one less
            self.run.log(values, step=max(0, state.global_step - 1))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._log(logs or {}, state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.run is not None and self.run.should_stop:
            control.should_training_stop = True  # a cancel from the web page

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.run is not None:
            self.run.finish()
