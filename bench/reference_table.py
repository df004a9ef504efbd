"""The MedMNIST v2 benchmark table, kept as data in ``bench/medmnist_v2.csv``.

Source: Yang et al., "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D
biomedical image classification", Scientific Data 10, 41 (2023), Table 3 (test split,
AUC and ACC as ``medmnist.Evaluator`` computes them), as copied into
``shared/docs/benchmarks.md``.
"""

from __future__ import annotations

import csv
from pathlib import Path

TABLE = Path(__file__).with_name("medmnist_v2.csv")
SOURCE = "MedMNIST v2 (Yang et al., Scientific Data 2023), Table 3"


def rows_for(dataset: str) -> list[dict]:
    """The table's rows for one dataset: method, auc, acc (floats)."""
    with TABLE.open(newline="") as fh:
        return [{"method": r["method"], "auc": float(r["auc"]), "acc": float(r["acc"])}
                for r in csv.DictReader(fh) if r["dataset"] == dataset.lower()]
