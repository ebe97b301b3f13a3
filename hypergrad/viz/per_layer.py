"""One learning rate per layer, drawn and said: the schedule each layer gets, the accuracy
of each method over seeds, and the paired comparisons as a table."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from hypergrad.experiments.settings import label
from hypergrad.viz.figures import _arr, _legend_below, new_figure
from hypergrad.viz.style import color

__all__ = ["schedules_figure", "accuracy_figure", "comparison_markdown", "chosen_text", "WORDS",
           "diverged_text"]

_LAYER_COLOURS = ("#1f5fa8", "#b22222", "#6a3d9a", "#8b6914", "#008080")  # none is a method's


def _layer_means(runs: list[dict]) -> list[np.ndarray]:
    """The mean over runs of each group's η_t (runs that diverged are left out)."""
    ok = [r for r in runs if not r["diverged"]]
    G = len(ok[0]["lr"]) if ok else 0
    return [np.nanmean(np.stack([_arr(r["lr"][g]) for r in ok]), axis=0) for g in range(G)]


def schedules_figure(res: dict) -> Figure:
    """(a) the schedule of each layer under per-layer MARTHE, (b) the one schedule of scalar
    MARTHE and the chosen fixed η: means over the reported seeds, thin lines for each seed."""
    fig = new_figure(height=3.4)
    ax_l, ax_s = fig.subplots(1, 2, sharey=True)
    per = res["report"]["marthe-per-layer"]
    for g, mean in enumerate(_layer_means(per)):
        c = _LAYER_COLOURS[g % len(_LAYER_COLOURS)]
        for r in per:
            if not r["diverged"]:
                ax_l.plot(_arr(r["lr"][g]), color=c, lw=0.5, alpha=0.35)
        ax_l.plot(mean, color=c, lw=1.8, label=f"layer {g + 1}")
    for r in res["report"]["marthe-one-eta"]:
        if not r["diverged"]:
            ax_s.plot(_arr(r["lr"][0]), color=color("marthe-one-eta"), lw=0.5, alpha=0.35)
    scalar = _layer_means(res["report"]["marthe-one-eta"])
    if scalar:
        ax_s.plot(scalar[0], color=color("marthe-one-eta"), lw=1.8, label="one η (MARTHE)")
    ax_s.axhline(res["chosen"]["fixed"], color=color("fixed"), ls="--", lw=1.4,
                 label="fixed η (chosen)")
    ax_l.set_title("(a) one η per layer", fontsize=10)
    ax_s.set_title("(b) one η for the network", fontsize=10)
    ax_l.set_ylabel(r"$\eta_t$", fontsize=10)
    for ax in (ax_l, ax_s):
        ax.set_xlabel("step $t$", fontsize=10)
        ax.tick_params(labelsize=10)
    _legend_below(fig, [ax_l, ax_s], ncol=3)
    return fig


def accuracy_figure(res: dict, key: str = "val_acc") -> Figure:
    """Each method's accuracy (``key``) on every reported seed, lines joining a seed's runs."""
    fig = new_figure(height=3.0)
    ax = fig.subplots()
    methods = list(res["report"])
    acc = np.array([[np.nan if r[key] is None else r[key] for r in res["report"][m]]
                    for m in methods])
    xs = np.arange(len(methods))
    for j in range(acc.shape[1]):
        ax.plot(xs, acc[:, j], color="0.75", lw=0.8, zorder=1)
    for i, m in enumerate(methods):
        ax.scatter(np.full(acc.shape[1], i), acc[i], color=color(m), s=22, zorder=2)
        ax.plot([i - 0.2, i + 0.2], [np.nanmean(acc[i])] * 2, color="black", lw=2)
    ax.set_xticks(xs, [label(m) for m in methods], fontsize=10)
    ax.set_ylabel("validation accuracy" if key == "val_acc" else "test accuracy",
                  fontsize=10)
    ax.tick_params(labelsize=10)
    return fig


def _pm(c: dict) -> str:
    if not math.isfinite(c["se"]):
        return f"{100 * c['mean']:+.1f}"
    return (f"{100 * c['mean']:+.1f} ± {100 * c['se']:.1f} "
            f"[{100 * c['lo']:+.1f}, {100 * c['hi']:+.1f}]")


#: the verdict codes of :func:`~hypergrad.experiments.stats.paired` in words
WORDS = {1: "holds", -1: "the reverse holds", 0: "undecided"}


def comparison_markdown(res: dict) -> str:
    """The paired comparisons as a Markdown table: mean difference in accuracy points ± its
    standard error [95 % interval], the Wilcoxon p and the verdict, validation and test."""
    rows = ["| comparison | validation accuracy | p | test accuracy | p |",
            "|---|---|---|---|---|"]
    for name, c in res["comparisons"].items():
        a, b = name.split(" - ")
        v, t = c["val_acc"], c["test_acc"]
        rows.append(f"| {label(a)} − {label(b)} | {_pm(v)}, {WORDS.get(v['verdict'], '?')} "
                    f"| {v['wilcoxon_p']:.2g} | {_pm(t)}, {WORDS.get(t['verdict'], '?')} "
                    f"| {t['wilcoxon_p']:.2g} |")
    return "\n".join(rows)


def chosen_text(res: dict) -> str:
    """Which value each method was run with, chosen on the selection seeds, and whether it
    lies at an edge of its grid (where a wider grid might choose otherwise)."""
    from hypergrad.experiments.per_layer import METHODS

    s, c = res["settings"], res["chosen"]

    def value(m):
        grid = s[METHODS[m]]
        edge = " (the edge of its grid)" if c[m] in (min(grid), max(grid)) else ""
        return f"{c[m]:g}{edge}"

    return (f"the fixed η = {value('fixed')}, β = {value('marthe-one-eta')} for MARTHE with "
            f"one η and β = {value('marthe-per-layer')} with one η per layer")


def diverged_text(res: dict) -> str:
    """On how many reported seeds each method diverged, in words."""
    n = len(res["settings"]["seeds"])
    parts = [f"{label(m)} on {len(seeds)} of {n}" for m, seeds in res["diverged"].items()]
    return "; ".join(parts)
