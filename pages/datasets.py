"""Datasets: MedMNIST (present, downloadable or importable) and your own images as a zip."""

import pandas as pd
import streamlit as st

from studio import charts, ui
from studio.safe_text import md_escape

SELECT = "datasets_select"  # (flag, size) an import asks the MedMNIST pickers to show
FLASH = "datasets_flash"  # a confirmation to show once, after the rerun an import asks for
OWN_NPZ = "datasets_own_npz"  # the upload imported as own data, its folder and confirmation
FOLDER_PICK = "datasets_folder_pick"  # an imported dataset the "Your own images" tab selects


@st.cache_data(show_spinner=False)
def medmnist_catalogue() -> pd.DataFrame:
    from core.data import list_medmnist, medmnist_facts

    rows = []
    for facts in map(medmnist_facts, list_medmnist()):
        rows.append({"dataset": facts.flag, "about": facts.about, "task": facts.medmnist_task,
                     "classes": facts.num_classes, "colour": "RGB" if facts.channels == 3 else "grayscale",
                     "images": facts.n_images})
    return pd.DataFrame(rows)


def show_dataset(view: dict, key: str | None = None) -> None:
    """Everything a person wants to know about a loaded dataset (``key`` tells its chart apart
    when the same dataset is shown twice on the page)."""
    sizes = view["split_sizes"]
    cols = st.columns(5)
    cols[0].metric("Training images", f"{sizes.get('train', 0):,}")
    cols[1].metric("Validation images", f"{sizes.get('val', 0):,}")
    cols[2].metric("Test images", f"{sizes.get('test', 0):,}")
    cols[3].metric("Image size", f"{view['image_size']} × {view['image_size']} px")
    cols[4].metric("Colour", "Grayscale" if view["channels"] == 1 else "RGB",
                   help=f"{view['channels']} channel(s) per pixel.")
    st.info(f"**Task.** {md_escape(view['task_text'])}.")
    st.plotly_chart(charts.class_balance(view["counts"]), key=f"balance-{key}" if key else None)
    st.markdown("**Sample images from the training split**")
    for name, images in view["samples"].items():
        if not images:
            continue
        label, pics = st.columns([1, 5], vertical_alignment="center")
        label.markdown(f"**{md_escape(name)}**")
        pics.image(images, width=88, clamp=True)
    if view["source"] == "folder" or len(view["skipped"]) or view["notes"]:
        with st.expander(f"Import report: {view['files_read']:,} files read, {len(view['skipped']):,} skipped",
                         expanded=bool(len(view["skipped"]))):
            for note in view["notes"]:
                st.write(f"• {md_escape(ui.sentence(note))}")
            if len(view["skipped"]):
                skipped = view["skipped"].assign(reason=view["skipped"]["reason"].map(ui.plain))
                st.dataframe(skipped, hide_index=True)


def medmnist_tab() -> None:
    from core.data import MEDMNIST_SIZES, list_medmnist, load_medmnist, medmnist_filename

    catalogue = medmnist_catalogue()
    on_disk = ui.medmnist_on_disk()
    about = dict(zip(catalogue["dataset"], catalogue["about"]))
    sizes = allowed_sizes(MEDMNIST_SIZES)
    pending = st.session_state.pop(SELECT, None)
    if pending and pending[0] in list_medmnist() and pending[1] in sizes:
        # An import chose these; set before the widgets exist (Streamlit refuses it after).
        st.session_state["medmnist_flag"], st.session_state["medmnist_size"] = pending
    c1, c2 = st.columns([3, 1])
    # Keyed, so the choice survives the label changing from "not downloaded" to "on disk".
    flag = c1.selectbox("Dataset", list_medmnist(), index=list_medmnist().index("breastmnist"), key="medmnist_flag",
                        format_func=lambda f: f"{f}  ({'on disk' if f in on_disk else 'not downloaded'})",
                        help="The twelve 2D datasets of MedMNIST v2 (Yang et al. 2023).")
    size = c2.selectbox("Image size (px)", sizes, key="medmnist_size", help="MedMNIST ships every dataset at "
                        "28, 64, 128 and 224 px. Larger images show more detail but train more slowly.")
    flash = st.session_state.pop(FLASH, None)
    if flash:
        st.success(flash, icon=":material/check_circle:")
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
                                      key="medmnist_npz",
                                      help="The file is checked against the official MD5 before it is used; "
                                           "an altered or relabelled file can be imported as your own dataset.")
        if upload is not None:
            with ui.guard("importing the .npz file"):
                import_npz_upload(upload, size)
        return
    with st.spinner(f"Reading {path.name}..."):
        view = ui.dataset_view(flag, size)
    show_dataset(view)


