"""Download buttons for a run's model (ONNX or TorchScript, with its model card) and for
reports (HTML and PDF) of a run or a comparison.

Building either takes seconds (an export is checked against PyTorch on test images; a report
explains example images), so it happens when the person asks for it ("Prepare ..."), inside
the page's error boundary, and the finished file waits in this session for its download
button. Only the last few prepared files are kept.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from studio import ui

_PREPARED = "prepared_downloads"
KEEP = 6  # prepared files kept per session (models can be tens of MB)


def _remember(key: str, files: list[dict]) -> None:
    prepared = st.session_state.setdefault(_PREPARED, {})
    prepared.pop(key, None)
    prepared[key] = files
    while len(prepared) > KEEP:
        prepared.pop(next(iter(prepared)))


def prepared(key: str) -> list[dict]:
    """The files prepared under ``key`` in this session: ``{"label", "file_name", "data", "mime", "note"}``."""
    return st.session_state.get(_PREPARED, {}).get(key, [])


def _offer(key: str) -> None:
    for i, f in enumerate(prepared(key)):
        st.download_button(f["label"], f["data"], f["file_name"], f["mime"], key=f"{key}-file-{i}",
                           icon=":material/download:", on_click="ignore")
        if f.get("note"):
            st.caption(f["note"])


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{max(1, round(n / 1e3))} kB"


def model_downloads(run, key: str) -> None:
    """The format picker, "Prepare the model download" and, once ready, its download button.

    Args:
        run: a :class:`core.runs.Run`.
        key: a prefix for the widgets' keys, unique on the page (e.g. ``"classify"``).
    """
    from core.export_bundle import FORMAT_LABELS, FORMATS, export_bundle

    if not run.best_checkpoint.is_file():
        st.caption("This run has no network weights to download (a classical baseline, or not finished).")
        return
    fmt = st.selectbox("Model file format", FORMATS, format_func=FORMAT_LABELS.get, key=f"{key}-format",
                       help="ONNX runs in onnxruntime and most deployment tools; TorchScript loads in PyTorch "
                            "without this studio's code. Both come with the model card, which says how to "
                            "prepare an image and read the answer.")
    stamp = ui.file_stamp(run.best_checkpoint)
    slot = f"model-{run.id}-{fmt}-{stamp}"
    if st.button("Prepare the model download", key=f"{key}-export-{fmt}", icon=":material/deployed_code:"):
        with ui.guard(f"exporting the model to {FORMAT_LABELS[fmt]}", "try the other format"), \
                st.spinner(f"Exporting to {FORMAT_LABELS[fmt]} and checking it against PyTorch..."):
            bundle = export_bundle(run, fmt)
            ex = bundle["export"]
            _remember(slot, [{
                "label": f"Download the {FORMAT_LABELS[fmt]} model and its model card "
                         f"(.zip, {_megabytes(len(bundle['data']))})",
                "file_name": bundle["file_name"], "data": bundle["data"], "mime": "application/zip",
                "note": f"Checked before saving: the exported model's answers differ from PyTorch's by at most "
                        f"{ex['max_abs_diff']:.1e} on {ex['n_checked']} images. The zip holds "
                        f"{' and '.join(bundle['members'])}.",
            }])
    _offer(slot)


def report_downloads(runs: list, key: str, what: str) -> None:
    """"Prepare the report" and, once ready, its HTML and PDF download buttons.

    Args:
        runs: one :class:`core.runs.Run` (a run's report) or several (a comparison).
        key: a prefix for the widgets' keys, unique on the page.
        what: the button's object, e.g. "report of this run".
    """
    from core.report import comparison_report, render, report_file_name, run_report

    if not runs:
        return
    stamp = "/".join(f"{r.id}:{ui.file_stamp(r.eval_path)}:{ui.file_stamp(r.meta_path)}" for r in runs)
    slot = f"report-{key}-{stamp}"
    if st.button(f"Prepare the {what}", key=f"{key}-report", icon=":material/description:",
                 help="Settings, learning curves, scores, per-class sensitivity, specificity, precision, recall "
                      "and accuracy, confusion matrix, calibration and example explanations, as a web page "
                      "(HTML, opens anywhere) and as a PDF."):
        with ui.guard(f"writing the {what}"), st.spinner("Writing the report (explaining a few test images)..."):
            report = run_report(runs[0]) if len(runs) == 1 else comparison_report(runs)
            files = [{"label": "Download the report (HTML)", "file_name": report_file_name(report.title, "html"),
                      "data": render(report, "html"), "mime": "text/html", "note": ""}]
            with ui.guard("writing the PDF", "download the HTML report instead"):
                files.append({"label": "Download the report (PDF)", "data": render(report, "pdf"),
                              "file_name": report_file_name(report.title, "pdf"), "mime": "application/pdf",
                              "note": ""})
            _remember(slot, files)
    _offer(slot)


def run_card(rows: list[dict], key: str) -> None:
    """Compare's download card: pick one of the selected runs, then get its model or its report;
    below it, the report of the whole comparison.

    Args:
        rows: the selected runs' index rows (with ``label`` and ``dir``).
        key: a prefix for the widgets' keys.
    """
    from core.runs import Run

    if not rows:
        return
    with st.container(border=True):
        by_id = {r["run_id"]: r for r in rows}
        run_id = st.selectbox("Run", list(by_id), format_func=lambda i: by_id[i]["label"], key=f"{key}-run",
                              help="One of the runs selected above.")
        run = Run(Path(by_id[run_id]["dir"]))
        left, right = st.columns(2, gap="large")
        with left:
            st.markdown("**The model**")
            model_downloads(run, key=f"{key}-{run_id}")
        with right:
            st.markdown("**A report of this run**")
            report_downloads([run], key=f"{key}-{run_id}", what="report of this run")
    if len(rows) > 1:
        report_downloads([Run(Path(r["dir"])) for r in rows], key=f"{key}-all",
                         what=f"report comparing these {len(rows)} runs")
