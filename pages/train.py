"""Train: pick data, architecture and recipe, queue runs, and watch them train live."""

import dataclasses

import numpy as np
import streamlit as st

from studio import charts, recipe_choices, ui
from studio import train_form as form
from studio.safe_text import md_escape

RECIPE_CHOICES = {
    "default": "Fast default (recommended)",
    "paper": "The architecture's own paper recipe",
    "medmnist": "MedMNIST benchmark recipe",
}
LOSS_LABELS = {"auto": "automatic", "ce": "cross-entropy",
               "bce": "binary cross-entropy per class", "margin": "margin loss (QuadSNet paper)"}
SCHEDULE_LABELS = {"none": "constant", "step": "step decay", "multistep": "decay at 50 % and 75 %",
                   "cosine": "cosine annealing", "onecycle": "one-cycle (warm up, then anneal)",
                   "plateau": "halve when validation loss stalls"}


# ---------------------------------------------------------------------------- choosing
def pick_data():
    from core.vocab import IMAGE_SIZES

    on_disk = ui.medmnist_on_disk()
    options = list(on_disk) + [str(p) for p in ui.list_uploads(ui.session_owner())]
    if not options:
        st.warning("No dataset is ready yet: download a MedMNIST dataset or import your own images first.")
        ui.page_link("datasets", "Go to Datasets", icon=":material/folder_open:")
        st.stop()
    c1, c2 = st.columns([3, 1])
    # Remembered by the folder's name, never its server path (the URL is visible).
    spec = c1.selectbox("Dataset", options, format_func=ui.dataset_label, key=form.choice("dataset", options,
                                                                                          options[0], _data_name),
                        help="MedMNIST datasets in the data directory, and image folders you imported "
                             "on the Datasets page.")
    allowed = ui.limits().image_sizes or IMAGE_SIZES
    sizes = [s for s in (on_disk[spec] if spec in on_disk else IMAGE_SIZES) if s in allowed]
    if not sizes:
        st.warning(f"{md_escape(ui.dataset_label(spec))} is on disk only at sizes this demo does not train on; "
                   f"download it at {' or '.join(map(str, allowed))} px on the Datasets page.")
        st.stop()
    default = sizes[0 if spec in on_disk else min(1, len(sizes) - 1)]
    size = c2.selectbox("Image size (px)", sizes, key=form.choice("size", sizes, default),
                        help="Sizes on disk for MedMNIST; your own images are resized to the size you pick. "
                             "Larger images show more detail but each epoch takes longer.")
    return spec, int(size)


def _data_name(spec: str) -> str:
    from pathlib import Path

    return Path(spec).name


def pick_model():
    from core.models import list_classical, list_models

    names = list_models() + list_classical()
    model = st.selectbox("Architecture", names, key=form.choice("model", names, "medvcnn"), format_func=model_title,
                         help="The five seed papers' networks, classic ImageNet architectures, and classical "
                              "machine-learning baselines that work on raw pixels.")
    others = [n for n in names if n != model]
    extra = st.multiselect("Also queue one run with each of these architectures", others,
                           format_func=model_title, key=form.choices("also", others),
                           help="Every architecture gets its own run with the same data and settings; "
                                "they train one after the other and meet again on the Compare page.")
    return model, extra


@st.cache_data(show_spinner=False)
def model_title(name: str) -> str:
    from core.models import list_classical, model_info
    from studio.labels import paper_title

    if name in list_classical():
        return f"{name} · classical baseline (scikit-learn)"
    return f"{name} · {paper_title(model_info(name).paper)}"


