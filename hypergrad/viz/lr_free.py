"""Hypergradient learning rates against the learning-rate-free optimizers, drawn and said:
the effective step size of every method over training, the accuracy of each over seeds, and
the summary table (accuracy with its 95 % interval, divergences, cost of a step)."""

from __future__ import annotations

import math
from importlib import metadata

import numpy as np
from matplotlib.figure import Figure

from hypergrad.experiments.lr_free import LR_FREE, METHODS, PACKAGES, TUNED, equal_time
from hypergrad.experiments.settings import label
from hypergrad.viz.figures import _arr, _legend_below, new_figure
from hypergrad.viz.style import color

__all__ = ["WIDTH", "step_size_figure", "accuracy_figure", "summary_markdown",
           "defaults_markdown", "chosen_text", "diverged_text", "errors_text", "versions",
           "cost_markdown", "equal_time_markdown", "time_figure", "gap_text",
           "budget_figure", "explore_budget", "lrs_opt_text"]

#: the width of this chapter's figures, in inches (a text column)
WIDTH = 7.0
_FS = 10   # every text of the figures, in points (≥ 10 px at 150 dpi)

_COLOURS = {"cosine": "tab:purple", "marthe-mu0.9": "tab:green", "marthe": "tab:brown",
            "prodigy": "tab:olive",
            "sf-sgd": "tab:cyan", "sf-adamw": "teal", "dadapt-sgd": "darkgoldenrod",
            "dog": "slateblue"}


def _colour(m: str) -> str:
    return _COLOURS.get(m, color(m))


def _positive(x: np.ndarray) -> np.ndarray:
    """``x`` with the values a log axis cannot show (≤ 0, non-finite) as NaN."""
    x = x.copy()
    x[~(x > 0)] = np.nan
    return x


def step_size_figure(res: dict) -> Figure:
    """The effective step size over training on a log axis, each method's mean over the
    reported runs that did not diverge (thick) and every such run (thin): (a) the tuned
    baselines and the hypergradient methods, (b) the learning-rate-free optimizers."""
    fig = new_figure(width=WIDTH, height=3.6)
    axes = fig.subplots(1, 2, sharey=True)
    panels = ([m for m in TUNED if m in res["report"]],
              [m for m in LR_FREE if m in res["report"]])
    for ax, methods in zip(axes, panels, strict=True):
        for m in methods:
            ok = [_arr(r["lr"]) for r in res["report"][m] if not r["diverged"]]
            for tr in ok:
                ax.plot(_positive(tr), color=_colour(m), lw=0.5, alpha=0.35)
            if ok:
                n = min(len(tr) for tr in ok)
                mean = np.mean(np.stack([tr[:n] for tr in ok]), axis=0)
                ax.plot(_positive(mean), color=_colour(m), lw=1.8, label=label(m))
        ax.set_yscale("log")
        ax.set_xlabel("step $t$", fontsize=_FS)
        ax.tick_params(labelsize=_FS)
    axes[0].set_ylabel("effective step size", fontsize=_FS)
    axes[0].set_title("(a) tuned and hypergradient", fontsize=_FS)
    axes[1].set_title("(b) learning-rate-free", fontsize=_FS)
    _legend_below(fig, list(axes), ncol=3)
    return fig


def accuracy_figure(res: dict, key: str = "val_acc") -> Figure:
    """Each method's accuracy (``key``) on every reported seed (dots; a cross at 0 where runs
    diverged), and the mean with its 95 % interval over seeds (bar), a diverged run counting
    as 0; methods top to bottom."""
    methods = [m for m in METHODS if m in res["report"]]
    fig = new_figure(width=WIDTH, height=0.32 * len(methods) + 1.2)
    ax = fig.subplots()
    for i, m in enumerate(methods):
        y = len(methods) - 1 - i
        ok = [r[key] for r in res["report"][m] if r[key] is not None]
        bad = sum(r[key] is None for r in res["report"][m])
        ax.scatter(ok, np.full(len(ok), y), color=_colour(m), s=16, zorder=2)
        if bad:
            ax.scatter([0.0], [y], color=_colour(m), marker="x", s=40, zorder=2)
        c = res["summary"][m][key]
        if math.isfinite(c["lo"]):
            ax.plot([c["lo"], c["hi"]], [y, y], color="black", lw=1.2, zorder=1)
        ax.plot([c["mean"]] * 2, [y - 0.3, y + 0.3], color="black", lw=2, zorder=3)
    ax.set_yticks(range(len(methods)), [label(m) for m in reversed(methods)], fontsize=_FS)
    ax.set_xlabel("validation accuracy" if key == "val_acc" else "test accuracy",
                  fontsize=_FS)
    ax.tick_params(labelsize=_FS)
    ax.grid(axis="x", color="0.9")
    return fig


