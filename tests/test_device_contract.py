"""The README's "On a device without this project's code" rules, written out again here in numpy alone, give
the model's inputs exactly: if data_loader's rules change, this fails until the README says the new ones."""
from __future__ import annotations

import json

import numpy as np
import pytest

import data_loader as dl
from conftest import fixture_record
from detect import detect_r_peaks


def readme_inputs(xf: np.ndarray, peaks: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Steps 4-6 of the README's device rules, from the filtered signal and the R-peaks."""
    padded = np.concatenate([np.full(130, xf[0]), xf, np.full(150, xf[-1])])
    w = np.stack([padded[r:r + 280] for r in peaks])  # samples r - 130 .. r + 149 of xf
    w = (w - w.mean(1, keepdims=True)) / (w.std(1, keepdims=True) + 1e-6)
    t = np.stack([w[0]] + [np.median(w[max(0, i - 32):i], axis=0) for i in range(1, len(w))])
    r = peaks / 360.0
    pre = np.concatenate([[np.nan], np.diff(r)])
    known = {"pre": pre, "post": np.append(pre[1:], np.nan), "prev": np.concatenate([[np.nan], pre[:-1]])}
    last = [pre[np.searchsorted(r, r[i] - 300.0):i + 1] for i in range(len(r))]  # this beat's own included
    last = [v[~np.isnan(v)] for v in last]
    known["long"] = np.array([v.mean() if len(v) else np.nan for v in last])
    known["slow"] = np.array([np.quantile(v, 0.95) if len(v) else np.nan for v in last])
    known = {k: np.where(np.isnan(v), 0.8, v) for k, v in known.items()}
    rr = np.stack([known[n.split("/")[0]] / known[n.split("/")[1]] if "/" in n else known[n] for n in names], 1)
    return np.stack([w, t], 1), rr


@pytest.mark.parametrize("mode", dl.MODES)
def test_the_readme_device_rules_make_the_model_inputs(mode, diagnostic_run, realtime_run):
    run = diagnostic_run if mode == "diagnostic" else realtime_run
    names = json.loads((run / "config.json").read_text())["rr_features"]  # step 6: the order
    assert tuple(names) == dl.RR_FEATURES[mode]
    x, fs = dl.read_record(fixture_record("106"))  # V beats in bigeminy and runs
    peaks = detect_r_peaks(x, fs)
    xf = dl.bandpass(x, fs, mode)
    window, rr = readme_inputs(xf, peaks, names)
    np.testing.assert_allclose(window, dl.with_templates(dl.beat_windows(xf, peaks)), atol=1e-5)
    np.testing.assert_allclose(rr, dl.rr_features(peaks, fs, mode), rtol=1e-6)
    # Twelve minutes of irregular beats with a 4 s pause: past the 300 s of 'long' and 'slow'
    rng = np.random.default_rng(0)
    intervals = rng.uniform(0.4, 1.4, 900)
    intervals[500] = 4.0
    peaks = np.round(np.cumsum(intervals) * 360).astype(int)
    _, rr = readme_inputs(np.zeros(peaks[-1] + 1), peaks, names)
    np.testing.assert_allclose(rr, dl.rr_features(peaks, fs, mode), rtol=1e-6)
