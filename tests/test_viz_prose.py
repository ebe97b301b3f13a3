"""hypergrad.viz.prose: chapter 5's numbers into sentences and tables, on hand-made inputs."""

import pytest

from hypergrad.experiments.analysis import FAILS, HOLDS, UNDECIDED
from hypergrad.experiments.claims import Claim
from hypergrad.viz import prose


def _settings(**over) -> dict:
    s = {"sizes": [784, 50, 10], "n_train": 100, "n_val": 20, "batch_size": 10, "T": 5,
         "online": {"seeds": [0, 1], "betas": [1e-5, 0.001], "fixed_mus": [0.9, 0.99]},
         "lrs_opt": {"seeds": [0], "iterations": 3, "optimizer": None, "step_size": 0.1,
                     "max_lr": 0.3},
         "noise": {"draws": 4, "window": 3}, "lr0": 0.0, "fixed_lr": 0.1,
         "accuracy_threshold": 0.5}
    s.update(over)
    return s


def test_settings_table_side_by_side():
    paper = _settings(lrs_opt={"seeds": [0, 1, 2], "iterations": 150, "optimizer": "adam",
                               "step_size": 0.01, "max_lr": None})
    lines = prose.settings_table(_settings(), paper).split("\n")
    assert lines[:2] == ["| setting | shown here | paper scale |", "|---|---|---|"]
    assert lines[2:] == [
        "| network (layer sizes) | 784–50–10 | 784–50–10 |",
        "| train / validation images | 100 / 20 | 100 / 20 |",
        "| minibatch, horizon T | 10, 5 | 10, 5 |",
        "| seeds (online / LRS-OPT) | 2 / 1 | 2 / 3 |",
        "| LRS-OPT iterations | 3 | 150 |",
        "| LRS-OPT noise: draws, smoothing window | 4, 3 steps | 4, 3 steps |",
        "| LRS-OPT outer step | PGD | ADAM |",
        "| LRS-OPT step α, cap | 0.1, 0.3 | 0.01, None |",
        "| values of β | 10⁻⁵, 10⁻³ | 10⁻⁵, 10⁻³ |",
        "| fixed μ of MARTHE | 0.9, 0.99 | 0.9, 0.99 |",
        "| online η₀ / fixed η | 0.0 / 0.1 | 0.0 / 0.1 |",
        "| accuracy threshold | 0.5 | 0.5 |",
    ]


def test_its_text_names_the_outer_step():
    assert prose.its_text({"lrs_opt": {"iterations": 5000}}) == (
        "5000 iterations of projected gradient descent")
    assert prose.its_text({"lrs_opt": {"iterations": 150, "optimizer": "adam"}}) == (
        "150 iterations of projected Adam")
    assert prose.its_text({"lrs_opt": {"iterations": 7, "optimizer": "nesterov"}}) == (
        "7 iterations of nesterov")


def test_start_text_verdict_or_why_not():
    assert prose.start_text({"v_start": HOLDS}, 3, 5000, 2) == "holds here"
    head = ("cannot be tested at this scale: after 3 iterations (the paper makes 5000) "
            "LRS-OPT has not converged. A difference between seeds at the start then says "
            "nothing about where the optimisation ends, and the plateau that the paper "
            "describes is not tested")
    lo = {"v_start": UNDECIDED, "converged": False, "spread_head": None}
    assert prose.start_text(lo, 3, 5000, 2) == head
    lo = {"v_start": UNDECIDED, "converged": True, "spread_head": 0.123,
          "spread_middle": 0.35}
    assert prose.start_text(lo, 3, 5000, 2) == (
        "cannot be tested at this scale: 2 seeds are too few to compare their spread step "
        "by step. A difference between seeds at the start then says nothing about where "
        "the optimisation ends, and the plateau that the paper describes is not tested. "
        "For the record, the spread between seeds relative to the mean is 0.12 over the "
        "first fifth and 0.35 over the middle")


