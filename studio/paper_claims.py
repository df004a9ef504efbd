"""What the seed papers report (test accuracy), as data, for the Compare page.

Source: ``shared/docs/seed-models.md``, which quotes each paper's tables. Dataset keys are
MedMNIST names where the paper trained on that MedMNIST dataset, so a run on the same
dataset can be set beside the claim; other keys describe the paper's own data, which the
studio cannot reproduce and only shows for context.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import pandas as pd

# model key -> {"source": where the numbers are printed, "acc": dataset -> claimed ACC,
#               "note": anything a reader should know before comparing}
PAPER_CLAIMS: dict[str, dict[str, Any]] = {
    "medvcnn": {
        "source": "MedvCNN paper, Tables 6 and 7",
        "acc": {"pathmnist": 0.841, "chestmnist": 0.949, "octmnist": 0.847, "pneumoniamnist": 0.945,
                "breastmnist": 0.831, "tissuemnist": 0.595, "organamnist": 0.878},
        "note": "MedMNIST 28 px.",
    },
    "medvlstm": {
        "source": "MedvLSTM, MedvCNN paper, Table 8",
        "acc": {"pathmnist": 0.841, "chestmnist": 0.886, "octmnist": 0.917, "pneumoniamnist": 0.945},
        "note": "MedMNIST 28 px.",
    },
    "arn_cnn": {
        "source": "ARN-CNN paper, results section",
        "acc": {"MedNIST (6 classes, 64 px; not in MedMNIST)": 0.9996},
        "note": "The paper also reports log loss 0.0037 and Cohen's kappa 0.99.",
    },
    "snet": {
        "source": "S-Net paper, results section",
        "acc": {"bone-marrow cells (3 classes, private)": 0.9958},
        "note": "The data set is not public, so this claim cannot be checked here.",
    },
    "inception_v3": {
        "source": "S-Net paper, Table 4 (baseline)",
        "acc": {"bone-marrow cells (3 classes, private)": 0.9941},
        "note": "A baseline in the S-Net paper, on its private data.",
    },
    "vgg16": {
        "source": "S-Net paper, Table 4 (baseline)",
        "acc": {"bone-marrow cells (3 classes, private)": 0.9840},
        "note": "A baseline in the S-Net paper, on its private data.",
    },
    "resnet50": {
        "source": "S-Net paper, Table 4 (baseline)",
        "acc": {"bone-marrow cells (3 classes, private)": 0.9280},
        "note": "A baseline in the S-Net paper, on its private data.",
    },
    "quadsnet": {
        "source": "QuadSNet paper, Table III",
        "acc": {"pneumonia chest X-ray (paper's own split)": 0.980, "COVID CT": 0.969,
                "skin lesion": 0.928},
        "note": "The paper's own data sets and splits; F1 .980 / .980 / .945.",
    },
    "bloodcnn": {
        "source": "Blood-cell paper, results section",
        "acc": {"bloodmnist": 0.63},
        "note": "On the full-resolution peripheral blood cell images BloodMNIST is made from.",
    },
    "cnn_lstm": {
        "source": "Blood-cell paper, results section",
        "acc": {"bloodmnist": 0.98},
        "note": "On the full-resolution peripheral blood cell images BloodMNIST is made from, "
                "with a pretrained feature extractor.",
    },
}


def claims_for(model: str) -> dict[str, Any] | None:
    """The claims of one model key, or None when its paper reports none."""
    return PAPER_CLAIMS.get(model)


def claims_table(runs: Iterable[Mapping[str, Any]],
                 dataset_label: Callable[[Any], str] | None = None) -> pd.DataFrame:
    """Paper claims beside measured test accuracy, one row per run of a seed model.

    Args:
        runs: leaderboard rows with ``run`` (a label), ``model``, ``dataset``,
            ``image_size`` and ``test_acc``.
        dataset_label: how a dataset is named for people (an imported folder's name, never
            its path on the server); the dataset as given when None.

    Returns:
        Columns ``run``, ``model``, ``dataset``, ``paper claims (ACC)``,
        ``measured here (ACC)``, ``difference``, ``source``; measured is empty when the
        run's dataset is not one the paper reports on.
    """
    rows = []
    for r in runs:
        claim = claims_for(str(r.get("model")))
        if claim is None:
            continue
        claimed = claim["acc"].get(r.get("dataset"))
        dataset = dataset_label(r.get("dataset")) if dataset_label else r.get("dataset")
        measured = r.get("test_acc")
        if claimed is None:
            others = ", ".join(f"{k} {v:.3f}" for k, v in claim["acc"].items())
            rows.append({"run": r.get("run"), "model": r.get("model"), "dataset": dataset,
                         "paper claims (ACC)": None, "measured here (ACC)": measured, "difference": None,
                         "source": f"{claim['source']}: not reported on {dataset}; reported: {others}"})
            continue
        diff = measured - claimed if isinstance(measured, (int, float)) else None
        size = r.get("image_size")
        note = claim["note"] + (f" This run used {size} px." if size and size != 28 else "")
        rows.append({"run": r.get("run"), "model": r.get("model"), "dataset": dataset,
                     "paper claims (ACC)": claimed, "measured here (ACC)": measured, "difference": diff,
                     "source": f"{claim['source']}. {note}".strip()})
    return pd.DataFrame(rows, columns=["run", "model", "dataset", "paper claims (ACC)", "measured here (ACC)",
                                       "difference", "source"])
