"""The Part II figures (hypergrad.experiment_plots) on tiny runs and hand-made results."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hypergrad import experiments as ex  # noqa: E402
from hypergrad.viz import figures as xp  # noqa: E402
from tests.helpers import HAS_MNIST, run_mnist_tiny


@pytest.fixture(scope="module")
def mnist_tiny():
    if not HAS_MNIST:
        pytest.skip("MNIST files not found in $HYPERGRAD_DATA")
    return run_mnist_tiny(**{"lrs_opt.seeds": [0, 1], "quality.replay_mus": [0.0, 1.0, "auto"]})


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _labels(fig):
    """The entries of the figure's one legend (a figure legend, or an axes' legend)."""
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend()]
    assert len(legends) == 1, f"{len(legends)} legends"
    return [t.get_text() for t in legends[0].get_texts()]


def test_importing_hypergrad_does_not_import_matplotlib():
    code = ("import sys, hypergrad, hypergrad.experiments; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lrs_opt_figure(mnist_tiny):
    fig = xp.lrs_opt_figure(mnist_tiny)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    left, right = fig.axes
    T = mnist_tiny["settings"]["T"]
    lines = left.get_lines()
    assert len(lines) == 2 + 1                                # two seeds + initial schedule
    np.testing.assert_allclose(lines[0].get_ydata(), mnist_tiny["lrs_opt"]["0"]["lrs"])
    assert len(lines[0].get_xdata()) == T
    assert _labels(fig) == ["seed 0", "seed 1", "initial schedule"]
    assert left.get_xlabel() == "step $t$" and "learning rate" in left.get_ylabel()
    assert right.get_xlabel() == "hyper-iteration"
    hist = mnist_tiny["lrs_opt"]["1"]["history"]
    np.testing.assert_allclose(right.get_lines()[2].get_ydata(), hist)


def test_centred_mean_is_centred_and_narrows_at_the_ends():
    x = np.arange(10.0)
    np.testing.assert_allclose(xp._centred_mean(x, 5), [1, 1.5, 2, 3, 4, 5, 6, 7, 7.5, 8])
    np.testing.assert_allclose(xp._centred_mean(x, 1), x)
    noisy = np.tile([0.0, 0.3], 50)                 # a schedule bouncing between its bounds
    np.testing.assert_allclose(xp._centred_mean(noisy, 25)[12:-12], 0.15, atol=0.3 / 25 + 1e-12)


def test_lrs_opt_figure_smoothed(mnist_tiny):
    """With ``smooth``: each schedule faint (its raw values), then its centred mean bold and
    labelled; the title says so."""
    fig = xp.lrs_opt_figure(mnist_tiny, smooth=4)
    left = fig.axes[0]
    lines = left.get_lines()
    assert len(lines) == 2 * 2 + 1                        # (raw, mean) per seed + initial
    lrs = mnist_tiny["lrs_opt"]["0"]["lrs"]
    np.testing.assert_allclose(lines[0].get_ydata(), lrs)
    np.testing.assert_allclose(lines[1].get_ydata(), xp._centred_mean(lrs, 4))
    assert lines[0].get_alpha() < 0.5 and lines[0].get_label().startswith("_")
    assert _labels(fig) == ["seed 0", "seed 1", "initial schedule"]
    assert "4-step mean" in left.get_title()
    fig2 = xp.schedules_figure(mnist_tiny, 0, {"hd": 1e-3}, smooth=4)
    assert _labels(fig2)[0] == "LRS-OPT (4-step mean)"
    np.testing.assert_allclose(fig2.axes[0].get_lines()[1].get_ydata(), xp._centred_mean(lrs, 4))


def test_schedules_figure(mnist_tiny):
    betas = {m: 1e-3 for m in mnist_tiny["online"]}
    fig = xp.schedules_figure(mnist_tiny, 0, betas)
    (ax,) = fig.axes
    labels = _labels(fig)
    assert labels[0] == "LRS-OPT" and len(labels) == 1 + len(betas)
    assert any(lab.startswith("HD, β = 10⁻³") for lab in labels)
    hd = mnist_tiny["online"]["hd"]["0.001"]["0"]
    hd_line = ax.get_lines()[1 + list(betas).index("hd")]
    np.testing.assert_allclose(hd_line.get_ydata(), hd["lr"])


def test_schedules_figure_keeps_the_scale_of_the_runs_that_trained():
    """A diverged run that shoots up leaves the plot instead of squashing the others."""
    T = 50

    def run(lr, diverged=False):
        return {"lr": lr, "diverged": diverged}

    res = {"lrs_opt": {"0": {"lrs": [0.2] * T}},
           "online": {"hd": {"0.01": {"0": run([0.1] * T)}},
                      "rtho": {"0.01": {"0": run([0.05 * t for t in range(T)][:30], True)}},
                      "marthe": {"0.01": {"0": run([0.21] * 10, True)}}}}
    betas = {"hd": 0.01, "rtho": 0.01, "marthe": 0.01}
    fig = xp.schedules_figure(res, 0, betas)
    (ax,) = fig.axes
    assert ax.get_ylim() == pytest.approx((-0.03 * 0.22, 0.22))   # 1.1 × the kept 0.2, 0.1
    labels = _labels(fig)
    assert labels[2].endswith("(diverged, leaves the plot)")       # reaches 1.45
    assert labels[3].endswith("(diverged)") and "leaves" not in labels[3]   # 0.21 < 0.22
    # nothing diverged: matplotlib's own scale
    fig2 = xp.schedules_figure(res, 0, {"hd": 0.01})
    assert fig2.axes[0].get_ylim()[1] < 0.22 and not any("diverged" in x for x in _labels(fig2))


def test_accuracy_vs_beta_figure(mnist_tiny):
    summary = ex.summarize_online(mnist_tiny, threshold=0.0)
    fig = xp.accuracy_vs_beta_figure(summary, fixed_acc=0.5, lrs_opt_acc=0.6)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == len(summary["methods"]) + 2
    ys = {line.get_label(): line.get_ydata() for line in lines}
    np.testing.assert_allclose(ys["RTHO"], [np.nan if m is None else m
                                            for m in summary["methods"]["rtho"]["mean"]])
    assert ys["fixed η (reference)"][0] == 0.5 and ys["LRS-OPT (reference)"][0] == 0.6
    assert "0%" in ax.get_title() and ax.get_ylabel() == "final validation accuracy"


def test_quality_figure(mnist_tiny):
    q = mnist_tiny["quality"]["0"]
    fig = xp.quality_figure(q)
    left, right = fig.axes
    n_replay = len(q["replay"]["estimates"])
    assert len(left.get_lines()) == n_replay + 1 + 1          # estimates, exact, zero line
    exact = np.array(q["replay"]["exact"])
    scale = np.quantile(np.abs(exact[1:]), 0.9)
    np.testing.assert_allclose(left.get_lines()[n_replay].get_ydata(), exact / scale)
    assert left.get_ylim() == (-3, 3)
    n_own = sum(not e.get("diverged") for e in q["own"].values())
    bars = right.patches
    assert len(bars) == 2 * (n_replay + n_own)
    first = q["replay"]["estimates"]["0"]
    assert bars[0].get_width() == pytest.approx(first["sign"])
    assert bars[n_replay + n_own].get_width() == pytest.approx(first["cosine_trim"])
    ticks = [t.get_text() for t in right.get_yticklabels()]
    assert ticks[0] == "fixed η: μ = 0" and ticks[-1].startswith("own run: ")


def _fake_run(epochs, spe, acc0, diverged=False):
    return {"diverged": diverged, "steps_per_epoch": spe, "epoch": list(range(epochs + 1)),
            "test_acc": [acc0 + 0.1 * e for e in range(epochs + 1)],
            "val_loss": [2.0 - 0.3 * e for e in range(epochs + 1)],
            "lr": [0.1 * 10 ** (-t / 3) for t in range(epochs * spe)]}


def test_real_world_figure():
    task = {m: {"0": _fake_run(3, 4, 0.1), "1": _fake_run(3, 4, 0.3)}
            for m in ("sgdr", "hd", "marthe")}
    task["rtho"] = {"0": _fake_run(3, 4, 0.1, diverged=True)}
    fig = xp.real_world_figure(task, title="task")
    acc, loss, lr, legend = fig.axes
    assert not legend.axison                                            # holds the legend only
    assert [a.get_title() for a in fig.axes[:3]] == ["Accuracy", "Validation loss (E)",
                                                     "Generated schedules"]
    assert len(acc.get_lines()) == 3 and len(lr.get_lines()) == 4      # rtho: schedule only
    np.testing.assert_allclose(acc.get_lines()[0].get_ydata(), [20, 30, 40, 50])  # mean, in %
    np.testing.assert_allclose(lr.get_lines()[0].get_xdata()[:5], [0, 0.25, 0.5, 0.75, 1.0])
    assert lr.get_lines()[3].get_linestyle() == ":"                     # diverged: dotted
    assert lr.get_yscale() == "log"                                     # spans > 2 decades
    assert _labels(fig) == ["SGDR", "HD", "MARTHE (adaptive μ and β)", "RTHO"]


def test_sensitivity_figure():
    panel = {"kappa": None, "betas": [1e-3, 1e-2], "mus": [0.0, 0.9, "auto"],
             "val_error": [[0.5, 0.2], [0.1, None], [0.12, 0.3]],
             "diverged": [[0, 0], [0, 1], [0, 0]]}
    res = {"panels": {"fixed": panel, "adaptive-beta": {**panel, "kappa": 1e-4}}}
    fig = xp.sensitivity_figure(res)
    heat = [a for a in fig.axes if a.images]
    assert len(heat) == 2 and len(fig.axes) == 3                        # + colour bar
    data = heat[0].images[0].get_array()
    assert data.shape == (3, 2) and bool(data.mask[1, 1]) and data[0, 0] == 0.5
    texts = [t.get_text() for t in heat[0].texts]
    assert "div." in texts and "10.0" in texts
    assert [t.get_text() for t in heat[0].get_yticklabels()] == ["0", "0.9", "adaptive"]
    assert "10⁻⁴" in heat[1].get_title()
    one = xp.sensitivity_figure(res, panels=("fixed",))                  # one panel, same scale
    assert len([a for a in one.axes if a.images]) == 1
    assert one.axes[0].images[0].get_clim() == heat[0].images[0].get_clim()


def test_placeholder_figure():
    fig = xp.placeholder_figure("nothing committed yet")
    (ax,) = fig.axes
    assert not ax.axison and [t.get_text() for t in ax.texts] == ["nothing committed yet"]


def _every_figure(result=None):
    """Every figure function of Part II on hand-made results (no MNIST needed)."""
    panel = {"kappa": None, "betas": [1e-3, 1e-2], "mus": [0.0, "auto"],
             "val_error": [[0.5, 0.2], [0.1, None]], "diverged": [[0, 0], [0, 1]]}
    yield xp.sensitivity_figure({"panels": {"fixed": panel}})
    yield xp.real_world_figure({"hd": {"0": _fake_run(2, 4, 0.1)}})
    summary = {"threshold": 0.5, "methods": {"hd": {"betas": [1e-3], "mean": [0.9],
                                                    "std": [0.0]}}}
    yield xp.accuracy_vs_beta_figure(summary, 0.8, 0.9)
    yield xp.placeholder_figure("nothing to draw")


def test_figures_are_not_left_open_in_pyplot():
    """A figure registered with pyplot is shown a second time by the inline backend: the
    figure functions must leave no pyplot figure behind, and draw at the book's dpi and width."""
    import matplotlib.pyplot as plt

    plt.close("all")
    for fig in _every_figure():
        assert isinstance(fig, Figure)
        assert plt.get_fignums() == []
        assert fig.dpi == xp.DPI and 150 <= xp.DPI <= 200
        assert fig.get_figwidth() <= xp.WIDTH
        fig.canvas.draw()                       # a figure outside pyplot still renders


def test_figures_from_runs_are_not_left_open_in_pyplot(mnist_tiny):
    import matplotlib.pyplot as plt

    plt.close("all")
    xp.lrs_opt_figure(mnist_tiny)
    xp.schedules_figure(mnist_tiny, 0, {m: 1e-3 for m in mnist_tiny["online"]})
    xp.quality_figure(mnist_tiny["quality"]["0"])
    assert plt.get_fignums() == []
