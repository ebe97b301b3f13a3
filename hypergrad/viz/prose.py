"""Numbers into sentences and table rows: what chapter 5 (Section 5 on MNIST) says of its runs.

Every function here is pure: it takes the plain dicts that ``hypergrad.experiments`` returns
(a result, its settings, a noise measurement, claim records) and returns a string (a sentence
or a Markdown table), so that the chapter's cells keep only the computation that is the lesson
and glue what these functions write. Nothing here trains or draws.

* the settings of the experiment: :func:`settings_table`, :func:`its_text`;
* LRS-OPT's two readings and its convergence: :func:`start_text`, :func:`converged_text`,
  :func:`drop_text`;
* the comparison of LRS-OPT's outer steps (a benchmark's smoothed curves):
  :func:`low_hits_text`, :func:`final_gap_text`, :func:`final_verdict_text`,
  :func:`above_text`, :func:`best_reached_text`, :func:`held_out_text`,
  :func:`nesterov_text`, :func:`bench_rough_text`;
* the online methods: :func:`accuracy_cell`, :func:`accuracy_table`, :func:`mean_accuracy`;
* the quality of the online estimates: :func:`quality_table`, :func:`quality_verdict`,
  :func:`quality_text`;
* the paper-scale runs: :func:`seeds_status_text`, :func:`kappa_text`, :func:`kappa_table`,
  :func:`paper_summary`;
* LRS-OPT's noise: :func:`rough_text`, :func:`smoothing_effect`, :func:`snr_at`,
  :func:`averaged_text`, :func:`noise_text`, :func:`noise_summary`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hypergrad.experiments.analysis import (
    FAILS,
    HOLDS,
    UNDECIDED,
    compare,
    md_table,
    plural,
    roughness,
    sci,
    signal_to_noise,
    verdict,
)
from hypergrad.experiments.claims import Claim
from hypergrad.experiments.settings import label
from hypergrad.lrs_opt import OPTIMIZERS
from hypergrad.viz.verdicts import pm, verdict_sentence

__all__ = ["settings_table", "its_text", "start_text", "converged_text", "drop_text",
           "low_hits_text", "final_gap_text", "final_verdict_text", "above_text",
           "best_reached_text", "held_out_text", "nesterov_text", "bench_rough_text",
           "accuracy_cell", "accuracy_table", "mean_accuracy", "quality_table",
           "quality_verdict", "quality_text", "seeds_status_text", "kappa_text",
           "kappa_table", "paper_summary", "rough_text", "smoothing_effect", "snr_at",
           "averaged_text", "noise_text", "noise_summary"]


# ------------------------------------------------------------------------- the settings
def _lrs(d: dict, key: str):
    return d["lrs_opt"].get(key)


#: The rows of :func:`settings_table`: a name and how to read it off a settings dict.
_SETTING_ROWS = (
    ("network (layer sizes)", lambda d: "–".join(map(str, d["sizes"]))),
    ("train / validation images", lambda d: f"{d['n_train']} / {d['n_val']}"),
    ("minibatch, horizon T", lambda d: f"{d['batch_size']}, {d['T']}"),
    ("seeds (online / LRS-OPT)",
     lambda d: f"{len(d['online']['seeds'])} / {len(d['lrs_opt']['seeds'])}"),
    ("LRS-OPT iterations", lambda d: _lrs(d, "iterations")),
    ("LRS-OPT noise: draws, smoothing window",
     lambda d: f"{d['noise']['draws']}, {d['noise']['window']} steps"),
    ("LRS-OPT outer step", lambda d: (_lrs(d, "optimizer") or "pgd").upper()),
    ("LRS-OPT step α, cap", lambda d: f"{_lrs(d, 'step_size')}, {_lrs(d, 'max_lr')}"),
    ("values of β", lambda d: ", ".join(map(sci, d["online"]["betas"]))),
    ("fixed μ of MARTHE", lambda d: ", ".join(f"{m:g}" for m in d["online"]["fixed_mus"])),
    ("online η₀ / fixed η", lambda d: f"{d['lr0']} / {d['fixed_lr']}"),
    ("accuracy threshold", lambda d: d["accuracy_threshold"]),
)


def settings_table(shown: dict, paper: dict) -> str:
    """The settings of ``mnist-schedules`` at the page's scale (``shown``) and at the paper's,
    side by side, as a Markdown table."""
    return md_table(["setting", "shown here", "paper scale"],
                    [[name, get(shown), get(paper)] for name, get in _SETTING_ROWS])


def its_text(settings: dict) -> str:
    """``"1000 iterations of projected gradient descent"``: LRS-OPT's outer loop."""
    lo = settings["lrs_opt"]
    name = {"pgd": "projected gradient descent", "adam": "projected Adam"}
    step = lo.get("optimizer", "pgd")
    return f"{lo['iterations']} iterations of {name.get(step, step)}"


