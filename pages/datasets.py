"""Datasets: MedMNIST (present, downloadable or importable) and your own images as a zip."""

import pandas as pd
import streamlit as st

from studio import charts, ui


@st.cache_data(show_spinner=False)
def medmnist_catalogue() -> pd.DataFrame:
    import medmnist

    from core.data import list_medmnist

    rows = []
    for flag in list_medmnist():
        info = medmnist.INFO[flag]
        rows.append({"dataset": flag, "about": info["description"].split(". ")[0] + ".",
                     "task": info["task"], "classes": len(info["label"]),
                     "colour": "RGB" if info["n_channels"] == 3 else "grayscale",
                     "images": sum(info["n_samples"].values())})
    return pd.DataFrame(rows)


def show_dataset(view: dict) -> None:
    """Everything a person wants to know about a loaded dataset."""
    sizes = view["split_sizes"]
    cols = st.columns(5)
    cols[0].metric("Training images", f"{sizes.get('train', 0):,}")
    cols[1].metric("Validation images", f"{sizes.get('val', 0):,}")
    cols[2].metric("Test images", f"{sizes.get('test', 0):,}")
    cols[3].metric("Image size", f"{view['image_size']} × {view['image_size']} px")
    cols[4].metric("Colour", "Grayscale" if view["channels"] == 1 else "RGB",
                   help=f"{view['channels']} channel(s) per pixel.")
    st.info(f"**Task.** {view['task_text']}.")
    st.plotly_chart(charts.class_balance(view["counts"]))
    st.markdown("**Sample images from the training split**")
    for name, images in view["samples"].items():
        if not images:
            continue
        label, pics = st.columns([1, 5], vertical_alignment="center")
        label.markdown(f"**{name}**")
        pics.image(images, width=88, clamp=True)
    if view["source"] == "folder" or len(view["skipped"]) or view["notes"]:
        with st.expander(f"Import report: {view['files_read']:,} files read, {len(view['skipped']):,} skipped",
                         expanded=bool(len(view["skipped"]))):
            for note in view["notes"]:
                st.write(f"• {ui.sentence(note)}")
            if len(view["skipped"]):
                skipped = view["skipped"].assign(reason=view["skipped"]["reason"].map(ui.plain))
                st.dataframe(skipped, hide_index=True)


def medmnist_tab() -> None:
    from core.data import MEDMNIST_SIZES, import_npz_bytes, list_medmnist, load_medmnist, medmnist_filename
    from core.limits import check_upload_size

    catalogue = medmnist_catalogue()
    on_disk = ui.medmnist_on_disk()
    about = dict(zip(catalogue["dataset"], catalogue["about"]))
    c1, c2 = st.columns([3, 1])
    flag = c1.selectbox("Dataset", list_medmnist(), index=list_medmnist().index("breastmnist"),
                        format_func=lambda f: f"{f}  ({'on disk' if f in on_disk else 'not downloaded'})",
                        help="The twelve 2D datasets of MedMNIST v2 (Yang et al. 2023).")
    size = c2.selectbox("Image size (px)", allowed_sizes(MEDMNIST_SIZES), help="MedMNIST ships every dataset at "
                        "28, 64, 128 and 224 px. Larger images show more detail but train more slowly.")
    st.caption(about[flag])
    too_big = too_many_images(int(catalogue.set_index("dataset").loc[flag, "images"]))
    if too_big:
        st.warning(too_big, icon=":material/block:")
    with st.expander("All twelve MedMNIST datasets, and which sizes are on disk"):
        table = catalogue.assign(**{"sizes on disk": [", ".join(map(str, on_disk.get(f, []))) or "-"
                                                      for f in catalogue["dataset"]]})
        st.dataframe(table, hide_index=True)
    path = ui.data_dir() / medmnist_filename(flag, size)
    if too_big and not path.is_file():
        return  # not downloaded on a shared server: it could not be trained on here anyway
    if not path.is_file():
        st.warning(f"**{medmnist_filename(flag, size)}** is not in the data directory yet.")
        d1, d2 = st.columns(2)
        with d1:
            if st.button(f"Download {medmnist_filename(flag, size)}", icon=":material/download:", type="primary"):
                with ui.guard(f"downloading {flag}"), st.spinner("Downloading (MD5 checked)..."):
                    load_medmnist(flag, size=size)
                    st.rerun()
        with d2:
            upload = st.file_uploader("...or import the official .npz file you already have", type=["npz"],
                                      help="The file is checked against the official MD5 before it is used.")
            if upload is not None:
                with ui.guard("importing the .npz file"):
                    check_upload_size(upload.size, upload.name)
                    saved = import_npz_bytes(upload.getvalue(), upload.name)
                    st.success(f"Imported {saved.name} (MD5 checked).")
                    if saved.name != path.name:
                        st.info(f"That file is {saved.stem}; pick it in the list above to look at it.")
                    else:
                        st.rerun()
        return
    with st.spinner(f"Reading {path.name}..."):
        view = ui.dataset_view(flag, size)
    show_dataset(view)


