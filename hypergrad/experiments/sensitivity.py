"""Appendix C: MARTHE's final validation error over a β × μ grid (adaptive rules off: the fixed-β panel is the main one)."""

from __future__ import annotations

import math
import os

import torch

from hypergrad.experiments.analysis import UNDECIDED, combine, compare
from hypergrad.experiments.claims import Claim
from hypergrad.experiments.mnist_schedules import MnistTask, _task_settings
from hypergrad.experiments.store import (
    Unit,
    UnitStore,
    _bar,
    _jsonable,
    compute_batched,
    float32_trace,
)

__all__ = ['PANELS', 'plan_units', 'compute_unit', 'finish_unit', 'run_sensitivity', 'sensitivity_grids', 'sensitivity_claims', 'sensitivity_records']


# =========================================================================== Appendix C
PANELS = ("fixed", "adaptive-beta")


def _mu_key(mu) -> str:
    return "auto" if mu == "auto" else format(float(mu), "g")


def plan_units(s: dict) -> list[Unit]:
    """Appendix C's grid runs as units, seed by seed (both panels, every ``μ`` and ``β`` of a
    seed, then the next seed): an interrupted sweep leaves whole seeds done. Every unit can
    run in a population (``Unit.batch``): κ is fixed, not selected."""
    base = _task_settings(s)
    units = []
    for seed in s["seeds"]:
        for panel in PANELS:
            kappa = s["kappa"] if panel == "adaptive-beta" else None
            for mu in s["mus"]:
                for beta in (float(b) for b in s["betas"]):
                    settings_ = {**base, "panel": panel, "mu": mu, "beta": beta, "seed": seed,
                                 "kappa": kappa, "lr0": s["lr0"]}
                    units.append(Unit(
                        f"sens_{panel}_mu{_mu_key(mu)}_beta{beta:g}_seed{seed}",
                        _jsonable(settings_), ("grid", panel, mu, beta, seed),
                        {"seed": seed, "lr0": s["lr0"], "beta": beta, "mu": mu, "kappa": kappa}))
    return units


def finish_unit(s: dict, unit: Unit, run: dict) -> dict:
    """A grid run's stored form: its outcome, final metrics, mean μ and η_t (float32)."""
    keep = ("diverged", "diverged_at", "val_loss", "val_acc", "test_acc")
    return {**{k: run[k] for k in keep}, "lr": float32_trace(run["lr"]),
            "mu_mean": sum(run["mu"]) / len(run["mu"]) if run["mu"] else None}


def compute_unit(task: MnistTask, s: dict, unit: Unit, store: UnitStore | None = None,
                 progress: bool = False) -> dict:
    """Compute one grid run of :func:`plan_units` (alone)."""
    b = unit.batch
    run = task.online(task.init_params(b["seed"]), task.batches(b["seed"]), b["lr0"], b["beta"],
                      b["mu"], b["kappa"])
    return finish_unit(s, unit, run)


def run_sensitivity(s: dict, out_dir: str | os.PathLike | None = None, device="cpu",
                    progress: bool = True, store: UnitStore | None = None,
                    population: int = 1) -> dict:
    """Appendix C on the MNIST task: MARTHE's final validation error over ``β × μ``.

    Two panels: ``"fixed"`` — fixed ``β`` and fixed ``μ`` (no adaptation; ``μ = "auto"`` is the
    adaptive-``μ`` row for comparison); ``"adaptive-beta"`` — the same grid with ``β``
    adapted from ``β_0`` by ``κ`` (fixed). Returns ``{"settings", "panels": {panel: {"betas",
    "mus", "val_error": [[mean over seeds or None]], "diverged": [[count]], "runs": {...}}}}``.
    ``population`` > 1: the runs not stored yet, N at a time as one batched computation.
    With a read-only ``store`` nothing is computed: every unit must be stored
    (:class:`~hypergrad.experiments.store.MissingUnit` otherwise).
    """
    s = _jsonable(s)
    store = store or UnitStore(out_dir)
    # a read-only store (committed results) never computes: no task, no data loaded
    task = None if store.readonly else MnistTask(s, device)
    betas, mus = [float(b) for b in s["betas"]], s["mus"]
    units = {u.compute[1:]: u for u in plan_units(s)}
    if population > 1 and not store.readonly:
        compute_batched(task, list(units.values()), store, population,
                        lambda unit, run: finish_unit(s, unit, run))
    out = {"settings": s, "panels": {}}
    with _bar(len(units), "grid runs", progress) as bar:
        for panel in PANELS:
            err = [[None] * len(betas) for _ in mus]
            div = [[0] * len(betas) for _ in mus]
            runs = {}
            for i, mu in enumerate(mus):
                for j, beta in enumerate(betas):
                    vals = []
                    for seed in s["seeds"]:
                        unit = units[(panel, mu, beta, seed)]
                        r = store.get(unit.name, unit.settings,
                                      lambda unit=unit: compute_unit(task, s, unit))
                        runs[unit.name] = r
                        if r["diverged"]:
                            div[i][j] += 1
                        else:
                            vals.append(1.0 - r["val_acc"])
                        bar.update()
                    err[i][j] = sum(vals) / len(vals) if vals else None
            out["panels"][panel] = {"kappa": s["kappa"] if panel == "adaptive-beta" else None,
                                    "betas": betas, "mus": mus, "val_error": err,
                                    "diverged": div, "runs": runs}
    out["units"] = {"computed": store.computed, "loaded": store.loaded}
    return out


