"""Beat windows (edges, centring, z-scoring) and the choice of the MLII lead by name."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb

import data_loader as dl
from conftest import copy_records, fixture_record

WB, WA, W = dl.WINDOW_BEFORE, dl.WINDOW_AFTER, dl.WINDOW


def _zscore(v):
    v = np.asarray(v, dtype=np.float64)
    return (v - v.mean()) / v.std()


def _assert_affine(w, x):
    """w == a * x + b with a > 0: the window holds exactly those samples, in that order."""
    a, b = np.polyfit(x, w, 1)
    assert a > 0
    np.testing.assert_allclose(w, a * x + b, atol=1e-4)


def test_windows_are_full_length_finite_and_zscored():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=2000))
    peaks = np.array([0, 1, 57, 1000, 1990, 1999])
    w = dl.beat_windows(x, peaks)
    assert w.shape == (len(peaks), W) and w.dtype == np.float32
    assert np.isfinite(w).all()
    np.testing.assert_allclose(w.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(w.std(axis=1), 1, atol=1e-3)


def test_interior_window_is_centred_on_the_r_peak():
    rng = np.random.default_rng(2)
    x = rng.normal(size=2000)
    p = 1000
    w = dl.beat_windows(x, np.array([p]))[0]
    np.testing.assert_allclose(w, _zscore(x[p - WB:p + WA]), atol=1e-4)
    spike = np.zeros(2000)
    spike[p] = 5.0
    assert int(np.argmax(dl.beat_windows(spike, np.array([p]))[0])) == WB


def test_beat_at_first_sample_sits_at_window_before():
    x = np.random.default_rng(3).normal(size=1000)
    w = dl.beat_windows(x, np.array([0]))[0]
    assert w.shape == (W,) and np.isfinite(w).all()
    _assert_affine(w[WB:], x[:WA])  # samples 0.. start at index WINDOW_BEFORE


def test_beat_at_last_sample_sits_at_window_before():
    x = np.random.default_rng(4).normal(size=1000)
    n = len(x)
    w = dl.beat_windows(x, np.array([n - 1]))[0]
    assert w.shape == (W,) and np.isfinite(w).all()
    _assert_affine(w[:WB + 1], x[n - 1 - WB:])  # ... and the last sample is at WINDOW_BEFORE


def test_no_beats_gives_empty_windows():
    assert dl.beat_windows(np.zeros(500), np.array([], dtype=np.int64)).shape == (0, W)


def test_diagnostic_windows_of_real_beats_peak_at_the_annotation(fixture_dir):
    beats = dl.load_beats(fixture_dir, ["100", "103"], "diagnostic", progress=False)
    offset = np.abs(beats.x[beats.y == 0, 0]).argmax(axis=1) - WB
    assert abs(np.median(offset)) <= 2


# --------------------------------------------------------------------------- lead choice

def test_read_record_takes_mlii_from_second_channel_of_114():
    sig, fs = dl.read_record(fixture_record("114"))
    rec = wfdb.rdrecord(fixture_record("114"))
    assert rec.sig_name == ["V5", "MLII"]
    assert fs == 360
    np.testing.assert_array_equal(sig, rec.p_signal[:, 1])
    assert not np.allclose(sig, rec.p_signal[:, 0])


def test_read_record_takes_mlii_from_first_channel_of_100():
    sig, _ = dl.read_record(fixture_record("100"))
    rec = wfdb.rdrecord(fixture_record("100"))
    assert rec.sig_name[0] == "MLII"
    np.testing.assert_array_equal(sig, rec.p_signal[:, 0])


@pytest.mark.parametrize("mode", dl.MODES)
def test_preprocessed_114_windows_come_from_mlii(mode):
    rec = wfdb.rdrecord(fixture_record("114"))
    peaks, _ = dl.read_beats(fixture_record("114"))
    got = dl.preprocess_record(fixture_record("114"), mode)["x"][:, 0]
    from_mlii = dl.beat_windows(dl.bandpass(rec.p_signal[:, 1], 360, mode), peaks)
    from_v5 = dl.beat_windows(dl.bandpass(rec.p_signal[:, 0], 360, mode), peaks)
    np.testing.assert_allclose(got, from_mlii, atol=1e-5)
    assert np.abs(got - from_v5).max() > 0.5


def test_unknown_lead_names_the_available_ones():
    with pytest.raises(dl.DataError) as err:
        dl.read_record(fixture_record("114"), lead="V9")
    msg = str(err.value)
    assert "V9" in msg and "V5" in msg and "MLII" in msg


def test_record_without_mlii_is_a_data_error(tmp_path):
    """A record whose leads do not include MLII (like paced 102 and 104) fails with the leads named."""
    rec = wfdb.rdrecord(fixture_record("114"), physical=False)
    wfdb.wrsamp("900", fs=360, units=["mV"], sig_name=["V5"], d_signal=rec.d_signal[:, :1],
                fmt=["212"], adc_gain=[rec.adc_gain[0]], baseline=[rec.baseline[0]], write_dir=str(tmp_path))
    ann = wfdb.rdann(fixture_record("114"), "atr")
    wfdb.wrann("900", "atr", ann.sample, symbol=ann.symbol, fs=360, write_dir=str(tmp_path))
    with pytest.raises(dl.DataError, match="V5"):
        dl.load_beats(tmp_path, ["900"], "diagnostic", offline=True, progress=False)
    copy_records(tmp_path, ["114"], sums=False)
    assert len(dl.load_beats(tmp_path, ["114"], "diagnostic", offline=True, progress=False)) == 165


# --------------------------------------------------------------------------- the template channel

def test_template_is_the_median_of_the_previous_beats_only():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(100, W)).astype(np.float32)
    k = dl.TEMPLATE_BEATS
    t = dl.beat_templates(w)
    assert t.shape == w.shape and t.dtype == np.float32
    np.testing.assert_array_equal(t[0], w[0])  # no past yet: the beat is its own template
    np.testing.assert_array_equal(t[5], np.median(w[:5], axis=0))
    np.testing.assert_array_equal(t[70], np.median(w[70 - k:70], axis=0))
    later = w.copy()
    later[70:] = rng.normal(size=(30, W))  # a change from beat 70 on leaves earlier templates alone
    np.testing.assert_array_equal(dl.beat_templates(later)[:71], t[:71])
    np.testing.assert_array_equal(dl.beat_templates(w, from_beat=40), t[40:])


def test_an_ectopic_beat_stands_out_against_its_template():
    """A steady rhythm with one odd beat: the odd beat differs from its template, its neighbours
    do not, and the odd beat does not pull the template of the beats after it."""
    rng = np.random.default_rng(4)
    normal = _zscore(np.exp(-0.5 * ((np.arange(W) - WB) / 6.0) ** 2))
    odd = _zscore(np.exp(-0.5 * ((np.arange(W) - WB) / 25.0) ** 2))  # wide, as a ventricular beat
    w = np.tile(normal, (60, 1)) + 0.01 * rng.normal(size=(60, W))
    w[40] = odd
    x = dl.with_templates(w.astype(np.float32))
    assert x.shape == (60, 2, W)
    diff = np.abs(x[:, 0] - x[:, 1]).mean(axis=1)
    assert diff[40] > 10 * max(diff[39], diff[41])


def test_preprocessed_beats_carry_their_templates(fixture_dir):
    beats = dl.load_beats(fixture_dir, ["100"], "realtime", progress=False)
    np.testing.assert_array_equal(beats.x[:, 1], dl.beat_templates(beats.x[:, 0]))


def _templates_by_np_median(windows, beats=None, from_beat=0):
    """dl.beat_templates as it was before the running median: np.median of each beat's past windows."""
    beats = beats or dl.TEMPLATE_BEATS
    w = np.asarray(windows, dtype=np.float32)
    ok = np.arange(len(w))
    out = np.empty((len(w) - from_beat, w.shape[1]), np.float32)
    for i in range(from_beat, len(w)):
        past = ok[ok < i][-beats:]
        out[i - from_beat] = np.median(w[past], axis=0) if len(past) else w[i]
    return out