def pick_recipe(model: str) -> str:
    from core.models import list_classical
    from core.train import get_recipe, paper_recipe_for
    from core.train.recipes import recipe_summary

    if model in list_classical():  # fitted in one pass: no optimiser, no epochs, no recipe to pick
        st.caption("A classical baseline is fitted in one pass on the raw pixels: there is no training recipe "
                   "to choose.")
        return "default"
    choices = ["default", "paper", "medmnist"] if paper_recipe_for(model) else ["default", "medmnist"]
    recipe = st.radio("Training recipe", choices, format_func=RECIPE_CHOICES.get, horizontal=True,
                      key=form.choice("recipe", choices, "default"),
                      help="A recipe fills in every setting below; change any of them under Advanced settings.")
    name = paper_recipe_for(model) if recipe == "paper" else recipe
    # Plain words for the person; the optimiser, schedule and the like in the tooltip.
    st.caption(recipe_summary(name), help=f"In technical terms: {get_recipe(name).description}")
    return recipe


def advanced(base, spec: str, size: int, model_supports_pretrained: bool) -> dict:
    """The settings, starting from the recipe's values; returns only what the person changed."""
    from core.data import AUGMENT_PRESETS, describe_augment
    from core.train.config import LOSSES, MAX_BATCH, MAX_EPOCHS, OPTIMIZERS, SCHEDULES
    from studio.recipe_choices import TURNS_CAPTION

    v = {}
    with st.expander("Advanced settings", icon=":material/tune:"):
        c1, c2, c3 = st.columns(3)
        cap = min(MAX_EPOCHS, ui.limits().max_epochs or MAX_EPOCHS)
        v["epochs"] = c1.number_input("Epochs", 1, cap, key=form.setting("epochs", min(base.epochs, cap),
                                                                         bounds=(1, cap), cast=int),
                                      help="How many times the model sees every training image. More epochs can "
                                           "learn more but take longer." + (f" This demo allows at most {cap}."
                                                                            if cap < MAX_EPOCHS else ""))
        v["batch_size"] = c2.number_input("Batch size (0 = chosen for your data)", 0, MAX_BATCH,
                                          key=form.setting("batch_size", base.batch_size, bounds=(0, MAX_BATCH),
                                                           cast=int),
                                          help="Images per training step. Larger batches are faster per image but "
                                               "need more memory; small datasets learn better with small batches. "
                                               "0 lets the recipe choose from the number of images and epochs.")
        v["lr"] = c3.number_input("Learning rate", 1e-6, 10.0, step=1e-4, format="%.5f",
                                  key=form.setting("lr", float(base.lr), bounds=(1e-6, 10.0), cast=float),
                                  help="How big each learning step is. Too high and training jumps around; "
                                       "too low and it crawls. 0.001 is a safe start.")
        c1, c2, c3 = st.columns(3)
        v["optimizer"] = c1.selectbox("Optimiser", OPTIMIZERS,
                                      key=form.setting("optimizer", base.optimizer, options=OPTIMIZERS),
                                      help="The rule that updates the weights. AdamW and Adam adapt the step "
                                           "per weight and work well out of the box; SGD is the classic.")
        v["schedule"] = c2.selectbox("Learning-rate schedule", SCHEDULES,
                                     key=form.setting("schedule", base.schedule, options=SCHEDULES),
                                     format_func=lambda s: SCHEDULE_LABELS.get(s, s),
                                     help="How the learning rate changes during training.")
        v["loss"] = c3.selectbox("Loss", LOSSES, key=form.setting("loss", base.loss, options=LOSSES),
                                 format_func=LOSS_LABELS.get,
                                 help="What the model is penalised for while learning. Automatic uses "
                                      "cross-entropy, or binary cross-entropy per label for multi-label data.")
        c1, c2, c3 = st.columns(3)
        v["early_stopping"] = c1.number_input("Early stopping (epochs without improvement)", 0, 100,
                                              key=form.setting("early_stopping", base.early_stopping,
                                                               bounds=(0, 100), cast=int),
                                              help="Stop when the validation score has not improved for this many "
                                                   "epochs. 0 turns it off.")
        v["seed"] = c2.number_input("Random seed", 0, 2**31 - 1,
                                    key=form.setting("seed", base.seed, bounds=(0, 2**31 - 1), cast=int),
                                    help="The same seed and settings train the same model again. Try a few seeds "
                                         "to see how much results vary.")
        v["max_minutes"] = c3.number_input("Time limit (minutes, 0 = none)", 0.0, 10080.0, step=5.0,
                                           key=form.setting("max_minutes", float(base.max_minutes),
                                                            bounds=(0.0, 10080.0), cast=float),
                                           help="Stop training after this many minutes and keep the best model "
                                                "so far.")
        c1, c2 = st.columns(2)
        v["class_weights"] = c1.checkbox("Weight rare classes more",
                                         key=form.setting("class_weights", base.class_weights),
                                         help="Makes mistakes on rare classes cost more, so an imbalanced "
                                              "dataset does not teach the model to ignore them.")
        if model_supports_pretrained:
            v["pretrained"] = c2.checkbox("Start from ImageNet weights",
                                          key=form.setting("pretrained", base.pretrained),
                                          help="Start from weights learned on everyday photos (needs a network "
                                               "connection the first time).")
        v["augment"] = st.selectbox("Data augmentation", AUGMENT_PRESETS,
                                    key=form.setting("augment", base.augment, options=AUGMENT_PRESETS),
                                    format_func=describe_augment,
                                    help="Random changes to the training images (flips, rotations, shifts) so "
                                         "the model learns what matters, not where it sits in the picture.")
        if v["augment"] == "flipshift" and base.turn_check:
            st.caption(TURNS_CAPTION)
        if v["augment"] != "none":
            with ui.guard("previewing the augmentation"):
                augment_preview(spec, size, v["augment"])
    changed = {k: val for k, val in v.items() if val != getattr(base, k)}
    for key in ("epochs", "batch_size", "early_stopping", "seed"):
        if key in changed:
            changed[key] = int(changed[key])
    return changed


