"""Robustness checks beside Part II's noise rule: a paired difference over seeds, read three ways.

Part II decides a claim with one rule, :func:`~hypergrad.experiments.analysis.compare` (a
difference counts when its 95 % Student-t interval excludes zero). The functions here put
beside that verdict what a sceptical reader asks of it, on the same per-seed paired
differences (lists of floats, one per seed):

* :func:`paired`: mean, standard deviation, standard error and exact 95 % interval; the
  Wilcoxon signed-rank test and an exact sign-flip permutation test of the mean; the t verdict
  (exactly :func:`.compare`'s), the robust verdict (Wilcoxon) and whether the two agree.
* :func:`leave_one_out`: the t verdict with each seed left out in turn (is it carried by one
  seed?).
* :func:`cross_fit`, :func:`cross_fit_paired`: a hyperparameter (β) chosen on half of the seeds
  and scored on the other half, both ways, so that no seed's score comes from a choice made
  on that seed.
* :func:`summary_text`: one line for the book's prose and tables.

``±`` in the book always means one standard error over seeds, ``sd/√n`` (:data:`PLUS_MINUS`
says so in words); intervals are written out as "95 % CI lo to hi".

As in :func:`.compare`, ``None`` and non-finite values (NaN, ±inf) are dropped before anything
is computed, and ``n`` counts the values left. A seed whose run diverged should therefore be
scored by the caller (the book scores its accuracy 0), not passed as NaN, or it silently leaves
the comparison.

With few seeds the rank and sign tests cannot reach ``p < 0.05`` at all: their smallest
two-sided p-value is ``2 / 2^n``, 0.0625 for five seeds, 0.031 for six. Their verdict is then
undecided whatever the data, which is a property of the tests, not evidence against a claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np

from hypergrad.experiments.analysis import FAILS, HOLDS, UNDECIDED, compare, t975

__all__ = ['PLUS_MINUS', 'paired', 'sign_flip_p', 'leave_one_out', 'cross_fit',
           'cross_fit_paired', 'summary_text']

#: What ``±`` means wherever the book prints it (say it once, near the first table).
PLUS_MINUS = ("± is one standard error of the mean over seeds (the standard deviation over "
              "seeds divided by √n); a 95 % interval is Student's t quantile (n − 1 degrees of "
              "freedom) times it.")

#: Exact enumeration of the sign patterns up to this many values, Monte Carlo beyond.
EXACT_MAX_N = 20
#: Random sign patterns drawn beyond :data:`EXACT_MAX_N` values (fixed seed: reproducible).
MONTE_CARLO_DRAWS = 100_000

_NAMES = {HOLDS: "holds", FAILS: "fails", UNDECIDED: "undecided"}


def _finite(values: Iterable) -> list[float]:
    """``values`` as floats without ``None`` and non-finite ones, as :func:`.compare` keeps them."""
    return [float(x) for x in values if x is not None and math.isfinite(float(x))]


def sign_flip_p(diffs: Sequence[float], *, draws: int = MONTE_CARLO_DRAWS, seed: int = 0) -> float:
    """The two-sided p-value of a sign-flip permutation test of ``mean(diffs) = 0``.

    Under the null hypothesis each paired difference is as likely to have either sign, so the
    reference distribution is the mean over all ``2^n`` sign patterns; ``p`` is the fraction of
    patterns whose ``|mean|`` reaches the observed one (to a relative ``1e-9``, so that float
    rounding cannot drop the observed pattern itself). For ``n ≤ 20`` all patterns are
    enumerated (in chunks, exact); beyond, ``draws`` random patterns from a generator seeded
    with ``seed`` give ``(hits + 1) / (draws + 1)``. ``1.0`` for all zeros, NaN for none.
    """
    x = np.asarray(_finite(diffs), dtype=np.float64)
    n = len(x)
    obs = abs(float(x.sum()))
    tol = 1e-9 * float(np.abs(x).sum())
    if n == 0:
        return float("nan")
    if obs <= tol:
        return 1.0
    if n <= EXACT_MAX_N:
        bits = np.arange(n, dtype=np.int64)
        total, hits, chunk = 1 << n, 0, 1 << 16
        for start in range(0, total, chunk):
            idx = np.arange(start, min(start + chunk, total), dtype=np.int64)
            signs = ((idx[:, None] >> bits) & 1) * 2 - 1            # (chunk, n) of ±1
            hits += int((np.abs(signs @ x) >= obs - tol).sum())
        return hits / total
    rng = np.random.default_rng(seed)
    hits, left = 0, draws
    while left > 0:
        m = min(left, 1 << 14)
        signs = rng.integers(0, 2, size=(m, n)) * 2 - 1
        hits += int((np.abs(signs @ x) >= obs - tol).sum())
        left -= m
    return (hits + 1) / (draws + 1)


def _wilcoxon_p(x: list[float]) -> float:
    """Two-sided Wilcoxon signed-rank p (``zero_method='wilcox'``); 1 when all are zero."""
    if not any(v != 0 for v in x):
        return 1.0 if x else float("nan")
    from scipy.stats import wilcoxon

    return float(wilcoxon(x, zero_method="wilcox", alternative="two-sided").pvalue)


def _median(x: list[float]) -> float:
    return float(np.median(x)) if x else float("nan")


def paired(diffs: Iterable[float], *, alpha: float = 0.05) -> dict:
    """Everything the book reports about one list of per-seed paired differences.

    Returns a dict with

    * ``n``, ``mean``, ``sd`` (sample standard deviation), ``se`` (``sd/√n``, the book's
      ``±``), ``t`` (Student's two-sided ``1 − alpha`` quantile, ``n − 1`` degrees of
      freedom) and ``lo``, ``hi``, the ``1 − alpha`` interval ``mean ∓ t × se`` of the mean;
    * ``median``; ``wilcoxon_p``, the two-sided p of the Wilcoxon signed-rank test
      (``scipy.stats.wilcoxon``, ``zero_method='wilcox'``: a zero difference, e.g. two runs
      that both diverged, carries no sign and is dropped, Wilcoxon's own treatment; for up to
      13 values scipy then computes the p exactly, by enumerating signs, even with ties; all
      zeros give ``p = 1``); ``perm_p``, the exact sign-flip permutation p of the mean
      (:func:`sign_flip_p`);
    * ``verdict``: the t verdict, ``HOLDS`` when ``lo > 0``, ``FAILS`` when ``hi < 0``, else
      ``UNDECIDED``; at ``alpha = 0.05`` it is :func:`.compare`'s, computed the same way;
    * ``robust``: the Wilcoxon verdict, ``HOLDS``/``FAILS`` when ``wilcoxon_p < alpha`` and
      the median is above/below zero, else ``UNDECIDED``; ``agree``: ``verdict == robust``;
    * ``loo``: :func:`leave_one_out` of the same differences (``loo["stable"]``).

    With fewer than two values the noise cannot be estimated: ``sd``, ``se``, ``lo`` and ``hi``
    are NaN and both verdicts ``UNDECIDED``. ``None`` and non-finite values are dropped first.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    x = _finite(diffs)
    n, c = len(x), compare(x)
    mean, se = c["mean"], c["se"]
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1)) if n >= 2 else float("nan")
    if n < 2:
        t = math.inf
    elif alpha == 0.05:
        t = t975(n - 1)                                      # exactly compare()'s quantile
    else:
        from scipy.stats import t as student

        t = float(student.ppf(1 - alpha / 2, n - 1))
    lo, hi = (mean - t * se, mean + t * se) if n >= 2 else (float("nan"), float("nan"))
    verdict = HOLDS if lo > 0 else FAILS if hi < 0 else UNDECIDED
    med, wp = _median(x), _wilcoxon_p(x)
    robust = (UNDECIDED if n < 2 or not wp < alpha else
              HOLDS if med > 0 else FAILS if med < 0 else UNDECIDED)
    return {"n": n, "mean": mean, "sd": sd, "se": se, "t": t, "lo": lo, "hi": hi,
            "alpha": alpha, "median": med, "wilcoxon_p": wp, "perm_p": sign_flip_p(x),
            "verdict": verdict, "robust": robust, "agree": verdict == robust,
            "loo": leave_one_out(x)}


