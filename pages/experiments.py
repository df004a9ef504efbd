"""Experiments: plan one, follow its trials live, see what mattered, and use the best run."""

import streamlit as st

from studio import experiment_builder as builder
from studio import experiment_charts as ec
from studio import run_links, ui
from studio.safe_text import md_escape

PARAM = "exp"  # the query parameter that names the experiment shown
LIVE = ("planned", "running")
KIND_NAMES = {"sweep": "sweep", "seeds": "seeds", "ablation": "ablation", "auto": "Auto"}


def experiment_list(store) -> list[dict]:
    """The stored experiments with their best run so far (chosen on validation)."""
    from core.errors import StudioError
    from core.experiments import get_experiment, list_experiments, member_rows, select_best

    rows = list_experiments(store)
    for row in rows[:50]:
        row["best"], row["best_run"] = None, None
        try:
            exp = get_experiment(store, row["exp_id"])
        except StudioError:
            continue
        row["status"] = exp.status
        best = select_best(member_rows(store, exp), exp.metric)
        if best is not None:
            other = "val_acc" if exp.metric == "val_auc" else "val_auc"
            row["best"] = best.get(exp.metric) if best.get(exp.metric) is not None else best.get(other)
            row["best_run"] = best["run_id"]
    return rows


def list_table(rows: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame([{
        "Name": r["name"], "Kind": KIND_NAMES.get(r["kind"], str(r["kind"])), "Dataset": ui.dataset_label(r["dataset"]),
        "Status": ui.status_label(r["status"]) if r["status"] in ui.STATUS_LABELS else str(r["status"]),
        "Runs": f"{r['members']}/{r['planned']}" if r.get("planned") else str(r["members"]),
        "Best (validation)": r.get("best"), "Best run": r.get("best_run") or "-", "Started": ui.fmt_time(r["created"]),
    } for r in rows])
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"Best (validation)": st.column_config.NumberColumn(format="%.4f")})


def choose(rows: list[dict]) -> str:
    """The experiment to show: the one just launched, the URL's, the last picked, else the newest."""
    options = {r["exp_id"]: f"{r['name']} · {KIND_NAMES.get(r['kind'], r['kind'])} · {r['status']}" for r in rows}
    key = "experiments_pick"
    wanted = st.session_state.pop(builder.CHOSEN, None) or st.query_params.get(PARAM) or st.session_state.get(key)
    if wanted not in options:
        wanted = next(iter(options))
    st.session_state[key] = wanted
    st.query_params[PARAM] = wanted

    def picked() -> None:
        st.query_params[PARAM] = st.session_state[key]

    return st.selectbox("Experiment", list(options), format_func=options.get, key=key, on_change=picked)


def header(store, exp, board: list[dict]) -> None:
    from core.experiments import snapshot

    snap = snapshot(store, exp, board)
    icon = ui.STATUS_ICONS.get(exp.status, "")
    st.markdown(f"{icon} **{md_escape(exp.name)}** · {KIND_NAMES.get(exp.kind, exp.kind)} on "
                f"{md_escape(ui.dataset_label(exp.dataset))} · {md_escape(exp.status)} · ranked by "
                f"{ec.METRIC_NAMES[exp.metric]}")
    c = st.columns(4)
    planned = snap["planned"]
    c[0].metric("Runs finished", f"{snap['done']}/{planned}" if planned else str(snap["done"]))
    c[1].metric("Training now", snap["counts"].get("running", 0))
    c[2].metric("Elapsed", ui.fmt_duration(snap["elapsed_s"]))
    best = snap["best"]
    c[3].metric("Best so far", ui.fmt_metric(best["score"], 4) if best else "-")
    if exp.status in LIVE:
        if exp.kind == "auto":
            share = snap["elapsed_s"] / (60 * float(exp.plan["minutes"]))
            st.progress(min(1.0, share), text=f"{ui.fmt_duration(snap['elapsed_s'])} of the "
                                              f"{float(exp.plan['minutes']):g}-minute budget")
        elif planned:
            st.progress(min(1.0, snap["done"] / planned), text=f"{snap['done']} of {planned} runs finished")
    if exp.error:
        st.warning(md_escape(ui.sentence(exp.error)), icon=":material/warning:")


def use_best(store, exp, board: list[dict]) -> None:
    """"Use the best run": the run chosen on validation, opened on Classify (and Compare)."""
    from core.experiments import select_best

    best = select_best(board, exp.metric)
    if best is None:
        st.caption("No run has finished yet, so there is no best run to use.")
        return
    word = "best run" if exp.status not in LIVE else "best run so far"
    st.markdown(f"**The {word}:** {md_escape(best['run_id'])} ({md_escape(ec.settings_text(best))}), "
                f"{ec.METRIC_NAMES[exp.metric]} {ui.fmt_metric(best.get(exp.metric), 4)}")
    cols = st.columns([1, 1, 2])
    with cols[0]:
        if run_links.can_classify(best):
            run_links.run_link("classify", best["run_id"], f"Use the {word} on Classify", icon=":material/image_search:")
        else:
            st.caption("It is a classical baseline: scores only, no model to classify with.")
    with cols[1]:
        run_links.run_link("compare", best["run_id"], "Open it on Compare", icon=":material/leaderboard:")


@st.cache_data(show_spinner=False, max_entries=32)
def _importances(root: str, exp_id: str, finished: tuple) -> dict:
    """Optuna's importances, recomputed only when another trial finishes."""
    from core.experiments import get_experiment, parameter_importances
    from core.runs import RunStore

    store = RunStore(root)
    return parameter_importances(store, get_experiment(store, exp_id))


