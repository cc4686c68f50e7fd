"""Models teams train, small enough for a CPU, and data they can learn in seconds.

torchvision's own resnet18 and mobilenet_v3_small (BatchNorm, residuals, ReLU6/Hardswish), an
nn.TransformerEncoder classifier (LayerNorm, GELU inside the layer), a GPT-style decoder
(token and learnt position embeddings, LayerNorm, weight tying), GRU and plain RNN classifiers
and a ViT-style patch model (class token, position parameter)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

CLASSES = 10
VOCABULARY = 16
SEQUENCE = 12


@dataclass
class Task:
    """Training and validation inputs and targets; `classes` for the initial-loss check."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: int
    image_shape: tuple[int, int, int] | None = None


def images(count: int = 512, side: int = 32, seed: int = 0, shuffled: bool = False, noise: float = 1.5) -> Task:
    """CIFAR-size images: a random template per class under noise (learnable in an epoch or two);
    `shuffled`: the training labels drawn at random, so that nothing carries over."""
    generator = torch.Generator().manual_seed(seed)
    templates = torch.randn(CLASSES, 3, side, side, generator=generator)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, CLASSES, (n,), generator=generator)
        return templates[y] + noise * torch.randn(n, 3, side, side, generator=generator), y

    x_train, y_train = draw(count)
    x_val, y_val = draw(count // 2)
    if shuffled:
        y_train = torch.randint(0, CLASSES, (count,), generator=generator)
    return Task(x_train, y_train, x_val, y_val, CLASSES, (3, side, side))


def sequences(count: int = 512, seed: int = 0) -> Task:
    """Token sequences whose class says how many of their tokens are from the lower half of the
    vocabulary (four bands of the count)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCABULARY, (count + count // 2, SEQUENCE), generator=generator)
    low = (x < VOCABULARY // 2).sum(dim=1)
    y = torch.bucketize(low, torch.tensor([4, 6, 8]), right=True)
    return Task(x[:count], y[:count], x[count:], y[count:], 4)


def language(count: int = 512, seed: int = 0) -> Task:
    """Next-token prediction on counting sequences (start and stride drawn): the target of each
    position is the following token."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCABULARY, (count + count // 2, 1), generator=generator)
    stride = torch.randint(1, 3, (count + count // 2, 1), generator=generator)
    tokens = (start + stride * torch.arange(SEQUENCE + 1)) % VOCABULARY
    x, y = tokens[:, :-1], tokens[:, 1:]
    return Task(x[:count], y[:count], x[count:], y[count:], VOCABULARY)


def signals(count: int = 512, seed: int = 0) -> Task:
    """Sequences of 8 features whose class is the sign of the first feature's running sum."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count + count // 2, SEQUENCE, 8, generator=generator)
    y = (x[:, :, 0].sum(dim=1) > 0).long()
    return Task(x[:count], y[:count], x[count:], y[count:], 2)


class EncoderClassifier(nn.Module):
    def __init__(self, width: int = 32, layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, width)
        self.pos_embedding = nn.Parameter(torch.randn(1, SEQUENCE, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, 4, 64, dropout=dropout, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embedding(x) + self.pos_embedding)
        return self.head(self.norm(hidden.mean(dim=1)))


class Block(nn.Module):
    mask: torch.Tensor  # a buffer

    def __init__(self, width: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, 4, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.register_buffer("mask", torch.triu(torch.ones(SEQUENCE, SEQUENCE, dtype=torch.bool), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask[: x.shape[1], : x.shape[1]], need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Decoder(nn.Module):
    """GPT-style: wte and wpe, pre-norm blocks, the output layer tied to the token embedding."""

    def __init__(self, width: int = 32, layers: int = 2):
        super().__init__()
        self.wte = nn.Embedding(VOCABULARY, width)
        self.wpe = nn.Embedding(SEQUENCE, width)
        self.blocks = nn.Sequential(*[Block(width) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, VOCABULARY, bias=False)
        self.lm_head.weight = self.wte.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        hidden = self.ln_f(self.blocks(self.wte(x) + self.wpe(positions)))
        return self.lm_head(hidden).transpose(1, 2)  # (B, V, T): what cross_entropy takes


class GRUClassifier(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        self.gru = nn.GRU(8, width, batch_first=True)
        self.fc = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gru(x)[0][:, -1])


class RNNClassifier(nn.Module):
    """A plain (tanh) RNN: the model whose gradients explode through time without clipping."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.rnn = nn.RNN(8, width, batch_first=True)
        self.fc = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0][:, -1])


class PatchClassifier(nn.Module):
    """ViT-style: 8x8 patches by a strided conv, a class token, a learnt position parameter."""

    def __init__(self, width: int = 48, layers: int = 2, side: int = 32, patch: int = 8):
        super().__init__()
        self.patches = nn.Conv2d(3, width, patch, patch)
        count = (side // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embedding = nn.Parameter(torch.randn(1, count + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, 4, 2 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embedding
        return self.head(self.norm(self.encoder(tokens)[:, 0]))


def resnet18() -> nn.Module:
    return torchvision.models.resnet18(num_classes=CLASSES)


def mobilenet() -> nn.Module:
    """With BatchNorm's usual momentum (0.1): torchvision's 0.01 for this model (ImageNet-long
    runs) needs hundreds of steps before the evaluation-mode statistics match the weights, so a
    run of 64 steps validates at chance however well it trains; a rule rightly calls that
    stuck (a run that short is not a healthy one)."""
    return torchvision.models.mobilenet_v3_small(
        num_classes=CLASSES, norm_layer=functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.1)
    )
