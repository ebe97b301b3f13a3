"""The robustness checks beside Part II's noise rule (hypergrad.experiments.stats) and the exact
t quantile of the rule itself."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import scipy.stats

from hypergrad.experiments import stats as S
from hypergrad.experiments.analysis import FAILS, HOLDS, UNDECIDED, compare, t975


# ----------------------------------------------------------------------------- exact t
@pytest.mark.parametrize(("dof", "q"), [(1, 12.7062), (2, 4.3027), (3, 3.1824), (19, 2.0930),
                                        (29, 2.0452), (100, 1.9840)])
def test_t975_is_exact(dof, q):
    assert t975(dof) == pytest.approx(q, abs=1e-4)


def test_t975_below_one_dof_and_between_table_entries():
    assert t975(0) == math.inf and t975(-3) == math.inf and t975(float("nan")) == math.inf
    assert t975(11) == pytest.approx(2.2010, abs=1e-4)    # the old table said 2.228 (dof 10)
    assert t975(10_000) == pytest.approx(1.9602, abs=1e-4)


def test_compare_reports_its_interval():
    c = compare([0.9, 1.1, 0.9, 1.1])
    assert c["lo"] == pytest.approx(c["mean"] - c["t"] * c["se"])
    assert c["hi"] == pytest.approx(c["mean"] + c["t"] * c["se"])
    assert c["lo"] > 0 and c["sign"] == HOLDS
    for few in ([], [1.0], [1.0, float("nan")]):
        c = compare(few)
        assert math.isnan(c["lo"]) and math.isnan(c["hi"]) and c["sign"] == UNDECIDED
    assert set(compare([1.0, 2.0], [0.0, 1.0])) == {"mean", "se", "t", "n", "sign", "lo", "hi"}


# ----------------------------------------------------------------------------- permutation
def test_sign_flip_p_by_hand():
    # [1, 2, 3]: of the 8 sign patterns only +++ and −−− reach |sum| = 6
    assert S.sign_flip_p([1, 2, 3]) == 2 / 8
    # [1, 1, 1, 1]: |sum| = 4 only for ±(1, 1, 1, 1)
    assert S.sign_flip_p([1, 1, 1, 1]) == 2 / 16
    # [1, 2, 3, −1], |sum| = 5: ±1 ± 2 ± 3 is ±6, ±4, ±2 (one pattern each) or 0 (two);
    # with ∓1 on top, |·| ≥ 5 for ±6 (both) and ±4 (one of two): 2·(2 + 1) = 6 of 16
    assert S.sign_flip_p([1, 2, 3, -1]) == 6 / 16
    assert S.sign_flip_p([0.0, 0.0]) == 1.0 and math.isnan(S.sign_flip_p([]))


def test_sign_flip_p_by_brute_force_and_scipy():
    rng = random.Random(3)
    for n in (2, 5, 8):
        x = [rng.gauss(0.3, 1.0) for _ in range(n)]
        obs = abs(sum(x))
        brute = sum(abs(sum(s * v for s, v in zip(signs, x, strict=True))) >= obs - 1e-12
                    for signs in itertools.product((-1, 1), repeat=n)) / 2 ** n
        assert S.sign_flip_p(x) == pytest.approx(brute, abs=1e-12)
        ref = scipy.stats.permutation_test((np.asarray(x),), np.mean, permutation_type="samples",
                                           n_resamples=np.inf, alternative="two-sided")
        assert S.sign_flip_p(x) == pytest.approx(ref.pvalue, abs=1e-12)


def test_sign_flip_p_beyond_enumeration_is_monte_carlo_and_reproducible():
    x = [0.1 + 0.05 * math.sin(i) for i in range(24)]      # all positive: p is tiny
    p = S.sign_flip_p(x)
    assert p == S.sign_flip_p(x) and p == pytest.approx(1 / (S.MONTE_CARLO_DRAWS + 1), rel=0.5)
    y = [(-1) ** i * (1 + 0.01 * i) for i in range(24)]     # no effect: p is large
    assert S.sign_flip_p(y) > 0.5


# ----------------------------------------------------------------------------- paired
def test_paired_matches_scipy_and_compare():
    rng = random.Random(0)
    for n in (2, 3, 6, 12, 20):
        for shift in (0.0, 0.5, -1.0):
            x = [rng.gauss(shift, 1.0) for _ in range(n)]
            r, c = S.paired(x), compare(x)
            assert r["verdict"] == c["sign"] and r["t"] == c["t"]
            assert (r["lo"], r["hi"], r["mean"], r["se"]) == (c["lo"], c["hi"], c["mean"], c["se"])
            assert r["sd"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
            assert r["se"] == pytest.approx(np.std(x, ddof=1) / math.sqrt(n), rel=1e-12)
            want = scipy.stats.wilcoxon(x, zero_method="wilcox").pvalue
            assert r["wilcoxon_p"] == pytest.approx(want, rel=1e-12)
            assert r["agree"] == (r["verdict"] == r["robust"])


def test_paired_robust_verdict_and_zeros():
    up = S.paired([0.01, 0.02, 0.015, 0.03, 0.012, 0.018, 0.011])
    assert up["verdict"] == HOLDS and up["robust"] == HOLDS and up["agree"]
    assert up["wilcoxon_p"] == pytest.approx(2 / 2 ** 7)
    down = S.paired([-v for v in [0.01, 0.02, 0.015, 0.03, 0.012, 0.018, 0.011]])
    assert down["verdict"] == FAILS and down["robust"] == FAILS
    # five seeds all up: t holds, but the rank test cannot go below 2/32 = 0.0625
    five = S.paired([1.0, 1.1, 0.9, 1.05, 0.95])
    assert five["verdict"] == HOLDS and five["robust"] == UNDECIDED and not five["agree"]
    assert five["wilcoxon_p"] == pytest.approx(0.0625) and five["perm_p"] == pytest.approx(0.0625)
    # zeros carry no sign (zero_method='wilcox'); all zeros: p = 1
    zeros = S.paired([0.0, 0.0, 0.0, 0.0])
    assert zeros["wilcoxon_p"] == 1.0 and zeros["perm_p"] == 1.0 and zeros["robust"] == UNDECIDED
    some = [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert S.paired(some)["wilcoxon_p"] == pytest.approx(
        scipy.stats.wilcoxon(some, zero_method="wilcox").pvalue)


def test_paired_with_fewer_than_two_values_is_undecided():
    for few in ([], [0.3], [0.3, None, float("nan"), math.inf]):
        r = S.paired(few)
        assert r["verdict"] == UNDECIDED and r["robust"] == UNDECIDED
        assert all(math.isnan(r[k]) for k in ("lo", "hi", "sd", "se"))
    assert S.paired([0.3])["mean"] == 0.3 and S.paired([0.3])["n"] == 1


def test_paired_drops_non_finite_values_as_compare_does():
    x = [0.5, None, 0.6, float("nan"), 0.55, -math.inf, 0.52]
    r, c = S.paired(x), compare(x)
    assert r["n"] == c["n"] == 4 and r["mean"] == c["mean"] and r["verdict"] == c["sign"]
    assert r == S.paired([0.5, 0.6, 0.55, 0.52])
    with pytest.raises(ValueError):
        S.paired([1.0, 2.0], alpha=1.5)


def test_paired_alpha_changes_the_interval():
    x = [0.1, 0.3, 0.2, 0.25, 0.15]
    wide, narrow = S.paired(x, alpha=0.01), S.paired(x, alpha=0.2)
    assert wide["lo"] < S.paired(x)["lo"] < narrow["lo"]
    assert wide["t"] == pytest.approx(scipy.stats.t.ppf(0.995, 4))


# ----------------------------------------------------------------------------- leave one out
def test_leave_one_out_finds_the_seed_that_carries_the_verdict():
    # without seed "s3" the spread collapses and the difference holds; with it, it is noise
    x = [1.0, 1.1, 0.9, -3.0, 1.05]
    loo = S.leave_one_out(x, seeds=["s0", "s1", "s2", "s3", "s4"])
    assert loo["verdict"] == UNDECIDED and compare(x)["sign"] == UNDECIDED
    assert loo["flips"] == ["s3"] and not loo["stable"]
    assert loo["verdicts"]["s3"] == HOLDS
    assert loo["counts"] == {"holds": 1, "fails": 0, "undecided": 4}


def test_leave_one_out_stable_and_non_finite():
    loo = S.leave_one_out([1.0, 1.1, 0.9, 1.05, float("nan")], seeds=[0, 1, 2, 3, 4])
    assert loo["stable"] and loo["verdict"] == HOLDS and loo["n"] == 4
    assert set(loo["verdicts"]) == {0, 1, 2, 3}                   # the NaN seed is dropped
    two = S.leave_one_out([1.0, 1.01])                            # one seed left: undecided
    assert two["verdict"] == HOLDS and two["flips"] == [0, 1] and not two["stable"]
    with pytest.raises(ValueError):
        S.leave_one_out([1.0, 2.0], seeds=[0])


# ----------------------------------------------------------------------------- cross-fitting
def test_cross_fit_never_scores_a_seed_with_a_choice_made_on_it():
    seeds = [7, 3, 1, 5, 0, 2]                                    # sorted: A = 0 1 2, B = 3 5 7
    calls = []

    def score(beta, seed):                                        # best β: 1 on A, 3 on B
        calls.append((beta, seed))
        best = 1 if seed < 3 else 3
        return 0.9 - 0.1 * abs(beta - best) + 0.001 * seed

    r = S.cross_fit(score, [1, 2, 3], seeds)
    assert len(calls) == len(set(calls)) == 3 * 6                # each run scored once
    assert r["halves"] == {"A": [0, 1, 2], "B": [3, 5, 7]}
    assert r["chosen"] == {"A": 1, "B": 3} and not r["same"]
    assert list(r["held_out"]) == [0, 1, 2, 3, 5, 7]              # every seed once, sorted
    for k, v in r["held_out"].items():
        used = r["chosen"]["B" if k in r["halves"]["A"] else "A"]
        own = r["chosen"]["A" if k in r["halves"]["A"] else "B"]
        assert v == score(used, k) and used != own                # chosen on the other half
    assert r["held_out"][0] == pytest.approx(0.9 - 0.2)           # β = 3 on a seed of A
    assert r["fit"]["A"][0] == max(r["fit"]["A"])


def test_cross_fit_split_ties_and_errors():
    r = S.cross_fit(lambda c, k: 0.5, ["a", "b"], [0, 1, 2, 3], split=([0, 3], [1, 2]))
    assert r["chosen"] == {"A": "a", "B": "a"} and r["same"]      # ties: the first candidate
    with pytest.raises(ValueError):
        S.cross_fit(lambda c, k: 0.5, ["a"], [0, 1, 2], split=([0, 1], [1, 2]))
    with pytest.raises(ValueError):
        S.cross_fit(lambda c, k: 0.5, ["a"], [0])
    with pytest.raises(ValueError, match="diverged"):
        S.cross_fit(lambda c, k: float("nan"), ["a"], [0, 1])


def test_cross_fit_paired_differences():
    seeds = list(range(6))

    def acc_a(beta, seed):
        return 0.8 + (0.05 if beta == (1 if seed < 3 else 2) else 0.0)

    def acc_b(eta, seed):
        return 0.78 + 0.001 * seed

    r = S.cross_fit_paired(acc_a, [1, 2], acc_b, [0.1], seeds)
    assert r["seeds"] == seeds and r["a"]["chosen"] == {"A": 1, "B": 2}
    # each seed is scored with the β its own half did not choose: no +0.05 anywhere
    assert r["diffs"] == pytest.approx([0.02 - 0.001 * k for k in seeds])
    assert S.paired(r["diffs"])["verdict"] == HOLDS


# ----------------------------------------------------------------------------- text
def test_summary_text():
    r = S.paired([0.01, 0.015, 0.012, 0.02, 0.009, 0.011, 0.013])
    text = S.summary_text(r)
    assert text.startswith("+0.013 ± 0.001 (95 % CI +0.009 to +0.016; Wilcoxon p = 0.016")
    assert text.endswith("stable under leave-one-out)")
    assert S.summary_text(r, scale=100).startswith("+1.3 ± 0.1 (95 % CI +0.9 to +1.6;")
    neg = S.summary_text(S.paired([-0.01, 0.02, -0.03, -0.02]))
    assert neg.startswith("−0.01") and "-" not in neg.replace("leave-one-out", "")
    flip = S.summary_text(S.paired([1.0, 1.1, 0.9, -3.0, 1.05]), digits=2)
    assert flip.endswith("flips without seed 3)")
    assert S.summary_text(S.paired([0.5])) == "+0.500 (one seed: no interval)"
