"""AAMI EC57 mapping of MIT-BIH labels, and which annotations count as beats."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb

import data_loader as dl
from conftest import PROTOCOL_LABEL, fixture_record

# MIT-BIH annotation codes that are not beats (rhythm, noise, comments, waves, flutter, ...).
NON_BEATS = ["+", "~", "|", "x", "[", "]", "!", '"', "p", "t", "u", "`", "'", "^", "s", "T", "*",
             "D", "=", "@"]


def test_classes_are_the_aami_five_in_order():
    assert tuple(dl.CLASSES) == ("N", "S", "V", "F", "Q")
    assert dl.CLASS_INDEX == {c: i for i, c in enumerate(dl.CLASSES)}


@pytest.mark.parametrize("label", sorted(PROTOCOL_LABEL))
def test_every_protocol_label_maps_to_its_class(label):
    assert dl.AAMI_MAP[label] == PROTOCOL_LABEL[label]


def test_map_has_no_label_beyond_the_protocol_table():
    assert set(dl.AAMI_MAP) == set(PROTOCOL_LABEL)


@pytest.mark.parametrize("symbol", NON_BEATS)
def test_non_beat_annotations_are_not_beats(symbol):
    assert symbol not in dl.AAMI_MAP


@pytest.mark.parametrize("record", ["101", "106", "118", "124", "114"])
def test_read_beats_keeps_beats_and_drops_non_beats(record):
    ann = wfdb.rdann(fixture_record(record), "atr")
    symbols = list(ann.symbol)
    assert any(s not in PROTOCOL_LABEL for s in symbols), "record should hold non-beat annotations"
    beat = np.array([s in PROTOCOL_LABEL for s in symbols])
    expected_labels = [dl.CLASSES.index(PROTOCOL_LABEL[s]) for s in np.array(symbols)[beat]]

    samples, labels = dl.read_beats(fixture_record(record))
    np.testing.assert_array_equal(samples, ann.sample[beat])
    np.testing.assert_array_equal(labels, expected_labels)
    non_beat_samples = set(ann.sample[~beat]) - set(ann.sample[beat])
    assert not non_beat_samples & set(samples.tolist())


def test_read_beats_classes_on_validation_excerpt():
    # 124's excerpt: R (N), J and A (S), V, F beats; '+' rhythm annotations in between.
    _, labels = dl.read_beats(fixture_record("124"))
    counts = np.bincount(labels, minlength=len(dl.CLASSES))
    assert counts.tolist() == [116, 30, 20, 2, 0]
