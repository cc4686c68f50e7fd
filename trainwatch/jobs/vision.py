"""Real-size image classification as registered entry points (resnet18, resnet50,
mobilenet_v3_small): torchvision's models, randomly initialised (nothing is downloaded), on
CIFAR-10's local python batches, any local ImageFolder tree, or synthetic CIFAR-size images;
the optimizers and schedules of Trainwatch's own configs; mixed precision on CUDA (float16
with a gradient scaler). They use the client's `run` like any team's function would.

    {"job": "entry", "entry": "resnet18", "device": "cuda", "epochs": 30,
     "params": {"data": "cifar10", "path": "/data/cifar-10-batches-py", "lr": 0.1, "schedule": "cosine"}}
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import trainwatch
from trainer.config import OPTIMIZER_SETTINGS, SCHEDULE_SETTINGS, ConfigError, RunConfig
from trainer.files import DataError, current_roots, read_cifar10, resolve_within
from trainer.optim import build_optimizer
from trainer.schedules import Schedule

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAD = 4  # the standard CIFAR augmentation: a random 32x32 crop of the image padded by 4, and a flip

PARAMS: dict[str, dict[str, Any]] = {
    "data": {
        "type": "choice",
        "choices": ["cifar10", "folder", "synthetic"],
        "default": "cifar10",
        "help": "cifar10: CIFAR-10's python batches in `path`; folder: an ImageFolder tree (path/train, path/val); synthetic: random CIFAR-size images",
    },
    "path": {
        "type": "path",
        "default": "",
        "required_when": {"data": ["cifar10", "folder"]},
        "help": "the data's folder (inside TRAINWATCH_DATA_DIRS)",
    },
    "image_size": {"type": "int", "min": 16, "max": 512, "default": 32, "help": "folder data: the crop's side"},
    "synthetic_images": {"type": "int", "min": 16, "max": 1_000_000, "default": 10_000},
    "val_fraction": {
        "type": "float",
        "min": 0.0,
        "max": 0.5,
        "default": 0.1,
        "help": "held out when there is no test split",
    },
    "batch_size": {"type": "int", "min": 1, "max": 4096, "default": 128},
    "steps_per_epoch": {"type": "int", "min": 0, "max": 10_000_000, "default": 0, "help": "0: the training set once"},
    "optimizer": {"type": "choice", "choices": list(OPTIMIZER_SETTINGS), "default": "nesterov"},
    "lr": {"type": "float", "min": 1e-7, "max": 10.0, "default": 0.1},
    "momentum": {"type": "float", "min": 0.0, "max": 0.999, "default": 0.9, "help": "momentum, nesterov and rmsprop"},
    "weight_decay": {"type": "float", "min": 0.0, "max": 1.0, "default": 5e-4},
    "schedule": {
        "type": "choice",
        "choices": [s for s in SCHEDULE_SETTINGS if s != "plateau"] + ["plateau"],
        "default": "cosine",
    },
    "warmup_steps": {"type": "int", "min": 0, "max": 10_000_000, "default": 0},
    "label_smoothing": {"type": "float", "min": 0.0, "max": 0.5, "default": 0.0},
    "amp": {"type": "bool", "default": True, "help": "CUDA: float16 autocast with a gradient scaler"},
    "loader_workers": {"type": "int", "min": 0, "max": 64, "default": 4, "help": "folder data: DataLoader processes"},
    "checkpoint_every": {"type": "int", "min": 0, "max": 10_000_000, "default": 0, "help": "steps; 0: each epoch end"},
    "instrument": {"type": "bool", "default": True, "help": "run.watch: update ratios, histograms, first-layer images"},
}


@dataclass
class Split:
    """Images as uint8 (N, 3, H, W) on the device with labels, or a DataLoader for a folder tree."""

    images: torch.Tensor | None
    labels: torch.Tensor | None
    loader: Any = None

    def __len__(self) -> int:
        return len(self.labels) if self.labels is not None else len(self.loader.dataset)


def _model(arch: str, classes: int, image_size: int) -> nn.Module:
    from torchvision import models  # noqa: PLC0415  (imported where it is needed: a worker without vision jobs never pays for it)

    model: nn.Module = getattr(models, arch)(weights=None, num_classes=classes)
    if arch.startswith("resnet") and image_size <= 64:
        # small images: the CIFAR variant of the stem (3x3 stride-1 convolution, no max pool)
        assert isinstance(model, models.ResNet)
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def _tensor_splits(params: dict[str, Any], seed: int, device: torch.device) -> tuple[Split, Split, int, tuple]:
    generator = np.random.default_rng(seed)
    if params["data"] == "synthetic":
        n = params["synthetic_images"]
        images = generator.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = generator.integers(0, 10, size=n)
        test_images, test_labels = None, None
    else:
        if not params["path"]:
            raise ConfigError({"params.path": "is required for cifar10: the folder of its python batches"})
        try:
            images, labels, test_images, test_labels = read_cifar10(params["path"], "params.path")
        except DataError as error:
            raise ConfigError({"params.path": str(error).removeprefix("params.path: ")}) from None
    if test_images is None or test_labels is None:
        order = generator.permutation(len(images))
        held = max(1, int(len(images) * params["val_fraction"]))
        test_images, test_labels = images[order[:held]], labels[order[:held]]
        images, labels = images[order[held:]], labels[order[held:]]
    assert test_images is not None and test_labels is not None
    classes = int(max(labels.max(), test_labels.max())) + 1

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(
            torch.from_numpy(np.ascontiguousarray(x)).to(device), torch.from_numpy(y.astype(np.int64)).to(device)
        )

    return split(images, labels), split(test_images, test_labels), classes, (CIFAR_MEAN, CIFAR_STD)


class GuardedImageLoader:
    """torchvision's image loader behind the data-folder rule, for each image as it is read (in
    the DataLoader's processes, which carry the roots with them): a link in the tree that leads
    out of the data folders is refused."""

    def __init__(self, roots: tuple[str, ...] | None) -> None:
        self.roots = roots

    def __call__(self, path: str) -> Any:
        from torchvision.datasets.folder import default_loader  # noqa: PLC0415

        return default_loader(str(resolve_within(path, self.roots, "params.path")))


def _folder_splits(params: dict[str, Any], seed: int) -> tuple[Split, Split, int, tuple]:
    from pathlib import Path  # noqa: PLC0415

    from torchvision import datasets, transforms  # noqa: PLC0415

    root = Path(params["path"]).expanduser()
    if not params["path"] or not (root / "train").is_dir():
        raise ConfigError(
            {"params.path": f"must be a folder with train/<class>/<images> (and val/), got {params['path']!r}"}
        )
    size = params["image_size"]
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    loader = GuardedImageLoader(current_roots())
    train_set = datasets.ImageFolder(
        str(root / "train"),
        transforms.Compose(
            [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
        ),
        loader=loader,
    )
    val_root = root / "val" if (root / "val").is_dir() else root / "train"
    val_set = datasets.ImageFolder(
        str(val_root),
        transforms.Compose(
            [transforms.Resize(int(size * 1.14)), transforms.CenterCrop(size), transforms.ToTensor(), normalize]
        ),
        loader=loader,
    )
    generator = torch.Generator().manual_seed(seed)
    common = {
        "batch_size": params["batch_size"],
        "num_workers": params["loader_workers"],
        "pin_memory": torch.cuda.is_available(),
    }
    train = torch.utils.data.DataLoader(train_set, shuffle=True, drop_last=True, generator=generator, **common)
    val = torch.utils.data.DataLoader(val_set, shuffle=False, **common)
    return Split(None, None, train), Split(None, None, val), len(train_set.classes), (None, None)


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crops of the padded images and horizontal flips, one per image, on the device."""
    count, channels, height, width = images.shape
    padded = nn.functional.pad(images, (PAD, PAD, PAD, PAD))
    top = torch.randint(0, 2 * PAD + 1, (count, 1), generator=generator, device=images.device)
    left = torch.randint(0, 2 * PAD + 1, (count, 1), generator=generator, device=images.device)
    rows = (top + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (left + torch.arange(width, device=images.device))[:, None, None, :]
    index = torch.arange(count, device=images.device)[:, None, None, None]
    crops = padded[index, torch.arange(channels, device=images.device)[None, :, None, None], rows, cols]
    flip = torch.rand(count, generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], crops.flip(3), crops)