def _interval(c: dict) -> str:
    if not math.isfinite(c["lo"]):
        return f"{100 * c['mean']:.1f}"
    return f"{100 * c['mean']:.1f} [{100 * c['lo']:.1f}, {100 * c['hi']:.1f}]"


def _value(res: dict, m: str) -> str:
    if m not in res["chosen"]:
        return "defaults"
    grid = res["settings"]["grids"][m]
    name = "η" if m in ("fixed", "cosine") else "β₀" if m == "marthe" else "β"
    edge = " (grid edge)" if res["chosen"][m] in (min(grid), max(grid)) else ""
    return f"{name} = {res['chosen'][m]:g}{edge}"


def _cost(m: str, sm: dict, cost: dict | None) -> str:
    if cost is None:
        return f"{sm['cost']:.1f} ×"
    return f"{cost[m]:.1f} ×" if m in cost else "—"


def summary_markdown(res: dict, cost: dict | None = None) -> str:
    """One row per method: the value it ran with, whether it reads the validation set, its
    validation and test accuracy in % (mean [95 % interval] over the reported seeds), its
    divergences and the cost of a step relative to plain SGD — from ``cost`` where given (the
    interleaved benchmark's ``ratio_to_sgd``, ``benchmarks/bench_lr_free.py``; "—" for a
    method it has no ratio for), else the runs' own mean step times; a package that failed
    to import gets its error instead."""
    n = len(res["settings"]["seeds"])
    rows = ["| method | value | uses validation | validation accuracy | test accuracy "
            "| diverged | cost per step |", "|---|---|---|---|---|---|---|"]
    for m in METHODS:
        if m in res.get("errors", {}):
            rows.append(f"| {label(m)} | — | — | not run: `{res['errors'][m]}` | — | — | — |")
            continue
        sm = res["summary"][m]
        rows.append(f"| {label(m)} | {_value(res, m)} | "
                    f"{'yes' if sm['uses_validation'] else 'no'} | "
                    f"{_interval(sm['val_acc'])} | {_interval(sm['test_acc'])} | "
                    f"{sm['diverged']} of {n} | {_cost(m, sm, cost)} |")
    return "\n".join(rows)


def versions() -> dict[str, str]:
    """The installed version of each learning-rate-free package (or why there is none)."""
    out = {}
    for dist, _ in PACKAGES.values():
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def defaults_markdown(s: dict) -> str:
    """The learning-rate-free optimizers' settings (their authors' defaults), as a table."""
    ver = versions()
    rows = ["| method | package | settings |", "|---|---|---|"]
    for m in LR_FREE:
        dist = PACKAGES[m][0]
        kw = ", ".join(f"{k} = {v:g}" if isinstance(v, float | int) else f"{k} = {tuple(v)}"
                       for k, v in s["defaults"][m].items())
        rows.append(f"| {label(m)} | `{dist}` {ver[dist]} | {kw} |")
    return "\n".join(rows)


def chosen_text(res: dict) -> str:
    """Which value each tuned method was run with, chosen on the selection seeds."""
    return "; ".join(f"{label(m)}: {_value(res, m)}" for m in TUNED if m in res["chosen"])


def diverged_text(res: dict) -> str:
    """On how many reported seeds each method diverged, in words (only those that did)."""
    n = len(res["settings"]["seeds"])
    parts = [f"{label(m)} on {len(sd)} of {n}" for m, sd in res["diverged"].items() if sd]
    return "; ".join(parts) if parts else "none"


def errors_text(res: dict) -> str:
    """The packages that failed to import, in words."""
    errs = res.get("errors", {})
    if not errs:
        return "Every package imported and ran."
    return "Not run: " + "; ".join(f"{label(m)} ({e})" for m, e in errs.items()) + "."




