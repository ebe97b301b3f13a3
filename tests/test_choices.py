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
