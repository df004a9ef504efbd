"""Charts that make sense from the first epoch (issue 15, item 8): asserted on the Plotly
figure objects the pages draw.

- no nonsense axis in the first epoch (one learning rate drew an axis from -0.655 to 0.845),
  and the step chart waits for a second point;
- loss and learning rate on separate axes;
- the ROC class picker starts on a class every selected run has;
- titles sit clear of the toolbar (modebar), rotated labels do not overlap.
"""

from __future__ import annotations

import pandas as pd
import pytest

from studio import charts


def _epoch(e: int, **extra) -> dict:
    return {"kind": "epoch", "epoch": e, "train_loss": 0.69 / e, "val_loss": 0.72 / e, "train_acc": 0.6,
            "val_acc": 0.55, "train_auc": 0.62, "val_auc": 0.58, **extra}


# ---------------------------------------------------------------------------- first epoch
def test_one_learning_rate_gets_an_axis_from_zero_not_plotlys_default():
    assert charts.value_range([1e-3]) == pytest.approx([0.0, 1.08e-3])
    assert charts.value_range([0.3, 0.1]) == pytest.approx([0.0, 0.324])
    assert charts.value_range([0.8, 0.9], from_zero=False) == pytest.approx([0.792, 0.908])
    assert charts.value_range([None, float("nan")]) is None
    assert charts.value_range([0.0]) == pytest.approx([0.0, 0.08]), "a zero gets room, not an empty axis"


def test_step_chart_waits_for_two_points_and_draws_loss_and_lr_on_separate_axes():
    one = [{"kind": "step", "step": 5, "loss": 0.7, "lr": 3e-3}]
    assert not charts.enough_steps(one)
    assert not charts.enough_steps([{"kind": "epoch", "epoch": 1, "step": 5}, *one])
    steps = one + [{"kind": "step", "step": 10, "loss": 0.6, "lr": 2.5e-3}]
    assert charts.enough_steps(steps)
    fig = charts.step_curves(steps)
    loss, lr = fig.data
    assert (loss.name, lr.name) == ("training loss", "learning rate")
    assert loss.yaxis != lr.yaxis and loss.xaxis != lr.xaxis, "two panels, not one shared y axis"
    lr_axis = fig.layout[lr.yaxis.replace("y", "yaxis")]
    loss_axis = fig.layout[loss.yaxis.replace("y", "yaxis")]
    assert list(lr_axis.range) == pytest.approx([0.0, 3e-3 * 1.08])
    assert list(loss_axis.range) == pytest.approx([0.0, 0.7 * 1.08])
    assert lr_axis.range[0] >= 0, "no negative learning rates on the axis"
    assert not any(getattr(fig.layout, a, None) is not None and getattr(fig.layout, a).overlaying
                   for a in ("yaxis2", "yaxis3")), "no secondary axis laid over the loss"


def test_learning_curves_of_the_first_epoch_have_sensible_fixed_axes():
    fig = charts.learning_curves([_epoch(1)])
    for axis in ("xaxis", "xaxis2", "xaxis3"):
        assert list(fig.layout[axis].range) == [0.5, 2.5], "one epoch is not alone at the chart's edge"
        assert fig.layout[axis].dtick == 1, "whole epochs, not 0.2 steps"
    assert list(fig.layout.yaxis.range) == pytest.approx([0.0, 0.72 * 1.08]), "loss from 0"
    assert list(fig.layout.yaxis2.range) == [0, 1.02] and list(fig.layout.yaxis3.range) == [0, 1.02]
    many = charts.learning_curves([_epoch(e) for e in range(1, 31)])
    assert list(many.layout.xaxis.range) == [0.5, 30.5] and many.layout.xaxis.dtick is None


def test_overlaid_curves_keep_scores_in_zero_to_one_and_losses_from_zero():
    curves = {"a": [_epoch(1)], "b": [_epoch(1), _epoch(2)]}
    fig = charts.overlaid_curves(curves, "val_auc", "Validation AUC")
    assert list(fig.layout.yaxis.range) == [0, 1.02] and list(fig.layout.xaxis.range) == [0.5, 2.5]
    fig = charts.overlaid_curves(curves, "val_loss", "Validation loss")
    assert list(fig.layout.yaxis.range) == pytest.approx([0.0, 0.72 * 1.08])


# ---------------------------------------------------------------------------- ROC default
def _roc(*classes: str) -> list[dict]:
    return [{"class": c, "fpr": [0, 1], "tpr": [0, 1], "auc": 0.5} for c in classes]


def test_roc_picker_starts_on_the_positive_class_of_binary_runs():
    classes, i = charts.roc_default_class({"r1": _roc("benign", "malignant"), "r2": _roc("benign", "malignant")})
    assert classes[i] == "malignant"


def test_roc_picker_starts_on_a_class_every_selected_run_has():
    # r1 has no curve for "basophil" (never in its test split): the default must not leave it out
    by_run = {"r1": [{"class": "basophil", "fpr": [], "tpr": []}, *_roc("eosinophil", "lymphocyte")],
              "r2": _roc("basophil", "eosinophil", "lymphocyte")}
    classes, i = charts.roc_default_class(by_run)
    assert classes == ["basophil", "eosinophil", "lymphocyte"] and classes[i] == "eosinophil"
    # runs of different datasets: the first class they share
    classes, i = charts.roc_default_class({"a": _roc("x", "y", "z"), "b": _roc("q", "z")})
    assert classes[i] == "z"
    assert charts.roc_default_class({"a": []}) == ([], 0)


# ---------------------------------------------------------------------------- layout
def test_titles_sit_below_the_toolbar_on_the_left():
    fig = charts.confusion_heatmap([[5, 1], [2, 8]], ["a", "b"], "run one")
    assert fig.layout.title.text == "run one" and fig.layout.title.x == 0 and fig.layout.title.xanchor == "left"
    assert fig.layout.margin.t >= charts.TOP_WITH_TITLE, "room above the plot for title and toolbar"
    curves = charts.learning_curves([_epoch(1), _epoch(2)])
    assert curves.layout.margin.t >= charts.TOP_WITH_SUBPLOT_TITLES
    assert [a.text for a in curves.layout.annotations] == ["Loss (lower is better)", "Accuracy", "AUC"]
    f1 = charts.per_class_f1(pd.DataFrame({"class": ["a", "b"], "f1": [0.5, 0.7], "run": ["r", "r"]}))
    assert f1.layout.legend.yanchor == "bottom" and f1.layout.legend.y > 1, "legend above, clear of the labels"
    assert f1.layout.margin.t > charts.TOP_WITH_TITLE


def test_long_or_many_labels_turn_so_they_do_not_overlap():
    assert charts.tick_angle(["a", "b"]) == 0
    assert charts.tick_angle(["normal, benign", "malignant"], 420) == 0
    long = [f"very long class name {i}" for i in range(8)]
    assert charts.tick_angle(long, 420) == -45
    assert charts.tick_angle(long * 3, 420) == -90, "slots under 22 px: straight up"
    names = ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
             "cancer-associated stroma", "colorectal adenocarcinoma epithelium"]
    fig = charts.confusion_heatmap([[1] * 9] * 9, names, "path")
    assert fig.layout.xaxis.tickangle == charts.tick_angle(names) != 0
    assert fig.layout.xaxis.automargin and fig.layout.yaxis.automargin, "turned labels get their room"
    counts = pd.DataFrame({"split": ["train"] * 9, "class": names, "count": range(9)})
    assert charts.class_balance(counts).layout.xaxis.tickangle == charts.tick_angle(names, 700)
