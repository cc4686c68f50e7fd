"""Zoo runs trained by the libraries teams use, through their Trainwatch callbacks: a Lightning
resnet18 with OneCycle, a Lightning network that diverges, a small BERT with warmup under the
Hugging Face Trainer. What happened is what is stored: the learning rate of every step, each
planned measurement once at its own step, a divergence as `diverged` with every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import ended
from tests.zoo import models
from tests.zoo.conftest import findings_at_cuts, loud
from tracker.core.storage import read_series
from tracker.models import Run
from trainer.config import InstrumentConfig

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
lightning = pytest.importorskip("lightning", reason="the integrations extra is not installed")


class Classifier(lightning.LightningModule):
    """Any network under SGD (momentum 0.9) with OneCycle or a constant rate; records the rate
    each step trained with, as the scheduler set it."""

    def __init__(self, network: nn.Module, lr: float, onecycle: bool):
        super().__init__()
        self.network, self.lr, self.onecycle = network, lr, onecycle
        self.rates: list[float] = []

    def training_step(self, batch, index):
        x, y = batch
        scores = self.network(x)
        self.rates.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        self.log("train_acc", (scores.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return F.cross_entropy(scores, y)

    def validation_step(self, batch, index):
        x, y = batch
        scores = self.network(x)
        self.log("val_loss", F.cross_entropy(scores, y), on_epoch=True)
        self.log("val_acc", (scores.argmax(1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)
        if not self.onecycle:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, self.lr, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def fit_lightning(name: str, module: Classifier, task: models.Task, epochs: int, **watch) -> Run:
    from trainwatch.integrations.lightning import TrainwatchCallback

    def loader(x, y, shuffle):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=shuffle)

    callback = TrainwatchCallback(project="zoo", name=name, classes=task.classes, loss="cross_entropy", **watch)
    trainer = lightning.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[callback],
    )
    trainer.fit(module, loader(task.x_train, task.y_train, True), loader(task.x_val, task.y_val, False))
    return ended(callback.run.id)


def planned_ratio_steps(total: int, config: InstrumentConfig | None = None) -> list[int]:
    config = config or InstrumentConfig()
    return [step for step in range(total) if config.measures_parameters(step)]


def test_a_lightning_resnet_with_onecycle_is_quiet_and_stored_step_by_step(client_env):
    torch.manual_seed(0)
    module = Classifier(models.resnet18(), lr=0.05, onecycle=True)
    run = fit_lightning("lightning resnet18 onecycle", module, models.images(), epochs=3)
    assert run.status == "succeeded" and (run.total_steps, run.steps_per_epoch) == (48, 16)
    for cut, findings in findings_at_cuts("lightning resnet18 onecycle", run).items():
        assert not loud(findings), f"at {cut:.0%}: {loud(findings)}"
    steps, rates = read_series(run.pk, "lr")
    assert steps.tolist() == list(range(48))
    np.testing.assert_allclose(rates, module.rates)  # the schedule, step by step
    assert run.context["lr"] == pytest.approx(max(module.rates))  # OneCycle's peak, not its start
    ratio_steps, _ = read_series(run.pk, "update_ratio/network.layer1.0.conv1.weight")
    assert ratio_steps.tolist() == planned_ratio_steps(48)  # each planned measurement, once


def test_a_lightning_run_whose_loss_turns_nan_ends_diverged_with_every_step(client_env):
    torch.manual_seed(0)
    task = models.images(count=256)
    network = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 64), nn.ReLU(), nn.Linear(64, models.CLASSES))
    run = fit_lightning("lightning mlp lr 10", Classifier(network, lr=10.0, onecycle=False), task, epochs=3)
    assert run.status == "diverged" and "the loss became nan" in run.message
    steps, losses = read_series(run.pk, "loss")
    assert steps.tolist() == list(range(run.total_steps)) and not np.isfinite(losses[-1])
    findings = findings_at_cuts("lightning mlp lr 10", run)[1.0]
    assert findings[0][0] == "divergence"
    # the rules read what came before the divergence: no plateau "by step 0" from exploded values
    assert "loss_plateau" not in [rule for rule, _, _ in findings]


def test_a_hugging_face_bert_with_warmup_is_quiet_and_its_rate_follows_the_schedule(client_env, tmp_path):
    transformers = pytest.importorskip("transformers", reason="the integrations extra is not installed")
    from trainwatch.integrations.transformers import TrainwatchCallback

    config = transformers.BertConfig(
        vocab_size=models.VOCABULARY,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=4,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)  # random weights, nothing downloaded
    task = models.sequences()

    def examples(x, y):
        return [{"input_ids": t, "attention_mask": torch.ones_like(t), "labels": label} for t, label in zip(x, y)]

    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=4,
        per_device_train_batch_size=32,
        learning_rate=2e-3,
        warmup_steps=7,
        lr_scheduler_type="linear",
        logging_steps=10,
        eval_strategy="epoch",
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        run_name="bert warmup",
    )
    trainer = transformers.Trainer(
        model=model,
        args=arguments,
        train_dataset=examples(task.x_train, task.y_train),
        eval_dataset=examples(task.x_val, task.y_val),
        callbacks=[TrainwatchCallback(project="zoo", classes=4, loss="cross_entropy")],
    )
    trainer.train()
    run = ended(Run.objects.get(kind="external", name="bert warmup").pk)
    assert run.status == "succeeded" and (run.total_steps, run.steps_per_epoch) == (64, 16)
    for cut, findings in findings_at_cuts("hugging face bert warmup", run).items():
        assert not loud(findings), f"at {cut:.0%}: {loud(findings)}"
    warmup = 7
    expected = [2e-3 * (s / warmup if s < warmup else (64 - s) / (64 - warmup)) for s in range(64)]
    steps, rates = read_series(run.pk, "lr")
    assert steps.tolist() == list(range(64))
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-12)
    assert run.context["lr"] == pytest.approx(2e-3) and run.context["lr_last"] == pytest.approx(expected[-1])
    ratio_steps, _ = read_series(run.pk, "update_ratio/bert.encoder.layer.0.attention.self.query.weight")
    assert ratio_steps.tolist() == planned_ratio_steps(64)
