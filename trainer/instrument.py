"""Measurements taken during training, kept on the device until a hand-off.

Every measured value stays a device tensor; `DeviceRecorder.drain` concatenates
all of them and copies them to the host in one transfer, so a hand-off costs a
single synchronisation however many series and histograms are pending.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainer.models import Maxout
from trainer.sink import HistogramRecord, ScalarBatch
from trainer.tensor_names import BIAS, EMBEDDING, NORM_SCALE, NORM_SHIFT, OTHER, POSITIONAL, RECURRENT, WEIGHT

# a unit counts as saturated when its output is this close to the activation's bounds
SATURATION_MARGIN = 0.01
# Activation modules whose outputs are measured, by what can go wrong with them: ReLU-like
# units die (never positive), tanh- and sigmoid-like ones saturate; the others are only
# histogrammed. Activations called as functions (F.relu) have no module and are not measured.
ACTIVATION_KINDS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu",
    nn.LeakyReLU: "relu",
    nn.PReLU: "relu",
    nn.RReLU: "relu",
    nn.ELU: "relu",
    nn.CELU: "relu",
    nn.SELU: "relu",
    Maxout: "relu",
    nn.Tanh: "tanh",
    nn.Hardtanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "sigmoid",
    nn.GELU: "smooth",
    nn.SiLU: "smooth",
    nn.Mish: "smooth",
    nn.Softplus: "smooth",
}


def activation_kind(module: nn.Module) -> str | None:
    return next((kind for cls, kind in ACTIVATION_KINDS.items() if type(module) is cls), None)


NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)
MATRIX_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.MultiheadAttention)


def _parameter_kind(module: nn.Module, module_name: str, name: str, param: nn.Parameter) -> str:
    if isinstance(module, NORM_LAYERS):
        return NORM_SCALE if name == "weight" else NORM_SHIFT
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        # GPT-2 calls its position table wpe
        return POSITIONAL if "pos" in module_name.rsplit(".", 1)[-1] or module_name.endswith("wpe") else EMBEDDING
    if isinstance(module, nn.RNNBase):
        return RECURRENT if name.startswith("weight") else BIAS
    if isinstance(module, MATRIX_LAYERS):
        return BIAS if "bias" in name else WEIGHT
    if isinstance(module, nn.PReLU):
        return OTHER
    # a module's own nn.Parameter: named by the model's author
    lowered = name.lower()
    if "pos" in lowered:
        return POSITIONAL
    if "token" in lowered or "cls" in lowered or param.dim() == 0:
        return OTHER
    if "bias" in lowered or param.dim() == 1:
        return BIAS
    return WEIGHT


def parameter_kinds(model: nn.Module) -> dict[str, str]:
    """Each parameter tensor's kind (trainer.tensor_names), by the module that holds it, under
    the name model.named_parameters() gives it (a tied weight: the name it has first)."""
    kinds: dict[str, str] = {}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            kinds.setdefault(full, _parameter_kind(module, module_name, name, param))
    return kinds


def _to_host(pieces: list[torch.Tensor]) -> np.ndarray:
    """Every piece as float64 on the host, in order: one copy (and synchronisation) per device,
    the one of a hand-off when everything lives on one device."""
    if not pieces:
        return np.empty(0)
    by_device: dict[torch.device, list[int]] = {}
    for index, piece in enumerate(pieces):
        by_device.setdefault(piece.device, []).append(index)
    parts: list[np.ndarray] = [np.empty(0)] * len(pieces)
    for indices in by_device.values():
        # one cast after the cat: its dtype is the widest of the pieces' (float32 on most runs, whose
        # only integers, histogram counts, are histc's float32 counts), so no value is rounded
        flat = [pieces[i].reshape(-1) for i in indices]
        host = torch.cat(flat).to(torch.float64).cpu().numpy()
        for index, chunk in zip(indices, np.split(host, np.cumsum([f.numel() for f in flat])[:-1])):
            parts[index] = chunk
    return np.concatenate(parts)


# turns a hand-off's stacked vectors of one probe, (steps, k), into its keys' values
Derive = Callable[[torch.Tensor], torch.Tensor]


class DeviceRecorder:
    def __init__(self) -> None:
        # per-step 0-d values of one key, stacked at the hand-off: one op per key, not per step
        self._series: dict[str, tuple[list[int], list[torch.Tensor]]] = {}
        # vectors by their keys (one tuple of keys per probe): what derives the keys' values
        # from a stack of them, the steps, the vectors
        self._vectors: dict[tuple[str, ...], tuple[Derive | None, list[int], list[torch.Tensor]]] = {}
        self._histograms: list[tuple[tuple[str, ...], int, DeviceHistograms]] = []
        self._host: dict[str, tuple[list[int], list[float]]] = {}

    def add(self, key: str, step: int, value: torch.Tensor) -> None:
        """A 0-d device tensor (e.g. the detached loss); no synchronisation, no copy."""
        steps, values = self._series.setdefault(key, ([], []))
        steps.append(step)
        values.append(value)

    def add_vector(self, keys: tuple[str, ...], step: int, values: torch.Tensor, derive: Derive | None = None) -> None:
        """One device value per key at the same step (e.g. a ratio per parameter tensor), a 1-d
        tensor, or values that `derive` turns into those, given all of a hand-off's (steps, k) at once."""
        _, steps, vectors = self._vectors.setdefault(keys, (derive, [], []))
        steps.append(step)
        vectors.append(values)

    def add_histograms(self, keys: tuple[str, ...], step: int, histograms: DeviceHistograms) -> None:
        self._histograms.append((keys, step, histograms))

    def add_host(self, key: str, step: int, value: float) -> None:
        """A value already on the host (e.g. the learning rate from the schedule)."""
        steps, values = self._host.setdefault(key, ([], []))
        steps.append(step)
        values.append(value)

    def drain(self) -> tuple[ScalarBatch, list[HistogramRecord]]:
        pieces = [torch.stack(values) for _, values in self._series.values()]
        pieces += [
            torch.stack(vectors) if derive is None else derive(torch.stack(vectors))
            for derive, _, vectors in self._vectors.values()
        ]
        for _, _, histograms in self._histograms:
            pieces += [histograms.counts, histograms.per_tensor]
        host = _to_host(pieces)
        # per key, its (steps, values) blocks in the order they arrive
        collected: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        offset = 0
        for key, (steps, _) in self._series.items():
            collected.setdefault(key, []).append((np.asarray(steps, np.int64), host[offset : offset + len(steps)]))
            offset += len(steps)
        for keys, (_, steps, _) in self._vectors.items():
            block = host[offset : offset + len(steps) * len(keys)].reshape(len(steps), len(keys))
            offset += block.size
            step_array = np.asarray(steps, np.int64)
            for index, key in enumerate(keys):
                collected.setdefault(key, []).append((step_array, block[:, index]))
        records: list[HistogramRecord] = []
        for keys, step, histograms in self._histograms:
            counts_end = offset + histograms.counts.numel()
            end = counts_end + histograms.per_tensor.numel()
            block_counts, block_stats = histograms.on_host(host[offset:counts_end], host[counts_end:end])
            offset = end
            for index, (key, row) in enumerate(zip(keys, block_stats.tolist())):
                low, high, mean, std, zero, saturated, nonfinite = row
                records.append(
                    HistogramRecord(
                        key, step, low, high, block_counts[index], mean, std, zero, saturated, int(nonfinite)
                    )
                )
        for key, (steps, values) in self._host.items():
            collected.setdefault(key, []).append((np.asarray(steps, np.int64), np.asarray(values, np.float64)))
        self._series = {}
        self._vectors = {}
        self._histograms.clear()
        self._host = {}
        batch = {
            key: blocks[0]
            if len(blocks) == 1
            else (np.concatenate([s for s, _ in blocks]), np.concatenate([v for _, v in blocks]))
            for key, blocks in collected.items()
        }
        return batch, records


