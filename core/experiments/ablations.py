"""The seed papers' studies as data: which variants they compare and what each paper claims.

Each study lists its variants (a model name plus settings changed from the reference, the
first variant) and the paper's figure for every variant where the paper gives one
(``../shared/docs/seed-models.md`` and the papers in ``../shared/seeds``). A claim is an
accuracy on the paper's own data; it is shown beside the measured difference, never mixed
into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import StudioError


@dataclass(frozen=True)
class Variant:
    """One arm of a study: ``model`` trained with ``settings`` on top of the study's recipe."""

    label: str
    model: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A paper's comparison.

    Attributes:
        key: the name ``python -m core ablation --model KEY`` and the page use.
        title: what is compared, in words.
        source: the paper and table.
        variants: the reference first, then the variants compared with it.
        claims: dataset -> {variant label: the paper's ACC}; ``"*"`` is a claim on the
            paper's own data whatever the dataset here.
        claim_note: how to read the claims (which data they are on, or a claim without a figure).
    """

    key: str
    title: str
    source: str
    variants: tuple[Variant, ...]
    claims: dict[str, dict[str, float]] = field(default_factory=dict)
    claim_note: str = ""

    def claim_for(self, dataset: str, label: str) -> float | None:
        """The paper's ACC of ``label`` on ``dataset`` (or on its own data), or None."""
        for key in (str(dataset).lower(), "*"):
            if label in self.claims.get(key, {}):
                return self.claims[key][label]
        return None


STUDIES: dict[str, Study] = {s.key: s for s in (
    Study(
        "arn_cnn", "ARN-CNN: full model vs without attention vs without the residual connection",
        "ARN-CNN paper (seed 001), Table 6",
        (Variant("full", "arn_cnn"), Variant("no attention", "arn_cnn_no_attention"),
         Variant("no residual", "arn_cnn_no_residual")),
        claims={"*": {"full": 0.996, "no attention": 0.967, "no residual": 0.975}},
        claim_note="The paper's figures are test accuracies on MedNIST (6 classes, 64 px).",
    ),
    Study(
        "medvcnn", "MedvCNN vs MedvLSTM", "MedvCNN paper (seed 000), Tables 6-8",
        (Variant("MedvCNN", "medvcnn"), Variant("MedvLSTM", "medvlstm")),
        claims={"pathmnist": {"MedvCNN": 0.841, "MedvLSTM": 0.841},
                "chestmnist": {"MedvCNN": 0.949, "MedvLSTM": 0.886},
                "octmnist": {"MedvCNN": 0.847, "MedvLSTM": 0.917},
                "pneumoniamnist": {"MedvCNN": 0.945, "MedvLSTM": 0.945},
                "breastmnist": {"MedvCNN": 0.831}},
        claim_note="The paper reports test accuracy per MedMNIST dataset; other datasets have no paper figure.",
    ),
    Study(
        "bloodcnn", "Baseline CNN vs CNN-LSTM", "Blood-cell paper (seed 004)",
        (Variant("CNN", "bloodcnn"), Variant("CNN-LSTM", "cnn_lstm")),
        claims={"*": {"CNN": 0.63, "CNN-LSTM": 0.98}},
        claim_note="The paper's figures are accuracies on the 8-class peripheral blood cell set "
                   "(the source of BloodMNIST).",
    ),
    Study(
        "quadsnet", "QuadSNet with margin loss vs cross-entropy", "QuadSNet paper (seed 003), section III.C",
        (Variant("margin loss", "quadsnet", {"loss": "margin"}), Variant("cross-entropy", "quadsnet", {"loss": "ce"})),
        claim_note="The paper gives no figure: it says preliminary experiments found margin loss better than "
                   "cross-entropy.",
    ),
)}

#: Model names that lead to a study (any variant's model picks its study).
_ALIASES = {"medvlstm": "medvcnn", "cnn_lstm": "bloodcnn", "arn_cnn_no_attention": "arn_cnn",
            "arn_cnn_no_residual": "arn_cnn"}


def study_for(model: str) -> Study:
    """The study a model takes part in.

    Raises:
        StudioError: for a model no seed paper ablates, naming the ones that have a study.
    """
    key = _ALIASES.get(model, model)
    if key not in STUDIES:
        raise StudioError(f"no paper study includes '{model}'; ablations exist for: {', '.join(STUDIES)}")
    return STUDIES[key]