def augment_preview(spec: str, size: int, preset: str) -> None:
    import torch

    from core.data import augment_batch

    view = ui.dataset_view(spec, size, per_class=6)
    picks = [img for imgs in view["samples"].values() for img in imgs[:2]][:6]
    if not picks:
        return
    x = torch.from_numpy(np.stack([p if p.ndim == 3 else p[..., None] for p in picks])).permute(0, 3, 1, 2)
    draw = st.session_state.get("augment_draw", 0)
    from core.data.augment import without_mirroring
    from studio.sides import laterality

    if laterality(spec, size).side_matters:  # as training will do it: no flips, no turns
        preset = without_mirroring(preset)
    out = augment_batch(x.float() / 255.0, preset, generator=torch.Generator().manual_seed(draw))
    out = (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).squeeze(-1).numpy()
    st.markdown("**Preview** — top: training images as they are; bottom: one random augmentation of each.")
    st.image(picks, width=80)
    st.image(list(out), width=80)
    if st.button("Another random draw", icon=":material/casino:"):
        st.session_state["augment_draw"] = draw + 1
        st.rerun()


def model_card(model: str, size: int, facts: dict, batch: int, epochs: int) -> None:
    from core.models import list_classical, model_info
    from core.train import pick_device

    with st.container(border=True):
        if model in list_classical():
            from core.models import create_classical

            st.markdown(f"**{model}** — classical baseline (scikit-learn)")
            st.write(create_classical(model).description)
            st.caption("Works on the raw pixels, with no training epochs; it usually fits in seconds to "
                       "minutes. A useful yardstick for the neural networks.")
            return
        from studio.labels import paper_title
        from studio.time_estimate import estimate_lines

        info = model_info(model, facts["channels"], facts["num_classes"], size)
        st.markdown(f"**{model}** — from *{md_escape(paper_title(info.paper))}*")
        st.write(info.description)
        # From the last similar run, else timed in the background: Start is never held back by it.
        estimate_lines(f"- **Size:** {info.params:,} trainable parameters at {size} px\n", model, size, facts,
                       batch, epochs, str(pick_device("auto")))


