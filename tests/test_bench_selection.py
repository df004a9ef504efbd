"""bench selection's judge: rules choose an epoch on one half of validation, are scored on the other."""

import numpy as np

from bench.selection import Recorder, _nll, judge


def _scores(labels: np.ndarray, right: float) -> np.ndarray:
    """Two-class probabilities that put ``right`` on the true class."""
    p1 = np.where(labels == 1, right, 1 - right)
    return np.stack([1 - p1, p1], axis=1)


def test_every_rule_is_scored_on_the_held_out_half_and_names_its_epochs():
    labels = np.array([0, 1] * 20)
    rec = Recorder()
    wrong = _scores(labels, 0.3)  # every image on the wrong side: ACC 0, AUC 0
    rec.scores = [wrong, _scores(labels, 0.9), wrong]  # epoch 2 is perfect, the last is not
    rec.tail_scores = {3: _scores(labels, 0.6)}

    out = judge(rec, labels, "binary", halves=5, seed=0)

    for rule in ("best val AUC (default)", "best val ACC", "best val ACC, AUC breaks ties", "best val loss"):
        assert out[rule]["epochs"] == [2] * 5, rule
        assert out[rule]["acc"] == 1.0 and out[rule]["auc"] == 1.0, rule
    assert out["last epoch"]["acc"] == 0.0 and out["last epoch"]["epochs"] == []
    assert out["average of the last 3 epochs"]["acc"] == 1.0
    assert "average of the last 5 epochs" not in out  # only 3 epochs were kept


def test_ties_go_to_the_earliest_epoch_and_auc_breaks_accuracy_ties():
    labels = np.array([0, 1] * 20)
    wrong = np.arange(40) % 5 == 0  # the same images are misclassified in both epochs
    first = _scores(labels, 0.6)
    first[wrong] = _scores(labels[wrong], 0.3)  # confidently wrong: ranked below correct ones
    second = _scores(labels, 0.6)
    second[wrong] = _scores(labels[wrong], 0.45)  # barely wrong: ranked among the right ones
    rec = Recorder()
    rec.scores = [first, second]
    out = judge(rec, labels, "binary", halves=4, seed=1)
    assert out["best val ACC"]["epochs"] == [1] * 4  # equal accuracy: the earliest epoch
    assert out["best val ACC, AUC breaks ties"]["epochs"] == [2] * 4
    assert out["best val ACC, AUC breaks ties"]["auc"] > out["best val ACC"]["auc"]
    assert out["best val ACC, AUC breaks ties"]["acc"] == out["best val ACC"]["acc"]


def test_nll_is_the_mean_negative_log_probability_of_the_true_class():
    labels = np.array([0, 1, 1])
    scores = np.array([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]])
    assert np.isclose(_nll(scores, labels), -np.mean(np.log([0.8, 0.5, 0.9])))
