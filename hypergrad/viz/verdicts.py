"""The claims of Part II rendered: one table (the paper's words, the measurement, the verdict,
the book's choices it rests on) and one sentence of what held and what did not."""

from __future__ import annotations

from collections.abc import Sequence

from hypergrad.experiments.analysis import FAILS, HOLDS, md_table, sci
from hypergrad.experiments.claims import CHOICES, Claim, verdict_word

__all__ = ["claims_markdown", "verdict_sentence", "choices_markdown", "protocol_text", "pm"]

_ROBUST = {HOLDS: "holds", FAILS: "does not hold"}


def _verdict_cell(c: Claim) -> str:
    word = f"**{verdict_word(c.verdict)}**"
    st = c.stats
    if st is not None and not st.get("agree", True):
        word += f" (Wilcoxon: {_ROBUST.get(st['robust'], 'cannot be decided')})"
    return word


def claims_markdown(records: Sequence[Claim], names: dict[str, str] | None = None) -> str:
    """A Markdown table of ``records``: the paper's words (or the reading, for a claim the
    paper does not state in words), what is measured and its value, the verdict (with
    Wilcoxon's where it differs from the t interval's), and the choices it rests on."""
    names = names or {}
    rows = []
    for c in records:
        said = f"“{c.quote}”" if c.quote else f"({names.get(c.key, c.reading)})"
        rows.append([said, f"{c.reading}: {c.value}", _verdict_cell(c),
                     ", ".join(c.depends) or "—"])
    return md_table(["the paper", "measured", "verdict", "rests on"], rows)


def choices_markdown(records: Sequence[Claim]) -> str:
    """The book's choices named in ``records``' last column, one line each."""
    used = sorted({d for c in records for d in c.depends})
    return "\n".join(f"- `{d}`: {CHOICES[d]}" for d in used)


def verdict_sentence(records: Sequence[Claim]) -> str:
    """"Of N claims, a hold, b do not and c cannot be decided." """
    v = [c.verdict for c in records]
    return (f"Of {len(v)} readings, {v.count(HOLDS)} hold, {v.count(FAILS)} do not hold and "
            f"{len(v) - v.count(HOLDS) - v.count(FAILS)} cannot be decided.")


def _pts(st: dict | None) -> str:
    from hypergrad.experiments.stats import summary_text

    return "—" if st is None else summary_text(st, scale=100.0) + " points"


def protocol_text(rec: dict) -> str:
    """What the authors' protocol measured (:func:`~hypergrad.experiments.claims.protocol_records`),
    in sentences; every number from ``rec``."""
    n = len(rec["seeds"])
    if n < 2 or rec.get("authors") is None:
        return ("The paper-scale runs of the authors' protocol have fewer than two complete "
                "seeds so far: nothing is read from them yet.")
    a, vs = rec["authors"], rec["versus"]
    ch = a["chosen"]
    same = (f"both halves of the seeds choose κ = {sci(ch['A'])}" if a["same"] else
            f"the first half of the seeds chooses κ = {sci(ch['A'])}, the second "
            f"κ = {sci(ch['B'])}")
    mean_best = a["means"][a["best_all"]]
    parts = [f"On the {n} seeds complete so far, the best κ of the grid is "
             f"{sci(a['best_all'])} (mean accuracy {mean_best:.3f}); {same}, and each half "
             "is scored with the other half's choice."]
    names = {"marthe": "the book's reading of adaptive β (β_0 on the axis, κ decimated per "
                       "run)", "fixed": "the constant η = 0.1",
             "marthe-auto-mu": "adaptive μ with a fixed β"}
    for key, name in names.items():
        if vs.get(key) is not None:
            parts.append(f"Against {name}, each with its hyperparameter chosen on the other "
                         f"half: {_pts(vs[key])}.")
    d = rec["decimation"]
    picks = sorted({k for k in d["kappa"].values() if k is not None})
    parts.append("The paper's decimation from the top of the grid picks κ = "
                 + ", ".join(sci(k) for k in picks)
                 + f" on these seeds; against the cross-fitted κ: {_pts(d['vs_selected'])}.")
    if rec.get("clip") is not None:
        parts.append(f"Clipping Δ_t at ±100 against no clip ({rec['clip']['n']} seeds with "
                     f"both): {_pts(rec['clip'])}.")
    b = rec["broad"]
    if b.get("marthe-authors") is not None and b.get("marthe-auto-mu") is not None:
        parts.append(f"The good values (mean accuracy within a point of the best) span "
                     f"{b['marthe-authors']:.1f} decades of κ, against "
                     f"{b['marthe-auto-mu']:.1f} decades of β for adaptive μ and "
                     f"{(b.get('marthe-mu0.99') or 0):.1f} for μ = 0.99 (the grids differ).")
    return " ".join(parts)


def pm(cmp: dict, scale: float = 1.0, fmt: str = ".3f") -> str:
    """"mean ± standard error" of a :func:`~hypergrad.experiments.analysis.compare` result
    (± is one standard error over seeds), or why there is none."""
    import math

    if not math.isfinite(cmp["mean"]):
        return "— (no pair of runs yet)"
    if not math.isfinite(cmp["se"]):
        return f"{scale * cmp['mean']:{fmt}} (no spread: too few seeds)"
    return f"{scale * cmp['mean']:{fmt}} ± {scale * cmp['se']:{fmt}}".replace("-", "−")
