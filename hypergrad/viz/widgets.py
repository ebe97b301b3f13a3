"""Interactive explorers of the book's chapters (ipywidgets).

Each explorer is two pieces: a plain plotting function that takes ordinary arguments, runs
the computation and returns a :class:`matplotlib.figure.Figure` (tested like any function),
and a thin wrapper: controls above an :class:`ipywidgets.Output` whose outputs are set to the
figure as a PNG (:func:`figure_output`) on creation and after every change of a control, so
the picture is part of the widget state saved in the built page. ``ipywidgets`` is imported
inside the wrappers only, so this module imports without it.

* :func:`fig1_figure` / :func:`explore_fig1`: Figure 1 of the paper for one function, one
  online method and one ``β`` — the trajectory on the loss surface and the schedule ``η_t``.
* :func:`marthe_figure` / :func:`explore_marthe`: MARTHE with a fixed or adaptive discount
  ``μ``, a hyper-learning rate ``β`` and an optional ``κ`` — trajectory, ``η_t`` and ``μ_t``.
"""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure

from hypergrad.experiments.figure1 import run_fig1
from hypergrad.problems import problem
from hypergrad.viz import style
from hypergrad.viz.plots import plot_curves, plot_schedule, plot_surface_trajectories, sci

__all__ = ["fig1_figure", "marthe_figure", "figure_output", "explore_fig1", "explore_marthe"]



def _status(run) -> str:
    if run.diverged:
        return f"diverged at step {run.diverged_at}"
    return f"best f = {run.best:.3g}"


def fig1_figure(function: str = "beale", method: str = "rtho", beta: float = 1e-7,
                steps: int = 500) -> Figure:
    """One run of Figure 1's experiment: the trajectory on the surface (left) and ``η_t`` (right).

    ``function``: ``"beale"`` or ``"bukin"``; ``method``: ``"hd"``, ``"rtho"`` or ``"marthe"``
    (adaptive ``μ``); plain gradient descent for ``steps`` steps from ``η_0 = 0``.
    """
    prob = problem(function)
    run = run_fig1(prob.f, prob.start, method, beta, steps=steps)
    # Figure 1's "marthe" is MARTHE with the adaptive μ (β fixed)
    label = style.label({"marthe": "marthe-auto-mu"}.get(method.lower(), method.lower()))
    fig = Figure(figsize=(8.0, 3.6), layout="constrained")   # column width: 9-pt text readable
    ax_s, ax_lr = fig.subplots(1, 2)
    plot_surface_trajectories(ax_s, prob.f, {label: run.trajectory}, prob.xlim, prob.ylim,
                              start=prob.start, minimum=prob.minimum,
                              title=f"{prob.name}: {label}, β = {sci(beta)}")
    plot_schedule(ax_lr, {label: run.history}, title=_status(run))
    ax_lr.get_legend().remove()                       # one series: the title says which
    return fig


def marthe_figure(function: str = "bukin", mu: float | str = "auto", beta: float = 1e-7,
                  kappa: float | None = None, steps: int = 500) -> Figure:
    """MARTHE on a Figure 1 problem: trajectory, learning rate ``η_t`` and discount ``μ_t``.

    ``mu``: a number in ``[0, 1]`` (``0`` is HD, ``1`` is RTHO) or ``"auto"`` (Appendix A);
    ``kappa``: ``None`` keeps ``β`` fixed, a number adapts it.
    """
    prob = problem(function)
    run = run_fig1(prob.f, prob.start, "marthe", beta, steps=steps, mu=mu, kappa=kappa)
    mu_txt = "auto" if mu == "auto" else f"{float(mu):.2f}"
    k_txt = "" if kappa is None else f", κ = {sci(kappa)}"
    # column width: the surface on the left, η_t and μ_t stacked on its right
    fig = Figure(figsize=(8.0, 5.6), layout="constrained")
    panels = fig.subplot_mosaic([["s", "lr"], ["s", "mu"]])
    ax_s, ax_lr, ax_mu = panels["s"], panels["lr"], panels["mu"]
    plot_surface_trajectories(ax_s, prob.f, {"MARTHE": run.trajectory}, prob.xlim, prob.ylim,
                              start=prob.start, minimum=prob.minimum,
                              title=f"μ = {mu_txt}, β₀ = {sci(beta)}{k_txt}")
    plot_schedule(ax_lr, {"MARTHE": run.history}, title=_status(run))
    plot_curves(ax_mu, {"MARTHE": run.history}, field="mu", ylabel=r"discount $\mu_t$",
                title="0: the history is forgotten")
    for ax in (ax_lr, ax_mu):
        ax.get_legend().remove()                      # one series: MARTHE
    ax_mu.set_ylim(-0.05, 1.05)
    return fig