def test_converged_and_drop_texts():
    assert prose.converged_text(True) == "has converged"
    assert prose.converged_text(False) == (
        "has not converged: the running mean of the objective is still falling beyond its "
        "noise")
    assert prose.drop_text({"converged": True, "v_drop": FAILS}) == "does not hold here"
    assert prose.drop_text({"converged": False, "v_drop": HOLDS}) == (
        "cannot be tested at this scale, since LRS-OPT has not converged")


def test_benchmark_sentences():
    assert prose.low_hits_text({"adam": 10, "pgd": 25}) == (
        "10 for Adam and 25 for PGD (2.5 times as many)")
    assert prose.final_gap_text(0.00123, 0.002) == "0.0012, less than"
    assert prose.final_gap_text(0.003, 0.002) == "0.0030, more than"
    assert prose.final_verdict_text(0.003, 0.002) == (
        "neither method ends lower than the other beyond the noise")
    assert prose.final_verdict_text(0.005, 0.002) == "the difference is beyond the noise"
    assert prose.above_text({"pgd": 0.25, "adam": 0.5}) == (
        "25% of PGD's later iterations and 50% of Adam's")
    assert prose.best_reached_text(42, 100) == "reaches it after 42"
    assert prose.best_reached_text(None, 100) == "does not reach it in 100"
    assert prose.held_out_text(0.12344, 0.2) == "0.1234 (PGD) and 0.2000 (Adam)"
    assert prose.nesterov_text(None) == "did not reach the target"
    assert prose.nesterov_text(7) == "reached the target after 7 iterations"


def test_bench_rough_text():
    runs = {"pgd": {"lrs": [0.1, 0.3, 0.1, 0.3], "iterations": 1000},
            "adam": {"lrs": [0.2] * 4, "iterations": 100}}
    # PGD: |Δη| = 0.2 at every step; about its centred 3-step mean
    # (0.2, 0.1667, 0.2333, 0.2) the residual's RMS is sqrt(0.0138889) = 0.118
    assert prose.bench_rough_text(runs, _settings()) == (
        "the paper's projected gradient descent after 1000 iterations leaves a schedule "
        "whose ηₜ changes by 0.200 per step (0.118 about its 3-step mean), and projected "
        "Adam after 100 iterations 0.000 (0.000)")


def test_accuracy_cell_and_table():
    assert prose.accuracy_cell(0.91234, 3, 4) == "0.912 (3/4)"
    assert prose.accuracy_cell(None, 0, 4) == "— (0/4)"
    summary = {"methods": {
        "hd": {"mean": [0.9, None], "kept": [2, 0], "runs": [2, 2]},
        "marthe-mu0.9": {"mean": [0.8765, 0.5], "kept": [1, 2], "runs": [2, 2]}}}
    assert prose.accuracy_table(summary, [1e-3, 0.1]) == (
        "| method | β = 10⁻³ | β = 0.1 |\n|---|---|---|\n"
        "| HD | 0.900 (2/2) | — (0/2) |\n"
        "| MARTHE (μ = 0.9) | 0.876 (1/2) | 0.500 (2/2) |")
    only = prose.accuracy_table(summary, [1e-3, 0.1], ["marthe-mu0.9"]).split("\n")
    assert only[2:] == ["| MARTHE (μ = 0.9) | 0.876 (1/2) | 0.500 (2/2) |"]
    summary["methods"]["hd"]["kept"] = [2]        # one value missing: an error, not a row
    with pytest.raises(ValueError):
        prose.accuracy_table(summary, [1e-3, 0.1], ["hd"])


def test_mean_accuracy_skips_missing():
    runs = {"0": {"val_acc": 0.5}, "1": {"val_acc": 0.7},
            "2": {"val_acc": None, "diverged": "nan"}, "3": {"diverged": "nan"}}
    assert prose.mean_accuracy(runs) == pytest.approx(0.6)
    assert prose.mean_accuracy({}) is None


def test_quality_table_rows():
    e = {"sign": 0.5, "cosine": 0.25, "cosine_trim": 0.125}
    replay = {"estimates": {"0": e, "auto": {"sign": 0.75, "cosine": -0.5,
                                             "cosine_trim": 1.0}}}
    own = {"hd": e, "rtho": {"diverged": "nan"}}
    assert prose.quality_table(replay, own) == (
        "| estimator | sign agreement | cosine | cosine without the last tenth |\n"
        "|---|---|---|---|\n"
        "| fixed-η trajectory, μ = 0 | 0.50 | 0.25 | 0.12 |\n"
        "| fixed-η trajectory, adaptive μ | 0.75 | -0.50 | 1.00 |\n"
        "| own run, HD | 0.50 | 0.25 | 0.12 |")