# ---------------------------------------------------------------------------- LRS-OPT
def start_text(lo: dict, iterations: int, paper_iterations: int, n_seeds: int) -> str:
    """The verdict on "a seed-specific start, then a plateau" from ``lo`` (the ``"lrs"`` part
    of :func:`~hypergrad.experiments.section5_claims.mnist_claims`), and why it cannot be tested when it
    cannot: LRS-OPT ran ``iterations`` (the paper ``paper_iterations``) on ``n_seeds``."""
    if lo["v_start"] != UNDECIDED:
        return verdict(lo["v_start"])
    why = (f"after {iterations} iterations (the paper makes {paper_iterations}) LRS-OPT "
           "has not converged" if not lo["converged"]
           else f"{n_seeds} seeds are too few to compare their spread step by step")
    start = (f"cannot be tested at this scale: {why}. A difference between seeds at the "
             "start then says nothing about where the optimisation ends, and the plateau "
             "that the paper describes is not tested")
    if lo["spread_head"] is not None:
        start += (". For the record, the spread between seeds relative to the mean is "
                  f"{lo['spread_head']:.2f} over the first fifth and "
                  f"{lo['spread_middle']:.2f} over the middle")
    return start


def converged_text(converged: bool) -> str:
    """Whether LRS-OPT has converged, as the end of "at this scale LRS-OPT …"."""
    if converged:
        return "has converged"
    return ("has not converged: the running mean of the objective is still falling beyond "
            "its noise")


def drop_text(lo: dict) -> str:
    """The verdict on "the learning rate decays at the end", untested before convergence."""
    if lo["converged"]:
        return verdict(lo["v_drop"])
    return "cannot be tested at this scale, since LRS-OPT has not converged"


# ------------------------------------------------- LRS-OPT's outer steps, side by side
def low_hits_text(hits: dict) -> str:
    """How many iterations Adam and PGD take to reach the lower target (``hits`` maps
    ``"adam"`` and ``"pgd"`` to a count)."""
    return (f"{hits['adam']} for Adam and {hits['pgd']} for PGD "
            f"({hits['pgd'] / hits['adam']:.1f} times as many)")


def final_gap_text(gap: float, se: float) -> str:
    """``"0.0012, less than"``: the gap between two final values, against ``se``."""
    return f"{gap:.4f}, " + ("less than" if gap < se else "more than")


def final_verdict_text(gap: float, se: float) -> str:
    """Whether a gap between two smoothed values is beyond the noise (twice ``se``)."""
    if gap < 2 * se:
        return "neither method ends lower than the other beyond the noise"
    return "the difference is beyond the noise"


def above_text(above: dict) -> str:
    """The fractions of PGD's and Adam's later iterations back above the target."""
    return (f"{above['pgd']:.0%} of PGD's later iterations and "
            f"{above['adam']:.0%} of Adam's")


def best_reached_text(reached: int | None, iterations: int) -> str:
    """Whether (and after how many iterations) a method reaches a value, out of
    ``iterations``."""
    if reached:
        return f"reaches it after {reached}"
    return f"does not reach it in {iterations}"


