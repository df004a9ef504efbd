"""Compare: the leaderboard of runs, side-by-side charts, paper claims, and run housekeeping."""

from pathlib import Path

import pandas as pd
import streamlit as st

from studio import charts, paper_claims, ui

HIGHER = ["ACC", "AUC", "Macro F1", "Kappa"]
LOWER = ["Log loss", "ECE", "Parameters", "Training time (s)", "Latency (ms)"]
NUMERIC = ["Size (px)", "Test ACC", "Test AUC", "Macro F1", "Parameters", "Training time (s)", "Latency (ms)", "Epochs"]
CURVES = {"val_auc": "Validation AUC", "val_acc": "Validation accuracy", "val_loss": "Validation loss",
          "train_loss": "Training loss"}


def leaderboard(rows: list[dict]) -> pd.DataFrame:
    """One row per run, with the columns a person compares on."""
    return pd.DataFrame([{
        "Run": r["name"], "Status": ui.status_label(r["status"]), "Dataset": ui.dataset_label(r["dataset"]),
        "Model": r["model"], "Size (px)": r["image_size"], "Test ACC": r["test_acc"], "Test AUC": r["test_auc"],
        "Macro F1": r["test_f1"], "Parameters": r["params_count"], "Training time (s)": r["train_seconds"],
        "Latency (ms)": r["latency_ms"], "Epochs": r["epochs_done"], "Tags": ", ".join(r["tags"]),
        "Created": (r["created"] or "")[:19].replace("T", " "), "Problem": r["error"] or "", "Run id": r["run_id"],
    } for r in rows], columns=["Run", "Status", "Dataset", "Model", "Size (px)", "Test ACC", "Test AUC", "Macro F1",
                               "Parameters", "Training time (s)", "Latency (ms)", "Epochs", "Tags", "Created",
                               "Problem", "Run id"]).astype({c: float for c in NUMERIC})


@st.cache_data(show_spinner=False, max_entries=256)
def _read_run(root: str, run_id: str, stamp: str) -> dict:
    from core.runs import Run

    run = Run(Path(root) / run_id)
    return {"eval": run.eval() or {}, "epochs": run.metrics(kind="epoch"), "meta": run.meta()}


def read_run(run_id: str) -> dict:
    """A run's eval.json, epoch metrics and meta, cached until its files change."""
    run = ui.store().get(run_id)
    stamp = "/".join(ui.file_stamp(p) for p in (run.eval_path, run.metrics_path, run.meta_path))
    return _read_run(str(ui.store().root), run_id, stamp)


def metrics_table(selected: list[dict], data: dict) -> None:
    rows = []
    for r in selected:
        test = data[r["run_id"]]["eval"].get("test") or {}
        rows.append({"Run": r["label"], "Dataset": ui.dataset_label(r["dataset"]), "Model": r["model"],
                     "ACC": test.get("acc"), "AUC": test.get("auc"), "Macro F1": (test.get("macro") or {}).get("f1"),
                     "Kappa": test.get("kappa"), "Log loss": test.get("log_loss"), "ECE": test.get("ece"),
                     "Parameters": r["params_count"], "Training time (s)": r["train_seconds"],
                     "Latency (ms)": r["latency_ms"]})
    df = pd.DataFrame(rows).set_index("Run")
    mark = "background-color: #ccfbf1; font-weight: 700"
    styled = df.style
    if len(df) > 1:  # with one run every value would be "the best"
        styled = styled.highlight_max(subset=HIGHER, props=mark, axis=0).highlight_min(subset=LOWER, props=mark,
                                                                                          axis=0)
    styled = (styled.format(precision=3, na_rep="-", subset=HIGHER + ["Log loss", "ECE"])
              .format("{:,.0f}", na_rep="-", subset=["Parameters"])
              .format("{:.1f}", na_rep="-", subset=["Training time (s)"])
              .format("{:.2f}", na_rep="-", subset=["Latency (ms)"]))
    st.dataframe(styled)
    if len(df) > 1:
            st.caption("The best value of each column is highlighted (highest for ACC, AUC, F1 and kappa; lowest "
                   "for log loss, calibration error ECE, size, training time and latency). Scores are on the test "
                   "split.")
    if len({r["dataset"] for r in selected}) > 1:
        st.warning("These runs were trained on different datasets, so their scores are not directly comparable.")


