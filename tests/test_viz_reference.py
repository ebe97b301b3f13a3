"""The LRS-OPT reference's sentences and figure say what the stored run holds."""

import math

import pytest

from hypergrad.experiments.protocol import lrs_convergence, lrs_versus
from hypergrad.viz.reference import cap_text, reference_figure, reference_text, versus_text


def _run(lrs, averaged=None):
    return {"lrs": lrs, "history": [0.5, 0.4, 0.35, 0.34], "iterations": 4, "diverged": None,
            "val_acc": 0.91, "averaged": averaged, "averaged_count": 2,
            "averaged_metrics": None if averaged is None else {"val_acc": 0.925}}


def _held(last, avg):
    return {"iteration": [0, 2, 4], "draws": 3, "lrs": last, "averaged": avg}


def test_cap_text_counts_the_steps_above_the_cap_and_at_zero():
    assert cap_text([0.0, 0.1, 0.4, 0.5], 0.3) == (
        "50% of its steps lie above the surrogate's cap η ≤ 0.3, 25% at η = 0")


def test_the_text_gives_every_accuracy_and_reads_a_stopped_and_a_moving_schedule():
    run = _run([0.1, 0.2, 0.4, 0.0], averaged=[0.1, 0.2, 0.3, 0.1])
    held = _held([[0.5, 0.6, 0.7], [0.40, 0.50, 0.60], [0.41, 0.49, 0.61]],
                 [None, [0.45, 0.55, 0.65], [0.35, 0.45, 0.55]])
    conv = lrs_convergence(held)
    text = reference_text(run, conv, {"val_acc": 0.9}, {"val_acc": 0.88}, cap=0.3)
    assert ("After 4 iterations the last iterate trains to 0.910 validation accuracy, the "
            "average of its last 2 iterates to 0.925, the surrogate's schedule to 0.900 and "
            "the constant η to 0.880.") in text
    assert "25% of its steps lie above the surrogate's cap η ≤ 0.3, 25% at η = 0" in text
    last, avg = text.split("On 3 held-out draws")[1:]
    assert "of the last iterate" in last and "has stopped moving" in last
    assert "of the average" in avg and "still moves" in avg     # −0.1 on every draw
    assert reference_text(run).endswith("0.925.")               # nothing else known
    # a draw that diverges at the last snapshot: not "stopped", whatever the others do
    held["lrs"][2][0] = None
    text = reference_text(run, lrs_convergence(held))
    assert ("training with the last iterate diverges on 1 at iteration 4 or 2; on the "
            "other 2, the objective changes by") in text
    assert "has stopped moving" not in text.split("average")[0]


def test_versus_text_says_the_iteration_ratio_or_that_adam_never_gets_there():
    adam = _held([[0.5] * 3, [0.4] * 3, [0.3] * 3], [None, [0.4] * 3, [0.3] * 3])
    pgd = {**_held([[0.5] * 3, [0.45] * 3, [0.4] * 3], [None, [0.45] * 3, [0.4] * 3]),
           "iteration": [0, 10, 20]}
    text = versus_text(lrs_versus(adam, pgd))
    assert "reach an objective of 0.3000 and 0.4000" in text
    assert "at iteration 2, 10.0 times fewer iterations" in text
    text = versus_text(lrs_versus(pgd | {"iteration": [0, 2, 4]}, adam | {"iteration":
                                                                        [0, 10, 20]}))
    assert text.endswith("Adam never reaches PGD's final value.")
    assert versus_text(None) == ""
    # a run stopped before its averaging began (no averaged snapshot): the last iterates
    stopped = _held([[0.5] * 3, [0.6] * 3, [0.6, None, 0.6]], [None, None, None])
    vs = lrs_versus(stopped, _held([[0.5] * 3, [0.45] * 3, [0.4] * 3],
                                   [None, [0.45] * 3, [0.35] * 3]))
    assert vs["key"] == "lrs" and vs["adam_final"] == pytest.approx(0.6)
    assert vs["pgd_final"] == pytest.approx(0.4)
    assert "the last iterates of projected Adam" in versus_text(vs)
    assert "never reaches" in versus_text(vs)
    none = {**vs, "adam_final": None}
    assert versus_text(none).endswith("have no objective to compare.")


def test_the_figure_draws_the_trace_the_held_out_means_and_the_schedules():
    run = _run([0.1, 0.2, 0.4, 0.0], averaged=[0.1, 0.2, 0.3, 0.1])
    held = _held([[0.5, 0.6, 0.7], [0.4, 0.5, 0.6], [0.41, 0.49, 0.61]],
                 [None, [0.45, 0.55, 0.65], [0.35, 0.45, 0.55]])
    fig = reference_figure(run, held, {"lrs": [0.1] * 4, "iterations": 150}, smooth=2)
    ax_f, ax_s = fig.axes
    ys = [line.get_ydata() for line in ax_f.lines]
    assert list(ys[0]) == run["history"]
    assert math.isclose(ys[2][-1], 1.51 / 3, rel_tol=1e-12)     # mean of the last draws
    assert list(ys[3]) == [1.65 / 3, 1.35 / 3]                     # the average's snapshots
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "average of 2 iterates" in labels and "surrogate (150 it., capped)" in labels
