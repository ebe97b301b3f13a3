"""Part I plotting functions (hypergrad.viz.plots) and the widgets' figure functions
(hypergrad.viz.widgets).

Each test checks what was drawn (lines per series, labels, axes), not only that nothing raised.
"""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import hypergrad as hg  # noqa: E402
from hypergrad.experiments.figure1 import run_fig1  # noqa: E402
from hypergrad.problems import beale, problem  # noqa: E402
from hypergrad.viz import plots, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_import_hypergrad_does_not_import_matplotlib():
    code = "import sys, hypergrad; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_plot_schedule_and_curves():
    hist = hg.History([0.0, 0.1, 0.2], [0, 1, 1], [1, 1, 1], [0, 0, 0], [3, 2, 1], [3, 2, 1])
    ax = plots.plot_schedule(None, {"HD": hist, "list": [0.1, 0.1, 0.05],
                                    "tensor": torch.tensor([0.3, 0.2, 0.1])}, logy=True)
    assert len(ax.lines) == 3
    assert np.allclose(ax.lines[0].get_ydata(), [0.0, 0.1, 0.2])
    assert ax.get_ylabel() and ax.get_xlabel() and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["HD", "list", "tensor"]
    ax_sym = plots.plot_schedule(None, {"HD": hist}, symlog=1e-3)
    assert ax_sym.get_yscale() == "symlog" and len(ax_sym.lines) == 1
    ax2 = plots.plot_curves(None, {"mu": hist}, field="mu", ylabel="mu")
    assert np.allclose(ax2.lines[0].get_ydata(), [0, 1, 1]) and ax2.get_ylabel() == "mu"


def test_plot_surface_trajectories():
    prob = problem("beale")
    trajs = {"HD": torch.tensor([[1.0, 1.5], [2.0, 0.5]], dtype=torch.float64),
             "RTHO": np.array([[1.0, 1.5], [3.0, 0.5], [3.1, 0.6]])}
    ax = plots.plot_surface_trajectories(None, beale, trajs, prob.xlim, prob.ylim, n=30,
                                         start=prob.start, minimum=prob.minimum, title="t")
    assert len(ax.lines) == 2                        # one line per trajectory
    assert len(ax.lines[1].get_xdata()) == 3
    assert len(ax.collections) >= 2 + 2              # end squares, start, minimum (+ contours)
    assert ax.get_xlabel() == "$x_1$" and ax.get_ylabel() == "$x_2$" and ax.get_title() == "t"
    assert ax.get_xlim() == prob.xlim and ax.get_ylim() == prob.ylim
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["HD", "RTHO", "start", "minimum"]
    with pytest.raises(ValueError):
        plots.plot_surface_trajectories(None, beale, {"bad": np.zeros((3, 3))}, (0, 1), (0, 1), n=5)


def test_plot_best_vs_beta_leaves_out_diverged_runs():
    betas = [1e-9, 1e-8, 1e-7]
    ok = run_fig1(beale, (1.0, 1.5), "hd", 1e-9, steps=5)
    bad = run_fig1(beale, (1.0, 1.5), "rtho", 1e-2, steps=50)
    assert bad.diverged
    ax = plots.plot_best_vs_beta(None, betas, {"HD": [ok, 0.5, 0.1], "RTHO": [0.3, None, bad]})
    assert len(ax.lines) == 2                        # one line per method
    assert len(ax.lines[0].get_xdata()) == 3 and len(ax.lines[1].get_xdata()) == 1
    assert len(ax.collections) == 1                  # the × marks of the diverged runs
    assert len(ax.collections[0].get_offsets()) == 2
    lo, hi = ax.get_xlim()
    assert lo < 1e-9 and hi > 1e-7                   # every β is inside the axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "beta" in ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(ValueError):
        plots.plot_best_vs_beta(None, betas, {"HD": [1.0]})


def test_plot_hypergradient_over_t():
    ax = plots.plot_hypergradient_over_t(None, torch.linspace(-1, 1, 10))
    assert len(ax.lines) == 1 and ax.get_legend() is None and ax.get_ylabel()
    ax = plots.plot_hypergradient_over_t(None, {"T=10": torch.ones(10), "T=20": np.ones(20)},
                                         symlog=True)
    assert len(ax.lines) == 2 and len(ax.lines[1].get_xdata()) == 20
    assert ax.get_yscale() == "symlog" and ax.get_xlabel()
    ax = plots.plot_hypergradient_over_t(None, {"full": torch.ones(10), "tail": torch.ones(4)},
                                         starts={"tail": 6})
    assert list(ax.lines[1].get_xdata()) == [6, 7, 8, 9]


def test_plot_tangent_sparsity():
    norms = torch.tril(torch.rand(6, 5) + 0.1, diagonal=-1)
    ax = plots.plot_tangent_sparsity(None, norms)
    assert len(ax.images) == 1 and len(ax.figure.axes) == 2      # the image and its colorbar
    data = ax.images[0].get_array()
    assert np.isnan(np.asarray(data.filled(np.nan))[0]).all()    # zeros are blank
    assert ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(ValueError):
        plots.plot_tangent_sparsity(None, torch.ones(3))


