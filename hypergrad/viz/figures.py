"""Figures of Part II (chapters 5–7), drawn from the plain results of
``hypergrad.experiments``.

Every function takes the JSON-like dicts that the runners return (or that
``results/<experiment>/<scale>/results.json`` holds) and returns a matplotlib ``Figure``;
nothing is shown or saved here. The figures are plain :class:`matplotlib.figure.Figure`
objects, never registered with pyplot: a notebook shows each one once, where it is glued or
displayed, and calling a function here leaves ``plt.get_fignums()`` empty. They are sized for
the book's column (at most 8 inches wide, :data:`DPI` dots per inch) with one legend per figure.
Matplotlib is imported inside this module only, so ``import hypergrad`` never imports it.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from hypergrad.experiments.analysis import centred_mean, sci
from hypergrad.viz.style import color, label

__all__ = ["DPI", "new_figure", "lrs_opt_figure", "schedules_figure", "accuracy_vs_beta_figure",
           "quality_figure", "real_world_figure", "sensitivity_figure", "placeholder_figure",
           "protocol_figure"]


#: Resolution of every Part II figure (the inline backend and the glued images use it).
DPI = 150
#: The widest figure, in inches: the book's text column.
WIDTH = 8.0


def new_figure(width: float = WIDTH, height: float = 3.4) -> Figure:
    """A figure outside pyplot (so nothing else shows it), at :data:`DPI`, laid out tightly."""
    return Figure(figsize=(min(width, WIDTH), height), dpi=DPI, layout="constrained")


def placeholder_figure(message: str, height: float = 1.6) -> Figure:
    """A figure that only says, in words, why there is nothing to draw yet (e.g. a long run
    whose results are not committed), so that a labelled figure of the book always exists."""
    fig = new_figure(height=height)
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=10,
            color="0.3", transform=ax.transAxes)
    return fig


def _cmap(name: str):
    return matplotlib.colormaps[name]


def _legend_below(fig: Figure, ax, ncol: int = 3, **kw) -> None:
    """One legend for the whole figure, below the axes (never on the data)."""
    handles, labels = [], []
    for a in (ax if isinstance(ax, list | tuple) else [ax]):
        for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=9,
                   frameon=False, **kw)




def _arr(values) -> np.ndarray:
    """A float array with ``None`` as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _running_mean(x: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, len(x)))
    c = np.cumsum(np.insert(x, 0, 0.0))
    out = (c[k:] - c[:-k]) / k
    return np.concatenate([np.full(k - 1, np.nan), out])


def _centred_mean(x, k: int) -> np.ndarray:
    """:func:`~hypergrad.experiments.analysis.centred_mean` of ``x`` as an array."""
    return centred_mean(_arr(x), k).numpy()


def _plot_schedule(ax, lrs, smooth: int, **kw) -> None:
    """``lrs`` as a line; with ``smooth`` > 1 the raw schedule thin and faint under its
    centred mean over ``smooth`` steps (a noise-dominated schedule's shape)."""
    if smooth > 1:
        ax.plot(lrs, color=kw["color"], lw=0.5, alpha=0.35, zorder=kw.get("zorder", 2) - 1)
        ax.plot(_centred_mean(lrs, smooth), **kw)
    else:
        ax.plot(lrs, **kw)


