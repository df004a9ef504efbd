"""The Docker image starts and reports health the way README.md says it does."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCUMENTED_COMMAND = "streamlit run studio/app.py --server.port=8501 --server.address=0.0.0.0"
HEALTH_PATH = "/_stcore/health"


def _dockerfile() -> str:
    # Join continuation lines so that an instruction is one line.
    return re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())


def _instruction(name: str) -> str:
    found = [line.strip()[len(name):].strip() for line in _dockerfile().splitlines()
             if line.strip().upper().startswith(name + " ")]
    assert len(found) == 1, f"expected one {name} in the Dockerfile, found {len(found)}"
    return found[0]


def test_readme_documents_the_command_and_the_health_check():
    readme = (REPO / "README.md").read_text()
    assert DOCUMENTED_COMMAND in readme
    assert f"http://localhost:8501{HEALTH_PATH}" in readme


def test_dockerfile_cmd_is_the_documented_command():
    cmd = json.loads(_instruction("CMD"))  # exec form: a JSON list
    assert " ".join(cmd) == DOCUMENTED_COMMAND
    assert (REPO / cmd[2]).is_file(), "the entry script exists"
    assert "8501" in _instruction("EXPOSE").split()


def test_dockerfile_healthcheck_probes_the_documented_endpoint():
    check = _instruction("HEALTHCHECK")
    assert re.search(r"\bCMD\b", check)
    assert f"http://localhost:8501{HEALTH_PATH}" in check
    assert "--fail" in check, "an unhealthy answer must fail the check"


def test_image_contains_what_the_app_needs():
    copied = {line.split()[1].rstrip("/") for line in _dockerfile().splitlines() if line.startswith("COPY ")}
    assert {"core", "studio", "pages", ".streamlit"} <= copied
