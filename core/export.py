"""Export a trained run for use outside the studio: ONNX or TorchScript, plus a model card.

An export is only written once it has been checked: the exported file is loaded back
(onnxruntime for ONNX, ``torch.jit.load`` for TorchScript) and its logits are compared with
PyTorch's on real images: the run's own test images when its dataset can be loaded, else the
images the caller passes, else seeded noise. The largest absolute difference must stay below
:func:`tolerance`: :data:`TOLERANCE` times the largest logit magnitude when that is above 1,
because float32 round-off grows with the size of the numbers (an untrained InceptionV3 gives
logits near 1e7, and PyTorch itself then differs by tens between a batch of one and of eight:
a relative 2e-6, not a bug). The file is written under a temporary name and renamed only after the
check passes, so a failed export never leaves a model file behind.

The exported network takes the normalised float32 batch ``(N, C, S, S)`` (``x / 255``, then
``(x - mean) / std``, as :func:`core.inference.preprocess`) and returns ``(N, K)`` logits;
the model card says how to get there and back.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from core.errors import StudioError

FORMATS = ("onnx", "torchscript")
FILENAMES = {"onnx": "model.onnx", "torchscript": "model.pt"}

#: Largest accepted |exported - PyTorch| over all logits of the check images, for logits up
#: to 1 in magnitude; larger logits scale it (see :func:`tolerance`).
TOLERANCE = 1e-4

#: ONNX opset: 17 has every operator the zoo needs (LSTM, LayerNorm) and runs on
#: onnxruntime releases of the last few years.
OPSET = 17

#: How many test images the parity check uses (enough to hit every class; fast).
CHECK_IMAGES = 64
_CHUNK = 32  # images per forward pass in the check


def export_run(run, fmt: str, out_dir: str | os.PathLike, check_images: Any = None,
               data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Export a run's best model and write its model card next to it.

    Args:
        run: a :class:`core.runs.Run` with a best checkpoint.
        fmt: ``"onnx"`` or ``"torchscript"``.
        out_dir: the folder to write ``model.onnx`` / ``model.pt`` and ``model_card.md`` into
            (created if missing; files of an earlier export are replaced).
        check_images: images to check the export on when the run's dataset cannot be
            loaded: uint8 ``(N, C, S, S)`` at the model's size (a tensor or array). Used
            instead of the dataset when given.
        data_dir: where MedMNIST files are, if not where the run was trained from.

    Returns:
        ``{"format", "model", "model_card", "max_abs_diff", "tolerance", "n_checked",
        "check_source", "batch"}``: the written paths as strings, the parity result and the
        limit it was held to, how many images it used, where they came from, and
        ``"dynamic"`` (any batch size works).

    Raises:
        StudioError: unknown format, no checkpoint, a model that cannot be exported, or
            a parity check that fails (nothing is written then).
    """
    from core.inference import load_run_model, preprocess
    from core.model_card import render_model_card

    if fmt not in FORMATS:
        raise StudioError(f"unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}.")
    lm = load_run_model(run, device="cpu")
    images, source = _check_batch(run, lm, check_images, data_dir)
    x = images if images.is_floating_point() else preprocess(lm, images)
    with torch.no_grad():
        expected = lm.model(x).float().numpy()

    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"cannot create the export folder {out} ({exc.strerror or exc}); pick another --out.") from exc
    path = out / FILENAMES[fmt]
    writer = _write_onnx if fmt == "onnx" else _write_torchscript
    limit = tolerance(expected)
    with _temp_file(path) as tmp:
        diff = writer(lm, x, expected, tmp)
        if not np.isfinite(diff) or diff >= limit:
            raise StudioError(
                f"the {fmt} export of run {run.id} ({lm.model_name}) gives logits that differ from PyTorch's by "
                f"{diff:.3g} (limit {limit:.3g}: {TOLERANCE:g} x max(1, largest |logit| "
                f"{_largest(expected):.3g})) on {len(x)} check images, so it was not saved; "
                "try the other format or report the model."
            )
        os.replace(tmp, path)

    export = {"format": fmt, "file": path.name, "max_abs_diff": diff, "tolerance": limit,
              "max_abs_logit": _largest(expected), "n_checked": int(len(x)), "check_source": source,
              "opset": OPSET if fmt == "onnx" else None, "batch": "dynamic"}
    card_path = write_text(out / "model_card.md", render_model_card(run, export=export))
    return {"format": fmt, "model": str(path), "model_card": str(card_path), "max_abs_diff": diff,
            "tolerance": limit, "n_checked": int(len(x)), "check_source": source, "batch": "dynamic"}