def held_out_text(pgd: float, adam: float) -> str:
    """Two schedules' ``f_T`` on held-out minibatches."""
    return f"{pgd:.4f} (PGD) and {adam:.4f} (Adam)"


def nesterov_text(reached: int | None) -> str:
    """Whether Nesterov momentum reached the target, and when."""
    if not reached:
        return "did not reach the target"
    return f"reached the target after {reached} iterations"


def bench_rough_text(runs: dict, settings: dict) -> str:
    """The roughness (:func:`~hypergrad.experiments.analysis.roughness`) of the final
    schedules of PGD and Adam in a benchmark's ``runs``, at ``settings``' cap and window."""
    w, cap = settings["noise"]["window"], settings["lrs_opt"]["max_lr"]
    r = {k: roughness(runs[k]["lrs"], cap, w) for k in ("pgd", "adam")}
    return (f"the paper's projected gradient descent after {runs['pgd']['iterations']}"
            f" iterations leaves a schedule whose ηₜ changes by "
            f"{r['pgd']['step_change']:.3f} per step ({r['pgd']['residual_sd']:.3f} "
            f"about its {w}-step mean), and projected Adam after "
            f"{runs['adam']['iterations']} iterations {r['adam']['step_change']:.3f} "
            f"({r['adam']['residual_sd']:.3f})")


# ------------------------------------------------------------------ the online methods
def accuracy_cell(acc: float | None, kept: int, runs: int) -> str:
    """``"0.912 (3/4)"``: a mean accuracy over the kept runs, and how many were kept."""
    return f"{acc:.3f} ({kept}/{runs})" if acc is not None else f"— (0/{runs})"


def accuracy_table(summary: dict, betas: Sequence[float],
                   methods: Sequence[str] | None = None) -> str:
    """The mean accuracy of each of ``methods`` (all of ``summary``'s by default; ``summary``
    from :func:`~hypergrad.experiments.section5_claims.summarize_online`) at each β, as a Markdown table."""
    rows = []
    for m in summary["methods"] if methods is None else methods:
        sm = summary["methods"][m]
        cells = zip(sm["mean"], sm["kept"], sm["runs"], strict=True)
        rows.append([label(m)] + [accuracy_cell(*c) for c in cells])
    return md_table(["method"] + [f"β = {sci(b)}" for b in betas], rows)


def mean_accuracy(runs: dict) -> float | None:
    """The mean final validation accuracy of ``runs`` (by seed), ``None`` without one."""
    accs = [r["val_acc"] for r in runs.values() if r.get("val_acc") is not None]
    return float(np.mean(accs)) if accs else None


# --------------------------------------------------------- the quality of the estimates
def quality_table(replay: dict, own: dict) -> str:
    """Sign agreement and cosines of each estimate along the common (fixed-η) trajectory
    (``replay``) and along each method's own run (``own``; diverged runs left out)."""
    def row(name, e):
        return [name, f"{e['sign']:.2f}", f"{e['cosine']:.2f}", f"{e['cosine_trim']:.2f}"]

    rows = [row("fixed-η trajectory, " + ("adaptive μ" if key == "auto" else f"μ = {key}"), e)
            for key, e in replay["estimates"].items()]
    rows += [row(f"own run, {label(m)}", e) for m, e in own.items() if not e.get("diverged")]
    return md_table(["estimator", "sign agreement", "cosine", "cosine without the last tenth"],
                    rows)


def quality_verdict(v: int) -> str:
    """What the verdict ``v`` on "longer horizons estimate the sign better" says, as the end
    of "the longer-horizon estimates …"."""
    if v == HOLDS:
        return ("agree with the exact hypergradient more often than HD's one-step estimate "
                "does. This is the paper's argument for long horizons, measured directly: a "
                "greedy estimate sees the immediate cost of a larger step but not its later "
                "benefit")
    if v == FAILS:
        return ("agree with the exact hypergradient less often than HD's one-step estimate "
                "does, so here the paper's argument for long horizons is not borne out")
    return ("cannot be told apart from HD's one-step estimate on this trajectory: the "
            "difference is within the noise of a fraction over this many steps, so the "
            "paper's argument for long horizons cannot be decided at this scale")