# ---------------------------------------------------------------------------- chapter 5
def lrs_opt_figure(result: dict, smooth: int = 0) -> Figure:
    """Left: the LRS-OPT schedule of each seed (dashed: the constant it started from; with
    ``smooth`` > 1, each schedule faint under its centred mean over ``smooth`` steps).
    Right: ``f_T`` at each hyper-iteration (thin) and its running mean (thick)."""
    fig = new_figure(height=3.4)
    ax1, ax2 = fig.subplots(1, 2)
    s = result["settings"]
    cmap = _cmap("viridis")
    seeds = list(result["lrs_opt"])
    for i, seed in enumerate(seeds):
        r = result["lrs_opt"][seed]
        c = cmap(i / max(1, len(seeds) - 1) * 0.85)
        _plot_schedule(ax1, r["lrs"], smooth, color=c, lw=1.4, label=f"seed {seed}")
        h = _arr(r["history"])
        ax2.plot(np.arange(1, len(h) + 1), h, color=c, lw=0.6, alpha=0.45)
        ax2.plot(np.arange(1, len(h) + 1), _running_mean(h, max(1, len(h) // 10)), color=c,
                 lw=2)
    ax1.axhline(s["fixed_lr"], color="0.5", ls="--", lw=1, label="initial schedule")
    ax1.set(xlabel="step $t$", ylabel=r"learning rate $\eta_t$",
            title=f"Schedules after {s['lrs_opt']['iterations']} iterations"
            + (f" ({smooth}-step mean)" if smooth > 1 else ""))
    ax2.set(xlabel="hyper-iteration", ylabel=r"$f_T(\eta)$ (validation loss)",
            title="Objective (fresh minibatches)")
    _legend_below(fig, ax1, ncol=len(seeds) + 1)
    return fig


def schedules_figure(result: dict, seed: str | int, betas: dict[str, float],
                     smooth: int = 0) -> Figure:
    """The online schedules of one seed (each method at the ``β`` in ``betas``) against the
    LRS-OPT schedule of the same seed (Figure 2, centre); with ``smooth`` > 1 the LRS-OPT
    schedule is drawn faint under its centred mean over ``smooth`` steps."""
    seed = str(seed)
    fig = new_figure(height=4.2)
    ax = fig.subplots()
    lo = result["lrs_opt"].get(seed)
    if lo is not None:
        _plot_schedule(ax, lo["lrs"], smooth, color=color("lrs-opt"), lw=2.4, zorder=5,
                       label="LRS-OPT" + (f" ({smooth}-step mean)" if smooth > 1 else ""))
    runs = {m: result["online"][m][f"{b:g}"][seed] for m, b in betas.items() if b is not None}
    # the scale is set by the schedules that trained: a diverged run's last steps leave it
    kept = [r["lr"] for r in runs.values() if not r["diverged"]]
    kept += [lo["lrs"]] if lo is not None else []
    top = 1.1 * max((max(x, default=0.0) for x in kept), default=0.0)
    clipped = False
    for method, run in runs.items():
        off = run["diverged"] and top > 0 and max(run["lr"], default=0.0) > top
        clipped |= off
        ax.plot(run["lr"], color=color(method), lw=1.5, ls=":" if run["diverged"] else "-",
                label=f"{label(method)}, β = {sci(betas[method])}"
                + (" (diverged, leaves the plot)" if off else
                   " (diverged)" if run["diverged"] else ""))
    if clipped:
        ax.set_ylim(-0.03 * top, top)
    ax.set(xlabel="step $t$", ylabel=r"learning rate $\eta_t$",
           title=f"Online schedules against LRS-OPT (seed {seed})")
    _legend_below(fig, ax, ncol=2)
    return fig


def accuracy_vs_beta_figure(summary: dict, fixed_acc: float | None = None,
                            lrs_opt_acc: float | None = None) -> Figure:
    """Mean final validation accuracy (± one std over the kept seeds) against ``β``, runs
    below the threshold discarded (Figure 2, right); reference lines for fixed η and LRS-OPT."""
    fig = new_figure(height=4.4)
    ax = fig.subplots()
    for method, rows in summary["methods"].items():
        b, m, sd = np.array(rows["betas"]), _arr(rows["mean"]), _arr(rows["std"])
        ax.plot(b, m, "o-", color=color(method), lw=1.6, label=label(method))
        ax.fill_between(b, m - sd, m + sd, color=color(method), alpha=0.15, lw=0)
    if fixed_acc is not None:
        ax.axhline(fixed_acc, color=color("fixed"), ls="--", lw=1.2, label="fixed η (reference)")
    if lrs_opt_acc is not None:
        ax.axhline(lrs_opt_acc, color=color("lrs-opt"), ls="-.", lw=1.2,
                   label="LRS-OPT (reference)")
    ax.set_xscale("log")
    ax.set(xlabel=r"hyper-learning rate $\beta$ ($\beta_0$ when $\beta$ is adapted)",
           ylabel="final validation accuracy",
           title=f"Accuracy against β (runs below {summary['threshold']:.0%} discarded)")
    _legend_below(fig, ax, ncol=2)
    return fig


def quality_figure(quality: dict) -> Figure:
    """Online estimates ``Δ_t`` against the exact ``∂f_T/∂η_t`` along the same trajectory.

    Top: along the fixed-η trajectory, the exact hypergradient and ``Δ_t`` for each ``μ``,
    each divided by its 90th percentile of magnitudes (values beyond ±3 are off the scale).
    Bottom: sign agreement and cosine similarity (without the last tenth of the steps) of every
    estimator, along that common trajectory (``μ = …``) and along each method's own run."""
    fig = new_figure(height=8.0)
    ax1, ax2 = fig.subplots(2, 1, height_ratios=[1, 1.15])
    rep = quality["replay"]

    def scaled(x):
        x = _arr(x)
        q = np.nanquantile(np.abs(x[1:]), 0.9) if len(x) > 1 else 0.0
        return x / (q if q > 0 else 1.0)

    cmap = _cmap("plasma")
    keys = list(rep["estimates"])
    for i, key in enumerate(keys):
        ax1.plot(scaled(rep["estimates"][key]["estimate"]),
                 color=cmap(i / max(1, len(keys) - 1) * 0.9), lw=1.1,
                 label=r"$\Delta_t$, " + (r"adaptive $\mu$" if key == "auto" else f"μ = {key}"))
    ax1.plot(scaled(rep["exact"]), color="black", lw=2.2,
             label=r"exact $\partial f_T/\partial\eta_t$")
    ax1.axhline(0, color="0.6", lw=0.8)
    ax1.set_ylim(-3, 3)
    ax1.set(xlabel="step $t$", ylabel="value / 90th pct. of |value|",
            title=f"Along the fixed-η trajectory (η = {rep['lr']:g})")
    ax1.legend(fontsize=9, ncol=3, loc="upper left", bbox_to_anchor=(0, -0.22), frameon=False)

    names, sign, cos = [], [], []
    for key in keys:
        e = rep["estimates"][key]
        names.append("fixed η: " + ("adaptive μ" if key == "auto" else f"μ = {key}"))
        sign.append(e["sign"])
        cos.append(e["cosine_trim"])
    for method, e in quality["own"].items():
        if e.get("diverged"):
            continue
        names.append("own run: " + label(method))
        sign.append(e["sign"])
        cos.append(e["cosine_trim"])
    y = np.arange(len(names))
    ax2.barh(y - 0.2, _arr(sign), height=0.4, color="tab:blue", label="sign agreement")
    ax2.barh(y + 0.2, _arr(cos), height=0.4, color="tab:orange",
             label="cosine (last tenth left out)")
    ax2.axvline(0, color="0.3", lw=0.8)
    ax2.axvline(0.5, color="0.6", lw=0.8, ls=":")
    ax2.set_yticks(y, names, fontsize=9)
    ax2.invert_yaxis()
    ax2.set(xlim=(-1, 1), xlabel="agreement with the exact hypergradient",
            title=r"How well $\Delta_t$ tracks $\partial f_T/\partial\eta_t$")
    ax2.legend(fontsize=9, loc="lower left")
    return fig


# ---------------------------------------------------------------------------- chapter 6
def real_world_figure(task_result: dict, title: str = "", seed: str | int | None = None) -> Figure:
    """The layout of the paper's Figures 3–4: test accuracy and validation loss per epoch
    (mean over seeds, band = ± one std) and the schedule each method generated (one seed),
    with one legend for the three panels."""
    fig = new_figure(height=6.2)
    axd = fig.subplot_mosaic([["acc", "loss"], ["lr", "legend"]])
    ax_acc, ax_loss, ax_lr = axd["acc"], axd["loss"], axd["lr"]
    for method, runs in task_result.items():
        ok = [r for r in runs.values() if not r["diverged"]]
        c = color(method)
        if ok:
            n = min(len(r["epoch"]) for r in ok)
            ep = np.array(ok[0]["epoch"][:n])
            for ax, key, scale in ((ax_acc, "test_acc", 100.0), (ax_loss, "val_loss", 1.0)):
                v = np.array([_arr(r[key][:n]) for r in ok]) * scale
                m, sd = np.nanmean(v, 0), np.nanstd(v, 0)
                ax.plot(ep, m, color=c, lw=1.6, marker="o" if n <= 30 else None, ms=3,
                        label=label(method))
                ax.fill_between(ep, m - sd, m + sd, color=c, alpha=0.15, lw=0)
        pick = runs.get(str(seed)) if seed is not None else None
        pick = pick or (ok[0] if ok else next(iter(runs.values())))
        spe = pick.get("steps_per_epoch") or 1
        lr = _arr(pick["lr"])
        ax_lr.plot(np.arange(len(lr)) * pick.get("lr_stride", 1) / spe, lr, color=c, lw=1.3,
                   ls=":" if pick["diverged"] else "-", label=label(method))
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="Accuracy")
    ax_loss.set(xlabel="epoch", ylabel="validation loss", title="Validation loss (E)")
    ax_lr.set(xlabel="epoch", ylabel=r"learning rate $\eta_t$", title="Generated schedules")
    lows = [v for line in ax_lr.get_lines() for v in line.get_ydata() if np.isfinite(v) and v > 0]
    if lows and max(lows) / min(lows) > 100:
        ax_lr.set_yscale("log")
    leg = axd["legend"]
    leg.axis("off")
    handles, labels = ax_lr.get_legend_handles_labels()
    leg.legend(handles, labels, loc="center", fontsize=9, frameon=False,
               title="method (dotted: diverged)")
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------- chapter 7
def sensitivity_figure(result: dict, panels: tuple[str, ...] | None = None) -> Figure:
    """Heat maps of the final validation error over ``β`` (columns) × ``μ`` (rows), one per
    panel of :func:`hypergrad.experiments.sensitivity.run_sensitivity` (``panels``: which ones, default
    all); grey = every run diverged. The colour scale is shared by all panels of ``result``,
    so two figures of the same result can be compared cell by cell."""
    every = result["panels"]
    names = list(every) if panels is None else list(panels)
    # one panel per row, so that every cell's number is set at 9 pt at column width
    fig = new_figure(height=3.6 * len(names) + 0.4)
    axes = np.atleast_1d(fig.subplots(len(names), 1))
    errs = [v for p in every.values() for row in p["val_error"] for v in row if v is not None]
    vmin, vmax = (min(errs), max(errs)) if errs else (0.0, 1.0)
    titles = {"fixed": r"fixed $\mu$, fixed $\beta$",
              "adaptive-beta": r"fixed $\mu$, adaptive $\beta$ ($\kappa$ = KAPPA)"}
    im = None
    for ax, name in zip(axes, names, strict=True):
        p = every[name]
        E = _arr([v for row in p["val_error"] for v in row]).reshape(len(p["mus"]), len(p["betas"]))
        masked = np.ma.masked_invalid(E)
        ax.set_facecolor("0.85")
        im = ax.imshow(masked, cmap="magma_r", vmin=vmin, vmax=vmax, aspect="auto")
        for i in range(E.shape[0]):
            for j in range(E.shape[1]):
                if math.isnan(E[i, j]):
                    ax.text(j, i, "div.", ha="center", va="center", fontsize=9, color="0.3")
                else:
                    bright = (E[i, j] - vmin) / max(vmax - vmin, 1e-12) > 0.6
                    ax.text(j, i, f"{100 * E[i, j]:.1f}", ha="center", va="center",
                            fontsize=9, color="white" if bright else "black")
        ax.set_xticks(range(len(p["betas"])), [sci(b) for b in p["betas"]], fontsize=9)
        ax.set_yticks(range(len(p["mus"])),
                      ["adaptive" if m == "auto" else f"{m:g}" for m in p["mus"]])
        ax.set(xlabel=r"$\beta$ ($\beta_0$ when adapted)", ylabel=r"$\mu$",
               title=titles.get(name, name).replace("KAPPA", sci(p.get("kappa") or 0)))
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="final validation error (%)",
                     format=FuncFormatter(lambda v, _: f"{100 * v:.0f}"))
    return fig


