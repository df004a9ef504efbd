"""``python -m core``: everything the studio does, as commands.

One module per command group, each with ``add_commands(sub)`` that adds its subcommands and
binds each to its function with ``set_defaults(func=...)``:

- :mod:`core.cli.train`: ``train``, ``resume``, ``cancel`` (a run's life)
- :mod:`core.cli.runs`: ``runs`` (the run list)
- :mod:`core.cli.eval`: ``eval``
- :mod:`core.cli.catalogue`: ``models``, ``datasets``, ``recipes``
- :mod:`core.cli.predict`: ``predict``; :mod:`core.cli.export`: ``export``
- :mod:`core.cli.ensemble`: ``ensemble`` (finished runs averaged into a new run)
- :mod:`core.cli.experiments`: ``sweep``, ``seeds``, ``ablation``, ``auto``, ``experiments``, ``experiment``
- :mod:`core.cli.scale`: ``--executor ray``, ``--processes``, torchrun
- :mod:`core.cli.common`: the parser, shared flags, table printing, a run's closing line

Each command prints a short human summary; bad arguments exit non-zero with one line and
no traceback. Building the parser imports no torch.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from core.cli import catalogue, ensemble, eval as eval_cmd, experiments, export, predict, runs, train
from core.cli.common import Parser
from core.errors import StudioError

#: Command groups in the order ``--help`` lists them.
GROUPS = (train, runs, eval_cmd, catalogue, predict, export, ensemble, experiments)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m core``; each subcommand carries its function as ``func``."""
    p = Parser(prog="python -m core", description="Train, compare and use medical image classifiers.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.add_commands(sub)
    return p


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (2 for a bad argument or a :class:`StudioError`)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the command's own parser, so its error names `python -m core CMD --help`
            _subparsers(parser)[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse already printed its one line (or --help)
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # eval / predict / export on too small a machine
        from core.train.oom import out_of_memory_message

        message = out_of_memory_message(exc, doing=f"`{args.command}`")
        if message is None:
            raise
        print(f"error: {message}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; `python -m core resume RUN_ID` continues a run from its last checkpoint.",
              file=sys.stderr)
        return 130