def quality_text(where: str, records: Sequence[Claim]) -> str | None:
    """``"on this page: <value>"`` of the ``longer-horizon`` record, ``None`` without one."""
    r = next((r for r in records if r.key == "longer-horizon"), None)
    return f"{where}: {r.value}" if r and r.value != "—" else None


# -------------------------------------------------------------------- the paper's scale
#: The parts of the paper-scale run whose complete seeds :func:`seeds_status_text` counts.
_PARTS = {"online": "online methods", "lrs_opt": "LRS-OPT", "fixed": "fixed-η baseline"}


def seeds_status_text(progress: dict, any_complete: bool) -> str:
    """How many seeds of each part of a committed run are complete (``progress`` of
    :func:`~hypergrad.experiments.committed.committed`), or that none is."""
    if not any_complete:
        return "No seed of the paper-scale run is complete yet."
    complete = "; ".join(f"{name}: {plural(len(progress['seeds'].get(k, [])), 'seed')}"
                         for k, name in _PARTS.items())
    return f"Seeds complete: {complete}."


def kappa_text(kp: dict) -> str:
    """What the step-size selection of κ did (the ``"kappa"`` part of
    :func:`~hypergrad.experiments.section5_claims.mnist_claims`); empty without a run."""
    if not kp["n"]:
        return ""
    return ("The step-size selection of Section 4 (MARTHE with adaptive β) divided "
            f"κ at least once in {kp['reran']} of its {kp['n']} runs, and tried "
            f"{kp['mean']:.2f} values of κ per run on average.")


def kappa_table(runs: dict, kappas: Sequence[float], picked: Sequence[float | None]) -> str:
    """The final accuracy of each κ (rows) and seed (columns) of the authors' protocol
    (``runs[seed][κ]``), and the κ the paper's decimation picks for each seed."""
    rows = [[f"{k:g}"] + ["diverged" if by_k[k]["diverged"] else f"{by_k[k]['val_acc']:.3f}"
                          for by_k in runs.values()]
            for k in kappas]
    rows.append(["decimation picks"] + [f"{k:g}" if k else "—" for k in picked])
    return md_table(["κ"] + [f"seed {seed}" for seed in runs], rows)


def paper_summary(records: Sequence[Claim]) -> str:
    """The tally of ``records``, and the paper's words of those that do not hold."""
    fails = [r.quote for r in records if r.verdict == FAILS and r.quote]
    said = "; ".join(f"“{q}”" for q in dict.fromkeys(fails))
    tail = f" The paper's words that do not reproduce there: {said}." if fails else ""
    return verdict_sentence(records) + tail


# -------------------------------------------------------------------- LRS-OPT's noise
def rough_text(result: dict) -> str:
    """The roughness of a result's LRS-OPT schedules, mean over its seeds."""
    st = result["settings"]
    cap, w = st["lrs_opt"]["max_lr"], st["noise"]["window"]
    rs = [roughness(r["lrs"], cap, w) for r in result["lrs_opt"].values()]
    if not rs:
        return "no LRS-OPT seed is complete yet"
    m = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
    return (f"ηₜ changes by {m['step_change']:.3f} per step on average, around "
            f"a mean of {m['mean']:.3f}; its standard deviation about its "
            f"{w}-step mean is {m['residual_sd']:.3f}, and {m['at_bound']:.0%} "
            f"of its steps sit at a bound (0 or the cap {cap:g}) "
            f"({plural(len(rs), 'seed')})")