def launch(spec: str, size: int, models: list[str], recipe: str, changed: dict, name: str) -> list[str]:
    """Queue one run per model (:mod:`core.runs.submit`): every run is checked (and the
    demo's limits) first, so a bad setting queues nothing."""
    from core.runs.submit import run_requests, submit

    ids = submit(ui.runner(), run_requests(spec, models, recipe, name=name, image_size=size, **changed),
                 owner=ui.session_owner())
    st.session_state.setdefault("my_runs", []).extend(ids)
    return ids


# ---------------------------------------------------------------------------- watching
def run_panel(store, row: dict) -> None:
    run_id, status = row["run_id"], row["status"]
    run = store.get(run_id)
    meta = run.meta()
    with st.container(border=True):
        head, button = st.columns([6, 1], vertical_alignment="center")
        what = f"{row['model']} on {ui.dataset_label(row['dataset'])}, {row['image_size']} px"
        title = row["name"] if row["name"] == what else f"{row['name']} · {what}"
        head.markdown(f"{ui.STATUS_ICONS.get(status, '')} **{md_escape(title)}** · {ui.status_label(status)}")
        if status in ui.ACTIVE and button.button("Cancel", key=f"cancel-{run_id}", icon=":material/stop_circle:"):
            with ui.guard("cancelling the run"):
                ui.runner().cancel(run_id, owner=ui.session_owner())
                st.toast("Stopping the run; its best model so far is kept.")
        if status in ("cancelled", "interrupted", "failed") and button.button("Resume", key=f"resume-{run_id}"):
            with ui.guard("resuming the run"):
                ui.runner().submit_existing(run_id, owner=ui.session_owner())
                st.toast("Queued again; it continues from its last checkpoint.")
        from core.models import list_classical
        from studio import run_outcome as outcome

        classical = row["model"] in list_classical()
        epochs = meta.get("epochs") or row.get("epochs") or "?"
        if status == "running":  # time left within the time limit (core.train.progress)
            st.progress(min(1.0, float(meta.get("progress") or 0.0)), text=outcome.progress_text(meta, epochs))
        elif status == "queued":
            st.caption("Waiting for its turn: runs train one at a time on this machine.")
        elif status == "completed":
            st.success(outcome.finished_text(meta, row, classical))  # ... and why it stopped
            outcome.show_verdict(outcome.verdict_for(run_id))  # near chance / below the quick baseline
            from studio.run_links import run_link

            links = st.columns(4)
            with links[0]:  # each link opens THIS run (?run=<id>), not whichever finished last
                run_link("compare", run_id, "Compare it", icon=":material/leaderboard:")
            with links[1]:
                if run.best_checkpoint.is_file():  # a classical baseline keeps no model to classify with
                    run_link("classify", run_id, "Classify images with it", icon=":material/image_search:")
        elif status in ("failed", "interrupted"):
            st.error(md_escape(ui.sentence(meta.get("error") or f"The run is {status}.")))
        elif status == "cancelled":
            st.info(outcome.cancelled_text(meta))
        if status in ("running", "completed") and (turns := outcome.turns_text(meta)):
            st.caption(md_escape(turns))
        last, figure, steps = epoch_view(str(run.dir), ui.file_stamp(run.metrics_path))
        if status == "running" and steps is not None:
            st.plotly_chart(steps, key=f"steps-{run_id}")
        if last:
            c = st.columns(4)
            c[0].metric("Learning rate", f"{meta['lr']:.2e}" if isinstance(meta.get("lr"), float) else "-")
            c[1].metric("Validation loss", ui.fmt_metric(last.get("val_loss")))
            c[2].metric("Validation accuracy", ui.fmt_metric(last.get("val_acc")))
            c[3].metric("Validation AUC", ui.fmt_metric(last.get("val_auc")))
            st.plotly_chart(figure, key=f"curves-{run_id}")


