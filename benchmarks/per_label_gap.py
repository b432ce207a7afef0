"""Which unseen labels one model loses to another: per-label ZSL AP averaged over seed runs.

    python benchmarks/per_label_gap.py RUNS_A RUNS_B

RUNS_A, RUNS_B: glob patterns of run folders (each holding `per_label_zsl.csv`, written by
`mlzsl train`), e.g. 'cmp3/runs/ml2p-minilm-*' 'cmp3/runs/biam-minilm-*'. Prints every unseen
label's mean AP under both, sorted by the gap, and the mean gap per colour word and per shape
word (scenes labels are "colour shape").
"""

from __future__ import annotations

import csv
import glob
import sys
from collections import defaultdict

import numpy as np


def mean_ap(pattern: str) -> dict[str, float]:
    """Label -> AP (percent) averaged over the run folders matching ``pattern``."""
    values: dict[str, list[float]] = defaultdict(list)
    folders = sorted(glob.glob(f"{pattern}/per_label_zsl.csv"))  # finished runs only
    if not folders:
        sys.exit(f"no finished run folder matches {pattern!r}")
    for folder in folders:  # each a per_label_zsl.csv
        with open(folder, newline="") as f:
            for row in csv.DictReader(f):
                values[row["label"]].append(100 * float(row["ap"]))
    return {label: float(np.mean(v)) for label, v in values.items()}


def main() -> None:
    a, b = mean_ap(sys.argv[1]), mean_ap(sys.argv[2])
    gaps = sorted(((a[k] - b[k], k) for k in a), reverse=True)
    print(f"{'label':<18} {'A':>6} {'B':>6} {'A - B':>6}")
    for gap, label in gaps:
        print(f"{label:<18} {a[label]:6.1f} {b[label]:6.1f} {gap:+6.1f}")
    for part, name in ((0, "colour"), (-1, "shape")):
        groups: dict[str, list[float]] = defaultdict(list)
        for gap, label in gaps:
            groups[label.split()[part]].append(gap)
        means = ", ".join(f"{k} {np.mean(v):+.1f}" for k, v in sorted(groups.items()))
        print(f"mean A - B by {name}: {means}")


if __name__ == "__main__":
    main()