def import_npz_upload(upload, size: int) -> None:
    """An uploaded .npz: the official file is imported and selected; any other is refused with
    the offer to import it as the person's own dataset, which is then shown."""
    from core.data import NotOfficialNpz, import_npz_bytes
    from core.limits import check_upload_size
    from studio.npz_import import save_npz_upload

    own = st.session_state.get(OWN_NPZ)
    if own and own["upload"] == upload.file_id:  # imported as own data on an earlier run
        st.success(own["message"], icon=":material/check_circle:")
        show_dataset(ui.dataset_view(own["folder"], size), key="own-npz")
        return
    check_upload_size(upload.size, upload.name)
    try:
        saved = import_npz_bytes(upload.getvalue(), upload.name)
    except NotOfficialNpz as exc:
        st.error(md_escape(ui.sentence(str(exc))), icon=":material/error:")
        st.info("If you changed or relabelled this file on purpose, import it as your own dataset: it gets the "
                "same checks as any upload and is kept with your own images, where the Train page offers it.",
                icon=":material/info:")
        if st.button("Import it as my own dataset", type="primary", icon=":material/upload:", key="npz_own"):
            with st.spinner("Checking the file..."):
                folder = save_npz_upload(upload.name, upload.getvalue(), ui.session_owner())
            st.session_state[OWN_NPZ] = {
                "upload": upload.file_id, "folder": str(folder),
                "message": f"Imported {md_escape(upload.name)} as your own dataset "
                           f"“{md_escape(folder.name)}”: it is shown below and selected under “Your own "
                           "images”, and the Train page offers it."}
            st.session_state[FOLDER_PICK] = str(folder)
            st.rerun()
        return
    flag, size_of_file = _flag_and_size(saved.name)
    st.session_state[SELECT] = (flag, size_of_file)
    st.session_state[FLASH] = f"Imported {md_escape(saved.name)} (MD5 checked); it is selected below."
    st.rerun()



def _flag_and_size(filename: str) -> tuple[str, int]:
    """``bloodmnist_64.npz`` -> ("bloodmnist", 64); ``bloodmnist.npz`` -> ("bloodmnist", 28)."""
    stem = filename.removesuffix(".npz")
    flag, _, size = stem.partition("_")
    return flag, int(size) if size.isdigit() else 28


def folder_tab() -> None:
    from core.data import MEDMNIST_SIZES

    st.markdown(
        "Zip a folder that holds **one sub-folder of images per class** (PNG, JPEG, BMP, TIFF or DICOM: `.dcm`, or any file with the DICOM header), for "
        "example `my_scans/normal/…` and `my_scans/pneumonia/…`. If it has `train/`, `val/` and `test/` "
        "folders they are used as the splits; otherwise the images are split 70/15/15 per class, which needs at least "
        "5 images per class so that validation and test each get one."
    )
    lim = ui.limits()
    if lim.demo:
        st.caption(f"In this demo a zip may be up to {lim.max_upload_mb} MB with at most {lim.max_zip_files:,} files, "
                   f"and you can keep {lim.max_uploads} imported folders.")
    upload = st.file_uploader("Your images as a .zip", type=["zip", "npz"],
                              help="Files that are not images, or that cannot be read, are skipped and listed "
                                   "in the import report below. A .npz laid out like MedMNIST's (train_images, "
                                   "train_labels, and val_ and test_ if you have them) is imported as it is.")
    sizes = allowed_sizes(MEDMNIST_SIZES)
    size = st.selectbox("Resize images to (px)", sizes, index=min(1, len(sizes) - 1), key="folder_size",
                        help="Every image is stretched to this square size, as the models expect.")
    folder = None
    if upload is not None and upload.name.lower().endswith(".npz"):
        from studio.npz_import import save_npz_upload

        with ui.guard("importing the .npz file"):
            folder = save_npz_upload(upload.name, upload.getvalue(), ui.session_owner())
    elif upload is not None:
        with ui.guard("importing the zip"):
            folder = ui.save_upload(upload.name, upload.getvalue(), ui.session_owner())
    uploads = ui.list_uploads(ui.session_owner())
    if folder is None and uploads:
        picked = st.session_state.get(FOLDER_PICK)  # just imported on the MedMNIST tab
        index = next((i for i, p in enumerate(uploads) if str(p) == picked), 0)
        folder = st.selectbox("Or look at an imported folder again", uploads, index=index,
                              format_func=lambda p: p.name)
    if folder is None:
        st.info("Nothing imported yet: upload a zip to see its classes, balance and import report.")
        return
    with ui.guard("reading your images"), st.spinner("Reading the images..."):
        view = ui.dataset_view(str(folder), size)
        too_big = too_many_images(sum(view["split_sizes"].values()) if view["source"] == "npz"
                                  else view["files_read"])
        if too_big:
            st.warning(too_big, icon=":material/block:")
        else:
            st.success(f"**{md_escape(folder.name)}** is ready: pick it on the Train page.")
        from studio.sides import mark_box

        mark_box(folder, view["class_names"])  # left/right: stored with the dataset
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
