"""Inter-patient split (de Chazal 2004), and DS2 untouched until the final evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import data_loader as dl
from export import OnnxModel
from conftest import PROTOCOL_DS1, PROTOCOL_DS2, PROTOCOL_PACED, smoke_args


def test_ds1_ds2_are_the_protocol_lists():
    assert sorted(dl.DS1) == sorted(PROTOCOL_DS1) and len(set(dl.DS1)) == 22
    assert sorted(dl.DS2) == sorted(PROTOCOL_DS2) and len(set(dl.DS2)) == 22
    assert set(dl.PACED) == set(PROTOCOL_PACED)


def test_default_split_trains_on_all_of_ds1_and_tests_on_ds2():
    import main

    train, val, test = main.split_records(None)
    assert train == list(dl.DS1) and val == [] and test == list(dl.DS2)


@pytest.mark.parametrize("max_records", [None, 2])
def test_validate_split_holds_whole_ds1_patients_out(max_records):
    import main

    train, val, test = main.split_records(max_records, validate=True)
    assert val == list(dl.VALIDATION)[:max_records] and val, "validation needs held-out DS1 patients"
    assert len(set(train)) == len(train) and not set(train) & set(val) and not set(train + val) & set(test)
    if max_records is None:
        assert set(train) | set(val) == set(dl.DS1) and len(train) + len(val) == len(dl.DS1)
        assert test == list(dl.DS2)


def test_paced_records_are_in_no_list():
    for lst in (dl.DS1, dl.DS2, dl.VALIDATION):
        assert not set(PROTOCOL_PACED) & set(lst)


def test_cross_validation_folds_if_any_are_whole_ds1_patients():
    folds = getattr(dl, "DS1_FOLDS", None)
    if folds is None:
        pytest.skip("data_loader has no DS1_FOLDS")
    flat = [r for fold in folds for r in fold]
    assert len(flat) == len(set(flat)), "a record sits in two folds"
    assert set(flat) == set(dl.DS1)


def test_validation_records_hold_s_and_v_beats(fixture_dir):
    # The fixture's excerpts of the smoke run's validation records, together.
    counts = dl.load_beats(fixture_dir, dl.VALIDATION[:2], "diagnostic", progress=False).counts()
    assert counts["S"] > 0 and counts["V"] > 0, counts


def test_ds2_is_read_only_after_training(monkeypatch, tmp_path, fixture_dir):
    """A real-time-mode run with --validate, in process, with spies on preprocessing, loading and
    training (the validation records are read before training, DS2 only after)."""
    import main
    import quantize
    import train

    ds2 = set(dl.DS2)
    events = []

    real_pre, real_load, real_fit = dl.preprocess_record, dl.load_beats, train.fit

    def spy_pre(path, *a, **k):
        events.append(("preprocess", Path(path).name))
        return real_pre(path, *a, **k)

    def spy_load(data_dir, records, *a, **k):
        records = list(records)
        events.append(("load", tuple(records)))
        return real_load(data_dir, records, *a, **k)

    def spy_fit(*a, **k):
        for beats in [*a, *k.values()]:
            if isinstance(beats, dl.Beats):
                assert not set(beats.record.tolist()) & ds2, "DS2 beats handed to training"
        events.append(("fit-start", None))
        result = real_fit(*a, **k)
        events.append(("fit-end", None))
        return result

    monkeypatch.setattr(dl, "preprocess_record", spy_pre)
    monkeypatch.setattr(dl, "load_beats", spy_load)
    monkeypatch.setattr(train, "fit", spy_fit)

    out = tmp_path / "run"
    assert main.main(smoke_args(out, tmp_path / "cache", "--mode", "realtime", "--validate")) == 0

    kinds = [e[0] for e in events]
    assert "fit-end" in kinds
    last_fit_end = max(i for i, e in enumerate(events) if e[0] == "fit-end")

    def touches_ds2(e):
        return (e[0] == "preprocess" and e[1] in ds2) or (e[0] == "load" and set(e[1]) & ds2)

    ds2_events = [i for i, e in enumerate(events) if touches_ds2(e)]
    assert ds2_events, "the test set was never read: the spies see nothing"
    assert min(ds2_events) > last_fit_end, events
    assert {e[1] for e in events if e[0] == "preprocess" and e[1] in ds2} == set(dl.DS2[:2])

    # The real-time run is complete and really real-time.
    config = json.loads((out / "config.json").read_text())
    assert config["mode"] == "realtime" and config["validation_records"] == list(dl.VALIDATION[:2])
    assert ("load", tuple(dl.VALIDATION[:2])) in events[:kinds.index("fit-start")]
    assert list(config["rr_features"]) == list(dl.RR_FEATURES["realtime"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == [1] and "val_macro_f1_nsv" in metrics["history"][0]
    n_test = sum(len(real_load(fixture_dir, [r], "realtime", progress=False)) for r in dl.DS2[:2])
    for name in ("float32", "dynamic-int8"):
        assert np.asarray(metrics[name]["confusion"]).sum() == n_test
    model, meta = quantize.load_model(out / "model_float32.pt")
    assert meta["mode"] == "realtime" and model.n_rr == len(dl.RR_FEATURES["realtime"])
    assert OnnxModel(out / "model_int8_dynamic.onnx").mode == "realtime"
