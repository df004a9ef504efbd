"""The experiment builder: plan a sweep, seeds, an ablation or an Auto search, see how many runs
it starts and how long it should take, and launch it.

:func:`show` draws it (the Experiments page has it; the Train page can call it too). The plan
is made by :mod:`core.experiments` on every redraw, so a bad value or a demo cap is said in one
sentence before anything is launched; launching stores the experiment (checking the demo's
budget per visitor) and starts its driver as its own process, so it outlives the browser tab.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from studio import ui
from studio.safe_text import md_escape

KINDS = {
    "auto": "Auto: the best model in a time budget",
    "sweep": "Sweep: every combination of some settings",
    "seeds": "Seeds: one run again with other seeds",
    "ablation": "Ablation: a seed paper's study",
}
METRIC_LABELS = {"val_auc": "validation AUC", "val_acc": "validation accuracy"}
RECIPES = {"default": "Fast default", "medmnist": "MedMNIST benchmark recipe"}
EXPERIMENTS_PAGE = "../pages/experiments.py"  # relative to studio/app.py, as studio.ui.PAGES
CHOSEN = "experiments_chosen"  # session key: the experiment the Experiments page shows


def _key(name: str) -> str:
    return f"expb_{name}"


def pick_dataset() -> tuple[str, list[int]] | None:
    """A dataset on disk (MedMNIST files and imported folders) and the image sizes it offers."""
    from core.vocab import IMAGE_SIZES

    on_disk = ui.medmnist_on_disk()
    options = list(on_disk) + [str(p) for p in ui.list_uploads(ui.session_owner())]
    if not options:
        st.warning("No dataset is ready yet: download a MedMNIST dataset or import your own images on the "
                   "Datasets page first.")
        return None
    spec = st.selectbox("Dataset", options, format_func=ui.dataset_label, key=_key("dataset"))
    allowed = ui.limits().image_sizes or IMAGE_SIZES
    sizes = [s for s in (on_disk[spec] if spec in on_disk else IMAGE_SIZES) if s in allowed]
    return spec, sizes or [28]


def _common(sizes: list[int]) -> tuple[int, int, str]:
    """Epochs, image size and the ranking metric, the settings every planned kind shares."""
    from core.train.config import MAX_EPOCHS

    cap = min(MAX_EPOCHS, ui.limits().max_epochs or MAX_EPOCHS)
    c1, c2, c3 = st.columns(3)
    epochs = int(c1.number_input("Epochs per run", 1, cap, min(5, cap), key=_key("epochs")))
    size = int(c2.selectbox("Image size (px)", sizes, key=_key("size")))
    metric = c3.selectbox("Rank runs by", list(METRIC_LABELS), format_func=METRIC_LABELS.get, key=_key("metric"),
                          help="Runs are ranked, and the best one chosen, on the validation split only.")
    return epochs, size, metric


def _plan_sweep(spec: str, sizes: list[int], name: str | None, owner: str):
    from core.experiments import parse_grid, plan_sweep
    from core.models import list_models

    models = st.multiselect("Architectures", list_models(), default=["medvcnn"], key=_key("models"),
                            help="Each architecture trains with every combination of the settings below.")
    grid_text = st.text_area("Settings to vary, one per line as FIELD=V1,V2", "lr=1e-3,3e-3", key=_key("grid"),
                             help="Any training setting: lr, weight_decay, batch_size, augment, schedule, "
                                  "label_smoothing, epochs, image_size ...", height=90)
    c1, c2, c3 = st.columns(3)
    seeds = int(c1.number_input("Seeds per combination", 1, 100, 1, key=_key("sweep_seeds")))
    draws = int(c2.number_input("Random draws (0 = every combination)", 0, 1000, 0, key=_key("draws")))
    recipe = c3.selectbox("Recipe", list(RECIPES), format_func=RECIPES.get, key=_key("recipe"))
    epochs, size, metric = _common(sizes)
    if not models:
        st.info("Pick at least one architecture.")
        return None
    lines = [line.strip() for line in grid_text.splitlines() if line.strip()]
    grid = parse_grid(lines)
    if len(models) > 1:
        if "model" in grid:
            from core.errors import StudioError

            raise StudioError("the architectures are picked above; take model= out of the settings to vary")
        grid = {"model": models, **grid}
    if not grid:
        grid = {"model": models}
    return plan_sweep(spec, grid, model=models[0], recipe=recipe, seeds=seeds if seeds > 1 else None,
                      random_draws=draws or None, fixed={"epochs": epochs, "image_size": size}, name=name,
                      owner=owner, metric=metric)


def _plan_seeds(name: str | None, owner: str):
    from core.experiments import plan_seeds

    store = ui.store()
    runs = [r for r in store.list_runs(status="completed") if r.get("model")]
    if not runs:
        st.info("No finished run yet: train one on the Train page, then repeat it here with other seeds.")
        return None
    options = {r["run_id"]: ui.run_label(r) for r in runs}
    c1, c2, c3 = st.columns([3, 1, 1])
    run_id = c1.selectbox("Run to repeat", list(options), format_func=options.get, key=_key("seed_run"))
    n = int(c2.number_input("Other seeds", 1, 100, 3, key=_key("seeds_n")))
    metric = c3.selectbox("Rank runs by", list(METRIC_LABELS), format_func=METRIC_LABELS.get, key=_key("metric_s"))
    return plan_seeds(store, run_id, n=n, name=name, owner=owner, metric=metric)


def _plan_ablation(spec: str, sizes: list[int], name: str | None, owner: str):
    from core.experiments import STUDIES, plan_ablation

    c1, c2 = st.columns([3, 1])
    key = c1.selectbox("Study", list(STUDIES), format_func=lambda k: STUDIES[k].title, key=_key("study"))
    seeds = int(c2.number_input("Seeds per variant", 1, 100, 3, key=_key("abl_seeds")))
    st.caption(f"From the {STUDIES[key].source}. {STUDIES[key].claim_note}")
    epochs, size, metric = _common(sizes)
    return plan_ablation(spec, key, seeds=seeds, fixed={"epochs": epochs, "image_size": size}, name=name,
                         owner=owner, metric=metric)


def _plan_auto(spec: str, name: str | None, owner: str):
    from core.experiments import plan_auto

    cap = ui.limits().max_experiment_minutes
    top = float(min(cap, 1440) if cap else 1440)
    c1, c2, c3 = st.columns(3)
    minutes = float(c1.number_input("Minutes", 0.5, top, min(15.0, top), step=1.0, key=_key("minutes"),
                                    help="Wall-clock budget of the whole search."))
    trials = int(c2.number_input("At most this many trials (0 = as many as fit)", 0, 1000, 0, key=_key("trials")))
    metric = c3.selectbox("Rank runs by", list(METRIC_LABELS), format_func=METRIC_LABELS.get, key=_key("metric_a"))
    st.caption("Auto spends the first half of the time on short trials of architectures, recipe settings and "
               "image sizes (Optuna's TPE sampler, with weak trials stopped early), starting from the default "
               "recipe, and the second half training the best settings found, alone on the machine. It keeps the "
               "run with the best validation score. The test split is only read to report the result.")
    return plan_auto(spec, minutes, max_trials=trials or None, name=name, owner=owner, metric=metric)


def demo_caps(owner: str) -> None:
    """The demo's caps on experiments, and how much of the visitor's budget is used."""
    from core.experiments.estimate import visitor_minutes

    lim = ui.limits()
    parts = []
    if lim.max_experiment_runs is not None:
        parts.append(f"at most {lim.max_experiment_runs} runs per experiment")
    if lim.max_experiment_minutes is not None:
        used = visitor_minutes(ui.store(), owner)
        parts.append(f"{lim.max_experiment_minutes} estimated minutes of experiments per visitor "
                     f"(you have used {used:.0f})")
    if parts:
        st.info("This shared demo allows " + " and ".join(parts) + ".", icon=":material/info:")


def describe_estimate(exp, est: dict[str, Any]) -> None:
    """What launching will start: the runs and the estimated time, before anything is started."""
    c1, c2 = st.columns(2)
    if exp.kind == "auto":
        from core.experiments.auto import max_runs

        bound = max_runs(exp.plan.get("max_trials"), ui.limits().max_experiment_runs)
        c1.metric("Runs it will start", f"at most {bound}" if bound else "as many as fit")
        c2.metric("Time", f"{exp.plan['minutes']:g} min")
        st.caption("Trials start while the first half of the budget leaves room for one. Then two final runs "
                   "share the rest, from different starting weights (more while time is left): they train the "
                   "recommended recipe, or the best trial's settings when it beat the recipe on the held-back "
                   "images by more than chance would explain. The best runs are averaged when that does as well "
                   "on the held-back images. What still trains at the end gets a short grace to finish its "
                   "evaluation, then is stopped.")
        return
    c1.metric("Runs it will start", est["runs"])
    c2.metric("Estimated time", ui.fmt_estimate(est["seconds"]))
    if est["source"] == "rough":
        st.caption("A rough estimate from the models' sizes: no earlier run of these models here to time.")
    else:
        st.caption("Estimated from the time per epoch of earlier runs of these models here.")


def show() -> str | None:
    """Draw the builder.

    Returns:
        The id of the experiment launched by this click, else None.
    """
    owner = ui.session_owner()
    with ui.guard("showing the demo's limits"):
        demo_caps(owner)
    kind = st.radio("Kind", list(KINDS), format_func=KINDS.get, horizontal=True, key=_key("kind"))
    exp = None
    with ui.guard("planning the experiment", "change the settings and try again"):
        data = None if kind == "seeds" else pick_dataset()
        if kind != "seeds" and data is None:
            return None
        name = st.text_input("Experiment name (optional)", key=_key("name"), max_chars=200).strip() or None
        if kind == "sweep":
            exp = _plan_sweep(data[0], data[1], name, owner)
        elif kind == "seeds":
            exp = _plan_seeds(name, owner)
        elif kind == "ablation":
            exp = _plan_ablation(data[0], data[1], name, owner)
        else:
            exp = _plan_auto(data[0], name, owner)
    if exp is None:
        st.button("Launch the experiment", type="primary", disabled=True, key=_key("launch_off"),
                  icon=":material/rocket_launch:")
        return None
    from core.experiments import create_experiment, estimate_experiment, launch_experiment

    store = ui.store()
    with ui.guard("estimating the experiment's time"):
        describe_estimate(exp, estimate_experiment(store, exp, concurrency=ui.runner().max_concurrent))
    if not st.button("Launch the experiment", type="primary", key=_key("launch"), icon=":material/rocket_launch:"):
        return None
    with ui.guard("launching the experiment"):
        create_experiment(store, exp)  # the demo's budget per visitor is checked here
        launch_experiment(store, exp.id)
        st.session_state[CHOSEN] = exp.id
        st.success(f"Launched {md_escape(exp.name)}; its leaderboard is on the Experiments page.",
                   icon=":material/rocket_launch:")
        st.page_link(EXPERIMENTS_PAGE, label="Follow it on the Experiments page", icon=":material/science:",
                     query_params={"exp": exp.id})
        return exp.id
    return None
