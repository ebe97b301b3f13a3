"""The noisy quadratic of chapter 4's worked example (hypergrad.viz.quadratic).

Each test checks numbers against an independent hand computation, or what was drawn
(lines, colours, scales, font sizes), not only that nothing raised.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.func import grad  # noqa: E402

import hypergrad as hg  # noqa: E402
from hypergrad.viz import quadratic  # noqa: E402

f64 = torch.float64


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def small(steps: int = 12, seed: int = 0) -> quadratic.NoisyQuadratic:
    return quadratic.noisy_quadratic([1.0, 0.25], [1.0, -0.5], [-1.0, 1.0], 0.5, steps, seed)


# --------------------------------------------------------------------------- the problem
def test_noisy_quadratic_targets_loss_and_objective():
    nq = small(steps=2000)
    assert nq.targets.shape == (2000, 2) and nq.targets.dtype == f64
    # y_t = w⋆ + σ ξ_t: mean w⋆, standard deviation σ per coordinate
    np.testing.assert_allclose(nq.targets.mean(0).numpy(), [1.0, -0.5], atol=0.05)
    np.testing.assert_allclose(nq.targets.std(0).numpy(), [0.5, 0.5], rtol=0.05)
    w = {"w": torch.tensor([0.3, 2.0], dtype=f64)}
    y = nq.targets[3]
    h = torch.tensor([1.0, 0.25], dtype=f64)
    expected = 0.5 * (1.0 * (0.3 - y[0]) ** 2 + 0.25 * (2.0 - y[1]) ** 2)
    assert math.isclose(float(nq.loss(w, y)), float(expected), rel_tol=1e-15)
    torch.testing.assert_close(grad(nq.loss)(w, y)["w"], h * (w["w"] - y), rtol=1e-15, atol=0)
    torch.testing.assert_close(grad(nq.objective)(w)["w"], h * (w["w"] - nq.w_star),
                               rtol=1e-15, atol=0)
    assert float(nq.objective({"w": nq.w_star.clone()})) == 0.0


def test_noisy_quadratic_is_seeded_and_copies_its_start():
    a, b, c = small(seed=3), small(seed=3), small(seed=4)
    assert torch.equal(a.targets, b.targets) and not torch.equal(a.targets, c.targets)
    p = a.params0
    p["w"] += 1.0
    assert torch.equal(a.w0, torch.tensor([-1.0, 1.0], dtype=f64))
    assert len(a.batches) == 12 and torch.equal(a.batches[5], a.targets[5])
    # no noise: every target is w⋆
    assert torch.equal(quadratic.noisy_quadratic([1.0], [2.0], [0.0], 0.0, 3).targets,
                       torch.full((3, 1), 2.0, dtype=f64))


@pytest.mark.parametrize("kw, match", [
    (dict(h=[1.0, -1.0]), "positive"),
    (dict(h=[1.0]), "one length"),
    (dict(sigma=-0.1), "sigma"),
    (dict(sigma=math.nan), "sigma"),
])
def test_noisy_quadratic_rejects_bad_arguments(kw, match):
    args = dict(h=[1.0, 0.25], w_star=[1.0, -0.5], w0=[-1.0, 1.0], sigma=0.5, steps=3)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        quadratic.noisy_quadratic(**args)


# --------------------------------------------------------------------------- a run's tangent
def test_tangent_run_records_sgd_and_hd_tangent_by_hand():
    nq = small()
    dyn = hg.sgd(nq.loss)
    run = quadratic.tangent_run(hg.Marthe(dyn, lr=0.5, beta=0.05, mu=0.0), nq)
    h, w_star, y = nq.h.numpy(), nq.w_star.numpy(), nq.targets.numpy()
    assert run.w.shape == run.Z.shape == (13, 2) and run.lr.shape == (12,)
    np.testing.assert_array_equal(run.Z[0], 0.0)
    for t in range(12):
        B = -h * (run.w[t] - y[t])                     # B_t = −H (w_t − y_t)
        np.testing.assert_allclose(run.w[t + 1], run.w[t] + run.lr[t] * B, rtol=1e-14)
        np.testing.assert_allclose(run.Z[t + 1], B, rtol=1e-14)      # μ = 0: Z_(t+1) = B_t
        assert math.isclose(run.delta[t], float((run.w[t] - w_star) @ (h * run.Z[t])),
                            rel_tol=1e-12, abs_tol=1e-15)
    assert (run.mu == 0.0).all()
    hist = hg.run_online(hg.Marthe(dyn, lr=0.5, beta=0.05, mu=0.0), nq.params0, nq.batches,
                         nq.objective)[1]
    np.testing.assert_array_equal(run.lr, hist.lr)
    np.testing.assert_array_equal(run.delta, hist.hypergradient)


def test_tangent_run_seeds_the_initial_tangent_and_stops_early():
    nq = small()
    tuner = hg.Marthe(hg.sgd(nq.loss), lr=0.0, beta=0.0, mu=1.0)   # η = 0: w_t = w_0
    run = quadratic.tangent_run(tuner, nq, z0=[2.0, -3.0], steps=5)
    assert run.Z.shape == (6, 2)
    B = -nq.h.numpy() * (nq.w0.numpy() - nq.targets.numpy()[:5])
    np.testing.assert_allclose(run.Z[1:], np.array([2.0, -3.0]) + B.cumsum(0), rtol=1e-14)
    np.testing.assert_array_equal(run.w, np.tile(nq.w0.numpy(), (6, 1)))


# --------------------------------------------------------------------------- growth rate
@pytest.mark.parametrize("r", [1.5, -0.75, 1.0, 0.3])
def test_growth_rate_of_a_geometric_sequence(r):
    x = 2.0 * r ** np.arange(20)
    assert math.isclose(quadratic.growth_rate(x), abs(r), rel_tol=1e-12)


def test_growth_rate_is_the_geometric_mean_and_refuses_zeros():
    assert math.isclose(quadratic.growth_rate([1.0, 4.0, 4.0]), 2.0, rel_tol=1e-12)
    for bad in ([1.0], [1.0, 0.0, 2.0], [[1.0, 2.0]]):
        with pytest.raises(ValueError):
            quadratic.growth_rate(bad)


# --------------------------------------------------------------------------- the figure
def test_plot_measured_vs_predicted_draws_markers_lines_and_labels():
    fig, (ax1, ax2) = plt.subplots(1, 2)
    t = np.arange(6)
    quadratic.plot_measured_vs_predicted(
        ax1, {"a": (-(0.5 ** t), 0.5 ** t), "b": (2.0 ** t, 2.0 ** t)}, logy=True,
        ylabel="y", title="T")
    assert ax1.get_yscale() == "log" and len(ax1.lines) == 4
    marker_lines = [ln for ln in ax1.lines if ln.get_marker() == "o"]
    assert len(marker_lines) == 2
    assert (marker_lines[0].get_ydata() > 0).all()          # absolute values on a log scale
    assert [text.get_text() for text in ax1.get_legend().get_texts()] == ["a", "b"]
    assert ax1.lines[0].get_color() == ax1.lines[1].get_color() == "C0"
    assert ax1.yaxis.label.get_fontsize() >= 10 and ax1.title.get_fontsize() >= 10
    assert all(x.get_fontsize() >= 10 for x in ax1.get_legend().get_texts())
    assert all(lab.get_fontsize() >= 10 for lab in ax1.get_xticklabels())

    quadratic.plot_measured_vs_predicted(ax2, {"c": ([1.0, -2.0, 3.0], [0, 0, 0])}, t0=1,
                                         colors=["C2"])
    assert ax2.get_yscale() == "linear"
    np.testing.assert_array_equal(ax2.lines[1].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(ax2.lines[1].get_ydata(), [1.0, -2.0, 3.0])
    assert ax2.lines[1].get_color() == "C2"
    with pytest.raises(ValueError, match="colours"):
        quadratic.plot_measured_vs_predicted(ax2, {"a": ([1], [1]), "b": ([1], [1])},
                                             colors=["C0"])
