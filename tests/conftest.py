"""Shared fixtures.

Real MedMNIST files are read from ``$STUDIO_TEST_MEDMNIST`` or, by default, from
``../shared/data/medmnist`` beside the repository; tests that need them skip with a
reason when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def medmnist_test_dir() -> Path:
    return Path(os.environ.get("STUDIO_TEST_MEDMNIST", REPO.parent / "shared" / "data" / "medmnist"))


@pytest.fixture
def medmnist_dir() -> Path:
    """Directory with the official ``breastmnist.npz`` and ``bloodmnist.npz`` (28 px)."""
    d = medmnist_test_dir()
    if not (d / "breastmnist.npz").exists():
        pytest.skip(f"real MedMNIST files not found in {d}; set STUDIO_TEST_MEDMNIST to their directory")
    return d


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Every test gets its own runs and data directories unless it sets others."""
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