def leave_one_out(diffs: Sequence[float], seeds: Sequence | None = None) -> dict:
    """The t verdict (:func:`.compare`) with each seed left out in turn.

    ``seeds`` names the entries of ``diffs`` (default: their positions); ``None`` and
    non-finite entries are dropped first, as :func:`.compare` drops them, and are never "left
    out". Returns ``verdict`` (on all seeds), ``verdicts`` (seed → verdict without it),
    ``counts`` (``{"holds", "fails", "undecided"}`` over those), ``stable`` (every
    leave-one-out verdict equals the full one; true for an empty list) and ``flips`` (the seeds
    whose omission changes the verdict, in order).
    """
    diffs = list(diffs)
    names = list(range(len(diffs))) if seeds is None else list(seeds)
    if len(names) != len(diffs):
        raise ValueError(f"{len(names)} seed names for {len(diffs)} differences")
    kept = [(s, float(d)) for s, d in zip(names, diffs, strict=True)
            if d is not None and math.isfinite(float(d))]
    full = compare([d for _, d in kept])["sign"]
    verdicts = {s: compare([d for j, (_, d) in enumerate(kept) if j != i])["sign"]
                for i, (s, _) in enumerate(kept)}
    counts = {name: sum(v == key for v in verdicts.values()) for key, name in _NAMES.items()}
    flips = [s for s, v in verdicts.items() if v != full]
    return {"verdict": full, "n": len(kept), "verdicts": verdicts, "counts": counts,
            "stable": not flips, "flips": flips}