def sensitivity_grids(res: dict, panel: str) -> torch.Tensor:
    """Per-seed final validation error of a panel, ``[seed, μ, β]`` (``nan`` = diverged)."""
    s, p = res["settings"], res["panels"][panel]
    E = torch.full((len(s["seeds"]), len(p["mus"]), len(p["betas"])), float("nan"),
                   dtype=torch.float64)
    for i, mu in enumerate(p["mus"]):
        key = "auto" if mu == "auto" else format(float(mu), "g")
        for j, beta in enumerate(p["betas"]):
            for n, seed in enumerate(s["seeds"]):
                r = p["runs"][f"sens_{panel}_mu{key}_beta{beta:g}_seed{seed}"]
                if not r["diverged"]:
                    E[n, i, j] = 1.0 - r["val_acc"]
    return E


def sensitivity_claims(res: dict) -> dict:
    """Chapter 7: what the β × μ grids say, each reading paired over seeds.

    Each reading has ``why``: ``None``, or why the seeds cannot decide it whatever the
    results (no seed, or one: the noise between seeds cannot be estimated). With no seed
    every reading is undecided and ``panels`` is empty."""
    s = res["settings"]
    n_seeds = len(s["seeds"])
    why = (None if n_seeds >= 2 else "no seed is complete" if n_seeds == 0 else
           "only 1 seed: the noise between seeds cannot be estimated")
    if n_seeds == 0:
        return {"panels": {}, "runs_per_panel": 0, "div_large": {},
                **{k: {"v": UNDECIDED, "why": why, "cmp": compare([])}
                   for k in ("interior", "band", "auto", "flat")}}
    mus, betas = s["mus"], [float(b) for b in s["betas"]]
    fixed_rows = [i for i, m in enumerate(mus) if m != "auto"]
    auto = mus.index("auto") if "auto" in mus else None
    out = {"panels": {}}
    for panel in res["panels"]:
        E = sensitivity_grids(res, panel)
        M = torch.tensor([[float("nan") if v is None else v for v in row]
                          for row in res["panels"][panel]["val_error"]], dtype=torch.float64)
        finite = torch.nan_to_num(M, nan=float("inf"))
        i, j = divmod(int(finite.argmin()), M.shape[1])
        out["panels"][panel] = {"best": float(M[i, j]), "best_mu": mus[i], "best_beta": betas[j],
                                "near": int((M <= M[i, j] + 0.02).sum()),
                                "n_div": int(M.isnan().sum()), "E": E}
    F = out["panels"]["fixed"]["E"].nan_to_num(nan=1.0)       # diverged = 100 % error
    # neither end (HD: μ = 0, RTHO: μ = 1) is the best fixed μ: each row's best error over β,
    # per seed (a row's best cell, not its mean, so that whether a run at the edge of
    # stability diverges, a chaotic outcome, does not decide the reading)
    row_mean = F.min(2).values                                  # [seed, μ]
    inner = [i for i in fixed_rows if 0 < float(mus[i]) < 1]
    ends = [i for i in fixed_rows if float(mus[i]) in (0.0, 1.0)]
    mean_rows = row_mean.mean(0)
    best_row = min(fixed_rows, key=lambda i: float(mean_rows[i]))
    if inner and ends:
        bi = min(inner, key=lambda i: float(mean_rows[i]))
        be = min(ends, key=lambda i: float(mean_rows[i]))
        interior = compare((row_mean[:, be] - row_mean[:, bi]).tolist())
    else:
        interior = compare([])
    out["interior"] = {"best_row_mu": mus[best_row], "cmp": interior, "v": interior["sign"]}
    # the band of good β moves to smaller β as μ grows (per seed: log10 of the best β)
    lo_mu = min(fixed_rows, key=lambda i: float(mus[i]))
    hi_mu = max((i for i in fixed_rows if float(mus[i]) < 1), key=lambda i: float(mus[i]))
    logb = torch.log10(torch.tensor(betas, dtype=torch.float64))
    shift = [float(logb[int(F[n, lo_mu].argmin())] - logb[int(F[n, hi_mu].argmin())])
             for n in range(F.shape[0])]
    band = compare(shift)
    out["band"] = {"lo_mu": mus[lo_mu], "hi_mu": mus[hi_mu], "decades": shift, "cmp": band,
                   "v": band["sign"],
                   "lo_beta": betas[int(F[:, lo_mu].mean(0).argmin())],
                   "hi_beta": betas[int(F[:, hi_mu].mean(0).argmin())]}
    if auto is not None:
        best_fixed = F[:, fixed_rows].mean(0).argmin(0)          # per β, from the seed mean
        gaps = [compare([0.01 - float(F[n, auto, j] - F[n, fixed_rows[int(best_fixed[j])], j])
                         for n in range(F.shape[0])]) for j in range(len(betas))]
        out["auto"] = {"gap": [c["mean"] for c in gaps], "v": combine(c["sign"] for c in gaps)}
        if "adaptive-beta" in res["panels"]:
            A = out["panels"]["adaptive-beta"]["E"].nan_to_num(nan=1.0)
            r_fix = (F[:, auto].max(1).values - F[:, auto].min(1).values).tolist()
            r_ad = (A[:, auto].max(1).values - A[:, auto].min(1).values).tolist()
            flat = compare([a - b for a, b in zip(r_fix, r_ad, strict=True)])
            out["flat"] = {"range_fixed": r_fix, "range_adaptive": r_ad, "cmp": flat,
                           "v": flat["sign"]}
    large = [i for i in fixed_rows if float(mus[i]) >= 0.9]
    out["div_large"] = {p: int(out["panels"][p]["E"][:, large].isnan().sum())
                        for p in res["panels"]}
    out["runs_per_panel"] = len(mus) * len(betas) * len(s["seeds"])
    for k in ("interior", "band", "auto", "flat"):
        if k in out:
            out[k]["why"] = why if out[k]["v"] == UNDECIDED else None
    return out


