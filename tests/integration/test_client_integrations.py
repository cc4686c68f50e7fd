"""The Lightning and Transformers callbacks, end to end: a tiny real model trained by each
library in this process, its client sending to a gunicorn server on the test database."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import ended
from tracker.core.storage import read_series
from tracker.models import Histogram, Run

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def digits(count: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(count, 16, generator=generator)
    return x, (x[:, :4].sum(dim=1) > 0).long()  # a rule the model can learn


def test_the_lightning_callback_tracks_a_fit(client_env):
    lightning = pytest.importorskip("lightning", reason="the integrations extra is not installed")
    from trainwatch.integrations.lightning import TrainwatchCallback

    class Classifier(lightning.LightningModule):
        def __init__(self, lr: float = 0.05):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 2))

        def training_step(self, batch, index):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_acc", (self.net(x).argmax(1) == y).float().mean(), on_epoch=True, on_step=False)
            self.log("train_loss", loss, on_step=True, on_epoch=True)  # train_loss_step and train_loss_epoch
            return loss

        def validation_step(self, batch, index):
            x, y = batch
            scores = self.net(x)
            self.log("val_loss", nn.functional.cross_entropy(scores, y), on_epoch=True)
            self.log("val_acc", (scores.argmax(1) == y).float().mean(), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)

    x, y = digits()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    trainer = lightning.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            TrainwatchCallback(
                project="lightning", ratio_every=2, histogram_every=8, dense_steps=0, classes=2, loss="cross_entropy"
            )
        ],
    )
    trainer.fit(Classifier(), loader, loader)
    run = ended(Run.objects.get(kind="external").pk)
    assert run.status == "succeeded" and run.name == "Classifier" and run.config["lr"] == 0.05
    assert run.context["optimizer"] == "momentum" and run.context["activation"] == "tanh"
    np.testing.assert_array_equal(read_series(run.pk, "loss")[0], np.arange(24))  # 8 steps x 3 epochs
    assert read_series(run.pk, "val_acc")[0].tolist() == [7, 15, 23] and read_series(run.pk, "epoch")[1].tolist() == [
        1,
        2,
        3,
    ]
    steps, ratios = read_series(run.pk, "update_ratio/net.0.weight")
    assert steps.tolist() == list(range(0, 24, 2)) and np.all(ratios > 0)
    # measured when Lightning's closure had computed the gradients, not before
    assert np.all(read_series(run.pk, "grad_norm/net.0.weight")[1] > 0)
    assert Histogram.objects.filter(run=run, key="activation/net.1").count() == 3  # steps 0, 8, 16
    assert read_series(run.pk, "saturated_fraction/net.1")[0].tolist() == [0, 8, 16]
    assert run.total_steps == 24 and run.steps_done == 24 and run.steps_per_epoch == 8
    # logged on_step and on_epoch: every step under its own name, not as train_loss_step / _epoch
    assert read_series(run.pk, "train_loss")[0].tolist() == list(range(24))
    assert not run.series.filter(key__in=["train_loss_step", "train_loss_epoch"]).exists()


def test_the_transformers_callback_tracks_a_trainer(client_env, tmp_path):
    transformers = pytest.importorskip("transformers", reason="the integrations extra is not installed")
    from trainwatch.integrations.transformers import TrainwatchCallback

    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)  # random weights, nothing downloaded
    tokens = torch.randint(0, 100, (64, 12))
    labels = (tokens[:, 0] % 2).long()
    examples = [
        {"input_ids": t, "attention_mask": torch.ones_like(t), "labels": label} for t, label in zip(tokens, labels)
    ]

    def accuracy(prediction) -> dict[str, float]:
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=20,
        per_device_train_batch_size=8,
        learning_rate=5e-4,
        logging_steps=5,
        eval_strategy="steps",
        eval_steps=10,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        run_name="tiny bert",
    )
    trainer = transformers.Trainer(
        model=model,
        args=arguments,
        train_dataset=examples,
        eval_dataset=examples[:32],
        compute_metrics=accuracy,
        callbacks=[TrainwatchCallback(project="nlp", ratio_every=5, histogram_every=10)],
    )
    trainer.train()
    run = ended(Run.objects.get(kind="external").pk)
    assert run.status == "succeeded" and run.name == "tiny bert" and run.config["learning_rate"] == 5e-4
    assert run.context["optimizer"] == "adamw"
    np.testing.assert_array_equal(read_series(run.pk, "loss")[0], [4, 9, 14, 19])  # every 5 steps
    assert read_series(run.pk, "val_loss")[0].tolist() == [9, 19] and len(read_series(run.pk, "val_acc")[0]) == 2
    assert len(read_series(run.pk, "lr")[0]) == 20
    steps, ratios = read_series(run.pk, "update_ratio/bert.encoder.layer.0.attention.self.query.weight")
    # the dense start: every max(1, 5 // 4) = 1 step for the first 100 steps, then every 5; each
    # stamped with the Trainer's step, whatever it logs in between
    assert steps.tolist() == list(range(20)) and np.all(ratios > 0)
    assert run.steps_per_epoch == 8 and run.total_steps == 20  # 64 examples in batches of 8
    assert run.tensors[0] == "bert.embeddings.word_embeddings.weight" and len(run.tensors) == len(
        list(model.parameters())
    )
    # GELU is a module in BERT's intermediate layers: its outputs are histogrammed
    assert Histogram.objects.filter(run=run, key__startswith="activation/").exists()
