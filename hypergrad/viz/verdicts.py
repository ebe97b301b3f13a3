"""The claims of Part II rendered: one table (the paper's words, the measurement, the verdict,
the book's choices it rests on) and one sentence of what held and what did not."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hypergrad.experiments.analysis import FAILS, HOLDS, md_table, sci
from hypergrad.experiments.claims import CHOICES, Claim, verdict_word
from hypergrad.experiments.settings import label

__all__ = ["other_way_markdown", "choice_effects_markdown", "claims_markdown", "verdict_sentence", "choices_markdown", "protocol_text", "pm",
           "NAMES", "forest_figure", "metrics_markdown"]

#: A short name of each record (for figures and cross-references).
NAMES = {
    "lrs-start": "LRS-OPT: seed-specific start",
    "lrs-end": "LRS-OPT: decay at the end",
    "hd-decays": "HD decays quickly",
    "rtho-lingers": "RTHO lingers or diverges",
    "mu-helps": "a fixed μ helps at every β",
    "auto-mu-helps": "adaptive μ vs the best fixed (μ, β)",
    "marthe-improves[marthe]": "MARTHE vs adaptive μ (book's reading)",
    "marthe-improves[marthe-authors]": "MARTHE vs adaptive μ (authors' protocol)",
    "marthe-insensitive[marthe]": "MARTHE insensitive to β₀ (book's reading)",
    "kappa-broad": "good κ broader than good β",
    "vs-fixed[marthe-authors]": "MARTHE (authors') vs constant η",
    "vs-fixed[marthe-mu0.99]": "μ = 0.99 vs constant η",
    "vs-fixed[marthe-auto-mu]": "adaptive μ vs constant η",
    "mu-mimics": "fixed μ mimics LRS-OPT at few β",
    "marthe-captures": "MARTHE captures LRS-OPT's shape",
    "marthe-captures[marthe-authors]": "MARTHE (authors') captures LRS-OPT's shape",
    "rises-early[marthe-authors]": "MARTHE (authors') rises early, decays sharply",
    "cost": "online runs cost a fraction of LRS-OPT",
    "kappa-diverges": "too large a κ diverges early",
    "decimate": "decimated κ vs cross-fitted κ",
    "rises-early": "MARTHE rises early, decays sharply",
    "longer-horizon": "longer horizons: Δₜ's sign right more often",
    "lrs-beats-fixed": "LRS-OPT vs constant η",
    "grid-interior": "an interior μ beats HD and RTHO",
    "grid-band": "the good β moves with μ",
    "grid-auto": "adaptive μ near the best fixed μ",
    "grid-flat": "adaptive β narrows the range over β₀",
}

_ROBUST = {HOLDS: "holds", FAILS: "does not hold"}


def _verdict_cell(c: Claim) -> str:
    word = f"**{verdict_word(c.verdict)}**"
    st = c.stats
    if st is not None and not st.get("agree", True):
        word += f" (Wilcoxon: {_ROBUST.get(st['robust'], 'cannot be decided')})"
    return word


def claims_markdown(records: Sequence[Claim], names: dict[str, str] | None = None) -> str:
    """A Markdown table of ``records``: the paper's words (once for several readings of the
    same sentence; "—" for a reading the paper does not state in words), what is measured and
    its value, the verdict (with Wilcoxon's where it differs from the t interval's), and the
    choices it rests on."""
    rows, last = [], None
    for c in records:
        if c.quote is None:
            said = "—"
        elif c.quote == last:
            said = "(the same sentence)"
        else:
            said = f"“{c.quote}”"
        last = c.quote
        rows.append([said, f"{c.reading}: {c.value}", _verdict_cell(c), _rests_on(c)])
    return md_table(["the paper", "measured", "verdict", "rests on"], rows)


def _rests_on(c: Claim) -> str:
    """The choices a record rests on; one measured the other way carries the verdict then."""
    flipped = {r["choice"]: r for r in c.other_way}
    return ", ".join(f"{d} (flipped: {verdict_word(flipped[d]['verdict'])})" if d in flipped
                     else d for d in c.depends) or "—"


def other_way_markdown(records: Sequence[Claim]) -> str:
    """Every reading of ``records`` measured with one of its choices flipped
    (:func:`~hypergrad.experiments.choices.other_way`): the reading, the flip, the seeds, and
    the value and verdict from the book's runs and from the flipped runs on those seeds."""
    def cell(value, st, verdict):
        if st is not None:               # a paired difference: mean ± SE and its interval
            value = (f"{100 * st['mean']:+.1f} ± {100 * st['se']:.1f} "
                     f"[{100 * st['lo']:+.1f}, {100 * st['hi']:+.1f}]").replace("-", "−")
        return f"{value}: {verdict_word(verdict)}"

    rows = []
    for c in records:
        for r in c.other_way:
            moved = r["verdict"] != r["book_verdict"]
            rows.append([NAMES.get(c.key, c.key), FLIPS[r["choice"]], str(len(r["seeds"])),
                         cell(r["book_value"], r["book_stats"], r["book_verdict"]),
                         cell(r["value"], r["stats"], r["verdict"]),
                         "**moves**" if moved else "the same"])
    return md_table(["reading", "flipped", "seeds", "the book's choice", "flipped",
                     "verdict"], rows)


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
    names = {"marthe": "the book's reading of adaptive β (β₀ on the axis, κ decimated per "
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
        parts.append(f"Clipping Δₜ at ±100 against no clip ({rec['clip']['n']} seeds with "
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
    if not math.isfinite(cmp["mean"]):
        return "— (no pair of runs yet)"
    if not math.isfinite(cmp["se"]):
        return f"{scale * cmp['mean']:{fmt}} (no spread: too few seeds)"
    return f"{scale * cmp['mean']:{fmt}} ± {scale * cmp['se']:{fmt}}".replace("-", "−")


def forest_figure(records: Sequence[Claim], scale: float = 100.0, unit: str = "points"):
    """The accuracy comparisons among ``records`` (those with paired statistics, in
    accuracy): mean difference with its 95 % interval, one row each, zero marked."""
    import numpy as np

    from hypergrad.viz.figures import new_figure

    rows = [c for c in records if c.stats is not None and c.key != "kappa-broad"
            and math.isfinite(c.stats["mean"])]
    fig = new_figure(height=0.42 * max(len(rows), 1) + 1.3)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    for yi, c in zip(y, rows, strict=True):
        st = c.stats
        colour = {HOLDS: "#2a7d2a", FAILS: "#b22222"}.get(c.verdict, "0.35")
        lo, hi = st["lo"], st["hi"]
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([scale * lo, scale * hi], [yi, yi], color=colour, lw=2)
        ax.plot([scale * st["mean"]], [yi], "o", color=colour, ms=6)
    ax.axvline(0, color="0.5", lw=1, ls="--")
    ax.set_yticks(y, [f"{NAMES.get(c.key, c.key)} (n = {c.stats['n']})" for c in rows],
                  fontsize=10)
    ax.tick_params(axis="x", labelsize=10)
    ax.set_xlabel(f"difference in final validation accuracy ({unit}); 95 % interval",
                  fontsize=10)
    return fig


def metrics_markdown(val: Sequence[Claim], test: Sequence[Claim]) -> str:
    """The comparisons read on validation and on test accuracy, side by side."""
    by_key = {c.key: c for c in test}
    rows = [[NAMES.get(c.key, c.key), c.value, verdict_word(c.verdict),
             by_key[c.key].value, verdict_word(by_key[c.key].verdict)]
            for c in val if c.stats is not None and c.key in by_key and c.key != "kappa-broad"]
    return md_table(["comparison", "validation accuracy", "verdict", "test accuracy",
                     "verdict"], rows)


#: the flip of each choice in a few words (for a table's column)
FLIPS = {"lr0": "η₀ = 0.1", "full-val": "E on a minibatch", "clip": "Δₜ not clipped"}


def _short(st: dict) -> str:
    """"+1.2 ± 0.3" in points, with the verdict's sign: ``*`` when the 95 % interval
    excludes 0."""
    text = f"{100 * st['mean']:+.1f} ± {100 * st['se']:.1f}".replace("-", "−")
    return text + (" *" if st["lo"] > 0 or st["hi"] < 0 else "")


def choice_effects_markdown(rows: Sequence[dict]) -> str:
    """The rows of :func:`~hypergrad.experiments.choices.choice_effects` as one table, in
    points of validation accuracy (mean ± standard error over the seeds; ``*``: the 95 %
    interval excludes 0), or a sentence when no choice has been run the other way."""
    if not rows:
        return "No choice has runs the other way on two complete seeds yet."
    out = []
    for r in rows:
        verdicts = (verdict_word(r["book"]["verdict"]), verdict_word(r["flipped"]["verdict"]))
        said = "the same" if r["same"] else f"{verdicts[0]} → {verdicts[1]}"
        out.append([FLIPS[r["choice"]], label(r["method"]), str(len(r["seeds"])),
                    _short(r["effect"]), _short(r["book"]), _short(r["flipped"]), said])
    return md_table(["flipped", "method", "seeds", "flipped − book's", "constant η − book's",
                     "constant η − flipped", "verdict: constant η better"], out)
