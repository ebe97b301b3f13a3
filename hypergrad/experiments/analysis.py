"""The analyses of the chapters' claims: one noise rule (compare/verdict), distances, lingering, and the prose numbers."""

from __future__ import annotations

import functools
import math

import torch

__all__ = ['hypergradient_agreement', 'HOLDS', 'FAILS', 'UNDECIDED', 'sci', 'plural', 'md_table', 't975', 'compare', 'combine', 'verdict', 'tally', 'normalised_distance', 'linger', 'centred_mean', 'roughness', 'signal_to_noise', 'PAR_MARGIN']


def _cosine(a: list[float], b: list[float]) -> float | None:
    x, y = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    n = x.norm() * y.norm()
    return float(x @ y / n) if n > 0 else None


def hypergradient_agreement(estimate: list[float], exact: list[float], start: int = 1) -> dict:
    """How well online estimates ``Δ_t`` agree with the exact ``∂f_T/∂η_t`` (``t ≥ start``).

    ``cosine``: cosine similarity of the two sequences (scale-free; a value near 1 means the
    estimates point where the exact hypergradient points, step by step). ``sign``: the fraction
    of steps, among those where both are non-zero, at which they have the same sign, i.e. at
    which the update ``η_t = η_{t-1} − β Δ_t`` moves ``η_t`` downhill on ``f_T``.
    ``cosine_trim``: the cosine without the last tenth of the steps, whose exact hypergradient
    (set by the last few updates alone) is often far larger than the rest and would dominate.
    """
    d = torch.as_tensor(estimate[start:], dtype=torch.float64)
    g = torch.as_tensor(exact[start:len(estimate)], dtype=torch.float64)
    both = (d != 0) & (g != 0)
    sign = float((torch.sign(d[both]) == torch.sign(g[both])).double().mean()) if both.any() else None
    keep = len(d) - len(exact) // 10
    return {"cosine": _cosine(d.tolist(), g.tolist()),
            "cosine_trim": _cosine(d[:keep].tolist(), g[:keep].tolist()), "sign": sign,
            "steps": int(both.sum())}