class ParameterProbe:
    """Per parameter tensor, every K steps: the update-to-weight ratio
    norm(W_after - W_before) / norm(W_before) (the update the optimizer actually
    applied, whatever the optimizer), the gradient norm and the weight norm."""

    def __init__(self, named_parameters: list[tuple[str, nn.Parameter]]):
        self.names = tuple(name for name, _ in named_parameters)
        self.keys = (
            tuple(f"update_ratio/{n}" for n in self.names)
            + tuple(f"grad_norm/{n}" for n in self.names)
            + tuple(f"weight_norm/{n}" for n in self.names)
        )
        self.params: list[torch.Tensor] = [param for _, param in named_parameters]
        # one persistent copy of the weights, overwritten in place at each measured step
        self._before = [param.detach().clone() for param in self.params]
        self._pending: list[torch.Tensor] | None = None

    @torch.no_grad()
    def before_step(self) -> None:
        torch._foreach_copy_(self._before, self.params)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        # gradient norms, then weight norms: one reduction over both lists
        self._pending = list(torch._foreach_norm(grads + self._before))

    @torch.no_grad()
    def after_step(self, recorder: DeviceRecorder, step: int) -> None:
        """Record this step's norms; the ratios are derived at the hand-off, for every
        measured step at once (a handful of ops each, where a step's op costs microseconds)."""
        assert self._pending is not None, "call before_step() first"
        torch._foreach_sub_(self._before, self.params)  # W_before - W_after
        norms = torch.stack(self._pending + list(torch._foreach_norm(self._before)))
        self._pending = None
        recorder.add_vector(self.keys, step, norms, derive=ratios_and_norms)


