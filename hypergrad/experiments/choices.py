"""The book's choices measured the other way (the protocol study's ``eta0``, ``valbatch`` and
``authors-noclip`` families).

For a choice of the book and a method, the same method is run with the choice flipped, on the
seeds that family covers, and three paired comparisons are read (each method's hyperparameter
cross-fitted on its own grid, :func:`~hypergrad.experiments.claims.versus`):

* ``effect``: the method with the choice flipped minus the method as the book runs it;
* ``book``: the constant η minus the method as the book runs it;
* ``flipped``: the constant η minus the method with the choice flipped.

A verdict against the constant η that rests on the choice is the same both ways when ``book``
and ``flipped`` agree.

:func:`other_way` does the same for the claim records themselves
(``hypergrad.experiments.claims.section5_records``): each reading that rests on ``lr0`` or
``full-val`` and can be read from the flipped runs is read twice on the seeds those runs cover,
once from the book's runs and once from the flipped ones, with the same code. Nothing here
trains: the rows are read from stored runs.
"""

from __future__ import annotations

import dataclasses
import math

from hypergrad.experiments.analysis import UNDECIDED, combine, compare, linger
from hypergrad.experiments.claims import (
    _diff_text,
    _fixed_mu_pool,
    _mean_text,
    _unit_of,
    _v,
    accuracy_table,
    versus,
)

__all__ = ["ALTERNATIVES", "CHOICE_METHODS", "choice_effects", "other_way", "attach_other_way"]

#: choice of the book -> (the table's prefix of the runs with it flipped, the flip in words)
ALTERNATIVES = {
    "lr0": ("eta0.1", "η₀ = 0.1 (the constant η's rate) instead of 0"),
    "full-val": ("valbatch", "E and its gradient on a fresh 100-image validation minibatch at "
                             "every step (as the authors' release) instead of all 700 images"),
    "clip": ("marthe-authors-noclip", "Δₜ not clipped instead of clipped at ±100 (the "
                                      "authors' protocol)"),
}

#: the methods whose runs are repeated with ``lr0`` and ``full-val`` flipped
CHOICE_METHODS = ("hd", "rtho", "marthe-mu0.5", "marthe-mu0.9", "marthe-mu0.99",
                  "marthe-auto-mu")


def _whole(table: dict, method: str, seeds: list[str]) -> list[str]:
    """The seeds of ``seeds`` on which ``method`` has a run at every value of its grid."""
    by_hyper = table.get(method, {})
    return [k for k in seeds if by_hyper and all(k in by for by in by_hyper.values())]


def choice_effects(sec5: dict, protocol: dict | None, metric: str = "val_acc") -> list[dict]:
    """One row per (choice, method) that has runs with the choice flipped on at least two
    seeds: ``{"choice", "method", "flipped_as", "seeds", "effect", "book", "flipped",
    "same"}``, the three comparisons of the module's docstring (:func:`.paired` results with
    ``chosen``) on the seeds where the flipped method, the book's method and the constant η all
    have every run; ``same`` is whether ``book`` and ``flipped`` give the same verdict."""
    table = accuracy_table(sec5, protocol, metric)
    fixed_seeds = sorted(k for k, v in table["fixed"][None].items() if v is not None)
    rows = []
    pairs = [(c, m, f"{ALTERNATIVES[c][0]}:{m}") for c in ("lr0", "full-val")
             for m in CHOICE_METHODS]
    pairs.append(("clip", "marthe-authors", ALTERNATIVES["clip"][0]))
    for choice, method, alt in pairs:
        seeds = _whole(table, alt, _whole(table, method, fixed_seeds))
        if len(seeds) < 2:
            continue
        seeds = sorted(seeds, key=int)
        book = versus(table, "fixed", method, seeds)
        flipped = versus(table, "fixed", alt, seeds)
        rows.append({"choice": choice, "method": method, "flipped_as": alt, "seeds": seeds,
                     "effect": versus(table, alt, method, seeds), "book": book,
                     "flipped": flipped, "same": book["verdict"] == flipped["verdict"]})
    return rows


# =========================================================================== claim by claim
def _flipped_runs(protocol: dict | None, prefix: str) -> dict:
    """``{method: {β: {seed: run}}}`` of the protocol's runs with ``prefix`` (``"eta0.1"``)."""
    out: dict = {}
    for name, run in (protocol or {}).get("runs", {}).items():
        u = _unit_of(name)
        if u is not None and u[0] == prefix:
            out.setdefault(u[1], {}).setdefault(u[2], {})[str(u[3])] = run
    return out


def _book_runs(sec5: dict, method: str) -> dict:
    return {float(b): {str(k): r for k, r in runs.items()}
            for b, runs in sec5["online"].get(method, {}).items()}


def _at_best(by_beta: dict, seeds: list[str], threshold: float) -> dict:
    """The runs over ``seeds`` at the β of the highest mean accuracy (a diverged run 0) among
    the β with a run that trained above ``threshold``, as Section 5 picks a method's best β."""
    def acc(r):
        return 0.0 if r["diverged"] or r.get("val_acc") is None else r["val_acc"]

    full = {b: runs for b, runs in by_beta.items() if all(k in runs for k in seeds)}
    kept = [b for b, runs in full.items()
            if any(acc(runs[k]) >= threshold and not runs[k]["diverged"] for k in seeds)]
    if not kept:
        return {}
    best = max(kept, key=lambda b: (sum(acc(full[b][k]) for k in seeds), -b))
    return {k: full[best][k] for k in seeds}