def _halves(seeds: Iterable[Hashable], split) -> tuple[list, list]:
    ordered = sorted(seeds)
    if len(set(ordered)) != len(ordered):
        raise ValueError("the seeds must be distinct")
    if split is None:
        h = len(ordered) // 2
        a, b = ordered[:h], ordered[h:]
    else:
        a, b = sorted(split[0]), sorted(split[1])
        if set(a) & set(b) or sorted(a + b) != ordered:
            raise ValueError("split must be two disjoint halves that together are the seeds")
    if not a or not b:
        raise ValueError(f"cross-fitting needs two non-empty halves, got {a} and {b}")
    return a, b


def cross_fit(score: Callable[[object, Hashable], float], candidates: Sequence,
              seeds: Iterable[Hashable], split: tuple[Iterable, Iterable] | None = None) -> dict:
    """Choose a hyperparameter on one half of the seeds, report it on the other, both ways.

    ``score(candidate, seed)`` is the quantity to maximise (an accuracy); it must be finite:
    the caller decides what a diverged run scores (the book: accuracy 0). The seeds are
    sorted and split into half ``A`` (the first ``n // 2``) and half ``B`` (the rest) unless
    ``split = (A, B)`` is given. On each half the candidate with the highest mean score is
    chosen (ties: the first in ``candidates``), and each seed of the *other* half is scored
    with it, so that no seed's reported score comes from a choice made on that seed.

    Returns ``chosen`` (``{"A": candidate chosen on A, used for B; "B": ... used for A}``),
    ``held_out`` (seed → score, every seed once, in sorted order), ``same`` (both halves
    chose the same candidate), ``halves`` (``{"A": [...], "B": [...]}``) and ``fit`` (per
    half, the mean score of every candidate on it: how clear the choice was).
    """
    candidates = list(candidates)
    if not candidates:
        raise ValueError("no candidates to choose from")
    a, b = _halves(seeds, split)
    cache: dict = {}

    def s(i: int, seed) -> float:
        if (i, seed) not in cache:
            v = float(score(candidates[i], seed))
            if not math.isfinite(v):
                raise ValueError(f"score({candidates[i]!r}, {seed!r}) = {v}: score a diverged "
                                 "run with a finite value (the book: accuracy 0)")
            cache[i, seed] = v
        return cache[i, seed]

    fit, chosen = {}, {}
    for name, half in (("A", a), ("B", b)):
        means = [sum(s(i, k) for k in half) / len(half) for i in range(len(candidates))]
        fit[name] = means
        chosen[name] = max(range(len(candidates)), key=lambda i, m=means: (m[i], -i))
    held = {k: s(chosen["B"], k) for k in a} | {k: s(chosen["A"], k) for k in b}
    return {"chosen": {h: candidates[i] for h, i in chosen.items()},
            "held_out": {k: held[k] for k in sorted(held)}, "same": chosen["A"] == chosen["B"],
            "halves": {"A": a, "B": b}, "fit": fit}