def cost_markdown(counts: dict, cost: dict, memory: dict) -> str:
    """One row per method: the passes through the network one step makes (``counts``:
    :func:`~hypergrad.experiments.lr_free.count_passes` of each method), the wall time of a
    step as a multiple of a plain SGD step (``cost``: the interleaved benchmark's ratios),
    the optimizer's state as a multiple of the parameters and the peak memory a run adds
    (``memory``: ``benchmarks/bench_lr_free_memory.py``'s ``methods``)."""
    rows = ["| method | forward (train + validation) | gradients | Hessian–vector products "
            "| time × SGD | state × parameters | peak memory added (MiB) |",
            "|---|---|---|---|---|---|---|"]
    for m in METHODS:
        if m not in counts:
            continue
        c, mem = counts[m], memory.get(m)
        fwd = f"{c['forward (train)']:g} + {c['forward (validation)']:g}"
        time = f"{cost[m]:.2f}" if m in cost else "—"
        state = "—" if mem is None else f"{mem['state_over_params']:.0f}"
        peak = "—" if mem is None else f"{mem['peak_growth_mib']:.0f}"
        rows.append(f"| {label(m)} | {fwd} | {c['gradients']:g} | "
                    f"{c['Hessian-vector products']:g} | {time} | {state} | {peak} |")
    return "\n".join(rows)


def equal_time_markdown(res: dict, cost: dict) -> str:
    """One row per method: the steps it gets in the wall time of plain SGD's ``T`` (from
    ``cost``), and its accuracy on the test images of the checkpoints (mean [95 % interval]
    over the reported seeds) there and after all ``T`` steps
    (:func:`~hypergrad.experiments.lr_free.equal_time`)."""
    T = res["settings"]["T"]
    at_time = equal_time(res, cost)
    at_steps = equal_time(res, {m: 1.0 for m in cost})
    rows = ["| method | steps in SGD's time | test accuracy at equal time "
            f"| test accuracy after {T} steps |", "|---|---|---|---|"]
    for m in METHODS:
        if m not in at_time:
            continue
        rows.append(f"| {label(m)} | {at_time[m]['steps']} | {_interval(at_time[m]['acc'])} "
                    f"| {_interval(at_steps[m]['acc'])} |")
    return "\n".join(rows)