def roc_section(selected: list[dict], data: dict) -> None:
    curves_by_run = {r["label"]: (data[r["run_id"]]["eval"].get("test") or {}).get("roc") or [] for r in selected}
    classes = list(dict.fromkeys(c["class"] for curves in curves_by_run.values() for c in curves))
    if not classes:
        st.info("No ROC curves yet: they appear once a run has finished and been evaluated.")
        return
    binary = all(len(curves) == 2 for curves in curves_by_run.values())
    default = classes.index(classes[1]) if binary and len(classes) > 1 else 0
    chosen = st.selectbox("ROC curve of class", classes, index=default,
                          help="Each class against all the others (one-vs-rest).")
    items = [{"label": label, **c} for label, curves in curves_by_run.items() for c in curves
             if c["class"] == chosen and c.get("fpr")]
    st.plotly_chart(charts.roc_chart(items))


def confusion_section(selected: list[dict], data: dict) -> None:
    shown = [(r, data[r["run_id"]]["eval"].get("test") or {}) for r in selected]
    shown = [(r, t) for r, t in shown if t.get("confusion_matrix") and t.get("task") != "multi-label"]
    if not shown:
        st.info("No confusion matrices to show (they need a finished single-label run).")
        return
    for start in range(0, len(shown), 3):
        cols = st.columns(3)
        for col, (r, test) in zip(cols, shown[start:start + 3]):
            col.plotly_chart(charts.confusion_heatmap(test["confusion_matrix"], test["class_names"], r["name"]),
                             key=f"cm-{r['run_id']}")


def per_class_section(selected: list[dict], data: dict) -> None:
    rows = [{"run": r["label"], "class": c["class"], "f1": c["f1"]}
            for r in selected for c in (data[r["run_id"]]["eval"].get("test") or {}).get("per_class") or []]
    if rows:
        st.plotly_chart(charts.per_class_f1(pd.DataFrame(rows)))


def scatter_section(rows: list[dict], selected: list[dict]) -> None:
    df = pd.DataFrame([{"run": r["label"], "model": r["model"], "acc": r["test_acc"], "params": r["params_count"],
                        "time": r["train_seconds"]} for r in rows if r["status"] == "completed"])
    if df.empty:
        return
    picked = [r["label"] for r in selected]
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.scatter_runs(df[df["params"] > 0], "params", "acc", "parameters", "test accuracy",
                                        log_x=True, highlight=picked))
    c2.plotly_chart(charts.scatter_runs(df, "time", "acc", "training time (s)", "test accuracy", highlight=picked))


def claims_section(selected: list[dict]) -> None:
    table = paper_claims.claims_table([{**r, "run": r["label"]} for r in selected])
    if table.empty:
        st.caption("None of the selected runs uses a seed paper's architecture, so there are no paper claims "
                   "to set beside them.")
        return
    st.dataframe(table, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in ("paper claims (ACC)", "measured here (ACC)",
                                                                   "difference")})
    st.caption("Papers train longer, on their own splits and sometimes at other sizes; a gap is a reason to look "
               "closer, not proof either way.")


def manage(rows: list[dict]) -> None:
    store = ui.store()
    owner = ui.session_owner()
    with st.expander("Rename, tag or delete a run", icon=":material/edit:"):
        row = st.selectbox("Run", rows, format_func=lambda r: r["label"], key="manage_run")
        if row is None:
            return
        c1, c2 = st.columns(2)
        with c1:
            new_name = st.text_input("New name", value=row["name"], key=f"name-{row['run_id']}")
            if st.button("Rename", key="rename"):
                with ui.guard("renaming the run"):
                    store.rename(row["run_id"], new_name)
                    st.rerun()
        with c2:
            tags = st.text_input("Tags (comma separated)", value=", ".join(row["tags"]), key=f"tags-{row['run_id']}",
                                 help="Short words such as 'baseline' or 'final' to find runs by.")
            if st.button("Save tags", key="tag"):
                with ui.guard("saving the tags"):
                    store.set_tags(row["run_id"], [t for t in tags.split(",")])
                    st.rerun()
        mine = row.get("owner") == owner
        if ui.demo_mode() and not mine:
            st.caption("In this demo you can delete only the runs you started.")
            return
        sure = st.checkbox(f"Yes, delete “{row['name']}” and all its files", key=f"sure-{row['run_id']}")
        if st.button("Delete run", type="primary", disabled=not sure, icon=":material/delete:", key="delete"):
            with ui.guard("deleting the run"):
                store.delete(row["run_id"])
                st.toast(f"Deleted {row['name']}.")
                st.rerun()