@st.cache_data(show_spinner=False, max_entries=64)
def epoch_view(run_dir: str, stamp: str):
    """The last epoch record, the learning curves and the step curve, rebuilt only when
    metrics.jsonl grows."""
    from core.runs import Run

    run = Run(run_dir)
    records = run.metrics(kind="epoch")
    steps = run.metrics(kind="step")
    return (records[-1] if records else None, charts.learning_curves(records) if records else None,
            charts.step_curves(steps) if charts.enough_steps(steps) else None)  # no one-point chart


@st.fragment(run_every=2)
def live_runs() -> None:
    with ui.guard("updating the live progress"):
        store = ui.store()
        mine = set(st.session_state.get("my_runs", []))
        rows = [r for r in store.list_runs() if r["status"] in ui.ACTIVE or r["run_id"] in mine]
        if ui.limits().own_runs_only:
            # On a shared server a visitor follows (and can cancel) only their own runs.
            owner = ui.session_owner()
            others = sum(r["owner"] != owner and r["status"] in ui.ACTIVE for r in rows)
            rows = [r for r in rows if r["owner"] == owner]
            if others:
                st.caption(f"{others} run{'s' if others != 1 else ''} of other visitors "
                           f"{'are' if others != 1 else 'is'} queued or training; yours take turns with them.")
        if not rows:
            st.info("Nothing is training right now. Runs you start appear here with live curves; "
                    "finished runs are on the Compare page.")
            return
        for row in rows[:12]:
            run_panel(store, row)


def main() -> None:
    from core.models import list_classical, model_info
    from core.train import make_config

    st.title("Train a model")
    if ui.limits_text():
        st.info(ui.limits_text(), icon=":material/info:")
    if st.toggle("Plan an experiment instead: a sweep, seeds, a paper's ablation, or Auto (the best model in a "
                 "time budget)", key="train_experiment"):
        from studio.experiment_builder import show

        show()  # launched experiments are followed on the Experiments page
        return
    spec, size = pick_data()
    facts = ui.dataset_facts(spec, size)
    with ui.guard("checking whether left and right matter in this dataset"):
        from studio.sides import train_note

        train_note(spec, size)  # "classes name left and right, so images are not mirrored"
    left, right = st.columns([3, 2], gap="large")
    with left:
        model, extra = pick_model()
        recipe = pick_recipe(model)
        name = st.text_input("Run name (optional)", placeholder="e.g. first try", key=form.text("name"),
                             help="A name to find the run by; you can rename it later on the Compare page.")
    base = make_config(spec, model, recipe, image_size=size)
    pretrained_ok = model not in list_classical() and model_info(model).supports_pretrained
    if all(m in list_classical() for m in (model, *extra)):
        changed = {}  # no optimiser, schedule or epochs to set for a classical baseline
    else:
        changed = advanced(base, spec, size, pretrained_ok)
    form.remember({"dataset": _data_name(spec), "size": size, "model": model, "also": extra,
                   "recipe": recipe, "name": name.strip()}, changed)
    settings = dataclasses.replace(base, **{k: v for k, v in changed.items()})
    batch = recipe_choices.batch_caption(settings, facts.get("n_train"))
    if model not in list_classical():
        recipe_choices.precision_caption(settings)
    with right, ui.guard(f"describing {model}", "pick another architecture or image size"):
        model_card(model, size, facts, batch or 128, settings.epochs)
    n = 1 + len(extra)
    if st.button(f"Start training{f' ({n} runs)' if n > 1 else ''}", type="primary", icon=":material/play_arrow:"):
        with ui.guard("starting the training run"):
            ids = launch(spec, size, [model, *extra], recipe, changed, name.strip())
            st.success(f"Queued {len(ids)} run{'s' if len(ids) > 1 else ''}; progress appears below.")
    st.divider()
    st.subheader("Progress")
    live_runs()


with ui.guard("showing the train page"):
    main()