def what_mattered(store, exp, board: list[dict]) -> None:
    st.markdown("**Which settings mattered**")
    if exp.kind != "auto":
        st.caption("Parameter importances come from an Auto search (Optuna weighs every setting it tried); for a "
                   f"{KIND_NAMES.get(exp.kind, exp.kind)}, compare the settings in the leaderboard instead.")
        return
    finished = tuple(sorted((r["run_id"], r.get("score")) for r in board if r.get("status") == "completed"))
    importances = _importances(str(store.root), exp.id, finished)
    if not importances:
        st.caption(f"Not yet: it needs at least two finished trials with different scores ({len(finished)} "
                   "finished so far).")
        return
    st.plotly_chart(ec.importance_chart(importances), key=f"importance-{exp.id}")


def kind_summary(store, exp) -> None:
    """The seeds' mean, std and 95 % interval, or the ablation table beside the paper's claims."""
    from core.errors import StudioError
    from core.experiments import ablation_table, seeds_summary

    if exp.kind == "seeds":
        st.markdown("**Over the seeds**")
        try:
            frame = ec.seeds_frame(seeds_summary(store, exp))
        except StudioError as exc:
            st.caption(md_escape(ui.sentence(str(exc))))
            return
        st.dataframe(frame, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("Mean", "Std")})
    elif exp.kind == "ablation":
        st.markdown("**The study against the paper**")
        rows = ablation_table(store, exp)
        st.dataframe(ec.ablation_frame(rows), hide_index=True, width="stretch")
        if rows:
            st.caption(md_escape(rows[0]["claim_note"]))


def controls(store, exp) -> None:
    """Cancel and delete, under the demo's owner rule (core enforces it too)."""
    from core.experiments import cancel_experiment, delete_experiment

    owner = ui.session_owner()
    if ui.limits().own_runs_only and exp.owner != owner:
        st.caption("Another visitor started this experiment: only they can cancel or delete it.")
        return
    c1, c2, c3 = st.columns([1, 1, 2])
    if exp.status in LIVE + ("interrupted",) and c1.button("Cancel the experiment", icon=":material/stop_circle:",
                                                           key=f"exp-cancel-{exp.id}"):
        with ui.guard("cancelling the experiment"):
            sent = cancel_experiment(store, exp.id, owner=owner, runner=ui.runner())
            st.toast(f"Stopping the experiment: {len(sent)} run{'s' if len(sent) != 1 else ''} cancelled; "
                     "finished runs are kept.")
    with c3:
        confirm = st.checkbox("Also delete its runs", key=f"exp-del-runs-{exp.id}")
    if c2.button("Delete the experiment", icon=":material/delete:", key=f"exp-delete-{exp.id}"):
        with ui.guard("deleting the experiment"):
            deleted = delete_experiment(store, exp.id, owner=owner, delete_runs=confirm)
            st.session_state.pop("experiments_pick", None)
            st.query_params.pop(PARAM, None)
            st.toast(f"Deleted the experiment{f' and its {len(deleted)} runs' if deleted else ''}.")
            st.rerun()


def view(exp_id: str) -> None:
    """Everything about one experiment; redrawn every few seconds while it runs."""
    from core.experiments import get_experiment, leaderboard

    with ui.guard("showing the experiment"):
        store = ui.store()
        exp = get_experiment(store, exp_id)
        board = leaderboard(store, exp)
        header(store, exp, board)
        use_best(store, exp, board)
        st.markdown("**Leaderboard**")
        if board:
            frame = ec.leaderboard_frame(board, exp.metric)
            st.dataframe(frame, hide_index=True, width="stretch", column_config={
                c: st.column_config.NumberColumn(format="%.4f")
                for c in (ec.METRIC_NAMES[exp.metric], "Val ACC", "Val AUC", "Test ACC", "Test AUC")})
            st.caption("Ranked, and the best run chosen, on the validation split only; the test scores are shown, "
                       "never used to choose. A run still training is ranked by its best epoch so far.")
        else:
            st.caption("No run has started yet.")
        left, right = st.columns(2, gap="large")
        with left:
            points = ec.best_so_far_points(board, exp.started, exp.metric)
            if len(points) >= 1:
                st.plotly_chart(ec.best_so_far_chart(points, exp.metric), key=f"best-{exp.id}")
            else:
                st.caption("The best-so-far curve starts when the first run finishes.")
        with right:
            what_mattered(store, exp, board)
        kind_summary(store, exp)
        controls(store, exp)
        if st.session_state.get(f"exp-live-{exp_id}") and exp.status not in LIVE:
            st.session_state.pop(f"exp-live-{exp_id}")
            st.rerun()  # it ended: one full redraw, and the view stops polling


def main() -> None:
    st.title("Experiments")
    st.caption("Groups of ordinary runs planned, followed and compared as one: sweeps over settings, repeats with "
               "other seeds, the seed papers' ablations, and Auto, which looks for the best model in a time budget.")
    store = ui.store()
    with st.expander("Plan a new experiment", icon=":material/science:",
                     expanded=not store.root.joinpath("experiments").is_dir()):
        builder.show()
    with ui.guard("listing the experiments"):
        rows = experiment_list(store)
    if not rows:
        st.info("No experiment yet: plan one above.")
        return
    st.subheader("Experiments")
    list_table(rows)
    exp_id = choose(rows)
    status = next(r["status"] for r in rows if r["exp_id"] == exp_id)
    if status in LIVE:
        st.session_state[f"exp-live-{exp_id}"] = True
        st.fragment(run_every=2)(view)(exp_id)
    else:
        view(exp_id)


with ui.guard("showing the experiments page"):
    main()
