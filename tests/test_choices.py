"""The book's choices measured the other way: rows read from runs, on the seeds they cover."""

import pytest

from hypergrad.experiments.analysis import FAILS, HOLDS
from hypergrad.experiments.choices import choice_effects
from tests.test_claims import _sec5


def _runs(prefix, method, by_beta):
    return {f"{prefix}_{method}_beta{b:g}_seed{k}": {"diverged": a is None, "val_acc": a}
            for b, accs in by_beta.items() for k, a in enumerate(accs)}


def test_eta0_rows_compare_the_flipped_method_with_the_book_and_the_constant_eta():
    sec5 = _sec5({"hd": {1e-3: [0.90, 0.91, 0.92, 0.93, 0.90, 0.91],
                         1e-2: [0.80, 0.80, 0.80, 0.80, 0.80, 0.80]},
                  "fixed": [0.95, 0.95, 0.96, 0.96, 0.95, 0.96]})
    # η_0 = 0.1 on the first four seeds only, 5 points better than at η_0 = 0 (β = 1e-3)
    runs = _runs("eta0.1", "hd", {1e-3: [0.95, 0.96, 0.97, 0.98],
                                  1e-2: [0.10, 0.10, 0.10, 0.10]})
    (row,) = choice_effects(sec5, {"runs": runs})
    assert (row["choice"], row["method"], row["flipped_as"]) == ("lr0", "hd", "eta0.1:hd")
    assert row["seeds"] == ["0", "1", "2", "3"]               # the flipped family's seeds
    assert row["effect"]["mean"] == pytest.approx(0.05) and row["effect"]["n"] == 4
    assert row["book"]["mean"] == pytest.approx(0.955 - 0.915)
    assert row["flipped"]["mean"] == pytest.approx(0.955 - 0.965)
    assert row["book"]["verdict"] == HOLDS and row["flipped"]["verdict"] != HOLDS
    assert row["same"] is False


def test_a_seed_with_a_missing_flipped_run_is_left_out_and_one_seed_gives_no_row():
    sec5 = _sec5({"hd": {1e-3: [0.9, 0.9, 0.9]}, "fixed": [0.8, 0.8, 0.8]})
    runs = _runs("valbatch100", "hd", {1e-3: [0.7, 0.7, 0.7]})
    del runs["valbatch100_hd_beta0.001_seed1"]
    (row,) = choice_effects(sec5, {"runs": runs})
    assert row["choice"] == "full-val" and row["seeds"] == ["0", "2"]
    assert row["effect"]["mean"] == pytest.approx(-0.2)
    # the constant η: 10 points below the book's HD, 10 above HD on minibatches
    assert (row["book"]["verdict"], row["flipped"]["verdict"], row["same"]) == (
        FAILS, HOLDS, False)
    del runs["valbatch100_hd_beta0.001_seed2"]
    assert choice_effects(sec5, {"runs": runs}) == []


def test_the_clip_row_compares_the_authors_protocol_with_and_without_it():
    sec5 = _sec5({"hd": {1e-3: [0.9] * 4}, "fixed": [0.9] * 4})
    runs = {}
    for k in range(4):
        for kap, acc in ((1e-9, 0.92), (1e-7, 0.93)):
            runs[f"authors_clip100_kappa{kap:g}_seed{k}"] = {"diverged": False, "val_acc": acc}
        runs[f"authors_noclip_kappa1e-07_seed{k}"] = {"diverged": k == 3, "val_acc": 0.93}
    (row,) = choice_effects(sec5, {"runs": runs})
    assert (row["choice"], row["method"]) == ("clip", "marthe-authors")
    assert row["effect"]["diffs"] == pytest.approx([0.0, 0.0, 0.0, -0.93])


def test_the_table_has_one_row_per_comparison_and_marks_an_interval_off_zero():
    from hypergrad.viz import choice_effects_markdown

    sec5 = _sec5({"hd": {1e-3: [0.90, 0.91, 0.92, 0.93]}, "fixed": [0.95, 0.95, 0.96, 0.96]})
    runs = _runs("eta0.1", "hd", {1e-3: [0.95, 0.96, 0.97, 0.98]})
    text = choice_effects_markdown(choice_effects(sec5, {"runs": runs}))
    head, rule, row = text.splitlines()
    # constant η − HD: 5, 4, 4, 3 points (se 0.41, 95 % CI 2.7 to 5.3); minus HD at
    # η_0 = 0.1: 0, −1, −1, −2 (CI −2.3 to +0.3, no star)
    assert row.split("|")[1:-1] == [" η₀ = 0.1 ", " HD ", " 4 ", " +5.0 ± 0.0 * ",
                                    " +4.0 ± 0.4 * ", " −1.0 ± 0.4 ",
                                    " holds → cannot be decided "]


