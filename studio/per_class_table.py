"""Compare's per-class section: F1 bars, and a table of sensitivity, specificity, precision,
recall, F1 and accuracy of every class of every selected run, on the test split (from
:mod:`core.per_class`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

RATES = ("Sensitivity", "Specificity", "Precision", "Recall", "F1", "Accuracy")


def per_class_frame(selected: list[dict], data: dict) -> pd.DataFrame:
    """One row per (run, class) with the one-vs-rest rates of the test split.

    Args:
        selected: the selected runs' index rows (with ``run_id`` and ``label``).
        data: run id -> ``{"eval": eval.json, ...}``, as the Compare page reads it.

    Returns:
        Columns ``Run``, ``Class``, ``Test images`` and :data:`RATES`; empty when no run
        has been evaluated.
    """
    from core.per_class import per_class_from_eval
    from studio.labels import class_label

    rows = []
    for r in selected:
        test = data[r["run_id"]]["eval"].get("test")
        for c in per_class_from_eval(test):
            rows.append({"Run": r["label"], "Class": class_label(c["class"], (test or {}).get("task")),
                         "Test images": c["support"],
                         "Sensitivity": c["sensitivity"], "Specificity": c["specificity"],
                         "Precision": c["precision"], "Recall": c["recall"], "F1": c["f1"],
                         "Accuracy": c["accuracy"]})
    return pd.DataFrame(rows, columns=["Run", "Class", "Test images", *RATES]).astype({k: float for k in RATES})


def per_class_section(selected: list[dict], data: dict) -> None:
    """Compare's "Per class" section: F1 bars per class and run, then the table of rates."""
    from studio import charts

    from studio.labels import class_label

    tests = {r["run_id"]: data[r["run_id"]]["eval"].get("test") or {} for r in selected}
    rows = [{"run": r["label"], "class": class_label(c["class"], tests[r["run_id"]].get("task")), "f1": c["f1"]}
            for r in selected for c in tests[r["run_id"]].get("per_class") or []]
    if rows:
        st.subheader("Per class")
        st.plotly_chart(charts.per_class_f1(pd.DataFrame(rows)))
    per_class_table(selected, data)


def per_class_table(selected: list[dict], data: dict) -> None:
    """The table and a caption saying what each rate means; nothing when no run has scores."""
    df = per_class_frame(selected, data)
    if df.empty:
        return
    st.dataframe(df, hide_index=True, column_config={k: st.column_config.NumberColumn(format="%.3f")
                                                     for k in RATES})
    st.caption("Each class against all the others, on the test split. Sensitivity (the same as recall): of the "
               "images that have the class, the share the model found. Specificity: of the images that do not, "
               "the share it correctly left out. Precision: of its answers for the class, the share that were "
               "right. Accuracy: the share of all test images on which it was right about this class, yes or "
               "no. An empty cell means there was no image to count.")
