"""Benchmarks, run by hand (``python -m bench ...``), never part of the test run.

Each sub-command lives in its own module with ``add_arguments(parser)`` and ``run(args)``;
results go to ``BENCHMARKS.md`` with the machine, the command and the date.
"""
