"""The practitioner's guide (``hypergrad.viz.guide``) says what the numbers say: a
comparison is worded by its paired interval, the methods it names are exactly those that
qualify, divergences are counted over every run, and the tuning cost is grid × seeds × cost."""

import pytest

from hypergrad.experiments.lr_free import LR_FREE, METHODS
from hypergrad.viz import guide as gv


def _run(acc, diverged=False):
    return {"test_acc": None if diverged else acc, "val_acc": None if diverged else acc,
            "diverged": diverged, "diverged_at": 3 if diverged else None,
            "curve": {"step": [5, 10], "test_acc": [acc / 2, acc], "val_acc": [acc / 2, acc]}}


def _res(accs: dict, diverged: dict | None = None) -> dict:
    """A chapter-12 result over 4 seeds: ``accs[m]`` the per-seed accuracies."""
    diverged = diverged or {}
    report = {m: [_run(a, i in diverged.get(m, ())) for i, a in enumerate(v)]
              for m, v in accs.items()}
    return {"settings": {"T": 10, "checkpoint_every": 5, "seeds": [0, 1, 2, 3],
                         "select_seeds": [7, 8], "grids": {"fixed": [0.1, 0.3, 1.0]}},
            "report": report,
            "runs": {m: {"default": dict(enumerate(rs))} for m, rs in report.items()}}


BASE = [0.90, 0.91, 0.92, 0.93]


def test_versus_is_worded_by_its_interval():
    res = _res({"fixed": BASE, "sf-sgd": [a + 0.02 for a in BASE],
                "dog": [a - 0.03 for a in BASE],
                "prodigy": [0.91, 0.90, 0.93, 0.92]})
    assert gv.versus(res, "sf-sgd", "fixed")["mean"] == pytest.approx(0.02)
    assert "ahead of" in gv.versus_text(res, "sf-sgd", "fixed")
    assert "behind" in gv.versus_text(res, "dog", "fixed")
    assert "within seed noise" in gv.versus_text(res, "prodigy", "fixed")
    assert "+2.0 points" in gv.versus_text(res, "sf-sgd", "fixed")


def test_matches_and_fragile_name_exactly_the_qualifying_methods():
    good = _res({"fixed": BASE, "sf-sgd": BASE, "dog": [a - 0.03 for a in BASE],
                 "prodigy": BASE}, diverged={"prodigy": (0, 1)})
    other = _res({"fixed": BASE, "sf-sgd": [a + 0.01 for a in BASE], "dog": BASE,
                  "prodigy": BASE})
    tasks = {"lr-free": (good, {}, {}), "lr-free-cnn": (other, {}, {})}
    # DoG is behind on one task; Prodigy's two zeros in four seeds leave an interval that
    # reaches above 0: level within seed noise, so it is named
    assert gv.matches(tasks, ["sf-sgd", "dog", "prodigy"]) == ["sf-sgd", "prodigy"]
    assert gv.fragile(tasks) == ["prodigy"]                  # 2 of 4 diverged
    assert gv.fragile(tasks, share=0.75) == []
    assert gv.names([]) == "none"
    assert gv.names(["sf-sgd", "dog", "prodigy"]) == "Schedule-Free SGD, DoG and Prodigy"


def test_divergences_are_counted_over_every_run_and_the_grid():
    res = _res({"fixed": BASE, "prodigy": BASE}, diverged={"prodigy": (1,)})
    sens = {"settings": {"seeds": [0, 1, 2]},
            "panels": {"fixed": {"betas": [1e-4, 1e-3], "mus": [0.0, 1.0, "auto"],
                                 "kappa": None, "diverged": [[0, 0], [1, 3], [0, 2]]}}}
    rows = gv.divergence_rows({"lr-free": (res, {}, {})}, sens)
    by = {(r["where"], r["method"]): r for r in rows}
    assert by[("MLP, SGD", "Prodigy")]["diverged"] == 1
    assert by[("MLP, SGD", "Prodigy")]["runs"] == 4
    rtho = by[("Appendix C grid (MLP)", "RTHO")]
    assert (rtho["diverged"], rtho["runs"]) == (4, 6)
    assert by[("Appendix C grid (MLP)", "HD")]["diverged"] == 0
    assert by[("Appendix C grid (MLP)", "MARTHE (adaptive μ)")]["diverged"] == 2
    table = gv.divergence_markdown(rows)
    assert "| Appendix C grid (MLP) | RTHO | fixed β, 2 values | 4 of 6 |" in table


def test_tuning_cost_and_the_evidence_table():
    res = _res({m: BASE for m in METHODS})
    res["settings"]["grids"] = {m: [1, 2, 3] for m in ("fixed", "marthe-auto-mu")}
    cost = {"fixed": 1.0, "marthe-auto-mu": 4.5, "sf-sgd": 1.1}
    assert gv.tuning_cost(res, cost) == {"fixed": 6.0, "marthe-auto-mu": 27.0}
    res["report"]["sf-sgd"] = [_run(a + 0.05) for a in BASE]
    memory = {m: {"state_over_params": 2.0} for m in METHODS}
    table = gv.evidence_markdown(res, cost, memory).splitlines()
    assert len(table) == 2 + len(METHODS)
    assert table[2].startswith("| Schedule-Free SGD |")       # best first
    # equal time: MARTHE gets 10 / 4.5 = 2 steps, before its first record: 0
    marthe = next(r for r in table if r.startswith("| MARTHE (adaptive μ) |"))
    assert "| 0.0 [0.0, 0.0] |" in marthe
    assert gv.best(res) == "sf-sgd" and gv.best(res, LR_FREE[2:]) in LR_FREE