def folder_tab() -> None:
    from core.data import MEDMNIST_SIZES

    st.markdown(
        "Zip a folder that holds **one sub-folder of images per class** (PNG, JPEG, BMP or TIFF), for "
        "example `my_scans/normal/…` and `my_scans/pneumonia/…`. If it has `train/`, `val/` and `test/` "
        "folders they are used as the splits; otherwise the images are split 70/15/15 per class."
    )
    lim = ui.limits()
    if lim.demo:
        st.caption(f"In this demo a zip may be up to {lim.max_upload_mb} MB with at most {lim.max_zip_files:,} files, "
                   f"and you can keep {lim.max_uploads} imported folders.")
    upload = st.file_uploader("Your images as a .zip", type=["zip"],
                              help="Files that are not images, or that cannot be read, are skipped and listed "
                                   "in the import report below.")
    sizes = allowed_sizes(MEDMNIST_SIZES)
    size = st.selectbox("Resize images to (px)", sizes, index=min(1, len(sizes) - 1), key="folder_size",
                        help="Every image is stretched to this square size, as the models expect.")
    folder = None
    if upload is not None:
        with ui.guard("importing the zip"):
            folder = ui.save_upload(upload.name, upload.getvalue(), ui.session_owner())
    uploads = ui.list_uploads(ui.session_owner())
    if folder is None and uploads:
        folder = st.selectbox("Or look at an imported folder again", uploads, format_func=lambda p: p.name)
    if folder is None:
        st.info("Nothing imported yet: upload a zip to see its classes, balance and import report.")
        return
    with ui.guard("reading your images"), st.spinner("Reading the images..."):
        view = ui.dataset_view(str(folder), size)
        too_big = too_many_images(view["files_read"])
        if too_big:
            st.warning(too_big, icon=":material/block:")
        else:
            st.success(f"**{folder.name}** is ready: pick it on the Train page.")
        show_dataset(view)


def allowed_sizes(sizes) -> list[int]:
    """The image sizes this studio offers: all of them, or the demo's."""
    demo = ui.limits().image_sizes
    return [s for s in sizes if demo is None or s in demo]


def too_many_images(n: int) -> str:
    """A warning when a dataset of ``n`` images is over the demo's limit, else ``""``."""
    cap = ui.limits().max_images
    if cap is None or n <= cap:
        return ""
    return (f"This dataset has {n:,} images, more than the {cap:,} this demo trains on; "
            "you can look at it, but train on a smaller one.")


def main() -> None:
    st.title("Datasets")
    st.write("Look at a dataset before you train on it: how many images each class has, "
             "what they look like, and what kind of answer the model will learn to give.")
    if ui.limits_text():
        st.info(ui.limits_text(), icon=":material/info:")
    mm, own = st.tabs(["MedMNIST collection", "Your own images"])
    with mm:
        with ui.guard("showing the MedMNIST dataset"):
            medmnist_tab()
    with own:
        with ui.guard("showing your images"):
            folder_tab()


with ui.guard("showing the datasets page"):
    main()
