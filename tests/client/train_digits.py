"""A team's own training script, as the client's tests run it: an MLP on scikit-learn's digits,
with its own loop, tracked through trainwatch.

    python tests/client/train_digits.py --epochs 5 --lr 0.1 [--sleep 0.01] [--project p]
"""

import argparse
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

import trainwatch

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--sleep", type=float, default=0.0, help="seconds per step, to make the run last")
parser.add_argument("--project", default="scripts")
parser.add_argument("--name", default="digits mlp")
parser.add_argument("--keep-model", action="store_true", help="log the trained model as the artifact digits-mlp")
args = parser.parse_args()

torch.manual_seed(0)
digits = load_digits()
x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y = torch.tensor(digits.target)
x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]
model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
batch = 32
steps_per_epoch = len(x_train) // batch

with trainwatch.init(
    project=args.project,
    name=args.name,
    config={"lr": args.lr, "batch": batch, "hidden": 64},
    tags=["digits"],
    total_steps=args.epochs * steps_per_epoch,
    steps_per_epoch=steps_per_epoch,
) as run:
    run.watch(
        model,
        optimizer,
        loss="cross_entropy",
        classes=10,
        image_shape=(1, 8, 8),
        histogram_every=50,
        image_every=steps_per_epoch,
    )
    print(f"run started: {run.spool.folder}", flush=True)
    step = 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_train))
        for start in range(0, steps_per_epoch * batch, batch):
            index = order[start : start + batch]
            scores = model(x_train[index])
            loss = loss_fn(scores, y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            run.log({"loss": loss}, step=step)
            step += 1
            if args.sleep:
                time.sleep(args.sleep)
            if run.should_stop:
                break
        if run.should_stop:
            print("asked to stop", flush=True)
            break
        with torch.no_grad():
            model.eval()
            val_scores = model(x_val)
            train_acc = (model(x_train[: len(x_val)]).argmax(1) == y_train[: len(x_val)]).float().mean()
            model.train()
        run.log(
            {
                "train_acc": train_acc,
                "val_acc": (val_scores.argmax(1) == y_val).float().mean(),
                "val_loss": loss_fn(val_scores, y_val),
                "epoch": epoch + 1,
            },
            step=step - 1,
        )
    if args.keep_model:
        torch.save(model.state_dict(), "model.pt")
        run.log_artifact("model.pt", name="digits-mlp", type="model", aliases=["trained"])
print("done", flush=True)
