"""Mixed precision against float32 on CUDA: the CNN of bench/overhead.py (channels 64, 128, 256,
CIFAR-size synthetic images, batch 256), trained with the same seed in fp32, bf16 (autocast,
no scaler) and fp16 (autocast and a gradient scaler). Prints each one's step time (plain loop
and with the default instrumentation), final validation accuracy, and how far its loss curve
(smoothed over 20 steps) strays from fp32's.

    python bench/precision.py [--epochs 10] [--repeats 3]
Ends with one line: fp32_ms=<A> bf16_ms=<B> fp16_ms=<C> bf16_loss_gap=<G> fp16_loss_gap=<H>
(ms: instrumented step time; gap: the largest difference of the smoothed curves, as a fraction of fp32's first loss)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench.overhead import TimingSink, bench_config, plain_step_seconds
from trainer.loop import train

PRECISIONS = ("fp32", "bf16", "fp16")


def smoothed(values: np.ndarray, window: int = 20) -> np.ndarray:
    return np.convolve(values, np.ones(window) / window, mode="valid")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/precision.py needs a CUDA device")
    plain: dict[str, float] = {}
    instrumented: dict[str, float] = {}
    curves: dict[str, np.ndarray] = {}
    accuracy: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        configs = {p: bench_config("cnn", "cuda", p, args.epochs, Path(folder)) for p in PRECISIONS}
        plain_step_seconds(configs["fp32"])  # warm-up
        for precision, config in configs.items():
            plain_runs, instrumented_runs = [], []
            for _ in range(args.repeats):
                plain_runs.append(plain_step_seconds(config))
                sink = TimingSink()
                result = train(config, sink)
                assert result.status == "succeeded", result.message
                assert sink.info is not None
                instrumented_runs.append((sink.last - sink.started) / sink.info.total_steps)
            plain[precision] = statistics.median(plain_runs)
            instrumented[precision] = statistics.median(instrumented_runs)
            curves[precision] = sink.get("loss")[1]
            accuracy[precision] = float(sink.get("val_acc")[1][-1])
            print(f"{precision}: {result.message}")
    reference = smoothed(curves["fp32"])
    gaps = {p: float(np.max(np.abs(smoothed(curves[p]) - reference)) / reference[0]) for p in PRECISIONS}
    print(
        f"CNN on {torch.cuda.get_device_name()}, {args.epochs} epochs x {args.repeats} repeats, torch {torch.__version__}"
    )
    print(
        "precision  plain ms/step  instrumented ms/step  ratio  final val acc  first loss  last loss  largest gap to fp32 / first loss"
    )
    for p in PRECISIONS:
        print(
            f"{p:9s}  {plain[p] * 1e3:12.3f}  {instrumented[p] * 1e3:20.3f}  {instrumented[p] / plain[p]:5.3f}"
            f"  {accuracy[p]:13.4f}  {curves[p][0]:10.4f}  {curves[p][-1]:9.4f}  {gaps[p]:19.3f}"
        )
    print(
        f"fp32_ms={instrumented['fp32'] * 1e3:.3f} bf16_ms={instrumented['bf16'] * 1e3:.3f} "
        f"fp16_ms={instrumented['fp16'] * 1e3:.3f} bf16_loss_gap={gaps['bf16']:.3f} fp16_loss_gap={gaps['fp16']:.3f}"
    )


if __name__ == "__main__":
    main()
