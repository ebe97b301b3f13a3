"""The analyses of Part II (measurements and verdicts read off results) and their rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypergrad import experiments as ex
from hypergrad.schedules import FIXED_SCHEDULES
from tests.helpers import HAS_MNIST, needs_mnist, run_mnist_tiny

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- formatting
@pytest.mark.parametrize(("x", "text"), [
    (3e-7, "3×10⁻⁷"), (1e-5, "10⁻⁵"), (2.5e-4, "2.5×10⁻⁴"), (-1e-3, "−10⁻³"), (0.25, "0.25"),
    (0.0, "0"), (0.3, "0.3"), (12345.0, "1.23×10⁴"), (None, "—"), (math.inf, "∞")])
def test_sci(x, text):
    assert ex.sci(x) == text


def test_roughness_of_a_smooth_and_of_a_bouncing_schedule():
    smooth = [0.1 + 0.001 * t for t in range(100)]
    r = ex.roughness(smooth, max_lr=0.3)
    assert r["step_change"] == pytest.approx(0.001, rel=1e-9) and r["at_bound"] == 0.0
    assert r["mean"] == pytest.approx(0.1495, rel=1e-9)
    assert r["residual_sd"] < 2e-3          # a line deviates only at the ends (< 0.006)
    bounce = [0.0, 0.3] * 50                # noise between the bounds: all of it at a bound
    r = ex.roughness(bounce, max_lr=0.3)
    assert r["step_change"] == pytest.approx(0.3) and r["at_bound"] == 1.0
    assert r["residual_sd"] == pytest.approx(0.15, rel=0.05)
    np.testing.assert_allclose(ex.centred_mean([0.0, 3.0, 6.0], 3).numpy(), [1.5, 3.0, 4.5])


def test_plural_and_table():
    assert ex.plural(1, "seed") == "1 seed" and ex.plural(2, "seed") == "2 seeds"
    assert ex.plural(0, "run") == "0 runs"
    H, F, U = ex.HOLDS, ex.FAILS, ex.UNDECIDED
    assert ex.tally([H, F, U, U], "readings") == (
        "1 of the 4 readings holds, 1 does not and 2 cannot be decided")
    assert ex.tally([H, H, F, F, F], "parts") == (
        "2 of the 5 parts hold, 3 do not and 0 cannot be decided")
    table = ex.md_table(["a", "b"], [[1, "x"], [2.5, None]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2.5 | None |"]


# ----------------------------------------------------------------------------- the rule
def test_t975_exact():
    assert ex.t975(1) == pytest.approx(12.7062, abs=1e-4) and ex.t975(4) == pytest.approx(
        2.7764, abs=1e-4) and ex.t975(11) == pytest.approx(2.2010, abs=1e-4)
    assert ex.t975(100) == pytest.approx(1.9840, abs=1e-4) and ex.t975(0) == math.inf


def test_compare_outside_the_95_percent_interval():
    # mean 1, sample std 0.1155, n = 4: se = 0.0577, t(3) = 3.182: 1 - 0.18 > 0
    up = ex.compare([0.9, 1.1, 0.9, 1.1])
    assert up["sign"] == ex.HOLDS and up["mean"] == pytest.approx(1.0)
    assert up["se"] == pytest.approx(math.sqrt(4 * 0.01 / 3 / 4))
    assert up["t"] == pytest.approx(3.1824, abs=1e-4)
    assert ex.compare([-0.9, -1.1, -0.9, -1.1])["sign"] == ex.FAILS
    assert ex.compare([1.0, -0.5])["sign"] == ex.UNDECIDED              # within the noise
    assert ex.compare([5.0])["sign"] == ex.UNDECIDED                    # one seed: no noise
    assert ex.compare([])["sign"] == ex.UNDECIDED
    assert ex.compare([0.2, 0.2])["sign"] == ex.HOLDS                   # no spread at all
    assert ex.compare([0.0, 0.0])["sign"] == ex.UNDECIDED
    # two seeds: t = 12.7, the seeds must agree closely (2 se would have passed both)
    assert ex.compare([1.0, 0.7])["sign"] == ex.UNDECIDED               # 0.85 < 12.7 * 0.15
    assert ex.compare([1.0, 0.95])["sign"] == ex.HOLDS                  # 0.975 > 12.7 * 0.025
    # unpaired: the two standard errors add in quadrature, dof of the smaller group
    two = ex.compare([2.0, 2.2, 2.0, 2.2], [1.0, 1.2, 1.0])
    assert two["mean"] == pytest.approx(2.1 - 3.2 / 3)
    assert two["t"] == ex.t975(2) and two["sign"] == ex.HOLDS
    assert ex.compare([1.0, 1.1], [1.0])["sign"] == ex.UNDECIDED        # one group of one


def test_combine_and_verdict():
    assert ex.combine([ex.HOLDS, ex.HOLDS]) == ex.HOLDS
    assert ex.combine([ex.HOLDS, ex.UNDECIDED]) == ex.UNDECIDED
    assert ex.combine([ex.UNDECIDED, ex.FAILS]) == ex.FAILS
    assert ex.combine([]) == ex.UNDECIDED
    assert ex.verdict(ex.HOLDS) == "holds here"
    assert ex.verdict(ex.FAILS) == "does not hold here"
    assert "cannot be decided" in ex.verdict(ex.UNDECIDED)


def test_schedule_measures():
    assert ex.normalised_distance([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)   # same shape
    assert ex.normalised_distance([1, 1], [0, 2]) == pytest.approx(1.0)
    assert math.isnan(ex.normalised_distance([0, 0], [1, 1]))
    assert ex.linger([0.1] * 10) == pytest.approx(1.0)                  # never comes down
    assert ex.linger([1.0] + [0.0] * 9) == 0.0                          # ends at zero
    assert ex.linger(list(range(1, 21))[::-1]) == pytest.approx(1.5 / 20)


# ----------------------------------------------------------------------------- on runs
@pytest.fixture(scope="module")
def mnist_tiny():
    if not HAS_MNIST:
        pytest.skip("MNIST files not found in $HYPERGRAD_DATA")
    return run_mnist_tiny(**{"online.seeds": [0, 1], "lrs_opt.seeds": [0, 1],
                             "quality.replay_mus": [0.0, 0.5, "auto"]})


@needs_mnist
def test_mnist_claims_on_a_tiny_run(mnist_tiny):
    c = ex.mnist_claims(mnist_tiny)
    for key in ("c1", "c2", "c3", "c4", "c5", "c7", "c8", "c9", "c12"):
        assert c[key]["v"] in (ex.HOLDS, ex.FAILS, ex.UNDECIDED), key
    # claim 9 (C12) reads MARTHE's runs at its best β: where the peak is, what the end keeps
    best = c["summary"]["best"]["marthe"]
    runs = [r for r in mnist_tiny["online"]["marthe"][f"{best:g}"].values()
            if not r["diverged"] and max(r["lr"]) > 0] if best is not None else []
    T = mnist_tiny["settings"]["T"]
    assert c["c12"]["peak_at"] == [r["lr"].index(max(r["lr"])) / T for r in runs]
    assert c["c12"]["end_peak"] == [ex.linger(r["lr"]) for r in runs]
    # the wall time of every unit is saved, and the cost ratio is read from it
    wt = mnist_tiny["wall_time_s"]
    assert all(v is not None and v > 0 for v in wt["lrs_opt"].values())
    assert c["c9"]["ratio"] == pytest.approx(c["c9"]["lrs_s"] / c["c9"]["online_s"])
    # lingering is measured on the runs themselves
    best = c["summary"]["best"]["rtho"]          # None: every run below the threshold
    rtho = mnist_tiny["online"]["rtho"][f"{best:g}"] if best is not None else {}
    assert c["c2"]["linger"]["rtho"] == [ex.linger(r["lr"]) for r in rtho.values()
                                         if not r["diverged"]]
    if best is None:
        assert c["c2"]["v"] == ex.UNDECIDED
    assert sum(n for _, n in c["c2"]["diverged"].values()) == sum(
        len(by_seed) for by_b in mnist_tiny["online"].values() for by_seed in by_b.values())
    # claim 6 (C7): the distances to LRS-OPT's schedule and to its centred mean, per seed
    c7, w = c["c7"], mnist_tiny["settings"]["noise"]["window"]
    assert c7["seeds"] == ["0", "1"] and c7["window"] == w
    for m in c7["dist"]:
        b = c["summary"]["best"][m]
        for i, k in enumerate(c7["seeds"]):
            run = mnist_tiny["online"][m][f"{b:g}"][k] if b is not None else None
            if run is None or run["diverged"]:
                assert math.isnan(c7["dist"][m][i]) and math.isnan(c7["dist_smooth"][m][i])
                continue
            lrs = mnist_tiny["lrs_opt"][k]["lrs"]
            assert c7["dist"][m][i] == ex.normalised_distance(run["lr"], lrs)
            assert c7["dist_smooth"][m][i] == ex.normalised_distance(
                run["lr"], ex.centred_mean(lrs, w))
    # with the two seeds of this run, the seed spread decides; with a tiny LRS-OPT (2
    # iterations) the shape of the optimised schedule is never read
    assert c["lrs"]["v_start"] == ex.UNDECIDED


@needs_mnist
def test_the_quality_claim_reads_the_quality_unit(mnist_tiny):
    q = ex.mnist_claims(mnist_tiny)["quality"]
    seed, unit = next(iter(mnist_tiny["quality"].items()))
    est = unit["replay"]["estimates"]
    assert q["seed"] == seed and q["sign_hd"] == est["0"]["sign"]
    assert q["best_long"] in est and q["best_long"] not in ("0", "auto")
    assert q["sign_long"] == max(e["sign"] for k, e in est.items() if k not in ("0", "auto"))
    assert q["v"] in (ex.HOLDS, ex.FAILS, ex.UNDECIDED) and q["why"] is None


def _with_signs(res, signs, steps):
    """``res`` with its quality unit's replayed sign agreements replaced by ``signs``."""
    seed, unit = next(iter(res["quality"].items()))
    est = {k: {"sign": v, "steps": steps} for k, v in signs.items()}
    return {**res, "quality": {seed: {**unit, "replay": {**unit["replay"], "estimates": est}}}}