def smoothing_effect(sm: dict) -> tuple[dict, list[float], str]:
    """The paired comparison ``f_T(smoothed) - f_T(final)`` over the draws of a noise
    measurement's ``"smoothed"`` part (as :func:`~hypergrad.experiments.analysis.compare`
    gives it), the accuracy differences, and the verdict in words."""
    pairs = zip(sm["final_val_loss"], sm["smoothed_val_loss"], strict=True)
    d = compare([b - a for a, b in pairs if a is not None and b is not None])
    accs = zip(sm["final_val_acc"], sm["smoothed_val_acc"], strict=True)
    acc = [b - a for a, b in accs if a is not None and b is not None]
    effect = {HOLDS: "smoothing raises the objective beyond the noise",
              FAILS: "smoothing lowers the objective beyond the noise",
              UNDECIDED: "the draws resolve no difference"}[d["sign"]]
    return d, acc, effect


def snr_at(nz: dict, key: str) -> dict | None:
    """:func:`~hypergrad.experiments.analysis.signal_to_noise` of the noise measurement
    ``nz`` at ``key`` (``"start"`` or ``"final"``), ``None`` with fewer than two draws."""
    k = nz[key]["draws"]
    if k < 2:
        return None
    return signal_to_noise(nz[key]["mean"], nz[key]["sd"], k)


def averaged_text(lo: dict) -> str:
    """How many draws one outer step of LRS-OPT (``lo``, its settings) averages."""
    if lo.get("optimizer", "pgd") == "adam":
        b1 = OPTIMIZERS["adam"]["beta1"]  # the library's default, as run
        return f"Adam's first moment averages about {1 / (1 - b1):.0f} draws per step"
    return "each projected-gradient step follows one draw"


def noise_text(result: dict) -> str:
    """What the noise measurement of a result found, in words."""
    st = result["settings"]
    if not result.get("noise"):
        return "the noise measurement is not complete yet (it follows its LRS-OPT seed)."
    seed, nz = next(iter(result["noise"].items()))
    lo, a, f = st["lrs_opt"], snr_at(nz, "start"), snr_at(nz, "final")
    text = (f"at the starting schedule (ηₜ = {st['fixed_lr']:g}), one draw's "
            f"hypergradient ∂f/∂ηₜ has a median signal-to-noise ratio of "
            f"{a['snr']:.2f} per "
            f"step, {nz['start']['draws']} draws resolve its sign at "
            f"{a['resolved']:.0%} of the steps, and an average would need a "
            f"median of {sci(a['draws_needed'])} draws to resolve it "
            f"({averaged_text(lo)}). ")
    if f is not None:
        text += (f"At the final schedule after {lo['iterations']} iterations, the "
                 f"draws resolve the sign at {f['resolved']:.0%} of the steps "
                 f"(median ratio {f['snr']:.2f}; where no step has a signal, the "
                 "rule resolves 5% by chance alone): at the others, the objective "
                 "is flat to within the noise, and nothing holds ηₜ in place. ")
    d, acc, effect = smoothing_effect(nz["smoothed"])
    return text + (f"Smoothing the final schedule over {st['noise']['window']} steps "
                   f"changes the objective by {pm(d, fmt='.4f')} over the "
                   f"{d['n']} paired "
                   f"draws, and the validation accuracy by "
                   f"{float(np.mean(acc)) * 100:+.2f} points on average: {effect} "
                   f"(seed {seed}).")


def noise_summary(result: dict | None, where: str) -> str:
    """One sentence for a summary: the final schedule's resolved steps and what smoothing it
    does; empty without a measurement at the final schedule."""
    if not result or not result.get("noise"):
        return ""
    nz = next(iter(result["noise"].values()))
    r = snr_at(nz, "final")
    if r is None:
        return ""
    d, _, effect = smoothing_effect(nz["smoothed"])
    return (f"{where}, {nz['final']['draws']} fresh draws resolve the sign of the "
            f"final schedule's hypergradient at {r['resolved']:.0%} of its steps, "
            f"and smoothing it changes the objective by {pm(d, fmt='.4f')} "
            f"({effect}).")
