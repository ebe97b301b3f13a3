"""The practitioner's guide that closes the book, said from measured results only: the
evidence table over both tasks of chapter 12, paired comparisons worded by their interval,
the cost of tuning, and the divergences seen per method and setting (chapter 12 and
Appendix C's grid)."""

from __future__ import annotations

from hypergrad.experiments.analysis import FAILS, HOLDS
from hypergrad.experiments.lr_free import METHODS, TUNED, equal_time
from hypergrad.experiments.settings import label
from hypergrad.experiments.stats import paired
from hypergrad.viz.lr_free import _interval

__all__ = ["TASKS", "accuracy", "versus", "versus_text", "evidence_markdown",
           "divergence_rows", "divergence_markdown", "tuning_cost", "best", "committed_tasks",
           "matches", "fragile", "names"]

#: chapter 12's two tasks, as the guide names them
TASKS = {"lr-free": "MLP, SGD", "lr-free-cnn": "CNN, momentum"}


def _acc(r: dict, key: str) -> float:
    return 0.0 if r[key] is None else r[key]


def accuracy(res: dict, method: str, key: str = "test_acc") -> dict:
    """``method``'s accuracy over the reported seeds (:func:`~hypergrad.experiments.stats.paired`
    of the per-seed values, a diverged run counting as 0)."""
    return paired([_acc(r, key) for r in res["report"][method]])


def versus(res: dict, a: str, b: str, key: str = "test_acc") -> dict:
    """The paired difference ``a − b`` of the accuracies over the reported seeds (same
    weights and minibatches on a seed), a diverged run counting as 0."""
    return paired([_acc(ra, key) - _acc(rb, key)
                   for ra, rb in zip(res["report"][a], res["report"][b], strict=True)])


def versus_text(res: dict, a: str, b: str, key: str = "test_acc") -> str:
    """``versus`` in words: "ahead of" or "behind" when the 95 % interval of the difference
    excludes 0, else "level with … within seed noise", with the mean and interval in points."""
    d = versus(res, a, b, key)
    pts = (f"{100 * d['mean']:+.1f} points, 95 % interval {100 * d['lo']:+.1f} to "
           f"{100 * d['hi']:+.1f}")
    if d["verdict"] == HOLDS:
        return f"{label(a)} is ahead of {label(b)} ({pts})"
    if d["verdict"] == FAILS:
        return f"{label(a)} is behind {label(b)} ({pts})"
    return f"{label(a)} is level with {label(b)} within seed noise ({pts})"


def best(res: dict, methods=METHODS, key: str = "test_acc") -> str:
    """The method of ``methods`` with the highest mean accuracy over the reported seeds."""
    return max((m for m in methods if m in res["report"]),
               key=lambda m: accuracy(res, m, key)["mean"])


def evidence_markdown(res: dict, cost: dict, memory: dict) -> str:
    """One row per method of a task (``res``: the paper-scale result of
    :func:`~hypergrad.experiments.lr_free.run_lr_free`; ``cost`` and ``memory``: the benchmarks' time
    ratios and memory), best test accuracy first: test accuracy in % at equal steps and at
    equal time (mean [95 % interval] over the reported seeds), the time of a step and the
    optimizer's state as multiples of SGD's and of the parameters, and the divergences."""
    eq = equal_time(res, cost)
    rows = ["| method | test % (equal steps) | test % (equal time) | time × SGD "
            "| state × parameters | diverged |", "|---|---|---|---|---|---|"]
    order = sorted((m for m in METHODS if m in res["report"]),
                   key=lambda m: -accuracy(res, m)["mean"])
    for m in order:
        n_seeds = len(res["report"][m])
        div = sum(r["diverged"] for r in res["report"][m])
        at_time = _interval(eq[m]["acc"]) if m in eq else "—"
        time = f"{cost[m]:.1f}" if m in cost else "—"
        state = f"{memory[m]['state_over_params']:.0f}" if m in memory else "—"
        rows.append(f"| {label(m)} | {_interval(accuracy(res, m))} | {at_time} | {time} | "
                    f"{state} | {div} of {n_seeds} |")
    return "\n".join(rows)