def cross_fit_paired(score_a: Callable[[object, Hashable], float], cands_a: Sequence,
                     score_b: Callable[[object, Hashable], float], cands_b: Sequence,
                     seeds: Iterable[Hashable], split: tuple[Iterable, Iterable] | None = None
                     ) -> dict:
    """Per-seed held-out differences between method ``a`` and method ``b``, each method's
    hyperparameter chosen by :func:`cross_fit` on the half of the seeds that does not contain
    the seed (the same halves for both). Returns ``seeds`` (sorted), ``diffs`` (``a − b`` per
    seed, in that order: feed them to :func:`paired`) and the two :func:`cross_fit` results
    ``a`` and ``b``."""
    seeds = sorted(seeds)
    a, b = _halves(seeds, split)
    fa = cross_fit(score_a, cands_a, seeds, (a, b))
    fb = cross_fit(score_b, cands_b, seeds, (a, b))
    return {"seeds": seeds, "diffs": [fa["held_out"][k] - fb["held_out"][k] for k in seeds],
            "a": fa, "b": fb}


def _num(x: float, decimals: int, sign: bool = True) -> str:
    text = f"{x:{'+' if sign else ''}.{decimals}f}"
    return text.replace("-", "−")


def summary_text(res: dict, *, scale: float = 1.0, digits: int | None = None) -> str:
    """One line for :func:`paired`'s result ``res``, in the units of the differences times
    ``scale`` (``scale=100``: accuracy in points), e.g. ``"+0.012 ± 0.004 (95 % CI +0.004 to
    +0.020; Wilcoxon p = 0.03; stable under leave-one-out)"``; ``−`` is a Unicode minus.
    ``digits`` decimals (default: enough to show the standard error to one significant
    digit, at most 6; 3 when there is none)."""
    mean, se = scale * res["mean"], scale * res["se"]
    if digits is None:
        digits = min(6, max(0, -math.floor(math.log10(se)))) if math.isfinite(se) and se > 0 \
            else 3
    if not math.isfinite(mean):
        return "— (no seeds)"
    if res["n"] < 2:
        return f"{_num(mean, digits)} (one seed: no interval)"
    level = round(100 * (1 - res.get("alpha", 0.05)))
    p = res["wilcoxon_p"]
    ptext = "p < 0.001" if p < 0.001 else f"p = {p:.2g}"
    loo = res.get("loo")
    if loo is None:
        stab = ""
    elif loo["stable"]:
        stab = "; stable under leave-one-out"
    else:
        who = ", ".join(str(s) for s in loo["flips"])
        stab = f"; flips without seed{'s' if len(loo['flips']) > 1 else ''} {who}"
    return (f"{_num(mean, digits)} ± {_num(se, digits, sign=False)} ({level} % CI "
            f"{_num(scale * res['lo'], digits)} to {_num(scale * res['hi'], digits)}; "
            f"Wilcoxon {ptext}{stab})")
