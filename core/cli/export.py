"""``python -m core export``: an ONNX or TorchScript file and a model card, after checking the
export against PyTorch (see :mod:`core.export`)."""

from __future__ import annotations

from pathlib import Path

from core.cli.common import add_dirs, open_store

# The parser is built for every command, so it must not import torch: this mirrors
# core.export.FORMATS (a test checks).
EXPORT_FORMATS = {
    "onnx": "model.onnx, for onnxruntime (Python, C++, C#, Java, the browser)",
    "torchscript": "model.pt, for torch.jit.load in Python or libtorch (C++)",
}


def add_commands(sub) -> None:
    """Add ``export`` to the subparsers ``sub``."""
    e = sub.add_parser("export", help="export a run's model to ONNX or TorchScript with a model card")
    e.add_argument("run_id", help="the run whose best model to export (python -m core runs)")
    e.add_argument("--format", required=True, choices=tuple(EXPORT_FORMATS), dest="fmt",
                   help="; ".join(f"{k}: {v}" for k, v in EXPORT_FORMATS.items()))
    e.add_argument("--out", metavar="DIR", help="output folder (default ./export-RUN_ID)")
    add_dirs(e)
    e.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    """Export a run's best model and write its model card."""
    from core.export import export_run

    run = open_store(args).get(args.run_id)
    out = Path(args.out or f"export-{run.id}").expanduser()
    result = export_run(run, args.fmt, out, data_dir=getattr(args, "data_dir", None))
    print(f"exported run {run.id} to {result['model']} (checked on {result['check_source']}: "
          f"max |difference| {result['max_abs_diff']:.2e}); model card in {result['model_card']}")
    return 0
