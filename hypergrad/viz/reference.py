"""The LRS-OPT reference drawn and said: its objective over the outer iterations, on its own
minibatches and on fixed held-out draws, and its schedules (the last iterate, the average of
the iterates, and Section 5's capped surrogate beside them)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from hypergrad.experiments.analysis import sci
from hypergrad.viz.figures import _arr, _centred_mean, _legend_below, _running_mean, new_figure

__all__ = ["reference_figure", "reference_text", "cap_text", "versus_text"]


def _mean(values) -> float:
    x = [v for v in values if v is not None and math.isfinite(v)]
    return sum(x) / len(x) if x else float("nan")


def reference_figure(run: dict, heldout: dict | None = None, surrogate: dict | None = None,
                     smooth: int = 25) -> Figure:
    """(a) ``f_T`` of every outer iteration on that iteration's minibatches (faint) with its
    running mean over ``smooth`` iterations, and, from ``heldout``, the mean ``f_T`` over the
    fixed held-out draws of each snapshot (last iterate and average); (b) the final schedule,
    the average of the iterates and the ``surrogate``'s schedule, each as its centred mean over
    ``smooth`` steps."""
    fig = new_figure(height=3.6)
    ax_f, ax_s = fig.subplots(1, 2)
    hist = _arr(run["history"])
    its = np.arange(1, len(hist) + 1)
    ax_f.plot(its, hist, color="0.7", lw=0.6, label="its own minibatches")
    k = max(1, min(smooth, len(hist)))
    ax_f.plot(its, _running_mean(hist, k), color="0.2", lw=1.4,
              label=f"running mean ({k})")
    if heldout is not None:
        for key, colour, name in (("lrs", "#b22222", "held out: last iterate"),
                                  ("averaged", "#1f5fa8", "held out: average")):
            pts = [(it, _mean(v)) for it, v in zip(heldout["iteration"], heldout[key],
                                                   strict=True) if v is not None]
            if pts:
                ax_f.plot(*zip(*pts, strict=True), "o-", color=colour, ms=3.5, lw=1,
                          label=name)
    ax_f.set_xlabel("LRS-OPT iteration", fontsize=10)
    ax_f.set_ylabel("validation loss $f_T$", fontsize=10)
    ax_f.set_title("(a) the objective", fontsize=10)
    T = len(run["lrs"])
    w = max(1, min(smooth, T))
    steps = np.arange(T)
    ax_s.plot(steps, _arr(run["lrs"]), color="#b22222", lw=0.4, alpha=0.35)
    ax_s.plot(steps, _centred_mean(run["lrs"], w), color="#b22222", lw=1.4,
              label="last iterate")
    if run.get("averaged") is not None:
        ax_s.plot(steps, _centred_mean(run["averaged"], w), color="#1f5fa8", lw=1.4,
                  label=f"average of {run['averaged_count']} iterates")
    if surrogate is not None:
        ax_s.plot(steps, _centred_mean(surrogate["lrs"], w), color="0.3", lw=1.2, ls="--",
                  label=f"surrogate ({surrogate['iterations']} it., capped)")
    ax_s.set_xlabel("step $t$", fontsize=10)
    ax_s.set_ylabel(r"$\eta_t$" + f" (centred mean over {w})", fontsize=10)
    ax_s.set_title("(b) the schedule", fontsize=10)
    for ax in (ax_f, ax_s):
        ax.tick_params(labelsize=10)
    _legend_below(fig, [ax_f, ax_s], ncol=3)
    return fig


def cap_text(lrs, cap: float) -> str:
    """How often a schedule would meet Section 5's cap, and how often it sits at 0."""
    x = [float(v) for v in lrs]
    above = sum(v > cap for v in x) / len(x)
    zero = sum(v == 0.0 for v in x) / len(x)
    return (f"{above:.0%} of its steps lie above the surrogate's cap η ≤ {cap:g}, "
            f"{zero:.0%} at η = 0")


def reference_text(run: dict, conv: dict | None = None, surrogate: dict | None = None,
                   fixed: dict | None = None, cap: float | None = None) -> str:
    """What the reference reached, in sentences: the accuracy its last iterate and its
    average train to (beside the ``surrogate``'s and the constant η's, ``fixed``, on the
    same seed), how often it exceeds the surrogate's ``cap``, and, from ``conv``
    (:func:`~hypergrad.experiments.protocol.lrs_convergence`), whether it has stopped moving
    on the held-out draws."""
    parts = [f"After {run['iterations']} iterations the last iterate trains to "
             f"{run['val_acc']:.3f} validation accuracy"]
    am = run.get("averaged_metrics")
    if am is not None:
        parts[-1] += (f", the average of its last {run['averaged_count']} iterates to "
                      f"{am['val_acc']:.3f}")
    if surrogate is not None:
        parts[-1] += f", the surrogate's schedule to {surrogate['val_acc']:.3f}"
    if fixed is not None:
        parts[-1] += f" and the constant η to {fixed['val_acc']:.3f}"
    parts[-1] += "."
    if run.get("diverged"):
        parts.append(f"The run stopped early: it {run['diverged']}.")
    if cap is not None:
        parts.append(f"Of the last iterate, {cap_text(run['lrs'], cap)}.")
    if conv is not None:
        a, b = conv["iterations"]
        for key, name in (("lrs", "the last iterate"), ("averaged", "the average")):
            c = conv[key]
            if c["change"] is None:
                continue
            ch = c["change"]
            dist = (f"; its schedule moved by {c['distance']:.3f} (RMS of the shapes)"
                    if c.get("distance") is not None else "")
            if c["dropped"]:
                # a schedule that diverges on held-out draws has not converged, whatever the
                # change on the draws that survive
                parts.append(f"On {conv['draws']} held-out draws, training with {name} "
                             f"diverges on {c['dropped']} at iteration {b} or {a}; on the "
                             f"other {ch['n']}, the objective changes by {sci(ch['mean'])} ± "
                             f"{sci(ch['se'])} from iteration {a} to {b}{dist}.")
                continue
            moved = "has stopped moving" if c["stopped"] else "still moves"
            parts.append(f"On {conv['draws']} held-out draws, the objective of {name} changes by "
                         f"{sci(ch['mean'])} ± {sci(ch['se'])} from iteration {a} to {b}, "
                         f"against a spread of {sci(c['spread'])} between draws: it "
                         f"{moved}{dist}.")
    return " ".join(parts)


def versus_text(vs: dict | None) -> str:
    """Projected Adam against the paper's projected gradient descent on one seed
    (:func:`~hypergrad.experiments.protocol.lrs_versus`), or "" without both."""
    if vs is None:
        return ""
    which = "averaged schedules" if vs["key"] == "averaged" else "last iterates"
    if vs["adam_final"] is None or vs["pgd_final"] is None:
        return (f"On the same held-out draws, the {which} of projected Adam or of plain "
                f"projected gradient descent have no objective to compare.")
    text = (f"On the same held-out draws, the {which} of projected Adam after "
            f"{vs['adam_iterations']} iterations and of plain projected gradient descent after "
            f"{vs['pgd_iterations']} reach an objective of {vs['adam_final']:.4f} and "
            f"{vs['pgd_final']:.4f}")
    if vs["final"] is not None:
        f = vs["final"]
        text += f" (PGD minus Adam, paired over the draws: {sci(f['mean'])} ± {sci(f['se'])})"
    if vs["adam_reaches_pgd"] is None:
        return text + "; Adam never reaches PGD's final value."
    return (text + f"; Adam reaches PGD's final value at iteration {vs['adam_reaches_pgd']}, "
            f"{vs['ratio']:.1f} times fewer iterations.")