def sensitivity_records(claims: dict) -> list[Claim]:
    """The β × μ grid's readings (:func:`sensitivity_claims`)
    as :class:`~hypergrad.experiments.claims.Claim` records. The paper's Appendix C states no claim in words beyond "the
    results are consistent": these are the book's readings of its heat maps, on the MNIST
    task (the paper's runs VGG-11 on CIFAR-10)."""
    def pts(cmp, scale=100.0, unit=" points"):
        if not math.isfinite(cmp.get("se", math.nan)):
            return "—"
        return f"{scale * cmp['mean']:+.2f} ± {scale * cmp['se']:.2f}{unit}".replace("-", "−")

    out = []
    i = claims.get("interior")
    if i:
        out.append(Claim("grid-interior", None,
                         "the best interior μ (0 < μ < 1) against the better of HD and RTHO, "
                         "each row's best β per seed, validation error",
                         f"best row μ = {i['best_row_mu']}; {pts(i['cmp'])}", i["v"],
                         ("beta-grid", "lr0")))
    b = claims.get("band")
    if b:
        out.append(Claim("grid-band", None,
                         f"the best β moves with μ (from μ = {b['lo_mu']} to {b['hi_mu']}), "
                         "per seed, in decades",
                         pts(b["cmp"], 1.0, " decades"), b["v"], ("beta-grid",)))
    a = claims.get("auto")
    if a:
        out.append(Claim("grid-auto", None,
                         "adaptive μ within a point of the best fixed μ at every β",
                         "excess error of adaptive μ over the best fixed μ, per β: "
                         + ", ".join(f"{100 * (0.01 - g):+.1f}".replace("-", "−")
                                     for g in a["gap"]) + " points",
                         a["v"], ("beta-grid",)))
    f = claims.get("flat")
    if f:
        out.append(Claim("grid-flat", None,
                         "(the book's extension) adaptive β from each β₀ with one κ narrows "
                         "the range of the error over β₀",
                         pts(f["cmp"]), f["v"], ("beta-grid", "beta0", "diverged-0")))
    return out