def tolerance(expected_logits: np.ndarray) -> float:
    """The largest |exported - PyTorch| difference accepted for these reference logits.

    Float32 round-off is relative: reordered sums (another batch size, fused kernels in
    onnxruntime) change a logit of size L by about L x 1e-6. So the limit is
    :data:`TOLERANCE` x max(1, largest |logit|): 1e-4 absolute for ordinary logits, and
    1e-4 relative for the huge logits of, e.g., an untrained InceptionV3.

    Args:
        expected_logits: PyTorch's logits on the check images.

    Returns:
        The limit, a positive float.
    """
    return TOLERANCE * max(1.0, _largest(expected_logits))


def _largest(logits: np.ndarray) -> float:
    a = np.asarray(logits, dtype=np.float64)
    return float(np.abs(a[np.isfinite(a)]).max()) if np.isfinite(a).any() else 0.0


# --------------------------------------------------------------------------- check images
def _check_batch(run, lm, check_images, data_dir) -> tuple[torch.Tensor, str]:
    """The images to compare outputs on, and a phrase saying where they come from."""
    shape = (lm.channels, lm.image_size, lm.image_size)
    if check_images is not None:
        t = torch.as_tensor(np.asarray(check_images)) if not isinstance(check_images, torch.Tensor) else check_images
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or tuple(t.shape[1:]) != shape or len(t) == 0:
            raise StudioError(f"check images must be a batch of shape (N, {', '.join(map(str, shape))}), "
                              f"not {tuple(t.shape)}; resize them to the model's input.")
        if t.dtype != torch.uint8 and not t.is_floating_point():
            t = t.clamp(0, 255).to(torch.uint8)
        return t[:CHECK_IMAGES].cpu(), f"{min(len(t), CHECK_IMAGES)} images given by the caller"
    test = _dataset_images(run, lm, data_dir)
    if test is not None:
        return test
    gen = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (8, *shape), generator=gen, dtype=torch.uint8)
    return noise, "8 seeded random-noise images (the run's dataset could not be loaded)"


def _dataset_images(run, lm, data_dir) -> tuple[torch.Tensor, str] | None:
    from core.data import load_dataset

    params = run.params()
    config = params.get("config") or {}
    spec = params.get("dataset") or config.get("dataset")
    if not spec:
        return None
    from core.train.evaluation import split_seed

    try:
        data = load_dataset(spec, size=lm.image_size, data_dir=data_dir or config.get("data_dir"),
                            seed=split_seed(params))
    except (StudioError, OSError, ValueError):
        return None  # not on this machine: fall back to other images
    split = next((s for s in ("test", "val", "train") if s in data.images), None)
    if split is None or data.channels != lm.channels or data.image_size != lm.image_size:
        return None
    images = data.images[split][:CHECK_IMAGES]
    return images, f"{len(images)} {split} images of {data.name}"