def _hd_decays(by_beta: dict, seeds: list[str], threshold: float, lrs_mean: float,
               count_on=None):
    """Claim C1's reading (:func:`~hypergrad.experiments.section5_claims.mnist_claims`) on
    ``seeds``: HD's last ηₜ against half its peak and against LRS-OPT's mean rate."""
    hd = [r for r in _at_best(by_beta, seeds, threshold).values() if not r["diverged"]]
    end_peak = [r["lr"][-1] / max(r["lr"]) if max(r["lr"]) > 0 else 0.0 for r in hd]
    end_lrs = [r["lr"][-1] / lrs_mean for r in hd]
    v = combine([compare([0.5 - x for x in end_peak])["sign"],
                 compare([0.5 - x for x in end_lrs])["sign"]]) if len(hd) >= 2 else UNDECIDED
    return f"end/peak {_mean_text(end_peak)}", v


def _rtho_lingers(by_beta: dict, seeds: list[str], threshold: float, _lrs_mean: float,
                  count_on=None):
    """Claim C2's reading on ``seeds``: RTHO's last tenth against half its peak at its best β;
    its divergences over the β of ``count_on`` (every β when ``None``)."""
    ling = [linger(r["lr"]) for r in _at_best(by_beta, seeds, threshold).values()
            if not r["diverged"]]
    runs = [runs[k] for b, runs in by_beta.items() for k in seeds
            if k in runs and (count_on is None or b in count_on)]
    div = sum(r["diverged"] for r in runs)
    v = compare([x - 0.5 for x in ling])["sign"] if len(ling) >= 2 else UNDECIDED
    return (f"last tenth / peak {_mean_text(ling)}; {div} of {len(runs)} runs diverged", v)


#: the shape readings that :func:`other_way` repeats: record key -> (method, reading)
SHAPES = {"hd-decays": ("hd", _hd_decays), "rtho-lingers": ("rtho", _rtho_lingers)}

#: the accuracy readings that :func:`other_way` repeats: record key -> (a, b) of :func:`versus`
ACCURACY = {"auto-mu-helps": ("marthe-auto-mu", "fixed-mu"),
            "vs-fixed[marthe-mu0.99]": ("marthe-mu0.99", "fixed"),
            "vs-fixed[marthe-auto-mu]": ("marthe-auto-mu", "fixed")}


def other_way(sec5: dict, protocol: dict | None, metric: str = "val_acc") -> dict:
    """``{record key: [row]}``: the readings of ``ACCURACY`` and ``SHAPES`` with the
    book's ``lr0`` or ``full-val`` flipped. A row is ``{"choice", "seeds", "value", "verdict",
    "book_value", "book_verdict", "stats", "book_stats"}``: the reading from the flipped runs
    and from the book's, both on the seeds where every flipped method has every run (two at
    least). The flipped runs cover three β per method (the book's best and its neighbours);
    the book's side keeps its whole grid, as its record does, and counts divergences on the
    flipped runs' β."""
    table = accuracy_table(sec5, protocol, metric)
    fixed = sorted((k for k, v in table["fixed"][None].items() if v is not None), key=int)
    thr = sec5["settings"]["accuracy_threshold"]
    lrs = sec5.get("lrs_opt") or {}
    rates = [x for r in lrs.values() for x in r["lrs"]]
    lrs_mean = sum(rates) / len(rates) if rates else math.nan
    out: dict = {}
    for choice in ("lr0", "full-val"):
        prefix = ALTERNATIVES[choice][0]
        seeds = fixed
        for m in CHOICE_METHODS:
            seeds = _whole(table, f"{prefix}:{m}", seeds)
        if len(seeds) < 2:
            continue
        flip = {m: table[f"{prefix}:{m}"] for m in CHOICE_METHODS} | {"fixed": table["fixed"]}
        book = dict(table, **{"fixed-mu": _fixed_mu_pool(table)})
        flip["fixed-mu"] = _fixed_mu_pool(flip)
        for key, (a, b) in ACCURACY.items():
            st_b, st_f = versus(book, a, b, seeds), versus(flip, a, b, seeds)
            out.setdefault(key, []).append(
                {"choice": choice, "seeds": seeds, "value": _diff_text(st_f), "verdict": _v(st_f),
                 "book_value": _diff_text(st_b), "book_verdict": _v(st_b), "stats": st_f,
                 "book_stats": st_b})
        runs = _flipped_runs(protocol, prefix)
        for key, (method, reading) in SHAPES.items():
            mine = runs.get(method, {})
            value, verdict = reading(mine, seeds, thr, lrs_mean)
            bvalue, bverdict = reading(_book_runs(sec5, method), seeds, thr, lrs_mean,
                                       count_on=set(mine))
            out.setdefault(key, []).append(
                {"choice": choice, "seeds": seeds, "value": value, "verdict": verdict,
                 "book_value": bvalue, "book_verdict": bverdict, "stats": None,
                 "book_stats": None})
    return out


def attach_other_way(records: list, sec5: dict, protocol: dict | None,
                     metric: str = "val_acc") -> list:
    """``records`` with :func:`other_way`'s rows in each record's ``other_way`` (only the
    choices the record rests on)."""
    if protocol is None:
        return records
    rows = other_way(sec5, protocol, metric)
    return [dataclasses.replace(c, other_way=tuple(r for r in rows.get(c.key, ())
                                                   if r["choice"] in c.depends))
            if c.key in rows else c for c in records]
