"""Inference latency: one uploaded image through decode -> preprocess -> predict -> Grad-CAM,
as the Classify page does it, and images/s for batch prediction (``python -m core predict``'s
path without the file writes).
"""

from __future__ import annotations

import io
import statistics
import time

import numpy as np
import torch

from bench.machine import describe


def add_arguments(p) -> None:
    p.add_argument("--run", required=True, help="a completed run's id")
    p.add_argument("--runs-dir", help="where runs are kept (default $STUDIO_RUNS_DIR or ./runs)")
    p.add_argument("--repeats", type=int, default=200, help="timed single-image requests")
    p.add_argument("--batch", type=int, default=256, help="batch size for the throughput figure")
    p.add_argument("--method", default="gradcam", help="explanation method")


def _png_bytes(rng: np.random.Generator, size: int, channels: int) -> bytes:
    from PIL import Image

    shape = (size, size) if channels == 1 else (size, size, 3)
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def run(args) -> int:
    from core.explain import explain
    from core.inference import load_image_tensor, load_run_model, predict_tensor, preprocess
    from core.runs import RunStore

    store = RunStore(args.runs_dir)
    lm = load_run_model(store.get(args.run))
    rng = np.random.default_rng(0)
    files = [_png_bytes(rng, lm.image_size, lm.channels) for _ in range(16)]

    def one(data: bytes) -> None:
        x = load_image_tensor(lm, data, name="upload.png")
        out = predict_tensor(lm, x.unsqueeze(0))
        explain(lm, preprocess(lm, x.unsqueeze(0))[0], target=int(out["pred"][0]), method=args.method)

    for i in range(10):  # warm-up: first calls allocate and pick kernels
        one(files[i % len(files)])
    times = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        one(files[i % len(files)])
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p50 = statistics.median(times)
    p95 = times[int(round(0.95 * (len(times) - 1)))]

    batch = torch.from_numpy(rng.integers(0, 256, (args.batch, lm.channels, lm.image_size, lm.image_size),
                                          dtype=np.uint8))
    predict_tensor(lm, batch)
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        predict_tensor(lm, batch)
    per_s = reps * args.batch / (time.perf_counter() - t0)

    print(f"# {describe()}")
    print(f"# run {args.run}: {lm.model_name}, {lm.image_size} px, {lm.channels} channel(s), {args.method}")
    print(f"single image (decode + preprocess + predict + {args.method}), {args.repeats} requests: "
          f"p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    print(f"batch prediction ({args.batch} per batch): {per_s:.0f} images/s")
    return 0
