"""lab/decision_rules.py (DS1 CV round 32): the patient-prior rule uses no later beat, and the
predictions lab/cv.py keeps are read back as written."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import import_lab


@pytest.fixture(scope="module")
def rules():
    return import_lab("decision_rules")


def fold(n=300, seed=0, records=("201", "203")):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 5))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    per_record = n // len(records)
    return {"logp": logp.astype(np.float32), "labels": rng.integers(0, 5, n),
            "record": np.repeat(np.array(records), per_record),
            "sample": np.tile(np.arange(per_record) * 300, len(records))}


def test_patient_priors_decide_each_beat_without_later_beats(rules):
    z = fold()
    ref = np.full(5, 0.2)
    before = rules.patient_priors(z, ref, beats=64, power=1.0)
    later = fold(seed=1)  # the same beats up to 100 in each record, others after it
    changed = {k: v.copy() for k, v in z.items()}
    after = np.tile(np.arange(150) >= 100, 2)
    changed["logp"][after] = later["logp"][after]
    assert np.array_equal(rules.patient_priors(changed, ref, 64, 1.0)[~after], before[~after])
    assert not np.array_equal(rules.patient_priors(changed, ref, 64, 1.0)[after], before[after])
    # the beats' order is their time, not their order in the file
    perm = np.random.default_rng(2).permutation(len(z["logp"]))
    shuffled = {k: v[perm] for k, v in z.items()}
    assert np.array_equal(rules.patient_priors(shuffled, ref, 64, 1.0), before[perm])


def test_patient_priors_raise_a_class_the_patient_shows_often(rules):
    z = fold()
    z["logp"][:, 1] += 1.5  # every beat leans towards S
    plain = z["logp"].argmax(1)
    assert np.array_equal(rules.patient_priors(z, np.full(5, 0.2), 64, 0.0), plain)  # power 0: the argmax
    raised = rules.patient_priors(z, np.full(5, 0.2), 64, 1.0)
    assert (raised == 1).sum() > (plain == 1).sum()


def test_predictions_are_read_back_by_seed_in_fold_order(rules, tmp_path):
    cv = sys.modules["cv"]
    for seed in (0, 1):
        for k in (2, 0, 3, 1):
            z = fold(n=10, seed=10 * seed + k)
            np.savez_compressed(cv.predictions_path(tmp_path, "diagnostic", "gamma2", seed, k), **z)
    np.savez_compressed(cv.predictions_path(tmp_path, "diagnostic", "gamma2_amplitude", 0, 0), **fold(n=10))
    runs = cv.read_predictions(tmp_path, "diagnostic", "gamma2")
    assert sorted(runs) == [0, 1] and all(len(folds) == 4 for folds in runs.values())
    assert np.array_equal(runs[1][2]["logp"], fold(n=10, seed=12)["logp"])
    assert cv.read_predictions(tmp_path, "realtime", "gamma2") == {}
    assert sorted(cv.read_runs(tmp_path, "diagnostic/gamma2,diagnostic/gamma2_amplitude")) == [
        "diagnostic/gamma2", "diagnostic/gamma2_amplitude"]
    with pytest.raises(ValueError, match="--configs gamma2 --modes realtime --save-predictions"):
        cv.read_runs(tmp_path, "diagnostic/gamma2,realtime/gamma2")
