"""The studio's engine: data, models, training, evaluation, explanations and the run store.

Nothing in this package imports streamlit; the pages in ``pages/`` call into it.
"""

__version__ = "0.1.0"
