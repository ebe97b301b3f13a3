"""The problems of chapters 2–4 (hypergrad.problems) and Figure 1's runner (experiments.figure1)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, hessian

import hypergrad as hg
from hypergrad.experiments.figure1 import run_fig1, sweep_fig1
from hypergrad.problems import (
    BEALE_MIN,
    BUKIN_MIN,
    PROBLEMS,
    as_loss,
    beale,
    bukin_smoothed,
    grid,
    problem,
    smooth_abs,
    teacher_student,
)

f64 = torch.float64


def test_beale_minimum_is_zero_with_zero_gradient():
    x = torch.tensor(BEALE_MIN, dtype=f64)
    assert float(beale(x)) == 0.0
    assert torch.equal(grad(beale)(x), torch.zeros(2, dtype=f64))
    assert bool((torch.linalg.eigvalsh(hessian(beale)(x)) > 0).all())  # a strict minimum
    assert float(beale(torch.tensor([1.0, 1.5], dtype=f64))) == pytest.approx(41.25)


@pytest.mark.parametrize("form", ["abs", "square"])
def test_bukin_valley(form):
    f = lambda x: bukin_smoothed(x, eps=1e-2, form=form)  # noqa: E731
    # minimum 0 at (−10, 1), with zero gradient
    xm = torch.tensor(BUKIN_MIN, dtype=f64)
    assert float(f(xm)) == pytest.approx(0.0, abs=1e-15)
    assert torch.allclose(grad(f)(xm), torch.zeros(2, dtype=f64), atol=1e-12)
    for x1 in (-14.0, -5.0, 0.0, 3.0):
        on = torch.tensor([x1, 0.01 * x1 ** 2], dtype=f64)
        g = grad(f)(on)
        # on the valley the across-valley term is flat: only the 0.01|x1 + 10| pull remains,
        # which has slope below 0.01 and points towards x1 = −10
        assert float(f(on)) == pytest.approx(float(0.01 * smooth_abs(on[0:1] + 10, 1e-2)[0]))
        pull = 0.01 * (x1 + 10) / math.sqrt((x1 + 10) ** 2 + 1e-2)
        assert torch.allclose(g, torch.tensor([pull, 0.0], dtype=f64), atol=1e-12)
        assert float(g.norm()) < 0.0101
        assert math.copysign(1, float(g[0])) == math.copysign(1, x1 + 10) or x1 == -10
        # off the valley, both sides are higher
        for d in (-0.1, 0.1):
            assert float(f(on + torch.tensor([0.0, d], dtype=f64))) > float(f(on)) + 0.5
    # the across-valley gradient: constant magnitude ~100 (abs) or proportional (square)
    up = torch.tensor([-5.0, 0.25 + 0.5], dtype=f64)
    gy = float(grad(f)(up)[1])
    assert gy == pytest.approx(100 * 0.5 / math.sqrt(0.25 + 1e-2) if form == "abs" else 100.0)


def test_bukin_rejects_bad_arguments():
    x = torch.zeros(2, dtype=f64)
    with pytest.raises(ValueError):
        bukin_smoothed(x, eps=0.0)
    with pytest.raises(ValueError):
        bukin_smoothed(x, form="cube")
    with pytest.raises(ValueError):
        beale(torch.zeros(3, dtype=f64))


def test_as_loss_and_grid():
    loss = as_loss(beale)
    x = torch.tensor([1.0, 1.5], dtype=f64)
    assert float(loss({"x": x}, None)) == float(beale(x))
    X, Y, F = grid(beale, (0.0, 4.0), (-1.0, 2.0), 7)
    assert X.shape == Y.shape == F.shape == (7, 7)
    assert float(X[0, 0]) == 0.0 and float(X[0, -1]) == 4.0 and float(Y[-1, 0]) == 2.0
    assert float(F[3, 2]) == pytest.approx(float(beale(torch.stack([X[3, 2], Y[3, 2]]))))
    assert problem("Beale").f is beale and set(PROBLEMS) == {"beale", "bukin"}
    with pytest.raises(ValueError):
        problem("rosenbrock")


@pytest.mark.parametrize("method", ["hd", "rtho", "marthe"])
def test_run_fig1_small_beta_is_finite(method):
    run = run_fig1(beale, (1.0, 1.5), method, 1e-8, steps=60)
    assert not run.diverged and run.diverged_at is None
    assert run.trajectory.shape == (61, 2) and run.trajectory.dtype == f64
    assert bool(torch.isfinite(run.trajectory).all())
    assert len(run.history.lr) == 60
    assert run.history.lr[0] == 0.0                     # η_0 = 0: the first step does not move
    assert torch.equal(run.trajectory[1], run.trajectory[0])
    assert run.history.lr[1] > 0                       # ... and the hypergradient raises η
    values = beale(run.trajectory)
    assert run.best == pytest.approx(float(values.min()))
    assert run.best < float(beale(torch.tensor([1.0, 1.5], dtype=f64)))
    # the history is the tuner's: E(w_t) = f(x_t)
    assert run.history.objective[10] == pytest.approx(float(values[10]))


def test_run_fig1_matches_the_library_tuner():
    run = run_fig1(beale, (1.0, 1.5), "rtho", 1e-8, steps=30)
    tuner = hg.RTHO(hg.sgd(as_loss(beale)), lr=0.0, beta=1e-8)
    ostate, hist = hg.run_online(tuner, {"x": torch.tensor([1.0, 1.5], dtype=f64)},
                                 [None] * 30, as_loss(beale), max_loss_ratio=math.inf)
    assert hist.lr == run.history.lr
    assert torch.equal(ostate.state.w["params"]["x"], run.trajectory[-1])


def test_divergence_is_recorded_with_its_step():
    run = run_fig1(beale, (1.0, 1.5), "rtho", 1e-3, steps=100)
    assert run.diverged and isinstance(run.diverged_at, int) and 0 < run.diverged_at < 100
    assert bool(torch.isfinite(run.trajectory).all())
    assert len(run.trajectory) <= run.diverged_at + 1
    assert math.isfinite(run.best)
    # a finite loss-ratio threshold also counts as divergence, earlier
    ratio = run_fig1(beale, (1.0, 1.5), "rtho", 1e-3, steps=100, max_loss_ratio=2.0)
    assert ratio.diverged and ratio.diverged_at <= run.diverged_at


def test_sweep_and_bad_method():
    out = sweep_fig1(beale, (1.0, 1.5), ["hd", "rtho"], [1e-9, 1e-8], steps=20)
    assert set(out) == {"hd", "rtho"} and all(len(v) == 2 for v in out.values())
    with pytest.raises(ValueError):
        run_fig1(beale, (1.0, 1.5), "adam", 1e-8, steps=5)
    with pytest.raises(ValueError):
        run_fig1(beale, (1.0, 1.5, 0.0), "hd", 1e-8, steps=5)


def test_teacher_student_is_the_chapters_problem():
    """Same draws as the chapters' original cell: the generator order is part of the problem."""
    ts = teacher_student()
    g = torch.Generator().manual_seed(0)
    x_all = torch.randn(768, 10, generator=g, dtype=f64)
    teacher = torch.randn(10, 3, generator=g, dtype=f64)
    y_all = (x_all @ teacher + 0.5 * torch.randn(768, 3, generator=g, dtype=f64)).argmax(1)
    W1 = torch.randn(10, 16, generator=g, dtype=f64) / 10**0.5
    W2 = torch.randn(16, 3, generator=g, dtype=f64) / 4
    assert torch.equal(ts.train[0], x_all[:512]) and torch.equal(ts.val[1], y_all[512:])
    assert torch.equal(ts.params0["W1"], W1) and torch.equal(ts.params0["W2"], W2)
    p = ts.params0
    logits = torch.tanh(ts.val[0] @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    expected = torch.nn.functional.cross_entropy(logits, ts.val[1])
    torch.testing.assert_close(ts.objective(p), expected, rtol=0, atol=0)
    torch.testing.assert_close(ts.loss(p, ts.train), hg.sgd(ts.loss).loss(p, ts.train))
    with pytest.raises(ValueError, match="n_hidden"):
        teacher_student(n_hidden=0)
