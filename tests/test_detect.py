"""R-peak detection on real excerpts, and the EC57 beat matching it is scored with."""
from __future__ import annotations

import numpy as np
import pytest

import data_loader as dl
from conftest import fixture_record
from detect import detect_r_peaks, match_beats


@pytest.mark.parametrize("record", ["100", "106", "114", "118"])
def test_detector_finds_the_reference_beats(record):
    x, fs = dl.read_record(fixture_record(record))
    ref, _ = dl.read_beats(fixture_record(record))
    peaks = detect_r_peaks(x, fs)
    ri, di = match_beats(ref, peaks, fs)
    assert len(ri) / len(ref) >= 0.99 and len(di) / len(peaks) >= 0.99
    # Aligned on the R-peak as the annotations are: median offset under 10 ms (50 ms in 118,
    # whose right bundle-branch-block beats have their largest deflection after the annotation).
    assert np.median(np.abs(ref[ri] - peaks[di])) <= (0.05 if record == "118" else 0.01) * fs


@pytest.mark.parametrize("offset", [20.0, 1024 / 200, 32768 / 200])  # mV; ADC counts (gain 200) + 1024, + 32768
def test_a_dc_offset_does_not_change_the_beats_found(offset):
    # Raw ADC counts and DC-coupled front ends carry one: it used to enter the detector as a step
    # larger than any QRS, and then no beat reached the threshold (0 beats in record 100).
    x, fs = dl.read_record(fixture_record("100"))
    np.testing.assert_array_equal(detect_r_peaks(x + offset, fs), detect_r_peaks(x, fs))


def test_detector_returns_nothing_for_a_flat_or_too_short_signal():
    assert len(detect_r_peaks(np.zeros(100), 360)) == 0
    assert detect_r_peaks(np.zeros(100), 360).dtype == np.int64


def test_match_beats_pairs_within_tolerance_one_to_one():
    fs = 100.0  # 150 ms = 15 samples
    ref = np.array([100, 200, 300, 400])
    det = np.array([102, 214, 216, 330, 401, 405])
    ri, di = match_beats(ref, det, fs)
    pairs = sorted(zip(ri.tolist(), di.tolist()))
    # 200 takes 214 (nearer than 216), 300 has no detection within 15 samples, 400 takes 401.
    assert pairs == [(0, 0), (1, 1), (3, 4)]


def test_match_beats_tolerance_is_inclusive_and_empty_inputs_work():
    ri, di = match_beats(np.array([0, 1000]), np.array([15, 1016]), 100.0)
    assert ri.tolist() == [0] and di.tolist() == [0]
    assert len(match_beats(np.array([]), np.array([5]), 100.0)[0]) == 0


@pytest.mark.parametrize("record", ["100", "118", "124"])
def test_a_strip_that_starts_after_a_qrs_does_not_take_its_t_wave_for_a_beat(record):
    """A recording cut anywhere in a beat (10-second strips are cut so): its first detection is a beat,
    not the T wave of the QRS the cut left out; the whole strip's detections are its beats."""
    x, _ = dl.read_record(fixture_record(record))
    ref, _ = dl.read_beats(fixture_record(record))
    for start in range(0, 720, 10):
        peaks = detect_r_peaks(x[start:start + 3600], dl.FS) + start
        # every beat from the strip's first sample (a QRS in the last 0.3 s may be missed: its
        # integrated peak falls after the end)
        inside = ref[(ref >= start) & (ref < start + 3600 - 110)]
        assert np.abs(ref - peaks[0]).min() <= 54, start
        assert len(match_beats(inside, peaks, dl.FS)[0]) == len(inside) and len(peaks) <= len(inside) + 2, start