def ratios_and_norms(norms: torch.Tensor) -> torch.Tensor:
    """(steps, 3n) gradient, weight and update norms -> (steps, 3n) update-to-weight ratios,
    gradient norms and weight norms, ParameterProbe.keys' order."""
    n = norms.shape[1] // 3
    weight_norms, update_norms = norms[:, n : 2 * n], norms[:, 2 * n :]
    # a tensor that is exactly zero (e.g. zero-initialised biases) has no finite ratio
    ratios = torch.where(weight_norms > 0, update_norms / weight_norms, math.nan)
    return torch.cat([ratios, norms[:, : 2 * n]], dim=1)


@functools.lru_cache(maxsize=32)
def _bin_offsets(n: int, bins: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """i * bins for tensor i, where its bins start in the joint histogram: one 0-d device tensor
    each (a list of Python numbers would be wrapped into tensors on every call)."""
    return torch.arange(0, n * bins, bins, dtype=torch.float32, device=device).unbind()


def _count_indices(index: torch.Tensor, total: int, by_bincount: bool) -> torch.Tensor:
    """How often each of 0 .. total - 1 occurs in `index` (whole numbers or NaN, as floats), as
    total + 1 floats: the last is not a bin (it holds the NaN on a CPU), the host drops it, as
    slicing it off on the device would cost an op of its own.
    histc, with its range given, neither synchronises (bincount reads the largest index back on a
    GPU) nor scatters into global memory; centred on the integers, so that float rounding cannot
    move an index to its neighbour; it drops NaN. On a CPU its kernel costs six times bincount's
    per value (int32 indices: a conversion to int64 costs as much as the count)."""
    if by_bincount:
        # NaN (a tensor with a NaN has NaN bounds) goes to the extra element
        return torch.bincount(index.nan_to_num(nan=float(total)).int(), minlength=total + 1).float()
    return torch.histc(index, bins=total + 1, min=-0.5, max=total + 0.5)


# At most this many values of a tensor are binned (and give its mean, spread and zero
# fraction): a fixed random sample of a larger one. The bins of a conv layer's 2.4M weights
# from 65,536 of them differ by well under a per cent of the tensor from the full count,
# which cost resnet18 a quarter of a second a pass on a CPU (binning is seven passes over the
# data). Its low and high stay exact: they bound the bins, and a single huge value is news.
HISTOGRAM_SAMPLE = 1 << 16


@functools.lru_cache(maxsize=256)
def _sample_index(size: int, device: torch.device) -> torch.Tensor:
    """HISTOGRAM_SAMPLE positions in a tensor of `size` values, drawn once (so that a tensor's
    histograms over a run are of the same values) and with replacement (cheap, unbiased)."""
    generator = torch.Generator().manual_seed(size)
    return torch.randint(0, size, (HISTOGRAM_SAMPLE,), generator=generator).to(device)


@dataclass(frozen=True)
class DeviceHistograms:
    """One histogram pass over n tensors, still on the device; `on_host` turns the hand-off's copy
    of `counts` and `per_tensor` into numbers. Everything derived from the per-tensor sums (mean,
    std, zero fraction) is derived there, for a pass's n tensors at once in NumPy, where each of
    those steps would be an op of its own on the device, costing its dispatch whatever n is."""

    counts: torch.Tensor  # (n * bins + 1,): tensor i's counts at i * bins, then an element to drop
    # (6 * n + s,): lows, highs, sums and L2 norms of the binned values above the low, their
    # non-zero counts, their NaN and infinite counts; then the saturated fraction of each of
    # the s tensors in `saturating`
    per_tensor: torch.Tensor
    sizes: tuple[int, ...]  # each tensor's values
    saturating: tuple[int, ...]
    bins: int
    binned: tuple[int, ...] = ()  # each tensor's values binned (its sample); () when all were

    @property
    def saturated_fractions(self) -> torch.Tensor:
        """The saturated fractions of the tensors in `saturating`, on the device (a view)."""
        return self.per_tensor[6 * len(self.sizes) :]

    def on_host(self, counts: np.ndarray, per_tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts (n, bins), int64, and stats (n, 7): low, high, mean, std, fraction exactly zero,
        fraction saturated (0 for a tensor that is not tanh- or sigmoid-like), and how many of
        its values are NaN or infinite. A sampled tensor's counts are scaled to its size: a
        histogram counts a tensor's values. A tensor with NaN or infinite values (a run
        diverging) has no range to bin over: its counts are zero and its low, high, mean, std
        and zero fraction NaN; its NaN and infinite count is what it has."""
        n = len(self.sizes)
        lows, highs, sums, roots, nonzero, nonfinite = per_tensor[: 6 * n].reshape(6, n)
        sizes = np.asarray(self.sizes, dtype=np.float64)
        binned = np.asarray(self.binned, dtype=np.float64) if self.binned else sizes
        saturated = np.zeros(n)
        saturated[list(self.saturating)] = per_tensor[6 * n :]
        with np.errstate(invalid="ignore", over="ignore"):  # a tensor with a NaN or an inf: NaN stats
            mean_above_low = sums / binned
            # shifted by the minimum, the squares' sum loses no precision that matters
            stds = np.sqrt(np.maximum(roots**2 / binned - mean_above_low**2, 0.0))
            nonfinite = np.round(nonfinite * (sizes / binned))
            stats = np.stack(
                [lows, highs, lows + mean_above_low, stds, 1.0 - nonzero / binned, saturated, nonfinite], axis=1
            )
        table = counts[: n * self.bins].reshape(n, self.bins)
        if self.binned:
            table = table * (sizes / binned)[:, None]
        broken = (nonfinite > 0) | ~np.isfinite(lows) | ~np.isfinite(highs)
        if broken.any():
            stats[broken, :5] = np.nan
            stats[broken, 6] = np.maximum(stats[broken, 6], 1)  # a sampled tensor may hide its few
            table = np.where(broken[:, None], 0, table)
        return table.round().astype(np.int64), stats

    def to_host(self) -> tuple[np.ndarray, np.ndarray]:
        """on_host of a copy of its own (tests, tools): a hand-off copies all passes at once."""
        return self.on_host(self.counts.double().cpu().numpy(), self.per_tensor.double().cpu().numpy())


@torch.no_grad()
def batched_histograms(tensors: list[torch.Tensor], bins: int, saturation: list[str | None]) -> DeviceHistograms:
    """Histograms of many tensors in one binning pass on their device.

    Each tensor gets `bins` equal bins over its own [min, max], and its fraction saturated
    when its entry of `saturation` is 'tanh' or 'sigmoid'; a tensor of more than
    HISTOGRAM_SAMPLE values is binned from a sample of them. torch.histc would need each range
    as a host number, i.e. one synchronisation per tensor.
    """
    flat = [t.reshape(-1) if t.dtype == torch.float32 else t.reshape(-1).float() for t in tensors]
    n = len(flat)
    device = flat[0].device
    # Per-tensor reductions, not scatters into n slots: on a GPU millions of atomic adds into a
    # few addresses (a conv layer's activations) take tens of milliseconds. The elementwise
    # passes are foreach ops: one call for all tensors, where each op costs microseconds of
    # dispatch on a CPU whatever the tensor's size.
    extremes = [torch.aminmax(f) for f in flat]
    lows = [low for low, _ in extremes]
    sampled = [f if f.numel() <= HISTOGRAM_SAMPLE else f[_sample_index(f.numel(), f.device)] for f in flat]
    above_low = torch._foreach_sub(sampled, lows)  # every value >= 0, so an L1 norm is a sum
    saturating, saturated = [], []
    for i, kind in enumerate(saturation):
        if kind == "tanh":
            saturated.append((sampled[i].abs() > 1 - SATURATION_MARGIN).float().mean())
        elif kind == "sigmoid":
            saturated.append(((sampled[i] < SATURATION_MARGIN) | (sampled[i] > 1 - SATURATION_MARGIN)).float().mean())
        else:
            continue
        saturating.append(i)
    # every per-tensor number in one stack (a stack costs a cat besides its numbers); mean and
    # std come from the sums of (x - low) and its squares, on the host (DeviceHistograms.on_host)
    per_tensor = torch.stack(
        lows
        + [high for _, high in extremes]
        + list(torch._foreach_norm(above_low, 1))
        + list(torch._foreach_norm(above_low, 2))
        + list(torch._foreach_norm(sampled, ord=0))  # the count of non-zero values
        # the count of NaN and infinite values: times zero they are NaN, every other value 0
        + list(torch._foreach_norm(torch._foreach_mul(sampled, 0.0), ord=0))
        + saturated
    )
    # each value's (tensor, bin) index, i * bins + its bin in tensor i; a segment id per value
    # (from repeat_interleave) would cost more on a GPU than all the rest
    # (numpy's arithmetic: (value - low) * (bins / span); never below 0, as no value is below low)
    scales = bins / (per_tensor[n : 2 * n] - per_tensor[:n]).clamp_min(1e-12)
    torch._foreach_mul_(above_low, list(scales.unbind()))
    torch._foreach_floor_(above_low)
    torch._foreach_clamp_max_(above_low, float(bins - 1))  # the largest value, in the last bin
    torch._foreach_add_(above_low, list(_bin_offsets(n, bins, device)))
    counts = _count_indices(torch.cat(above_low), n * bins, by_bincount=device.type == "cpu")
    sizes = tuple(f.numel() for f in flat)
    binned = tuple(s.numel() for s in sampled)
    return DeviceHistograms(counts, per_tensor, sizes, tuple(saturating), bins, binned if binned != sizes else ())


def live_fraction(activation: torch.Tensor) -> torch.Tensor:
    """Fraction of units (features, or channels of a feature map) positive at least once over the
    batch; the dead fraction is one minus it, taken at the hand-off (`dead_fractions`)."""
    if activation.dim() == 4:  # (B, C, H, W): a channel is a unit
        active = (activation > 0).any(dim=(0, 2, 3))
    else:
        active = (activation > 0).reshape(activation.shape[0], -1).any(dim=0)
    return active.mean(dtype=torch.float32)


def dead_fractions(live: torch.Tensor) -> torch.Tensor:
    """A hand-off's (steps, layers) live fractions -> dead fractions: one op for all of them."""
    return 1.0 - live


# Squeeze-and-excitation blocks (torchvision's SqueezeExcitation, timm's SqueezeExcite and
# SEModule): their activations act on globally pooled features, alike across a batch, and gate
# the channels; their spread and firing say nothing of the units' health (mobilenet_v3's gates
# read a spread of 0.02 and half "dead" on a healthy run), so they are not measured as units.
GATE_BLOCKS = re.compile(r"Squeeze.*Excit|^SE(Module|Layer|Block)$")


def _in_gate(name: str, modules: dict[str, nn.Module]) -> bool:
    parent = name.rpartition(".")[0]
    return parent in modules and bool(GATE_BLOCKS.search(type(modules[parent]).__name__))


class HistogramProbe:
    """Every H steps: histograms of each activation layer's output, and of each
    parameter's gradient and weights; dead and saturated fractions per activation."""

    def __init__(self, model: nn.Module, named_parameters: list[tuple[str, nn.Parameter]], bins: int):
        self.model = model
        self.bins = bins
        self.params = named_parameters
        modules = dict(model.named_modules())
        self.layers = [
            (name, module)
            for name, module in modules.items()
            if activation_kind(module) and not _in_gate(name, modules)
        ]
        self.kinds = {name: activation_kind(module) for name, module in self.layers}
        self._captured: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def arm(self) -> None:
        """Hooks exist only during a measured step, so other steps pay nothing."""
        if self._handles:
            return
        for name, module in self.layers:
            self._handles.append(module.register_forward_hook(self._capture(name)))

    def disarm(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._captured.clear()

    def _capture(self, name: str):
        def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            if module.training:  # not an evaluation pass that happens to run in between
                self._captured[name] = output.detach()

        return hook

    def collect(self, recorder: DeviceRecorder, step: int, parameters: bool = True) -> None:
        """After backward: the activations of this step's forward pass and, with `parameters`,
        the gradients and weights."""
        captured = dict(self._captured)
        self.disarm()
        keys: list[str] = []
        tensors: list[torch.Tensor] = []
        saturation: list[str | None] = []
        dead_keys, live_values = [], []
        for name, output in captured.items():
            kind = self.kinds[name]
            keys.append(f"activation/{name}")
            tensors.append(output)
            saturation.append(kind if kind in ("tanh", "sigmoid") else None)
            if kind == "relu":
                dead_keys.append(f"dead_fraction/{name}")
                live_values.append(live_fraction(output))
        for name, param in self.params if parameters else ():
            if param.grad is not None:
                keys.append(f"gradient/{name}")
                tensors.append(param.grad)
                saturation.append(None)
            keys.append(f"weight/{name}")
            tensors.append(param)
            saturation.append(None)
        if not tensors:
            return
        histograms = batched_histograms(tensors, self.bins, saturation)
        recorder.add_histograms(tuple(keys), step, histograms)
        if live_values:
            recorder.add_vector(tuple(dead_keys), step, torch.stack(live_values), derive=dead_fractions)
        if histograms.saturating:
            sat_keys = tuple(f"saturated_fraction/{keys[i].split('/', 1)[1]}" for i in histograms.saturating)
            recorder.add_vector(sat_keys, step, histograms.saturated_fractions)


def first_layer_tiles(
    model: nn.Module, image_shape: tuple[int, int, int] | None, max_tiles: int = 100
) -> torch.Tensor | None:
    """On the device: the first layer's incoming weights of each unit (or filter), each
    reshaped to the input image (a conv layer's filters need no shape) and scaled to its own
    min..max, (tiles, channels, height, width); None when the first layer has no image form."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    if first is None:
        return None
    weight = first.weight.detach()
    if isinstance(first, nn.Linear):
        if image_shape is None or weight.shape[1] != math.prod(image_shape):
            return None
        tiles = weight.reshape(weight.shape[0], *image_shape)
    else:
        tiles = weight  # (F, C, k, k): the filters themselves
    tiles = tiles[:max_tiles].float()
    channels = 3 if tiles.shape[1] == 3 else 1
    tiles = tiles[:, :channels]
    low = tiles.amin(dim=(1, 2, 3), keepdim=True)
    high = tiles.amax(dim=(1, 2, 3), keepdim=True)
    return ((tiles - low) / (high - low).clamp_min(1e-12)).nan_to_num(0.5)


def tile_grid(scaled: np.ndarray) -> np.ndarray:
    """Tiles (count, channels, height, width) in [0, 1] as one grid image: (H, W) or (H, W, 3) uint8."""
    count, channels, height, width = scaled.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    # white (1.0) everywhere, then each tile written into its cell: a 1-pixel gap below and right
    # of every tile and a border above and left of the grid (np.pad costs as much as the rest)
    grid = np.ones((channels, rows * (height + 1) + 1, columns * (width + 1) + 1), dtype=np.float32)
    cells = grid[:, 1:, 1:].reshape(channels, rows, height + 1, columns, width + 1)  # a view
    tiles = np.ones((rows * columns, channels, height, width), dtype=np.float32)
    tiles[:count] = scaled
    cells[:, :, :height, :, :width] = tiles.reshape(rows, columns, channels, height, width).transpose(2, 0, 3, 1, 4)
    pixels = (grid * 255).round().astype(np.uint8)
    return pixels[0] if channels == 1 else pixels.transpose(1, 2, 0)


# Tiles smaller than this (8 x 8 digits, 3 x 3 or 7 x 7 kernels) have too few neighbouring
# pixels, and too many at the edge, for their roughness to say smooth from noisy.
MIN_FILTER_SIDE = 10


def filter_roughness(tiles: torch.Tensor) -> torch.Tensor | None:
    """How much the first layer's filters look like white noise, on the device (no sync): per
    tile and channel, the mean squared difference of neighbouring pixels over twice the
    variance (white noise: 1; smooth, structured filters: near 0), averaged over the channels;
    the median over the tiles. Affine-invariant, so the scaled tiles of first_layer_tiles do.
    None for tiles too small to judge."""
    height, width = tiles.shape[2], tiles.shape[3]
    if min(height, width) < MIN_FILTER_SIDE:
        return None
    across = tiles.diff(dim=3).square().mean(dim=(2, 3))
    down = tiles.diff(dim=2).square().mean(dim=(2, 3))
    variance = tiles.var(dim=(2, 3), unbiased=False).clamp_min(1e-12)
    return ((across + down) / (4 * variance)).mean(dim=1).median()
