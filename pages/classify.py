"""Classify: new images through a finished run, with probabilities, confidence and a heatmap."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core.csv_safe import frame_to_csv_bytes
from core.errors import StudioError
from studio import charts, run_links, ui
from studio import classify_trust as trust
from studio.labels import readable_classes
from studio.safe_text import md_escape

IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm", "dicom"]
DETAILED = 12  # images shown in full; the table lists them all
LEVEL_BOX = {"high": st.success, "moderate": st.info, "low": st.warning}
NO_CLASSICAL = ("Classical baselines (scikit-learn) are not listed: the studio keeps their scores for comparison, "
                "not a model that could classify new images.")


def read_uploads(lm, files) -> list[dict]:
    """Decode each upload to the model's size; a bad file gets its own error and is skipped."""
    from core.data import read_image
    from core.fit_check import source_facts
    from core.inference import load_image_tensor
    from core.limits import check_upload_size

    good = []
    for f in files:
        try:
            data = f.getvalue()
            check_upload_size(len(data), f.name)
            tensor = load_image_tensor(lm, data, name=f.name)
            decoded = read_image(data, name=f.name)  # notes: which frame or page was used
            shown = decoded.image
            source = source_facts(shown)  # before the thumbnail shrinks it
        except StudioError as exc:
            st.error(f"**{md_escape(f.name)}** was skipped: {md_escape(ui.sentence(str(exc)))}")
            continue
        except Exception:  # a decoder bug on a hostile file: skip it, keep the others
            ui.log.exception("could not read upload %s", f.name)
            reason = "it could not be read as an image; save it again as PNG or JPEG."
            st.error(f"**{md_escape(f.name)}** was skipped: {reason}")
            continue
        for note in decoded.notes:
            st.caption(f"{md_escape(f.name)}: {md_escape(note)}")
        shown.thumbnail((320, 320))
        good.append({"name": f.name, "tensor": tensor, "image": shown, "source": source})
    return good


def predict_all(shared, items: list[dict], tta: bool, calibrated: bool, mc_passes: int | None) -> None:
    """Probabilities (and with Monte-Carlo dropout their spread) for every item, in place."""
    import torch

    from core.inference import describe_prediction, predict_images

    lm = shared.lm
    for start in range(0, len(items), 64):
        chunk = items[start:start + 64]
        batch = torch.stack([it["tensor"] for it in chunk])
        with shared.lock:  # the one predictor never mirrors a run whose classes name left and right
            out = predict_images(lm, batch, tta=tta, calibrated=calibrated, mc_passes=mc_passes)
        probs, spread, entropy = out["probs"], out["spread"], out["entropy"]
        for j, it in enumerate(chunk):
            it["probs"] = probs[j]
            it["spread"] = None if spread is None else spread[j]
            it["entropy"] = float(entropy[j])
            it["about"] = describe_prediction(readable_classes(lm), probs[j])  # "grade 3", not "3"


def show_one(shared, row: dict, it: dict, method: str, method_label: str, mc_passes: int | None) -> None:
    from core.explain import METHOD_DESCRIPTIONS, explain, overlay
    from core.inference import preprocess

    lm = shared.lm
    about = it["about"]
    with st.container(border=True):
        c1, c2, c3 = st.columns([1, 1, 2], gap="medium")
        c1.image(it["image"], caption=md_escape(it["name"]), width="stretch")
        with c2:
            with ui.guard(f"explaining {it['name']}", "try another explanation method"), shared.lock:
                x = preprocess(lm, it["tensor"].unsqueeze(0))[0]
                heat = explain(lm, x, target=about["index"], method=method)
                st.image(overlay(it["image"], heat), caption=f"{method_label}: red marks what drove the answer",
                         width="stretch")
            st.caption(METHOD_DESCRIPTIONS.get(method, ""))
        with c3:
            st.markdown(f"### {md_escape(about['label'])}")
            st.caption(trust.answer_source(row))
            LEVEL_BOX.get(about["level"], st.info)(md_escape(about["sentence"]))
            trust.fit_messages(it)
            st.caption(f"Top probability {about['probability']:.1%} · predictive entropy {it['entropy']:.3f} nats "
                       f"(normalised {about['entropy_norm']:.2f}, where 0 is certain and 1 is a uniform guess)")
            st.plotly_chart(charts.probability_bars(readable_classes(lm).class_names, it["probs"], spread=it["spread"]),
                            key=f"p-{it['name']}-{id(it)}")
            if it["spread"] is not None:
                st.dataframe(spread_table(readable_classes(lm).class_names, it["probs"], it["spread"]), hide_index=True,
                             key=f"mc-{it['name']}-{id(it)}")
                st.caption(f"Monte-Carlo dropout, {mc_passes} passes: the mean probability and its spread "
                           "(standard deviation over the passes). A wide spread means the answer hangs on "
                           "which units happen to be dropped, a sign of uncertainty.")


def spread_table(class_names, probs, spread) -> pd.DataFrame:
    """Mean probability and spread (std over Monte-Carlo passes) per class."""
    return pd.DataFrame({"class": list(class_names), "mean probability": [round(float(p), 4) for p in probs],
                         "spread (std)": [round(float(s), 4) for s in spread]})


