"""A run's exported model and its model card as one zip, for a download button.

The export itself is :func:`core.export.export_run` (the code behind ``python -m core
export``), so a file from the page is checked exactly like one from the command line. It is
built in a temporary folder that is removed afterwards: nothing is written into the run.
"""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from core.export import FORMATS

#: What each format is called in buttons and file names.
FORMAT_LABELS = {"onnx": "ONNX", "torchscript": "TorchScript"}


def bundle_name(run, fmt: str) -> str:
    """A file name for the download, from the run's name (only safe characters) and the format.

    Args:
        run: a :class:`core.runs.Run`.
        fmt: ``"onnx"`` or ``"torchscript"``.

    Returns:
        e.g. ``"medvcnn-on-breastmnist-28-px-onnx.zip"``.
    """
    name = str((run.meta() or {}).get("name") or run.id)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")[:60] or "model"
    return f"{slug}-{fmt}.zip"


def export_bundle(run, fmt: str, data_dir: str | None = None) -> dict[str, Any]:
    """Export a run's best model and zip it with its model card.

    Args:
        run: a :class:`core.runs.Run` with a best checkpoint.
        fmt: one of :data:`core.export.FORMATS`.
        data_dir: where MedMNIST files are, if not where the run was trained from (the
            parity check uses the run's own test images when it can load them).

    Returns:
        ``{"file_name", "data": zip bytes, "members": names in the zip, "export": the dict
        export_run returned, with paths reduced to file names}``.

    Raises:
        StudioError: as :func:`core.export.export_run` (no checkpoint, unknown format, a
            model that cannot be exported, a failed parity check).
    """
    from core.export import export_run

    with tempfile.TemporaryDirectory(prefix="studio-export-") as tmp:
        result = export_run(run, fmt, tmp, data_dir=data_dir)
        files = [Path(result["model"]), Path(result["model_card"])]
        buf = io.BytesIO()
        # Stored, not deflated: model weights hardly compress and the zip is built per click.
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for f in files:
                zf.write(f, arcname=f.name)
    export = {**result, "model": files[0].name, "model_card": files[1].name}
    return {"file_name": bundle_name(run, fmt), "data": buf.getvalue(), "members": [f.name for f in files],
            "export": export}


__all__ = ["FORMATS", "FORMAT_LABELS", "bundle_name", "export_bundle"]
