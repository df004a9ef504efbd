"""The browser studio: ``streamlit run studio/app.py``.

``app.py`` routes, ``ui.py`` holds what the pages share (cached run store and job runner,
the sidebar, the error boundary, formatting), ``charts.py`` builds the plotly figures and
``paper_claims.py`` holds the seed papers' reported accuracies. The pages live in ``pages/``.
"""
