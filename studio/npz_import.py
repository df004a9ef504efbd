"""Keeping an uploaded ``.npz`` as the person's own dataset, beside their imported image folders.

The checks are :func:`core.data.import_npz_dataset`'s; the demo's limits on upload size and
on the number of imports per visitor are the same as for a zip (:func:`studio.ui.save_upload`).
"""

from __future__ import annotations

from pathlib import Path

from studio import ui


def save_npz_upload(filename: str, data: bytes, owner: str) -> Path:
    """Check an uploaded ``.npz`` and keep it in this owner's upload folder.

    Args:
        filename: the upload's name.
        data: its bytes.
        owner: :func:`studio.ui.session_owner`.

    Returns:
        The dataset's folder (a dataset spec for the Train page).

    Raises:
        StudioError: over a demo limit, or a file that fails the checks.
    """
    from core.data import import_npz_dataset
    from core.data.npz_source import is_npz_dataset, npz_dataset_folder
    from core.limits import check_upload_count, check_upload_size

    lim = ui.limits()
    check_upload_size(len(data), Path(filename).name, lim)
    root = ui.uploads_root(owner)
    if is_npz_dataset(npz_dataset_folder(data, filename, root)):
        return npz_dataset_folder(data, filename, root)  # imported before: the same folder again
    check_upload_count(len(ui.list_uploads(owner)), "datasets", lim)
    return import_npz_dataset(data, filename, root)
