"""``python -m core``: listings, a real foreground training, and one clear line for bad arguments."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.cli import main
from tests.conftest import REPO


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "breastmnist", "--model", "nosuchnet"], "unknown model 'nosuchnet'; choose one of:"),
    (["train", "--dataset", "breastmnist", "--model", "medvcnn", "--epochs", "0"], "epochs must be at least 1"),
    (["train", "--dataset", "breastmnist", "--model", "medvcnn", "--lr", "0"], "learning rate must be a number above 0"),
    (["train", "--dataset", "breastmnist", "--model", "medvcnn", "--lr", "-0.1"], "learning rate must be a number above 0"),
    (["train", "--dataset", "breastmnist", "--model", "medvcnn", "--size", "30"], "image size 30 is not offered"),
    (["train", "--dataset", "breastmnist", "--model", "medvcnn", "--epochs", "two"], "expected a whole number, got 'two'"),
    (["train", "--dataset", "nosuchset", "--model", "medvcnn"], "nosuchset"),
    (["train", "--model", "medvcnn"], "the following arguments are required: --dataset"),
    (["eval", "20990101-000000-nothing-here-0000"], "no run"),
    (["resume", "../../etc"], "run"),
    # An unknown flag sends the person to the help of the command they typed, an unknown
    # command to the help of them all.
    (["train", "--dataset", "breastmnist", "--model", "medvcnn", "--bogus", "1"],
     "unrecognized arguments: --bogus 1 (see `python -m core train --help`)"),
    (["bogus"], "invalid choice: 'bogus' (choose from 'train', "),
    (["bogus"], "(see `python -m core --help`)"),
])
def test_bad_arguments_exit_nonzero_with_one_line(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in err + out


def test_missing_medmnist_file_names_file_and_directory(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--dataset", "bloodmnist", "--model", "medvcnn", "--size", "64",
                        "--data-dir", str(tmp_path / "empty"))
    assert code != 0
    assert "bloodmnist_64.npz" in err and str(tmp_path / "empty") in err


def test_no_traceback_from_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", "breastmnist", "--model", "medvcnn",
                           "--epochs", "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: epochs must be at least 1 (got 0)."


def test_listings(capsys):
    code, out, _ = _run(capsys, "models")
    assert code == 0 and "medvcnn" in out and "arn_cnn" in out and "resnet18" in out and "logreg" in out
    code, out, _ = _run(capsys, "recipes")
    assert code == 0 and "medmnist" in out and "quadsnet" in out
    code, out, _ = _run(capsys, "datasets")
    assert code == 0 and all(name in out for name in ("pathmnist", "organsmnist", "bloodmnist"))
    code, out, _ = _run(capsys, "runs")
    assert code == 0 and "no runs yet" in out


def test_train_runs_eval_resume_cancel_from_the_command_line(capsys, tmp_path, medmnist_dir):
    runs = str(tmp_path / "runs")
    code, out, err = _run(capsys, "train", "--dataset", "breastmnist", "--model", "medvcnn", "--epochs", "3",
                          "--data-dir", str(medmnist_dir), "--runs-dir", runs, "--seed", "1")
    assert code == 0, err
    run_id = out.split()[1].rstrip(":")
    assert "test ACC" in out and "AUC" in out and "completed" in out

    from core.runs import RunStore

    run = RunStore(runs).get(run_id)
    test = run.eval()["test"]
    assert f"{test['auc']:.4f}" in out

    code, out, _ = _run(capsys, "runs", "--runs-dir", runs)
    assert code == 0 and run_id in out and "completed" in out

    code, out, _ = _run(capsys, "eval", run_id, "--runs-dir", runs, "--data-dir", str(medmnist_dir))
    assert code == 0 and f"ACC {test['acc']:.4f}" in out
    # the default recipe evaluates with mirror images, so `eval --tta` gives eval.json's scores
    assert run.params()["config"]["tta"] is True
    code, out, _ = _run(capsys, "eval", run_id, "--tta", "--runs-dir", runs, "--data-dir", str(medmnist_dir))
    assert code == 0 and "with mirror images" in out and f"ACC {test['acc']:.4f}" in out

    code, _, err = _run(capsys, "resume", run_id, "--runs-dir", runs)
    assert code == 2 and "is completed" in err

    code, out, _ = _run(capsys, "cancel", run_id, "--runs-dir", runs)
    assert code == 0 and run.meta()["status"] == "completed"  # a finished run stays as it was
