"""Per-class metrics of PROTOCOL.md on a confusion matrix worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from evaluate import confusion, metrics

# rows = reference N S V F Q, columns = predicted
CM = np.array([[50, 5, 3, 0, 0],
               [4, 10, 1, 0, 0],
               [2, 0, 20, 1, 0],
               [0, 0, 2, 3, 0],
               [0, 0, 0, 0, 0]])  # 101 beats, 83 right

# class: (Se, +P, FPR) by hand: Se = TP/(TP+FN), +P = TP/(TP+FP), FPR = FP/(FP+TN)
HAND = {
    "N": (50 / 58, 50 / 56, 6 / 43),
    "S": (10 / 15, 10 / 15, 5 / 86),
    "V": (20 / 23, 20 / 26, 6 / 78),
    "F": (3 / 5, 3 / 4, 1 / 96),
    "Q": (0.0, 0.0, 0.0),  # no reference and no predicted Q beat: 0, not NaN
}


def _f1(se, ppv):
    return 2 * se * ppv / (se + ppv) if se + ppv else 0.0


def test_confusion_rows_are_reference_columns_predicted():
    y_true = np.repeat(np.repeat(np.arange(5), 5), CM.ravel())
    y_pred = np.repeat(np.tile(np.arange(5), 5), CM.ravel())
    np.testing.assert_array_equal(confusion(y_true, y_pred), CM)
    assert confusion([1], [2])[1, 2] == 1


@pytest.mark.parametrize("cls", list(HAND))
def test_per_class_metrics_match_hand_values(cls):
    m = metrics(CM)["per_class"][cls]
    se, ppv, fpr = HAND[cls]
    assert m["se"] == pytest.approx(se)
    assert m["ppv"] == pytest.approx(ppv)
    assert m["fpr"] == pytest.approx(fpr)
    assert m["f1"] == pytest.approx(_f1(se, ppv))
    assert m["support"] == CM[list(HAND).index(cls)].sum()


def test_overall_accuracy_and_macro_f1():
    m = metrics(CM)
    assert m["accuracy"] == pytest.approx(83 / 101)
    assert m["macro_f1_nsv"] == pytest.approx(np.mean([_f1(*HAND[c][:2]) for c in "NSV"]))
    assert m["macro_f1_all"] == pytest.approx(np.mean([_f1(*HAND[c][:2]) for c in HAND]))
    assert m["confusion"] == CM.tolist() and m["beats"] == 101


def test_everything_n_scores_a_third_on_nsv():
    """The trap PROTOCOL.md warns of: all-N gets high accuracy, but macro-F1 (N,S,V) exposes it."""
    cm = np.zeros((5, 5), dtype=int)
    cm[:, 0] = [890, 50, 60, 0, 0]
    m = metrics(cm)
    assert m["accuracy"] == pytest.approx(0.89)
    assert m["macro_f1_nsv"] < 0.34
