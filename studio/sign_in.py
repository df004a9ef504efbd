"""Sign-in, when the operator sets it up: the ``[auth]`` section of ``secrets.toml`` (one
OIDC provider, or several as ``[auth.<name>]``), Streamlit's ``st.login``, and who is signed
in. Without that section the studio has no sign-in at all."""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from studio.formatting import plain
from studio.safe_text import md_escape

log = logging.getLogger("studio")


def auth_settings() -> dict[str, Any] | None:
    """The ``[auth]`` section of the operator's secrets.toml, or None when there is none
    (then the studio has no sign-in at all)."""
    try:
        if not st.secrets.load_if_toml_exists() or "auth" not in st.secrets:
            return None
        section = st.secrets["auth"]
        return dict(section) if hasattr(section, "keys") else None
    except Exception:  # an unreadable secrets file means no sign-in, not a broken page
        log.exception("could not read the [auth] secrets; sign-in is off")
        return None


def sign_in_providers(auth: dict[str, Any]) -> list[str | None]:
    """None for a single provider set directly under ``[auth]``, else the names of the
    ``[auth.<name>]`` sub-sections (each gets its own button)."""
    if "client_id" in auth:
        return [None]
    return [name for name, value in auth.items() if hasattr(value, "keys")]


def signed_in_user() -> str | None:
    """The signed-in person's e-mail (or OIDC subject), when sign-in is configured."""
    if auth_settings() is None:
        return None
    info = st.user.to_dict()
    if not info.get("is_logged_in"):
        return None
    ident = info.get("email") or info.get("sub")
    return str(ident) if ident else None


def require_sign_in() -> None:
    """When the operator configured ``[auth]``, show a sign-in screen and stop until the
    visitor has signed in; otherwise do nothing."""
    auth = auth_settings()
    if auth is None or signed_in_user() is not None:
        return
    st.title("Medical Image Classification Studio")
    st.write("Sign in to train and use models. Your runs and imported images are kept under your account.")
    for provider in sign_in_providers(auth) or [None]:
        label = f"Sign in with {provider.title()}" if provider else "Sign in"
        if st.button(label, type="primary", icon=":material/login:", key=f"login-{provider}"):
            try:
                if provider:
                    st.login(provider)
                else:
                    st.login()
            except Exception as exc:  # missing Authlib, a typo in secrets.toml
                log.exception("sign-in failed")
                st.error(f"Sign-in is set up but could not start ({md_escape(plain(exc))}); "
                         "the operator should check the [auth] settings and install streamlit[auth].",
                         icon=":material/error:")
    st.stop()
