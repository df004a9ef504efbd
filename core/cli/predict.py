"""``python -m core predict``: label image files, folders and zips with a trained run.

It writes one CSV row per file; a file that cannot be read gets a row with the reason
instead of stopping the batch.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

from core.cli.common import add_dirs, open_store
from core.csv_safe import csv_cell
from core.errors import StudioError

# The parser is built for every command (``python -m core runs`` too), so it must not import
# torch: this mirrors core.explain.list_methods() (a test checks).
EXPLAIN_METHODS = ("gradcam", "guided_gradcam", "integrated_gradients", "saliency", "occlusion")

#: Images decoded, predicted and explained together; bounds memory for big folders.
BATCH = 64

#: Longest side of an explanation overlay; larger images are shrunk (aspect kept).
MAX_OVERLAY_SIDE = 1024


def add_commands(sub) -> None:
    """Add ``predict`` to the subparsers ``sub`` of :func:`core.cli.build_parser`."""
    p = sub.add_parser("predict", help="label image files, folders or zips with a trained run")
    p.add_argument("run_id", help="the run whose best model to use (python -m core runs)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders of images, or .zip files")
    p.add_argument("--explain", choices=EXPLAIN_METHODS, metavar="METHOD",
                   help=f"also save a heatmap overlay per image: {', '.join(EXPLAIN_METHODS)}")
    p.add_argument("--out", metavar="DIR", help="output folder (default ./predictions-RUN_ID)")
    p.add_argument("--tta", action="store_true", help="average over the image and its mirror image")
    p.add_argument("--calibrated", action="store_true", help="use the run's temperature-scaled probabilities")
    p.add_argument("--frame", type=int, metavar="N",
                   help="frame (page) N, from 1, of multi-frame DICOM, TIFF or GIF files "
                        "(default: the middle frame of a DICOM series, the first page of a TIFF)")
    add_dirs(p, data=False)
    p.set_defaults(func=cmd_predict)


# --------------------------------------------------------------------------- predict
def cmd_predict(args) -> int:
    """Label files; write ``predictions.csv`` (and overlays); print a summary.

    One CSV row per file, in input order (folders sorted, zip entries in archive order):
    ``file``; ``label`` (the top class; for multi-label runs every label above 0.5, joined
    by "; "); ``p_<class>`` per class (softmax, so a row sums to 1; independent sigmoids for
    multi-label); ``entropy`` (nats); ``confidence`` (high / moderate / low, as the Classify
    page); ``fit`` (why the image may be unlike the run's training images, see
    :mod:`core.fit_check`: colour or size mismatch, brightness or contrast far outside the
    training range, near-uniform answer; empty when none applies); ``note`` (how the file was
    read, e.g. which frame of a multi-frame DICOM or page of a TIFF was used); ``error`` (why
    the file could not be used; then the other cells are empty). Files are decoded one at a
    time as they are read, after their size and header are checked (see
    :mod:`core.data.inputs`), so a huge file or zip entry is refused without being read.
    With ``--explain`` each good image gets ``<row>_<stem>_<method>.png``: the heatmap for the
    predicted class over the original image, at its size (shrunk to 1024 px at most).
    """
    from tqdm import tqdm

    from core.inference import load_run_model

    run = open_store(args).get(args.run_id)
    lm = load_run_model(run)
    if args.tta and not lm.mirror:
        print(f"no mirror averaging: {lm.mirror_reason}", file=sys.stderr)
    out = Path(args.out or f"predictions-{run.id}").expanduser()
    _mkdir(out)
    names = [str(c) for c in lm.class_names]
    header = ["file", "label"] + [f"p_{c}" for c in names] + ["entropy", "confidence", "fit", "note", "error"]

    rows: list[list[Any]] = []
    n_overlays = 0
    from core.data.inputs import count_image_sources

    total = count_image_sources(args.paths)
    with tqdm(total=total, unit="image", file=sys.stderr, dynamic_ncols=True, desc="predict") as bar:
        for chunk in _chunks(_read_inputs(args.paths, lm, args), BATCH):
            rows_chunk, written = _predict_chunk(lm, chunk, len(rows), out, args)
            rows += rows_chunk
            n_overlays += written
            bar.update(len(chunk))
    if not rows:
        raise StudioError(f"no files found in {', '.join(args.paths)}; give image files, folders or .zip files.")

    csv_path = out / "predictions.csv"
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([csv_cell(h) for h in header])
    writer.writerows([[csv_cell(c) for c in row] for row in rows])
    from core.export import write_text

    write_text(csv_path, buf.getvalue())

    failed = sum(1 for r in rows if r[-1])
    print(f"{len(rows)} images, {failed} failed; predictions in {csv_path}")
    noted = [r for r in rows if r[-2]]
    if noted:
        print(f"{len(noted)} read with a note (see the note column), e.g. {noted[0][0]}: {noted[0][-2]}")
    if args.explain:
        print(f"{n_overlays} {args.explain} overlays in {out}")
    return 0


def _predict_chunk(lm, chunk, start: int, out: Path, args) -> tuple[list[list[Any]], int]:
    """Rows for one chunk of :func:`_read_inputs` items; overlays written."""
    import torch

    from core.inference import describe_prediction, predict_tensor

    k = lm.num_classes
    rows: list[list[Any]] = []
    from core.fit_check import check_fit

    good: list[tuple[int, Any, torch.Tensor]] = []  # (row index, decoded image or None, uint8 tensor)
    sources: dict[int, dict] = {}  # row index -> the decoded file's colour and size
    for name, error, notes, tensor, facts, img in chunk:
        i = start + len(rows)
        if error is None:
            sources[i] = facts
            good.append((i, img, tensor))
        rows.append([name, ""] + [""] * k + ["", "", "", "; ".join(notes), error or ""])
    if not good:
        return rows, 0

    batch = torch.stack([t for _, _, t in good])
    result = predict_tensor(lm, batch, tta=args.tta, calibrated=args.calibrated)
    written = 0
    for j, (i, img, tensor) in enumerate(good):
        probs = result["probs"][j]
        described = describe_prediction(lm, probs)
        rows[i - start][1] = _label(lm, probs)
        rows[i - start][2:2 + k] = [f"{float(p):.8f}" for p in probs]
        rows[i - start][2 + k] = f"{float(result['entropy'][j]):.6f}"
        rows[i - start][3 + k] = described["level"]
        rows[i - start][4 + k] = check_fit(tensor, lm.channels, lm.image_size, lm.train_stats, sources.get(i),
                                           described["entropy_norm"]).reasons()
        if args.explain:
            _write_overlay(lm, img, tensor, int(result["pred"][j]), i, rows[i - start][0], out, args.explain)
            written += 1
    return rows, written


def _label(lm, probs) -> str:
    """The predicted class; for multi-label tasks every label above 0.5, joined by '; '."""
    if lm.task == "multi-label":
        present = [c for c, p in zip(lm.class_names, probs) if p > 0.5]
        return "; ".join(present) if present else "(none)"
    return str(lm.class_names[int(probs.argmax())])


def _write_overlay(lm, img, tensor, target: int, index: int, name: str, out: Path, method: str) -> Path:
    from PIL import Image

    from core.explain import explain, overlay
    from core.inference import preprocess

    heat = explain(lm, preprocess(lm, tensor.unsqueeze(0)), target=target, method=method)
    if max(img.size) > MAX_OVERLAY_SIDE:
        scale = MAX_OVERLAY_SIDE / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR)
    path = out / f"{index + 1:04d}_{safe_stem(name)}_{method}.png"
    overlay(img, heat).save(path)
    return path


def safe_stem(name: str, limit: int = 60) -> str:
    """A file-name-safe stem of a display name (``folder/x ray.png`` -> ``x_ray``).

    Args:
        name: a path, or ``archive.zip:inner/path.png``.
        limit: the longest stem kept.

    Returns:
        Letters, digits, ``-``, ``_`` and ``.`` only; ``image`` if nothing is left.
    """
    inner = name.split(":")[-1].replace("\\", "/").rsplit("/", 1)[-1]
    stem = inner.rsplit(".", 1)[0] if "." in inner.strip(".") else inner
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:limit]
    return stem or "image"


def _read_inputs(paths: Iterable[str], lm, args) -> Iterator[tuple]:
    """``(name, error, notes, uint8 tensor, source facts, image for an overlay)`` per input.

    Each file is decoded as soon as it is read and only the model-sized tensor is kept (the
    full image too with ``--explain``), so a chunk of 64 never holds 64 whole files.
    """
    from core.data import image_to_tensor, read_image
    from core.data.inputs import iter_image_sources
    from core.fit_check import source_facts
    from core.limits import current_limits

    for name, source, error in iter_image_sources(paths, max_entries=current_limits().max_zip_files):
        if error is None:
            try:
                decoded = read_image(source, name=Path(name.split(":")[-1]).name, frame=getattr(args, "frame", None))
                tensor = image_to_tensor(decoded.image, lm.image_size, lm.channels)
                facts = source_facts(decoded.image)
            except StudioError as exc:
                error = str(exc)
        if error is not None:
            yield name, error, (), None, None, None
        else:
            yield name, None, decoded.notes, tensor, facts, decoded.image if args.explain else None


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"cannot create the output folder {path} ({exc.strerror or exc}); pick another --out.") from exc
