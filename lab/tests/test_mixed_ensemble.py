"""lab/mixed_ensemble.py (DS1 CV rounds 43, 50, 51, 53): an ensemble decides by its members' mean
log-probabilities, every ensemble of distinct networks is scored once, and runs it cannot pair are refused with
the fix named."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import import_lab


@pytest.fixture(scope="module")
def mixed():
    return import_lab("mixed_ensemble")


def fold(seed, n=40):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 5)).astype(np.float32)
    return {"logp": logits - np.log(np.exp(logits).sum(1, keepdims=True)), "labels": rng.integers(0, 5, n),
            "record": np.repeat(np.array(["201", "203"]), n // 2), "sample": np.tile(np.arange(n // 2) * 300, 2)}


def save(directory, config, seeds, folds=4):
    cv = sys.modules["cv"]
    for seed in seeds:
        for k in range(folds):
            np.savez_compressed(cv.predictions_path(directory, "diagnostic", config, seed, k), **fold(100 * seed + k))


def test_a_pair_decides_by_the_mean_of_its_members(mixed):
    from evaluate import confusion, metrics

    a, b = [fold(k) for k in range(4)], [fold(10 + k) for k in range(4)]
    cm = sum(confusion(x["labels"], (x["logp"] + y["logp"]).argmax(1)) for x, y in zip(a, b))
    assert mixed.ensemble_metrics(a, b)["macro_f1_nsv"] == pytest.approx(metrics(cm)["macro_f1_nsv"])
    moved = [{**y, "sample": y["sample"] + 1} for y in b]  # other beats: not the same folds
    with pytest.raises(ValueError, match="same folds"):
        mixed.ensemble_metrics(a, moved)


def test_scores_all_pairs_and_refuses_a_run_without_two_whole_seeds(mixed, tmp_path, capsys):
    save(tmp_path, "gamma2", (0, 1, 2))
    save(tmp_path, "gamma2_pool5", (0, 1))
    save(tmp_path, "gamma2_pool5", (2,), folds=3)  # a seed cut short: left out, with a warning
    out = tmp_path / "r43"
    assert mixed.main(["--predictions", str(tmp_path), "--runs", "diagnostic/gamma2,diagnostic/gamma2_pool5",
                       "--out", str(out)]) == 0
    rows = __import__("json").loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["scored"] for r in rows.values()] == [3, 2, 3, 1, 6]  # one network each, pairs of a run's seeds, mixed
    alone = rows["diagnostic/gamma2, one network"]["macro_f1_nsv"]
    from evaluate import confusion, metrics
    by_seed = [metrics(sum(confusion(f["labels"], f["logp"].argmax(1)) for f in (fold(100 * s + k) for k in range(4))))
               for s in range(3)]  # each network alone, its folds pooled
    assert alone == pytest.approx(np.mean([m["macro_f1_nsv"] for m in by_seed]))
    assert "seed(s) 2 left out" in capsys.readouterr().err
    save(tmp_path, "gamma2_cnn4", (0,))
    assert mixed.main(["--predictions", str(tmp_path), "--runs", "diagnostic/gamma2,diagnostic/gamma2_cnn4",
                       "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "error: diagnostic/gamma2_cnn4 has 1 seed(s)" in err and "--seeds 2" in err
    assert not (tmp_path / "x.md").exists()


def test_three_runs_score_every_trio_of_distinct_networks_once(mixed, tmp_path):
    from evaluate import confusion, metrics

    save(tmp_path, "gamma2", (0, 1, 2))
    save(tmp_path, "gamma2_pool5", (0, 1))
    trios = mixed.ensembles(["diagnostic/gamma2", "diagnostic/gamma2_pool5", "diagnostic/gamma2"],
                            {"diagnostic/gamma2": [0, 1, 2], "diagnostic/gamma2_pool5": [0, 1]})
    assert len(trios) == 2 * 3  # one of the two pool5 networks, two different gamma2 networks of three
    assert all(len({m for m in t}) == 3 for t in trios)
    out = tmp_path / "r53"
    assert mixed.main(["--predictions", str(tmp_path), "--runs",
                       "diagnostic/gamma2,diagnostic/gamma2_pool5,diagnostic/gamma2", "--out", str(out)]) == 0
    rows = __import__("json").loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["scored"] for r in rows.values()] == [3, 2, 6, 6]  # each network alone, A + B pairs, trios
    trio = rows["diagnostic/gamma2 + diagnostic/gamma2_pool5 + diagnostic/gamma2"]["macro_f1_nsv"]
    expected = []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        for p in (0, 1):
            folds = zip(*[[fold(100 * s + k) for k in range(4)] for s in (i, j)], [fold(100 * p + k) for k in range(4)])
            cm = sum(confusion(a["labels"], (a["logp"] + b["logp"] + c["logp"]).argmax(1)) for a, b, c in folds)
            expected.append(metrics(cm)["macro_f1_nsv"])
    assert trio == pytest.approx(np.mean(expected))


def test_a_run_named_three_times_needs_three_seeds(mixed, tmp_path, capsys):
    save(tmp_path, "gamma2", (0, 1))
    assert mixed.main(["--predictions", str(tmp_path), "--runs", "diagnostic/gamma2,diagnostic/gamma2,diagnostic/gamma2",
                       "--out", str(tmp_path / "x")]) == 2
    assert "has 2 seed(s)" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    save(tmp_path, "gamma2", (2,))
    assert mixed.main(["--predictions", str(tmp_path), "--runs", "diagnostic/gamma2,diagnostic/gamma2,diagnostic/gamma2",
                       "--out", str(tmp_path / "x")]) == 0
    rows = __import__("json").loads((tmp_path / "x.json").read_text())["rows"]
    assert rows["diagnostic/gamma2 + diagnostic/gamma2 + diagnostic/gamma2"]["scored"] == 1
