"""Left and right on the pages: the Datasets page's box for marking one's own data, and the
Train page's note on why images are not mirrored (see :mod:`core.data.laterality`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from studio import ui
from studio.safe_text import md_escape


def laterality(spec: str, size: int):
    """The :class:`core.data.laterality.Laterality` of a dataset the pages know: MedMNIST by
    its label names, an imported folder by its class folders and the person's mark."""
    from core.data.laterality import dataset_laterality, spec_class_names

    names = spec_class_names(spec)
    if names is None:  # e.g. an imported zip file: the loaded view has the names
        names = ui.dataset_view(spec, size)["class_names"]
    return dataset_laterality(spec, names)


def train_note(spec: str, size: int) -> bool:
    """On the Train page: say why images are not mirrored, when they are not.

    Returns:
        True when left and right matter (no flips, no flip test-time averaging).
    """
    side = laterality(spec, size)
    if side.side_matters:
        st.info(f"**Left and right matter here:** {md_escape(side.reason())}. Training uses no left-right flips "
                "or turns, and answers are not averaged with mirror images.", icon=":material/flip:")
    return side.side_matters


def mark_box(folder: Path, class_names: list[str]) -> None:
    """On the Datasets page, for an imported folder: let the person say whether left and
    right matter in their images; the answer is stored with the dataset, so training (now
    and later) picks it up."""
    from core.data.laterality import lateral_classes, read_mark, write_mark

    folder = Path(folder)
    named = lateral_classes(class_names)
    mark = read_mark(folder)
    current = mark if mark is not None else bool(named)
    key = f"sides-{folder.name}"
    on = st.checkbox("Left and right matter in these images (never mirror them)", value=current, key=key,
                     help="Tick this when a mirror image would show another class, e.g. a left and a right "
                          "organ, or a marker on one side. Training then uses no left-right flips or turns, and "
                          "classification does not average with mirror images.")
    if named:
        st.caption(f"Detected from the class names ({', '.join(md_escape(n) for n in named[:4])}).")
    if on != current or (mark is None and on):
        with ui.guard("saving your answer about left and right"):
            write_mark(folder, on)
            st.toast("Saved: runs trained on this dataset " + ("will not mirror images." if on else
                                                             "may mirror images."))
