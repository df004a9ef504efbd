"""Errors meant for a person.

A :class:`StudioError` carries one sentence that says what happened and what to do.
The command line prints it as one line and exits non-zero; the pages show it with
``st.error``. Anything else that escapes is a bug.
"""


class StudioError(ValueError):
    """An error whose message is written for the person using the studio."""


class DataError(StudioError):
    """A dataset is missing, malformed or cannot be read."""


class ConfigError(StudioError):
    """A setting (model name, learning rate, epochs, ...) is out of range."""