# =========================================================================== analyses
# Measurements and verdicts on the results of Part II, used by chapters 5–7 (book layer: they
# read results only and never train). A verdict is one of three: the claim holds, it does not
# hold, or the scale cannot decide it. The rule for "beyond noise" is stated once, in
# :func:`compare` (a 95 % confidence interval over seeds), so that a verdict cannot flip on a
# difference that the seeds cannot resolve.
HOLDS, FAILS, UNDECIDED = 1, -1, 0


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci(x: float | None, digits: int = 3) -> str:
    """A number as the book prints it: ``3e-07`` → ``3×10⁻⁷``, ``1e-05`` → ``10⁻⁵``, ``0.25``
    → ``0.25``, ``1234`` → ``1230`` (plain when ``0.01 ≤ |x| < 10⁴``, with ``digits``
    significant digits); ``None`` and NaN read "—", ±inf "∞"."""
    if x is None or math.isnan(x := float(x)):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{float(f'{x:.{digits}g}'):g}".replace("-", "−")
    mant, exp = f"{x:.{digits - 1}e}".split("e")
    mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
    power = "10" + str(int(exp)).translate(_SUPERSCRIPT)
    if mant in ("1", "-1"):
        return ("−" if mant == "-1" else "") + power
    return f"{mant.replace('-', '−')}×{power}"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 seed"``, ``"2 seeds"``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def md_table(header: list[str], rows: list[list]) -> str:
    """A Markdown (GFM) table; cells are converted with ``str``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


#: The rounded table that :func:`t975` read before it was exact (a dof between entries took the
#: next smaller entry's, 2.0 beyond 30); no longer used by any rule, kept for comparisons.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t975(dof: float) -> float:
    """The two-sided 95 % quantile of Student's t with ``dof`` degrees of freedom, exact
    (``scipy.stats.t.ppf(0.975, dof)``: 12.706 for one, 4.303 for two, 2.093 for 19, → 1.960):
    ``inf`` below one degree of freedom, where there is no noise estimate."""
    if not dof >= 1:                     # also NaN
        return math.inf
    return _t_ppf(0.975, float(dof))


@functools.lru_cache(maxsize=1024)
def _t_ppf(q: float, dof: float) -> float:
    # imported on first use, so that importing the experiments stays light
    from scipy.stats import t

    return float(t.ppf(q, dof))


def compare(diffs, reference=None) -> dict:
    """Is ``mean(diffs)`` (minus ``mean(reference)``, unpaired, when given) beyond noise?

    The rule of Part II: a difference counts when it lies outside its 95 % confidence
    interval around zero, ``t × se``, with ``se`` the standard error over seeds (sample
    standard deviation / √n; for two unpaired groups the two errors add in quadrature) and
    ``t`` Student's quantile with ``n − 1`` degrees of freedom (the smaller group's). With two
    seeds ``t`` is 12.7: only a large effect on which both seeds agree counts, so that a
    verdict cannot flip on the run-to-run noise of float arithmetic. With fewer than two
    values per group the noise cannot be estimated and the answer is ``UNDECIDED``.
    Returns ``{"mean", "se", "t", "n", "sign", "lo", "hi"}`` with ``sign`` +1 (above zero
    beyond noise), −1 (below) or 0 (within noise, or undecidable), and ``lo``, ``hi`` the 95 %
    interval of the (mean) difference, ``mean ∓ t × se`` (NaN when undecidable). ``None`` and
    non-finite values are dropped, and ``n`` counts the values of ``diffs`` that are left.
    """
    a = [float(x) for x in diffs if x is not None and math.isfinite(float(x))]
    groups = [a] if reference is None else [
        a, [float(x) for x in reference if x is not None and math.isfinite(float(x))]]
    if any(len(g) == 0 for g in groups):
        return {"mean": float("nan"), "se": float("nan"), "t": math.inf, "n": len(a),
                "sign": UNDECIDED, "lo": float("nan"), "hi": float("nan")}
    mean = sum(groups[0]) / len(groups[0]) - (
        sum(groups[1]) / len(groups[1]) if len(groups) > 1 else 0.0)
    if any(len(g) < 2 for g in groups):
        return {"mean": mean, "se": float("nan"), "t": math.inf, "n": len(a),
                "sign": UNDECIDED, "lo": float("nan"), "hi": float("nan")}
    var = 0.0
    for g in groups:
        m = sum(g) / len(g)
        var += sum((x - m) ** 2 for x in g) / (len(g) - 1) / len(g)
    se = math.sqrt(var)
    t = t975(min(len(g) for g in groups) - 1)
    lo, hi = mean - t * se, mean + t * se
    sign = HOLDS if lo > 0 else FAILS if hi < 0 else UNDECIDED
    return {"mean": mean, "se": se, "t": t, "n": len(a), "sign": sign, "lo": lo, "hi": hi}


def combine(signs) -> int:
    """All parts hold → holds; any part fails → fails; otherwise undecided."""
    signs = list(signs)
    if any(s == FAILS for s in signs):
        return FAILS
    return HOLDS if signs and all(s == HOLDS for s in signs) else UNDECIDED


def verdict(sign: int, undecided: str = "cannot be decided at this scale") -> str:
    return {HOLDS: "holds here", FAILS: "does not hold here", UNDECIDED: undecided}[sign]


def tally(signs, what: str = "claims") -> str:
    """How many of the verdicts ``signs`` hold, fail, are undecided, in words: ``"1 of the 4
    readings holds, 1 does not and 2 cannot be decided"``."""
    signs = list(signs)
    n_hold, n_fail, n_open = (signs.count(v) for v in (HOLDS, FAILS, UNDECIDED))
    return (f"{n_hold} of the {len(signs)} {what} {'holds' if n_hold == 1 else 'hold'}, "
            f"{n_fail} {'does' if n_fail == 1 else 'do'} not and {n_open} cannot be decided")


def _acc(run: dict) -> float:
    """A run's final validation accuracy for paired comparisons: 0 when it diverged."""
    return 0.0 if run.get("diverged") or run.get("val_acc") is None else float(run["val_acc"])


def normalised_distance(a, b) -> float:
    """RMS difference of two schedules, each divided by its mean (their shapes, not scales);
    ``nan`` when a schedule is all zero."""
    x = torch.as_tensor(a, dtype=torch.float64)
    y = torch.as_tensor(b, dtype=torch.float64)
    if x.mean() <= 0 or y.mean() <= 0:
        return float("nan")
    return float(((x / x.mean() - y / y.mean()) ** 2).mean().sqrt())