def figure_output(fig: Figure, dpi: int = 150) -> dict:
    """A Jupyter ``display_data`` output holding ``fig`` as a PNG (and a text fallback).

    The explorers put this into their :class:`ipywidgets.Output` directly, so that the image
    is part of the widget's state: it shows in a live kernel, in the static page (the state
    saved when the book was built) and in a plain Python session alike, whatever the
    matplotlib backend.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "text/plain": f"<Figure of {len(fig.axes)} axes>"}
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _explorer(draw, controls: dict, columns: int = 3):
    """Controls above an Output that holds the figure ``draw(**values)`` returns.

    The returned :class:`ipywidgets.VBox` has three extra attributes: ``controls`` (name →
    widget), ``output`` (the :class:`ipywidgets.Output`) and ``redraw()``. The figure is
    drawn once on creation and again whenever a control's value changes.
    """
    import ipywidgets as W

    output = W.Output(layout=W.Layout(min_height="320px"))
    names = list(controls)
    # a row wraps onto further lines where the page is narrower than its controls (a phone)
    rows = [W.HBox([controls[n] for n in names[i:i + columns]],
                   layout=W.Layout(flex_flow="row wrap"))
            for i in range(0, len(names), columns)]
    box = W.VBox([*rows, output])

    def redraw(change=None):
        fig = draw(**{n: w.value for n, w in controls.items()})
        output.outputs = (figure_output(fig),)

    for widget in controls.values():
        widget.observe(redraw, names="value")
    box.controls, box.output, box.redraw = controls, output, redraw
    redraw()
    return box


def explore_fig1(steps: int = 500):
    """Controls for :func:`fig1_figure` (function, method, ``log10 β``) above its figure."""
    import ipywidgets as W

    def draw(function, method, log10_beta):
        return fig1_figure(function, method, 10.0 ** log10_beta, steps)

    return _explorer(draw, dict(
        function=W.Dropdown(options=[("Beale", "beale"), ("Bukin (smoothed)", "bukin")],
                            value="beale", description="function"),
        method=W.Dropdown(options=[("HD", "hd"), ("RTHO", "rtho"), ("MARTHE", "marthe")],
                          value="rtho", description="method"),
        log10_beta=W.FloatSlider(value=-7.0, min=-10.0, max=-4.0, step=0.25,
                                 description="log10 β", continuous_update=False),
    ))


def explore_marthe(steps: int = 500):
    """Controls for :func:`marthe_figure` (function, ``μ`` or adaptive ``μ``, ``log10 β``,
    adaptive ``β`` and ``log10 κ``) above its figure."""
    import ipywidgets as W

    def draw(function, adaptive_mu, mu, log10_beta, adapt_beta, log10_kappa):
        return marthe_figure(function, "auto" if adaptive_mu else mu, 10.0 ** log10_beta,
                             10.0 ** log10_kappa if adapt_beta else None, steps)

    return _explorer(draw, dict(
        function=W.Dropdown(options=[("Beale", "beale"), ("Bukin (smoothed)", "bukin")],
                            value="bukin", description="function"),
        adaptive_mu=W.Checkbox(value=True, description="adaptive μ"),
        mu=W.FloatSlider(value=0.9, min=0.0, max=1.0, step=0.05, description="μ (fixed)",
                         continuous_update=False),
        log10_beta=W.FloatSlider(value=-7.0, min=-10.0, max=-4.0, step=0.25,
                                 description="log10 β₀", continuous_update=False),
        adapt_beta=W.Checkbox(value=False, description="adaptive β"),
        log10_kappa=W.FloatSlider(value=-16.0, min=-20.0, max=-8.0, step=0.5,
                                  description="log10 κ", continuous_update=False),
    ))