def test_quality_verdict_by_sign():
    assert prose.quality_verdict(HOLDS).startswith(
        "agree with the exact hypergradient more often than HD's one-step estimate does. ")
    assert prose.quality_verdict(FAILS) == (
        "agree with the exact hypergradient less often than HD's one-step estimate does, "
        "so here the paper's argument for long horizons is not borne out")
    assert prose.quality_verdict(UNDECIDED).endswith(
        "the paper's argument for long horizons cannot be decided at this scale")


def _claim(key="k", quote=None, value="v", verdict=UNDECIDED):
    return Claim(key=key, quote=quote, reading="r", value=value, verdict=verdict)


def test_quality_text_reads_the_longer_horizon_record():
    recs = [_claim(), _claim("longer-horizon", value="0.61 against 0.55")]
    assert prose.quality_text("on this page", recs) == "on this page: 0.61 against 0.55"
    assert prose.quality_text("here", [_claim("longer-horizon", value="—")]) is None
    assert prose.quality_text("here", [_claim()]) is None


def test_seeds_status_and_kappa_texts():
    prog = {"seeds": {"online": [0, 1], "lrs_opt": [0]}}
    assert prose.seeds_status_text(prog, True) == (
        "Seeds complete: online methods: 2 seeds; LRS-OPT: 1 seed; fixed-η baseline: "
        "0 seeds.")
    assert prose.seeds_status_text(prog, False) == (
        "No seed of the paper-scale run is complete yet.")
    assert prose.kappa_text({"n": 0}) == ""
    assert prose.kappa_text({"n": 10, "reran": 3, "mean": 1.5}) == (
        "The step-size selection of Section 4 (MARTHE with adaptive β) divided κ at least "
        "once in 3 of its 10 runs, and tried 1.50 values of κ per run on average.")


def test_kappa_table():
    runs = {"7": {1e-5: {"diverged": "nan", "val_acc": None},
                  1e-7: {"diverged": False, "val_acc": 0.9}},
            "8": {1e-5: {"diverged": False, "val_acc": 0.8125},
                  1e-7: {"diverged": False, "val_acc": 0.75}}}
    assert prose.kappa_table(runs, [1e-5, 1e-7], [1e-7, None]) == (
        "| κ | seed 7 | seed 8 |\n|---|---|---|\n"
        "| 1e-05 | diverged | 0.812 |\n"
        "| 1e-07 | 0.900 | 0.750 |\n"
        "| decimation picks | 1e-07 | — |")


def test_paper_summary_quotes_each_failure_once():
    recs = [_claim(quote="a", verdict=FAILS), _claim(quote="b", verdict=FAILS),
            _claim(quote="a", verdict=FAILS), _claim(quote="c", verdict=HOLDS),
            _claim(verdict=FAILS)]
    assert prose.paper_summary(recs) == (
        "Of 5 readings, 1 hold, 4 do not hold and 0 cannot be decided. The paper's words "
        "that do not reproduce there: “a”; “b”.")
    assert prose.paper_summary([_claim(quote="c", verdict=HOLDS)]) == (
        "Of 1 readings, 1 hold, 0 do not hold and 0 cannot be decided.")


def test_rough_text_means_over_seeds():
    result = {"settings": _settings(),
              "lrs_opt": {"0": {"lrs": [0.1, 0.3, 0.1, 0.3]}, "1": {"lrs": [0.2] * 4}}}
    assert prose.rough_text(result) == (
        "ηₜ changes by 0.100 per step on average, around a mean of 0.200; its standard "
        "deviation about its 3-step mean is 0.059, and 25% of its steps sit at a bound "
        "(0 or the cap 0.3) (2 seeds)")
    assert prose.rough_text({"settings": _settings(), "lrs_opt": {}}) == (
        "no LRS-OPT seed is complete yet")