def _all_methods(prefix, acc, lr=None, diverged=()):
    """Flipped runs of every method of CHOICE_METHODS at one β, the same accuracy per seed."""
    from hypergrad.experiments.choices import CHOICE_METHODS

    runs = {}
    for m in CHOICE_METHODS:
        for k, a in enumerate(acc[m]):
            runs[f"{prefix}_{m}_beta0.001_seed{k}"] = {
                "diverged": (m, k) in diverged, "val_acc": a,
                "lr": (lr or {}).get(m, [0.1, 0.2, 0.05])}
    return runs


def _book(n=4, **acc):
    from hypergrad.experiments.choices import CHOICE_METHODS

    sec5 = _sec5({**{m: {1e-3: acc.get(m, [0.9] * n)} for m in CHOICE_METHODS},
                  "fixed": acc.get("fixed", [0.9] * n)})
    for by_b in sec5["online"].values():          # the book's schedules: decay to 0.01
        for r in by_b["0.001"].values():
            r["lr"] = [0.0, 0.2, 0.01]
    sec5["settings"]["accuracy_threshold"] = 0.5
    sec5["lrs_opt"] = {"0": {"lrs": [0.1, 0.1, 0.1]}}
    return sec5


def test_other_way_reads_each_claim_from_the_book_runs_and_from_the_flipped_ones():
    from hypergrad.experiments.choices import CHOICE_METHODS, other_way

    sec5 = _book(**{"marthe-mu0.99": [0.91, 0.92, 0.91, 0.92]})       # 1.5 points above η
    flip = {m: [0.9] * 4 for m in CHOICE_METHODS}
    flip["marthe-mu0.99"] = [0.86, 0.85, 0.86, 0.85]                  # 4.5 points below
    rows = other_way(sec5, {"runs": _all_methods("eta0.1", flip,
                                                 lr={"hd": [0.1, 0.1, 0.09]})})
    (mu99,) = rows["vs-fixed[marthe-mu0.99]"]
    assert mu99["choice"] == "lr0" and mu99["seeds"] == ["0", "1", "2", "3"]
    assert mu99["book_stats"]["mean"] == pytest.approx(0.015)
    assert mu99["stats"]["mean"] == pytest.approx(-0.045)
    assert (mu99["book_verdict"], mu99["verdict"]) == (HOLDS, FAILS)
    (hd,) = rows["hd-decays"]      # the book's HD ends at 5 % of its peak, the flipped at 90 %
    assert hd["book_value"] == "end/peak 0.05" and hd["value"] == "end/peak 0.90"
    assert hd["book_verdict"] == HOLDS and hd["verdict"] != HOLDS
    assert set(rows) == {"auto-mu-helps", "vs-fixed[marthe-mu0.99]",
                         "vs-fixed[marthe-auto-mu]", "hd-decays", "rtho-lingers"}
    # a flipped family missing one method's runs answers nothing
    runs = _all_methods("valbatch100", flip)
    runs = {k: v for k, v in runs.items() if "_rtho_" not in k}
    assert other_way(sec5, {"runs": runs}) == {}


def test_a_record_carries_only_the_flips_of_choices_it_rests_on():
    from hypergrad.experiments.choices import CHOICE_METHODS, attach_other_way
    from hypergrad.experiments.claims import Claim
    from hypergrad.viz import claims_markdown, other_way_markdown

    sec5 = _book()
    flip = {m: [0.9] * 4 for m in CHOICE_METHODS}
    prot = {"runs": _all_methods("eta0.1", flip) | _all_methods("valbatch100", flip)}
    recs = [Claim("vs-fixed[marthe-auto-mu]", None, "r", "v", HOLDS, ("lr0",)),
            Claim("hd-decays", None, "r", "v", HOLDS, ("lr0", "full-val")),
            Claim("lrs-start", None, "r", "v", HOLDS, ("lrs-surrogate",))]
    out = attach_other_way(recs, sec5, prot)
    assert [r["choice"] for r in out[0].other_way] == ["lr0"]
    assert [r["choice"] for r in out[1].other_way] == ["lr0", "full-val"]
    assert out[2].other_way == ()
    assert attach_other_way(recs, sec5, None) == recs
    table = other_way_markdown(out)
    assert len(table.splitlines()) == 2 + 3               # header, rule, three rows
    assert "| adaptive μ vs constant η | η₀ = 0.1 | 4 | +0.0 ± 0.0 [+0.0, +0.0]" in table
    assert "lr0 (flipped: cannot be decided)" in claims_markdown(out)