def results_table(lm, items: list[dict], run_row: dict) -> pd.DataFrame:
    """One row per image; every row names the run that answered (name and id)."""
    rows = []
    for it in items:
        row = {"file": it["name"], "run": run_row.get("name") or run_row["run_id"], "run id": run_row["run_id"],
               "label": it["about"]["label"], "probability": round(it["about"]["probability"], 4),
               "confidence": it["about"]["level"], "entropy (nats)": round(it["entropy"], 4),
               "fit": it["fit"].reasons() if "fit" in it else ""}
        row.update({f"p({c})": round(float(p), 4) for c, p in zip(lm.class_names, it["probs"])})
        if it["spread"] is not None:
            row.update({f"spread({c})": round(float(s), 4) for c, s in zip(lm.class_names, it["spread"])})
        rows.append(row)
    return pd.DataFrame(rows)


def mc_options(lm) -> int | None:
    """The Monte-Carlo dropout switch and its number of passes; None when off."""
    from core.models.profile import has_dropout

    usable = has_dropout(lm.model)
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    on = c1.checkbox(
        "Monte-Carlo dropout (N passes)", key="mc_on", disabled=not usable,
        help="Run the image N times with the model's dropout left on and report the mean probability and its "
             "spread (standard deviation): a wide spread means the model is unsure. N times the work."
        if usable else f"Not available: {lm.model_name} has no dropout layers, so every pass would give the same "
                       "answer. Pick a model that has dropout to use it.")
    passes = c2.number_input("N (passes)", min_value=2, max_value=200, value=20, step=1, key="mc_passes",
                             disabled=not (usable and on))
    if not usable:
        st.caption(f"Monte-Carlo dropout is off for {lm.model_name}: it has no dropout layers.")
    return int(passes) if usable and on else None


def main() -> None:
    from core.explain import METHOD_DESCRIPTIONS, METHOD_LABELS, METHODS_DISAGREE, list_methods
    from core.uncertainty import confidence_rules
    from studio.run_models import shared_model

    st.title("Classify new images")
    runs, classical = trust.usable_runs()
    if not runs:
        st.info("No finished model yet. Train one first (the quick start on the Home page takes about a minute); "
                "it appears here when it has finished.")
        if classical:
            st.caption(NO_CLASSICAL)
        ui.page_link("train", "Go to Train", icon=":material/model_training:")
        return
    by_id = {r["run_id"]: r for r in runs}
    run_id = run_links.choose_run("Model", {i: r["label"] for i, r in by_id.items()}, key="classify_run",
                                  describe_missing=trust.missing_reason,
                                  help="Finished neural-network runs. The weights of the epoch with the best "
                                       "validation score are used. The choice stays until you change it, also "
                                       "when other runs finish.")
    row = by_id[run_id]
    from core.runs import Run

    run = Run(Path(row["dir"]))
    with st.spinner("Loading the model..."):
        shared = shared_model(run)
    lm = shared.lm
    st.caption(f"Run {md_escape(row['run_id'])} · {lm.model_name} · {lm.image_size} × {lm.image_size} px · "
               f"{'grayscale' if lm.channels == 1 else 'colour'} · classes: "
               f"{', '.join(md_escape(c) for c in readable_classes(lm).class_names)}")
    if classical:
        st.caption(NO_CLASSICAL)
    if not lm.mirror:
        st.info(f"No mirror images for this model: {md_escape(lm.mirror_reason)}.", icon=":material/flip:")
    methods = list_methods()
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    method = c1.selectbox("Explanation", methods, index=methods.index("gradcam"),
                          format_func=lambda m: METHOD_LABELS.get(m, m),
                          help="How the heatmap is made. Grad-CAM is quick and shows regions; the others "
                               "work pixel by pixel and can take longer.")
    tta = c2.checkbox("Test-time augmentation", disabled=not lm.mirror,
                      help="Also look at the mirrored image and average both answers: a little steadier, twice "
                           "the work." if lm.mirror else f"Off for this model: {md_escape(lm.mirror_reason)}.")
    calibrated = c3.checkbox("Calibrated probabilities",
                             help=f"Rescale the probabilities (temperature {lm.temperature:.2f}, fitted on the "
                                  "validation images) so that '80 %' is right about 80 % of the time.")
    mc_passes = mc_options(lm)
    st.caption(f"{METHOD_DESCRIPTIONS[method]} {METHODS_DISAGREE}")
    with st.expander("How confident is the answer?", icon=":material/help:"):
        st.markdown("Every answer comes with its top probability, its predictive entropy and a level in plain "
                    "words:\n\n" + confidence_rules())
    with st.expander("Download this model (ONNX or TorchScript, with its model card)", icon=":material/download:"):
        from studio.downloads import model_downloads

        model_downloads(run, key="classify")
    files = st.file_uploader("Images to classify", type=IMAGE_TYPES, accept_multiple_files=True,
                             help="PNG, JPEG, BMP or TIFF; one or many. Each is resized to the model's input size.")
    if not files:
        st.info("Upload one or more images to see what the model says about them.")
        return
    items = read_uploads(lm, files)
    if not items:
        return
    with st.spinner("Classifying..."):
        predict_all(shared, items, tta, calibrated, mc_passes)
    trust.check_items(lm, items)
    st.caption(trust.answer_source(row) + (" for every image below." if len(items) > 1 else "."))
    trust.fit_summary(items)
    if len(items) > 1:
        table = results_table(readable_classes(lm), items, row)
        st.dataframe(table, hide_index=True)
        st.download_button("Download the results as CSV", frame_to_csv_bytes(table),
                           f"predictions-{row['run_id']}.csv", "text/csv", icon=":material/download:")
    if len(items) > DETAILED:
        st.caption(f"Details for the first {DETAILED} images; the table above lists all {len(items)}.")
    for it in items[:DETAILED]:
        show_one(shared, row, it, method, METHOD_LABELS.get(method, method), mc_passes)


with ui.guard("showing the classify page"):
    main()
