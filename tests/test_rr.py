"""RR-interval features: values by hand from the annotation samples, causality, feature count."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb

import data_loader as dl
from conftest import PROTOCOL_LABEL, fixture_record

FS = dl.FS
D = dl.DEFAULT_RR


def _beat_samples(record="118"):
    ann = wfdb.rdann(fixture_record(record), "atr")
    beat = np.isin(ann.symbol, list(PROTOCOL_LABEL))
    return ann.sample[beat].astype(np.int64), np.asarray(ann.symbol)[beat]


def _by_hand(s, i):
    """pre/post/prev RR, local/long averages and the slow quantile of beat i, in seconds, from samples.

    The mean of consecutive intervals telescopes: mean(RR[a+1..i]) = (s[i] - s[a]) / (i - a).
    Intervals not known (before the first beat, after the last) count as DEFAULT_RR.
    """
    n = len(s)
    pre = (s[i] - s[i - 1]) / FS if i >= 1 else D
    post = (s[i + 1] - s[i]) / FS if i + 1 < n else D
    prev = (s[i - 1] - s[i - 2]) / FS if i >= 2 else D
    k = min(i, dl.LOCAL_BEATS)  # the last LOCAL_BEATS intervals, this beat's pre-RR included
    local = (s[i] - s[i - k]) / (k * FS) if k else D
    # The fixture excerpt is 3 min < LONG_SECONDS: the long average spans every interval so far.
    long = (s[i] - s[0]) / (i * FS) if i else D
    slow = float(np.quantile(np.diff(s[:i + 1]) / FS, dl.SLOW_QUANTILE)) if i else D
    return dict(pre=pre, post=post, prev=prev, local=local, long=long, slow=slow)


def _expected(s, i, mode):
    base = _by_hand(s, i)
    out = []
    for name in dl.RR_FEATURES[mode]:
        num, _, den = name.partition("/")
        out.append(base[num] / base[den] if den else base[num])
    return np.array(out)


def test_feature_lists_are_as_designed():
    diag, rt = dl.RR_FEATURES["diagnostic"], dl.RR_FEATURES["realtime"]
    # Prematurity relative to the patient's own rhythm, in both modes.
    assert {"pre", "post", "pre/long", "pre/slow"} <= set(diag)
    assert {"pre", "pre/long", "pre/slow"} <= set(rt)
    assert not any("post" in name for name in rt), "real-time features may not use the next beat"
    for names in (diag, rt):
        for name in names:
            assert set(name.split("/")) <= {"pre", "post", "prev", "local", "long", "slow"}, name


@pytest.mark.parametrize("mode", dl.MODES)
def test_rr_features_match_hand_computation(mode):
    s, sym = _beat_samples("118")
    assert (s[-1] - s[0]) / FS < dl.LONG_SECONDS
    feats = dl.rr_features(s, FS, mode)
    assert feats.shape == (len(s), len(dl.RR_FEATURES[mode]))
    first_a = int(np.nonzero(sym == "A")[0][0])
    for i in (0, 1, 2, 5, 10, 11, 12, 57, first_a, first_a + 1, len(s) - 1):
        np.testing.assert_allclose(feats[i], _expected(s, i, mode), rtol=1e-5, err_msg=f"beat {i}")


def test_hand_values_spot_check_beat_12_of_118():
    """Beat 12 written out in full, in case _by_hand and the module share a misconception."""
    s, _ = _beat_samples("118")
    names = ("pre", "post", "local", "pre/local")
    f = dict(zip(names, dl.rr_features(s, FS, "diagnostic", names=names)[12]))
    assert f["pre"] == pytest.approx((s[12] - s[11]) / 360, rel=1e-5)
    assert f["post"] == pytest.approx((s[13] - s[12]) / 360, rel=1e-5)
    intervals = [(s[j] - s[j - 1]) / 360 for j in range(3, 13)]  # the last 10 RR intervals
    assert f["local"] == pytest.approx(sum(intervals) / 10, rel=1e-5)
    assert f["pre/local"] == pytest.approx((s[12] - s[11]) / 360 / (sum(intervals) / 10), rel=1e-5)


def test_long_average_covers_the_last_five_minutes():
    # 1 s rhythm for 400 s, then 0.5 s: the long average must forget the slow part after 300 s.
    rr = np.r_[np.full(400, 1.0), np.full(1200, 0.5)]
    t = np.cumsum(rr)
    s = np.round(t * FS).astype(np.int64)
    f = dl.rr_features(s, FS, "realtime")
    j = dl.RR_FEATURES["realtime"].index("long")
    tt = s / FS
    for i in (100, 399, 500, 800, 1000, 1599):
        in_window = [(tt[k] - tt[k - 1]) for k in range(1, i + 1) if tt[k] >= tt[i] - dl.LONG_SECONDS]
        assert f[i, j] == pytest.approx(np.mean(in_window), rel=1e-4), i
    assert f[1599, j] == pytest.approx(0.5, rel=1e-4)  # 300 s after the change: only 0.5 s beats


@pytest.mark.parametrize("mode", dl.MODES)
@pytest.mark.parametrize("name", ["pre/local", "pre/long"])
def test_premature_beats_stand_out_against_the_patients_rhythm(mode, name):
    s, sym = _beat_samples("118")
    f = dl.rr_features(s, FS, mode, names=(name,))[:, 0]
    assert np.all(f[sym == "A"] < 0.9)
    assert np.all(f[sym == "V"] < 0.9)
    assert 0.95 < np.median(f[sym == "R"]) < 1.05


def test_realtime_mode_refuses_next_beat_features():
    with pytest.raises(ValueError, match="post-RR"):
        dl.rr_features(np.arange(5) * 300, FS, "realtime", names=("post",))


def test_realtime_features_do_not_change_when_later_beats_change():
    s, _ = _beat_samples("118")
    k = 100
    full = dl.rr_features(s, FS, "realtime")
    cut = dl.rr_features(s[:k + 1], FS, "realtime")
    moved = s.copy()
    moved[k + 1:] += 37
    dropped = np.delete(s, [k + 1, k + 2, k + 10])
    np.testing.assert_array_equal(cut, full[:k + 1])
    np.testing.assert_array_equal(dl.rr_features(moved, FS, "realtime")[:k + 1], full[:k + 1])
    np.testing.assert_array_equal(dl.rr_features(dropped, FS, "realtime")[:k + 1], full[:k + 1])


def test_diagnostic_features_look_ahead_exactly_one_beat():
    s, _ = _beat_samples("118")
    k = 100
    full = dl.rr_features(s, FS, "diagnostic")
    moved = s.copy()
    moved[k + 1:] += 37
    f = dl.rr_features(moved, FS, "diagnostic")
    np.testing.assert_array_equal(f[:k], full[:k])  # beats before k do not see beat k+1
    assert not np.allclose(f[k], full[k])  # beat k does: its post-RR
    post = dl.RR_FEATURES["diagnostic"].index("post")
    assert f[k, post] == pytest.approx(full[k, post] + 37 / FS, rel=1e-5)


@pytest.mark.parametrize("mode", dl.MODES)
@pytest.mark.parametrize("n", [0, 1, 2, 15])
def test_feature_count_and_short_records(mode, n):
    s = np.arange(n, dtype=np.int64) * 300 + 100
    f = dl.rr_features(s, FS, mode)
    assert f.shape == (n, len(dl.RR_FEATURES[mode]))
    assert f.dtype == np.float32 and np.isfinite(f).all()
    if n == 1:  # a lone beat: every interval unknown, so every ratio is 1
        base = {"pre": D, "post": D, "prev": D, "local": D, "long": D, "slow": D}
        for name, v in zip(dl.RR_FEATURES[mode], f[0]):
            num, _, den = name.partition("/")
            assert v == pytest.approx(base[num] / base[den] if den else base[num])


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        dl.rr_features(np.array([10, 300, 600]), FS, "fast")


def test_slow_is_a_high_quantile_of_the_last_five_minutes():
    # 60% of the beats come early (0.6 s) among 1.0 s sinus beats: the mean sits near the early
    # beats, the 90th percentile stays on the sinus rhythm, so early beats still read as premature.
    rr = np.tile([0.6, 0.6, 1.0, 0.6, 1.0], 200)
    s = np.round(np.concatenate([[0.0], np.cumsum(rr)]) * FS).astype(np.int64)
    f = dl.rr_features(s, FS, "realtime", names=("pre", "slow", "pre/slow", "pre/long"))
    late = f[400:]
    assert np.allclose(late[:, 1], 1.0, atol=0.01)
    early = np.isclose(late[:, 0], 0.6, atol=0.01)
    assert np.all(late[early, 2] < 0.65)
    assert np.all(late[early, 3] > 0.7)  # against the mean (0.76 s) they look far less premature


@pytest.mark.parametrize("mode", dl.MODES)
def test_from_beat_gives_the_same_rows(mode):
    s, _ = _beat_samples("118")
    full = dl.rr_features(s, FS, mode)
    assert "slow" in dl.RR_FEATURES[mode]  # the quantile, computed only from from_beat on
    for k in (0, 1, 250, len(s) - 1):
        np.testing.assert_array_equal(dl.rr_features(s, FS, mode, from_beat=k), full[k:])


def test_rr_history_start_gives_each_beats_features():
    """rr_features over the peaks from rr_history_start on gives each beat the row it has over all of them."""
    peaks, _ = dl.read_beats(fixture_record("100"))
    peaks = np.concatenate([peaks, peaks + peaks[-1] + 300, peaks + 2 * (peaks[-1] + 300)])  # past 300 s
    full = dl.rr_features(peaks, dl.FS, "realtime")
    starts = [dl.rr_history_start(peaks, k) for k in range(len(peaks))]
    assert max(starts) > 0
    for k in range(0, len(peaks), 7):
        j = starts[k]
        np.testing.assert_array_equal(dl.rr_features(peaks[j:k + 1], dl.FS, "realtime", from_beat=k - j)[0], full[k])


def _window_quantile_by_np_quantile(values, start, q, first=0):
    """dl._window_quantile as it was before the sorted window: one np.quantile per beat."""
    out = np.full(len(values), np.nan)
    for i in range(first, len(values)):
        window = values[start[i]:i + 1]
        window = window[~np.isnan(window)]
        if len(window):
            out[i] = np.quantile(window, q)
    return out


def test_the_sliding_quantile_is_np_quantile_exactly():
    """Bit for bit np.quantile's value over each window: NaN left out, ties, windows sliding by time (as
    rr_features makes them) and any other start at or before each beat, from any first beat."""
    rng = np.random.default_rng(13)
    for trial in range(12):
        n = int(rng.integers(1, 400))
        v = rng.uniform(0.3, 2.0, n)
        if trial % 2:
            v = np.round(v, 1)
        v[rng.random(n) < 0.1] = np.nan
        v[0] = np.nan
        t = np.cumsum(np.nan_to_num(v, nan=0.5))
        starts = [np.searchsorted(t, t - rng.uniform(1, 60), side="left"),
                  np.array([rng.integers(0, i + 2) for i in range(n)])]
        for start in starts:
            for q in (dl.SLOW_QUANTILE, 0.0, 0.5, 1.0):
                for first in (0, n // 3, n - 1):
                    np.testing.assert_array_equal(dl._window_quantile(v, start, q, first),
                                                  _window_quantile_by_np_quantile(v, start, q, first))


def test_slow_over_a_long_record_is_np_quantile_exactly():
    peaks, _ = dl.read_beats(fixture_record("100"))
    peaks = np.concatenate([peaks + k * (peaks[-1] + 300) for k in range(4)])  # 12 min: windows slide
    t = peaks / FS
    pre = np.concatenate([[np.nan], np.diff(t)])
    start = np.searchsorted(t, t - dl.LONG_SECONDS, side="left")
    np.testing.assert_array_equal(dl._window_quantile(pre, start, dl.SLOW_QUANTILE),
                                  _window_quantile_by_np_quantile(pre, start, dl.SLOW_QUANTILE))