def _smoothed(shift: float) -> dict:
    return {"final_val_loss": [1.0, 2.0, None], "smoothed_val_loss": [1.5, 2.5 + shift, 3.0],
            "final_val_acc": [0.5, 0.6, None], "smoothed_val_acc": [0.6, 0.8, 0.9]}


def test_smoothing_effect_pairs_the_draws():
    d, acc, effect = prose.smoothing_effect(_smoothed(0.0))
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.5) and d["sign"] == HOLDS
    assert acc == pytest.approx([0.1, 0.2])
    assert effect == "smoothing raises the objective beyond the noise"
    sm = _smoothed(-1.0)      # differences 0.5 and −0.5: no resolved difference
    assert prose.smoothing_effect(sm)[2] == "the draws resolve no difference"
    sm["smoothed_val_loss"] = [0.5, 1.5, 3.0]
    assert prose.smoothing_effect(sm)[2] == "smoothing lowers the objective beyond the noise"


def test_snr_at():
    nz = {"start": {"draws": 4, "mean": [1.0, -2.0], "sd": [1.0, 1.0]},
          "final": {"draws": 1, "mean": [1.0], "sd": [0.0]}}
    assert prose.snr_at(nz, "final") is None
    r = prose.snr_at(nz, "start")
    # |mean|/sd = 1, 2; the 95 % bound t(3) · 1/√4 = 1.59 resolves the second step only
    assert r["snr"] == pytest.approx(1.5) and r["resolved"] == pytest.approx(0.5)
    assert r["draws_needed"] == pytest.approx((1.96 ** 2 + (1.96 / 2) ** 2) / 2)


def test_averaged_text():
    assert prose.averaged_text({"optimizer": "adam"}) == (
        "Adam's first moment averages about 10 draws per step")
    assert prose.averaged_text({}) == "each projected-gradient step follows one draw"


def _noisy(final_draws: int = 4) -> dict:
    nz = {"start": {"draws": 4, "mean": [1.0, -2.0], "sd": [1.0, 1.0]},
          "final": {"draws": final_draws, "mean": [0.0, 4.0], "sd": [1.0, 1.0]},
          "smoothed": _smoothed(0.0)}
    st = _settings(lrs_opt={"iterations": 50, "optimizer": "pgd", "max_lr": 0.3})
    return {"settings": st, "noise": {"3": nz}}


def test_noise_text():
    start = ("at the starting schedule (ηₜ = 0.1), one draw's hypergradient ∂f/∂ηₜ has a median "
             "signal-to-noise ratio of 1.50 per step, 4 draws resolve its sign at 50% of "
             "the steps, and an average would need a median of 2.4 draws to resolve it "
             "(each projected-gradient step follows one draw). ")
    final = ("At the final schedule after 50 iterations, the draws resolve the sign at 50% "
             "of the steps (median ratio 2.00; where no step has a signal, the rule "
             "resolves 5% by chance alone): at the others, the objective is flat to within the noise, "
             "and nothing holds ηₜ in place. ")
    smooth = ("Smoothing the final schedule over 3 steps changes the objective by 0.5000 "
              "± 0.0000 over the 2 paired draws, and the validation accuracy by +15.00 points on "
              "average: smoothing raises the objective beyond the noise (seed 3).")
    assert prose.noise_text(_noisy()) == start + final + smooth
    assert prose.noise_text(_noisy(final_draws=1)) == start + smooth
    assert prose.noise_text({"settings": _settings(), "noise": {}}) == (
        "the noise measurement is not complete yet (it follows its LRS-OPT seed).")


def test_noise_summary():
    assert prose.noise_summary(_noisy(), "At the paper's scale") == (
        "At the paper's scale, 4 fresh draws resolve the sign of the final schedule's "
        "hypergradient at 50% of its steps, and smoothing it changes the objective by "
        "0.5000 ± 0.0000 (smoothing raises the objective beyond the noise).")
    assert prose.noise_summary(None, "here") == ""
    assert prose.noise_summary({"settings": _settings(), "noise": {}}, "here") == ""
    assert prose.noise_summary(_noisy(final_draws=1), "here") == ""