def time_figure(res: dict, cost: dict, key: str = "test_acc") -> Figure:
    """Each method's mean accuracy at its checkpoints (``key``, over the reported seeds that
    reached them) against the wall time, in plain SGD steps (step × ``cost[m]``), with plain
    SGD's ``T`` marked: (a) the tuned baselines and the hypergradient methods, (b) the
    learning-rate-free optimizers. Methods without a cost are left out."""
    T = res["settings"]["T"]
    fig = new_figure(width=WIDTH, height=3.6)
    axes = fig.subplots(1, 2, sharey=True)
    panels = ([m for m in TUNED if m in res["report"] and m in cost],
              [m for m in LR_FREE if m in res["report"] and m in cost])
    for ax, methods in zip(axes, panels, strict=True):
        for m in methods:
            curves = [r["curve"] for r in res["report"][m]]
            steps = max((c["step"] for c in curves), key=len)
            mean = [np.mean([c[key][i] for c in curves if len(c[key]) > i])
                    for i in range(len(steps))]
            ax.plot(np.array(steps) * cost[m], mean, color=_colour(m), lw=1.6, label=label(m))
        ax.axvline(T, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel("wall time (plain SGD steps)", fontsize=_FS)
        ax.tick_params(labelsize=_FS)
        ax.grid(color="0.92")
    axes[0].set_ylabel("test accuracy" if key == "test_acc" else "validation accuracy",
                       fontsize=_FS)
    axes[0].set_title("(a) tuned and hypergradient", fontsize=_FS)
    axes[1].set_title("(b) learning-rate-free", fontsize=_FS)
    _legend_below(fig, list(axes), ncol=3)
    return fig


def gap_text(res: dict) -> str:
    """The mean gap between validation and test accuracy over the reported runs that did not
    diverge, in points, as a range over the methods that read the validation set while
    training and over those that do not: what seeing the validation set does to the
    validation score."""
    from hypergrad.experiments.lr_free import uses_validation

    def gap(m):
        ok = [r for r in res["report"][m] if not r["diverged"]]
        return 100 * float(np.mean([r["val_acc"] - r["test_acc"] for r in ok])) if ok else None

    gaps = {m: gap(m) for m in res["report"]}
    parts = []
    for yes, who in ((True, "the hypergradient methods"),
                     (False, "the methods that do not read it")):
        g = [v for m, v in gaps.items() if v is not None and uses_validation(m) == yes]
        if g:
            parts.append(f"{min(g):+.1f} to {max(g):+.1f} points for {who}")
    return "validation minus test accuracy: " + "; ".join(parts)


def budget_figure(res: dict, cost: dict, budget: float, key: str = "test_acc") -> Figure:
    """Each method's accuracy (``key``) after ``budget`` plain SGD steps of wall time
    (:func:`~hypergrad.experiments.lr_free.equal_time`): the mean over the reported seeds
    (bar, a diverged run counting 0), with the steps it took beside its name."""
    eq = equal_time(res, cost, key, budget)
    methods = [m for m in METHODS if m in eq]
    fig = new_figure(width=WIDTH, height=0.32 * len(methods) + 1.2)
    ax = fig.subplots()
    for i, m in enumerate(methods):
        e = eq[m]
        ax.barh(len(methods) - 1 - i, e["acc"]["mean"], color=_colour(m), alpha=0.8)
    ax.set_yticks(range(len(methods)),
                  [f"{label(m)}, {eq[m]['steps']} steps" for m in reversed(methods)],
                  fontsize=_FS)
    ax.set_xlim(0, 1)
    ax.set_xlabel(("test" if key == "test_acc" else "validation") +
                  f" accuracy after {budget:g} SGD steps of time", fontsize=_FS)
    ax.tick_params(labelsize=_FS)
    ax.grid(axis="x", color="0.9")
    return fig


def explore_budget(res: dict, cost: dict):
    """A slider for the wall-time budget (in plain SGD steps, from one record's worth to
    twice ``T``) and a choice of accuracy, above :func:`budget_figure`."""
    import ipywidgets as W

    from hypergrad.viz.widgets import _explorer

    s = res["settings"]
    every, T = s["checkpoint_every"], s["T"]

    def draw(budget, key):
        return budget_figure(res, cost, budget, key)

    return _explorer(draw, dict(
        budget=W.IntSlider(value=T, min=every, max=2 * T, step=every,
                           description="time (SGD steps)", continuous_update=False,
                           style={"description_width": "initial"}),
        key=W.Dropdown(options=[("test accuracy", "test_acc"),
                                ("validation accuracy", "val_acc")],
                       value="test_acc", description="accuracy"),
    ), columns=2)


def lrs_opt_text(res: dict, units: str) -> str:
    """LRS-OPT beside the comparison, from Part II's committed references (``units``: the
    ``mnist-schedules`` paper-scale unit folder): the same task, initial weights and
    minibatches on its seeds, so that its test accuracy pairs with the fixed rate's on those
    seeds. One sentence; empty when the task is not Part II's or a unit is missing."""
    from pathlib import Path

    from hypergrad.experiments import settings as _settings
    from hypergrad.experiments.mnist_schedules import lrs_opt_settings
    from hypergrad.experiments.stats import paired
    from hypergrad.experiments.store import read_unit_file, unit_file

    s, part2 = res["settings"], _settings("mnist-schedules", "paper")
    same = all(s.get(k) == part2[k] for k in ("n_train", "n_val", "data_seed", "sizes",
                                               "batch_size", "T"))
    seeds = [sd for sd in part2["lrs_opt"]["seeds"] if sd in s["seeds"]]
    if not same or len(seeds) < 2:
        return ""
    ours = {sd: r for sd, r in zip(s["seeds"], res["report"]["fixed"], strict=True)}
    lrs = []
    for sd in seeds:
        path = unit_file(Path(units), f"lrs_opt_seed{sd}")
        data = read_unit_file(path) if path is not None else None
        if data is None or data["settings"] != lrs_opt_settings(part2, sd):
            return ""
        lrs.append(data["result"]["test_acc"] or 0.0)
    fixed = [ours[sd]["test_acc"] or 0.0 for sd in seeds]
    a, d = paired(lrs), paired([x - y for x, y in zip(lrs, fixed, strict=True)])
    opt = part2["lrs_opt"]
    return (f"LRS-OPT, the offline reference of Part II, was run on {len(seeds)} of these "
            f"seeds ({opt['iterations']} iterations of "
            f"{ {'adam': 'Adam'}.get(opt['optimizer'], opt['optimizer'])} on the schedule, "
            f"each a forward and a reverse pass through the {s['T']} steps, rates capped at "
            f"{opt['max_lr']:g}): test accuracy {100 * a['mean']:.1f} % "
            f"[{100 * a['lo']:.1f}, {100 * a['hi']:.1f}], {100 * d['mean']:+.1f} points "
            f"against the fixed rate on the same seeds (95 % interval {100 * d['lo']:+.1f} "
            f"to {100 * d['hi']:+.1f})")