def linger(lr) -> float:
    """How much a schedule lingers: the mean of its last tenth over its maximum (1 = it never
    came down from its peak, 0 = it ends at zero)."""
    x = torch.as_tensor(lr, dtype=torch.float64)
    peak = float(x.max())
    return float(x[-max(1, len(x) // 10):].mean()) / peak if peak > 0 else float("nan")


def centred_mean(values, window: int) -> torch.Tensor:
    """The mean of ``values`` over a window of ``window`` steps centred on each step (narrower
    at the ends, so that a shape is not shifted the way a trailing mean shifts it)."""
    x = torch.as_tensor(values, dtype=torch.float64)
    h, n = max(0, window // 2), len(x)
    c = torch.cat([x.new_zeros(1), x.cumsum(0)])
    idx = torch.arange(n)
    lo, hi = (idx - h).clamp(0, n), (idx + h + 1).clamp(0, n)
    return (c[hi] - c[lo]) / (hi - lo)


def roughness(lr, max_lr: float, window: int = 25) -> dict:
    """How much of a schedule is step-to-step noise rather than shape: ``step_change``, the
    mean ``|η_{t+1} - η_t|``; ``mean``, the mean ``η_t``; ``residual_sd``, the standard
    deviation of ``η_t`` around its centred mean over ``window`` steps (narrower at the ends);
    ``at_bound``, the fraction of steps at ``0`` or at ``max_lr`` (to 1e-6)."""
    x = torch.as_tensor(lr, dtype=torch.float64)
    n, smooth = len(x), centred_mean(x, window)
    return {"step_change": float((x[1:] - x[:-1]).abs().mean()) if n > 1 else 0.0,
            "mean": float(x.mean()), "residual_sd": float((x - smooth).pow(2).mean().sqrt()),
            "at_bound": float(((x <= 1e-6) | (x >= max_lr - 1e-6)).double().mean())}


def _median(x: torch.Tensor) -> float:
    """The median of a 1-D tensor (the mean of the middle two for an even length)."""
    v, n = x.sort().values, len(x)
    return float(v[n // 2]) if n % 2 else float((v[n // 2 - 1] + v[n // 2]) / 2)


def signal_to_noise(mean, sd, draws: int) -> dict:
    """How much of a stochastic hypergradient is signal, from its per-step ``mean`` and
    sample standard deviation ``sd`` over ``draws`` independent minibatch draws.

    ``snr``: the median over steps of ``|mean_t| / sd_t``, one draw's signal-to-noise ratio;
    ``resolved``: the fraction of steps whose sign the ``draws`` resolve, i.e. whose mean lies
    outside its 95 % interval around zero (``t × sd_t/√draws``, the rule of :func:`compare`);
    ``draws_needed``: the median over steps of ``(1.96 sd_t / |mean_t|)²``, the draws an
    average needs for that interval to exclude zero (``inf`` where the mean is 0). Steps with
    ``sd_t = 0`` (a learning rate the objective does not see) are left out."""
    m = torch.as_tensor(mean, dtype=torch.float64)
    s = torch.as_tensor(sd, dtype=torch.float64)
    if m.shape != s.shape or m.ndim != 1:
        raise ValueError(f"mean and sd must be 1-D of one length, got {tuple(m.shape)} and "
                         f"{tuple(s.shape)}")
    if draws < 2:
        raise ValueError(f"the noise needs at least 2 draws, got {draws}")
    keep = s > 0
    m, s = m[keep].abs(), s[keep]
    if len(m) == 0:
        return {"snr": float("nan"), "resolved": float("nan"), "draws_needed": float("nan"),
                "steps": 0}
    need = torch.where(m > 0, (1.96 * s / m.clamp_min(1e-300)) ** 2, torch.full_like(m, math.inf))
    return {"snr": _median(m / s),
            "resolved": float((m > t975(draws - 1) * s / math.sqrt(draws)).double().mean()),
            "draws_needed": _median(need), "steps": int(len(m))}


#: ``"on par"`` (chapter 6) — a gap in test accuracy below half a point never counts as worse.
PAR_MARGIN = 0.005
