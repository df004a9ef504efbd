"""The studio's engine: data, models, training, evaluation, explanations and the run store.

Nothing in this package imports streamlit; the pages in ``pages/`` call into it. Find a
feature by its name (each package's docstring lists its modules; README "Layout" has all):

- ``data/`` datasets, ``models/`` architectures, ``train/`` training, ``runs/`` the run
  store, job runner and workers, ``experiments/`` groups of runs, ``cli/`` the command line
  (``python -m core``)
- ``checkpoint`` the checkpoint format; ``vocab`` shared names (tasks, splits, sizes);
  ``paths`` where files are kept; ``limits`` the hosted demo's policy
- ``evaluate``, ``per_class``, ``calibration``, ``uncertainty``, ``honesty``, ``baseline``:
  scores and how far to trust them; ``inference``, ``forward``, ``explain*``, ``fit_check``:
  using a model; ``export*``, ``model_card``, ``report*``: taking results out
"""

__version__ = "0.1.0"
