"""Home: what the studio does, a one-click quick start, recent runs and the device."""

import pandas as pd
import streamlit as st

from studio import ui

QUICK = dict(dataset="breastmnist", model="medvcnn", image_size=28, epochs=10)


def quick_start() -> str:
    """Queue a small, fast run (MedvCNN on BreastMNIST, 28 px, the default recipe)."""
    from core.runs.submit import run_request, submit

    with st.spinner("Checking the BreastMNIST file (downloaded the first time, about 0.5 MB)..."):
        # As `python -m core train` does: a missing dataset fails here, before a run exists.
        request = run_request(QUICK["dataset"], QUICK["model"], "default", name="Quick start: MedvCNN on BreastMNIST",
                              check_data=True, image_size=QUICK["image_size"], epochs=QUICK["epochs"])
    return submit(ui.runner(), [request], owner=ui.session_owner())[0]


def recent_runs() -> None:
    rows = ui.store().list_runs()[:8]
    if not rows:
        st.info("No runs yet. Press **Train my first model** above, or set one up on the Train page.")
        return
    table = pd.DataFrame([{
        "Run": r["name"], "Status": "Damaged" if r.get("damaged") else ui.status_label(r["status"]), "Model": r["model"],
        "Dataset": ui.dataset_label(r["dataset"]), "Size (px)": r["image_size"],
        "Epochs": f"{r['epochs_done'] or 0} / {r['epochs'] or '?'}",
        "Test ACC": r["test_acc"], "Test AUC": r["test_auc"], "Started": (r["created"] or "")[:16].replace("T", " "),
    } for r in rows])
    st.dataframe(table, hide_index=True, column_config={
        "Test ACC": st.column_config.NumberColumn(format="%.3f"),
        "Test AUC": st.column_config.NumberColumn(format="%.3f"),
    })
    from studio.run_links import open_links
    from studio.run_outcome import show_verdict, verdict_for

    for r in rows:  # a run near chance or below the quick baseline says so, with what to try
        if r["status"] == "completed":
            show_verdict(verdict_for(r["run_id"]), who=r["name"] or r["run_id"])
    open_links([r for r in rows if r["status"] == "completed"][:3])  # each link opens that run


def main() -> None:
    st.title("Medical Image Classification Studio")
    st.markdown(
        "Train image classifiers for medical images — X-rays, ultrasound, microscopy, skin photos — "
        "without writing code, on the public MedMNIST collection or on your own labelled images.  \n"
        "Watch the learning curves while a model trains, then compare models side by side on "
        "accuracy, AUC, size and speed, and see how they stand against what their papers report.  \n"
        "Finally, classify new images: every answer comes with its probabilities, a confidence you "
        "can read, and a heatmap of the regions that drove it."
    )
    if ui.limits_text():
        st.info(ui.limits_text(), icon=":material/info:")
    left, right = st.columns([3, 2], gap="large")
    with left, st.container(border=True):
        st.subheader("Quick start")
        st.write("Train a small network (MedvCNN) to tell malignant from benign breast ultrasound "
                 "images (BreastMNIST, 28 × 28 px). It takes about a minute on a laptop CPU.")
        if st.button("Train my first model", type="primary", icon=":material/rocket_launch:"):
            with ui.guard("starting the quick-start run"):
                run_id = quick_start()
                st.success(f"Training started (run `{run_id}`). Follow it live on the Train page.")
                ui.page_link("train", "Watch it train", icon=":material/model_training:")
            if not ui.medmnist_on_disk().get(QUICK["dataset"]):
                ui.page_link("datasets", "Download or import BreastMNIST on the Datasets page",
                             icon=":material/folder_open:")
    with right, st.container(border=True):
        st.subheader("How it works")
        ui.page_link("datasets", "1. Look at a dataset", icon=":material/folder_open:")
        ui.page_link("train", "2. Train a model", icon=":material/model_training:")
        ui.page_link("compare", "3. Compare the results", icon=":material/leaderboard:")
        ui.page_link("classify", "4. Classify new images", icon=":material/image_search:")
        st.caption(f"Training runs on: **{ui.device_label()}**")
    st.subheader("Recent runs")
    recent_runs()


with ui.guard("showing the home page"):
    main()