@needs_mnist
def test_the_quality_claim_rule(mnist_tiny):
    """Twice the standard error of a difference of two proportions, computed by hand:
    with p = 0.6 and 0.5 over 100 steps it is 2·sqrt((0.24 + 0.25)/100) = 0.14."""
    def v(signs, steps=100):
        return ex.mnist_claims(_with_signs(mnist_tiny, signs, steps))["quality"]

    q = v({"0": 0.5, "0.5": 0.6, "0.9": 0.55, "auto": 0.99})
    assert q["best_long"] == "0.5" and q["noise"] == pytest.approx(0.14, rel=1e-12)
    assert q["v"] == ex.UNDECIDED                       # 0.10 < 0.14
    assert v({"0": 0.5, "0.5": 0.6}, steps=400)["v"] == ex.HOLDS     # 0.10 > 0.07
    assert v({"0": 0.6, "0.5": 0.5}, steps=400)["v"] == ex.FAILS
    q = v({"0": 0.5, "auto": 0.9})                                  # no fixed μ > 0
    assert q["v"] == ex.UNDECIDED and "no fixed μ > 0" in q["why"]
    no_unit = ex.mnist_claims({**mnist_tiny, "quality": {}})["quality"]
    assert no_unit["v"] == ex.UNDECIDED and no_unit["why"] == "no quality unit is complete"


