"""How noisy LRS-OPT's hypergradient is (the ``noise`` unit of Section 5) and the signal-to-noise
analysis that reads it: the statistics are those of LRS-OPT's own draws, recomputed here."""

from __future__ import annotations

import math

import pytest
import torch

from hypergrad import experiments as ex
from hypergrad.experiments import mnist_schedules as ms
from hypergrad.hypergradient import hypergradient
from hypergrad.lrs_opt import lrs_opt
from hypergrad.schedules import constant
from tests.helpers import needs_mnist

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- the analysis
def test_signal_to_noise_by_hand():
    mean = [1.0, -0.5, 0.1, 0.0, 2.0]
    sd = [1.0, 1.0, 1.0, 1.0, 0.0]            # the last step: no noise, left out
    r = ex.signal_to_noise(mean, sd, draws=16)
    assert r["steps"] == 4
    assert r["snr"] == pytest.approx(0.3)    # median of 1, 0.5, 0.1, 0 (the middle two)
    # 95 % interval t(15) sd/√16 = 2.131/4 = 0.533: only |1| lies outside it
    assert r["resolved"] == pytest.approx(0.25)
    # (1.96/|m|)²: 3.84, 15.4, 384, inf -> median (15.4 + 384)/2
    assert r["draws_needed"] == pytest.approx((1.96 ** 2 / 0.25 + 1.96 ** 2 / 0.01) / 2)


def test_signal_to_noise_edges():
    with pytest.raises(ValueError, match="one length"):
        ex.signal_to_noise([1.0, 2.0], [1.0], draws=4)
    with pytest.raises(ValueError, match="at least 2 draws"):
        ex.signal_to_noise([1.0], [1.0], draws=1)
    r = ex.signal_to_noise([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], draws=4)
    assert r["snr"] == 0.0 and r["resolved"] == 0.0 and r["draws_needed"] == math.inf
    assert math.isnan(ex.signal_to_noise([1.0], [0.0], draws=4)["snr"])


# ----------------------------------------------------------------------------- the unit
@pytest.fixture(scope="module")
def tiny():
    s = ex.settings("mnist-schedules", "tiny")
    s["noise"]["draws"] = 4
    torch.set_num_threads(1)
    task = ms.MnistTask(s, "cpu")
    lo = s["lrs_opt"]
    res = lrs_opt(task.dyn, task.init_params(0), constant(s["T"], s["fixed_lr"]),
                  lambda it: task.batches(0, salt=it + 1), task.objective,
                  iterations=lo["iterations"], step_size=lo["step_size"], max_lr=lo["max_lr"],
                  progress=False)
    return s, task, res, ms._noise(task, s, 0, res.lrs)


def _held_out(s, task, k):
    """The ``k``-th draw of the noise unit: the one after LRS-OPT's own draws."""
    return task.batches(0, salt=s["lrs_opt"]["iterations"] + 1 + k)


@needs_mnist
def test_noise_draws_are_fresh_ones_lrs_opt_never_saw(tiny):
    s, task, res, out = tiny
    seen = [task.batches(0, salt=i + 1) for i in range(s["lrs_opt"]["iterations"])]
    for k in range(s["noise"]["draws"]):
        x = _held_out(s, task, k)[0][0]
        assert not any(torch.equal(x, b[0][0]) for b in seen)
    # LRS-OPT's own draws are made the same way: its first f_T is that of salt 1
    start = constant(s["T"], s["fixed_lr"])
    v, _ = hypergradient(task.dyn, task.init_params(0), start, seen[0], task.objective)
    assert float(v) == pytest.approx(res.history[0], rel=1e-6)


@needs_mnist
def test_noise_is_the_statistics_of_the_draws(tiny):
    s, task, res, out = tiny
    params = task.init_params(0)
    for key, lrs in (("start", constant(s["T"], s["fixed_lr"])), ("final", res.lrs)):
        vals, grads = zip(*(hypergradient(task.dyn, params, lrs, _held_out(s, task, k),
                                          task.objective) for k in range(4)), strict=True)
        g = torch.stack(grads).double()
        assert out[key]["draws"] == 4
        assert out[key]["f_T"] == pytest.approx([float(v) for v in vals], rel=1e-6)
        assert out[key]["mean"] == pytest.approx(g.mean(0).tolist(), rel=1e-5, abs=1e-7)
        assert out[key]["sd"] == pytest.approx(g.std(0).tolist(), rel=1e-5, abs=1e-7)
        assert len(set(out[key]["f_T"])) == 4            # four different draws


@needs_mnist
def test_smoothed_schedule_is_the_centred_mean_trained_on_the_same_draws(tiny):
    s, task, res, out = tiny
    sm = out["smoothed"]
    assert sm["lr"] == pytest.approx(
        ex.centred_mean(res.lrs, s["noise"]["window"]).tolist(), rel=1e-6)
    assert sm["final_val_loss"] == pytest.approx(out["final"]["f_T"], rel=1e-6)
    params = task.init_params(0)
    k = 2
    again = task.train_fixed(params, sm["lr"], _held_out(s, task, k))
    assert sm["smoothed_val_loss"][k] == pytest.approx(again["val_loss"], rel=1e-5)
    assert sm["smoothed_val_acc"][k] == pytest.approx(again["val_acc"])


@needs_mnist
def test_a_diverging_schedule_is_recorded_not_raised(tiny):
    s, task, _, _ = tiny
    out = ms._noise(task, s, 0, [1e8] * s["T"])
    assert out["final"]["draws"] == 0 and out["final"]["mean"] is None
    assert out["final"]["f_T"] == [None] * 4
    assert out["smoothed"]["final_val_acc"] == [None] * 4
    assert out["start"]["draws"] == 4


@needs_mnist
def test_a_noise_seed_without_lrs_opt_is_refused(tmp_path):
    s = ex.settings("mnist-schedules", "tiny")
    s["noise"]["seeds"] = [5]
    with pytest.raises(ValueError, match="noise seed 5 is no LRS-OPT seed"):
        ms.run_mnist_schedules(s, out_dir=tmp_path, progress=False)