@contextlib.contextmanager
def _temp_file(path: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path``, removed unless it was renamed into place.

    Only the name is reserved here; whoever writes it creates the file, so it gets the
    usual permissions (umask) rather than mkstemp's owner-only ones: exports are shared.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (temporary name, then rename) with normal permissions.

    Args:
        path: the destination.
        text: the content (written as UTF-8, newlines as given).

    Returns:
        The destination path.
    """
    path = Path(path)
    with _temp_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    return path


def _batches(x: torch.Tensor) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), _CHUNK):
        yield x[i:i + _CHUNK]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' deprecation and tracer chatter (the parity check is what counts)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _failed(lm, fmt: str, exc: BaseException) -> StudioError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return StudioError(f"model '{lm.model_name}' cannot be exported to {fmt} ({type(exc).__name__}: {reason}); "
                       "try the other format.")


# --------------------------------------------------------------------------- ONNX
def _write_onnx(lm, x: torch.Tensor, expected: np.ndarray, tmp: Path) -> float:
    import onnx

    example = x[:1]
    try:
        with _quiet(), torch.no_grad(), _onnx_friendly(lm.model, example):
            # The TorchScript-based exporter: the dynamo one needs onnxscript and handles
            # the LSTM hybrids no better. A batch-1 example is what the exporter asks for
            # LSTMs; the batch axis is still dynamic.
            torch.onnx.export(lm.model, (example,), str(tmp), opset_version=OPSET, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              do_constant_folding=True, dynamo=False)
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
        for key, value in _metadata(lm).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
    except StudioError:
        raise
    except Exception as exc:  # the exporter raises many types on unsupported operators
        raise _failed(lm, "ONNX", exc) from exc
    got = np.concatenate([run_onnx(tmp, b.numpy()) for b in _batches(x)])
    return _max_abs_diff(got, expected)


class _MatrixAdaptiveAvgPool(nn.Module):
    """``AdaptiveAvgPool2d`` for one fixed input size, as two matrix products.

    ONNX has no adaptive pooling; the exporter turns it into an ordinary average pool only
    when the input side is a multiple of the output side. VGG-16's (7, 7) pool after a
    28 or 64 px input (1 x 1 or 2 x 2 features) is not, so it is written as the same
    averaging expressed as ``P_h @ x @ P_w^T``.
    """

    def __init__(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("ph", _pool_matrix(in_size[0], out_size[0]))
        self.register_buffer("pw", _pool_matrix(in_size[1], out_size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.ph, x), self.pw.t())


def _pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    # PyTorch's adaptive bins: output i averages inputs floor(i*n/m) .. ceil((i+1)*n/m) - 1.
    p = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        p[i, start:end] = 1.0 / (end - start)
    return p


@contextlib.contextmanager
def _onnx_friendly(model: nn.Module, example: torch.Tensor) -> Iterator[None]:
    """Within the block, adaptive average pools ONNX cannot express are matrix products.

    Only pools whose input side is not a multiple of the output side are swapped; the
    original modules are put back afterwards (and the parity check compares against the
    untouched model's outputs).
    """
    sizes: dict[nn.Module, tuple[tuple[int, int], tuple[int, int]]] = {}

    def record(module, inputs, output):
        sizes[module] = (tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:]))

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    try:
        if handles:
            with torch.no_grad():
                model(example)
    finally:
        for h in handles:
            h.remove()
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if child in sizes:
                (ih, iw), (oh, ow) = sizes[child]
                if ih % oh or iw % ow:
                    setattr(parent, name, _MatrixAdaptiveAvgPool((ih, iw), (oh, ow)))
                    swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def run_onnx(path: str | os.PathLike, batch: np.ndarray) -> np.ndarray:
    """Logits of an exported ONNX model on the CPU with onnxruntime.

    Args:
        path: the ``.onnx`` file.
        batch: normalised float32 ``(N, C, S, S)``.

    Returns:
        float32 ``(N, K)`` logits.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {"input": np.ascontiguousarray(batch, dtype=np.float32)})[0])
    except Exception as exc:  # onnxruntime's own error types
        raise StudioError(f"onnxruntime cannot run the exported model ({type(exc).__name__}: "
                          f"{str(exc).strip()[:200]}); it was not saved.") from exc


# --------------------------------------------------------------------------- TorchScript
def _write_torchscript(lm, x: torch.Tensor, expected: np.ndarray, tmp: Path) -> float:
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(lm.model, x[:1], check_trace=False)
            torch.jit.save(traced, str(tmp), _extra_files={"studio.json": json.dumps(_metadata(lm))})
            loaded = torch.jit.load(str(tmp), map_location="cpu")
            loaded.eval()
            got = np.concatenate([loaded(b).float().numpy() for b in _batches(x)])
    except Exception as exc:
        raise _failed(lm, "TorchScript", exc) from exc
    return _max_abs_diff(got, expected)


def _max_abs_diff(got: np.ndarray, expected: np.ndarray) -> float:
    if got.shape != expected.shape:
        raise StudioError(f"the exported model returns shape {got.shape} instead of {expected.shape}; it was not saved.")
    return float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))) if got.size else 0.0


def _metadata(lm) -> dict[str, str]:
    """What a consumer needs to use the file, stored inside it."""
    return {
        "studio_run_id": lm.run_id,
        "model_name": lm.model_name,
        "class_names": json.dumps(lm.class_names),
        "task": lm.task,
        "image_size": str(lm.image_size),
        "channels": str(lm.channels),
        "mean": json.dumps(lm.mean[:lm.channels]),
        "std": json.dumps(lm.std[:lm.channels]),
        "temperature": repr(float(lm.temperature)),
        "preprocessing": "x = pixels / 255; x = (x - mean) / std; NCHW float32",
        "output": "logits; softmax for probabilities (sigmoid per label for multi-label)",
    }