def divergence_rows(tasks: dict, sensitivity: dict | None) -> list[dict]:
    """The divergences seen: per task and method of chapter 12, over every run it made
    (selection seeds with every grid value, and the reported seeds), and per μ of
    Appendix C's grid (``sensitivity``: the committed result of that experiment), over all its
    β and seeds.
    Each row: ``where``, ``method``, ``setting``, ``diverged``, ``runs``."""
    out = []
    for n, (res, _, _) in tasks.items():
        for m in METHODS:
            runs = [r for by_seed in res["runs"].get(m, {}).values() for r in by_seed.values()]
            if runs:
                grid = res["settings"]["grids"].get(m)
                setting = ("grid " + ", ".join(f"{v:g}" for v in grid)) if grid else "defaults"
                out.append({"where": TASKS.get(n, n), "method": label(m), "setting": setting,
                            "diverged": sum(r["diverged"] for r in runs), "runs": len(runs)})
    sens = sensitivity or {"panels": {}, "settings": {"seeds": []}}
    n_seeds = len(sens["settings"]["seeds"])
    for panel, p in sens["panels"].items():
        for mu, row in zip(p["mus"], p["diverged"], strict=True):
            name = ("HD" if mu == 0 else "RTHO" if mu == 1 else
                    "MARTHE (adaptive μ)" if mu == "auto" else f"MARTHE (μ = {mu:g})")
            beta = (f"adaptive β (κ = {p['kappa']:g}), {len(p['betas'])} starting values"
                    if panel == "adaptive-beta" else f"fixed β, {len(p['betas'])} values")
            out.append({"where": "Appendix C grid (MLP)", "method": name, "setting": beta,
                        "diverged": int(sum(row)),
                        "runs": n_seeds * len(p["betas"])})
    return out


def divergence_markdown(rows: list[dict]) -> str:
    """:func:`divergence_rows` as a table (rows with no runs counted are left out)."""
    out = ["| task | method | setting | diverged |", "|---|---|---|---|"]
    for r in rows:
        if r["runs"]:
            out.append(f"| {r['where']} | {r['method']} | {r['setting']} | "
                       f"{r['diverged']} of {r['runs']} |")
    return "\n".join(out)


def tuning_cost(res: dict, cost: dict) -> dict[str, float]:
    """What choosing each tuned method's value costs, in plain SGD runs of the same length:
    grid size × selection seeds × the method's time per step (the reported runs excluded)."""
    s = res["settings"]
    return {m: len(s["grids"][m]) * len(s["select_seeds"]) * cost[m]
            for m in TUNED if m in cost}


def committed_tasks(results: str, benchmarks: str, device="cpu") -> dict:
    """Chapter 12's paper-scale results for each task whose units are all committed under
    ``results`` (read-only: nothing is computed), with the benchmarks' time ratios and memory
    from ``benchmarks``: ``{experiment: (res, cost, memory)}``; a task with a unit missing is
    left out."""
    import json
    from pathlib import Path

    from hypergrad.experiments import MissingUnit, run_lr_free, settings

    out = {}
    names = {"lr-free": "bench_lr_free", "lr-free-cnn": "bench_lr_free_cnn"}
    for experiment, bench in names.items():
        try:
            res = run_lr_free(settings(experiment, "paper"), progress=False, readonly=True,
                              out_dir=Path(results) / experiment / "paper", device=device)
        except MissingUnit:
            continue
        folder = Path(benchmarks)
        cost = json.loads((folder / f"{bench}_cpu.json").read_text())["ratio_to_sgd"]
        memory = json.loads((folder / f"{bench}_memory_cpu.json").read_text())["methods"]
        out[experiment] = (res, cost, memory)
    return out


def matches(tasks: dict, methods, ref: str = "fixed", key: str = "test_acc") -> list[str]:
    """The ``methods`` whose accuracy is not behind ``ref``'s on any task (the paired 95 %
    interval of the difference does not lie below 0): level within seed noise, or ahead."""
    return [m for m in methods
            if all(m in res["report"] and versus(res, m, ref, key)["verdict"] != FAILS
                   for res, _, _ in tasks.values())]


def fragile(tasks: dict, share: float = 0.5) -> list[str]:
    """The methods that diverged on at least ``share`` of the reported seeds of some task."""
    return [m for m in METHODS
            if any(m in res["report"] and
                   sum(r["diverged"] for r in res["report"][m]) >= share * len(res["report"][m])
                   for res, _, _ in tasks.values())]


def names(methods) -> str:
    """Display names joined in words: "A", "A and B", "A, B and C" ("none" if empty)."""
    labels = [label(m) for m in methods]
    if not labels:
        return "none"
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
