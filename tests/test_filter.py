"""Band-pass filter: what it keeps and removes, and causal vs zero-phase behaviour."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

import data_loader as dl

FS = dl.FS
PASS = (5.0, 7.5, 10.0, 15.0, 20.0)  # Hz: the QRS energy must go through
BASELINE_WANDER = 0.1  # Hz: respiration / electrode drift must go
MAINS = 60.0  # Hz: US power line (MIT-BIH was recorded in Boston)


def _gain(freqs):
    _, h = signal.sosfreqz(dl.bandpass_sos(FS), worN=np.asarray(freqs, dtype=float), fs=FS)
    return np.abs(h)


def test_sos_pass_band_is_flat():
    g = _gain(np.linspace(5, 20, 61))
    assert g.min() > 0.95
    assert g.max() < 1.05


def test_sos_attenuates_baseline_wander_and_mains():
    assert _gain([BASELINE_WANDER])[0] < 0.1
    assert _gain([MAINS])[0] < 0.5  # at least 6 dB down in a single pass


def _amplitude_after_filter(freq: float, mode: str) -> float:
    """Steady-state output amplitude of a unit sine (lock-in over whole periods mid-signal)."""
    t = np.arange(100 * FS) / FS
    y = dl.bandpass(np.sin(2 * np.pi * freq * t), FS, mode)
    mid = slice(20 * FS, 80 * FS)  # 60 s: a whole number of periods for every test frequency
    s, c = np.sin(2 * np.pi * freq * t[mid]), np.cos(2 * np.pi * freq * t[mid])
    return float(2 * np.hypot(np.mean(y[mid] * s), np.mean(y[mid] * c)))


@pytest.mark.parametrize("mode", dl.MODES)
@pytest.mark.parametrize("freq", PASS + (BASELINE_WANDER, MAINS))
def test_sines_through_bandpass_match_the_design(mode, freq):
    measured = _amplitude_after_filter(freq, mode)
    h = _gain([freq])[0]
    expected = h ** 2 if mode == "diagnostic" else h  # forward-backward squares the magnitude
    assert measured == pytest.approx(expected, abs=0.01)
    if freq in PASS:
        assert measured > 0.95
    elif freq == BASELINE_WANDER:
        assert measured < (0.01 if mode == "diagnostic" else 0.1)
    else:
        assert measured < (0.25 if mode == "diagnostic" else 0.5)


def test_unknown_filter_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        dl.bandpass(np.zeros(1000), FS, "offline")


# --------------------------------------------------------------------------- causality

def _signal_and_altered_future(t0: int):
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=6000)) * 0.01 + rng.normal(size=6000)
    x2 = x.copy()
    x2[t0 + 1:] = rng.normal(size=len(x) - t0 - 1) * 5 + 3
    return x, x2


@pytest.mark.parametrize("t0", [1000, 3000, 5990])
def test_realtime_output_ignores_samples_after_t(t0):
    x, x2 = _signal_and_altered_future(t0)
    y, y2 = dl.bandpass(x, FS, "realtime"), dl.bandpass(x2, FS, "realtime")
    np.testing.assert_allclose(y[:t0 + 1], y2[:t0 + 1], rtol=0, atol=1e-12)
    assert np.abs(y[t0 + 1:] - y2[t0 + 1:]).max() > 0.1  # the alteration is visible after t0


@pytest.mark.parametrize("t0", [1000, 3000])
def test_diagnostic_output_depends_on_samples_after_t(t0):
    x, x2 = _signal_and_altered_future(t0)
    y, y2 = dl.bandpass(x, FS, "diagnostic"), dl.bandpass(x2, FS, "diagnostic")
    assert np.abs(y[:t0 + 1] - y2[:t0 + 1]).max() > 1e-2
    assert np.abs(y[t0] - y2[t0]) > 1e-3


def _pulse(center=1800, sigma=3.0, n=3600):
    t = np.arange(n)
    return np.exp(-0.5 * ((t - center) / sigma) ** 2)  # symmetric, R-wave-like (8 ms sigma)


def test_zero_phase_keeps_the_peak_on_its_sample():
    y = dl.bandpass(_pulse(), FS, "diagnostic")
    assert int(np.argmax(y)) == 1800
    # and the response is symmetric about it
    np.testing.assert_allclose(y[1800 - 200:1800], y[1801:1800 + 201][::-1], atol=1e-6)


def test_causal_filter_delays_the_peak():
    y = dl.bandpass(_pulse(), FS, "realtime")
    assert int(np.argmax(y)) > 1800


@pytest.mark.parametrize("mode", dl.MODES)
def test_a_dc_offset_leaves_the_filtered_signal_unchanged(mode):
    # Raw ADC counts carry one (1024 in MIT-BIH, 32768 in unsigned 16-bit exports); started at rest,
    # the causal filter turned it into a transient over the first beats.
    t = np.arange(int(10 * FS)) / FS
    x = np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 9 * t)
    np.testing.assert_allclose(dl.bandpass(x + 160.0, FS, mode), dl.bandpass(x, FS, mode), atol=1e-6)


def test_hold_gaps_holds_the_last_value_whole_or_in_chunks():
    """Batch (predict) and stream fill gaps by one rule: a NaN takes the last valid value before it, carried
    across chunks; a leading gap takes the first valid value."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    for start in rng.integers(0, 5000, 40):
        x[start:start + rng.integers(1, 200)] = np.nan
    x[0] = 1.0
    expected = x.copy()
    for i in range(1, len(x)):  # the rule, one sample at a time
        if np.isnan(expected[i]):
            expected[i] = expected[i - 1]
    filled, gaps = dl.hold_gaps(x)
    np.testing.assert_array_equal(filled, expected)
    np.testing.assert_array_equal(gaps, np.isnan(x))
    last, parts = None, []
    for i in range(0, len(x), 7):
        parts.append(dl.hold_gaps(x[i:i + 7], last)[0])
        last = parts[-1][-1]
    np.testing.assert_array_equal(np.concatenate(parts), expected)
    lead = np.array([np.nan, np.nan, 2.0, np.nan, 3.0])
    np.testing.assert_array_equal(dl.hold_gaps(lead)[0], [2.0, 2.0, 2.0, 2.0, 3.0])
