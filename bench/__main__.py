"""``python -m bench throughput|accuracy|inference|memory|make-large|short|auto|scale|...``."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "throughput": ("bench.throughput", "training images/s: the MedMNIST reference pipeline against the studio"),
    "accuracy": ("bench.accuracy", "the default recipe within a time budget, beside the MedMNIST v2 table"),
    "inference": ("bench.inference", "latency of one uploaded image: decode, preprocess, predict, Grad-CAM"),
    "memory": ("bench.memory", "peak resident memory of a training worker"),
    "make-large": ("bench.make_large", "write a generated MedMNIST-format dataset of a given size"),
    "short": ("bench.short", "a few epochs on a few hundred images: breastmnist, an image folder, a generated one"),
    "auto": ("bench.auto", "Auto (core.experiments) within a budget, several seeds, beside the MedMNIST v2 table"),
    "selection": ("bench.selection", "which epoch to keep: selection rules judged on held-out halves of validation"),
    "scale": ("bench.scale", "one run on 1, 2... processes (images/s), and a sweep on the local executor vs Ray"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module, helptext) in COMMANDS.items():
        sp = sub.add_parser(name, help=helptext)
        try:
            modules[name] = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a benchmark whose module is not there yet
            if exc.name != module:
                raise
            continue
        modules[name].add_arguments(sp)
    args = parser.parse_args(argv)
    if args.command not in modules:
        parser.error(f"the {args.command} benchmark is not available ({COMMANDS[args.command][0]} is missing)")
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
