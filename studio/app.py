"""Entry point of the browser studio: ``streamlit run studio/app.py``.

It only sets up the page, asks for sign-in when the operator configured it, and routes;
each page is one script in ``pages/``.
"""

import sys
from pathlib import Path

# `streamlit run studio/app.py` puts studio/ on the path, not the repository root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from studio import ui  # noqa: E402

st.set_page_config(page_title="Medical Image Studio", page_icon=":material/stethoscope:", layout="wide")
ui.require_sign_in()  # only when the operator configured [auth] in secrets.toml

navigation = st.navigation([
    st.Page(ui.PAGES["home"], title="Home", icon=":material/home:", default=True),
    st.Page(ui.PAGES["datasets"], title="Datasets", icon=":material/folder_open:"),
    st.Page(ui.PAGES["train"], title="Train", icon=":material/model_training:"),
    st.Page(ui.PAGES["compare"], title="Compare", icon=":material/leaderboard:"),
    st.Page("../pages/experiments.py", title="Experiments", icon=":material/science:"),
    st.Page(ui.PAGES["classify"], title="Classify", icon=":material/image_search:"),
])
ui.sidebar()
navigation.run()
