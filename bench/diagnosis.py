"""How early the diagnosis names the planted pathologies of trainer.pathologies, and whether it
ever warns on the healthy runs, for several seeds (the test suite checks seed 0's own).

Each run trains for real on CPU; its series are cut at 10 %, 25 %, 50 % of the steps and
diagnosed as a running run (trainer.cuts), then whole as an ended one.

    python bench/diagnosis.py [--seeds 0 1 2 3]
Ends with one line: named_10=<n> named_25=<n> named_50=<n> named_end=<n> healthy_warned=<n> runs=<n>
(sums over the seeds: pathologies named at each cut, healthy runs with a warning at any cut).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.cuts import CUTS, cut_table, train_all
from trainer.pathologies import HEALTHY, PATHOLOGIES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args()
    named = dict.fromkeys(CUTS, 0)
    warned = 0
    for seed in args.seeds:
        started = time.perf_counter()
        table = cut_table(train_all(seed))
        print(f"seed {seed} ({time.perf_counter() - started:.0f} s):")
        print(table.markdown())
        for fraction in CUTS:
            named[fraction] += len(table.named[fraction])
            missed = [name for name in PATHOLOGIES if name not in table.named[fraction]]
            if missed and fraction in (0.25, 1.0):
                print(f"  not named at {fraction:.0%}: {', '.join(missed)}")
        loud = {name for fraction in CUTS for name in HEALTHY if name not in table.quiet[fraction]}
        warned += len(loud)
        if loud:
            print(f"  healthy runs warned at some cut: {', '.join(sorted(loud))}")
    labels = {0.10: "named_10", 0.25: "named_25", 0.50: "named_50", 1.0: "named_end"}
    figures = " ".join(f"{labels[fraction]}={named[fraction]}" for fraction in CUTS)
    print(f"{figures} healthy_warned={warned} runs={len(args.seeds) * (len(HEALTHY) + len(PATHOLOGIES))}")


if __name__ == "__main__":
    main()
