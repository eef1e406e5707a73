"""lab/bn_adapt.py (DS1 CV round 36): batch-norm statistics from a patient's past beats judge each
beat without its later beats, and the network's own statistics are back in place afterwards."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import import_lab


@pytest.fixture(scope="module")
def adapt():
    return import_lab("bn_adapt")


@pytest.fixture(scope="module")
def network():
    from model import DualBranchNet

    torch.manual_seed(0)
    net = DualBranchNet(n_rr=9)
    for m in net.modules():  # statistics unlike a patient's, so that adapting them shows
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return net.eval()


def beats(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2, 280)).astype(np.float32), rng.normal(size=(n, 9)).astype(np.float32)


@pytest.mark.parametrize("past", [256, 1024])
def test_past_statistics_use_no_later_beat(adapt, network, past):
    x, rr = beats()
    later_x, later_rr = beats(seed=1)
    cut = 5 * adapt.BLOCK + adapt.BLOCK // 2  # beats before it are the same, from it on differ (mid-block)
    x2, rr2 = np.concatenate([x[:cut], later_x[cut:]]), np.concatenate([rr[:cut], later_rr[cut:]])
    a, b = adapt.adapted_logp(network, x, rr, past), adapt.adapted_logp(network, x2, rr2, past)
    np.testing.assert_allclose(a[:cut], b[:cut], atol=1e-5)
    none = adapt.adapted_logp(network, x, rr, None)
    assert np.allclose(a[:adapt.MIN_PAST], none[:adapt.MIN_PAST], atol=1e-5)  # too few past beats: as trained
    assert not np.allclose(a[adapt.MIN_PAST:], none[adapt.MIN_PAST:], atol=1e-3)  # then adapted


def test_record_statistics_see_later_beats_and_the_network_is_restored(adapt, network):
    before = {k: v.clone() for k, v in network.state_dict().items()}
    x, rr = beats()
    later_x, _ = beats(seed=1)
    a = adapt.adapted_logp(network, x, rr, "record")
    b = adapt.adapted_logp(network, np.concatenate([x[:100], later_x[100:]]), rr, "record")
    assert not np.allclose(a[:100], b[:100], atol=1e-3)  # the ceiling: later beats change earlier ones
    for k, v in network.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not m.training for m in network.modules())
    assert all(m.momentum == 0.1 for m in adapt.batch_norms(network))
