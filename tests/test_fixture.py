"""The committed fixture is real MIT-BIH data, intact, attributed, and usable by the loader."""
from __future__ import annotations

import hashlib
import importlib.util
from collections import Counter

import numpy as np
import pytest
import wfdb

import data_loader as dl
from conftest import FIXTURE_DIR, FIXTURE_RECORDS, PACED_RECORD, PROTOCOL_LABEL, ROOT, fixture_record


def _sums():
    return {name: digest for digest, name in
            (line.split() for line in (FIXTURE_DIR / "SHA256SUMS.txt").read_text().splitlines())}


def test_checksums_cover_every_file_and_match(fixture_dir):
    sums = _sums()
    files = {p.name for p in fixture_dir.iterdir() if p.name != "SHA256SUMS.txt"}
    assert set(sums) == files
    for name, digest in sums.items():
        assert hashlib.sha256((fixture_dir / name).read_bytes()).hexdigest() == digest, name
    for line in (fixture_dir / "SHA256SUMS.txt").read_text().splitlines():
        digest, name = line.split("  ")  # sha256sum's "<digest>  <filename>"
        assert len(digest) == 64 and name in files


def test_fixture_is_small_and_has_the_records(fixture_dir):
    total = sum(p.stat().st_size for p in fixture_dir.iterdir())
    assert total < 2_000_000
    assert (fixture_dir / "RECORDS").read_text().split() == sorted(FIXTURE_RECORDS + (PACED_RECORD,))
    for rec in FIXTURE_RECORDS + (PACED_RECORD,):
        for ext in dl.RECORD_EXTENSIONS:
            assert (fixture_dir / f"{rec}{ext}").is_file()
    # The records the smoke runs use: first two of DS1, VALIDATION (--validate) and DS2.
    assert set(dl.DS1[:2]) | set(dl.VALIDATION[:2]) | set(dl.DS2[:2]) <= set(FIXTURE_RECORDS)


def test_readme_gives_attribution_licence_and_recipe():
    text = " ".join((ROOT / "tests" / "fixtures" / "README.md").read_text().split())
    for needle in ("ODC-By 1.0", "Open Data Commons Attribution License v1.0",
                   "Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database",
                   "Goldberger A, et al. PhysioBank, PhysioToolkit, and PhysioNet",
                   "make_fixture.py", "physionet.org/content/mitdb/1.0.0"):
        assert needle in text, needle


@pytest.mark.parametrize("record", FIXTURE_RECORDS)
def test_records_keep_real_layout(record):
    h = wfdb.rdheader(fixture_record(record))
    assert h.fs == 360 and h.n_sig == 2 and h.sig_len == 3 * 60 * 360
    assert h.fmt == ["212", "212"] and h.units == ["mV", "mV"]
    assert "MLII" in h.sig_name
    assert h.sig_name.index("MLII") == (1 if record == "114" else 0)
    assert any("MIT-BIH Arrhythmia Database record" in c for c in h.comments)
    ann = wfdb.rdann(fixture_record(record), "atr")
    assert np.all(np.diff(ann.sample) >= 0) and ann.sample.min() >= 0 and ann.sample.max() < h.sig_len
    assert "+" in ann.symbol  # rhythm annotations were kept, not only beats


def test_the_paced_excerpt_is_one_real_minute_of_paced_beats():
    h = wfdb.rdheader(fixture_record(PACED_RECORD))
    assert h.fs == 360 and h.sig_len == 60 * 360 and h.sig_name[0] == "MLII" and h.fmt == ["212", "212"]
    symbols = Counter(wfdb.rdann(fixture_record(PACED_RECORD), "atr").symbol)
    assert symbols["/"] > 60  # paced beats


def test_non_beat_annotations_are_kept():
    symbols = Counter()
    for rec in FIXTURE_RECORDS:
        symbols.update(wfdb.rdann(fixture_record(rec), "atr").symbol)
    assert {"+", "~", "|", "x"} <= set(symbols)
    assert {"N", "R", "A", "J", "V", "F"} <= set(symbols)


def test_ensure_records_accepts_fixture_offline(fixture_dir):
    digests = dl.ensure_records(fixture_dir, list(FIXTURE_RECORDS), offline=True)
    assert set(digests) == set(FIXTURE_RECORDS)
    assert len(set(digests.values())) == len(FIXTURE_RECORDS)


@pytest.mark.parametrize("mode", dl.MODES)
def test_load_beats_on_fixture(fixture_dir, mode):
    beats = dl.load_beats(fixture_dir, list(FIXTURE_RECORDS), mode, progress=False)
    n = 0
    for rec in FIXTURE_RECORDS:
        ann = wfdb.rdann(fixture_record(rec), "atr")
        n += sum(s in PROTOCOL_LABEL for s in ann.symbol)
    assert len(beats) == n
    assert beats.x.shape == (n, len(dl.WINDOW_CHANNELS), dl.WINDOW) and beats.x.dtype == np.float32
    assert beats.rr.shape == (n, len(dl.RR_FEATURES[mode]))
    assert np.isfinite(beats.x).all() and np.isfinite(beats.rr).all()
    assert sorted(set(beats.record)) == sorted(FIXTURE_RECORDS)
    assert beats.counts()["V"] > 0 and beats.counts()["S"] > 0


def test_make_fixture_crops_exactly(tmp_path):
    """The fixture script, run on the fixture itself, crops samples and annotations exactly."""
    spec = importlib.util.spec_from_file_location("make_fixture", ROOT / "tests" / "fixtures" / "make_fixture.py")
    mf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mf)
    start, span = 30_000, 10_000  # spans A and V beats of 118
    mf.crop(FIXTURE_DIR, tmp_path, "118", start, span)
    src = wfdb.rdrecord(fixture_record("118"), sampfrom=start, sampto=start + span)
    out = wfdb.rdrecord(str(tmp_path / "118"))
    assert out.sig_name == src.sig_name and out.units == src.units and out.fmt == ["212", "212"]
    np.testing.assert_array_equal(out.p_signal, src.p_signal)
    a = wfdb.rdann(fixture_record("118"), "atr")
    keep = (a.sample >= start) & (a.sample < start + span)
    b = wfdb.rdann(str(tmp_path / "118"), "atr")
    np.testing.assert_array_equal(b.sample, a.sample[keep] - start)
    assert b.symbol == [s for s, k in zip(a.symbol, keep) if k]
    assert {"A", "V"} <= set(b.symbol)