@needs_mnist
def test_sensitivity_claims_on_a_tiny_run():
    s = ex.settings("sensitivity", "tiny")
    r = ex.run("sensitivity", s, progress=False)
    E = ex.sensitivity_grids(r, "fixed")
    assert E.shape == (len(s["seeds"]), len(s["mus"]), len(s["betas"]))
    # the per-seed grids average to the saved grid
    for i, row in enumerate(r["panels"]["fixed"]["val_error"]):
        for j, v in enumerate(row):
            cell = E[:, i, j]
            if v is None:
                assert cell.isnan().all()
            else:
                assert float(cell[~cell.isnan()].mean()) == pytest.approx(v, rel=1e-12)
    c = ex.sensitivity_claims(r)
    for key in ("interior", "band", "auto", "flat"):
        assert c[key]["v"] in (ex.HOLDS, ex.FAILS, ex.UNDECIDED), key
    assert c["runs_per_panel"] == len(s["mus"]) * len(s["betas"]) * len(s["seeds"])


@needs_mnist
def test_real_world_claims_and_an_hd_variant_on_the_validation_loss():
    s = ex.settings("real-world", "tiny")
    s["tasks"] = s["tasks"][:1]
    methods = s["tasks"][0]["methods"]
    methods["hd-val"] = {**methods["hd"], "method": "hd", "objective": "val"}
    r = ex.run("real-world", s, progress=False)
    runs = r["tasks"][s["tasks"][0]["name"]]
    # the variant is HD on another objective: another schedule from the same start
    assert runs["hd-val"]["0"]["lr"][0] == runs["hd"]["0"]["lr"][0]
    assert runs["hd-val"]["0"]["lr"] != runs["hd"]["0"]["lr"]
    c = ex.real_world_claims(r)[s["tasks"][0]["name"]]
    assert c["best_fixed"] in FIXED_SCHEDULES
    assert c["v_par"] == ex.UNDECIDED                                   # one seed: no noise


def test_analyses_take_tensors_as_well_as_lists_without_a_warning():
    """A chapter passes schedules as lists or tensors (e.g. a centred mean); a warning would be
    printed on the page."""
    import warnings

    import torch

    lr = [0.1 + 0.01 * (t % 7) for t in range(60)]
    as_t = torch.tensor(lr, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ex.normalised_distance(lr, ex.centred_mean(lr, 5)) == pytest.approx(
            ex.normalised_distance(lr, ex.centred_mean(lr, 5).tolist()), rel=1e-12)
        assert ex.linger(as_t) == pytest.approx(ex.linger(lr), rel=1e-6)
        assert ex.roughness(as_t, 0.3)["mean"] == pytest.approx(ex.roughness(lr, 0.3)["mean"],
                                                                 rel=1e-6)
        assert ex.hypergradient_agreement(as_t, lr)["cosine"] == pytest.approx(1.0, rel=1e-6)
