"""The Train form remembers itself across a page refresh and a trip to another page.

Session state alone is not enough: Streamlit drops a widget's state when a run of the
script does not draw it (another page), and a refresh starts a new session. So the form's
values are kept twice:

- in the session, as a plain dict (not widget state), for trips to other pages;
- in the page's URL (``st.query_params``), for a refresh: only the choices and the
  settings that differ from the recipe, as short strings.

Anything read back from the URL was typed by whoever holds the link, so each value is
checked against the widget's own options or bounds and dropped when it does not fit.
A setting of the recipe (epochs, learning rate, ...) keeps the person's value while the
recipe's own value for it stays the same, and follows the recipe when it changes (a
new recipe, another architecture's paper recipe), as the form always did.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import streamlit as st

SAVED = "train_form_saved"  # session dict: field -> value (choices and changed settings)
LOADED = "train_form_loaded"  # the URL has been read into SAVED for this session
PREFIX = "train_"  # widget keys: train_<field>
BASE = "train_form_base"  # session dict: field -> the recipe value its widget was set up with
CHOICES = ("dataset", "size", "model", "also", "recipe", "name")


def _saved() -> dict[str, Any]:
    if not st.session_state.get(LOADED):
        st.session_state[LOADED] = True
        saved = st.session_state.setdefault(SAVED, {})
        for field, value in st.query_params.to_dict().items():
            if field in CHOICES or field in SETTINGS:
                saved.setdefault(field, value)
    return st.session_state.setdefault(SAVED, {})


def key(field: str) -> str:
    """The widget key of a form field."""
    return PREFIX + field


# ------------------------------------------------------------------ parsing what the URL says
def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"1": True, "true": True, "0": False, "false": False}.get(str(value).lower())


def _number(cast: Callable[[Any], Any], lo: float, hi: float) -> Callable[[Any], Any]:
    def parse(value: Any):
        try:
            number = cast(float(value)) if cast is int else cast(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if isinstance(number, float) and not math.isfinite(number):
            return None
        if cast is int and float(value) != number:
            return None
        return number if lo <= number <= hi else None
    return parse


def choice(field: str, options: Sequence[Any], default: Any, to_text: Callable[[Any], str] = str) -> str:
    """Set up a single-choice widget (selectbox, radio) and return its key.

    The value is the live widget state, else the remembered one (matched by its text, so a
    dataset folder is remembered by its name, not its server path), else ``default``.
    """
    k = key(field)
    options = list(options)
    if k in st.session_state and st.session_state[k] in options:
        return k
    remembered = _saved().get(field)
    match = [o for o in options if remembered is not None and to_text(o) == str(remembered)]
    st.session_state[k] = match[0] if match else (default if default in options else options[0])
    return k


def choices(field: str, options: Sequence[Any], to_text: Callable[[Any], str] = str) -> str:
    """Set up a multiselect and return its key (remembered as comma-separated texts)."""
    k = key(field)
    options = list(options)
    if k in st.session_state:
        st.session_state[k] = [o for o in st.session_state[k] if o in options]
        return k
    remembered = _saved().get(field) or ""
    wanted = remembered if isinstance(remembered, list) else [t for t in str(remembered).split(",") if t]
    st.session_state[k] = [o for o in options if to_text(o) in {str(w) for w in wanted}]
    return k


def text(field: str, max_chars: int = 200) -> str:
    """Set up a text input and return its key."""
    k = key(field)
    if k not in st.session_state:
        st.session_state[k] = str(_saved().get(field) or "")[:max_chars]
    return k


# (kind, low, high) of each setting; the page passes the bounds that depend on limits.
SETTINGS = ("epochs", "batch_size", "lr", "optimizer", "schedule", "loss", "early_stopping", "seed",
            "max_minutes", "class_weights", "pretrained", "augment")


def setting(field: str, recipe_value: Any, *, options: Sequence[Any] | None = None,
            bounds: tuple[float, float] | None = None, cast: Callable[[Any], Any] | None = None) -> str:
    """Set up the widget of one recipe setting and return its key.

    Args:
        field: a :class:`core.train.TrainConfig` field.
        recipe_value: the recipe's value for it (the widget's default).
        options: the allowed values of a select box.
        bounds: (low, high) of a number input.
        cast: ``int`` or ``float`` for a number input; booleans need neither.
    """
    k = key(field)
    bases = st.session_state.setdefault(BASE, {})
    if k in st.session_state:
        if bases.get(field) != recipe_value:  # the recipe's value changed: follow it
            st.session_state[k] = recipe_value
    else:
        st.session_state[k] = _restore(field, recipe_value, options, bounds, cast)
    bases[field] = recipe_value
    return k


def _restore(field, recipe_value, options, bounds, cast):
    remembered = _saved().get(field)
    if remembered is None:
        return recipe_value
    if options is not None:
        found = [o for o in options if str(o) == str(remembered)]
        return found[0] if found else recipe_value
    if bounds is not None and cast is not None:
        value = _number(cast, *bounds)(remembered)
        return recipe_value if value is None else value
    if isinstance(recipe_value, bool):
        value = _bool(remembered)
        return recipe_value if value is None else value
    return recipe_value


def remember(chosen: dict[str, Any], changed: dict[str, Any]) -> None:
    """Keep this run's form: the choices and the settings that differ from the recipe, in
    the session and in the URL (only the parameters that changed are sent)."""
    values = {**chosen, **changed}
    st.session_state[SAVED] = dict(values)
    st.session_state[LOADED] = True
    wanted = {f: _to_text(v) for f, v in values.items() if v not in (None, "", [])}
    params = st.query_params
    for field in [*CHOICES, *SETTINGS]:
        if field in wanted:
            if params.get(field) != wanted[field]:
                params[field] = wanted[field]
        elif field in params:
            del params[field]


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)