def protocol_figure(rec: dict) -> Figure:
    """Mean final validation accuracy over the seeds of ``rec`` (a diverged run counting 0,
    bars: one standard error): (a) MARTHE with both adaptive rules under the authors'
    protocol against κ, Δ clipped at ±100 and not; (b) the other online methods against β
    (the book's reading of adaptive β against β_0). Dashed: the constant η."""
    seeds, table = rec["seeds"], rec["table"]
    fig = new_figure(height=8.4)
    top, bottom = fig.subplots(2, 1)

    def curve(ax, method, **kw):
        by_h = table.get(method, {})
        hs = sorted(h for h in by_h if all(k in by_h[h] for k in seeds))
        if not hs:
            return
        acc = np.array([[by_h[h][k] for k in seeds] for h in hs])
        m, se = acc.mean(1), acc.std(1, ddof=1) / math.sqrt(len(seeds))
        ax.errorbar(hs, m, yerr=se, marker="o", ms=3.5, lw=1.5, capsize=2, **kw)

    curve(top, "marthe-authors", color=color("marthe"), label="Δ clipped at ±100")
    curve(top, "marthe-authors-noclip", color="0.45", ls=":", label="Δ not clipped")
    for method in ("hd", "rtho", "marthe-mu0.9", "marthe-mu0.99", "marthe-mu0.999",
                   "marthe-auto-mu", "marthe"):
        curve(bottom, method, color=color(method), label=label(method))
    fixed = table["fixed"][None]
    for ax in (top, bottom):
        ax.axhline(np.mean([fixed[k] for k in seeds]), color=color("fixed"), ls="--", lw=1.2,
                   label="constant η")
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_ylabel("validation accuracy", fontsize=10)
        ax.tick_params(labelsize=10)
    top.set_xlabel("κ, the step size of β's update (β_0 = 10⁻⁸)", fontsize=10)
    top.set_title("(a) MARTHE, the authors' protocol", fontsize=11)
    bottom.set_xlabel("β (β_0 for MARTHE with adaptive β)", fontsize=10)
    bottom.set_title("(b) the other online methods", fontsize=11)
    for ax in (top, bottom):          # below each panel, never on the data
        ax.legend(fontsize=10, loc="upper center", bbox_to_anchor=(0.5, -0.28),
                  frameon=False, ncol=3)
    return fig