def test_plot_cost():
    T = {"forward": [4, 8, 16], "reverse": [4, 8, 16, 32]}
    ax_t, ax_m = plots.plot_cost(None, T, {"forward": [1, 2, 4], "reverse": [1, 1, 2, 3]},
                                 {"forward": [1, 2, 4], "reverse": [1, 1, 1, 1]}, title="c")
    assert len(ax_t.lines) == 2 and len(ax_m.lines) == 2
    assert len(ax_t.lines[1].get_xdata()) == 4
    assert ax_t.get_ylabel() == "time (s)" and "memory" in ax_m.get_ylabel()
    assert ax_t.get_xlabel() == ax_m.get_xlabel() == "horizon $T$"
    fig, axes = plt.subplots(1, 2)
    out = plots.plot_cost(axes, [1, 2], {"a": [1, 2]}, {"a": [3, 4]})
    assert out[0] is axes[0] and len(axes[1].lines) == 1
    with pytest.raises(ValueError):
        plots.plot_cost(None, [1, 2, 3], {"a": [1, 2]}, {"a": [1, 2]})


def test_fig1_figure():
    fig = widgets.fig1_figure("bukin", "hd", 1e-7, steps=20)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax_s, ax_lr = fig.axes
    assert len(ax_s.lines) == 1 and len(ax_s.lines[0].get_xdata()) == 21
    assert len(ax_lr.lines) == 1 and len(ax_lr.lines[0].get_ydata()) == 20
    assert "HD" in ax_s.get_title() and ax_lr.get_ylabel()
    fig = widgets.fig1_figure("beale", "rtho", 1e-2, steps=50)   # a diverging run still draws
    assert "diverged" in fig.axes[1].get_title()


def test_marthe_figure():
    fig = widgets.marthe_figure("beale", "auto", 1e-7, kappa=1e-16, steps=20)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    ax_s, ax_lr, ax_mu = fig.axes
    assert len(ax_s.lines) == len(ax_lr.lines) == len(ax_mu.lines) == 1
    mu = ax_mu.lines[0].get_ydata()
    assert len(mu) == 20 and mu[0] == 0.0 and ((0 <= mu) & (mu <= 1)).all()
    assert "κ" in ax_s.get_title() and "auto" in ax_s.get_title()
    fig = widgets.marthe_figure("bukin", 0.5, 1e-7, steps=10)
    assert np.allclose(fig.axes[2].lines[0].get_ydata(), 0.5)


def _png_outputs(outputs) -> list[bytes]:
    import base64

    return [base64.b64decode(o["data"]["image/png"]) for o in outputs
            if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]


def test_figure_output_is_a_png():
    out = widgets.figure_output(widgets.fig1_figure("bukin", "hd", 1e-7, steps=5))
    (png,) = _png_outputs([out])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_explorers_hold_a_picture_after_creation_and_after_a_change():
    pytest.importorskip("ipywidgets")
    for make, n_controls, control, value in (
            (widgets.explore_fig1, 3, "log10_beta", -6.0),
            (widgets.explore_marthe, 6, "adaptive_mu", False)):
        w = make(steps=5)
        assert len(w.controls) == n_controls and w.output in w.children
        (first,) = _png_outputs(w.output.outputs)           # one picture, drawn on creation
        w.controls[control].value = value
        (second,) = _png_outputs(w.output.outputs)          # redrawn, still one picture
        assert second.startswith(b"\x89PNG") and second != first
        rows = [c for c in w.children if c is not w.output]  # controls wrap on a phone
        assert rows and all(r.layout.flex_flow == "row wrap" for r in rows)


def test_sci_writes_numbers_as_prose():
    assert plots.sci(3e-7) == "3×10⁻⁷"
    assert plots.sci(1.0000000000000002e-08) == "10⁻⁸"
    assert plots.sci(1.5e-6) == "1.5×10⁻⁶"
    assert plots.sci(-2e-5) == "−2×10⁻⁵"
    assert plots.sci(0.25) == "0.25" and plots.sci(12) == "12" and plots.sci(0) == "0"
    assert plots.sci(float("nan")) == "—" and plots.sci(None) == "—" and plots.sci(0.005) == "5×10⁻³"
    assert plots.sci(8921.0, 3) == "8920" and plots.sci(0.05123, 3) == "0.0512"
    assert plots.sci_list([1e-7, 3e-7]) == "10⁻⁷, 3×10⁻⁷" and plots.sci_list([]) == "none"


def test_html_table():
    html = plots.html_table(["β", "HD"], [[1e-7, "diverged"], [3e-7, 0.05123]], "c").data
    assert html.count("<tr>") == 3 and "<caption>c</caption>" in html
    assert "3×10⁻⁷" in html and "0.0512" in html and "diverged" in html


def test_shared_legend_lists_each_label_once():
    fig, axes = plt.subplots(1, 2, layout="constrained")
    for ax in axes:
        plots.plot_schedule(ax, {"HD": [0.1, 0.2], "RTHO": [0.1, 0.3]})
    axes[1].plot([0, 1], [0, 1], label="extra")
    leg = plots.shared_legend(fig)
    assert [t.get_text() for t in leg.get_texts()] == ["HD", "RTHO", "extra"]
    assert all(ax.get_legend() is None for ax in axes)