def _batches(
    split: Split, params: dict[str, Any], epoch: int, seed: int, skip: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's batches from `skip` on; a tensor split's order comes from (seed, epoch), so a
    resumed run sees the same order."""
    if split.loader is not None:
        for index, (x, y) in enumerate(split.loader):
            if index >= skip:
                yield x, y
        return
    assert split.images is not None and split.labels is not None
    generator = torch.Generator(device=split.images.device).manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(split.labels), generator=generator, device=split.images.device)
    size = params["batch_size"]
    for start in range(skip * size, len(order) - size + 1, size):
        take = order[start : start + size]
        yield _augment(split.images[take], generator), split.labels[take]


def _prepare(images: torch.Tensor, stats: tuple, device: torch.device) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        mean = torch.tensor(stats[0], device=device).view(1, 3, 1, 1)
        std = torch.tensor(stats[1], device=device).view(1, 3, 1, 1)
        images = (images.float() / 255.0 - mean) / std
    return images.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else images


def _evaluate(
    model: nn.Module, split: Split, params: dict[str, Any], stats: tuple, device: torch.device, amp: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy over the split, as device tensors (no sync here)."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    count = 0
    batches: Any = split.loader
    if batches is None:
        images, labels = split.images, split.labels
        assert images is not None and labels is not None
        batches = ((images[i : i + 512], labels[i : i + 512]) for i in range(0, len(labels), 512))
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        for x, y in batches:
            y = y.to(device, non_blocking=True)
            logits = model(_prepare(x, stats, device))
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            count += len(y)
    model.train()
    return loss_sum / max(1, count), correct / max(1, count)


def train_classifier(run: Any, arch: str) -> None:
    params = {key: value for key, value in run.config.items() if key not in ("epochs", "seed", "device")}
    epochs, seed, device = run.config["epochs"], run.config["seed"], run.device
    torch.manual_seed(seed)
    if params["data"] == "folder":
        train, val, classes, stats = _folder_splits(params, seed)
        image_size = params["image_size"]
    else:
        train, val, classes, stats = _tensor_splits(params, seed, device)
        image_size = 32
    full_epoch = len(train) // params["batch_size"]
    if full_epoch == 0:
        raise ConfigError({"params.batch_size": f"is larger than the training set ({len(train)} images)"})
    steps_per_epoch = min(full_epoch, params["steps_per_epoch"] or full_epoch)
    model = _model(arch, classes, image_size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer_settings = {"name": params["optimizer"], "lr": params["lr"], "weight_decay": params["weight_decay"]}
    if "momentum" in OPTIMIZER_SETTINGS[params["optimizer"]]:
        optimizer_settings["momentum"] = params["momentum"]
    schedule_settings = {"name": params["schedule"], "warmup_steps": params["warmup_steps"]}
    resolved = RunConfig.from_dict({"optimizer": optimizer_settings, "schedule": schedule_settings, "epochs": epochs})
    optimizer = build_optimizer(resolved.optimizer, model.parameters())
    schedule = Schedule(resolved.schedule, optimizer, steps_per_epoch, epochs)
    amp = params["amp"] and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    criterion = nn.CrossEntropyLoss(label_smoothing=params["label_smoothing"])
    run.plan(total_steps=steps_per_epoch * epochs, steps_per_epoch=steps_per_epoch)
    if params["instrument"]:
        run.watch(model, optimizer, loss="cross_entropy", classes=classes, image_every=max(1, steps_per_epoch))
    step = 0
    saved = run.restore()
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        scaler.load_state_dict(saved["scaler"])
        step = saved["step"]
    every = params["checkpoint_every"]
    while step < steps_per_epoch * epochs:
        epoch, skip = divmod(step, steps_per_epoch)
        for x, y in _batches(train, params, epoch, seed, skip):
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = model(_prepare(x, stats, device))
                loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.after_iteration()
            run.log(
                {"loss": loss.detach(), "train_acc": (logits.argmax(1) == y).float().mean(), "lr": schedule.lr},
                step=step,
            )
            step += 1
            if step % steps_per_epoch == 0 or run.should_stop:
                break
            if every and step % every == 0:
                run.checkpoint(_state(model, optimizer, schedule, scaler, step))
        if run.should_stop:
            return
        if step % steps_per_epoch == 0:
            val_loss, val_acc = _evaluate(model, val, params, stats, device, amp)
            run.log({"val_loss": val_loss, "val_acc": val_acc, "epoch": step // steps_per_epoch}, step=step - 1)
            schedule.after_epoch(float(val_loss) if schedule.plateau else math.nan)
            run.checkpoint(_state(model, optimizer, schedule, scaler, step))


def _state(
    model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule, scaler: Any, step: int
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
    }


@trainwatch.job(params=PARAMS, epochs=30)
def resnet18(run: Any) -> None:
    """torchvision's ResNet-18 (CIFAR stem for images up to 64 px), trained from scratch."""
    train_classifier(run, "resnet18")


@trainwatch.job(params=PARAMS, epochs=30)
def resnet50(run: Any) -> None:
    """torchvision's ResNet-50 (CIFAR stem for images up to 64 px), trained from scratch."""
    train_classifier(run, "resnet50")


@trainwatch.job(params=PARAMS, epochs=30)
def mobilenet_v3_small(run: Any) -> None:
    """torchvision's MobileNetV3-Small, trained from scratch."""
    train_classifier(run, "mobilenet_v3_small")
