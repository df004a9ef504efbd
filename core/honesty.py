"""Is a finished run any good? Near chance, one answer for everything, or worse than a
quick classical baseline (:mod:`core.baseline`) on the same data: said in words, with what
to try. The pages show the result; the judgement lives here so every page agrees.

Chance level is what a model that learned nothing scores: always answering the most common
test class (or 1/K, whichever is higher) for accuracy, 0.5 for AUC. For multi-label data
it is the accuracy of answering "absent" (or "present") for each label, whichever is more
common.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

ACC_MARGIN = 0.05  # accuracy within this of chance level counts as "near chance"
AUC_MARGIN = 0.05  # AUC within this of 0.5 counts as "near chance"
BASELINE_MARGIN = 0.02  # below the baseline by more than this counts as "worse"
ONE_CLASS_SHARE = 0.9  # a model answering one class for this share of images ...
ONE_CLASS_EXCESS = 0.1  # ... when that class is this much rarer in truth, answers one class


@dataclass(frozen=True)
class Verdict:
    """What :func:`judge` found about a run's test scores.

    Attributes:
        problems: sentences, one per problem found (empty: nothing to warn about).
        advice: sentences on what to try, most useful first.
        kinds: short codes of the problems (``near_chance_acc``, ``near_chance_auc``,
            ``one_class``, ``below_baseline``), for tests and tables.
    """

    problems: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def short(self) -> str:
        """A few words for a table cell: ``near chance``, ``below baseline`` or ``""``."""
        words = []
        if {"near_chance_acc", "near_chance_auc", "one_class"} & set(self.kinds):
            words.append("near chance")
        if "below_baseline" in self.kinds:
            words.append("below baseline")
        return ", ".join(words)


def chance_accuracy(test: Mapping[str, Any]) -> tuple[float, str | None] | None:
    """The accuracy of a model that learned nothing, and the answer it would always give.

    Args:
        test: a split's evaluation (:func:`core.evaluate.evaluate_predictions`).

    Returns:
        ``(accuracy, class name)`` for single-label tasks, ``(accuracy, None)`` for
        multi-label; None when the evaluation lacks the class counts.
    """
    per_class = test.get("per_class") or []
    n = test.get("n")
    supports = [c.get("support") for c in per_class]
    if not per_class or not n or not all(isinstance(s, (int, float)) for s in supports):
        return None
    if test.get("task") == "multi-label":
        shares = [s / n for s in supports]
        return sum(max(p, 1 - p) for p in shares) / len(shares), None
    top = max(range(len(supports)), key=lambda j: supports[j])
    return max(supports[top] / n, 1 / len(supports)), str(per_class[top].get("class"))


def _dominant_answer(test: Mapping[str, Any]) -> tuple[str, float, float] | None:
    """(class, share of answers, share of truth) of the most given answer, single-label only."""
    matrix = test.get("confusion_matrix")
    names = test.get("class_names")
    if test.get("task") == "multi-label" or not matrix or not names:
        return None
    total = sum(sum(row) for row in matrix)
    if not total:
        return None
    answered = [sum(row[j] for row in matrix) for j in range(len(matrix))]
    j = max(range(len(answered)), key=lambda i: answered[i])
    return str(names[j]), answered[j] / total, sum(matrix[j]) / total


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value else None


def judge(test: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None = None,
          stop: Mapping[str, Any] | None = None, classical: bool = False, recipe: str | None = None) -> Verdict:
    """Warnings about a finished run's test scores, with what to try.

    Args:
        test: the run's test evaluation (``eval.json["test"]``); None gives an empty verdict.
        baseline: ``eval.json["baseline"]`` (:func:`core.baseline.quick_baseline`), if any.
        stop: ``meta["stop"]`` (:func:`core.train.progress.stop_record`), to tailor advice.
        classical: the run is itself a classical baseline (no epochs, no recipe to change).
        recipe: the run's recipe (``params.json["recipe"]``): the default recipe is not advised
            to a run that already used it.

    Returns:
        A :class:`Verdict`.
    """
    if not test:
        return Verdict()
    problems, kinds = [], []
    acc, auc = _num(test.get("acc")), _num(test.get("auc"))
    chance = chance_accuracy(test)
    if acc is not None and chance is not None and acc <= chance[0] + ACC_MARGIN:
        level, answer = chance
        if answer is not None:
            problems.append(f"Test accuracy {acc:.3f} is about what always answering “{answer}” scores "
                            f"({level:.3f}, the share of test images in that class): the model is near chance level.")
        else:
            problems.append(f"Test accuracy {acc:.3f} is about what answering the more common value of every "
                            f"label scores ({level:.3f}): the model is near chance level.")
        kinds.append("near_chance_acc")
    if auc is not None and abs(auc - 0.5) <= AUC_MARGIN:
        problems.append(f"Test AUC {auc:.3f} is close to 0.5, what random guessing scores: the model hardly tells "
                        "the classes apart.")
        kinds.append("near_chance_auc")
    dominant = _dominant_answer(test)
    if dominant is not None:
        name, answered, truth = dominant
        if answered >= ONE_CLASS_SHARE and answered - truth >= ONE_CLASS_EXCESS:
            problems.append(f"It answers “{name}” for {answered:.0%} of the test images, though only {truth:.0%} "
                            "of them are that class.")
            kinds.append("one_class")
    base_test = (baseline or {}).get("test") or {}
    b_acc, b_auc = _num(base_test.get("acc")), _num(base_test.get("auc"))
    worse = [(what, mine, theirs) for what, mine, theirs in (("accuracy", acc, b_acc), ("AUC", auc, b_auc))
             if mine is not None and theirs is not None and mine < theirs - BASELINE_MARGIN]
    if worse and not classical:
        seconds = _num((baseline or {}).get("seconds"))
        took = f" in {seconds:.0f} s" if seconds is not None and seconds >= 1 else " in about a second"
        scores = " and ".join(f"{what} {theirs:.3f} (this run: {mine:.3f})" for what, mine, theirs in worse)
        problems.append(f"A quick {baseline.get('description') or 'classical baseline'} fitted{took} on the same "
                        f"training images scored test {scores}: this run is worse than that simple yardstick.")
        kinds.append("below_baseline")
    return Verdict(problems, _advice(kinds, stop, classical, recipe) if problems else [], kinds)


def _advice(kinds: list[str], stop: Mapping[str, Any] | None, classical: bool,
            recipe: str | None = None) -> list[str]:
    if classical:
        return ["Train a neural network on the same data on the Train page: a classical baseline on raw pixels "
                "often cannot do better.",
                "Check on the Datasets page that the classes are balanced and the images are labelled right."]
    tips = []
    kind = (stop or {}).get("kind")
    if kind == "time_limit":
        tips.append("Give it more time: it stopped at its time limit; raise the limit or set 0 (none) under "
                    "Advanced settings.")
    elif kind == "early_stopping":
        tips.append("Let it train longer: early stopping ended it; raise the patience or set 0 (off) under "
                    "Advanced settings.")
    else:
        tips.append("Train for more epochs (Advanced settings).")
    if {"one_class", "near_chance_acc"} & set(kinds):
        tips.append("Tick “Weight rare classes more” under Advanced settings, so the model cannot score by "
                    "answering the most common class.")
    if recipe == "default":
        tips.append("Try a lower learning rate (Advanced settings) if the curves jump around.")
    else:
        tips.append("Try the recommended “Fast default” recipe, or a lower learning rate if the curves jump around.")
    tips.append("Try another architecture; compare them on the Compare page.")
    tips.append("Check on the Datasets page that the images and their labels look right.")
    return tips