def test_templates_are_np_median_of_the_past_windows_exactly():
    """The running median (many beats) and np.median (a few) give np.median's float32 values bit for bit:
    ties, NaN (a set holding one is NaN), infinities, from_beat, odd and even set sizes."""
    rng = np.random.default_rng(11)
    for trial in range(8):
        n, width = int(rng.integers(1, 300)), int(rng.integers(1, 12))
        w = rng.normal(size=(n, width)).astype(np.float32)
        if trial % 2:
            w = np.round(w, 1)
        if trial % 3 == 0:
            w[rng.random((n, width)) < 0.01] = np.nan
        if trial % 4 == 0:
            w[rng.random((n, width)) < 0.01] = np.inf
        for beats in (dl.TEMPLATE_BEATS, 1, 5, 32):
            for from_beat in (0, n // 2, n - 1):
                np.testing.assert_array_equal(dl.beat_templates(w, beats, from_beat),
                                              _templates_by_np_median(w, beats, from_beat))


def test_a_records_templates_are_np_medians_exactly(fixture_dir):
    x, fs = dl.read_record(fixture_record("118"))
    peaks, _ = dl.read_beats(fixture_record("118"))
    w = dl.beat_windows(dl.bandpass(x, fs), peaks)
    np.testing.assert_array_equal(dl.beat_templates(w), _templates_by_np_median(w))


def test_running_median_is_np_median_over_each_set():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(500, 3))
    x[[7, 300], [0, 2]] = np.nan
    for size in (1, 2, 7, 32):
        want = np.median(np.lib.stride_tricks.sliding_window_view(x, size, axis=0), axis=2)
        np.testing.assert_array_equal(dl.running_median(x, size), want)
    assert dl.running_median(x[:3], 32).shape == (0, 3)
    x = rng.normal(size=(1000, 300)).astype(np.float32)  # large: its columns split between threads
    x[[10, 500], [0, 299]] = np.nan
    assert x.size >= dl.PARALLEL_VALUES
    want = np.median(np.lib.stride_tricks.sliding_window_view(x, 32, axis=0), axis=2)
    np.testing.assert_array_equal(dl.running_median(x, 32), want)