def main() -> None:
    st.title("Compare runs")
    rows = ui.store().list_runs()
    if not rows:
        st.info("No runs yet. Train a model first; every run appears here with its scores.")
        ui.page_link("train", "Go to Train", icon=":material/model_training:")
        return
    seen: dict[str, int] = {}
    for r in rows:  # labels name legends and table rows, so they must be unique
        label = ui.run_label(r)
        seen[label] = seen.get(label, 0) + 1
        r["label"] = label if seen[label] == 1 else f"{label} ({r['run_id'][-4:]})"
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    datasets = c1.multiselect("Datasets", sorted({r["dataset"] for r in rows if r["dataset"]}),
                              format_func=ui.dataset_label, placeholder="all datasets")
    models = c2.multiselect("Models", sorted({r["model"] for r in rows if r["model"]}), placeholder="all models")
    finished = c3.checkbox("Finished runs only", value=False)
    rows = [r for r in rows if (not datasets or r["dataset"] in datasets) and (not models or r["model"] in models)
            and (not finished or r["status"] == "completed")]
    table = leaderboard(rows)
    st.dataframe(table, hide_index=True, column_config={
        "Size (px)": st.column_config.NumberColumn(format="%d"),
        "Epochs": st.column_config.NumberColumn(format="%d"),
        "Test ACC": st.column_config.NumberColumn(format="%.3f"),
        "Test AUC": st.column_config.NumberColumn(format="%.3f"),
        "Macro F1": st.column_config.NumberColumn(format="%.3f"),
        "Parameters": st.column_config.NumberColumn(format="localized"),
        "Training time (s)": st.column_config.NumberColumn(format="%.1f"),
        "Latency (ms)": st.column_config.NumberColumn(format="%.2f"),
    })
    st.download_button("Download the table as CSV", table.to_csv(index=False).encode(), "runs.csv", "text/csv",
                       icon=":material/download:")
    if not rows:
        st.info("No run matches these filters.")
        return
    done = [r for r in rows if r["status"] == "completed"]
    by_id = {r["run_id"]: r for r in rows}
    picked = st.multiselect("Runs to compare", list(by_id), default=[r["run_id"] for r in done[:3]],
                            format_func=lambda i: by_id[i]["label"],
                            help="Pick two or more runs to see their curves, ROC curves and confusion matrices "
                                 "side by side.")
    selected = [by_id[i] for i in picked]
    if selected:
        data = {r["run_id"]: read_run(r["run_id"]) for r in selected}
        st.subheader("Scores")
        metrics_table(selected, data)
        st.subheader("Learning curves")
        metric = st.radio("Curve", list(CURVES), format_func=CURVES.get, horizontal=True, label_visibility="collapsed")
        st.plotly_chart(charts.overlaid_curves({r["label"]: data[r["run_id"]]["epochs"] for r in selected},
                                               metric, CURVES[metric]))
        st.subheader("ROC curves")
        roc_section(selected, data)
        st.subheader("Confusion matrices")
        st.caption("Rows are the true class, columns what the model answered; the diagonal holds the correct answers.")
        confusion_section(selected, data)
        per_class_section(selected, data)
        st.subheader("What the papers claim")
        claims_section(selected)
    else:
        st.info("Pick runs above to compare them in detail.")
    st.subheader("Accuracy against size and training time")
    scatter_section(rows, selected)
    manage(rows)


with ui.guard("showing the compare page"):
    main()
