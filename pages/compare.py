"""Compare: the leaderboard of runs, side-by-side charts, paper claims, and run housekeeping."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core.csv_safe import frame_to_csv_bytes
from studio import charts, paper_claims, ui
from studio.safe_text import md_escape
from studio.downloads import run_card
from studio.per_class_table import per_class_section
from studio.run_files import read_predictions, read_run, recipe_for
from studio.labels import class_label, class_labels

HIGHER = ["ACC", "AUC", "Macro F1", "Kappa"]
LOWER = ["Log loss", "ECE", "Parameters", "Training time (s)", "Latency (ms)"]
NUMERIC = ["Size (px)", "Test ACC", "Test AUC", "Macro F1", "Parameters", "Training time (s)", "Latency (ms)", "Epochs"]
CURVES = {"val_auc": "Validation AUC", "val_acc": "Validation accuracy", "val_loss": "Validation loss",
          "train_loss": "Training loss"}


def leaderboard(rows: list[dict]) -> pd.DataFrame:
    """One row per run, with the columns a person compares on."""
    return pd.DataFrame([{
        "Run": r["name"], "Status": "Damaged" if r.get("damaged") else ui.status_label(r["status"]), "Dataset": ui.dataset_label(r["dataset"]),
        "Model": r["model"], "Size (px)": r["image_size"], "Test ACC": r["test_acc"], "Test AUC": r["test_auc"],
        "Macro F1": r["test_f1"], "Parameters": r["params_count"], "Training time (s)": r["train_seconds"],
        "Latency (ms)": r["latency_ms"], "Epochs": r["epochs_done"], "Tags": ", ".join(r["tags"]),
        "Created": (r["created"] or "")[:19].replace("T", " "), "Problem": r["error"] or "", "Run id": r["run_id"],
    } for r in rows], columns=["Run", "Status", "Dataset", "Model", "Size (px)", "Test ACC", "Test AUC", "Macro F1",
                               "Parameters", "Training time (s)", "Latency (ms)", "Epochs", "Tags", "Created",
                               "Problem", "Run id"]).astype({c: float for c in NUMERIC})


def seeds_section(rows: list[dict]) -> None:
    from core.runs.leaderboard import mean_std_text, seed_groups

    groups = [{"Dataset": ui.dataset_label(g["dataset"]), "Model": g["model"], "Size (px)": g["image_size"],
               "Recipe": g["recipe"], "Seeds": ", ".join(map(str, g["seeds"])), "Runs": g["runs"],
               "Test ACC": mean_std_text(g["acc"]), "Test AUC": mean_std_text(g["auc"])}
              for g in seed_groups(rows, recipe_for, lambda r: read_run(r["run_id"])["eval"].get("test"))]
    if not groups:
        return
    st.subheader("Repeated with several seeds")
    st.caption("Runs that differ only by their random seed, summarised as mean ± standard deviation of the test "
               "scores: the spread says how much of a difference between models could be chance.")
    st.dataframe(pd.DataFrame(groups), hide_index=True)


def task_and_classes(r: dict, data: dict) -> tuple[str | None, list[str] | None]:
    test = data[r["run_id"]]["eval"].get("test") or {}
    meta = data[r["run_id"]]["meta"]
    return test.get("task") or meta.get("task"), test.get("class_names") or meta.get("class_names")


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


def honesty_section(selected: list[dict]) -> None:
    """A warning for each selected run that is near chance or below the quick baseline."""
    from studio.run_outcome import show_verdict, verdict_for

    for r in selected:
        if r["status"] == "completed":
            show_verdict(verdict_for(r["run_id"]), who=r["label"])


def roc_section(selected: list[dict], data: dict) -> None:
    curves_by_run = {r["label"]: (data[r["run_id"]]["eval"].get("test") or {}).get("roc") or [] for r in selected}
    classes, default = charts.roc_default_class(curves_by_run)  # a class every selected run has
    if not classes:
        st.info("No ROC curves yet: they appear once a run has finished and been evaluated.")
        return
    task = next(((data[r["run_id"]]["eval"].get("test") or {}).get("task") for r in selected), None)
    chosen = st.selectbox("ROC curve of class", classes, index=default, format_func=lambda c: class_label(c, task),
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
            names = class_labels(test["class_names"], test.get("task"))  # "grade 3" for an ordinal "3"
            col.plotly_chart(charts.confusion_heatmap(test["confusion_matrix"], names, r["name"]),
                             key=f"cm-{r['run_id']}")


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
    # Datasets by their readable name: an import's server path never reaches the page.
    table = paper_claims.claims_table([{**r, "run": r["label"]} for r in selected], dataset_label=ui.dataset_label)
    if table.empty:
        st.caption("None of the selected runs uses a seed paper's architecture, so there are no paper claims "
                   "to set beside them.")
        return
    for c in ("paper claims (ACC)", "measured here (ACC)", "difference"):  # "-" for no claim, never a raw None
        table[c] = [f"{v:+.3f}" if c == "difference" and pd.notna(v) else f"{v:.3f}" if pd.notna(v) else "-"
                    for v in table[c]]
    st.dataframe(table, hide_index=True)
    st.caption("Papers train longer, on their own splits and sometimes at other sizes; a gap is a reason to look "
               "closer, not proof either way.")


def with_predictions(selected: list[dict], data: dict) -> list[tuple[dict, dict, str, list[str]]]:
    """(run, test predictions, task, class names) for the selected runs that saved predictions;
    says which runs have none."""
    found, missing = [], []
    for r in selected:
        preds = read_predictions(r["run_id"])
        task, names = task_and_classes(r, data)
        if preds is None or not task or not names:
            missing.append(r["label"])
        else:
            found.append((r, preds, task, names))
    if missing:
        st.caption(f"No saved test predictions for {', '.join(map(md_escape, missing))} (unfinished, or trained by "
                   "an older version: `python -m core eval RUN_ID` writes them).")
    return found


def uncertainty_section(selected: list[dict], data: dict) -> None:
    from core.uncertainty import per_class_uncertainty

    rows = []
    for r, preds, task, names in with_predictions(selected, data):
        for c in per_class_uncertainty(preds["test_scores"], preds["test_labels"], names, task):
            rows.append({"Run": r["label"], "Class": c["class"], "Test images": c["n"],
                         "Mean entropy (nats)": c["mean_entropy"], "Mean top probability": c["mean_max_prob"],
                         "Spread of top probability (std)": c["std_max_prob"]})
    if not rows:
        st.info("No per-class uncertainty yet: it is computed from a finished run's saved test predictions.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in
        ("Mean entropy (nats)", "Mean top probability", "Spread of top probability (std)")})
    st.caption("Grouped by the true class of each test image, as in the ARN-CNN paper: the mean "
               "predictive entropy (0 = certain) and the mean and spread (standard deviation) of the top "
               "probability. A class with high entropy or a wide spread is one the model is often unsure about.")


def calibration_section(selected: list[dict], data: dict) -> None:
    from core.calibration import calibration_report

    reports = []
    for r, preds, task, names in with_predictions(selected, data):
        temperature = data[r["run_id"]]["meta"].get("temperature")
        reports.append((r, calibration_report(preds["test_scores"], preds["test_labels"], task,
                                              preds.get("test_logits"), temperature)))
    if not reports:
        st.info("No reliability diagrams yet: they are drawn from a finished run's saved test predictions.")
        return
    st.dataframe(pd.DataFrame([{
        "Run": r["label"], "ECE as trained": rep["before"]["ece"], "Temperature": rep["temperature"],
        "ECE with temperature": rep["after"]["ece"] if rep["after"] else None} for r, rep in reports]),
        hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.3f")
                                        for c in ("ECE as trained", "Temperature", "ECE with temperature")})
    st.caption("On the test split. A calibrated model's points lie on the dotted diagonal: of the answers given "
               "with 80 % confidence, 80 % are right. The temperature was fitted on the validation split; "
               "Classify applies it when you tick 'Calibrated probabilities'. ECE is the expected calibration "
               "error (lower is better).")
    for start in range(0, len(reports), 3):
        cols = st.columns(3)
        for col, (r, rep) in zip(cols, reports[start:start + 3]):
            col.plotly_chart(charts.reliability_chart(rep, r["name"]), key=f"rel-{r['run_id']}")


def explanation_section(selected: list[dict]) -> None:
    from core.explain import METHOD_LABELS, overlay
    from core.paths import data_dir
    from core.runs import Run
    from studio import side_by_side

    found = side_by_side.groups(selected)
    if not found:
        st.info("Heatmaps need a finished neural-network run (classical baselines have none).")
        return
    keys = sorted(found, key=lambda k: -len(found[k]))
    key = keys[0]
    if len(keys) > 1:
        st.info("Only runs of the same dataset and image size can be shown the same test images; the selected "
                "runs were trained on different ones, so pick which to compare.", icon=":material/info:")
        key = st.selectbox("Runs trained on", keys, key="explain_group",
                           format_func=lambda k: f"{ui.dataset_label(k[0])}, {k[1]} px ({len(found[k])} runs)")
    runs = found[key]
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    methods = list(METHOD_LABELS)
    method = c1.selectbox("Explanation method", methods, format_func=METHOD_LABELS.get, key="explain_method",
                          help="Grad-CAM is quick and shows regions; the others work pixel by pixel and take longer.")
    if c2.button("Draw other images", icon=":material/casino:", key="explain_redraw"):
        st.session_state["explain_draw"] = st.session_state.get("explain_draw", 0) + 1
    draw = st.session_state.get("explain_draw", 0)
    first = Run(Path(runs[0]["dir"]))
    sample = None
    with ui.guard("loading the test images", "check that the dataset is in the data directory, then reload"):
        sample = side_by_side.test_sample(str(first.dir), side_by_side.params_stamp(first), str(data_dir()), draw)
    if sample is None:
        return
    with st.spinner("Explaining the test images..."):
        results = {}
        for r in runs:
            run = Run(Path(r["dir"]))
            with ui.guard(f"explaining the images with {r['name']}", "try another explanation method"):
                results[r["run_id"]] = side_by_side.explained(str(run.dir), ui.file_stamp(run.best_checkpoint),
                                                              sample["images"], method)
    widths = [1] * (1 + len(runs))
    head = st.columns(widths)
    head[0].markdown("**Test image**")
    for col, r in zip(head[1:], runs):
        col.markdown(f"**{md_escape(r['label'])}**")
    for i, (image, truth, index) in enumerate(zip(sample["images"], sample["truth"], sample["indices"])):
        shown = side_by_side.display_image(image)
        cols = st.columns(widths)
        cols[0].image(shown, caption=f"{sample['split']} image {index} · true: {md_escape(truth)}", width="stretch")
        for col, r in zip(cols[1:], runs):
            if r["run_id"] not in results:
                continue
            res = results[r["run_id"]][i]
            mark = "" if sample["task"] == "multi-label" else ("✓ " if res["label"] == truth else "✗ ")
            col.image(overlay(shown, res["heat"]), width="stretch",
                      caption=f"{mark}{md_escape(res['label'])} · {res['probability']:.0%}")
    st.caption(f"{METHOD_LABELS[method]} of each model's own answer (red: what drove it). Under each heatmap: the "
               "predicted class and its probability; ✓ when it is the true class.")
    from core.explain_words import METHOD_DESCRIPTIONS, METHODS_DISAGREE

    st.caption(f"{METHOD_DESCRIPTIONS[method]} {METHODS_DISAGREE}")


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
                    store.rename(row["run_id"], new_name, owner=owner)
                    st.rerun()
        with c2:
            tags = st.text_input("Tags (comma separated)", value=", ".join(row["tags"]), key=f"tags-{row['run_id']}",
                                 help="Short words such as 'baseline' or 'final' to find runs by.")
            if st.button("Save tags", key="tag"):
                with ui.guard("saving the tags"):
                    store.set_tags(row["run_id"], [t for t in tags.split(",")], owner=owner)
                    st.rerun()
        mine = row.get("owner") == owner
        if ui.demo_mode() and not mine:
            st.caption("In this demo you can delete only the runs you started.")
            return
        sure = st.checkbox(f"Yes, delete “{md_escape(row['name'])}” and all its files", key=f"sure-{row['run_id']}")
        if st.button("Delete run", type="primary", disabled=not sure, icon=":material/delete:", key="delete"):
            with ui.guard("deleting the run"):
                store.delete(row["run_id"], owner=owner)
                st.toast(f"Deleted {md_escape(row['name'])}.")
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
    st.download_button("Download the table as CSV", frame_to_csv_bytes(table), "runs.csv", "text/csv",
                       icon=":material/download:")
    if not rows:
        st.info("No run matches these filters.")
        return
    done = [r for r in rows if r["status"] == "completed"]
    by_id = {r["run_id"]: r for r in rows}
    from studio.run_links import linked_run, open_links

    linked = linked_run()  # a link to one run ("Compare it") opens that run
    default = [linked] if linked in by_id else [r["run_id"] for r in done[:3]]
    picked = st.multiselect("Runs to compare", list(by_id), default=default,
                            format_func=lambda i: by_id[i]["label"],
                            help="Pick two or more runs to see their curves, ROC curves and confusion matrices "
                                 "side by side.")
    selected = [by_id[i] for i in picked]
    if selected:
        data = {r["run_id"]: read_run(r["run_id"]) for r in selected}
        st.subheader("Scores")
        metrics_table(selected, data)
        honesty_section(selected)
        open_links(selected, compare=False)
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
        st.subheader("How sure were the models? Uncertainty per class")
        uncertainty_section(selected, data)
        st.subheader("Calibration: can the probabilities be trusted?")
        calibration_section(selected, data)
        st.subheader("The same test images, explained by each model")
        explanation_section(selected)
        st.subheader("Download a model or a report")
        run_card(selected, key="compare-dl")
    else:
        st.info("Pick runs above to compare them in detail.")
    st.subheader("Accuracy against size and training time")
    scatter_section(rows, selected)
    seeds_section(rows)
    manage(rows)


with ui.guard("showing the compare page"):
    main()
